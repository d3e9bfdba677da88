/* test_proxy_route.c — pgsov-proxy routing through the real proxy and clusters: environment
 * sovereignty (a row written through one environment is absent in the other), refusal of an
 * environment the rules do not allow (28000, read with a raw client to see the SQLSTATE),
 * unknown environments, `options=-c pgsov.env=NAME` with a real database name, and the audit
 * line a refusal writes. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static const char rules[] =
    "# app may use both environments; app_md5 only development from here\n"
    "allow development,production 127.0.0.1/32 app any default\n"
    "allow development 127.0.0.1/32 app_md5 any default\n"
    "allow production 10.0.0.0/8 app_md5 any default\n";

static struct it_proxy proxy;

static int setup(void **state)
{
    (void)state;
    it_proxy_start(&proxy, NULL, rules);
    static const char *const clusters[] = { "dev", "prod" };
    for (int i = 0; i < 2; i++) {
        PGconn *c = it_super(clusters[i], "postgres");
        it_exec(c, "DROP TABLE IF EXISTS public.it_sov");
        it_exec(c, "CREATE TABLE public.it_sov (id serial PRIMARY KEY, note text NOT NULL)");
        it_exec(c, "GRANT SELECT, INSERT ON public.it_sov TO app, app_md5");
        it_exec(c, "GRANT USAGE ON SEQUENCE public.it_sov_id_seq TO app, app_md5");
        PQfinish(c);
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    static const char *const clusters[] = { "dev", "prod" };
    for (int i = 0; i < 2; i++) {
        PGconn *c = it_super(clusters[i], "postgres");
        it_exec(c, "DROP TABLE IF EXISTS public.it_sov");
        it_exec(c, "DROP DATABASE IF EXISTS appdb WITH (FORCE)");
        PQfinish(c);
    }
    it_proxy_stop(&proxy, SIGTERM, 5000);
    return 0;
}

static PGconn *app_to(const char *env)
{
    PGconn *c = it_proxy_connect(&proxy, "dbname=%s user=app password=app-secret", env);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("app to %s through the proxy: %s", env, PQerrorMessage(c));
    return c;
}

static int count_note(PGconn *c, const char *note)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM public.it_sov WHERE note = '%s'", note);
    char *v = it_value(c, sql);
    int n = atoi(v);
    free(v);
    return n;
}

/* Each environment reaches its own cluster: writes through one are invisible in the other,
 * through the proxy and directly. */
static void test_sovereignty(void **state)
{
    (void)state;
    PGconn *dev = app_to("development"), *prod = app_to("prod");
    it_exec(dev, "INSERT INTO public.it_sov (note) VALUES ('written-in-dev')");
    it_exec(prod, "INSERT INTO public.it_sov (note) VALUES ('written-in-prod')");

    assert_int_equal(count_note(dev, "written-in-dev"), 1);
    assert_int_equal(count_note(dev, "written-in-prod"), 0);
    assert_int_equal(count_note(prod, "written-in-prod"), 1);
    assert_int_equal(count_note(prod, "written-in-dev"), 0);

    /* The proxy's idea of "production" is the prod cluster: check from the server side. */
    char *port = it_value(prod, "SELECT current_setting('port')");
    assert_int_equal(atoi(port), it_cluster_port("prod"));
    free(port);
    port = it_value(dev, "SELECT current_setting('port')");
    assert_int_equal(atoi(port), it_cluster_port("dev"));
    free(port);

    PGconn *direct = it_super("prod", "postgres");
    assert_int_equal(count_note(direct, "written-in-dev"), 0);
    assert_int_equal(count_note(direct, "written-in-prod"), 1);
    PQfinish(direct);
    direct = it_super("dev", "postgres");
    assert_int_equal(count_note(direct, "written-in-dev"), 1);
    assert_int_equal(count_note(direct, "written-in-prod"), 0);
    PQfinish(direct);
    PQfinish(dev);
    PQfinish(prod);
}

/* Startup through a raw socket: the first message back must be an ErrorResponse. */
static void raw_startup_error(const char *const *kv, char *sqlstate, size_t ss_size, char *msg,
                              size_t msg_size)
{
    int fd = it_raw_connect(proxy.port);
    uint8_t pkt[1024];
    size_t n = it_raw_startup(pkt, sizeof pkt, 196608, kv);
    assert_int_equal(it_raw_send(fd, pkt, n), 0);
    char type;
    uint8_t body[4096];
    uint32_t len;
    int rc = it_raw_read_msg(fd, &type, body, sizeof body - 1, &len, 5000);
    if (rc != 1)
        fail_msg("no answer to the startup packet (rc %d)", rc);
    if (type != 'E')
        fail_msg("expected ErrorResponse, got '%c'", type);
    const char *c = it_raw_field(body, len, 'C'), *m = it_raw_field(body, len, 'M');
    const char *sev = it_raw_field(body, len, 'V');
    assert_non_null(sev);
    assert_string_equal(sev, "FATAL");
    snprintf(sqlstate, ss_size, "%s", c ? c : "");
    snprintf(msg, msg_size, "%s", m ? m : "");
    assert_int_equal(it_raw_wait_closed(fd, 3000), 1);
    close(fd);
}

static void test_refused_environment(void **state)
{
    (void)state;
    /* libpq: the FATAL text reaches the client. */
    PGconn *c = it_proxy_connect(&proxy, "dbname=production user=app_md5 password=md5-secret");
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    const char *err = PQerrorMessage(c);
    if (!it_contains(err, "pgsov: user \"app_md5\"") || !it_contains(err, "may not reach environment \"production\""))
        fail_msg("unexpected refusal text: %s", err);
    PQfinish(c);

    /* Raw: SQLSTATE 28000 before any authentication. */
    static const char *const kv[] = { "user", "app_md5", "database", "prod", NULL };
    char sqlstate[8], msg[512];
    raw_startup_error(kv, sqlstate, sizeof sqlstate, msg, sizeof msg);
    assert_string_equal(sqlstate, "28000");
    assert_true(it_contains(msg, "environment \"production\""));

    /* The same user may reach development. */
    c = it_proxy_connect(&proxy, "dbname=dev user=app_md5 password=md5-secret");
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("app_md5 to development: %s", PQerrorMessage(c));
    char *one = it_value(c, "SELECT 1");
    assert_string_equal(one, "1");
    free(one);
    PQfinish(c);
}

static void test_unknown_environment(void **state)
{
    (void)state;
    PGconn *c = it_proxy_connect(&proxy, "dbname=qa user=app password=app-secret");
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    const char *err = PQerrorMessage(c);
    if (!it_contains(err, "unknown environment \"qa\"") || !it_contains(err, "development") ||
        !it_contains(err, "production"))
        fail_msg("unknown environment message should name it and list the environments: %s", err);
    PQfinish(c);

    static const char *const kv[] = { "user", "app", "database", "postgres", "options",
                                      "-c pgsov.env=staging", NULL };
    char sqlstate[8], msg[512];
    raw_startup_error(kv, sqlstate, sizeof sqlstate, msg, sizeof msg);
    assert_true(sqlstate[0] != '\0');
    assert_true(it_contains(msg, "unknown environment \"staging\""));
}

/* options=-c pgsov.env=dev keeps the real database name. */
static void test_env_option_real_database(void **state)
{
    (void)state;
    it_create_db("dev", "appdb", "app");
    PGconn *c = it_proxy_connect(&proxy, "dbname=appdb user=app password=app-secret "
                                 "options='-c pgsov.env=dev -c application_name=itest-opt'");
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("pgsov.env option: %s", PQerrorMessage(c));
    char *db = it_value(c, "SELECT current_database()");
    assert_string_equal(db, "appdb");
    free(db);
    char *app = it_value(c, "SELECT current_setting('application_name')");
    assert_string_equal(app, "itest-opt");   /* other -c switches still reach the server */
    free(app);
    char *port = it_value(c, "SELECT current_setting('port')");
    assert_int_equal(atoi(port), it_cluster_port("dev"));
    free(port);
    /* pgsov.env itself never reaches the server. */
    PGresult *r = PQexec(c, "SELECT current_setting('pgsov.env', true)");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_true(PQgetisnull(r, 0, 0) || PQgetvalue(r, 0, 0)[0] == '\0');
    PQclear(r);
    PQfinish(c);

    /* appdb does not exist in production: that error is the server's. */
    c = it_proxy_connect(&proxy, "dbname=appdb user=app password=app-secret options='-c pgsov.env=production'");
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    assert_true(it_contains(PQerrorMessage(c), "appdb"));
    PQfinish(c);
}

/* A refused connection writes one JSON audit line naming event, environment, user, source. */
static void test_audit_line_for_refusal(void **state)
{
    (void)state;
    FILE *f = fopen(proxy.audit, "r");
    int before = 0;
    char line[8192];
    if (f) {
        while (fgets(line, sizeof line, f))
            before++;
        fclose(f);
    }
    PGconn *c = it_proxy_connect(&proxy, "dbname=production user=app_md5 password=md5-secret "
                                 "application_name=audit-probe");
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    PQfinish(c);

    int lines = 0, found = 0;
    for (int tries = 0; tries < 100 && !found; tries++) {
        f = fopen(proxy.audit, "r");
        assert_non_null(f);
        lines = 0;
        while (fgets(line, sizeof line, f)) {
            if (++lines <= before)
                continue;
            json_error_t jerr;
            json_t *j = json_loads(line, 0, &jerr);
            if (!j)
                fail_msg("audit line %d is not JSON (%s): %s", lines, jerr.text, line);
            const char *ev = json_string_value(json_object_get(j, "event"));
            const char *env = json_string_value(json_object_get(j, "environment"));
            const char *user = json_string_value(json_object_get(j, "user"));
            const char *src = json_string_value(json_object_get(j, "source"));
            assert_non_null(ev);
            if (strcmp(ev, "connection_refused") == 0) {
                found++;
                assert_non_null(env);
                assert_string_equal(env, "production");
                assert_non_null(user);
                assert_string_equal(user, "app_md5");
                assert_non_null(src);
                assert_true(strncmp(src, "127.0.0.1", 9) == 0);
                assert_non_null(json_object_get(j, "time"));
            }
            json_decref(j);
        }
        fclose(f);
        if (!found)
            usleep(20000);
    }
    assert_int_equal(found, 1);
    assert_int_equal(lines, before + 1);
}

/* The hostname guard: production configured onto the development cluster (a copy-paste slip)
 * is refused before the proxy starts, by --check and by a normal start. */
static void test_hostname_guard_at_start(void **state)
{
    (void)state;
    const struct it_env *e = it_env();
    char *dir = it_tmpdir("guardini");
    char ini[4096], path[1200], rules_path[1200];
    snprintf(rules_path, sizeof rules_path, "%s/access.rules", dir);
    it_write_file(rules_path, "allow all all app any default\n");
    static const struct { const char *name, *prod_patterns; int prod_port_is_dev; } cases[] = {
        { "production on the dev port", "localhost:*", 1 },
        { "production outside its own patterns", "db.prod.example:5432", 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(ini, sizeof ini,
                 "[proxy]\nlisten = 127.0.0.1:0\nrules = %s\nclient_tls = disable\n"
                 "[env.development]\nhost = localhost\nport = %d\ndatabase = postgres\n"
                 "sslrootcert = %s/ca.crt\nhost_patterns = localhost:%d\n"
                 "[env.production]\nhost = localhost\nport = %d\ndatabase = postgres\n"
                 "sslrootcert = %s/ca.crt\nhost_patterns = %s\n",
                 rules_path, e->dev_port, e->pki, e->dev_port,
                 cases[i].prod_port_is_dev ? e->dev_port : e->prod_port, e->pki, cases[i].prod_patterns);
        snprintf(path, sizeof path, "%s/proxy-%zu.ini", dir, i);
        it_write_file(path, ini);
        char *out = NULL;
        int rc = it_sh(&out, "'%s/pgsov-proxy' --check -c '%s'", e->bin, path);
        if (rc != 1 || !it_contains(out, "production") || !it_contains(out, "hostname guard"))
            fail_msg("%s: --check exit %d: %s", cases[i].name, rc, out);
        print_message("   %s: %s", cases[i].name, out);
        free(out);
        rc = it_sh(&out, "timeout 5 '%s/pgsov-proxy' -c '%s'", e->bin, path);
        if (rc == 0 || rc == 124)
            fail_msg("%s: the proxy started (exit %d): %s", cases[i].name, rc, out);
        free(out);
    }
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sovereignty),
        cmocka_unit_test(test_refused_environment),
        cmocka_unit_test(test_unknown_environment),
        cmocka_unit_test(test_env_option_real_database),
        cmocka_unit_test(test_audit_line_for_refusal),
        cmocka_unit_test(test_hostname_guard_at_start),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
