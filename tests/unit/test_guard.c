/* test_guard.c — the statement classifier: the node table against pg_query.proto, SQL → classes
 * tables (nested forms, lexing traps, privileged functions), PREPARE/EXECUTE/DEALLOCATE, the
 * verdict cache, and normalize/fingerprint. Runs on the main thread (8 MB stack). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgsov/guard.h"

#define R  CLASS_BIT(CLASS_READ)
#define W  CLASS_BIT(CLASS_WRITE)
#define D  CLASS_BIT(CLASS_DDL)
#define RO CLASS_BIT(CLASS_ROLE)
#define F  CLASS_BIT(CLASS_FUNCTION)
#define P  CLASS_BIT(CLASS_PRIVILEGED)
#define T  CLASS_BIT(CLASS_TRANSACTION)
#define S  CLASS_BIT(CLASS_SESSION)
#define M  CLASS_BIT(CLASS_MAINTENANCE)
#define U  CLASS_BIT(CLASS_UNKNOWN)

#define PROTO_PATH "/usr/include/pg_query/pg_query.proto"

static struct guard *guard_plain(void)
{
    struct guard *g = guard_new(NULL);
    assert_non_null(g);
    return g;
}

static void classify(struct guard *g, const char *sql, struct guard_verdict *v)
{
    guard_classify(g, sql, strlen(sql), v);
}

static void fail_classes(const char *sql, class_set got, class_set want, const char *reason)
{
    char g[200], w[200];
    class_set_format(got, g, sizeof g);
    class_set_format(want, w, sizeof w);
    fail_msg("%s\n  got {%s} want {%s} (reason: %s)", sql, g, w, reason);
}

/* ---- the node table --------------------------------------------------------------- */

/* Every XxxStmt in the Node oneof of the installed pg_query.proto is mapped. */
static void test_node_table_covers_proto(void **state)
{
    (void)state;
    FILE *f = fopen(PROTO_PATH, "r");
    assert_non_null(f);
    char line[512];
    int in_node = 0, in_oneof = 0, seen = 0;
    while (fgets(line, sizeof line, f)) {
        if (!in_node) {
            in_node = strncmp(line, "message Node {", 14) == 0;
            continue;
        }
        if (!in_oneof) {
            in_oneof = strstr(line, "oneof node") != NULL;
            continue;
        }
        if (strchr(line, '}'))
            break;
        char type[128];
        if (sscanf(line, " %127s", type) != 1)
            continue;
        size_t n = strlen(type);
        if (n > 4 && strcmp(type + n - 4, "Stmt") == 0) {
            seen++;
            if (!guard_node_class_name(type))
                fail_msg("node type %s from %s has no class", type, PROTO_PATH);
        }
    }
    fclose(f);
    assert_true(in_oneof);
    assert_true(seen >= 110);   /* PostgreSQL 15 has 117; the walk must have found them */
}

static void test_node_table_entries(void **state)
{
    (void)state;
    static const struct { const char *type; const char *want; } cases[] = {
        { "DropStmt",            "ddl" },
        { "TruncateStmt",        "ddl" },
        { "GrantStmt",           "role" },
        { "AlterDefaultPrivilegesStmt", "role" },
        { "DoStmt",              "function" },
        { "CallStmt",            "function" },
        { "LoadStmt",            "privileged" },
        { "TransactionStmt",     "transaction" },
        { "ListenStmt",          "session" },
        { "VacuumStmt",          "maintenance" },
        { "VariableShowStmt",    "read" },
        { "DeclareCursorStmt",   "inner" },
        { "SelectStmt",          "depends" },
        { "CopyStmt",            "depends" },
        { "AlterTSConfigurationStmt", "ddl" },   /* upper case sorts before lower case */
        { "CreatedbStmt",        "ddl" },
        { "FuncCall",            NULL },
        { "NoSuchStmt",          NULL },
        { "",                    NULL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = guard_node_class_name(cases[i].type);
        if (!cases[i].want)
            assert_null(got);
        else if (!got || strcmp(got, cases[i].want) != 0)
            fail_msg("%s: got %s want %s", cases[i].type, got ? got : "NULL", cases[i].want);
    }
    assert_null(guard_node_class_name(NULL));
}

/* ---- SQL → classes ------------------------------------------------------------------ */

static const struct {
    const char *sql;
    class_set want;
    enum stmt_class worst;
    int n_statements;
} class_cases[] = {
    /* plain forms */
    { "select 1",                                                   R, CLASS_READ, 1 },
    { "SELECT u.id, p.title FROM users u JOIN posts p ON p.user_id = u.id WHERE u.id = $1",
                                                                    R, CLASS_READ, 1 },
    { "values (1), (2)",                                            R, CLASS_READ, 1 },
    { "table t",                                                    R, CLASS_READ, 1 },
    { "select 1 union all select 2",                                R, CLASS_READ, 1 },
    { "insert into t (a) values (1) returning id",                  W, CLASS_WRITE, 1 },
    { "insert into t select * from u",                              W | R, CLASS_WRITE, 1 },
    { "insert into t values ((select max(a) from u))",              W | R, CLASS_WRITE, 1 },
    { "insert into t (a) values (1) on conflict (a) do update set a = excluded.a returning *",
                                                                    W, CLASS_WRITE, 1 },
    { "update t set x = 1 where id = 2",                            W, CLASS_WRITE, 1 },
    { "delete from t where id = 1",                                 W, CLASS_WRITE, 1 },
    { "merge into t using s on t.id = s.id when matched then update set x = s.x",
                                                                    W, CLASS_WRITE, 1 },
    { "lock table t in access exclusive mode",                      W, CLASS_WRITE, 1 },
    { "select * from t for update",                                 R, CLASS_READ, 1 },
    { "select * from t for share skip locked",                      R, CLASS_READ, 1 },
    { "show search_path",                                           R, CLASS_READ, 1 },
    { "show all",                                                   R, CLASS_READ, 1 },
    /* data-modifying CTEs */
    { "with x as (delete from t returning *) select * from x",      R | W, CLASS_WRITE, 1 },
    { "with x as (select 1) insert into t select * from x",         R | W, CLASS_WRITE, 1 },
    { "with recursive x(n) as (select 1 union select n + 1 from x where n < 3) select * from x",
                                                                    R, CLASS_READ, 1 },
    /* ddl, and ddl with an inner query */
    { "create table t (id int)",                                    D, CLASS_DDL, 1 },
    { "DrOp TaBlE t",                                               D, CLASS_DDL, 1 },
    { "truncate t",                                                 D, CLASS_DDL, 1 },
    { "alter table t add column c int",                             D, CLASS_DDL, 1 },
    { "create index concurrently i on t (a)",                       D, CLASS_DDL, 1 },
    { "comment on table t is 'x'",                                  D, CLASS_DDL, 1 },
    { "create extension pgcrypto",                                  D, CLASS_DDL, 1 },
    { "create schema s",                                            D, CLASS_DDL, 1 },
    { "create table t2 as select * from t",                         D | R, CLASS_DDL, 1 },
    { "select * into t2 from t",                                    D | R, CLASS_DDL, 1 },
    { "create materialized view m as select * from t",              D | R, CLASS_DDL, 1 },
    { "create view v as select 1",                                  D | R, CLASS_DDL, 1 },
    { "create function f() returns int language sql as $$ delete from t returning 1 $$",
                                                                    D, CLASS_DDL, 1 },
    /* a SQL-standard body is code the server runs later: its classes count (documented) */
    { "create function f() returns int language sql begin atomic delete from t; select 1; end",
                                                                    D | W | R, CLASS_DDL, 1 },
    { "create rule r as on insert to t do instead delete from u",   D | W, CLASS_DDL, 1 },
    /* EXPLAIN */
    { "explain select * from t",                                    R, CLASS_READ, 1 },
    { "explain delete from t",                                      R, CLASS_READ, 1 },
    { "explain analyze delete from t",                              W, CLASS_WRITE, 1 },
    { "EXPLAIN (ANALYZE, BUFFERS) update t set x = 1",              W, CLASS_WRITE, 1 },
    { "explain (analyze false) delete from t",                      R, CLASS_READ, 1 },
    { "explain (analyze off, format json) insert into t values (1)", R, CLASS_READ, 1 },
    { "explain analyze select 1",                                   R, CLASS_READ, 1 },
    { "explain analyze create table t2 as select 1",                D | R, CLASS_DDL, 1 },
    { "explain select pg_read_file('x')",                           R | P, CLASS_PRIVILEGED, 1 },
    /* cursors */
    { "declare c cursor with hold for select * from t",             R, CLASS_READ, 1 },
    { "fetch 10 from c",                                            R, CLASS_READ, 1 },
    { "move next in c",                                             R, CLASS_READ, 1 },
    { "close c",                                                    S, CLASS_SESSION, 1 },
    /* COPY */
    { "copy t from stdin",                                          W, CLASS_WRITE, 1 },
    { "copy t (a, b) from stdin with (format csv)",                 W, CLASS_WRITE, 1 },
    { "copy t to stdout",                                           R, CLASS_READ, 1 },
    { "copy (select * from t) to stdout",                           R, CLASS_READ, 1 },
    { "copy (delete from t returning *) to stdout",                 R | W, CLASS_WRITE, 1 },
    { "copy t from '/etc/passwd'",                                  P, CLASS_PRIVILEGED, 1 },
    { "copy t to '/tmp/t.csv'",                                     P, CLASS_PRIVILEGED, 1 },
    { "copy t to program 'rm -rf /'",                               P, CLASS_PRIVILEGED, 1 },
    { "copy t from program 'curl x'",                               P, CLASS_PRIVILEGED, 1 },
    /* privileged statements */
    { "set role admin",                                             P, CLASS_PRIVILEGED, 1 },
    { "set local role admin",                                       P, CLASS_PRIVILEGED, 1 },
    { "reset role",                                                 P, CLASS_PRIVILEGED, 1 },
    { "set session authorization postgres",                         P, CLASS_PRIVILEGED, 1 },
    { "set session authorization default",                          P, CLASS_PRIVILEGED, 1 },
    { "alter system set work_mem = '1GB'",                          P, CLASS_PRIVILEGED, 1 },
    { "load 'auto_explain'",                                        P, CLASS_PRIVILEGED, 1 },
    { "create event trigger x on ddl_command_start execute function f()",
                                                                    P, CLASS_PRIVILEGED, 1 },
    { "alter event trigger pgsov_ddl_guard disable",                P, CLASS_PRIVILEGED, 1 },
    /* privileged functions, anywhere in the tree */
    { "select dblink('host=x', 'drop table t')",                    R | P, CLASS_PRIVILEGED, 1 },
    { "select * from dblink('x', 'y') as t(a int)",                 R | P, CLASS_PRIVILEGED, 1 },
    { "select * from t where id = (select pg_read_file('/etc/passwd')::int)",
                                                                    R | P, CLASS_PRIVILEGED, 1 },
    { "with x as (select pg_terminate_backend(123)) select * from x", R | P, CLASS_PRIVILEGED, 1 },
    { "select coalesce(pg_catalog.pg_read_file('a'), 'b')",         R | P, CLASS_PRIVILEGED, 1 },
    { "select public.DBLINK_EXEC('x')",                             R | P, CLASS_PRIVILEGED, 1 },
    { "select lower(upper(pg_ls_dir('.')))",                        R | P, CLASS_PRIVILEGED, 1 },
    { "update t set a = lo_import('/etc/passwd')",                  W | P, CLASS_PRIVILEGED, 1 },
    { "select query_to_xml('drop table t', true, true, '')",        R | P, CLASS_PRIVILEGED, 1 },
    { "select 1 from t group by a having count(pg_cancel_backend(1)) > 0",
                                                                    R | P, CLASS_PRIVILEGED, 1 },
    { "select lower(upper('x'))",                                   R, CLASS_READ, 1 },
    { "select 'pg_read_file(1)'",                                   R, CLASS_READ, 1 },
    /* set_config */
    { "select set_config('role', 'admin', false)",                  R | P, CLASS_PRIVILEGED, 1 },
    { "select pg_catalog.set_config('Role', 'x', true)",            R | P, CLASS_PRIVILEGED, 1 },
    { "select set_config('session_authorization', 'x', false)",     R | P, CLASS_PRIVILEGED, 1 },
    { "select set_config(setting_name => 'role', new_value => 'x', is_local => false)",
                                                                    R | P, CLASS_PRIVILEGED, 1 },
    { "select set_config($1, $2, true)",                            R | P, CLASS_PRIVILEGED, 1 },
    { "select set_config('search_path', 'public', false)",          R, CLASS_READ, 1 },
    { "select set_config('request.jwt.claims', $1, true)",          R, CLASS_READ, 1 },
    { "update pg_settings set setting = 'x' where name = 'role'",   W | P, CLASS_PRIVILEGED, 1 },
    /* role */
    { "grant select on t to app",                                   RO, CLASS_ROLE, 1 },
    { "revoke all on t from app",                                   RO, CLASS_ROLE, 1 },
    { "grant admin to app",                                         RO, CLASS_ROLE, 1 },
    { "create role x login",                                        RO, CLASS_ROLE, 1 },
    { "create user x password 'y'",                                 RO, CLASS_ROLE, 1 },
    { "create group g",                                             RO, CLASS_ROLE, 1 },
    { "alter role x superuser",                                     RO, CLASS_ROLE, 1 },
    { "alter user x with password 'y'",                             RO, CLASS_ROLE, 1 },
    { "alter role x rename to y",                                   RO, CLASS_ROLE, 1 },
    { "alter role x set search_path = y",                           RO, CLASS_ROLE, 1 },
    { "drop role x",                                                RO, CLASS_ROLE, 1 },
    { "alter default privileges grant select on tables to app",     RO, CLASS_ROLE, 1 },
    { "reassign owned by a to b",                                   RO, CLASS_ROLE, 1 },
    { "alter table t rename to u",                                  D, CLASS_DDL, 1 },
    /* function */
    { "do $$ begin drop table t; end $$",                           F, CLASS_FUNCTION, 1 },
    { "call p(1)",                                                  F, CLASS_FUNCTION, 1 },
    { "call p(pg_read_file('x'))",                                  F | P, CLASS_PRIVILEGED, 1 },
    /* maintenance */
    { "vacuum t",                                                   M, CLASS_MAINTENANCE, 1 },
    { "vacuum (full, analyze) t",                                   M, CLASS_MAINTENANCE, 1 },
    { "analyze t",                                                  M, CLASS_MAINTENANCE, 1 },
    { "cluster t using i",                                          M, CLASS_MAINTENANCE, 1 },
    { "reindex table t",                                            M, CLASS_MAINTENANCE, 1 },
    { "checkpoint",                                                 M, CLASS_MAINTENANCE, 1 },
    { "refresh materialized view concurrently m",                   M, CLASS_MAINTENANCE, 1 },
    /* transaction */
    { "begin",                                                      T, CLASS_TRANSACTION, 1 },
    { "start transaction isolation level serializable",            T, CLASS_TRANSACTION, 1 },
    { "commit",                                                     T, CLASS_TRANSACTION, 1 },
    { "end",                                                        T, CLASS_TRANSACTION, 1 },
    { "rollback",                                                   T, CLASS_TRANSACTION, 1 },
    { "abort",                                                      T, CLASS_TRANSACTION, 1 },
    { "savepoint a",                                                T, CLASS_TRANSACTION, 1 },
    { "release savepoint a",                                        T, CLASS_TRANSACTION, 1 },
    { "rollback to savepoint a",                                    T, CLASS_TRANSACTION, 1 },
    { "prepare transaction 'x'",                                    T, CLASS_TRANSACTION, 1 },
    { "commit prepared 'x'",                                        T, CLASS_TRANSACTION, 1 },
    { "rollback prepared 'x'",                                      T, CLASS_TRANSACTION, 1 },
    { "set transaction isolation level serializable",              T, CLASS_TRANSACTION, 1 },
    { "set constraints all deferred",                               T, CLASS_TRANSACTION, 1 },
    /* session */
    { "set search_path to public",                                  S, CLASS_SESSION, 1 },
    { "set time zone 'UTC'",                                        S, CLASS_SESSION, 1 },
    { "set session characteristics as transaction read only",      S, CLASS_SESSION, 1 },
    { "reset all",                                                  S, CLASS_SESSION, 1 },
    { "discard all",                                                S, CLASS_SESSION, 1 },
    { "listen ch",                                                  S, CLASS_SESSION, 1 },
    { "notify ch, 'x'",                                             S, CLASS_SESSION, 1 },
    { "unlisten *",                                                 S, CLASS_SESSION, 1 },
    { "deallocate p",                                               S, CLASS_SESSION, 1 },
    { "prepare p as select * from t where id = $1",                 R, CLASS_READ, 1 },
    { "prepare p (int) as delete from t where id = $1",             W, CLASS_WRITE, 1 },
    /* what hides in comments, strings, identifiers */
    { "/* DROP TABLE x */ select 1",                                R, CLASS_READ, 1 },
    { "-- drop table x\nselect 1",                                  R, CLASS_READ, 1 },
    { "select 1 /* ; drop table t; */",                             R, CLASS_READ, 1 },
    { "select $$drop table x$$",                                    R, CLASS_READ, 1 },
    { "select $tag$; drop table x; $tag$",                          R, CLASS_READ, 1 },
    { "select * from \"DROP\"",                                     R, CLASS_READ, 1 },
    { "select U&'\\0064rop table t'",                               R, CLASS_READ, 1 },
    { "select U&\"\\0064rop\" from t",                              R, CLASS_READ, 1 },
    { "select 'a'';drop table t;--'",                               R, CLASS_READ, 1 },
    { "select E'\\';drop table t;--'",                              R, CLASS_READ, 1 },
    /* batches: every statement counts */
    { "select 1; drop table t",                                     R | D, CLASS_DDL, 2 },
    { "select 1; select 2;",                                        R, CLASS_READ, 2 },
    { "begin; delete from t; commit",                               T | W, CLASS_WRITE, 3 },
    { "select 1; set role admin; select 2",                         R | P, CLASS_PRIVILEGED, 3 },
    /* what cannot be classified */
    { "selec 1",                                                    U, CLASS_UNKNOWN, 0 },
    { "select 1; selec 2",                                          U, CLASS_UNKNOWN, 0 },
    { "select '{}' is json",                                        U, CLASS_UNKNOWN, 0 }, /* PG16 */
    { "merge into t using s on t.a = s.a when matched then delete returning *",
                                                                    U, CLASS_UNKNOWN, 0 }, /* PG17 */
    { "prepare a as select 1; prepare b as delete from t",          U, CLASS_UNKNOWN, 2 },
    /* nothing at all: EmptyQueryResponse */
    { "",                                                           0, CLASS_READ, 0 },
    { "   \n\t",                                                    0, CLASS_READ, 0 },
    { "-- only a comment",                                          0, CLASS_READ, 0 },
    { ";",                                                          0, CLASS_READ, 0 },
};

static void test_classes(void **state)
{
    (void)state;
    struct guard *g = guard_plain();
    for (size_t i = 0; i < sizeof class_cases / sizeof class_cases[0]; i++) {
        struct guard_verdict v;
        classify(g, class_cases[i].sql, &v);
        if (v.classes != class_cases[i].want)
            fail_classes(class_cases[i].sql, v.classes, class_cases[i].want, v.reason);
        if (v.worst != class_cases[i].worst)
            fail_msg("%s: worst %s want %s", class_cases[i].sql, stmt_class_name(v.worst),
                     stmt_class_name(class_cases[i].worst));
        if (v.n_statements != class_cases[i].n_statements)
            fail_msg("%s: %d statements want %d", class_cases[i].sql, v.n_statements,
                     class_cases[i].n_statements);
        if ((v.classes & U) && !v.reason[0])
            fail_msg("%s: unknown without a reason", class_cases[i].sql);
    }
    guard_free(g);
}

static void test_unknown_reasons(void **state)
{
    (void)state;
    struct guard_options opt;
    guard_options_default(&opt);
    opt.max_statement_length = 32;
    struct guard *g = guard_new(&opt);
    assert_non_null(g);
    struct guard_verdict v;

    classify(g, "selec 1", &v);
    assert_int_equal(v.worst, CLASS_UNKNOWN);
    assert_non_null(strstr(v.reason, "syntax error"));

    const char *longer = "select a, b, c, d, e from some_table where x = 1";  /* 48 bytes */
    classify(g, longer, &v);
    assert_int_equal(v.classes, U);
    assert_non_null(strstr(v.reason, "max_statement_length"));
    classify(g, "select 1", &v);                             /* short still parses */
    assert_int_equal(v.classes, R);

    guard_classify(g, NULL, 0, &v);                          /* nothing: empty query */
    assert_int_equal(v.classes, 0);
    assert_int_equal(v.n_statements, 0);

    const char nul[] = "select 1\0; drop table t";
    guard_classify(g, nul, sizeof nul - 1, &v);
    assert_int_equal(v.classes, U);
    assert_non_null(strstr(v.reason, "NUL"));
    guard_free(g);
}

/* The text need not be NUL-terminated: only len bytes count. */
static void test_length_is_respected(void **state)
{
    (void)state;
    struct guard *g = guard_plain();
    struct guard_verdict v;
    const char *sql = "select 1; drop table t";
    guard_classify(g, sql, 8, &v);
    assert_int_equal(v.classes, R);
    assert_int_equal(v.n_statements, 1);
    guard_classify(g, sql, strlen(sql), &v);
    assert_int_equal(v.classes, R | D);
    guard_free(g);
}

static char *nested_select(int depth)
{
    size_t size = (size_t)depth * 9 + 16;
    char *s = malloc(size);
    assert_non_null(s);
    char *p = s;
    p += sprintf(p, "select ");
    for (int i = 0; i < depth; i++)
        p += sprintf(p, "(select ");
    p += sprintf(p, "1");
    for (int i = 0; i < depth; i++)
        *p++ = ')';
    *p = '\0';
    return s;
}

static void test_deep_nesting(void **state)
{
    (void)state;
    struct guard *g = guard_plain();
    struct guard_verdict v;
    char *shallow = nested_select(50);
    classify(g, shallow, &v);
    assert_int_equal(v.classes, R);
    free(shallow);

    char *deep = nested_select(500);          /* parses, but too deep to walk: fail closed */
    classify(g, deep, &v);
    assert_int_equal(v.classes, U);
    assert_true(v.reason[0] != '\0');
    free(deep);

    char *deeper = nested_select(5000);       /* the parser's own depth check */
    classify(g, deeper, &v);
    assert_int_equal(v.classes, U);
    free(deeper);
    guard_free(g);
}

/* ---- lexing ------------------------------------------------------------------------ */

static const struct { const char *sql; bool want; } lexing_cases[] = {
    { "set standard_conforming_strings = off",                        true },
    { "set standard_conforming_strings = on",                         false },
    { "set standard_conforming_strings to true",                      false },
    { "set standard_conforming_strings = 1",                          false },
    { "set standard_conforming_strings = 0",                          true },
    { "SET Standard_Conforming_Strings TO 'OFF'",                     true },
    { "set local standard_conforming_strings = off",                  true },
    { "set session standard_conforming_strings to 'off'",             true },
    { "set standard_conforming_strings to default",                   true },
    { "reset standard_conforming_strings",                            true },
    { "set standard_conforming_strings from current",                 true },
    { "reset all",                                                    false },
    { "discard all",                                                  false },
    { "set client_encoding = 'latin1'",                               true },
    { "set client_encoding to 'UTF8'",                                false },
    { "set client_encoding = 'utf-8'",                                false },
    { "set client_encoding to 'unicode'",                             false },
    { "SET CLIENT_ENCODING TO 'SQL_ASCII'",                           true },
    { "set client_encoding = 'utf8', 'latin1'",                       true },
    { "reset client_encoding",                                        true },
    { "set names 'latin1'",                                           true },
    { "set names 'utf8'",                                             false },
    { "set names default",                                            true },
    { "set search_path = x",                                          false },
    { "set role admin",                                               false },
    { "select set_config('standard_conforming_strings', 'off', false)", true },
    { "select set_config('standard_conforming_strings', 'on', false)", false },
    { "select set_config('client_encoding', 'sjis', true)",           true },
    { "select set_config('client_encoding', 'UTF8', true)",           false },
    { "select set_config('Client_Encoding', 'latin1', true)",         true },
    { "select set_config($1, 'x', true)",                             true },
    { "select set_config('client_encoding', $1, false)",              true },
    { "select 1 from t where set_config('client_encoding', 'big5', true) is not null", true },
    { "select set_config('search_path', 'x', true)",                  false },
    { "alter role app set client_encoding = 'latin1'",                true },
    { "alter role app in database d set standard_conforming_strings = off", true },
    { "alter role app reset client_encoding",                         true },
    { "alter role app set search_path = x",                           false },
    { "alter database d set standard_conforming_strings to off",      true },
    { "alter database d set client_encoding = 'UTF8'",                false },
    { "alter system set standard_conforming_strings = off",           true },
    { "create function f() returns int language sql set client_encoding = 'latin1' "
      "as 'select 1'",                                                true },
    { "alter function f() set standard_conforming_strings = off",     true },
    { "select 1; set standard_conforming_strings = off",              true },
    { "begin; set local client_encoding = 'win1252'; commit",         true },
    { "update pg_settings set setting = 'off' where name = 'standard_conforming_strings'", true },
    { "select 'set standard_conforming_strings = off'",               false },
    { "select * from pg_settings where name = 'client_encoding'",     false },
};

static void test_lexing_change(void **state)
{
    (void)state;
    struct guard *g = guard_plain();
    for (size_t i = 0; i < sizeof lexing_cases / sizeof lexing_cases[0]; i++) {
        struct guard_verdict v;
        classify(g, lexing_cases[i].sql, &v);
        if (v.classes & U)
            fail_msg("%s: unknown (%s)", lexing_cases[i].sql, v.reason);
        if (v.lexing_change != lexing_cases[i].want)
            fail_msg("%s: lexing_change %d want %d", lexing_cases[i].sql, v.lexing_change,
                     lexing_cases[i].want);
    }
    guard_free(g);
}

/* ---- PREPARE / EXECUTE / DEALLOCATE ----------------------------------------------- */

static void test_prepared_names(void **state)
{
    (void)state;
    static const struct {
        const char *sql;
        const char *prepare, *execute;
        class_set prepare_classes, besides_execute;
        bool deallocate;
        const char *deallocate_name;
    } cases[] = {
        { "prepare p1 as delete from t where id = $1", "p1", "", W, W, false, "" },
        { "PREPARE \"Mixed\" (int) AS select $1",      "Mixed", "", R, R, false, "" },
        { "prepare q as select 1; select 2",           "q", "", R, R, false, "" },
        { "execute p1(1)",                              "", "p1", 0, 0, false, "" },
        { "execute p1((select pg_read_file('x')))",     "", "p1", 0, R | P, false, "" },
        { "explain analyze execute p1",                 "", "p1", 0, 0, false, "" },
        { "create table x as execute p1",               "", "p1", 0, D, false, "" },
        { "execute p1; execute p1",                     "", "p1", 0, 0, false, "" },
        { "begin; execute p1; commit",                  "", "p1", 0, T, false, "" },
        { "explain execute p1",                         "", "", 0, R, false, "" },
        { "deallocate p1",                              "", "", 0, S, true, "p1" },
        { "deallocate prepare p1",                      "", "", 0, S, true, "p1" },
        { "deallocate all",                             "", "", 0, S, true, "" },
        { "select 1",                                   "", "", 0, R, false, "" },
    };
    struct guard *g = guard_plain();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct guard_verdict v;
        classify(g, cases[i].sql, &v);
        if (strcmp(v.prepare_name, cases[i].prepare) != 0 ||
            strcmp(v.execute_name, cases[i].execute) != 0 ||
            v.deallocate != cases[i].deallocate ||
            strcmp(v.deallocate_name, cases[i].deallocate_name) != 0)
            fail_msg("%s: prepare '%s' execute '%s' deallocate %d '%s'", cases[i].sql,
                     v.prepare_name, v.execute_name, v.deallocate, v.deallocate_name);
        if (cases[i].prepare[0] && v.prepare_classes != cases[i].prepare_classes)
            fail_classes(cases[i].sql, v.prepare_classes, cases[i].prepare_classes, "prepare");
        if (v.classes_besides_execute != cases[i].besides_execute)
            fail_classes(cases[i].sql, v.classes_besides_execute, cases[i].besides_execute,
                         "besides execute");
        /* An unresolved EXECUTE fails closed. */
        if (cases[i].execute[0] && !(v.classes & U))
            fail_msg("%s: EXECUTE without CLASS_UNKNOWN", cases[i].sql);
        if (!cases[i].execute[0] && (v.classes & U))
            fail_msg("%s: unexpected unknown (%s)", cases[i].sql, v.reason);
    }
    guard_free(g);
}

static void test_resolve_execute(void **state)
{
    (void)state;
    struct guard *g = guard_plain();
    struct guard_verdict v;
    classify(g, "begin; execute p1(1)", &v);
    assert_int_equal(v.worst, CLASS_UNKNOWN);
    guard_resolve_execute(&v, W);
    assert_int_equal(v.classes, T | W);
    assert_int_equal(v.worst, CLASS_WRITE);

    classify(g, "select 1", &v);                 /* no EXECUTE: nothing to resolve */
    guard_resolve_execute(&v, D);
    assert_int_equal(v.classes, R);

    classify(g, "execute a; execute b", &v);     /* two names cannot be resolved at once */
    assert_int_equal(v.classes, U);
    assert_string_equal(v.execute_name, "");
    guard_free(g);
}

/* ---- privileged function list ----------------------------------------------------- */

static void test_custom_function_list(void **state)
{
    (void)state;
    static const char *const funcs[] = { "myschema.evil", "Other_Fn" };
    struct guard_options opt;
    guard_options_default(&opt);
    opt.privileged_functions = funcs;
    opt.n_privileged_functions = 2;
    struct guard *g = guard_new(&opt);
    assert_non_null(g);
    static const struct { const char *sql; class_set want; } cases[] = {
        { "select myschema.evil()",        R | P },
        { "select evil()",                 R | P },   /* search_path may reach myschema */
        { "select elsewhere.evil()",       R },
        { "select other_fn(1)",            R | P },
        { "select x.OTHER_FN(1)",          R | P },
        { "select dblink('a', 'b')",       R },       /* the list replaces the default */
        { "select set_config('role', 'x', false)", R | P },   /* built in, not from the list */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct guard_verdict v;
        classify(g, cases[i].sql, &v);
        if (v.classes != cases[i].want)
            fail_classes(cases[i].sql, v.classes, cases[i].want, v.reason);
    }
    guard_free(g);

    opt.n_privileged_functions = 0;              /* empty list */
    g = guard_new(&opt);
    assert_non_null(g);
    struct guard_verdict v;
    classify(g, "select pg_read_file('x')", &v);
    assert_int_equal(v.classes, R);
    guard_free(g);

    static const char *const bad[][1] = { { "" }, { "s." }, { ".f" } };
    for (size_t i = 0; i < 3; i++) {
        opt.privileged_functions = bad[i];
        opt.n_privileged_functions = 1;
        assert_null(guard_new(&opt));
    }
}

static void test_worst_order(void **state)
{
    (void)state;
    assert_int_equal(guard_worst_class(0), CLASS_READ);
    assert_int_equal(guard_worst_class(R | W), CLASS_WRITE);
    assert_int_equal(guard_worst_class(W | D), CLASS_DDL);
    assert_int_equal(guard_worst_class(D | RO), CLASS_ROLE);
    assert_int_equal(guard_worst_class(RO | P), CLASS_PRIVILEGED);
    assert_int_equal(guard_worst_class(P | U), CLASS_UNKNOWN);
    assert_int_equal(guard_worst_class(T | S), CLASS_SESSION);
    assert_int_equal(guard_worst_class(S | M), CLASS_MAINTENANCE);
    assert_int_equal(guard_worst_class(M | W), CLASS_WRITE);
    assert_int_equal(guard_worst_class(W | F), CLASS_FUNCTION);
}

/* ---- the cache --------------------------------------------------------------------- */

static void test_cache_hits(void **state)
{
    (void)state;
    struct guard *g = guard_plain();
    struct guard_stats st;
    struct guard_verdict a, b;
    classify(g, "select 1; drop table t", &a);
    classify(g, "select 1; drop table t", &b);
    guard_get_stats(g, &st);
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.hits, 1);
    assert_memory_equal(&a, &b, sizeof a);
    classify(g, "select 1; drop table  t", &b);  /* one byte differs: a miss */
    guard_get_stats(g, &st);
    assert_int_equal(st.misses, 2);
    /* the cached verdict of an unknown keeps its reason */
    classify(g, "selec 1", &a);
    classify(g, "selec 1", &b);
    assert_int_equal(b.classes, U);
    assert_string_equal(a.reason, b.reason);
    guard_free(g);
}

static void test_cache_eviction(void **state)
{
    (void)state;
    struct guard_options opt;
    guard_options_default(&opt);
    opt.cache_entries = 4;
    struct guard *g = guard_new(&opt);
    assert_non_null(g);
    struct guard_verdict v;
    char sql[64];
    for (int i = 0; i < 20; i++) {
        snprintf(sql, sizeof sql, "select %d", i);
        classify(g, sql, &v);
        assert_int_equal(v.classes, R);
    }
    struct guard_stats st;
    guard_get_stats(g, &st);
    assert_int_equal(st.misses, 20);
    assert_int_equal(st.hits, 0);
    assert_int_equal(st.evictions, 16);
    classify(g, "select 19", &v);                /* the newest is still there */
    guard_get_stats(g, &st);
    assert_int_equal(st.hits, 1);
    /* A referenced entry survives one sweep of the clock. */
    for (int i = 100; i < 104; i++) {         /* as many as the cache holds */
        snprintf(sql, sizeof sql, "select %d", i);
        classify(g, sql, &v);
    }
    classify(g, "select 19", &v);
    guard_get_stats(g, &st);
    assert_int_equal(st.hits, 2);
    guard_free(g);
}

static void test_cache_limits(void **state)
{
    (void)state;
    struct guard_options opt;
    guard_options_default(&opt);
    opt.cache_entries = 0;                       /* disabled */
    struct guard *g = guard_new(&opt);
    assert_non_null(g);
    struct guard_verdict v;
    struct guard_stats st;
    classify(g, "select 1", &v);
    classify(g, "select 1", &v);
    assert_int_equal(v.classes, R);
    guard_get_stats(g, &st);
    assert_int_equal(st.hits, 0);
    assert_int_equal(st.misses, 2);
    guard_free(g);

    guard_options_default(&opt);
    opt.max_statement_length = 40;
    opt.cache_max_text = 12;
    g = guard_new(&opt);
    assert_non_null(g);
    classify(g, "select 1, 2, 3", &v);           /* 14 > 12: parsed, not cached */
    classify(g, "select 1, 2, 3", &v);
    assert_int_equal(v.classes, R);
    const char *too_long = "select 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12";
    classify(g, too_long, &v);                   /* over max: neither parsed nor cached */
    classify(g, too_long, &v);
    assert_int_equal(v.classes, U);
    guard_get_stats(g, &st);
    assert_int_equal(st.hits, 0);
    assert_int_equal(st.misses, 2);
    guard_free(g);
}

/* ---- audit helpers ----------------------------------------------------------------- */

static void test_normalize_fingerprint(void **state)
{
    (void)state;
    static const char *const secrets[][2] = {
        { "select * from t where cpf = '123'",              "123" },
        { "insert into users (email, pw) values ('a@b.c', 'hunter2')", "hunter2" },
        { "update t set card = 4111111111111111 where id = 7", "4111111111111111" },
        { "select * from t where name = $$o'brien$$",       "brien" },
    };
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
        char *n = guard_normalize(secrets[i][0]);
        char *f = guard_fingerprint(secrets[i][0]);
        assert_non_null(n);
        assert_non_null(f);
        if (strstr(n, secrets[i][1]) || strstr(f, secrets[i][1]))
            fail_msg("%s leaks %s: normalized '%s' fingerprint '%s'", secrets[i][0],
                     secrets[i][1], n, f);
        assert_non_null(strstr(n, "$1"));
        assert_int_equal(strlen(f), 16);
        assert_int_equal(strspn(f, "0123456789abcdef"), 16);
        free(n);
        free(f);
    }
    char *f1 = guard_fingerprint("select * from t where cpf = '123'");
    char *f2 = guard_fingerprint("SELECT * FROM t WHERE cpf = '999'");
    assert_string_equal(f1, f2);                 /* same shape, same fingerprint */
    free(f1);
    free(f2);
    assert_null(guard_fingerprint("selec 1"));
    assert_null(guard_normalize(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_table_covers_proto),
        cmocka_unit_test(test_node_table_entries),
        cmocka_unit_test(test_classes),
        cmocka_unit_test(test_unknown_reasons),
        cmocka_unit_test(test_length_is_respected),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_lexing_change),
        cmocka_unit_test(test_prepared_names),
        cmocka_unit_test(test_resolve_execute),
        cmocka_unit_test(test_custom_function_list),
        cmocka_unit_test(test_worst_order),
        cmocka_unit_test(test_cache_hits),
        cmocka_unit_test(test_cache_eviction),
        cmocka_unit_test(test_cache_limits),
        cmocka_unit_test(test_normalize_fingerprint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
