/* scram.h — password authentication as the proxy does it, both ways:
 *   server side: the proxy authenticates a client with SCRAM-SHA-256(-PLUS) against a
 *                verifier from the users file (RFC 5802, RFC 7677, PostgreSQL's rules);
 *   client side: the proxy logs in to an upstream with proxy-held credentials
 *                (SCRAM-SHA-256(-PLUS) or MD5).
 * Pure: no sockets, no libevent, no logging. The caller moves the bytes (SASL,
 * SASLInitialResponse, SASLContinue, SASLResponse, SASLFinal messages are wire.c's business).
 *
 * Messages returned through `const char **out` point into the exchange object and stay valid
 * until the next call on it or its free. Every failure returns -1 with err->msg written for
 * the proxy's log only: a client must only ever see 28P01 "password authentication failed for
 * user ...", whichever step failed (a wrong password, an unknown user and a forged channel
 * binding are indistinguishable from outside). err->msg never contains a password or key. */
#ifndef PGSOV_SCRAM_H
#define PGSOV_SCRAM_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/x509.h>

#include "pgsov/err.h"
#include "pgsov/scram_verifier.h"

#define SCRAM_MECH      "SCRAM-SHA-256"
#define SCRAM_MECH_PLUS "SCRAM-SHA-256-PLUS"
#define SCRAM_MAX_MESSAGE 2048     /* bound on any SCRAM message either side accepts */
#define SCRAM_CB_MAX      64       /* tls-server-end-point hash: up to SHA-512 */
#define SCRAM_MOCK_SECRET_LEN 32

/* ---- server side: the proxy authenticates a client ---- */

struct scram_server;

struct scram_server_params {
    /* The user's verifier, or NULL for an unknown user (or one without a SCRAM verifier):
     * the exchange then runs against a salt derived from mock_secret and user, looking
     * like any other, and always fails at the end. */
    const struct scram_verifier *verifier;
    const char *user;                        /* startup packet's user (SCRAM's n= is ignored) */
    const unsigned char *mock_secret;        /* SCRAM_MOCK_SECRET_LEN random bytes, made once
                                                per process (RAND_bytes); required */
    /* tls-server-end-point data of the certificate the proxy presented to this client
     * (scram_cert_endpoint_hash), or NULL without TLS. Non-NULL means the proxy offered
     * SCRAM-SHA-256-PLUS in AuthenticationSASL. */
    const unsigned char *cb_data;
    size_t cb_len;
    const char *nonce_override;              /* tests only (RFC vectors): NULL in the proxy */
};

/* The mechanism list for AuthenticationSASL: SCRAM_MECH_PLUS (only when channel binding data
 * is available) then SCRAM_MECH. Returns the number of names written to names[0..2). */
size_t scram_server_mechanisms(bool have_cb, const char *names[2]);

/* Starts an exchange for the mechanism the client chose in SASLInitialResponse. Fails for an
 * unknown mechanism and for -PLUS without channel binding data. */
struct scram_server *scram_server_begin(const struct scram_server_params *p,
                                        const char *mechanism, struct pgsov_err *err);

/* client-first-message (SASLInitialResponse data) → server-first-message (SASLContinue). */
int scram_server_handle_client_first(struct scram_server *s, const char *msg, size_t len,
                                     const char **out, size_t *out_len, struct pgsov_err *err);

/* client-final-message (SASLResponse) → server-final-message "v=..." (SASLFinal). Returns 0
 * only when the proof is valid and the channel binding matches; then the client is
 * authenticated as params.user. */
int scram_server_handle_client_final(struct scram_server *s, const char *msg, size_t len,
                                     const char **out, size_t *out_len, struct pgsov_err *err);

void scram_server_free(struct scram_server *s);

/* Fills a mock secret with SCRAM_MOCK_SECRET_LEN random bytes; call once per process. */
int scram_mock_secret_init(unsigned char secret[SCRAM_MOCK_SECRET_LEN], struct pgsov_err *err);

/* ---- channel binding ---- */

/* RFC 5929 tls-server-end-point: the hash of the DER certificate with the certificate's
 * signature digest, SHA-256 when that is MD5 or SHA-1. Fails for signature algorithms without
 * a separate digest (Ed25519, Ed448): then offer/use no -PLUS, as PostgreSQL does. */
int scram_cert_endpoint_hash(X509 *cert, unsigned char out[SCRAM_CB_MAX], size_t *out_len,
                             struct pgsov_err *err);

/* ---- client side: the proxy logs in to an upstream ---- */

enum scram_mechanism { SCRAM_MECHANISM_SHA256, SCRAM_MECHANISM_SHA256_PLUS };

/* Picks a mechanism from AuthenticationSASL's list (NUL-terminated names, an empty name ends
 * it; list_len bytes after the message type and auth code). Prefers -PLUS when have_cb and
 * offered. require_cb: fail unless -PLUS can be used (like libpq's channel_binding=require). */
int scram_select_mechanism(const char *list, size_t list_len, bool have_cb, bool require_cb,
                           enum scram_mechanism *out, struct pgsov_err *err);

const char *scram_mechanism_name(enum scram_mechanism m);

struct scram_client;

/* PBKDF2 with 4096 iterations costs milliseconds of CPU per upstream login. The salt and count
 * of a role only change with its password, so a caller may keep one cache per upstream
 * credential (a worker's own, or under a lock) and pass it in: a hit skips PBKDF2, a miss
 * fills it. Zero-initialize it; it holds password-equivalent keys, wipe it with
 * OPENSSL_cleanse when the credential goes away. */
struct scram_key_cache {
    bool valid;
    unsigned iterations;
    size_t salt_len;
    unsigned char salt[SCRAM_MAX_SALT_LEN];
    unsigned char client_key[SCRAM_KEY_LEN];
    unsigned char server_key[SCRAM_KEY_LEN];
};

struct scram_client_params {
    const char *password;
    size_t password_len;
    const char *user;                 /* sent as n=; NULL sends "n=" empty like libpq */
    enum scram_mechanism mechanism;
    /* tls-server-end-point data of the upstream's certificate, NULL without TLS. Required for
     * -PLUS; without -PLUS its presence makes the gs2 flag "y" (client could bind). */
    const unsigned char *cb_data;
    size_t cb_len;
    const char *nonce_override;       /* tests only: NULL draws 18 random bytes */
    struct scram_key_cache *cache;    /* optional, see above; must outlive the exchange */
};

struct scram_client *scram_client_begin(const struct scram_client_params *p,
                                        struct pgsov_err *err);

/* client-first-message for SASLInitialResponse. */
int scram_client_first(struct scram_client *c, const char **out, size_t *out_len,
                       struct pgsov_err *err);

/* server-first-message (SASLContinue) → client-final-message (SASLResponse). */
int scram_client_handle_server_first(struct scram_client *c, const char *msg, size_t len,
                                     const char **out, size_t *out_len, struct pgsov_err *err);

/* server-final-message (SASLFinal): 0 only when v= proves the server knows the verifier.
 * A wrong signature means the upstream is not who it claims to be: drop the connection. */
int scram_client_handle_server_final(struct scram_client *c, const char *msg, size_t len,
                                     struct pgsov_err *err);

void scram_client_free(struct scram_client *c);

/* AuthenticationMD5Password answer: "md5" + md5hex(md5hex(password + user) + salt), 35
 * characters and a NUL into out. */
int scram_md5_response(const char *user, const char *password, size_t password_len,
                       const unsigned char salt[4], char out[36], struct pgsov_err *err);

#endif
