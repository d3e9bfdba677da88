/* test_proxy_credentials.c — auth = proxy (issue 4): the proxy authenticates clients against
 * its users file and logs in to the upstream with credentials only it holds. */
#include "harness.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct it_proxy proxy;
static char users_path[700];
static char *users_text;

/* The production environment authenticates at the proxy; development stays passthrough. */
static const char ini_template[] =
    "[proxy]\n"
    "listen = 127.0.0.1:@PORT@\n"
    "rules = @RULES@\n"
    "client_tls = allow\n"
    "client_tls_cert = @PKI@/server.crt\n"
    "client_tls_key = @PKI@/server.key\n"
    "client_tls_ca = @PKI@/ca.crt\n"
    "audit_log = @AUDIT@\n"
    "log_level = debug\n"
    "workers = 2\n"                 /* failures from one source land on both: one back-off */
    "users_file = %s\n"
    "[env.development]\n"
    "host = localhost\nport = @DEV_PORT@\ndatabase = postgres\nsslrootcert = @PKI@/ca.crt\n"
    "host_patterns = localhost:@DEV_PORT@\n"
    "[env.production]\n"
    "host = localhost\nport = @PROD_PORT@\ndatabase = postgres\nsslrootcert = @PKI@/ca.crt\n"
    "host_patterns = localhost:@PROD_PORT@\n"
    "auth = proxy\n"
    "upstream_user.svc = app_md5\n"
    "upstream_user.ci = app\n"
    "upstream_user.bad = migrator\n"
    "upstream_password.app = app-secret\n"
    "upstream_password.app_md5 = md5-secret\n"
    "upstream_password.migrator = not-the-migrator-password\n";

static char *verifier_for(const char *password)
{
    char *out = NULL;
    int rc = it_sh(&out, "printf '%%s\\n' '%s' | '%s/pgsov' passwd --stdin someone", password, it_env()->bin);
    if (rc != 0)
        fail_msg("pgsov passwd failed: %s", out ? out : "");
    char *v = strstr(out, "SCRAM-SHA-256$");
    if (!v)
        fail_msg("no verifier in: %s", out);
    v[strcspn(v, " \n")] = '\0';
    char *copy = strdup(v);
    free(out);
    return copy;
}

static void write_users(const char *text)
{
    it_write_file(users_path, text);
    chmod(users_path, 0600);
}

static int setup(void **state)
{
    /* A verifier made by a real server, copied from pg_authid. */
    PGconn *dev = it_super("dev", "postgres");
    it_exec(dev, "DROP ROLE IF EXISTS verifier_src");
    it_exec(dev, "SET password_encryption = 'scram-sha-256'; CREATE ROLE verifier_src PASSWORD 'from-authid'");
    char *from_authid = it_value(dev, "SELECT rolpassword FROM pg_authid WHERE rolname = 'verifier_src'");
    it_exec(dev, "DROP ROLE verifier_src");
    PQfinish(dev);
    assert_true(strncmp(from_authid, "SCRAM-SHA-256$", 14) == 0);

    char *app_v = verifier_for("client-pw");
    char *bad_v = verifier_for("bad-pw");
    char *dir = it_tmpdir("cred");
    snprintf(users_path, sizeof users_path, "%s/users", dir);
    free(dir);
    size_t n = strlen(app_v) + strlen(bad_v) + strlen(from_authid) + 200;
    users_text = malloc(n);
    snprintf(users_text, n, "app %s\nsvc %s\nbad %s\nci cert\ncertmap ci-deploy ci\n", app_v, from_authid, bad_v);
    write_users(users_text);
    free(app_v);
    free(bad_v);
    free(from_authid);

    char ini[4096];
    snprintf(ini, sizeof ini, ini_template, users_path);
    it_proxy_start_ini(&proxy, ini, "allow all all all any default\n");
    return 0;
}

static int teardown(void **state)
{
    it_proxy_stop(&proxy, SIGINT, 5000);
    free(users_text);
    return 0;
}

static void expect_login(const char *conn_extra, const char *want_user)
{
    PGconn *c = it_proxy_connect(&proxy, "%s", conn_extra);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("login (%s) failed: %s", conn_extra, PQerrorMessage(c));
    char *who = it_value(c, "SELECT current_user");
    assert_string_equal(who, want_user);
    free(who);
    PQfinish(c);
}

/* Client SCRAM at the proxy; the proxy logs in upstream as `app` with SCRAM. */
static void test_scram_client_scram_upstream(void **state)
{
    expect_login("user=app password=client-pw dbname=production", "app");
    /* the client's password is not the upstream's: app-secret does not work through the proxy */
    PGconn *c = it_proxy_connect(&proxy, "user=app password=app-secret dbname=production");
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    assert_true(it_contains(PQerrorMessage(c), "password authentication failed for user \"app\""));
    PQfinish(c);
}

/* Over TLS, channel binding to the proxy's certificate (SCRAM-SHA-256-PLUS) works. */
static void test_channel_binding_require(void **state)
{
    char extra[1024];
    snprintf(extra, sizeof extra, "user=app password=client-pw dbname=production sslmode=verify-full "
             "host=localhost sslrootcert=%s/ca.crt channel_binding=require", it_env()->pki);
    PGconn *c = it_connect("hostaddr=127.0.0.1 port=%d connect_timeout=5 %s", proxy.port, extra);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("channel_binding=require through the proxy failed: %s", PQerrorMessage(c));
    char *ssl = it_value(c, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
    assert_string_equal(ssl, "t");      /* and the proxy→upstream link is TLS too */
    free(ssl);
    PQfinish(c);
}

/* A verifier copied from a real server's pg_authid; the upstream role logs in with MD5. */
static void test_verifier_from_pg_authid_md5_upstream(void **state)
{
    expect_login("user=svc password=from-authid dbname=production", "app_md5");
}

/* Certificate authentication: certmap ci-deploy → ci. */
static void test_certificate_login(void **state)
{
    const char *pki = it_env()->pki;
    PGconn *c = it_connect("host=localhost hostaddr=127.0.0.1 port=%d user=ci dbname=production "
                           "sslmode=verify-full sslrootcert=%s/ca.crt sslcert=%s/client-ci.crt "
                           "sslkey=%s/client-ci.key connect_timeout=5", proxy.port, pki, pki, pki);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("certificate login failed: %s", PQerrorMessage(c));
    char *who = it_value(c, "SELECT current_user");
    assert_string_equal(who, "app");
    free(who);
    PQfinish(c);
    /* the app's certificate (CN=app) does not map to ci */
    c = it_connect("host=localhost hostaddr=127.0.0.1 port=%d user=ci dbname=production "
                   "sslmode=verify-full sslrootcert=%s/ca.crt sslcert=%s/client-app.crt "
                   "sslkey=%s/client-app.key connect_timeout=5", proxy.port, pki, pki, pki);
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    assert_true(it_contains(PQerrorMessage(c), "authentication failed for user \"ci\""));
    PQfinish(c);
}

/* The upstream refuses the proxy's credential: a clear error that names none of it. */
static void test_wrong_upstream_password(void **state)
{
    PGconn *c = it_proxy_connect(&proxy, "user=bad password=bad-pw dbname=production");
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    const char *msg = PQerrorMessage(c);
    assert_true(it_contains(msg, "pgsov: the upstream refused the proxy's login"));
    assert_false(it_contains(msg, "not-the-migrator-password"));
    assert_false(it_contains(msg, "migrator"));
    PQfinish(c);
    char *log = it_proxy_log(&proxy);
    assert_false(it_contains(log, "not-the-migrator-password"));
    assert_true(it_contains(log, "upstream_login_failed"));
    free(log);
}

/* Over a link whose server is not verified (sslmode = disable), an upstream must prove it
 * knows the password (SCRAM) before the proxy trusts it: an AuthenticationOk straight away, or
 * a request for MD5 (a hash an impostor could crack offline), fails the login with the reason
 * in the operator's log and the password nowhere. */
static void test_unverified_upstream_must_prove_itself(void **state)
{
    static const uint8_t ok_at_once[] = { 'R', 0, 0, 0, 8, 0, 0, 0, 0, 'Z', 0, 0, 0, 5, 'I' };
    static const uint8_t wants_md5[] = { 'R', 0, 0, 0, 12, 0, 0, 0, 5, 's', 'a', 'l', 't' };
    static const struct { const uint8_t *hello; size_t len; const char *why; } cases[] = {
        { ok_at_once, sizeof ok_at_once, "accepted the login without proving it knows the password" },
        { wants_md5, sizeof wants_md5, "asks for MD5 over a link whose server is not verified" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct it_fake_upstream f = { .hello = cases[i].hello, .hello_len = cases[i].len };
        it_fake_upstream_start(&f);
        char ini[2048];
        snprintf(ini, sizeof ini,
                 "[proxy]\nlisten = 127.0.0.1:@PORT@\nrules = @RULES@\nclient_tls = disable\n"
                 "users_file = %s\n[env.staging]\nhost = 127.0.0.1\nport = %d\ndatabase = postgres\n"
                 "sslmode = disable\nhost_patterns = 127.0.0.1:%d\nauth = proxy\n"
                 "upstream_password.app = app-secret\n", users_path, f.port, f.port);
        struct it_proxy p;
        it_proxy_start_ini(&p, ini, "allow all all all any default\n");
        PGconn *c = it_proxy_connect(&p, "user=app password=client-pw dbname=staging");
        if (PQstatus(c) != CONNECTION_BAD || !it_contains(PQerrorMessage(c), "could not log in to the upstream"))
            fail_msg("case %zu: %s", i, PQstatus(c) == CONNECTION_OK ? "logged in" : PQerrorMessage(c));
        PQfinish(c);
        char *log = it_proxy_log(&p);
        if (!it_contains(log, cases[i].why) || it_contains(log, "app-secret"))
            fail_msg("case %zu: log:\n%s", i, log);
        free(log);
        it_proxy_stop(&p, SIGTERM, 5000);
        it_fake_upstream_stop(&f);
    }
}

/* A malformed SASL message fails that connection cleanly; others are served. */
static void test_malformed_sasl(void **state)
{
    int fd = it_raw_connect(proxy.port);
    uint8_t pkt[512];
    const char *kv[] = { "user", "app", "database", "production", NULL };
    size_t n = it_raw_startup(pkt, sizeof pkt, 196608, kv);
    assert_int_equal(it_raw_send(fd, pkt, n), 0);
    char type;
    uint8_t body[512];
    uint32_t len;
    assert_int_equal(it_raw_read_msg(fd, &type, body, sizeof body, &len, 5000), 1);
    assert_int_equal(type, 'R');
    /* SASLInitialResponse for SCRAM-SHA-256 whose data is garbage */
    static const uint8_t bad[] = "p\0\0\0\x21SCRAM-SHA-256\0\0\0\0\x0bnot a scram";
    assert_int_equal(it_raw_send(fd, bad, sizeof bad - 1), 0);
    assert_int_equal(it_raw_read_msg(fd, &type, body, sizeof body, &len, 15000), 1);
    assert_int_equal(type, 'E');
    assert_string_equal(it_raw_field(body, len, 'C'), "28P01");
    assert_int_equal(it_raw_wait_closed(fd, 5000), 1);
    close(fd);
    expect_login("user=app password=client-pw dbname=production", "app");
}

/* Wrong password and unknown user fail alike (28P01); repeated failures are held back. */
static void test_failures_and_backoff(void **state)
{
    PGconn *c = it_proxy_connect(&proxy, "user=ghost password=whatever dbname=production");
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    assert_true(it_contains(PQerrorMessage(c), "password authentication failed for user \"ghost\""));
    PQfinish(c);
    double slowest = 0;
    for (int i = 0; i < 4; i++) {
        double t0 = it_now_ms();
        c = it_proxy_connect(&proxy, "user=app password=wrong-%d dbname=production", i);
        double took = it_now_ms() - t0;
        assert_int_equal(PQstatus(c), CONNECTION_BAD);
        assert_true(it_contains(PQerrorMessage(c), "password authentication failed for user \"app\""));
        PQfinish(c);
        if (took > slowest)
            slowest = took;
    }
    /* past the free failures each answer waits at least the base delay (250 ms) */
    if (slowest < 240)
        fail_msg("no back-off after repeated failures (slowest answer %.0f ms)", slowest);
    /* a good login clears the count for the next test */
    expect_login("user=app password=client-pw dbname=production", "app");
}

/* Reload re-reads the users file; a malformed line keeps the old set. */
static void test_reload_users(void **state)
{
    write_users("app SCRAM-SHA-256$4096:broken\n");
    assert_int_equal(it_proxy_reload(&proxy), 0);
    char *log = it_proxy_log(&proxy);
    assert_true(it_contains(log, ":1:"));
    assert_false(it_contains(log, "SCRAM-SHA-256$4096:broken"));   /* never echoes a verifier */
    free(log);
    expect_login("user=app password=client-pw dbname=production", "app");

    char *v = verifier_for("rotated-pw");
    char text[1024];
    snprintf(text, sizeof text, "app %s\n", v);
    free(v);
    write_users(text);
    assert_int_equal(it_proxy_reload(&proxy), 1);
    expect_login("user=app password=rotated-pw dbname=production", "app");
    PGconn *c = it_proxy_connect(&proxy, "user=app password=client-pw dbname=production");
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    PQfinish(c);
    write_users(users_text);
    assert_int_equal(it_proxy_reload(&proxy), 1);
}

/* A refused statement's audit line names both the client user and the upstream role. */
static void test_audit_names_both_users(void **state)
{
    PGconn *c = it_proxy_connect(&proxy, "user=svc password=from-authid dbname=production");
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("login: %s", PQerrorMessage(c));
    char *msg = it_expect_error(c, "DROP TABLE IF EXISTS no_such_table", "42501", "DDL refused");
    free(msg);
    PQfinish(c);
    char *audit = NULL;
    it_sh(&audit, "grep '\"event\":\"refused\"' '%s'", proxy.audit);
    assert_true(it_contains(audit, "\"user\":\"svc\""));
    assert_true(it_contains(audit, "\"upstream_user\":\"app_md5\""));
    free(audit);
}

/* development stays passthrough: the client's own upstream password works there. */
static void test_passthrough_alongside(void **state)
{
    expect_login("user=app password=app-secret dbname=development", "app");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scram_client_scram_upstream),
        cmocka_unit_test(test_channel_binding_require),
        cmocka_unit_test(test_verifier_from_pg_authid_md5_upstream),
        cmocka_unit_test(test_certificate_login),
        cmocka_unit_test(test_wrong_upstream_password),
        cmocka_unit_test(test_unverified_upstream_must_prove_itself),
        cmocka_unit_test(test_malformed_sasl),
        cmocka_unit_test(test_failures_and_backoff),
        cmocka_unit_test(test_reload_users),
        cmocka_unit_test(test_passthrough_alongside),
        cmocka_unit_test(test_audit_names_both_users),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
