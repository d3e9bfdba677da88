/* test_proxy_auth.c — authentication passthrough through pgsov-proxy: SCRAM (app) and MD5
 * (app_md5) succeed; a wrong password's server error reaches the client (28P01); channel
 * binding: require fails clearly, prefer works on a plaintext client link, and on a TLS client
 * link libpq's gs2 'y' is refused with the documented message while channel_binding=disable
 * works. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static struct it_proxy proxy;

static int setup(void **state)
{
    (void)state;
    it_proxy_start(&proxy, NULL, "allow development all app,app_md5 any default\n");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    it_proxy_stop(&proxy, SIGTERM, 5000);
    return 0;
}

static const struct {
    const char *conninfo;        /* after host/port/sslmode=disable */
    int ok;
    const char *text;            /* in PQerrorMessage when !ok */
} plain_cases[] = {
    { "dbname=dev user=app password=app-secret", 1, NULL },
    { "dbname=dev user=app_md5 password=md5-secret", 1, NULL },
    { "dbname=dev user=app password=wrong", 0, "password authentication failed for user \"app\"" },
    { "dbname=dev user=app_md5 password=wrong", 0, "password authentication failed for user \"app_md5\"" },
    { "dbname=dev user=app password=app-secret channel_binding=prefer", 1, NULL },
    { "dbname=dev user=app password=app-secret channel_binding=require", 0, "channel binding" },
};

static void test_passthrough_plaintext_client(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof plain_cases / sizeof plain_cases[0]; i++) {
        PGconn *c = it_proxy_connect(&proxy, "%s", plain_cases[i].conninfo);
        if (plain_cases[i].ok) {
            if (PQstatus(c) != CONNECTION_OK)
                fail_msg("%s: %s", plain_cases[i].conninfo, PQerrorMessage(c));
            char *u = it_value(c, "SELECT current_user");
            assert_true(it_contains(plain_cases[i].conninfo, u));
            free(u);
        } else {
            assert_int_equal(PQstatus(c), CONNECTION_BAD);
            if (!it_contains(PQerrorMessage(c), plain_cases[i].text))
                fail_msg("%s: expected \"%s\" in: %s", plain_cases[i].conninfo, plain_cases[i].text,
                         PQerrorMessage(c));
        }
        PQfinish(c);
    }
}

/* The server's 28P01 crosses the proxy unchanged: MD5 with a wrong response, spoken raw. */
static void test_wrong_password_sqlstate(void **state)
{
    (void)state;
    int fd = it_raw_connect(proxy.port);
    uint8_t pkt[512], body[4096];
    static const char *const kv[] = { "user", "app_md5", "database", "development", NULL };
    size_t n = it_raw_startup(pkt, sizeof pkt, 196608, kv);
    assert_int_equal(it_raw_send(fd, pkt, n), 0);
    char type;
    uint32_t len;
    assert_int_equal(it_raw_read_msg(fd, &type, body, sizeof body - 1, &len, 5000), 1);
    assert_int_equal(type, 'R');
    assert_int_equal(len, 8);
    assert_int_equal(body[3], 5);   /* AuthenticationMD5Password */
    /* PasswordMessage: "md5" and 32 hex digits that are not the right hash. */
    uint8_t wrong[64] = { 'p', 0, 0, 0, 4 + 36 };
    memcpy(wrong + 5, "md5", 3);
    memset(wrong + 8, '0', 32);
    wrong[40] = '\0';
    assert_int_equal(it_raw_send(fd, wrong, 41), 0);
    assert_int_equal(it_raw_read_msg(fd, &type, body, sizeof body - 1, &len, 5000), 1);
    assert_int_equal(type, 'E');
    const char *code = it_raw_field(body, len, 'C');
    assert_non_null(code);
    assert_string_equal(code, "28P01");
    assert_int_equal(it_raw_wait_closed(fd, 3000), 1);
    close(fd);
}

static void test_channel_binding_over_tls_client_link(void **state)
{
    (void)state;
    const struct it_env *e = it_env();
    static const struct {
        const char *cb;
        int ok;
        const char *text;
    } cases[] = {
        { "prefer", 0, "SCRAM passthrough cannot use channel binding" },
        { "disable", 1, NULL },
        { "require", 0, "channel binding" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        PGconn *c = it_connect("host=localhost hostaddr=127.0.0.1 port=%d sslmode=verify-full "
                               "sslrootcert=%s/ca.crt dbname=dev user=app password=app-secret "
                               "channel_binding=%s connect_timeout=5", proxy.port, e->pki, cases[i].cb);
        if (cases[i].ok) {
            if (PQstatus(c) != CONNECTION_OK)
                fail_msg("channel_binding=%s over TLS: %s", cases[i].cb, PQerrorMessage(c));
            assert_int_equal(PQsslInUse(c), 1);
        } else {
            assert_int_equal(PQstatus(c), CONNECTION_BAD);
            if (!it_contains(PQerrorMessage(c), cases[i].text))
                fail_msg("channel_binding=%s over TLS: expected \"%s\" in: %s", cases[i].cb,
                         cases[i].text, PQerrorMessage(c));
        }
        PQfinish(c);
    }
    /* MD5 over a TLS client link has no binding to lose. */
    PGconn *c = it_connect("host=localhost hostaddr=127.0.0.1 port=%d sslmode=verify-full "
                           "sslrootcert=%s/ca.crt dbname=dev user=app_md5 password=md5-secret "
                           "connect_timeout=5", proxy.port, e->pki);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("md5 over TLS: %s", PQerrorMessage(c));
    PQfinish(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_passthrough_plaintext_client),
        cmocka_unit_test(test_wrong_password_sqlstate),
        cmocka_unit_test(test_channel_binding_over_tls_client_link),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
