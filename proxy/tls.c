/* tls.c — OpenSSL contexts for the client and upstream sides (see tls.h). */
#include "pgsov/tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <string.h>

static int fail_ssl(struct pgsov_err *err, const char *what, const char *path)
{
    char buf[256];
    unsigned long e = ERR_get_error();
    ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    return pgsov_fail(err, "%s %s: %s", what, path ? path : "", e ? buf : "failed");
}

int tls_client_side_ctx(const struct config *cfg, SSL_CTX **ctx_out, struct pgsov_err *err)
{
    *ctx_out = NULL;
    if (cfg->client_tls == CLIENT_TLS_DISABLE)
        return 0;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return fail_ssl(err, "SSL_CTX_new", NULL);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->client_tls_cert) != 1) {
        SSL_CTX_free(ctx);
        return fail_ssl(err, "client_tls_cert", cfg->client_tls_cert);
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->client_tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        SSL_CTX_free(ctx);
        return fail_ssl(err, "client_tls_key", cfg->client_tls_key);
    }
    if (cfg->client_tls_ca) {
        if (SSL_CTX_load_verify_locations(ctx, cfg->client_tls_ca, NULL) != 1) {
            SSL_CTX_free(ctx);
            return fail_ssl(err, "client_tls_ca", cfg->client_tls_ca);
        }
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->client_tls_ca);
        if (names)
            SSL_CTX_set_client_CA_list(ctx, names);
        /* A presented certificate must verify; verify-ca also demands one. */
        int mode = SSL_VERIFY_PEER;
        if (cfg->client_tls == CLIENT_TLS_VERIFY_CA)
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(ctx, mode, NULL);
    }
    static const unsigned char sid[] = "pgsov";
    SSL_CTX_set_session_id_context(ctx, sid, sizeof sid - 1);
    *ctx_out = ctx;
    return 0;
}

bool tls_upstream_verified(const struct env_config *env)
{
    return env->sslmode == SSLMODE_VERIFY_FULL ||
           ((env->sslmode == SSLMODE_VERIFY_CA || env->sslmode == SSLMODE_REQUIRE) && env->sslrootcert);
}

int tls_upstream_ctx(const struct env_config *env, SSL_CTX **ctx_out, struct pgsov_err *err)
{
    *ctx_out = NULL;
    if (env->sslmode == SSLMODE_DISABLE)
        return 0;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return fail_ssl(err, "SSL_CTX_new", NULL);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    if (env->sslmode >= SSLMODE_VERIFY_CA || env->sslrootcert) {   /* require + a root: verify-ca */
        int ok = env->sslrootcert ? SSL_CTX_load_verify_locations(ctx, env->sslrootcert, NULL)
                                  : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            SSL_CTX_free(ctx);
            return fail_ssl(err, "sslrootcert", env->sslrootcert ? env->sslrootcert : "(system store)");
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    if (env->sslcert) {
        if (SSL_CTX_use_certificate_chain_file(ctx, env->sslcert) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, env->sslkey, SSL_FILETYPE_PEM) != 1) {
            SSL_CTX_free(ctx);
            return fail_ssl(err, "sslcert/sslkey", env->sslcert);
        }
    }
    *ctx_out = ctx;
    return 0;
}

static bool is_ip_literal(const char *host)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

SSL *tls_upstream_ssl(SSL_CTX *ctx, const struct env_config *env)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl)
        return NULL;
    bool ip = is_ip_literal(env->host);
    if (!ip)
        SSL_set_tlsext_host_name(ssl, env->host);
    if (env->sslmode == SSLMODE_VERIFY_FULL) {
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, env->host)
                    : X509_VERIFY_PARAM_set1_host(param, env->host, 0);
        if (ok != 1) {
            SSL_free(ssl);
            return NULL;
        }
    }
    return ssl;
}

/* The subject's one CN as UTF-8, or "" (no cn= rule matches) when there is none, more than
 * one, or one that holds a NUL or does not fit: a cn= rule must name exactly what the CA
 * certified, never a prefix of it or one of several. */
void subject_cn(const X509_NAME *name, char *out, size_t size)
{
    out[0] = '\0';
    int at = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (at < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, at) >= 0)
        return;
    unsigned char *utf8 = NULL;
    int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, at)));
    if (len > 0 && (size_t)len < size && memchr(utf8, '\0', (size_t)len) == NULL) {
        memcpy(out, utf8, (size_t)len);
        out[len] = '\0';
    }
    OPENSSL_free(utf8);
}

void tls_peer_identity(SSL *ssl, struct tls_identity *out)
{
    memset(out, 0, sizeof *out);
    X509 *cert = SSL_get1_peer_certificate(ssl);
    if (!cert)
        return;
    if (SSL_get_verify_result(ssl) == X509_V_OK) {
        out->has_cert = true;
        subject_cn(X509_get_subject_name(cert), out->cn, sizeof out->cn);
        unsigned int n = sizeof out->sha256;
        X509_digest(cert, EVP_sha256(), out->sha256, &n);
    }
    X509_free(cert);
}

void tls_error_text(SSL *ssl, char *buf, size_t size)
{
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (vr != X509_V_OK) {
        snprintf(buf, size, "certificate verify failed: %s", X509_verify_cert_error_string(vr));
        ERR_clear_error();
        return;
    }
    unsigned long e = ERR_get_error();
    if (e) {
        ERR_error_string_n(e, buf, size);
        ERR_clear_error();
    } else {
        snprintf(buf, size, "TLS handshake failed");
    }
}
