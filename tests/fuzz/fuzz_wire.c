/* fuzz_wire.c — libFuzzer target for proxy/wire.c: every parser that reads client or server
 * bytes, fed the same input, plus the options scanner. Not built by make. From the repo root:
 *
 *   mkdir -p build/fuzz && clang -g -O1 -std=c11 -D_GNU_SOURCE -Iinclude \
 *       -fsanitize=fuzzer,address,undefined tests/fuzz/fuzz_wire.c proxy/wire.c common/err.c \
 *       $(pkg-config --libs libevent_core) -o build/fuzz/fuzz_wire
 *   build/fuzz/fuzz_wire -max_total_time=60 -max_len=4096
 *
 * Properties checked beyond "no crash": a parsed startup packet's parameters lie inside the
 * input; Query/Parse text lies inside the body; a SASL list rebuilt without -PLUS is a valid
 * AuthenticationSASL message again. */
#include <assert.h>
#include <event2/buffer.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pgsov/wire.h"

static int inside(const void *p, const uint8_t *base, size_t len)
{
    return (const uint8_t *)p >= base && (const uint8_t *)p < base + len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pgsov_err err;
    if (size >= 4) {
        uint32_t len;
        if (wire_startup_length(data, &len, &err) == 0 && len <= size) {
            struct startup_packet sp;
            if (wire_parse_startup(data, len, &sp, &err) == 0) {
                for (int i = 0; i < sp.n_params; i++) {
                    assert(inside(sp.keys[i], data, len) && inside(sp.values[i], data, len));
                    assert(memchr(sp.keys[i], 0, (size_t)(data + len - (const uint8_t *)sp.keys[i])));
                }
                (void)startup_get(&sp, "user");
            }
        }
    }
    if (size >= 5) {
        char type;
        uint32_t len;
        (void)wire_message_header(data, 1u << 20, &type, &len, &err);
    }
    /* the bodies: the whole input is taken as a message body */
    const char *sql, *name, *value;
    size_t sql_len;
    if (wire_parse_query(data, (uint32_t)size, &sql, &sql_len) == 0)
        assert(inside(sql, data, size) && sql_len < size);
    if (wire_parse_parse(data, (uint32_t)size, &name, &sql, &sql_len) == 0)
        assert(inside(sql, data, size) && inside(name, data, size));
    (void)wire_parse_parameter_status(data, (uint32_t)size, &name, &value);
    struct wire_error_fields f;
    (void)wire_parse_error(data, (uint32_t)size, &f);

    struct evbuffer *out = evbuffer_new();
    int kept = out ? wire_sasl_without_plus(data, (uint32_t)size, out) : -1;
    if (kept <= 0)
        assert(evbuffer_get_length(out) == 0);   /* nothing half-made, nothing empty */
    else {
        size_t n = evbuffer_get_length(out);
        uint8_t *m = evbuffer_pullup(out, -1);
        uint32_t mlen;
        char type;
        assert(n >= 9 && wire_message_header(m, 1u << 20, &type, &mlen, &err) == 0 &&
               type == 'R' && mlen + 1 == n);
        struct evbuffer *again = evbuffer_new();
        assert(wire_sasl_without_plus(m + 5, mlen - 4, again) == kept);   /* still well formed */
        evbuffer_free(again);
    }
    evbuffer_free(out);

    /* the options scanner, on the input as a NUL-terminated string */
    char *text = malloc(size + 1);
    if (text) {
        memcpy(text, data, size);
        text[size] = '\0';
        char val[256], rest[512];
        (void)wire_options_take(text, "pgsov.env", val, sizeof val, rest, sizeof rest);
        struct wire_options_iter it = { .options = text };
        char name[64];
        for (int k = 0; k < 10000 && wire_options_next(&it, name, sizeof name, val, sizeof val) == 1; k++)
            ;
        free(text);
    }
    return 0;
}
