/* scram_verifier.c — SCRAM-SHA-256 verifiers (pg_authid format) and the primitives SCRAM is
 * built from, on OpenSSL 3. Owns no protocol state: the exchanges live in proxy/scram.c.
 * Nothing here logs or prints; error messages never contain a password or a verifier. */
#include "pgsov/scram_verifier.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define VERIFIER_PREFIX "SCRAM-SHA-256$"

bool scram_password_prep(const char *password, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)password[i];
        if (c < 0x20 || c > 0x7e)
            return false;
    }
    return true;
}

int scram_salted_password(const char *password, size_t password_len,
                          const unsigned char *salt, size_t salt_len, unsigned iterations,
                          unsigned char out[SCRAM_KEY_LEN])
{
    if (iterations < 1 || iterations > SCRAM_MAX_ITERATIONS || password_len > INT_MAX ||
        salt_len > INT_MAX)
        return -1;
    (void)scram_password_prep(password, password_len);  /* raw bytes either way, see header */
    if (PKCS5_PBKDF2_HMAC(password, (int)password_len, salt, (int)salt_len, (int)iterations,
                          EVP_sha256(), SCRAM_KEY_LEN, out) != 1)
        return -1;
    return 0;
}

int scram_hmac(const unsigned char *key, size_t key_len, const void *data, size_t len,
               unsigned char out[SCRAM_KEY_LEN])
{
    unsigned int out_len = 0;
    if (key_len > INT_MAX)
        return -1;
    if (!HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &out_len) ||
        out_len != SCRAM_KEY_LEN)
        return -1;
    return 0;
}

int scram_sha256(const void *data, size_t len, unsigned char out[SCRAM_KEY_LEN])
{
    unsigned int out_len = 0;
    if (EVP_Digest(data, len, out, &out_len, EVP_sha256(), NULL) != 1 ||
        out_len != SCRAM_KEY_LEN)
        return -1;
    return 0;
}

int scram_b64_encode(const unsigned char *in, size_t len, char *out, size_t size)
{
    if (len > (size_t)INT_MAX / 2 || size < 4 * ((len + 2) / 3) + 1)
        return -1;
    return EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

static bool b64_alphabet(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

int scram_b64_decode(const char *in, size_t len, unsigned char *out, size_t size)
{
    /* EVP_DecodeBlock skips surrounding whitespace, accepts '=' where it should not and
     * counts padding as decoded zero bytes, so validate first and fix the length after. */
    if (len % 4 != 0 || len > (size_t)INT_MAX / 2)
        return -1;
    size_t pad = 0;
    if (len >= 4 && in[len - 1] == '=') {
        pad = 1;
        if (in[len - 2] == '=')
            pad = 2;
    }
    for (size_t i = 0; i < len - pad; i++)
        if (!b64_alphabet(in[i]))
            return -1;
    /* Canonical form only: the bits a padded last group leaves over must be zero, so each
     * byte string has exactly one accepted encoding. */
    if (pad > 0) {
        static const char alphabet[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t last = (size_t)(strchr(alphabet, in[len - pad - 1]) - alphabet);
        if (last & (pad == 1 ? 0x3u : 0xfu))
            return -1;
    }
    size_t want = len / 4 * 3 - pad;
    if (want > size)
        return -1;
    if (len == 0)
        return 0;
    /* DecodeBlock writes len/4*3 bytes, padding included: decode into a scratch buffer. */
    unsigned char stack[192];
    unsigned char *tmp = len / 4 * 3 <= sizeof stack ? stack : malloc(len / 4 * 3);
    if (!tmp)
        return -1;
    int n = EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)len);
    int rc = -1;
    if (n >= 0 && (size_t)n == len / 4 * 3) {
        memcpy(out, tmp, want);
        rc = (int)want;
    }
    OPENSSL_cleanse(tmp, len / 4 * 3);
    if (tmp != stack)
        free(tmp);
    return rc;
}

/* Reads a decimal in [1, SCRAM_MAX_ITERATIONS] from s[0..len). */
static int parse_iterations(const char *s, size_t len, unsigned *out)
{
    if (len == 0 || len > 8)
        return -1;
    unsigned long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v < 1 || v > SCRAM_MAX_ITERATIONS)
        return -1;
    *out = (unsigned)v;
    return 0;
}

int scram_verifier_parse(const char *text, struct scram_verifier *out, struct pgsov_err *err)
{
    struct scram_verifier v;
    memset(&v, 0, sizeof v);
    size_t plen = strlen(VERIFIER_PREFIX);
    if (strncmp(text, VERIFIER_PREFIX, plen) != 0)
        return pgsov_fail(err, "not a SCRAM-SHA-256 verifier (expected \"SCRAM-SHA-256$...\")");
    const char *p = text + plen;
    const char *colon = strchr(p, ':');
    const char *dollar = strchr(p, '$');
    if (!colon || !dollar || colon > dollar)
        return pgsov_fail(err, "malformed SCRAM verifier (expected SCRAM-SHA-256$<iterations>:"
                               "<salt>$<StoredKey>:<ServerKey>)");
    if (parse_iterations(p, (size_t)(colon - p), &v.iterations) < 0)
        return pgsov_fail(err, "malformed SCRAM verifier: iteration count must be 1..%d",
                          SCRAM_MAX_ITERATIONS);
    int n = scram_b64_decode(colon + 1, (size_t)(dollar - colon - 1), v.salt, sizeof v.salt);
    if (n < 1)
        return pgsov_fail(err, "malformed SCRAM verifier: salt must be base64 of 1..%d bytes",
                          SCRAM_MAX_SALT_LEN);
    v.salt_len = (size_t)n;
    const char *keys = dollar + 1;
    const char *colon2 = strchr(keys, ':');
    if (!colon2)
        return pgsov_fail(err, "malformed SCRAM verifier: missing ServerKey");
    if (scram_b64_decode(keys, (size_t)(colon2 - keys), v.stored_key, sizeof v.stored_key) !=
            SCRAM_KEY_LEN ||
        scram_b64_decode(colon2 + 1, strlen(colon2 + 1), v.server_key, sizeof v.server_key) !=
            SCRAM_KEY_LEN)
        return pgsov_fail(err, "malformed SCRAM verifier: StoredKey and ServerKey must be "
                               "base64 of %d bytes", SCRAM_KEY_LEN);
    *out = v;
    OPENSSL_cleanse(&v, sizeof v);
    return 0;
}

int scram_verifier_make(const char *password, size_t password_len, unsigned iterations,
                        const unsigned char *salt, size_t salt_len,
                        struct scram_verifier *out, struct pgsov_err *err)
{
    if (iterations < 1 || iterations > SCRAM_MAX_ITERATIONS)
        return pgsov_fail(err, "iteration count %u out of range 1..%d", iterations,
                          SCRAM_MAX_ITERATIONS);
    if (salt_len < 1 || salt_len > SCRAM_MAX_SALT_LEN)
        return pgsov_fail(err, "salt length %zu out of range 1..%d", salt_len,
                          SCRAM_MAX_SALT_LEN);
    unsigned char salted[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN];
    struct scram_verifier v;
    memset(&v, 0, sizeof v);
    v.iterations = iterations;
    v.salt_len = salt_len;
    memcpy(v.salt, salt, salt_len);
    int rc = -1;
    if (scram_salted_password(password, password_len, salt, salt_len, iterations, salted) == 0 &&
        scram_hmac(salted, sizeof salted, "Client Key", 10, client_key) == 0 &&
        scram_sha256(client_key, sizeof client_key, v.stored_key) == 0 &&
        scram_hmac(salted, sizeof salted, "Server Key", 10, v.server_key) == 0) {
        *out = v;
        rc = 0;
    } else {
        pgsov_fail(err, "SCRAM key derivation failed (OpenSSL)");
    }
    OPENSSL_cleanse(salted, sizeof salted);
    OPENSSL_cleanse(client_key, sizeof client_key);
    OPENSSL_cleanse(&v, sizeof v);
    return rc;
}

int scram_verifier_generate(const char *password, size_t password_len, unsigned iterations,
                            struct scram_verifier *out, struct pgsov_err *err)
{
    unsigned char salt[SCRAM_DEFAULT_SALT_LEN];
    if (RAND_bytes(salt, sizeof salt) != 1)
        return pgsov_fail(err, "could not generate a random salt (OpenSSL RAND_bytes)");
    return scram_verifier_make(password, password_len, iterations, salt, sizeof salt, out, err);
}

int scram_verifier_format(const struct scram_verifier *v, char *buf, size_t size,
                          struct pgsov_err *err)
{
    char salt[4 * ((SCRAM_MAX_SALT_LEN + 2) / 3) + 1];
    char stored[4 * ((SCRAM_KEY_LEN + 2) / 3) + 1], server[sizeof stored];
    if (v->salt_len < 1 || v->salt_len > SCRAM_MAX_SALT_LEN ||
        scram_b64_encode(v->salt, v->salt_len, salt, sizeof salt) < 0 ||
        scram_b64_encode(v->stored_key, SCRAM_KEY_LEN, stored, sizeof stored) < 0 ||
        scram_b64_encode(v->server_key, SCRAM_KEY_LEN, server, sizeof server) < 0)
        return pgsov_fail(err, "invalid SCRAM verifier");
    int n = snprintf(buf, size, VERIFIER_PREFIX "%u:%s$%s:%s", v->iterations, salt, stored,
                     server);
    if (n < 0 || (size_t)n >= size)
        return pgsov_fail(err, "SCRAM verifier does not fit in %zu bytes", size);
    return 0;
}

int scram_user_name_check(const char *name, struct pgsov_err *err)
{
    size_t len = strlen(name);
    if (len == 0)
        return pgsov_fail(err, "user name is empty");
    if (len > SCRAM_NAME_MAX)
        return pgsov_fail(err, "user name is longer than %d bytes", SCRAM_NAME_MAX);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= 0x20 || c == 0x7f || c == '#' || c == '"')
            return pgsov_fail(err, "user name may not contain whitespace, control characters, "
                                   "'#' or '\"'");
    }
    if (strcmp(name, "certmap") == 0)
        return pgsov_fail(err, "\"certmap\" is reserved in the users file and cannot be a user name");
    return 0;
}
