/* test_proxy_guard.c — the statement guard through the real proxy (issue 3).
 *
 * An app role whose rule grants `default` has every form of DDL refused — plain, odd casing,
 * quoted identifiers, comments, dollar quoting, multi-statement strings, CREATE TABLE AS,
 * SELECT INTO, EXPLAIN ANALYZE, PREPARE/EXECUTE, the extended protocol — while the migrator,
 * granted `default,ddl`, runs the same kinds of statement. The app owns the table it attacks and
 * may CREATE in public, so anything that slipped through would succeed; the oracle is an event
 * trigger that records every ddl_command_start, plus a catalog snapshot before and after.
 *
 * Refusal semantics are compared with a DIRECT connection where the server raises a real error
 * (`select 1/0`) at the same point: an aborted transaction block, a pipeline batch that commits
 * nothing and skips to Sync, several batches in flight answered in order. Also the lexing
 * settings, COPY's classes and the refusal's error fields. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define DB "it_guard"

static struct it_proxy proxy;

/* Line numbers matter: messages name file:line. */
static const char rules[] =
    "# guard tests\n"
    "allow production all migrator any default,ddl\n"
    "allow production all app any default\n"
    "allow production all app_md5 any read,session,transaction\n";

static const char fixture_sql[] =
    "CREATE TABLE public.it_t (id int, note text);"
    "INSERT INTO public.it_t SELECT g, 'row' FROM generate_series(1, 10) g;"
    "ALTER TABLE public.it_t OWNER TO app;"          /* the app could drop it, server-side */
    "GRANT SELECT ON public.it_t TO app_md5;"
    "GRANT CREATE ON SCHEMA public TO app;"          /* and could create, server-side */
    "CREATE TABLE public.it_w (tag text, n int);"
    "GRANT SELECT, INSERT, DELETE ON public.it_w TO app, app_md5;"
    "CREATE SCHEMA mig AUTHORIZATION migrator;"
    "CREATE TABLE public.ddl_log (id serial, tag text, usr text);"
    "CREATE FUNCTION public.log_ddl() RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER "
    "  SET search_path = pg_catalog AS $$ BEGIN "
    "  INSERT INTO public.ddl_log (tag, usr) VALUES (tg_tag, session_user); END $$;"
    "CREATE EVENT TRIGGER it_log_ddl ON ddl_command_start EXECUTE FUNCTION public.log_ddl();";

static int setup(void **state)
{
    (void)state;
    it_create_db("prod", DB, NULL);
    PGconn *c = it_super("prod", DB);
    it_exec(c, fixture_sql);
    PQfinish(c);
    it_proxy_start(&proxy, NULL, rules);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    it_proxy_stop(&proxy, SIGTERM, 5000);
    PGconn *c = it_super("prod", "postgres");
    it_exec(c, "DROP DATABASE IF EXISTS " DB " WITH (FORCE)");
    PQfinish(c);
    return 0;
}

static PGconn *via_proxy(const char *user, const char *password)
{
    PGconn *c = it_proxy_connect(&proxy, "dbname=" DB " user=%s password=%s "
                                 "options='-c pgsov.env=production'", user, password);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("%s through the proxy: %s", user, PQerrorMessage(c));
    return c;
}

static PGconn *direct(const char *user, const char *password)
{
    PGconn *c = it_connect("host=localhost hostaddr=127.0.0.1 port=%d dbname=" DB " user=%s password=%s "
                           "sslmode=verify-full sslrootcert=%s/ca.crt", it_cluster_port("prod"), user,
                           password, it_env()->pki);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("%s directly: %s", user, PQerrorMessage(c));
    return c;
}

/* A digest of the catalogs a DDL statement would touch. */
static char *catalog_snapshot(void)
{
    PGconn *c = it_super("prod", DB);
    char *v = it_value(c,
        "SELECT md5("
        " (SELECT string_agg(format('%s|%s|%s|%s|%s|%s', oid, relname, relkind, relnamespace, relowner,"
        "   relrowsecurity), ',' ORDER BY oid) FROM pg_class)"
        " || (SELECT string_agg(format('%s|%s|%s', oid, nspname, nspowner), ',' ORDER BY oid) FROM pg_namespace)"
        " || (SELECT string_agg(format('%s|%s|%s', oid, proname, md5(prosrc)), ',' ORDER BY oid) FROM pg_proc)"
        " || coalesce((SELECT string_agg(format('%s|%s|%s|%s', attrelid, attname, attnotnull, attisdropped), ','"
        "   ORDER BY attrelid, attnum) FROM pg_attribute WHERE attrelid >= 16384), '')"
        " || coalesce((SELECT string_agg(format('%s|%s', objoid, description), ',' ORDER BY objoid, objsubid)"
        "   FROM pg_description WHERE objoid >= 16384), '')"
        " || coalesce((SELECT string_agg(format('%s|%s', oid, relacl), ',' ORDER BY oid) FROM pg_class"
        "   WHERE oid >= 16384), ''))");
    PQfinish(c);
    return v;
}

static int super_count(const char *sql)
{
    PGconn *c = it_super("prod", DB);
    char *v = it_value(c, sql);
    int n = atoi(v);
    free(v);
    PQfinish(c);
    return n;
}

/* ---- DDL refused for the app, run by the migrator ------------------------------------------- */

static const char *const app_ddl[] = {
    "CREATE TABLE it_new (id int)",
    "create table \"It New\" (id int)",
    "CrEaTe TaBlE it_new2 (id int)",
    "ALTER TABLE it_t ADD COLUMN extra int",
    "alter table \"it_t\" rename to it_t_renamed",
    "ALTER TABLE it_t ENABLE ROW LEVEL SECURITY",
    "DROP TABLE it_t",
    "drop table public.\"it_t\" cascade",
    "/* harmless? */ DROP TABLE it_t",
    "-- a comment\nDROP TABLE it_t",
    "DROP/**/TABLE/**/it_t",
    "TRUNCATE it_t",
    "truncate table only it_t restart identity",
    "CREATE TABLE it_ctas AS SELECT 1 AS x",
    "SELECT 1 AS x INTO it_into",
    "select * into temp it_into2 from it_t",
    "CREATE MATERIALIZED VIEW it_mv AS SELECT 1 AS x",
    "CREATE VIEW it_v AS SELECT 1 AS x",
    "CREATE INDEX ON it_t (id)",
    "CREATE TEMP TABLE it_tmp (id int)",
    "CREATE SCHEMA it_s",
    "CREATE FUNCTION it_f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
    "CREATE FUNCTION it_f2() RETURNS int LANGUAGE sql AS $body$ DROP TABLE it_t; SELECT 1 $body$",
    "COMMENT ON TABLE it_t IS 'changed'",
    "EXPLAIN ANALYZE CREATE TABLE it_ex AS SELECT 1 AS x",
    "select 1; drop table it_t",
    "SELECT $$; $$; DROP TABLE it_t",
    "insert into it_w values ('multi', 1); truncate it_t",
    "GRANT ALL ON it_t TO PUBLIC",
    "DO $$ BEGIN EXECUTE 'DROP TABLE it_t'; END $$",
    "CREATE TABLE it_exec AS EXECUTE it_sel",
    "SELECT 1 AS x INTO it_union UNION SELECT 2",
    "(SELECT 1 AS x INTO it_union2) EXCEPT SELECT 2",
    "EXPLAIN (ANALYZE false, ANALYZE true) CREATE TABLE it_ex2 AS SELECT 1 AS x",
    "DROP EVENT TRIGGER it_log_ddl",
};

static void expect_refused(PGconn *c, const char *sql, const char *user)
{
    char *msg = it_expect_error(c, sql, "42501", "pgsov:");
    char who[80];
    snprintf(who, sizeof who, "user \"%s\" in environment \"production\"", user);
    if (!it_contains(msg, who))
        fail_msg("\"%s\": message should name user and environment: %s", sql, msg);
    free(msg);
}

static void test_app_ddl_refused(void **state)
{
    (void)state;
    char *before = catalog_snapshot();
    PGconn *c = via_proxy("app", "app-secret");
    it_exec(c, "PREPARE it_sel AS SELECT 1 AS x");   /* for CREATE TABLE AS EXECUTE */
    for (size_t i = 0; i < sizeof app_ddl / sizeof app_ddl[0]; i++)
        expect_refused(c, app_ddl[i], "app");

    /* The extended protocol: Parse carries the text. */
    PGresult *r = PQexecParams(c, "DROP TABLE it_t", 0, NULL, NULL, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
    assert_string_equal(it_sqlstate(r), "42501");
    PQclear(r);
    r = PQprepare(c, "evil", "ALTER TABLE it_t ADD COLUMN x int", 0, NULL);
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
    assert_string_equal(it_sqlstate(r), "42501");
    PQclear(r);
    r = PQexecPrepared(c, "evil", 0, NULL, NULL, NULL, 0);   /* never created */
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
    assert_string_equal(it_sqlstate(r), "26000");
    PQclear(r);

    /* Reads that only look like DDL are not refused. */
    static const struct { const char *sql, *want; } harmless[] = {
        { "SELECT $x$; DROP TABLE it_t; $x$", "; DROP TABLE it_t; " },
        { "SELECT 'drop table it_t'", "drop table it_t" },
        { "SELECT 1 -- ; drop table it_t", "1" },
        { "SELECT /* drop table it_t; */ count(*) FROM \"it_t\"", "10" },
        { "SELECT \"note\" AS \"DROP TABLE\" FROM it_t LIMIT 1", "row" },
    };
    for (size_t i = 0; i < sizeof harmless / sizeof harmless[0]; i++) {
        char *v = it_value(c, harmless[i].sql);
        assert_string_equal(v, harmless[i].want);
        free(v);
    }
    char *n = it_value(c, "SELECT count(*) FROM it_w WHERE tag = 'multi'");
    assert_string_equal(n, "0");
    free(n);
    PQfinish(c);

    char *after = catalog_snapshot();
    assert_string_equal(before, after);
    free(before);
    free(after);
    assert_int_equal(super_count("SELECT count(*) FROM public.ddl_log WHERE usr = 'app'"), 0);
    assert_int_equal(super_count("SELECT count(*) FROM public.it_t"), 10);

    /* Proof the oracle sees DDL: the same role, directly, changes the catalog. */
    PGconn *d = direct("app", "app-secret");
    it_exec(d, "CREATE TABLE it_oracle_probe (id int)");
    it_exec(d, "DROP TABLE it_oracle_probe");
    PQfinish(d);
    assert_int_equal(super_count("SELECT count(*) FROM public.ddl_log WHERE usr = 'app'"), 2);
    PGconn *s = it_super("prod", DB);
    it_exec(s, "DELETE FROM public.ddl_log");
    PQfinish(s);
}

static const char *const migrator_ddl[] = {
    "CREATE TABLE mig.m1 (id int)",
    "create table mig.\"M Two\" (id int)",
    "ALTER TABLE mig.m1 ADD COLUMN extra int",
    "CREATE INDEX ON mig.m1 (id)",
    "COMMENT ON TABLE mig.m1 IS 'by migrator'",
    "CREATE TABLE mig.ctas AS SELECT 1 AS x",
    "SELECT 1 AS x INTO mig.into1",
    "CREATE MATERIALIZED VIEW mig.mv AS SELECT 1 AS x",
    "CREATE VIEW mig.v AS SELECT 1 AS x",
    "CREATE FUNCTION mig.f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
    "DROP TABLE mig.\"M Two\"",
};

static void test_migrator_runs_ddl(void **state)
{
    (void)state;
    char *before = catalog_snapshot();
    PGconn *c = via_proxy("migrator", "migrator-secret");
    for (size_t i = 0; i < sizeof migrator_ddl / sizeof migrator_ddl[0]; i++) {
        PGresult *r = PQexec(c, migrator_ddl[i]);
        if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
            fail_msg("migrator: %s: %s", migrator_ddl[i], PQresultErrorMessage(r));
        PQclear(r);
    }
    PGresult *r = PQexec(c, "TRUNCATE mig.m1");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    /* The migrator's grant has no role class. */
    expect_refused(c, "GRANT SELECT ON mig.m1 TO app", "migrator");
    PQfinish(c);
    char *after = catalog_snapshot();
    assert_string_not_equal(before, after);
    free(before);
    free(after);
    /* ddl_command_start fired for each statement except SELECT INTO? No: it fires for it too. */
    int logged = super_count("SELECT count(*) FROM public.ddl_log WHERE usr = 'migrator'");
    assert_int_equal(logged, (int)(sizeof migrator_ddl / sizeof migrator_ddl[0]));
    PGconn *s = it_super("prod", DB);
    it_exec(s, "DELETE FROM public.ddl_log");
    PQfinish(s);
}

/* ---- the refusal's error fields --------------------------------------------------------------- */

static void test_refusal_error_fields(void **state)
{
    (void)state;
    PGconn *c = via_proxy("app", "app-secret");
    PGresult *r = PQexec(c, "DROP TABLE it_t");
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
    assert_string_equal(it_sqlstate(r), "42501");
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    const char *detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
    const char *hint = PQresultErrorField(r, PG_DIAG_MESSAGE_HINT);
    assert_non_null(sev);
    assert_string_equal(sev, "ERROR");
    assert_non_null(msg);
    char where[700];
    snprintf(where, sizeof where, "%s:3", proxy.rules);
    if (!it_contains(msg, "DDL") || !it_contains(msg, "\"app\"") || !it_contains(msg, "\"production\"") ||
        !it_contains(msg, where))
        fail_msg("message should name class, user, environment and %s: %s", where, msg);
    assert_non_null(detail);
    assert_true(it_contains(detail, "ddl"));
    assert_non_null(hint);
    assert_true(strlen(hint) > 10);
    /* Nothing of the substitution leaks. */
    assert_false(it_contains(msg, "pgsov:refused:"));
    assert_false(it_contains(detail, "int4"));
    PQclear(r);

    /* The audit log has the refusal, with its class and normalized text. */
    PQclear(PQexec(c, "DROP TABLE it_t, it_w"));
    PQfinish(c);
    char *audit = NULL;
    it_sh(&audit, "cat '%s'", proxy.audit);
    assert_true(it_contains(audit, "\"event\": \"refused\"") || it_contains(audit, "\"event\":\"refused\""));
    assert_true(it_contains(audit, "\"class\": \"ddl\"") || it_contains(audit, "\"class\":\"ddl\""));
    assert_true(it_contains(audit, "DROP TABLE it_t, it_w"));
    free(audit);
}

/* ---- semantics: a refusal behaves like a server error at that point ----------------------------- */

static void trace_add(char *trace, size_t size, PGresult *r)
{
    char item[64];
    ExecStatusType st = PQresultStatus(r);
    switch (st) {
    case PGRES_TUPLES_OK:
        snprintf(item, sizeof item, "T%s;", PQntuples(r) ? PQgetvalue(r, 0, 0) : "-");
        break;
    case PGRES_COMMAND_OK:
        snprintf(item, sizeof item, "C%s;", PQcmdStatus(r));
        break;
    case PGRES_FATAL_ERROR: {
        const char *s = it_sqlstate(r);
        /* The injected error's own code differs by design (42501 vs 22012). */
        snprintf(item, sizeof item, "E%s;", !strcmp(s, "42501") || !strcmp(s, "22012") ? "*" : s);
        break;
    }
    case PGRES_PIPELINE_SYNC:
        snprintf(item, sizeof item, "S;");
        break;
    case PGRES_PIPELINE_ABORTED:
        snprintf(item, sizeof item, "A;");
        break;
    default:
        snprintf(item, sizeof item, "?%s;", PQresStatus(st));
        break;
    }
    strncat(trace, item, size - strlen(trace) - 1);
}

/* Simple-protocol script in a transaction block; bad is the failing statement. */
static void block_script(PGconn *c, const char *bad, const char *tag, char *trace, size_t size)
{
    char ins1[128], ins2[128], ins3[128], count[128];
    snprintf(ins1, sizeof ins1, "INSERT INTO it_w VALUES ('%s', 1)", tag);
    snprintf(ins2, sizeof ins2, "INSERT INTO it_w VALUES ('%s', 2)", tag);
    snprintf(ins3, sizeof ins3, "INSERT INTO it_w VALUES ('%s', 3)", tag);
    snprintf(count, sizeof count, "SELECT count(*) FROM it_w WHERE tag = '%s'", tag);
    const char *script[] = {
        "BEGIN", ins1, bad, ins2, "SELECT 1", "COMMIT", count,
        "BEGIN", ins1, "SAVEPOINT s1", bad, "SELECT 2", "ROLLBACK TO SAVEPOINT s1", ins3, "COMMIT", count,
        bad, "SELECT 3",
    };
    trace[0] = '\0';
    for (size_t i = 0; i < sizeof script / sizeof script[0]; i++) {
        PGresult *r = PQexec(c, script[i]);
        trace_add(trace, size, r);
        PQclear(r);
        char st[8];
        snprintf(st, sizeof st, "%c;", "ITE?"[PQtransactionStatus(c) == PQTRANS_IDLE ? 0 :
                                               PQtransactionStatus(c) == PQTRANS_INTRANS ? 1 :
                                               PQtransactionStatus(c) == PQTRANS_INERROR ? 2 : 3]);
        strncat(trace, st, size - strlen(trace) - 1);
    }
}

static void test_transaction_block_like_server_error(void **state)
{
    (void)state;
    PGconn *p = via_proxy("app", "app-secret"), *d = direct("app", "app-secret");
    char tp[2048], td[2048];
    block_script(p, "DROP TABLE it_t", "blk-proxy", tp, sizeof tp);
    block_script(d, "SELECT 1/0", "blk-direct", td, sizeof td);
    if (strcmp(tp, td) != 0)
        fail_msg("transaction block through the proxy differs from a server error:\n proxy:  %s\n direct: %s", tp, td);
    /* The shape is what PostgreSQL does: aborted block, COMMIT reports ROLLBACK. */
    assert_true(it_contains(tp, "E*;E;E25P02;E;E25P02;E;CROLLBACK;I;T0;"));
    PQfinish(p);
    PQfinish(d);
}

enum step_kind { STEP_INSERT, STEP_BAD, STEP_SELECT, STEP_SYNC, STEP_COUNT };

static void pipeline_script(PGconn *c, const char *bad, const char *tag, char *trace, size_t size)
{
    static const struct { enum step_kind kind; int n; } steps[] = {
        { STEP_INSERT, 1 }, { STEP_BAD, 0 }, { STEP_INSERT, 2 }, { STEP_SYNC, 0 },
        { STEP_INSERT, 3 }, { STEP_SYNC, 0 },
        { STEP_SELECT, 1 }, { STEP_BAD, 0 }, { STEP_SELECT, 2 }, { STEP_SYNC, 0 },
        { STEP_BAD, 0 }, { STEP_SYNC, 0 },
        { STEP_SELECT, 4 }, { STEP_BAD, 0 }, { STEP_BAD, 0 }, { STEP_SYNC, 0 },
        { STEP_COUNT, 0 }, { STEP_SYNC, 0 },
    };
    assert_int_equal(PQenterPipelineMode(c), 1);
    int syncs = 0;
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        char n[16];
        snprintf(n, sizeof n, "%d", steps[i].n);
        const char *pv[2] = { tag, n };
        int ok = 1;
        switch (steps[i].kind) {
        case STEP_INSERT:
            ok = PQsendQueryParams(c, "INSERT INTO it_w VALUES ($1, $2::int)", 2, NULL, pv, NULL, NULL, 0);
            break;
        case STEP_BAD:
            ok = PQsendQueryParams(c, bad, 0, NULL, NULL, NULL, NULL, 0);
            break;
        case STEP_SELECT:
            ok = PQsendQueryParams(c, "SELECT $1::int", 1, NULL, pv + 1, NULL, NULL, 0);
            break;
        case STEP_COUNT:
            ok = PQsendQueryParams(c, "SELECT count(*) FROM it_w WHERE tag = $1", 1, NULL, pv, NULL, NULL, 0);
            break;
        case STEP_SYNC:
            ok = PQpipelineSync(c);
            syncs++;
            break;
        }
        assert_int_equal(ok, 1);
    }
    trace[0] = '\0';
    int seen = 0, nulls = 0;
    while (seen < syncs) {
        PGresult *r = PQgetResult(c);
        if (!r) {
            if (++nulls > 2)
                fail_msg("pipeline stalled; trace so far: %s", trace);
            strncat(trace, "|", size - strlen(trace) - 1);
            continue;
        }
        nulls = 0;
        if (PQresultStatus(r) == PGRES_PIPELINE_SYNC)
            seen++;
        trace_add(trace, size, r);
        PQclear(r);
    }
    assert_int_equal(PQexitPipelineMode(c), 1);
}

static void test_pipeline_like_server_error(void **state)
{
    (void)state;
    PGconn *p = via_proxy("app", "app-secret"), *d = direct("app", "app-secret");
    char tp[4096], td[4096];
    pipeline_script(p, "DROP TABLE it_t", "pipe-proxy", tp, sizeof tp);
    pipeline_script(d, "SELECT 1/0", "pipe-direct", td, sizeof td);
    if (strcmp(tp, td) != 0)
        fail_msg("pipeline through the proxy differs from a server error:\n proxy:  %s\n direct: %s", tp, td);
    /* Only the insert of the clean batch committed. */
    assert_true(it_contains(tp, "T1;|S;"));
    char *n = it_value(p, "SELECT string_agg(n::text, ',') FROM it_w WHERE tag = 'pipe-proxy'");
    assert_string_equal(n, "3");
    free(n);
    /* The session is usable afterwards, in both modes. */
    char *one = it_value(p, "SELECT 1");
    assert_string_equal(one, "1");
    free(one);
    PGresult *r = PQexecParams(p, "SELECT $1::int + 1", 1, NULL, (const char *const[]){ "1" }, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "2");
    PQclear(r);
    PQfinish(p);
    PQfinish(d);
}

/* A refused Query with several statements commits none of them, as a failing one would. */
static void test_multi_statement_commits_nothing(void **state)
{
    (void)state;
    PGconn *p = via_proxy("app", "app-secret"), *d = direct("app", "app-secret");
    PGresult *r = PQexec(p, "INSERT INTO it_w VALUES ('ms-proxy', 1); DROP TABLE it_t; INSERT INTO it_w VALUES ('ms-proxy', 2)");
    assert_string_equal(it_sqlstate(r), "42501");
    PQclear(r);
    r = PQexec(d, "INSERT INTO it_w VALUES ('ms-direct', 1); SELECT 1/0; INSERT INTO it_w VALUES ('ms-direct', 2)");
    assert_string_equal(it_sqlstate(r), "22012");
    PQclear(r);
    char *n = it_value(p, "SELECT count(*) FROM it_w WHERE tag IN ('ms-proxy', 'ms-direct')");
    assert_string_equal(n, "0");
    free(n);
    PQfinish(p);
    PQfinish(d);
}

/* ---- lexing settings ---------------------------------------------------------------------------- */

static void test_lexing_settings_refused(void **state)
{
    (void)state;
    PGconn *c = via_proxy("app", "app-secret");
    static const char *const refused[] = {
        "SET standard_conforming_strings = off",
        "set STANDARD_CONFORMING_STRINGS to 'off'",
        "SET client_encoding = 'LATIN1'",
        "SET NAMES 'LATIN1'",
        "SELECT set_config('standard_conforming_strings', 'off', false)",
        "SELECT set_config('client_encoding', 'SQL_ASCII', false)",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        char *msg = it_expect_error(c, refused[i], "42501", "changes how SQL is read");
        free(msg);
    }
    assert_int_equal(PQsetClientEncoding(c, "LATIN1"), -1);
    char *v = it_value(c, "SHOW standard_conforming_strings");
    assert_string_equal(v, "on");
    free(v);
    v = it_value(c, "SHOW client_encoding");
    assert_string_equal(v, "UTF8");
    free(v);
    PQfinish(c);

    /* At startup. */
    static const char *const startup[] = {
        "client_encoding=LATIN1",
        "options='-c standard_conforming_strings=off -c pgsov.env=production'",
    };
    for (size_t i = 0; i < sizeof startup / sizeof startup[0]; i++) {
        const char *opt = strstr(startup[i], "options") ? "" : "options='-c pgsov.env=production'";
        c = it_proxy_connect(&proxy, "dbname=" DB " user=app password=app-secret %s %s", opt, startup[i]);
        assert_int_equal(PQstatus(c), CONNECTION_BAD);
        if (!it_contains(PQerrorMessage(c), "may not be changed through this proxy"))
            fail_msg("%s: %s", startup[i], PQerrorMessage(c));
        PQfinish(c);
    }
}

/* A role set at startup is SET ROLE before the first statement: it needs class privileged, in
 * every way the server would read it. A startup key given twice is refused (the server uses the
 * last, a check reads one). */
static void test_privileged_startup_settings(void **state)
{
    (void)state;
    struct it_proxy p2;
    it_proxy_start(&p2, NULL, "allow production all app any default\n"
                              "allow production all migrator any default,privileged\n");
    static const char *const refused[] = {
        "-c role=app", "-cROLE=app", "--role=app", "-ec role=app", "-c session-authorization=app",
        "-c application_name=x -c role=app",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        PGconn *c = it_proxy_connect(&p2, "dbname=" DB " user=app password=app-secret "
                                     "options='-c pgsov.env=production %s'", refused[i]);
        if (PQstatus(c) != CONNECTION_BAD || !it_contains(PQerrorMessage(c), "privileged startup setting") ||
            !it_contains(PQerrorMessage(c), ":1)"))
            fail_msg("options %s: status %d: %s", refused[i], PQstatus(c), PQerrorMessage(c));
        PQfinish(c);
    }
    /* a rule that grants privileged lets it through, and the server applies it */
    PGconn *c = it_proxy_connect(&p2, "dbname=" DB " user=migrator password=migrator-secret "
                                 "options='-c pgsov.env=production -c role=migrator'");
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("migrator with privileged: %s", PQerrorMessage(c));
    char *v = it_value(c, "SELECT current_setting('role')");
    assert_string_equal(v, "migrator");
    free(v);
    PQfinish(c);

    /* what libpq will not send: role as a startup key, and keys given twice */
    static const char *const raw[][7] = {
        { "user", "app", "database", "production", "role", "app", NULL },
        { "user", "app", "database", "production", "ROLE", "app", NULL },
        { "user", "app", "database", "production", "replication", "false", NULL },
    };
    static const char *const want_state[] = { "42501", "42501", "08P01" };
    for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++) {
        const char *kv[9];
        memcpy(kv, raw[i], sizeof raw[i]);
        if (i == 2) {                            /* replication=false, then =true */
            kv[6] = "replication";
            kv[7] = "true";
            kv[8] = NULL;
        }
        int fd = it_raw_connect(p2.port);
        uint8_t pkt[512], body[1024];
        size_t n = it_raw_startup(pkt, sizeof pkt, 196608, kv);
        assert_int_equal(it_raw_send(fd, pkt, n), 0);
        char type;
        uint32_t len;
        assert_int_equal(it_raw_read_msg(fd, &type, body, sizeof body - 1, &len, 3000), 1);
        const char *code = type == 'E' ? it_raw_field(body, len, 'C') : NULL;
        if (!code || strcmp(code, want_state[i]) != 0)
            fail_msg("raw startup %zu: got '%c' %s, want E %s", i, type, code ? code : "-", want_state[i]);
        close(fd);
    }
    it_proxy_stop(&p2, SIGTERM, 5000);
}

/* ---- COPY --------------------------------------------------------------------------------------- */

static void test_copy_classes(void **state)
{
    (void)state;
    PGconn *c = via_proxy("app", "app-secret");
    PGresult *r = PQexec(c, "COPY it_w (tag, n) FROM STDIN");
    assert_int_equal(PQresultStatus(r), PGRES_COPY_IN);
    PQclear(r);
    assert_int_equal(PQputCopyData(c, "copy-in\t1\ncopy-in\t2\n", 20), 1);
    assert_int_equal(PQputCopyEnd(c, NULL), 1);
    r = PQgetResult(c);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    assert_null(PQgetResult(c));
    r = PQexec(c, "COPY (SELECT n FROM it_w WHERE tag = 'copy-in' ORDER BY n) TO STDOUT");
    assert_int_equal(PQresultStatus(r), PGRES_COPY_OUT);
    PQclear(r);
    char *buf, out[64] = "";
    int n;
    while ((n = PQgetCopyData(c, &buf, 0)) > 0) {
        strncat(out, buf, (size_t)n < sizeof out - strlen(out) - 1 ? (size_t)n : sizeof out - strlen(out) - 1);
        PQfreemem(buf);
    }
    assert_string_equal(out, "1\n2\n");
    while ((r = PQgetResult(c)) != NULL)
        PQclear(r);
    static const char *const privileged[] = {
        "COPY it_t TO '/tmp/pgsov-itest-copy'",
        "COPY it_w FROM '/etc/passwd'",
        "COPY it_t TO PROGRAM 'cat > /dev/null'",
        "copy (select 1) to program 'true'",
    };
    for (size_t i = 0; i < sizeof privileged / sizeof privileged[0]; i++) {
        char *msg = it_expect_error(c, privileged[i], "42501", "privileged statement refused");
        free(msg);
    }
    PQfinish(c);

    /* A read-only rule: COPY TO STDOUT yes, FROM STDIN no. */
    c = via_proxy("app_md5", "md5-secret");
    r = PQexec(c, "COPY it_t TO STDOUT");
    assert_int_equal(PQresultStatus(r), PGRES_COPY_OUT);
    PQclear(r);
    int rows = 0;
    while ((n = PQgetCopyData(c, &buf, 0)) > 0) {
        rows++;
        PQfreemem(buf);
    }
    assert_int_equal(rows, 10);
    while ((r = PQgetResult(c)) != NULL)
        PQclear(r);
    char *msg = it_expect_error(c, "COPY it_w FROM STDIN", "42501", "write refused");
    free(msg);
    PQfinish(c);
}

/* ---- PREPARE / EXECUTE under a read-only rule ------------------------------------------------------ */

static void test_prepare_execute_read_only(void **state)
{
    (void)state;
    PGconn *c = via_proxy("app_md5", "md5-secret");
    char *msg = it_expect_error(c, "PREPARE del AS DELETE FROM it_w", "42501", "write refused");
    free(msg);
    msg = it_expect_error(c, "EXECUTE del", "42501", "pgsov:");    /* never recorded: fails closed */
    free(msg);
    msg = it_expect_error(c, "EXPLAIN ANALYZE DELETE FROM it_w", "42501", "write refused");
    free(msg);
    msg = it_expect_error(c, "WITH d AS (DELETE FROM it_w RETURNING 1) SELECT count(*) FROM d", "42501", "write refused");
    free(msg);
    it_exec(c, "PREPARE sel AS SELECT count(*) FROM it_t");
    char *v = it_value(c, "EXECUTE sel");
    assert_string_equal(v, "10");
    free(v);
    v = it_value(c, "EXPLAIN SELECT * FROM it_t");   /* plain EXPLAIN only plans */
    assert_true(it_contains(v, "Seq Scan"));
    free(v);
    /* Extended protocol under the same rule. */
    PGresult *r = PQprepare(c, "ins", "INSERT INTO it_w VALUES ('ro', 1)", 0, NULL);
    assert_string_equal(it_sqlstate(r), "42501");
    PQclear(r);
    PQfinish(c);
    assert_int_equal(super_count("SELECT count(*) FROM public.it_w WHERE tag = 'ro'"), 0);
}

/* ---- the other classes a `default` rule does not grant --------------------------------------------- */

static void test_other_classes_refused(void **state)
{
    (void)state;
    static const struct { const char *sql, *label; } cases[] = {
        { "SET ROLE postgres", "privileged statement" },
        { "set session authorization postgres", "privileged statement" },
        { "SELECT set_config('role', 'postgres', false)", "privileged statement" },
        { "ALTER SYSTEM SET work_mem = '1GB'", "privileged statement" },
        { "LOAD 'auto_explain'", "privileged statement" },
        { "SELECT pg_read_file('/etc/hostname')", "privileged statement" },
        { "GRANT SELECT ON it_t TO app_md5", "role or privilege change" },
        { "CREATE ROLE it_evil LOGIN SUPERUSER", "role or privilege change" },
        { "ALTER ROLE app CREATEROLE", "role or privilege change" },
        { "DO $$ BEGIN PERFORM 1; END $$", "function call" },
        { "VACUUM it_t", "maintenance statement" },
        { "select '{}' is json", "unclassified statement" },   /* PostgreSQL 16 syntax */
    };
    PGconn *c = via_proxy("app", "app-secret");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *msg = it_expect_error(c, cases[i].sql, "42501", cases[i].label);
        free(msg);
    }
    char *who = it_value(c, "SELECT current_user || ',' || session_user");
    assert_string_equal(who, "app,app");
    free(who);
    /* Fastpath FunctionCall (large objects use it) is class function. */
    Oid lo = lo_creat(c, 0x20000 | 0x40000);
    assert_int_equal(lo, 0);
    assert_true(it_contains(PQerrorMessage(c), "function call refused"));
    char *one = it_value(c, "SELECT 1");
    assert_string_equal(one, "1");
    free(one);
    PQfinish(c);
    assert_int_equal(super_count("SELECT count(*) FROM pg_roles WHERE rolname = 'it_evil'"), 0);
    assert_int_equal(super_count("SELECT count(*) FROM pg_largeobject_metadata"), 0);
}

/* A rule that grants class function: fastpath calls of libpq's large-object functions pass,
 * any other function OID is privileged (set_config by OID is SET ROLE). */
static void test_fastpath_by_oid(void **state)
{
    (void)state;
    struct it_proxy p2;
    it_proxy_start(&p2, NULL, "allow production all app any default,function\n");
    PGconn *c = it_proxy_connect(&p2, "dbname=" DB " user=app password=app-secret "
                                 "options='-c pgsov.env=production'");
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("%s", PQerrorMessage(c));
    it_exec(c, "BEGIN");
    Oid lo = lo_creat(c, 0x20000 | 0x40000);
    if (lo == 0)
        fail_msg("lo_creat through a function rule: %s", PQerrorMessage(c));
    int fd = lo_open(c, lo, 0x20000);
    assert_true(fd >= 0);
    assert_int_equal(lo_write(c, fd, "pgsov", 5), 5);
    assert_int_equal(lo_close(c, fd), 0);
    assert_int_equal(lo_unlink(c, lo), 1);
    it_exec(c, "COMMIT");
    /* set_config('role', 'postgres', false) by OID 2078 */
    PQArgBlock args[3] = {
        { .len = 4, .isint = 0, .u.ptr = (int *)"role" },
        { .len = 8, .isint = 0, .u.ptr = (int *)"postgres" },
        { .len = 1, .isint = 0, .u.ptr = (int *)"\0" },
    };
    char result[64];
    int result_len = 0;
    PGresult *r = PQfn(c, 2078, (int *)result, &result_len, 0, args, 3);
    if (PQresultStatus(r) != PGRES_FATAL_ERROR || !it_contains(PQresultErrorMessage(r), "privileged statement refused"))
        fail_msg("set_config by fastpath: %s %s", PQresStatus(PQresultStatus(r)), PQresultErrorMessage(r));
    PQclear(r);
    char *who = it_value(c, "SELECT current_user");
    assert_string_equal(who, "app");
    free(who);
    PQfinish(c);
    it_proxy_stop(&p2, SIGTERM, 5000);
}

/* Many batches in flight, each with a refusal, alternating classes: every error arrives in
 * order with the text of its own statement. (More than the proxy keeps texts for at once:
 * test_proxy_inflight.c.) */
static void test_many_refusals_in_flight(void **state)
{
    (void)state;
    PGconn *c = via_proxy("app", "app-secret");
    enum { BATCHES = 100 };
    assert_int_equal(PQenterPipelineMode(c), 1);
    for (int i = 0; i < BATCHES; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        const char *pv[1] = { v };
        assert_int_equal(PQsendQueryParams(c, "SELECT $1::int", 1, NULL, pv, NULL, NULL, 0), 1);
        const char *bad = i % 2 ? "GRANT ALL ON it_t TO PUBLIC" : "DROP TABLE it_t";
        assert_int_equal(PQsendQueryParams(c, bad, 0, NULL, NULL, NULL, NULL, 0), 1);
        assert_int_equal(PQpipelineSync(c), 1);
    }
    for (int i = 0; i < BATCHES; i++) {
        PGresult *r = PQgetResult(c);
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        assert_int_equal(atoi(PQgetvalue(r, 0, 0)), i);
        PQclear(r);
        assert_null(PQgetResult(c));
        r = PQgetResult(c);
        assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
        assert_string_equal(it_sqlstate(r), "42501");
        const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        const char *want = i % 2 ? "role or privilege change refused" : "DDL refused";
        if (!msg || !it_contains(msg, want))
            fail_msg("batch %d: expected \"%s\", got \"%s\"", i, want, msg ? msg : "(null)");
        PQclear(r);
        assert_null(PQgetResult(c));
        r = PQgetResult(c);
        assert_int_equal(PQresultStatus(r), PGRES_PIPELINE_SYNC);
        PQclear(r);
    }
    assert_int_equal(PQexitPipelineMode(c), 1);
    PQfinish(c);
}

/* Refusals the server never runs (inside an aborted transaction block every statement gets
 * 25P02) are done at their ReadyForQuery: far more of them than MAX_PENDING_REFUSALS (1024)
 * leave the session usable, and ROLLBACK goes through. */
static void test_skipped_refusals_are_retired(void **state)
{
    (void)state;
    PGconn *c = via_proxy("app", "app-secret");
    it_exec(c, "BEGIN");
    PGresult *r = PQexec(c, "SELECT 1/0");
    assert_string_equal(it_sqlstate(r), "22012");
    PQclear(r);
    for (int i = 0; i < 1100; i++) {
        r = PQexec(c, "DROP TABLE it_t");
        if (strcmp(it_sqlstate(r), "25P02") != 0)
            fail_msg("refused statement %d in an aborted block: %s", i, it_sqlstate(r));
        PQclear(r);
    }
    it_exec(c, "ROLLBACK");
    char *v = it_value(c, "SELECT count(*) FROM it_t");
    assert_string_equal(v, "10");
    free(v);
    PQfinish(c);
}

/* COPY FROM STDIN in the extended protocol: the server ignores libpq's Sync behind the Execute.
 * The proxy must not count it as a statement in flight: a later text with a backslash (refused
 * only while something is in flight) goes through, as on a direct connection. */
static void test_extended_copy_leaves_nothing_in_flight(void **state)
{
    (void)state;
    PGconn *c = via_proxy("app", "app-secret");
    for (int round = 0; round < 2; round++) {
        PGresult *r = PQexecParams(c, "COPY it_w (tag, n) FROM STDIN", 0, NULL, NULL, NULL, NULL, 0);
        assert_int_equal(PQresultStatus(r), PGRES_COPY_IN);
        PQclear(r);
        assert_int_equal(PQputCopyData(c, "ext-copy\t1\n", 11), 1);
        assert_int_equal(PQputCopyEnd(c, round ? "abandoned" : NULL), 1);
        r = PQgetResult(c);
        assert_int_equal(PQresultStatus(r), round ? PGRES_FATAL_ERROR : PGRES_COMMAND_OK);
        PQclear(r);
        assert_null(PQgetResult(c));
        char *v = it_value(c, "SELECT E'a\\\\b'");
        assert_string_equal(v, "a\\b");
        free(v);
    }
    char *v = it_value(c, "SELECT count(*) FROM it_w WHERE tag = 'ext-copy'");
    assert_string_equal(v, "1");
    free(v);
    it_exec(c, "DELETE FROM it_w WHERE tag = 'ext-copy'");
    PQfinish(c);
}

/* A lexing setting the server itself reports (a database default): nothing is let through. */
static void test_server_side_lexing_setting(void **state)
{
    (void)state;
    it_create_db("prod", "it_guard_lex", NULL);
    PGconn *s = it_super("prod", "it_guard_lex");
    it_exec(s, "ALTER DATABASE it_guard_lex SET standard_conforming_strings = off");
    PQfinish(s);
    PGconn *c = it_proxy_connect(&proxy, "dbname=it_guard_lex user=app password=app-secret "
                                 "options='-c pgsov.env=production'");
    if (PQstatus(c) == CONNECTION_OK) {
        char *msg = it_expect_error(c, "SELECT 1", "42501", "changes how SQL is read");
        free(msg);
        PGresult *r = PQexec(c, "SELECT 'a\\'; DROP TABLE x; --'");
        assert_string_equal(it_sqlstate(r), "42501");
        PQclear(r);
    } else {
        assert_true(it_contains(PQerrorMessage(c), "standard_conforming_strings"));
    }
    PQfinish(c);
    s = it_super("prod", "postgres");
    it_exec(s, "DROP DATABASE it_guard_lex WITH (FORCE)");
    PQfinish(s);
}

/* The substitute Parse uses the statement name "pgsov_refused": a client's own statement of
 * that name must not turn a refusal into a different error. */
static void test_refusal_with_client_statement_named_like_substitute(void **state)
{
    (void)state;
    PGconn *c = via_proxy("app", "app-secret");
    PGresult *r = PQprepare(c, "pgsov_refused", "SELECT 1", 0, NULL);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    r = PQexecParams(c, "DROP TABLE it_t", 0, NULL, NULL, NULL, NULL, 0);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    if (strcmp(it_sqlstate(r), "42501") != 0)
        fail_msg("SQLSTATE %s, want 42501: %s", it_sqlstate(r), msg ? msg : "");
    PQclear(r);
    /* And the next refusal still carries its own text. */
    r = PQexec(c, "GRANT ALL ON it_t TO PUBLIC");
    msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    if (!msg || !it_contains(msg, "role or privilege change refused"))
        fail_msg("next refusal: %s", msg ? msg : "(null)");
    PQclear(r);
    PQfinish(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_app_ddl_refused),
        cmocka_unit_test(test_migrator_runs_ddl),
        cmocka_unit_test(test_refusal_error_fields),
        cmocka_unit_test(test_transaction_block_like_server_error),
        cmocka_unit_test(test_pipeline_like_server_error),
        cmocka_unit_test(test_multi_statement_commits_nothing),
        cmocka_unit_test(test_lexing_settings_refused),
        cmocka_unit_test(test_privileged_startup_settings),
        cmocka_unit_test(test_copy_classes),
        cmocka_unit_test(test_prepare_execute_read_only),
        cmocka_unit_test(test_other_classes_refused),
        cmocka_unit_test(test_fastpath_by_oid),
        cmocka_unit_test(test_many_refusals_in_flight),
        cmocka_unit_test(test_skipped_refusals_are_retired),
        cmocka_unit_test(test_extended_copy_leaves_nothing_in_flight),
        cmocka_unit_test(test_server_side_lexing_setting),
        cmocka_unit_test(test_refusal_with_client_statement_named_like_substitute),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
