/* test_guard.c — the statement classifier: the node table against pg_query.proto, SQL → classes
 * tables (nested forms, lexing traps, privileged functions), PREPARE/EXECUTE/DEALLOCATE, the
 * verdict cache, and normalize/fingerprint. Runs on the main thread (8 MB stack). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
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
    /* found in review: each of these ran DDL, a write or a privileged call on a real server */
    { "SELECT 1 AS a INTO t2 UNION SELECT 2",                       R | D, CLASS_DDL, 1 },
    { "SELECT * INTO t9 FROM t EXCEPT SELECT * FROM t",             R | D, CLASS_DDL, 1 },
    { "(SELECT 1 INTO t2) UNION SELECT 2",                          R | D, CLASS_DDL, 1 },
    { "EXPLAIN (ANALYZE false, ANALYZE true) CREATE TABLE t3 AS SELECT 1", R | D, CLASS_DDL, 1 },
    { "EXPLAIN (ANALYZE 0, ANALYZE 1) DELETE FROM t",               W, CLASS_WRITE, 1 },
    { "EXPLAIN (ANALYZE 'off', ANALYZE 'on') DELETE FROM t",        W, CLASS_WRITE, 1 },
    { "EXPLAIN (ANALYZE true, ANALYZE false) DELETE FROM t",        R, CLASS_READ, 1 },
    { "SELECT (c).pg_read_file FROM (SELECT 'PG_VERSION'::text c) s", R | P, CLASS_PRIVILEGED, 1 },
    { "SELECT (c).LO_IMPORT FROM (SELECT '/etc/hostname'::text c) s", R | P, CLASS_PRIVILEGED, 1 },
    { "SELECT s.c.pg_terminate_backend FROM s",                     R | P, CLASS_PRIVILEGED, 1 },
    { "SELECT t.id, t.note FROM t",                                 R, CLASS_READ, 1 },
    { "SELECT * FROM ts_stat('SELECT to_tsvector(set_config(''role'',''admin'',false))')",
                                                                    R | P, CLASS_PRIVILEGED, 1 },
    { "SELECT ts_rewrite('a'::tsquery, 'SELECT 1')",                R | P, CLASS_PRIVILEGED, 1 },
    { "SELECT * FROM crosstab('select 1') AS ct(a int)",            R | P, CLASS_PRIVILEGED, 1 },
    { "CALL public.dblink_exec('host=x', 'drop table t')",          F | P, CLASS_PRIVILEGED, 1 },
    { "CALL app.close_month(1)",                                    F, CLASS_FUNCTION, 1 },
    { "ALTER DATABASE d SET role = admin",                          D | P, CLASS_PRIVILEGED, 1 },
    { "ALTER DATABASE d SET session_authorization = admin",         D | P, CLASS_PRIVILEGED, 1 },
    { "ALTER ROLE r SET role = admin",                              RO | P, CLASS_PRIVILEGED, 1 },
    { "ALTER ROLE r IN DATABASE d SET search_path = app",           RO, CLASS_ROLE, 1 },
    { "DROP EVENT TRIGGER pgsov_ddl_guard",                         D | P, CLASS_PRIVILEGED, 1 },
    { "DROP TABLE t",                                               D, CLASS_DDL, 1 },
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

struct function_case {
    const char *sql;
    class_set want;
};

/* A guard with this privileged_functions list classifies each case's SQL as it wants. */
static void expect_with_functions(const char *const *funcs, size_t n_funcs,
                                  const struct function_case *cases, size_t n_cases)
{
    struct guard_options opt;
    guard_options_default(&opt);
    opt.privileged_functions = funcs;
    opt.n_privileged_functions = n_funcs;
    struct guard *g = guard_new(&opt);
    assert_non_null(g);
    for (size_t i = 0; i < n_cases; i++) {
        struct guard_verdict v;
        classify(g, cases[i].sql, &v);
        if (v.classes != cases[i].want)
            fail_classes(cases[i].sql, v.classes, cases[i].want, v.reason);
    }
    guard_free(g);
}

static void test_custom_function_list(void **state)
{
    (void)state;
    static const char *const funcs[] = { "myschema.evil", "Other_Fn" };
    static const struct function_case cases[] = {
        { "select myschema.evil()",        R | P },
        { "select evil()",                 R | P },   /* search_path may reach myschema */
        { "select elsewhere.evil()",       R },
        { "select other_fn(1)",            R | P },
        { "select x.OTHER_FN(1)",          R | P },
        { "select dblink('a', 'b')",       R },       /* the list replaces the default */
        { "select set_config('role', 'x', false)", R | P },   /* built in, not from the list */
    };
    expect_with_functions(funcs, 2, cases, sizeof cases / sizeof cases[0]);

    /* "default" in the list stands for the built-in one: add, do not replace */
    static const char *const extended[] = { "DEFAULT", "myschema.evil" };
    static const struct function_case cases2[] = {
        { "select myschema.evil()",        R | P },
        { "select dblink('a', 'b')",       R | P },
        { "select * from ts_stat('x')",    R | P },
        { "select other_fn(1)",            R },
    };
    expect_with_functions(extended, 2, cases2, sizeof cases2 / sizeof cases2[0]);

    struct guard_options opt;
    guard_options_default(&opt);
    opt.privileged_functions = funcs;
    struct guard *g;
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
    classify(g, "select 1; drop table  t", &b);  /* one byte differs: an exact-level miss, */
    guard_get_stats(g, &st);                     /* the same tokens: a masked-level hit   */
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.masked_hits, 1);
    assert_int_equal(b.classes, R | D);
    classify(g, "select 1; drop table u", &b);   /* another identifier: a miss */
    guard_get_stats(g, &st);
    assert_int_equal(st.misses, 2);
    assert_int_equal(st.masked_hits, 1);
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
    opt.masked_cache_off = true;                 /* the exact level alone */
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

/* ---- the masked level ------------------------------------------------------------- */

static struct guard *guard_uncached(void)
{
    struct guard_options opt;
    guard_options_default(&opt);
    opt.cache_entries = 0;
    struct guard *g = guard_new(&opt);
    assert_non_null(g);
    return g;
}

/* Every field a caller reads; reason only matters for unknown (never shared) and EXECUTE. */
static void assert_verdict_equal(const char *sql, const struct guard_verdict *got,
                                 const struct guard_verdict *want)
{
    if (got->classes != want->classes)
        fail_classes(sql, got->classes, want->classes, want->reason);
    if (got->worst != want->worst || got->n_statements != want->n_statements ||
        got->lexing_change != want->lexing_change ||
        got->classes_besides_execute != want->classes_besides_execute ||
        got->prepare_classes != want->prepare_classes || got->deallocate != want->deallocate ||
        strcmp(got->prepare_name, want->prepare_name) != 0 ||
        strcmp(got->execute_name, want->execute_name) != 0 ||
        strcmp(got->deallocate_name, want->deallocate_name) != 0 ||
        strcmp(got->reason, want->reason) != 0)
        fail_msg("%s: cached verdict differs from a fresh classification (worst %s/%s, "
                 "statements %d/%d, lexing %d/%d, reason '%s'/'%s')", sql,
                 stmt_class_name(got->worst), stmt_class_name(want->worst), got->n_statements,
                 want->n_statements, got->lexing_change, want->lexing_change, got->reason,
                 want->reason);
}

/* B differs from A only in literal values (or comments, white space): B comes from the
 * masked level, and equals a fresh classification of B. */
static const struct { const char *a, *b; class_set want; } masked_share_cases[] = {
    { "SELECT abalance FROM pgbench_accounts WHERE aid = 81734;",
      "SELECT abalance FROM pgbench_accounts WHERE aid = 5;",                       R },
    { "UPDATE pgbench_accounts SET abalance = abalance + -4075 WHERE aid = 5361;",
      "UPDATE pgbench_accounts SET abalance = abalance + -12 WHERE aid = 99999999;", W },
    { "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 42, -3, "
      "CURRENT_TIMESTAMP);",
      "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 9, 0, -1, "
      "CURRENT_TIMESTAMP);",                                                          W },
    { "delete from sessions where expires < '2024-01-01'",
      "delete from sessions where expires < 'it''s; drop table t; --'",               W },
    { "insert into users (name, email) values ('alice', 'a@example.com')",
      "insert into users (name, email) values ('', 'set role postgres')",             W },
    { "select * from t where s = E'a\\'b'",
      "select * from t where s = E'\\x41\\n'",                                      R },
    { "select * from t where s = $$plain$$",
      "select * from t where s = $q$; drop table t; $q$",                             R },
    { "select * from t where a = any(ARRAY[1, 2, 3])",
      "select * from t where a = any(ARRAY[4, 5, 6])",                                R },
    { "select * from t where a = any('{1,2}'::int[])",
      "select * from t where a = any('{9}'::int[])",                                  R },
    { "select '2024-01-01'::date, 1.5::numeric(10,2), interval '7 days'",
      "select 'x'::date, 2.5e10::numeric(10,2), interval '1 hour'",                   R },
    { "select * from t where id in (1, 2, 3) limit 10 offset 20",
      "select * from t where id in (4, 5, 6) limit 1 offset 0",                       R },
    { "select B'0101', X'1F', N'abc', 'a'\n'b'",
      "select B'1', X'00', N'', 'c'\n 'd'",                                           R },
    { "/* app=1 */ select * from t where id = 1",
      "-- app=2\nselect  *  from t\twhere id = 2 /* trailing */",                     R },
    { "with x as (delete from jobs where state = 'done' returning *) select * from x",
      "with x as (delete from jobs where state = 'failed' returning *) select * from x",
                                                                                      R | W },
    { "select pg_read_file('/etc/passwd')",
      "select pg_read_file('harmless')",                                              R | P },
    { "copy t from '/tmp/a.csv'",               "copy t from ''",                     P },
    { "copy (select * from t where a = 1) to stdout",
      "copy (select * from t where a = 2) to stdout",                                 R },
    { "set search_path = 'a'",                  "set search_path = 'b'",              S },
    { "set role 'admin'",                       "set role 'nobody'",                  P },
    { "set statement_timeout = 100",            "set statement_timeout = 0",          S },
    { "explain select * from t where a = 1",    "explain select * from t where a = 2", R },
    { "explain analyze delete from t where a = 1",
      "explain analyze delete from t where a = 2",                                    W },
    { "select 1::float(10)",                    "select 2::float(10)",                R },
    { "select 1; select 'a'",                   "select 2; select 'b'",               R },
    { "select * from t where name = 'José'",    "select * from t where name = 'Zoë 東京'", R },
};

static void test_masked_shares(void **state)
{
    (void)state;
    struct guard *fresh = guard_uncached();
    for (size_t i = 0; i < sizeof masked_share_cases / sizeof masked_share_cases[0]; i++) {
        struct guard *g = guard_plain();
        struct guard_verdict va, vb, want;
        struct guard_stats st;
        classify(g, masked_share_cases[i].a, &va);
        classify(g, masked_share_cases[i].b, &vb);
        classify(fresh, masked_share_cases[i].b, &want);
        if (va.classes & U)
            fail_msg("%s: unknown (%s)", masked_share_cases[i].a, va.reason);
        guard_get_stats(g, &st);
        if (st.masked_hits + st.digit_hits != 1 || st.misses != 1)
            fail_msg("%s: not shared by the masked or digit level (%llu masked hits, %llu digit "
                     "hits, %llu misses)", masked_share_cases[i].b,
                     (unsigned long long)st.masked_hits, (unsigned long long)st.digit_hits,
                     (unsigned long long)st.misses);
        assert_verdict_equal(masked_share_cases[i].b, &vb, &want);
        if (vb.classes != masked_share_cases[i].want)
            fail_classes(masked_share_cases[i].b, vb.classes, masked_share_cases[i].want,
                         vb.reason);
        guard_free(g);
    }
    guard_free(fresh);
}

/* Pairs where a literal's value decides the verdict, or the grammar reads it: the masked
 * level must not serve B, and B's verdict must be its own. */
static const struct { const char *a, *b; } masked_refuse_cases[] = {
    { "SET standard_conforming_strings = on",          "SET standard_conforming_strings = off" },
    { "SET standard_conforming_strings = 'on'",        "SET standard_conforming_strings = 'off'" },
    { "SET standard_conforming_strings = 1",           "SET standard_conforming_strings = 0" },
    { "SET LOCAL standard_conforming_strings = 'on'",  "SET LOCAL standard_conforming_strings = 'no'" },
    { "SET client_encoding = 'UTF8'",                  "SET client_encoding = 'LATIN1'" },
    { "SET NAMES 'utf8'",                              "SET NAMES 'sjis'" },
    { "select set_config('application_name','x',false)", "select set_config('role','postgres',false)" },
    { "select set_config('search_path','x',false)",    "select set_config('session_authorization','x',false)" },
    { "select set_config('client_encoding','UTF8',true)", "select set_config('client_encoding','big5',true)" },
    { "select 1 from t where set_config('client_encoding', 'UTF8', true) is not null",
      "select 1 from t where set_config('client_encoding', 'win1252', true) is not null" },
    { "explain (analyze false) delete from t",         "explain (analyze true) delete from t" },
    { "explain (analyze 0) delete from t",             "explain (analyze 1) delete from t" },
    { "explain (analyze 'off') delete from t",         "explain (analyze 'on') delete from t" },
    { "explain (analyze 'no') select pg_read_file('x')", "explain (analyze 'yes') update t set a = 1" },
    { "explain select set_config('application_name','x',false)",
      "explain select set_config('role','x',false)" },
    { "alter role app set client_encoding = 'UTF8'",   "alter role app set client_encoding = 'LATIN1'" },
    { "alter database d set standard_conforming_strings = 'on'",
      "alter database d set standard_conforming_strings = 'off'" },
    { "alter system set standard_conforming_strings = 'on'",
      "alter system set standard_conforming_strings = 'off'" },
    { "copy t to stdout",                              "copy t to '/tmp/t.csv'" },
    { "copy t from stdin",                             "copy t from '/etc/passwd'" },
    { "copy t from stdin with (format csv)",           "copy t from program 'curl x'" },
    /* UESCAPE makes a string literal part of an identifier */
    { "select U&\"pg_read_fil!0065\" UESCAPE '\\' ('x')",
      "select U&\"pg_read_fil!0065\" UESCAPE '!' ('x')" },
    /* the parser decodes U&'' strings and rejects bad escapes */
    { "select U&'\\0041' from t",                      "select U&'\\zzzz' from t" },
    /* grammar actions that test a literal's value */
    { "select 1::float(10)",                           "select 1::float(60)" },
    { "select 1::float(10)",                           "select 1::float(0)" },
    { "alter table t alter 1 set statistics 100",      "alter table t alter 0 set statistics 100" },
    { "alter table t alter column 2 set statistics 1", "alter table t alter column 40000 set statistics 1" },
    /* bytes that are not UTF-8 make libpg_query's JSON tree unreadable: unknown */
    { "select * from t where a = 'abc'",               "select * from t where a = 'a\xff\xfe'" },
    { "select * from t where a = 'é'",                 "select * from t where a = '\xc3'" },
    /* names are kept: PREPARE/EXECUTE/DEALLOCATE are never shared */
    { "prepare p as select * from t where a = 1",      "prepare p as delete from t where a = 2" },
    { "execute p(1)",                                  "execute p(2)" },
    { "deallocate p",                                  "deallocate q" },
    /* identifiers, keywords and operators are kept */
    { "select * from t where a = 1",                   "select * from pg_settings where a = 1" },
    { "update t set a = 1",                            "update pg_settings set a = 1" },
    { "select lower('x')",                             "select dblink('x')" },
    { "select a + 1 from t",                           "select a - 1 from t" },
    { "select \"lower\"('x')",                         "select \"pg_ls_dir\"('x')" },
};

static void test_masked_refuses(void **state)
{
    (void)state;
    struct guard *fresh = guard_uncached();
    for (size_t i = 0; i < sizeof masked_refuse_cases / sizeof masked_refuse_cases[0]; i++) {
        struct guard *g = guard_plain();
        struct guard_verdict va, vb, want;
        struct guard_stats st;
        classify(g, masked_refuse_cases[i].a, &va);
        classify(g, masked_refuse_cases[i].b, &vb);
        classify(g, masked_refuse_cases[i].a, &va);     /* and back: exact level only */
        classify(fresh, masked_refuse_cases[i].b, &want);
        guard_get_stats(g, &st);
        if (st.masked_hits != 0)
            fail_msg("%s: served by the masked level after %s", masked_refuse_cases[i].b,
                     masked_refuse_cases[i].a);
        assert_int_equal(st.misses, 2);
        assert_verdict_equal(masked_refuse_cases[i].b, &vb, &want);
        guard_free(g);
    }
    guard_free(fresh);
}

/* Placeholders in a template: %I integer, %F float, %S string, %E E'' string, %D dollar
 * string, %B bit string, %X hex string. Values include the ones the guard reads. */
static const char *const val_int[] = { "0", "1", "2", "42", "-7", "2147483647", "99999999999" };
static const char *const val_float[] = { "1.5", "0.0", "1e10", ".5" };
static const char *const val_str[] = {
    "'x'", "''", "'off'", "'on'", "'role'", "'client_encoding'", "'UTF8'", "'latin1'",
    "'standard_conforming_strings'", "'it''s'", "'0'", "'1'", "'session_authorization'",
    "'false'", "'search_path'", "'; drop table t; --'", "'caf\xc3\xa9'", "'\xff'", "'\x01\t'",
    "'\\'",
};
static const char *const val_estr[] = {
    "E'off'", "E'a\\'b'", "E'\\x41'", "e'UTF8'", "E'\\001'", "E'\\xff'", "E'\\u00e9'",
    "E'\\u0000'", "E'\\'",
};
static const char *const val_dollar[] = { "$$x$$", "$q$off$q$", "$$role$$", "$t$'$t$" };
static const char *const val_bits[] = { "B'0'", "B'1010'" };
static const char *const val_hex[] = { "X'1F'", "x'00'" };

static const char *const property_corpus[] = {
    "SELECT abalance FROM pgbench_accounts WHERE aid = %I;",
    "UPDATE pgbench_accounts SET abalance = abalance + %I WHERE aid = %I;",
    "UPDATE pgbench_tellers SET tbalance = tbalance + %I WHERE tid = %I;",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (%I, %I, %I, %I, "
    "CURRENT_TIMESTAMP);",
    "select * from users where email = %S and id <> %I limit %I",
    "insert into t (a, b, c) values (%S, %E, %D) returning id",
    "update t set a = %F, b = %S where id in (%I, %I, %I)",
    "delete from t where created < %S::timestamptz - interval %S",
    "select %B, %X, %F, %S %S",
    "select * from t where a = any(array[%I, %I]) and b = any(%S::text[])",
    "with x as (delete from t where a = %I returning *) insert into u select * from x",
    "select count(*) from t group by a having count(*) > %I order by %I",
    "select pg_read_file(%S)",
    "select * from t where id = (select pg_read_file(%S)::int)",
    "select lower(%S), upper(%E), coalesce(%S, %D)",
    "select set_config(%S, %S, false)",
    "select set_config('client_encoding', %S, true)",
    "select set_config(%S, 'x', %S::bool)",
    "select 1 from t where set_config(%S, %S, true) is not null",
    "set standard_conforming_strings = %S",
    "set standard_conforming_strings = %I",
    "set local client_encoding = %S",
    "set names %S",
    "set client_encoding to %E",
    "set search_path = %S, %S",
    "set statement_timeout = %I",
    "set role %S",
    "set session authorization %S",
    "set time zone %S",
    "alter role app set client_encoding = %S",
    "alter role app in database d set standard_conforming_strings = %S",
    "alter database d set standard_conforming_strings to %S",
    "alter system set client_encoding = %S",
    "explain (analyze %S) delete from t where a = %I",
    "explain (analyze %I) update t set a = %S",
    "explain (analyze %S, format json) select pg_read_file(%S)",
    "explain (analyze %S) execute p(%I)",
    "explain select * from t where a = %I",
    "copy t from %S",
    "copy t to %S with (format csv, delimiter %S)",
    "copy (select * from t where a = %I) to stdout",
    "select 1::float(%I)",
    "alter table t alter %I set statistics %I",
    "prepare p as select * from t where a = %I",
    "execute p(%I, %S)",
    "select %S::regclass; set client_encoding = %S",
    "/* %I */ select * from t -- %S\n where a = %I",
    "create table t (a varchar(%I) default %S)",
    "do %D",
    "notify ch, %S",
};

/* Fills the template with values chosen by seed; false when out fills up. */
static bool property_fill(const char *tmpl, unsigned seed, char *out, size_t cap)
{
    size_t o = 0;
    unsigned k = 0;
    for (const char *p = tmpl; *p; p++) {
        const char *v = NULL;
        char one[2] = { *p, '\0' };
        if (*p == '%' && p[1]) {
            unsigned pick = seed * 7u + k++ * 3u;
            switch (*++p) {
            case 'I': v = val_int[pick % (sizeof val_int / sizeof *val_int)]; break;
            case 'F': v = val_float[pick % (sizeof val_float / sizeof *val_float)]; break;
            case 'S': v = val_str[pick % (sizeof val_str / sizeof *val_str)]; break;
            case 'E': v = val_estr[pick % (sizeof val_estr / sizeof *val_estr)]; break;
            case 'D': v = val_dollar[pick % (sizeof val_dollar / sizeof *val_dollar)]; break;
            case 'B': v = val_bits[pick % (sizeof val_bits / sizeof *val_bits)]; break;
            case 'X': v = val_hex[pick % (sizeof val_hex / sizeof *val_hex)]; break;
            default: return false;
            }
        } else {
            v = one;
        }
        size_t n = strlen(v);
        if (n >= cap - o)
            return false;
        memcpy(out + o, v, n);
        o += n;
    }
    out[o] = '\0';
    return true;
}

/* For every template, many literal variants through one cached guard, in two orders: each
 * verdict equals a fresh classification with the cache off. */
static void test_masked_property(void **state)
{
    (void)state;
    enum { VARIANTS = 24 };
    struct guard *fresh = guard_uncached();
    uint64_t masked_hits = 0;
    size_t differing = 0;
    for (size_t t = 0; t < sizeof property_corpus / sizeof property_corpus[0]; t++) {
        for (int order = 0; order < 2; order++) {
            struct guard *g = guard_plain();
            class_set first = 0;
            bool first_lexing = false, differs = false;
            for (unsigned i = 0; i < VARIANTS; i++) {
                char sql[512];
                unsigned seed = order ? VARIANTS - 1 - i : i;
                assert_true(property_fill(property_corpus[t], seed, sql, sizeof sql));
                struct guard_verdict got, want;
                classify(g, sql, &got);
                classify(fresh, sql, &want);
                assert_verdict_equal(sql, &got, &want);
                if (i == 0) {
                    first = want.classes;
                    first_lexing = want.lexing_change;
                }
                differs |= want.classes != first || want.lexing_change != first_lexing;
            }
            struct guard_stats st;
            guard_get_stats(g, &st);
            masked_hits += st.masked_hits;
            differing += differs && order == 0;
            guard_free(g);
        }
    }
    guard_free(fresh);
    /* The corpus exercises both sides: many variants are shared, and some templates give
     * verdicts that differ by literal value (which sharing would have got wrong). */
    if (masked_hits < 500 || differing < 15)
        fail_msg("%llu masked hits, %zu templates whose verdict depends on a literal",
                 (unsigned long long)masked_hits, differing);
}

/* The masked level is bounded and evicts like the exact one; masked_cache_off turns it off. */
static void test_masked_eviction(void **state)
{
    (void)state;
    struct guard_options opt;
    guard_options_default(&opt);
    opt.cache_entries = 4;
    struct guard *g = guard_new(&opt);
    assert_non_null(g);
    struct guard_verdict v;
    struct guard_stats st;
    char sql[96];
    for (int i = 0; i < 10; i++) {               /* ten shapes, each twice */
        for (int k = 0; k < 2; k++) {
            snprintf(sql, sizeof sql, "select * from t%d where a = %d", i, k);
            classify(g, sql, &v);
            assert_int_equal(v.classes, R);
        }
    }
    guard_get_stats(g, &st);
    assert_int_equal(st.misses, 10);
    assert_int_equal(st.masked_hits, 10);
    assert_int_equal(st.masked_evictions, 6);
    classify(g, "select * from t9 where a = 77", &v);       /* the newest shape is there */
    guard_get_stats(g, &st);
    assert_int_equal(st.masked_hits, 11);
    classify(g, "select * from t0 where a = 77", &v);       /* the oldest is gone */
    guard_get_stats(g, &st);
    assert_int_equal(st.misses, 11);
    guard_free(g);

    opt.masked_cache_off = true;
    g = guard_new(&opt);
    assert_non_null(g);
    classify(g, "select * from t where a = 1", &v);
    classify(g, "select * from t where a = 2", &v);
    guard_get_stats(g, &st);
    assert_int_equal(st.masked_hits, 0);
    assert_int_equal(st.misses, 2);
    guard_free(g);

    guard_options_default(&opt);                 /* keys are bounded by cache_max_text */
    opt.cache_max_text = 24;
    g = guard_new(&opt);
    assert_non_null(g);
    classify(g, "select a from t where b=1", &v);   /* 24 bytes, but a longer key */
    classify(g, "select a from t where b=2", &v);
    guard_get_stats(g, &st);
    assert_int_equal(st.masked_hits, 0);
    classify(g, "select 1, 2", &v);              /* a short key fits */
    classify(g, "select 3, 4", &v);
    guard_get_stats(g, &st);
    assert_int_equal(st.masked_hits + st.digit_hits, 1);
    guard_free(g);
}

/* The digit level: texts that differ only in short digit runs meet before any lexing, but
 * only where the first text's digits could not change a token's kind or extent. */
static void test_digit_level(void **state)
{
    (void)state;
    static const struct { const char *a, *b; bool shared; } cases[] = {
        { "SELECT abalance FROM pgbench_accounts WHERE aid = 17;",
          "SELECT abalance FROM pgbench_accounts WHERE aid = 90210;", true },
        { "UPDATE pgbench_tellers SET tbalance = tbalance + -4211 WHERE tid = 3;",
          "UPDATE pgbench_tellers SET tbalance = tbalance + -17 WHERE tid = 88;", true },
        { "select * from t where s = 'order 12' and n = 1.5e3",
          "select * from t where s = 'order 999' and n = 7.25e1", true },
        { "select 1 /* run 12 */", "select 2 /* run 345 */", true },
        /* a dollar-quote tag with digits decides where the string ends: never shared */
        { "select $a12$ x $a1$; drop table t; -- $a12$",
          "select $a1$ x $a1$; drop table t; -- $a1$", false },
        { "select $a1$ x $a1$; drop table t; -- $a1$",
          "select $a12$ x $a1$; drop table t; -- $a12$", false },
        /* digits in identifiers, parameters and type names vary what they name */
        { "select f1()", "select f2()", false },
        { "select * from t1 where a = 1", "select * from t2 where a = 2", false },
        { "select $1::int4", "select $2::int4", false },
        { "select x::int4 from t where a = 1", "select x::int8 from t where a = 2", false },
        /* a long run could turn an integer into a float token */
        { "select 1234567890", "select 9999999999", false },
        /* float(n) and ALTER COLUMN n: the grammar reads the number */
        { "create table t (x float(24))", "create table t (x float(53))", false },
        /* escapes in E'' strings turn digits into bytes the lexer checks (found in review) */
        { "SELECT E'\\1' FROM t", "SELECT E'\\0' FROM t", false },
        { "SELECT E'\\x41' FROM t", "SELECT E'\\x00' FROM t", false },
        { "SELECT E'\\101' FROM t", "SELECT E'\\351' FROM t", false },
        { "SELECT E'\\u0041' FROM t", "SELECT E'\\u0000' FROM t", false },
        { "SELECT E'\\uD000' FROM t", "SELECT E'\\uD800' FROM t", false },
        { "SELECT E'a1' FROM t", "SELECT E'a2' FROM t", true },        /* no backslash: safe */
    };
    struct guard *fresh = guard_uncached();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct guard *g = guard_plain();
        struct guard_verdict va, vb, want;
        struct guard_stats st;
        classify(g, cases[i].a, &va);
        classify(g, cases[i].b, &vb);
        classify(fresh, cases[i].b, &want);
        guard_get_stats(g, &st);
        if ((st.digit_hits == 1) != cases[i].shared)
            fail_msg("%s → %s: digit hits %llu, want %s", cases[i].a, cases[i].b,
                     (unsigned long long)st.digit_hits, cases[i].shared ? "1" : "0");
        assert_verdict_equal(cases[i].b, &vb, &want);
        guard_free(g);
    }
    guard_free(fresh);

    /* property: random short digit runs in a corpus of shapes never change a verdict */
    static const char *const shapes[] = {
        "SELECT abalance FROM pgbench_accounts WHERE aid = %d",
        "select * from users where id = %d and name = 'user %d' limit %d",
        "insert into t (a, b) values (%d, 'x%d') returning id",
        "select $q%d$ a $q%d$; drop table t; -- $q%d$",
        "select f%d() where %d = %d",
        "select %d; vacuum t; select %d /* %d */",
        "delete from t where id in (%d, %d, %d)",
        "select x::int%d from t where a = %d and b = %d",
    };
    struct guard *g = guard_plain();
    fresh = guard_uncached();
    unsigned seed = 12345;
    for (int round = 0; round < 400; round++) {
        char sql[256];
        const char *shape = shapes[round % (sizeof shapes / sizeof shapes[0])];
        int v[3];
        for (int k = 0; k < 3; k++) {
            seed = seed * 1103515245u + 12345u;
            int digits = 1 + (int)((seed >> 16) % 6);
            int val = 0;
            for (int d = 0; d < digits; d++)
                val = val * 10 + (int)((seed >> (d + 3)) % 10);
            v[k] = val % 3 == 0 ? val % 3 + 1 : val;   /* small and large values, $q1$ vs $q12$ */
        }
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"   /* shapes is a table of formats */
        snprintf(sql, sizeof sql, shape, v[0], v[1], v[2]);
#pragma GCC diagnostic pop
        struct guard_verdict got, want;
        classify(g, sql, &got);
        classify(fresh, sql, &want);
        assert_verdict_equal(sql, &got, &want);
    }
    struct guard_stats st;
    guard_get_stats(g, &st);
    if (st.digit_hits < 100)
        fail_msg("the digit level served only %llu of 400", (unsigned long long)st.digit_hits);
    guard_free(g);
    guard_free(fresh);
}

/* guard.c names these tokens by number (pg_query.pb-c.h needs protobuf-c's headers): they
 * must match the installed pg_query.proto. */
static void test_token_numbers(void **state)
{
    (void)state;
    static const struct { const char *name; int number; } tokens[] = {
        { "ASCII_40", 40 }, { "FCONST", 260 }, { "SCONST", 261 }, { "USCONST", 262 },
        { "BCONST", 263 }, { "XCONST", 264 }, { "ICONST", 266 }, { "SQL_COMMENT", 275 },
        { "C_COMMENT", 276 }, { "ALTER", 287 }, { "COLUMN", 336 }, { "FLOAT_P", 422 },
        { "UESCAPE", 685 },
    };
    FILE *f = fopen(PROTO_PATH, "r");
    assert_non_null(f);
    char line[512];
    size_t found = 0;
    bool in_enum = false;
    while (fgets(line, sizeof line, f)) {
        if (!in_enum) {
            in_enum = strncmp(line, "enum Token {", 12) == 0;
            continue;
        }
        if (line[0] == '}')
            break;
        char name[64];
        int number;
        if (sscanf(line, " %63s = %d;", name, &number) != 2)
            continue;
        for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++)
            if (strcmp(name, tokens[i].name) == 0) {
                if (number != tokens[i].number)
                    fail_msg("%s is %d in %s, guard.c uses %d", name, number, PROTO_PATH,
                             tokens[i].number);
                found++;
            }
    }
    fclose(f);
    assert_int_equal(found, sizeof tokens / sizeof tokens[0]);
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

/* pg_query_normalize leaves literals in most utility statements; the audit text must not. */
static void test_normalize_utility_literals(void **state)
{
    (void)state;
    static const struct { const char *sql, *secret, *want; } cases[] = {
        { "ALTER TABLE t ADD COLUMN s text DEFAULT 'hunter2-default'", "hunter2",
          "ALTER TABLE t ADD COLUMN s text DEFAULT $1" },
        { "COMMENT ON TABLE t IS 'hunter2-comment'", "hunter2", "COMMENT ON TABLE t IS $1" },
        { "CREATE TABLE t2 AS SELECT 'hunter2-ctas' AS s", "hunter2", NULL },
        { "ALTER TABLE t ALTER COLUMN c SET DEFAULT 4111111111111111", "4111111111111111", NULL },
        { "select 1 /* password=hunter2 */", "hunter2", NULL },
        { "select 1 -- hunter2\n", "hunter2", NULL },
        { "create table t3 (s text default E'hunter2\\n')", "hunter2", NULL },
        { "create function f() returns text language sql as $f$select 'hunter2'$f$", "hunter2", NULL },
        { "selec 'hunter2-unparsable'", "hunter2", "selec $1" },
        { "select $1, 'hunter2'", "hunter2", "select $1, $2" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *n = guard_normalize(cases[i].sql);
        if (!n)
            fail_msg("%s: no normalized text", cases[i].sql);
        if (strstr(n, cases[i].secret))
            fail_msg("%s leaks %s: '%s'", cases[i].sql, cases[i].secret, n);
        if (cases[i].want && strcmp(n, cases[i].want) != 0)
            fail_msg("%s: got '%s', want '%s'", cases[i].sql, n, cases[i].want);
        free(n);
    }
    assert_null(guard_normalize("select 'unterminated"));   /* cannot be lexed: nothing logged */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_table_covers_proto),
        cmocka_unit_test(test_normalize_utility_literals),
        cmocka_unit_test(test_digit_level),
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
        cmocka_unit_test(test_masked_shares),
        cmocka_unit_test(test_masked_refuses),
        cmocka_unit_test(test_masked_property),
        cmocka_unit_test(test_masked_eviction),
        cmocka_unit_test(test_token_numbers),
        cmocka_unit_test(test_normalize_fingerprint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
