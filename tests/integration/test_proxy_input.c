/* test_proxy_input.c — hostile or broken input to pgsov-proxy closes only that connection:
 * garbage, startup lengths out of range, a regular message shorter than its header or larger
 * than max_message_size, a truncated message, plaintext after SSLRequest, a silent client
 * (startup_timeout). A libpq session kept open beside them must answer `select 1` after each,
 * and the upstream connections of the closed clients must go away. Also: protocol 3.1 and
 * _pq_ options get NegotiateProtocolVersion, GSSENCRequest gets 'N', protocol 2 is refused. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

static struct it_proxy proxy;
static PGconn *bystander;

static int setup(void **state)
{
    (void)state;
    it_proxy_start(&proxy, "max_message_size = 64kB\nstartup_timeout = 1s\n",
                   "allow development all app,app_md5 any default\n");
    bystander = it_proxy_connect(&proxy, "dbname=dev user=app password=app-secret");
    if (PQstatus(bystander) != CONNECTION_OK)
        fail_msg("bystander: %s", PQerrorMessage(bystander));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    PQfinish(bystander);
    it_proxy_stop(&proxy, SIGTERM, 5000);
    return 0;
}

static void bystander_answers(const char *after)
{
    PGresult *r = PQexec(bystander, "SELECT 1");
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("after %s the bystander session failed: %s", after, PQerrorMessage(bystander));
    assert_string_equal(PQgetvalue(r, 0, 0), "1");
    PQclear(r);
}

/* Waits until no upstream backend of application_name is left on the dev cluster. */
static void upstream_gone(const char *application_name)
{
    PGconn *c = it_super("dev", "postgres");
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s'",
             application_name);
    char *n = NULL;
    for (int i = 0; i < 300; i++) {
        free(n);
        n = it_value(c, sql);
        if (strcmp(n, "0") == 0)
            break;
        usleep(10000);
    }
    if (strcmp(n, "0") != 0)
        fail_msg("%s backends of %s still open upstream", n, application_name);
    free(n);
    PQfinish(c);
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* ---- before the startup packet: raw sockets ---------------------------------------------- */

static void test_startup_garbage(void **state)
{
    (void)state;
    uint8_t small[8] = { 0, 0, 0, 4, 0, 3, 0, 0 };
    uint8_t big[16] = { 0 };
    put32(big, 10001);
    put32(big + 4, 196608);
    uint8_t ssl_then_plain[64];
    put32(ssl_then_plain, 8);
    put32(ssl_then_plain + 4, 80877103);
    static const char *const kv[] = { "user", "app", "database", "dev", NULL };
    size_t sp = it_raw_startup(ssl_then_plain + 8, sizeof ssl_then_plain - 8, 196608, kv);
    uint8_t v2[8] = { 0, 0, 0, 8, 0, 2, 0, 0 };
    const struct {
        const char *name;
        const void *bytes;
        size_t len;
        int error_first;        /* expect an ErrorResponse before the close */
    } cases[] = {
        { "HTTP request", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27, 1 },
        { "startup length 4", small, sizeof small, 1 },
        { "startup length 10001", big, sizeof big, 1 },
        { "plaintext after SSLRequest", ssl_then_plain, 0, 0 },
        { "protocol 2.0", v2, sizeof v2, 1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int fd = it_raw_connect(proxy.port);
        size_t len = cases[i].len ? cases[i].len : 8 + sp;
        assert_int_equal(it_raw_send(fd, cases[i].bytes, len), 0);
        if (cases[i].error_first) {
            char type;
            uint8_t body[1024];
            uint32_t blen;
            if (it_raw_read_msg(fd, &type, body, sizeof body - 1, &blen, 3000) != 1 || type != 'E')
                fail_msg("%s: expected an ErrorResponse", cases[i].name);
            const char *code = it_raw_field(body, blen, 'C');
            assert_non_null(code);
            assert_true(!strcmp(code, "08P01") || !strcmp(code, "0A000"));
        } else {
            int b = it_raw_read_byte(fd, 3000);
            if (b != -1)
                fail_msg("%s: expected the connection closed without an answer, got %d", cases[i].name, b);
        }
        if (!it_raw_wait_closed(fd, 3000))
            fail_msg("%s: connection not closed", cases[i].name);
        close(fd);
        bystander_answers(cases[i].name);
    }
}

static void test_silent_client_times_out(void **state)
{
    (void)state;
    double t0 = it_now_ms();
    int fd = it_raw_connect(proxy.port);
    bystander_answers("a silent client connected");
    assert_int_equal(it_raw_wait_closed(fd, 4000), 1);
    double took = it_now_ms() - t0;
    close(fd);
    if (took < 800 || took > 3000)
        fail_msg("startup_timeout = 1s closed the silent client after %.0f ms", took);
    /* Half a startup packet is no better. */
    fd = it_raw_connect(proxy.port);
    uint8_t half[6] = { 0, 0, 0, 40, 0, 3 };
    assert_int_equal(it_raw_send(fd, half, sizeof half), 0);
    assert_int_equal(it_raw_wait_closed(fd, 4000), 1);
    close(fd);
    bystander_answers("a silent client");
}

/* ---- after authentication: bad bytes on a libpq connection's socket ------------------------ */

static PGconn *victim(const char *application_name)
{
    PGconn *c = it_proxy_connect(&proxy, "dbname=dev user=app password=app-secret application_name=%s",
                                 application_name);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("victim: %s", PQerrorMessage(c));
    return c;
}

static void test_bad_messages_after_auth(void **state)
{
    (void)state;
    uint8_t short_len[5] = { 'Q', 0, 0, 0, 3 };
    uint8_t too_big[64] = { 'Q' };
    put32(too_big + 1, 100000);
    memset(too_big + 5, 'x', sizeof too_big - 5);
    uint8_t bind_too_big[5] = { 'B' };
    put32(bind_too_big + 1, 70000);
    uint8_t truncated[20] = { 'Q' };
    put32(truncated + 1, 1000);
    memcpy(truncated + 5, "SELECT 1 -- trunc", 15);
    const struct {
        const char *name;
        const uint8_t *bytes;
        size_t len;
        int expect_error;       /* an ErrorResponse (08P01) before the close */
    } cases[] = {
        { "message length 3", short_len, sizeof short_len, 1 },
        { "Query of 100000 bytes > max_message_size", too_big, sizeof too_big, 1 },
        { "Bind of 70000 bytes > max_message_size", bind_too_big, sizeof bind_too_big, 1 },
        { "truncated message, then close", truncated, sizeof truncated, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char app_name[32];
        snprintf(app_name, sizeof app_name, "itest-bad-%zu", i);
        PGconn *c = victim(app_name);
        int fd = PQsocket(c);
        assert_int_equal(it_raw_send(fd, cases[i].bytes, cases[i].len), 0);
        if (cases[i].expect_error) {
            char type;
            uint8_t body[1024];
            uint32_t blen;
            if (it_raw_read_msg(fd, &type, body, sizeof body - 1, &blen, 3000) != 1 || type != 'E')
                fail_msg("%s: expected an ErrorResponse", cases[i].name);
            const char *code = it_raw_field(body, blen, 'C');
            assert_non_null(code);
            assert_string_equal(code, "08P01");
            if (!it_raw_wait_closed(fd, 3000))
                fail_msg("%s: connection not closed", cases[i].name);
        } else {
            shutdown(fd, SHUT_RDWR);
        }
        PQfinish(c);
        bystander_answers(cases[i].name);
        upstream_gone(app_name);
    }
}

/* ---- negotiation ---------------------------------------------------------------------------- */

/* Reads messages until one of type want; returns its body length (body NUL-terminated). */
static uint32_t read_until(int fd, char want, uint8_t *body, size_t cap)
{
    for (int i = 0; i < 20; i++) {
        char type;
        uint32_t len;
        if (it_raw_read_msg(fd, &type, body, cap - 1, &len, 3000) != 1)
            fail_msg("no '%c' message", want);
        if (type == want)
            return len;
        if (type == 'E')
            fail_msg("ErrorResponse while waiting for '%c': %s", want, it_raw_field(body, len, 'M'));
    }
    fail_msg("no '%c' message in 20", want);
    return 0;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void test_negotiate_protocol_version(void **state)
{
    (void)state;
    static const struct {
        uint32_t version;
        const char *option;     /* a _pq_ option to send, or NULL */
    } cases[] = {
        { 196609, NULL },           /* 3.1 */
        { 196608, "_pq_.foo" },
        { 196610, "_pq_.bar" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *kv[8] = { "user", "app_md5", "database", "dev", NULL, NULL, NULL };
        if (cases[i].option) {
            kv[4] = cases[i].option;
            kv[5] = "1";
        }
        int fd = it_raw_connect(proxy.port);
        uint8_t pkt[512], body[1024];
        size_t n = it_raw_startup(pkt, sizeof pkt, cases[i].version, kv);
        assert_int_equal(it_raw_send(fd, pkt, n), 0);
        char type;
        uint32_t len;
        assert_int_equal(it_raw_read_msg(fd, &type, body, sizeof body - 1, &len, 3000), 1);
        if (type != 'v')
            fail_msg("version %u option %s: expected NegotiateProtocolVersion, got '%c'", cases[i].version,
                     cases[i].option ? cases[i].option : "-", type);
        assert_true(len >= 8);
        assert_int_equal(get32(body), 196608);           /* newest supported: 3.0 */
        uint32_t n_unknown = get32(body + 4);
        assert_int_equal(n_unknown, cases[i].option ? 1 : 0);
        if (cases[i].option)
            assert_string_equal((const char *)body + 8, cases[i].option);
        /* Then authentication goes on as usual. */
        assert_int_equal(it_raw_read_msg(fd, &type, body, sizeof body - 1, &len, 3000), 1);
        assert_int_equal(type, 'R');
        close(fd);
    }
    bystander_answers("negotiation");
}

static void test_gssenc_request(void **state)
{
    (void)state;
    int fd = it_raw_connect(proxy.port);
    uint8_t req[8];
    put32(req, 8);
    put32(req + 4, 80877104);
    assert_int_equal(it_raw_send(fd, req, sizeof req), 0);
    assert_int_equal(it_raw_read_byte(fd, 3000), 'N');
    /* The connection goes on: a normal startup gets an authentication request. */
    uint8_t pkt[512], body[1024];
    static const char *const kv[] = { "user", "app_md5", "database", "dev", NULL };
    size_t n = it_raw_startup(pkt, sizeof pkt, 196608, kv);
    assert_int_equal(it_raw_send(fd, pkt, n), 0);
    uint32_t len = read_until(fd, 'R', body, sizeof body);
    assert_int_equal(len, 8);
    assert_int_equal(get32(body), 5);   /* MD5 */
    close(fd);

    /* libpq with gssencmode=prefer falls back (if it was built with GSSAPI) and works. */
    PGconn *c = it_proxy_connect(&proxy, "dbname=dev user=app password=app-secret gssencmode=prefer");
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("gssencmode=prefer: %s", PQerrorMessage(c));
    PQfinish(c);
}

/* A Query arriving in pieces is assembled before the guard decides; each piece alone is
 * nothing. Allowed and refused texts both, answered in order. */
static void test_query_in_pieces(void **state)
{
    (void)state;
    static const struct { const char *sql; char first; const char *sqlstate; } cases[] = {
        { "SELECT 'split across three writes'", 'T', NULL },
        { "DROP TABLE pg_catalog.pg_class", 'E', "42501" },
        { "SELECT 2", 'T', NULL },
    };
    PGconn *c = victim("itest-pieces");
    int fd = PQsocket(c);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t msg[256];
        size_t n = strlen(cases[i].sql) + 1;
        msg[0] = 'Q';
        put32(msg + 1, (uint32_t)(4 + n));
        memcpy(msg + 5, cases[i].sql, n);
        size_t total = 5 + n, cut1 = 3, cut2 = 5 + n / 2;
        assert_int_equal(it_raw_send(fd, msg, cut1), 0);
        usleep(50 * 1000);
        assert_int_equal(it_raw_send(fd, msg + cut1, cut2 - cut1), 0);
        usleep(50 * 1000);
        bystander_answers("half a Query");
        assert_int_equal(it_raw_send(fd, msg + cut2, total - cut2), 0);
        char type;
        uint8_t body[2048];
        uint32_t blen;
        assert_int_equal(it_raw_read_msg(fd, &type, body, sizeof body - 1, &blen, 3000), 1);
        if (type != cases[i].first)
            fail_msg("%s: first answer '%c', want '%c'", cases[i].sql, type, cases[i].first);
        if (cases[i].sqlstate)
            assert_string_equal(it_raw_field(body, blen, 'C'), cases[i].sqlstate);
        while (type != 'Z')
            assert_int_equal(it_raw_read_msg(fd, &type, body, sizeof body - 1, &blen, 3000), 1);
        assert_int_equal(blen, 1);
        assert_int_equal(body[0], 'I');
    }
    PQfinish(c);
    upstream_gone("itest-pieces");
}

/* During authentication only password messages are valid. */
static void test_query_during_auth(void **state)
{
    (void)state;
    int fd = it_raw_connect(proxy.port);
    uint8_t pkt[512], body[1024];
    static const char *const kv[] = { "user", "app_md5", "database", "dev", NULL };
    size_t n = it_raw_startup(pkt, sizeof pkt, 196608, kv);
    assert_int_equal(it_raw_send(fd, pkt, n), 0);
    uint32_t len = read_until(fd, 'R', body, sizeof body);
    assert_int_equal(len, 8);
    static const uint8_t q[] = { 'Q', 0, 0, 0, 13, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', 0 };
    assert_int_equal(it_raw_send(fd, q, sizeof q), 0);
    char type;
    assert_int_equal(it_raw_read_msg(fd, &type, body, sizeof body - 1, &len, 3000), 1);
    assert_int_equal(type, 'E');
    assert_string_equal(it_raw_field(body, len, 'C'), "08P01");
    assert_int_equal(it_raw_wait_closed(fd, 3000), 1);
    close(fd);
    bystander_answers("a Query during authentication");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_startup_garbage),
        cmocka_unit_test(test_silent_client_times_out),
        cmocka_unit_test(test_bad_messages_after_auth),
        cmocka_unit_test(test_query_in_pieces),
        cmocka_unit_test(test_negotiate_protocol_version),
        cmocka_unit_test(test_gssenc_request),
        cmocka_unit_test(test_query_during_auth),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
