/* tls.h — OpenSSL contexts for both sides of the proxy.
 * Client side: the proxy is the TLS server (cert/key, optional client-certificate CA).
 * Upstream side: the proxy is a TLS client with libpq's sslmode meanings, SNI sent, and
 * host-name verification for verify-full. Contexts are built per config snapshot; a reload
 * that fails to build them keeps the old snapshot. */
#ifndef PGSOV_TLS_H
#define PGSOV_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <openssl/ssl.h>
#include "pgsov/config.h"

/* NULL with *ctx_out == NULL when client_tls = disable. */
int tls_client_side_ctx(const struct config *cfg, SSL_CTX **ctx_out, struct pgsov_err *err);

/* NULL with *ctx_out == NULL when the environment's sslmode = disable. As libpq: verify-full
 * and verify-ca check the chain (verify-ca needs sslrootcert: config.c), and require does too
 * when sslrootcert is set. */
int tls_upstream_ctx(const struct env_config *env, SSL_CTX **ctx_out, struct pgsov_err *err);

/* Does the upstream link prove the server's identity by itself: the chain checked against the
 * operator's own sslrootcert (verify-ca, or require with sslrootcert), or chain and host name
 * (verify-full)? Without that, an upstream must prove itself by SCRAM before the proxy hands
 * it a password in any form. */
bool tls_upstream_verified(const struct env_config *env);

/* An SSL for one upstream connection: SNI (host names only), and for verify-full the host
 * name or IP address that the certificate must carry. */
SSL *tls_upstream_ssl(SSL_CTX *ctx, const struct env_config *env);

/* The subject's single CN as UTF-8 into out; "" when there is none, several, or one with a NUL
 * or longer than size - 1 bytes. */
void subject_cn(const X509_NAME *name, char *out, size_t size);

/* The verified client certificate's subject CN and SHA-256 fingerprint, if any. */
struct tls_identity {
    bool has_cert;
    char cn[256];
    unsigned char sha256[32];
};
void tls_peer_identity(SSL *ssl, struct tls_identity *out);

/* Last OpenSSL error (or the verify result) as text, for messages. */
void tls_error_text(SSL *ssl, char *buf, size_t size);

#endif
