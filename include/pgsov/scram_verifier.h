/* scram_verifier.h — SCRAM-SHA-256 verifiers in PostgreSQL's pg_authid format, and the
 * cryptographic primitives SCRAM is made of (RFC 5802, RFC 7677), all on OpenSSL 3.
 * Pure: no I/O. Shared by the proxy (proxy/scram.c) and `pgsov passwd` (tools/passwd.c).
 *
 * A verifier is "SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>".
 * It lets a server check a password without knowing it; it is still a secret (it allows an
 * offline dictionary attack, and ServerKey lets its holder pose as the server). */
#ifndef PGSOV_SCRAM_VERIFIER_H
#define PGSOV_SCRAM_VERIFIER_H

#include <stdbool.h>
#include <stddef.h>

#include "pgsov/err.h"

#define SCRAM_KEY_LEN            32        /* SHA-256 output */
#define SCRAM_DEFAULT_ITERATIONS 4096      /* PostgreSQL's scram_iterations default */
#define SCRAM_MAX_ITERATIONS     10000000  /* bound: PBKDF2 cost is linear in this */
#define SCRAM_DEFAULT_SALT_LEN   16        /* PostgreSQL's default */
#define SCRAM_MAX_SALT_LEN       64
#define SCRAM_NAME_MAX           63        /* PostgreSQL's NAMEDATALEN - 1 */

struct scram_verifier {
    unsigned iterations;
    size_t salt_len;
    unsigned char salt[SCRAM_MAX_SALT_LEN];
    unsigned char stored_key[SCRAM_KEY_LEN];
    unsigned char server_key[SCRAM_KEY_LEN];
};

/* Parses a pg_authid-style verifier. Errors never quote the text (it is a secret). */
int scram_verifier_parse(const char *text, struct scram_verifier *out, struct pgsov_err *err);

/* Derives a verifier from a password. salt_len 1..SCRAM_MAX_SALT_LEN, iterations
 * 1..SCRAM_MAX_ITERATIONS. The password goes through scram_password_prep(). */
int scram_verifier_make(const char *password, size_t password_len, unsigned iterations,
                        const unsigned char *salt, size_t salt_len,
                        struct scram_verifier *out, struct pgsov_err *err);

/* Same with a fresh random salt of SCRAM_DEFAULT_SALT_LEN bytes (RAND_bytes). */
int scram_verifier_generate(const char *password, size_t password_len, unsigned iterations,
                            struct scram_verifier *out, struct pgsov_err *err);

/* Writes the text form into buf; fails when it does not fit. */
int scram_verifier_format(const struct scram_verifier *v, char *buf, size_t size,
                          struct pgsov_err *err);

/* Checks a role name as the users file and `pgsov passwd` accept it: 1..63 bytes, no
 * whitespace, control characters, '#' or '"', and not the reserved word "certmap". */
int scram_user_name_check(const char *name, struct pgsov_err *err);

/* --- primitives (used by proxy/scram.c; all return 0 or -1) --- */

/* SASLprep stand-in. PostgreSQL normalizes passwords with SASLprep and falls back to the raw
 * bytes when that fails; we have no Unicode tables (OpenSSL has none, ICU is not a
 * dependency), so the password is always used as raw bytes. That is exactly PostgreSQL's
 * result for ASCII and for UTF-8 already in NFKC without mapped characters; it differs only
 * for non-normalized input (e.g. U+FB01 "ﬁ", or non-ASCII spaces), see docs/auth.md.
 * Returns true when the password is printable ASCII (the case known to match exactly). */
bool scram_password_prep(const char *password, size_t len);

/* SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, iterations). */
int scram_salted_password(const char *password, size_t password_len,
                          const unsigned char *salt, size_t salt_len, unsigned iterations,
                          unsigned char out[SCRAM_KEY_LEN]);

int scram_hmac(const unsigned char *key, size_t key_len, const void *data, size_t len,
               unsigned char out[SCRAM_KEY_LEN]);
int scram_sha256(const void *data, size_t len, unsigned char out[SCRAM_KEY_LEN]);

/* Strict base64 (RFC 4648 alphabet, padded, no whitespace).
 * encode: needs size >= 4 * ((len + 2) / 3) + 1; writes a NUL; returns the length or -1.
 * decode: returns the decoded length, or -1 for malformed input or when it exceeds size. */
int scram_b64_encode(const unsigned char *in, size_t len, char *out, size_t size);
int scram_b64_decode(const char *in, size_t len, unsigned char *out, size_t size);

#endif
