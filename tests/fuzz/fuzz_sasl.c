/* fuzz_sasl.c — libFuzzer target for everything that parses SASL/SCRAM input an attacker
 * controls: the server side of the exchange (client-first, client-final), the client side
 * (server-first, server-final from an upstream), verifiers, base64, mechanism lists and the
 * users file. Not built by make. Build and run (from the repository root):
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
 *     -std=c11 -D_GNU_SOURCE -Iinclude tests/fuzz/fuzz_sasl.c proxy/scram.c proxy/users.c \
 *     common/scram_verifier.c common/err.c -lssl -lcrypto -o build/fuzz_sasl
 *   mkdir -p build/fuzz_sasl_corpus && build/fuzz_sasl -max_total_time=120 build/fuzz_sasl_corpus
 *
 * Input: byte 0 picks the target and options; the rest is split at the first NUL into two
 * messages (first and final of an exchange). The server uses a fixed server nonce "S" and
 * the client the nonce "C", so the fuzzer can reach the proof checks. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pgsov/scram.h"
#include "pgsov/users.h"

static const unsigned char secret[SCRAM_MOCK_SECRET_LEN] = "fuzz-secret-fuzz-secret-fuzz-se";
static const unsigned char cb[32] = { 7 };

/* A low iteration count keeps the fuzzer fast; the parsing is the same. */
static struct scram_verifier verifier_fast(void)
{
    struct scram_verifier v;
    static const unsigned char salt[16] = { 1 };
    struct pgsov_err err;
    if (scram_verifier_make("pw", 2, 2, salt, sizeof salt, &v, &err) < 0)
        abort();
    return v;
}

static void fuzz_server(uint8_t opt, const char *a, size_t alen, const char *b, size_t blen)
{
    struct scram_verifier v = verifier_fast();
    struct pgsov_err err;
    bool plus = opt & 1, have_cb = plus || (opt & 2), mock = opt & 4;
    struct scram_server_params p = { .verifier = mock ? NULL : &v, .user = "fuzz",
                                     .mock_secret = secret, .cb_data = have_cb ? cb : NULL,
                                     .cb_len = have_cb ? sizeof cb : 0, .nonce_override = "S" };
    struct scram_server *s = scram_server_begin(&p, plus ? SCRAM_MECH_PLUS : SCRAM_MECH, &err);
    if (!s)
        abort();
    const char *out;
    size_t len;
    if (scram_server_handle_client_first(s, a, alen, &out, &len, &err) == 0) {
        if (len == 0 || strlen(out) != len)
            abort();
        if (scram_server_handle_client_final(s, b, blen, &out, &len, &err) == 0 &&
            (mock || strncmp(out, "v=", 2) != 0))
            abort();  /* a mock exchange must never succeed */
    }
    scram_server_free(s);
}

static void fuzz_client(uint8_t opt, const char *a, size_t alen, const char *b, size_t blen)
{
    struct pgsov_err err;
    bool plus = opt & 1;
    struct scram_client_params p = { .password = "pw", .password_len = 2,
                                     .mechanism = plus ? SCRAM_MECHANISM_SHA256_PLUS
                                                       : SCRAM_MECHANISM_SHA256,
                                     .cb_data = plus ? cb : NULL, .cb_len = plus ? sizeof cb : 0,
                                     .nonce_override = "C" };
    struct scram_client *c = scram_client_begin(&p, &err);
    if (!c)
        abort();
    const char *out;
    size_t len;
    /* Iteration counts up to 10M are legal but slow: skip inputs asking for more than 9999. */
    for (size_t k = 0; k + 3 <= alen; k++)
        if (memcmp(a + k, ",i=", 3) == 0 && alen - k - 3 > 4)
            goto done;
    if (scram_client_first(c, &out, &len, &err) < 0)
        abort();
    if (scram_client_handle_server_first(c, a, alen, &out, &len, &err) == 0)
        (void)scram_client_handle_server_final(c, b, blen, &err);
done:
    scram_client_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    const char *rest = (const char *)data + 1;
    size_t rlen = size - 1;
    const char *nul = memchr(rest, '\0', rlen);
    size_t alen = nul ? (size_t)(nul - rest) : rlen;
    const char *b = nul ? nul + 1 : rest + rlen;
    size_t blen = nul ? rlen - alen - 1 : 0;
    char *text = malloc(rlen + 1);   /* NUL-terminated copy for the string APIs */
    if (!text)
        return 0;
    memcpy(text, rest, rlen);
    text[rlen] = '\0';

    switch (sel % 6) {
    case 0:
    case 1:
        fuzz_server(sel >> 3, rest, alen, b, blen);
        break;
    case 2:
        fuzz_client(sel >> 3, rest, alen, b, blen);
        break;
    case 3: {
        struct scram_verifier v;
        struct pgsov_err err;
        char again[256];
        if (scram_verifier_parse(text, &v, &err) == 0) {
            struct scram_verifier w;
            if (scram_verifier_format(&v, again, sizeof again, &err) < 0 ||
                scram_verifier_parse(again, &w, &err) < 0 || memcmp(&v, &w, sizeof v) != 0)
                abort();  /* format and parse must round-trip */
        }
        unsigned char out[64];
        (void)scram_b64_decode(rest, rlen, out, sizeof out);
        break;
    }
    case 4: {
        enum scram_mechanism m;
        struct pgsov_err err;
        (void)scram_select_mechanism(rest, rlen, sel & 8, sel & 16, &m, &err);
        break;
    }
    case 5: {
        struct users *u = NULL;
        struct pgsov_err err;
        if (users_parse(rest, rlen, "fuzz", &u, &err) == 0) {
            (void)users_find(u, "alice");
            (void)users_cert_allows(u, text, alen, "alice");
            users_free(u);
        }
        break;
    }
    }
    free(text);
    return 0;
}
