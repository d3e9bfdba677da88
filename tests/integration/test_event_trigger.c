/* test_event_trigger.c — rules/ddl_event_trigger.sql on a real cluster: it installs twice
 * (idempotent), refuses DDL with SQLSTATE 42501 for roles not in pgsov.migration_roles (plain,
 * inside DO, inside a function), lets listed roles and superusers run DDL, and keeps the role
 * list out of the app's reach. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define DB "pgsov_evt"

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    char *buf = NULL;
    size_t size = 0;
    FILE *mem = open_memstream(&buf, &size);
    if (!mem)
        fail_msg("open_memstream failed");
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, n, mem);
    fclose(f);
    fclose(mem);
    return buf;
}

static PGconn *connect_as(const char *user, const char *password)
{
    const struct it_env *e = it_env();
    PGconn *c = it_connect("host=localhost hostaddr=127.0.0.1 port=%d dbname=" DB " user=%s "
                           "password=%s sslmode=verify-full sslrootcert=%s/ca.crt",
                           it_cluster_port("dev"), user, password, e->pki);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("connection as %s failed: %s", user, PQerrorMessage(c));
    return c;
}

/* Runs sql, which must fail with sqlstate; returns nothing, fails the test otherwise. */
static void expect_refused(PGconn *c, const char *sql, const char *sqlstate, const char *text)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_FATAL_ERROR)
        fail_msg("expected %s to fail, status %s", sql, PQresStatus(PQresultStatus(r)));
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    if (!state || strcmp(state, sqlstate) != 0)
        fail_msg("%s: SQLSTATE %s want %s (%s)", sql, state ? state : "none", sqlstate,
                 msg ? msg : "");
    if (text && (!msg || !strstr(msg, text)))
        fail_msg("%s: message \"%s\" lacks \"%s\"", sql, msg ? msg : "", text);
    PQclear(r);
}

static void test_ddl_guard(void **state)
{
    (void)state;
    const struct it_env *e = it_env();
    it_create_db("dev", DB, NULL);

    char path[1024];
    snprintf(path, sizeof path, "%s/rules/ddl_event_trigger.sql", e->src);
    char *install = read_file(path);
    PGconn *super = it_super("dev", DB);
    it_exec(super, install);
    it_exec(super, install);          /* idempotent, and a superuser passes its own guard */
    free(install);

    char *v = it_value(super, "SELECT concat_ws(' ', evtevent, evtenabled::text, "
                              "evtfoid::regproc::text) FROM pg_event_trigger "
                              "WHERE evtname = 'pgsov_ddl_guard'");
    assert_string_equal(v, "ddl_command_start O pgsov.ddl_guard");
    free(v);
    v = it_value(super, "SELECT count(*) FROM pg_event_trigger WHERE evtname = 'pgsov_ddl_guard'");
    assert_string_equal(v, "1");
    free(v);

    it_exec(super, "GRANT CREATE ON SCHEMA public TO app, migrator");
    it_exec(super, "CREATE TABLE public.data (id int)");
    it_exec(super, "GRANT SELECT, INSERT ON public.data TO app");
    it_exec(super, "CREATE FUNCTION public.make_table() RETURNS void LANGUAGE plpgsql AS "
                   "$$ BEGIN CREATE TABLE public.from_function (id int); END $$");

    /* The app: data yes, DDL no — however it is wrapped. */
    PGconn *app = connect_as("app", "app-secret");
    it_exec(app, "INSERT INTO public.data VALUES (1)");
    free(it_value(app, "SELECT count(*) FROM public.data"));
    expect_refused(app, "CREATE TABLE public.t_app (id int)", "42501", "DDL refused");
    expect_refused(app, "DO $$ BEGIN EXECUTE 'CREATE TABLE public.t_do (id int)'; END $$",
                   "42501", "DDL refused");
    expect_refused(app, "SELECT public.make_table()", "42501", "DDL refused");
    expect_refused(app, "CREATE INDEX ON public.data (id)", "42501", "DDL refused");
    /* the role list is not the app's to edit */
    expect_refused(app, "INSERT INTO pgsov.migration_roles (role) VALUES ('app')", "42501", NULL);
    expect_refused(app, "DELETE FROM pgsov.migration_roles", "42501", NULL);
    /* and a setting cannot stand in for it */
    it_exec(app, "SET pgsov.migration_roles = 'app'");
    expect_refused(app, "CREATE TABLE public.t_app (id int)", "42501", "DDL refused");

    PGresult *r = PQexec(app, "CREATE TABLE public.t_hint (id int)");
    const char *hint = PQresultErrorField(r, PG_DIAG_MESSAGE_HINT);
    assert_non_null(hint);
    assert_true(it_contains(hint, "pgsov.migration_roles"));
    PQclear(r);

    /* The migrator: refused until listed, then allowed, DO blocks included. */
    PGconn *mig = connect_as("migrator", "migrator-secret");
    expect_refused(mig, "CREATE TABLE public.t_mig (id int)", "42501", "migrator");
    it_exec(super, "INSERT INTO pgsov.migration_roles (role) VALUES ('migrator'), "
                   "('no_such_role')");
    it_exec(mig, "CREATE TABLE public.t_mig (id int)");
    it_exec(mig, "DO $$ BEGIN EXECUTE 'CREATE TABLE public.t_mig_do (id int)'; END $$");
    it_exec(mig, "DROP TABLE public.t_mig_do");
    expect_refused(app, "CREATE TABLE public.t_app (id int)", "42501", "DDL refused");

    /* Membership of a listed group role counts. */
    it_exec(super, "DELETE FROM pgsov.migration_roles");
    it_exec(super, "DROP ROLE IF EXISTS pgsov_evt_migrations");
    it_exec(super, "CREATE ROLE pgsov_evt_migrations NOLOGIN");
    it_exec(super, "GRANT pgsov_evt_migrations TO migrator");
    it_exec(super, "INSERT INTO pgsov.migration_roles (role) VALUES ('pgsov_evt_migrations')");
    it_exec(mig, "CREATE TABLE public.t_group (id int)");
    expect_refused(app, "CREATE TABLE public.t_app (id int)", "42501", "DDL refused");

    v = it_value(super, "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class "
                        "WHERE relname LIKE 't\\_%' AND relkind = 'r'");
    assert_string_equal(v, "t_group,t_mig");
    free(v);

    PQfinish(app);
    PQfinish(mig);
    PQfinish(super);

    /* Clean up: the database, and the cluster-wide group role. */
    PGconn *c = it_super("dev", "postgres");
    it_exec(c, "DROP DATABASE IF EXISTS " DB " WITH (FORCE)");
    it_exec(c, "DROP ROLE IF EXISTS pgsov_evt_migrations");
    PQfinish(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ddl_guard),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
