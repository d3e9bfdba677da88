/* test_pool.c — the parameter list a reused backend replays (pool.h): latest value per name,
 * first-report order, overflow that forbids reuse, and the exact ParameterStatus bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <event2/buffer.h>

#include "pgsov/pool.h"
#include "pgsov/wire.h"

static void test_set_update_order(void **state)
{
    static const struct { const char *name, *value; } steps[] = {
        { "server_version", "15.18" },
        { "application_name", "" },
        { "standard_conforming_strings", "on" },
        { "application_name", "leaky" },      /* SET application_name: updated in place */
        { "application_name", "" },           /* DISCARD ALL reports the reset */
        { "TimeZone", "UTC" },
    };
    struct param_list l = { 0 };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
        assert_int_equal(params_set(&l, steps[i].name, steps[i].value), 0);
    assert_int_equal(l.n, 4);
    assert_false(l.overflow);
    static const char *const order[] = { "server_version", "application_name",
                                         "standard_conforming_strings", "TimeZone" };
    const char *name, *value;
    size_t off = 0, i = 0;
    while (params_next(&l, &off, &name, &value))
        assert_string_equal(name, order[i++]);
    assert_int_equal(i, 4);
    assert_string_equal(params_get(&l, "application_name"), "");
    assert_string_equal(params_get(&l, "server_version"), "15.18");
    assert_string_equal(params_get(&l, "TimeZone"), "UTC");
    assert_null(params_get(&l, "DateStyle"));
    /* a longer and a shorter value in the middle keep the others intact */
    assert_int_equal(params_set(&l, "application_name", "a much longer application name"), 0);
    assert_string_equal(params_get(&l, "standard_conforming_strings"), "on");
    assert_int_equal(params_set(&l, "application_name", "x"), 0);
    assert_string_equal(params_get(&l, "application_name"), "x");
    assert_string_equal(params_get(&l, "TimeZone"), "UTC");
    assert_int_equal(l.n, 4);
    /* compacting gives back the slack and keeps every pair */
    params_compact(&l);
    assert_int_equal(l.cap, l.len);
    assert_string_equal(params_get(&l, "TimeZone"), "UTC");
    assert_int_equal(params_set(&l, "DateStyle", "ISO, MDY"), 0);   /* and it grows again */
    assert_string_equal(params_get(&l, "DateStyle"), "ISO, MDY");
    assert_string_equal(params_get(&l, "server_version"), "15.18");
    params_clear(&l);
    assert_int_equal(l.n, 0);
}

static void test_overflow(void **state)
{
    struct param_list l = { 0 };
    char name[32];
    for (int i = 0; i < PARAMS_MAX; i++) {
        snprintf(name, sizeof name, "p%d", i);
        assert_int_equal(params_set(&l, name, "v"), 0);
    }
    assert_false(l.overflow);
    assert_int_equal(params_set(&l, "one_too_many", "v"), -1);
    assert_true(l.overflow);
    assert_int_equal(l.n, PARAMS_MAX);
    params_clear(&l);

    char *big = malloc(PARAM_VALUE_MAX + 2);
    memset(big, 'x', PARAM_VALUE_MAX + 1);
    big[PARAM_VALUE_MAX + 1] = '\0';
    assert_int_equal(params_set(&l, "search_path", big), -1);
    assert_true(l.overflow);
    assert_int_equal(l.n, 0);
    big[PARAM_VALUE_MAX] = '\0';                 /* exactly the limit fits */
    l.overflow = false;
    assert_int_equal(params_set(&l, "search_path", big), 0);
    assert_false(l.overflow);
    free(big);
    params_clear(&l);
}

/* The bytes are ParameterStatus messages that wire.c parses back to the same pairs. */
static void test_write_round_trip(void **state)
{
    struct param_list l = { 0 };
    params_set(&l, "client_encoding", "UTF8");
    params_set(&l, "DateStyle", "ISO, MDY");
    struct evbuffer *out = evbuffer_new();
    params_write(&l, out);
    size_t len = evbuffer_get_length(out);
    const uint8_t *b = evbuffer_pullup(out, -1);
    static const uint8_t want_first[] = { 'S', 0, 0, 0, 25, 'c', 'l', 'i', 'e', 'n', 't', '_', 'e', 'n',
                                          'c', 'o', 'd', 'i', 'n', 'g', 0, 'U', 'T', 'F', '8', 0 };
    assert_true(len > sizeof want_first);
    assert_memory_equal(b, want_first, sizeof want_first);
    size_t off = 0;
    const char *want_name, *want_value;
    for (size_t pos = 0; params_next(&l, &pos, &want_name, &want_value);) {
        char type;
        uint32_t mlen;
        struct pgsov_err err;
        assert_int_equal(wire_message_header(b + off, 1 << 20, &type, &mlen, &err), 0);
        assert_int_equal(type, 'S');
        const char *name, *value;
        assert_int_equal(wire_parse_parameter_status(b + off + 5, mlen - 4, &name, &value), 0);
        assert_string_equal(name, want_name);
        assert_string_equal(value, want_value);
        off += 1 + mlen;
    }
    assert_int_equal(off, len);
    evbuffer_free(out);
    params_clear(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_update_order),
        cmocka_unit_test(test_overflow),
        cmocka_unit_test(test_write_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
