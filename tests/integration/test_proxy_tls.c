/* test_proxy_tls.c — TLS on both links of pgsov-proxy: a verify-full client reaches the proxy
 * and the proxy→upstream link is TLS (pg_stat_ssl); a client trusting the wrong CA fails with
 * a certificate error; an upstream whose certificate does not verify gives the client FATAL
 * 08006 with the reason; client certificates under client_tls = verify-ca and cn= rules;
 * client_tls = disable; reloading upstream TLS settings (a broken one keeps the old). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

/* TLS to the proxy; SCRAM passthrough needs channel_binding=disable on a TLS client link. */
static PGconn *tls_connect(const struct it_proxy *p, const char *rest)
{
    return it_connect("host=localhost hostaddr=127.0.0.1 port=%d connect_timeout=5 "
                      "channel_binding=disable %s", p->port, rest);
}

static void test_verify_full_both_links(void **state)
{
    (void)state;
    struct it_proxy p;
    it_proxy_start(&p, NULL, "allow development all app tls default\n");
    const struct it_env *e = it_env();
    char rest[1024];
    snprintf(rest, sizeof rest, "sslmode=verify-full sslrootcert=%s/ca.crt dbname=dev user=app "
             "password=app-secret", e->pki);
    PGconn *c = tls_connect(&p, rest);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("verify-full to the proxy: %s", PQerrorMessage(c));
    assert_int_equal(PQsslInUse(c), 1);
    /* The server sees its own client (the proxy) over TLS. */
    char *ssl = it_value(c, "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
    assert_string_equal(ssl, "true");
    free(ssl);
    char *version = it_value(c, "SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
    assert_true(strncmp(version, "TLSv1.", 6) == 0);
    free(version);
    PQfinish(c);

    /* The rule says tls: a plaintext client matches nothing. */
    c = it_proxy_connect(&p, "dbname=dev user=app password=app-secret");
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    assert_true(it_contains(PQerrorMessage(c), "may not reach environment \"development\""));
    PQfinish(c);
    assert_int_equal(it_proxy_stop(&p, SIGTERM, 5000), 0);
}

static void test_client_trusts_wrong_ca(void **state)
{
    (void)state;
    struct it_proxy p;
    it_proxy_start(&p, NULL, "allow development all app any default\n");
    char rest[1024];
    snprintf(rest, sizeof rest, "sslmode=verify-full sslrootcert=%s/wrong-ca.crt dbname=dev user=app "
             "password=app-secret", it_env()->pki);
    PGconn *c = tls_connect(&p, rest);
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    if (!it_contains(PQerrorMessage(c), "certificate verify failed"))
        fail_msg("expected a certificate error, got: %s", PQerrorMessage(c));
    PQfinish(c);
    assert_true(it_proxy_wait_log(&p, "client_tls_failed", 1, 3000));
    assert_int_equal(it_proxy_stop(&p, SIGTERM, 5000), 0);
}

static const char bad_upstream_ini[] =
    "[proxy]\n"
    "listen = 127.0.0.1:@PORT@\n"
    "rules = @RULES@\n"
    "audit_log = @AUDIT@\n"
    "log_level = debug\n"
    "client_tls = disable\n"
    "[env.development]\n"
    "aliases = dev\n"
    "host = localhost\n"
    "port = @DEV_PORT@\n"
    "database = postgres\n"
    "sslmode = verify-full\n"
    "sslrootcert = @PKI@/wrong-ca.crt\n"
    "host_patterns = localhost:@DEV_PORT@\n"
    "[env.production]\n"
    "host = localhost\n"
    "port = @PROD_PORT@\n"
    "database = postgres\n"
    "sslmode = verify-full\n"
    "sslrootcert = @PKI@/ca.crt\n"
    "host_patterns = localhost:@PROD_PORT@\n";

/* The upstream's certificate does not verify against the environment's sslrootcert. */
static void test_upstream_verify_fails(void **state)
{
    (void)state;
    struct it_proxy p;
    it_proxy_start_ini(&p, bad_upstream_ini, "allow all all app any default\n");

    PGconn *c = it_proxy_connect(&p, "dbname=dev user=app password=app-secret");
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    const char *err = PQerrorMessage(c);
    if (!it_contains(err, "could not connect to the upstream") || !it_contains(err, "certificate"))
        fail_msg("expected an upstream certificate error, got: %s", err);
    PQfinish(c);

    /* SQLSTATE and detail, read raw. */
    int fd = it_raw_connect(p.port);
    uint8_t pkt[512], body[4096];
    static const char *const kv[] = { "user", "app", "database", "development", NULL };
    size_t n = it_raw_startup(pkt, sizeof pkt, 196608, kv);
    assert_int_equal(it_raw_send(fd, pkt, n), 0);
    char type;
    uint32_t len;
    assert_int_equal(it_raw_read_msg(fd, &type, body, sizeof body - 1, &len, 5000), 1);
    assert_int_equal(type, 'E');
    const char *code = it_raw_field(body, len, 'C'), *detail = it_raw_field(body, len, 'D');
    assert_non_null(code);
    assert_string_equal(code, "08006");
    assert_non_null(detail);
    if (!it_contains(detail, "certificate verify failed"))
        fail_msg("detail should say why: %s", detail);
    close(fd);

    /* Production, with the right CA, still works through the same proxy. */
    c = it_proxy_connect(&p, "dbname=production user=app password=app-secret");
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("production: %s", PQerrorMessage(c));
    PQfinish(c);
    assert_int_equal(it_proxy_stop(&p, SIGTERM, 5000), 0);
}

/* sslmode = require with an sslrootcert checks the chain, as libpq does (its verify-ca): a
 * wrong root is refused, the right one works. */
static void test_require_with_root_checks_chain(void **state)
{
    (void)state;
    static const char ini[] =
        "[proxy]\nlisten = 127.0.0.1:@PORT@\nrules = @RULES@\nclient_tls = disable\n"
        "[env.development]\nhost = localhost\nport = @DEV_PORT@\ndatabase = postgres\n"
        "sslmode = require\nsslrootcert = @PKI@/wrong-ca.crt\nhost_patterns = localhost:@DEV_PORT@\n"
        "[env.production]\nhost = localhost\nport = @PROD_PORT@\ndatabase = postgres\n"
        "sslmode = require\nsslrootcert = @PKI@/ca.crt\nhost_patterns = localhost:@PROD_PORT@\n";
    struct it_proxy p;
    it_proxy_start_ini(&p, ini, "allow all all app any default\n");
    PGconn *c = it_proxy_connect(&p, "dbname=development user=app password=app-secret");
    if (PQstatus(c) != CONNECTION_BAD || !it_contains(PQerrorMessage(c), "certificate"))
        fail_msg("require + wrong root: %s", PQstatus(c) == CONNECTION_OK ? "connected" : PQerrorMessage(c));
    PQfinish(c);
    c = it_proxy_connect(&p, "dbname=production user=app password=app-secret");
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("require + right root: %s", PQerrorMessage(c));
    PQfinish(c);
    assert_int_equal(it_proxy_stop(&p, SIGTERM, 5000), 0);
}

static const char verify_ca_extra[] = "client_tls = verify-ca\n";

static void test_client_certificates(void **state)
{
    (void)state;
    const struct it_env *e = it_env();
    /* it_proxy_start's template already says client_tls = allow: use a full ini instead. */
    char ini[4096];
    const char *tmpl = it_proxy_default_ini;
    const char *at = strstr(tmpl, "client_tls = allow\n");
    assert_non_null(at);
    snprintf(ini, sizeof ini, "%.*s%s%s", (int)(at - tmpl), tmpl, verify_ca_extra,
             at + strlen("client_tls = allow\n"));
    struct it_proxy p;
    it_proxy_start_ini(&p, ini,
                       "allow development all app cn=app default\n"
                       "allow production all app cn=ci-deploy default\n");
    char rest[1024];

    /* client-app.crt (CN=app) reaches development. */
    snprintf(rest, sizeof rest, "sslmode=verify-full sslrootcert=%s/ca.crt sslcert=%s/client-app.crt "
             "sslkey=%s/client-app.key dbname=dev user=app password=app-secret", e->pki, e->pki, e->pki);
    PGconn *c = tls_connect(&p, rest);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("client-app to development: %s", PQerrorMessage(c));
    char *one = it_value(c, "SELECT 1");
    assert_string_equal(one, "1");
    free(one);
    PQfinish(c);

    /* cn=ci-deploy does not match client-app: production is refused. */
    snprintf(rest, sizeof rest, "sslmode=verify-full sslrootcert=%s/ca.crt sslcert=%s/client-app.crt "
             "sslkey=%s/client-app.key dbname=prod user=app password=app-secret", e->pki, e->pki, e->pki);
    c = tls_connect(&p, rest);
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    assert_true(it_contains(PQerrorMessage(c), "may not reach environment \"production\""));
    PQfinish(c);

    /* client-ci.crt does reach production. */
    snprintf(rest, sizeof rest, "sslmode=verify-full sslrootcert=%s/ca.crt sslcert=%s/client-ci.crt "
             "sslkey=%s/client-ci.key dbname=prod user=app password=app-secret", e->pki, e->pki, e->pki);
    c = tls_connect(&p, rest);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("client-ci to production: %s", PQerrorMessage(c));
    PQfinish(c);

    /* No certificate: refused during the handshake. */
    snprintf(rest, sizeof rest, "sslmode=verify-full sslrootcert=%s/ca.crt sslcert=/nonexistent "
             "sslkey=/nonexistent dbname=dev user=app password=app-secret", e->pki);
    c = tls_connect(&p, rest);
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    if (it_contains(PQerrorMessage(c), "may not reach"))
        fail_msg("a client without a certificate must fail in the TLS handshake: %s", PQerrorMessage(c));
    PQfinish(c);
    assert_true(it_proxy_wait_log(&p, "client_tls_failed", 1, 3000));

    /* Plaintext: refused with a clear message. */
    c = it_proxy_connect(&p, "dbname=dev user=app password=app-secret");
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    assert_true(it_contains(PQerrorMessage(c), "accepts TLS connections only"));
    PQfinish(c);
    assert_int_equal(it_proxy_stop(&p, SIGTERM, 5000), 0);
}

/* client_tls = disable: SSLRequest gets 'N'; sslmode=prefer falls back, require fails. */
static void test_client_tls_disabled(void **state)
{
    (void)state;
    struct it_proxy p;
    it_proxy_start_ini(&p, bad_upstream_ini, "allow all all app any default\n");
    PGconn *c = it_connect("host=127.0.0.1 port=%d sslmode=prefer dbname=production user=app password=app-secret "
                           "connect_timeout=5", p.port);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("sslmode=prefer against client_tls = disable: %s", PQerrorMessage(c));
    assert_int_equal(PQsslInUse(c), 0);
    PQfinish(c);
    c = it_connect("host=127.0.0.1 port=%d sslmode=require dbname=production user=app password=app-secret "
                   "connect_timeout=5", p.port);
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    assert_true(it_contains(PQerrorMessage(c), "does not support SSL"));
    PQfinish(c);
    assert_int_equal(it_proxy_stop(&p, SIGTERM, 5000), 0);
}

/* Reload picks up a corrected sslrootcert; a missing one is refused and the old one kept. */
static void test_reload_upstream_tls(void **state)
{
    (void)state;
    struct it_proxy p;
    it_proxy_start_ini(&p, bad_upstream_ini, "allow all all app any default\n");
    PGconn *c = it_proxy_connect(&p, "dbname=dev user=app password=app-secret");
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    PQfinish(c);

    char *ini = NULL;
    it_sh(&ini, "sed 's|/wrong-ca.crt|/ca.crt|' '%s' > '%s.new' && mv '%s.new' '%s' && cat '%s'",
          p.ini, p.ini, p.ini, p.ini, p.ini);
    assert_false(it_contains(ini, "wrong-ca"));
    free(ini);
    assert_int_equal(it_proxy_reload(&p), 1);
    c = it_proxy_connect(&p, "dbname=dev user=app password=app-secret");
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("after reload with the right CA: %s", PQerrorMessage(c));
    PQfinish(c);

    assert_int_equal(it_sh(NULL, "sed -i 's|/ca.crt|/no-such-ca.crt|' '%s'", p.ini), 0);
    assert_int_equal(it_proxy_reload(&p), 0);
    c = it_proxy_connect(&p, "dbname=dev user=app password=app-secret");
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("a failed reload must keep the working TLS settings: %s", PQerrorMessage(c));
    PQfinish(c);
    assert_int_equal(it_proxy_stop(&p, SIGTERM, 5000), 0);
}

/* Bulk traffic over the TLS client link: 32 MB of COPY in and out, a 200k-row result. */
static void test_bulk_over_tls(void **state)
{
    (void)state;
    struct it_proxy p;
    it_proxy_start(&p, NULL, "allow development all app tls default\n");
    PGconn *s = it_super("dev", "postgres");
    it_exec(s, "DROP TABLE IF EXISTS public.it_tls_copy");
    it_exec(s, "CREATE TABLE public.it_tls_copy (id int, payload text)");
    it_exec(s, "GRANT SELECT, INSERT ON public.it_tls_copy TO app");
    char rest[1024];
    snprintf(rest, sizeof rest, "sslmode=verify-full sslrootcert=%s/ca.crt dbname=dev user=app "
             "password=app-secret", it_env()->pki);
    PGconn *c = tls_connect(&p, rest);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("TLS: %s", PQerrorMessage(c));
    PGresult *r = PQexec(c, "COPY public.it_tls_copy FROM STDIN");
    assert_int_equal(PQresultStatus(r), PGRES_COPY_IN);
    PQclear(r);
    char line[160];
    size_t sent = 0;
    int rows = 0;
    while (sent < 32u * 1024 * 1024) {
        rows++;
        int n = snprintf(line, sizeof line, "%d\t%0120d\n", rows, rows);
        assert_int_equal(PQputCopyData(c, line, n), 1);
        sent += (size_t)n;
    }
    assert_int_equal(PQputCopyEnd(c, NULL), 1);
    r = PQgetResult(c);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("COPY over TLS: %s", PQresultErrorMessage(r));
    PQclear(r);
    assert_null(PQgetResult(c));
    r = PQexec(c, "COPY public.it_tls_copy TO STDOUT");
    assert_int_equal(PQresultStatus(r), PGRES_COPY_OUT);
    PQclear(r);
    size_t got = 0;
    char *buf;
    int n;
    while ((n = PQgetCopyData(c, &buf, 0)) > 0) {
        got += (size_t)n;
        PQfreemem(buf);
    }
    while ((r = PQgetResult(c)) != NULL)
        PQclear(r);
    assert_true(got == sent);
    r = PQexec(c, "SELECT g, repeat('y', 100) FROM generate_series(1, 200000) g");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(r), 200000);
    PQclear(r);
    PQfinish(c);
    it_exec(s, "DROP TABLE public.it_tls_copy");
    PQfinish(s);
    assert_int_equal(it_proxy_stop(&p, SIGTERM, 5000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verify_full_both_links),
        cmocka_unit_test(test_client_trusts_wrong_ca),
        cmocka_unit_test(test_upstream_verify_fails),
        cmocka_unit_test(test_require_with_root_checks_chain),
        cmocka_unit_test(test_client_certificates),
        cmocka_unit_test(test_client_tls_disabled),
        cmocka_unit_test(test_reload_upstream_tls),
        cmocka_unit_test(test_bulk_over_tls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
