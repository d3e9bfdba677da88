/* test_wire.c — PostgreSQL framing: startup packets, headers, bodies, options, builders. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <event2/buffer.h>

#include "pgsov/wire.h"

static size_t put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
    return 4;
}

/* Builds a startup packet: code, then the raw body bytes (pairs and terminator as given). */
static uint32_t make_startup(uint8_t *buf, uint32_t code, const char *body, size_t body_len)
{
    uint32_t len = 8 + (uint32_t)body_len;
    put32(buf, len);
    put32(buf + 4, code);
    memcpy(buf + 8, body, body_len);
    return len;
}

static void test_startup_length_bounds(void **state)
{
    static const struct { uint32_t len; int ok; } cases[] = {
        { 0, -1 }, { 3, -1 }, { 4, -1 }, { 7, -1 }, { 8, 0 }, { 9, 0 }, { 10000, 0 },
        { 10001, -1 }, { 0x7fffffff, -1 }, { 0xffffffff, -1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t hdr[4];
        put32(hdr, cases[i].len);
        uint32_t out = 0;
        struct pgsov_err err;
        assert_int_equal(wire_startup_length(hdr, &out, &err), cases[i].ok);
        if (cases[i].ok == 0)
            assert_int_equal(out, cases[i].len);
    }
}

static void test_startup_normal(void **state)
{
    uint8_t buf[256];
    static const char body[] = "user\0app\0database\0production\0options\0-c pgsov.env=dev\0";
    uint32_t len = make_startup(buf, WIRE_PROTO_V3, body, sizeof body);   /* includes final NUL */
    struct startup_packet sp;
    struct pgsov_err err;
    assert_int_equal(wire_parse_startup(buf, len, &sp, &err), 0);
    assert_int_equal(sp.kind, STARTUP_NORMAL);
    assert_int_equal(sp.version, WIRE_PROTO_V3);
    assert_int_equal(sp.n_params, 3);
    assert_string_equal(startup_get(&sp, "user"), "app");
    assert_string_equal(startup_get(&sp, "database"), "production");
    assert_null(startup_get(&sp, "replication"));
}

static void test_startup_malformed(void **state)
{
    static const struct { const char *name; const char *body; size_t len; } cases[] = {
        { "no terminator", "user\0app\0", 9 },
        { "name without value", "user\0", 5 },
        { "value not terminated", "user\0app", 8 },
        { "name not terminated", "user", 4 },
        { "bytes after terminator", "user\0app\0\0x", 11 },
        { "empty body", "", 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t buf[64];
        uint32_t len = make_startup(buf, WIRE_PROTO_V3, cases[i].body, cases[i].len);
        struct startup_packet sp;
        struct pgsov_err err;
        if (wire_parse_startup(buf, len, &sp, &err) != -1)
            fail_msg("malformed startup \"%s\" was accepted", cases[i].name);
    }
}

static void test_startup_too_many_params(void **state)
{
    uint8_t buf[4096], body[4000];
    size_t n = 0;
    for (int i = 0; i < WIRE_STARTUP_MAX_PARAMS + 1; i++) {
        n += (size_t)sprintf((char *)body + n, "k%d", i) + 1;
        n += (size_t)sprintf((char *)body + n, "v") + 1;
    }
    body[n++] = '\0';
    uint32_t len = make_startup(buf, WIRE_PROTO_V3, (const char *)body, n);
    struct startup_packet sp;
    struct pgsov_err err;
    assert_int_equal(wire_parse_startup(buf, len, &sp, &err), -1);
}

static void test_special_requests(void **state)
{
    static const struct { uint32_t code; uint32_t len; enum startup_kind kind; int ok; } cases[] = {
        { WIRE_SSL_CODE, 8, STARTUP_SSL, 0 },
        { WIRE_SSL_CODE, 12, STARTUP_SSL, -1 },
        { WIRE_GSSENC_CODE, 8, STARTUP_GSSENC, 0 },
        { WIRE_GSSENC_CODE, 9, STARTUP_GSSENC, -1 },
        { WIRE_CANCEL_CODE, 16, STARTUP_CANCEL, 0 },
        { WIRE_CANCEL_CODE, 12, STARTUP_CANCEL, -1 },
        { WIRE_CANCEL_CODE, 20, STARTUP_CANCEL, -1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t buf[32] = { 0 };
        put32(buf, cases[i].len);
        put32(buf + 4, cases[i].code);
        put32(buf + 8, 1234);
        put32(buf + 12, 0xdeadbeef);
        struct startup_packet sp;
        struct pgsov_err err;
        assert_int_equal(wire_parse_startup(buf, cases[i].len, &sp, &err), cases[i].ok);
        if (cases[i].ok == 0) {
            assert_int_equal(sp.kind, cases[i].kind);
            if (sp.kind == STARTUP_CANCEL) {
                assert_int_equal(sp.cancel_pid, 1234);
                assert_int_equal(sp.cancel_secret, 0xdeadbeef);
            }
        }
    }
    /* the length word must agree with the bytes handed over */
    uint8_t buf[8];
    put32(buf, 16);
    put32(buf + 4, WIRE_SSL_CODE);
    struct startup_packet sp;
    struct pgsov_err err;
    assert_int_equal(wire_parse_startup(buf, 8, &sp, &err), -1);
}

static void test_message_header(void **state)
{
    static const struct { uint32_t len; uint32_t max; int ok; } cases[] = {
        { 0, 1000, -1 }, { 3, 1000, -1 }, { 4, 1000, 0 }, { 1000, 1000, 0 }, { 1001, 1000, -1 },
        { 0xffffffff, 1000, -1 }, { 0x80000000, 0xffffffff, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t hdr[5] = { 'Q' };
        put32(hdr + 1, cases[i].len);
        char type;
        uint32_t len;
        struct pgsov_err err;
        assert_int_equal(wire_message_header(hdr, cases[i].max, &type, &len, &err), cases[i].ok);
        if (cases[i].ok == 0) {
            assert_int_equal(type, 'Q');
            assert_int_equal(len, cases[i].len);
        }
    }
}

static void test_query_body(void **state)
{
    const char *sql;
    size_t n;
    assert_int_equal(wire_parse_query((const uint8_t *)"select 1", 9, &sql, &n), 0);
    assert_int_equal(n, 8);
    assert_int_equal(wire_parse_query((const uint8_t *)"select 1", 8, &sql, &n), -1);      /* no NUL */
    assert_int_equal(wire_parse_query((const uint8_t *)"sel\0ect", 8, &sql, &n), -1);      /* embedded NUL */
    assert_int_equal(wire_parse_query((const uint8_t *)"", 0, &sql, &n), -1);
    assert_int_equal(wire_parse_query((const uint8_t *)"", 1, &sql, &n), 0);
    assert_int_equal(n, 0);
}

static void test_parse_body(void **state)
{
    static const struct { const char *bytes; uint32_t len; int ok; const char *name, *sql; } cases[] = {
        { "s1\0select $1\0\0\1\0\0\0\x17", 19, 0, "s1", "select $1" },
        { "\0select 1\0\0\0", 12, 0, "", "select 1" },
        { "\0select 1\0\0\1", 12, -1, NULL, NULL },        /* says 1 oid, has none */
        { "\0select 1\0\0", 11, -1, NULL, NULL },          /* count cut short */
        { "\0select 1", 9, -1, NULL, NULL },               /* query not terminated */
        { "s1", 2, -1, NULL, NULL },                       /* name not terminated */
        { "\0select 1\0\0\0extra", 17, -1, NULL, NULL },   /* trailing bytes */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *name, *sql;
        size_t n;
        int rc = wire_parse_parse((const uint8_t *)cases[i].bytes, cases[i].len, &name, &sql, &n);
        if (rc != cases[i].ok)
            fail_msg("Parse case %zu: got %d", i, rc);
        if (rc == 0) {
            assert_string_equal(name, cases[i].name);
            assert_string_equal(sql, cases[i].sql);
            assert_int_equal(n, strlen(cases[i].sql));
        }
    }
}

static void test_parameter_status(void **state)
{
    const char *n, *v;
    assert_int_equal(wire_parse_parameter_status((const uint8_t *)"client_encoding\0UTF8\0", 21, &n, &v), 0);
    assert_string_equal(n, "client_encoding");
    assert_string_equal(v, "UTF8");
    assert_int_equal(wire_parse_parameter_status((const uint8_t *)"client_encoding\0UTF8", 20, &n, &v), -1);
    assert_int_equal(wire_parse_parameter_status((const uint8_t *)"client_encoding\0", 16, &n, &v), -1);
    assert_int_equal(wire_parse_parameter_status((const uint8_t *)"a\0b\0c", 5, &n, &v), -1);
}

static void test_error_fields(void **state)
{
    static const char body[] = "SERROR\0C22P02\0Minvalid input\0Hdo this\0";
    struct wire_error_fields f;
    assert_int_equal(wire_parse_error((const uint8_t *)body, sizeof body, &f), 0);
    assert_string_equal(f.severity, "ERROR");
    assert_string_equal(f.sqlstate, "22P02");
    assert_string_equal(f.message, "invalid input");
    assert_string_equal(f.hint, "do this");
    assert_null(f.detail);
    assert_int_equal(wire_parse_error((const uint8_t *)"SERROR\0Mtrunc", 13, &f), -1);
    assert_int_equal(wire_parse_error((const uint8_t *)"SERROR\0", 7, &f), -1);   /* no final NUL */
}

static void test_sasl_filter(void **state)
{
    uint8_t body[64];
    size_t n = put32(body, 10);
    memcpy(body + n, "SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0", 34);
    n += 34;
    struct evbuffer *out = evbuffer_new();
    assert_int_equal(wire_sasl_without_plus(body, (uint32_t)n, out), 1);
    size_t len = evbuffer_get_length(out);
    uint8_t *m = evbuffer_pullup(out, -1);
    assert_int_equal(m[0], 'R');
    uint32_t msg_len = (uint32_t)m[1] << 24 | (uint32_t)m[2] << 16 | (uint32_t)m[3] << 8 | m[4];
    assert_int_equal(msg_len + 1, len);
    assert_int_equal(m[8], 10);
    assert_memory_equal(m + 9, "SCRAM-SHA-256\0\0", 15);
    evbuffer_free(out);

    /* only -PLUS offered: nothing left, nothing appended */
    out = evbuffer_new();
    n = put32(body, 10);
    memcpy(body + n, "SCRAM-SHA-256-PLUS\0\0", 20);
    assert_int_equal(wire_sasl_without_plus(body, (uint32_t)(n + 20), out), 0);
    /* malformed: missing terminator, wrong code; a usable name before the flaw appends nothing */
    assert_int_equal(wire_sasl_without_plus(body, (uint32_t)(n + 19), out), -1);
    memcpy(body + n, "SCRAM-SHA-256\0oops", 19);
    assert_int_equal(wire_sasl_without_plus(body, (uint32_t)(n + 19), out), -1);
    put32(body, 11);
    assert_int_equal(wire_sasl_without_plus(body, (uint32_t)(n + 20), out), -1);
    assert_int_equal(evbuffer_get_length(out), 0);
    evbuffer_free(out);
}

static void test_options(void **state)
{
    static const struct { const char *opts; int found; const char *value, *rest; } cases[] = {
        { "-c pgsov.env=production", 1, "production", "" },
        { "-cpgsov.env=dev", 1, "dev", "" },
        { "--pgsov.env=dev", 1, "dev", "" },
        { "-c search_path=app -c pgsov.env=dev -c work_mem=4MB", 1, "dev", "-c search_path=app  -c work_mem=4MB" },
        { "-c search_path=app", 0, NULL, "-c search_path=app" },
        { "-c pgsov.environment=dev", 0, NULL, "-c pgsov.environment=dev" },
        { "-c pgsov.env=a\\ b", 1, "a b", "" },
        { "", 0, NULL, "" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char value[64], rest[256];
        int rc = wire_options_take(cases[i].opts, "pgsov.env", value, sizeof value, rest, sizeof rest);
        if (rc != cases[i].found)
            fail_msg("options \"%s\": got %d", cases[i].opts, rc);
        if (rc == 1)
            assert_string_equal(value, cases[i].value);
        assert_string_equal(rest, cases[i].rest);
    }
    char value[4], rest[256];
    assert_int_equal(wire_options_take("-c pgsov.env=production", "pgsov.env", value, sizeof value,
                                       rest, sizeof rest), -1);
}

/* Every setting the server would apply from options, read as its getopt reads them. */
static void test_options_next(void **state)
{
    static const struct { const char *opts, *want; } cases[] = {
        { "-c client_encoding=LATIN1", "client_encoding=LATIN1;" },
        { "-c client-encoding=LATIN1", "client_encoding=LATIN1;" },
        { "-cROLE=admin --Session-Authorization=x", "role=admin;session_authorization=x;" },
        { "-ec role=admin", "role=admin;" },                   /* clustered: -e, then -c ARG */
        { "-Pcrole=admin", "role=admin;" },
        { "-e-role=admin", "role=admin;" },                    /* '-' is a switch with an argument */
        { "-S role=admin -c a=1", "a=1;" },                    /* role=admin is -S's argument */
        { "-B -c -c x=1", "x=1;" },                            /* -B takes "-c" as its argument */
        { "role=admin -- -c b=2", "b=2;" },                   /* non-switch words are not settings */
        { "-c search_path=a\\ b -c x", "search_path=a b;x=;" },
        { "-c a=1 -c", "a=1;" },
        { "", "" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct wire_options_iter it = { .options = cases[i].opts };
        char name[64], value[64], got[256] = "";
        int rc;
        while ((rc = wire_options_next(&it, name, sizeof name, value, sizeof value)) == 1)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s=%s;", name, value);
        assert_int_equal(rc, 0);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("options \"%s\": got \"%s\", want \"%s\"", cases[i].opts, got, cases[i].want);
    }
    struct wire_options_iter it = { .options = "-c a_very_long_name_indeed=1" };
    char name[8], value[8];
    assert_int_equal(wire_options_next(&it, name, sizeof name, value, sizeof value), -1);
}

static void test_builders_roundtrip(void **state)
{
    struct evbuffer *b = evbuffer_new();
    wire_error_response(b, "FATAL", "28000", "no", "because", NULL);
    uint8_t *m = evbuffer_pullup(b, -1);
    size_t len = evbuffer_get_length(b);
    char type;
    uint32_t mlen;
    struct pgsov_err err;
    assert_int_equal(wire_message_header(m, 1 << 20, &type, &mlen, &err), 0);
    assert_int_equal(type, 'E');
    assert_int_equal(mlen + 1, len);
    struct wire_error_fields f;
    assert_int_equal(wire_parse_error(m + 5, mlen - 4, &f), 0);
    assert_string_equal(f.sqlstate, "28000");
    assert_string_equal(f.detail, "because");
    assert_null(f.hint);
    evbuffer_drain(b, len);

    const char *keys[] = { "user", "database" }, *values[] = { "app", "postgres" };
    wire_startup_message(b, WIRE_PROTO_V3, keys, values, 2);
    len = evbuffer_get_length(b);
    m = evbuffer_pullup(b, -1);
    struct startup_packet sp;
    assert_int_equal(wire_parse_startup(m, (uint32_t)len, &sp, &err), 0);
    assert_string_equal(startup_get(&sp, "database"), "postgres");
    evbuffer_drain(b, len);

    wire_parse_message(b, "x", "select 1");
    len = evbuffer_get_length(b);
    m = evbuffer_pullup(b, -1);
    const char *name, *sql;
    size_t n;
    assert_int_equal(m[0], 'P');
    assert_int_equal(wire_parse_parse(m + 5, (uint32_t)len - 5, &name, &sql, &n), 0);
    assert_string_equal(sql, "select 1");
    evbuffer_drain(b, len);

    const char *unknown[] = { "_pq_.x" };
    wire_negotiate_protocol(b, 0, unknown, 1);
    len = evbuffer_get_length(b);
    m = evbuffer_pullup(b, -1);
    assert_int_equal(m[0], 'v');
    assert_int_equal(len, 5 + 8 + 7);
    evbuffer_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_startup_length_bounds),
        cmocka_unit_test(test_startup_normal),
        cmocka_unit_test(test_startup_malformed),
        cmocka_unit_test(test_startup_too_many_params),
        cmocka_unit_test(test_special_requests),
        cmocka_unit_test(test_message_header),
        cmocka_unit_test(test_query_body),
        cmocka_unit_test(test_parse_body),
        cmocka_unit_test(test_parameter_status),
        cmocka_unit_test(test_error_fields),
        cmocka_unit_test(test_sasl_filter),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_options_next),
        cmocka_unit_test(test_builders_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
