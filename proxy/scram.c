/* scram.c — SCRAM-SHA-256(-PLUS) exchanges for both roles the proxy plays (server to its
 * clients, client to its upstreams), MD5 answers for upstreams, mechanism selection and the
 * tls-server-end-point channel-binding hash. Pure: the caller carries the bytes.
 *
 * Follows RFC 5802/7677 as PostgreSQL 15 applies them: the SCRAM user name is ignored (the
 * startup user counts), authzid and mandatory extensions are refused, embedded NULs are
 * refused, optional extensions are ignored, and the proof must be the last attribute.
 * Does not do: SASLprep normalization (see scram_password_prep), other hash functions. */
#include "pgsov/scram.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rand.h>

#define CB_NAME        "tls-server-end-point"
#define NONCE_RAW_LEN  18                               /* as PostgreSQL */
#define B64_LEN(n)     (4 * (((n) + 2) / 3))
#define GS2_MAX        (sizeof "p=" CB_NAME ",," - 1)
#define SERVER_FIRST_MAX (SCRAM_MAX_MESSAGE + B64_LEN(SCRAM_MAX_SALT_LEN) + 32)
#define AUTH_MSG_MAX   (2 * SCRAM_MAX_MESSAGE + SERVER_FIRST_MAX + 2)

/* ---- small parsing helpers ---- */

/* A cursor over one SCRAM message. */
struct cursor {
    const char *p, *end;
};

/* Reads "<name>=<value>" up to the next ',' or the end; leaves the cursor on that ',' (or
 * the end). The value may be empty. */
static int read_attr(struct cursor *c, char name, const char **val, size_t *val_len)
{
    if (c->end - c->p < 2 || c->p[0] != name || c->p[1] != '=')
        return -1;
    const char *v = c->p + 2;
    const char *comma = memchr(v, ',', (size_t)(c->end - v));
    const char *stop = comma ? comma : c->end;
    *val = v;
    *val_len = (size_t)(stop - v);
    c->p = stop;
    return 0;
}

/* Reads "<letter>=<value>"; for extensions and to find "p=". */
static int read_any_attr(struct cursor *c, char *name, const char **val, size_t *val_len)
{
    if (c->end - c->p < 2)
        return -1;
    char n = c->p[0];
    if (!((n >= 'a' && n <= 'z') || (n >= 'A' && n <= 'Z')))
        return -1;
    *name = n;
    return read_attr(c, n, val, val_len);
}

static int expect_comma(struct cursor *c)
{
    if (c->p >= c->end || *c->p != ',')
        return -1;
    c->p++;
    return 0;
}

/* RFC 5802 printable, without ',': the nonce alphabet. */
static bool nonce_ok(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x21 || ch > 0x7e || ch == ',')
            return false;
    }
    return true;
}

/* Common checks on any incoming message: non-empty, bounded, no NUL (PostgreSQL treats
 * these messages as C strings and rejects a length mismatch). */
static int message_ok(const char *msg, size_t len)
{
    return len > 0 && len <= SCRAM_MAX_MESSAGE && memchr(msg, '\0', len) == NULL ? 0 : -1;
}

static int parse_uint(const char *s, size_t len, unsigned lo, unsigned hi, unsigned *out)
{
    if (len == 0 || len > 9)
        return -1;
    unsigned long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v < lo || v > hi)
        return -1;
    *out = (unsigned)v;
    return 0;
}

/* Appends to a bounded buffer; returns -1 when it would not fit (with room for a NUL). */
struct sbuf {
    char *buf;
    size_t len, cap;
};

static int sbuf_add(struct sbuf *b, const void *data, size_t len)
{
    if (len >= b->cap - b->len)
        return -1;
    memcpy(b->buf + b->len, data, len);
    b->len += len;
    b->buf[b->len] = '\0';
    return 0;
}

static int sbuf_adds(struct sbuf *b, const char *s)
{
    return sbuf_add(b, s, strlen(s));
}

static int sbuf_add_b64(struct sbuf *b, const unsigned char *data, size_t len)
{
    int n = scram_b64_encode(data, len, b->buf + b->len, b->cap - b->len);
    if (n < 0)
        return -1;
    b->len += (size_t)n;
    return 0;
}

static int random_nonce(char *out, size_t size)
{
    unsigned char raw[NONCE_RAW_LEN];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return -1;
    int n = scram_b64_encode(raw, sizeof raw, out, size);
    OPENSSL_cleanse(raw, sizeof raw);
    return n;
}

/* AuthMessage = client-first-message-bare "," server-first-message ","
 *               client-final-message-without-proof */
static int auth_message(struct sbuf *am, const char *bare, size_t bare_len, const char *sf,
                        size_t sf_len, const char *cf, size_t cf_len)
{
    am->len = 0;
    return sbuf_add(am, bare, bare_len) || sbuf_add(am, ",", 1) || sbuf_add(am, sf, sf_len) ||
                   sbuf_add(am, ",", 1) || sbuf_add(am, cf, cf_len)
               ? -1
               : 0;
}

/* ---- server side ---- */

enum server_state { SERVER_INIT, SERVER_FIRST_SENT, SERVER_DONE, SERVER_FAILED };

struct scram_server {
    enum server_state state;
    bool mock;                   /* unknown user: run the exchange, fail at the end */
    bool plus;                   /* client chose SCRAM-SHA-256-PLUS */
    bool cb_offered;             /* we have channel binding data, so we offered -PLUS */
    struct scram_verifier v;
    unsigned char cb_data[SCRAM_CB_MAX];
    size_t cb_len;
    char gs2[GS2_MAX + 1];
    size_t gs2_len;
    char nonce_override[SCRAM_MAX_MESSAGE + 1];
    char bare[SCRAM_MAX_MESSAGE + 1];         /* client-first-message-bare */
    size_t bare_len;
    char nonce[SCRAM_MAX_MESSAGE + 64];       /* client nonce + server nonce */
    size_t nonce_len;
    char server_first[SERVER_FIRST_MAX];
    size_t server_first_len;
    char auth[AUTH_MSG_MAX];
    char out[B64_LEN(SCRAM_KEY_LEN) + 8];
};

size_t scram_server_mechanisms(bool have_cb, const char *names[2])
{
    size_t n = 0;
    if (have_cb)
        names[n++] = SCRAM_MECH_PLUS;
    names[n++] = SCRAM_MECH;
    return n;
}

int scram_mock_secret_init(unsigned char secret[SCRAM_MOCK_SECRET_LEN], struct pgsov_err *err)
{
    if (RAND_bytes(secret, SCRAM_MOCK_SECRET_LEN) != 1)
        return pgsov_fail(err, "could not generate the SCRAM mock secret (OpenSSL RAND_bytes)");
    return 0;
}

/* The mock verifier of an unknown user: a salt that is the same on every attempt for the
 * same name (as a real user's would be) but unpredictable without the process secret. */
static int mock_verifier(const unsigned char *secret, const char *user, struct scram_verifier *v)
{
    unsigned char mac[SCRAM_KEY_LEN];
    char label[SCRAM_NAME_MAX + 16];
    /* Over-long names cannot be real users anyway; a bounded prefix is enough. */
    int n = snprintf(label, sizeof label, "salt:%.*s", SCRAM_NAME_MAX + 8, user);
    memset(v, 0, sizeof *v);
    v->iterations = SCRAM_DEFAULT_ITERATIONS;
    v->salt_len = SCRAM_DEFAULT_SALT_LEN;
    int rc = -1;
    if (n > 0 && scram_hmac(secret, SCRAM_MOCK_SECRET_LEN, label, (size_t)n, mac) == 0) {
        memcpy(v->salt, mac, v->salt_len);
        memcpy(label, "keys", 4);   /* a different input for the fake keys */
        if (scram_hmac(secret, SCRAM_MOCK_SECRET_LEN, label, (size_t)n, v->stored_key) == 0 &&
            scram_sha256(v->stored_key, SCRAM_KEY_LEN, v->server_key) == 0)
            rc = 0;
    }
    OPENSSL_cleanse(mac, sizeof mac);
    return rc;
}

struct scram_server *scram_server_begin(const struct scram_server_params *p,
                                        const char *mechanism, struct pgsov_err *err)
{
    bool plus;
    if (strcmp(mechanism, SCRAM_MECH) == 0)
        plus = false;
    else if (strcmp(mechanism, SCRAM_MECH_PLUS) == 0)
        plus = true;
    else {
        pgsov_fail(err, "client chose an unsupported SASL mechanism");
        return NULL;
    }
    if (p->cb_data && (p->cb_len == 0 || p->cb_len > SCRAM_CB_MAX)) {
        pgsov_fail(err, "channel binding data length %zu out of range", p->cb_len);
        return NULL;
    }
    if (plus && !p->cb_data) {
        pgsov_fail(err, "client chose " SCRAM_MECH_PLUS " but the connection offers no channel "
                        "binding (no TLS)");
        return NULL;
    }
    if (!p->verifier && (!p->mock_secret || !p->user)) {
        pgsov_fail(err, "mock authentication needs the user and the mock secret");
        return NULL;
    }
    if (p->nonce_override && (strlen(p->nonce_override) > SCRAM_MAX_MESSAGE ||
                              !nonce_ok(p->nonce_override, strlen(p->nonce_override)))) {
        pgsov_fail(err, "invalid nonce override");
        return NULL;
    }
    struct scram_server *s = calloc(1, sizeof *s);
    if (!s) {
        pgsov_fail(err, "out of memory");
        return NULL;
    }
    s->plus = plus;
    if (p->cb_data) {
        s->cb_offered = true;
        memcpy(s->cb_data, p->cb_data, p->cb_len);
        s->cb_len = p->cb_len;
    }
    if (p->nonce_override)
        pgsov_strlcpy(s->nonce_override, p->nonce_override, sizeof s->nonce_override);
    /* The mock verifier is derived for known users too, and thrown away, so that both
     * paths cost the same and timing does not tell whether a user exists. */
    struct scram_verifier mock;
    if (p->mock_secret && p->user && mock_verifier(p->mock_secret, p->user, &mock) < 0) {
        pgsov_fail(err, "SCRAM mock verifier derivation failed (OpenSSL)");
        scram_server_free(s);
        return NULL;
    }
    if (p->verifier) {
        s->v = *p->verifier;
    } else {
        s->mock = true;
        s->v = mock;
    }
    OPENSSL_cleanse(&mock, sizeof mock);
    return s;
}

static int server_fail(struct scram_server *s, struct pgsov_err *err, const char *why)
{
    s->state = SERVER_FAILED;
    return pgsov_fail(err, "SCRAM authentication failed: %s", why);
}

/* gs2-header: gs2-cbind-flag "," [authzid] ","; sets s->gs2. */
static int server_read_gs2(struct scram_server *s, struct cursor *c, struct pgsov_err *err)
{
    const char *start = c->p;
    if (c->p >= c->end)
        return server_fail(s, err, "empty client-first-message");
    switch (*c->p) {
    case 'n':
        if (s->plus)
            return server_fail(s, err, "client chose " SCRAM_MECH_PLUS " but sent no channel "
                                       "binding (gs2 flag 'n')");
        c->p++;
        break;
    case 'y':
        if (s->plus)
            return server_fail(s, err, "client chose " SCRAM_MECH_PLUS " but sent gs2 flag 'y'");
        /* RFC 5802 §6: the client could bind but believes we cannot. We offered -PLUS, so
         * someone removed it from the mechanism list on the way: a downgrade attack. */
        if (s->cb_offered)
            return server_fail(s, err, "channel binding downgrade: client supports it but did "
                                       "not see " SCRAM_MECH_PLUS " offered");
        c->p++;
        break;
    case 'p': {
        const char *name;
        size_t name_len;
        if (read_attr(c, 'p', &name, &name_len) < 0)
            return server_fail(s, err, "malformed gs2 header");
        if (!s->plus)
            return server_fail(s, err, "client chose " SCRAM_MECH " without channel binding "
                                       "but sent channel binding data");
        if (name_len != strlen(CB_NAME) || memcmp(name, CB_NAME, name_len) != 0)
            return server_fail(s, err, "unsupported channel binding type (only " CB_NAME ")");
        break;
    }
    default:
        return server_fail(s, err, "malformed gs2 header (bad channel binding flag)");
    }
    if (expect_comma(c) < 0)
        return server_fail(s, err, "malformed gs2 header");
    if (c->p < c->end && *c->p == 'a')
        return server_fail(s, err, "authorization identity (a=) is not supported");
    if (expect_comma(c) < 0)
        return server_fail(s, err, "malformed gs2 header");
    s->gs2_len = (size_t)(c->p - start);
    if (s->gs2_len > GS2_MAX)
        return server_fail(s, err, "malformed gs2 header");
    memcpy(s->gs2, start, s->gs2_len);
    s->gs2[s->gs2_len] = '\0';
    return 0;
}

/* Skips ",<letter>=<value>" extensions up to the end of the message. */
static int skip_extensions(struct cursor *c)
{
    while (c->p < c->end) {
        char name;
        const char *v;
        size_t vl;
        if (expect_comma(c) < 0 || read_any_attr(c, &name, &v, &vl) < 0)
            return -1;
    }
    return 0;
}

int scram_server_handle_client_first(struct scram_server *s, const char *msg, size_t len,
                                     const char **out, size_t *out_len, struct pgsov_err *err)
{
    if (s->state != SERVER_INIT)
        return server_fail(s, err, "client-first-message out of order");
    if (message_ok(msg, len) < 0)
        return server_fail(s, err, "client-first-message empty, too long or contains NUL");
    struct cursor c = { msg, msg + len };
    if (server_read_gs2(s, &c, err) < 0)
        return -1;
    const char *bare = c.p;
    if (c.p < c.end && *c.p == 'm')
        return server_fail(s, err, "mandatory extensions (m=) are not supported");
    const char *user, *nonce;
    size_t user_len, nonce_len;
    /* The SCRAM user name is ignored, as PostgreSQL does: the startup packet's user counts. */
    if (read_attr(&c, 'n', &user, &user_len) < 0 || expect_comma(&c) < 0 ||
        read_attr(&c, 'r', &nonce, &nonce_len) < 0)
        return server_fail(s, err, "malformed client-first-message (expected n=...,r=...)");
    if (!nonce_ok(nonce, nonce_len))
        return server_fail(s, err, "client nonce empty or not printable");
    if (skip_extensions(&c) < 0)
        return server_fail(s, err, "malformed client-first-message extension");
    s->bare_len = (size_t)(c.end - bare);
    memcpy(s->bare, bare, s->bare_len);
    s->bare[s->bare_len] = '\0';

    char server_nonce[SCRAM_MAX_MESSAGE + 1];
    if (s->nonce_override[0])
        pgsov_strlcpy(server_nonce, s->nonce_override, sizeof server_nonce);
    else if (random_nonce(server_nonce, sizeof server_nonce) < 0)
        return server_fail(s, err, "could not generate a nonce (OpenSSL RAND_bytes)");
    struct sbuf n = { s->nonce, 0, sizeof s->nonce };
    if (sbuf_add(&n, nonce, nonce_len) < 0 || sbuf_adds(&n, server_nonce) < 0)
        return server_fail(s, err, "nonce too long");
    s->nonce_len = n.len;

    struct sbuf sf = { s->server_first, 0, sizeof s->server_first };
    char iter[16];
    snprintf(iter, sizeof iter, "%u", s->v.iterations);
    if (sbuf_adds(&sf, "r=") < 0 || sbuf_add(&sf, s->nonce, s->nonce_len) < 0 ||
        sbuf_adds(&sf, ",s=") < 0 || sbuf_add_b64(&sf, s->v.salt, s->v.salt_len) < 0 ||
        sbuf_adds(&sf, ",i=") < 0 || sbuf_adds(&sf, iter) < 0)
        return server_fail(s, err, "server-first-message too long");
    s->server_first_len = sf.len;
    s->state = SERVER_FIRST_SENT;
    *out = s->server_first;
    *out_len = s->server_first_len;
    return 0;
}

int scram_server_handle_client_final(struct scram_server *s, const char *msg, size_t len,
                                     const char **out, size_t *out_len, struct pgsov_err *err)
{
    if (s->state != SERVER_FIRST_SENT)
        return server_fail(s, err, "client-final-message out of order");
    if (message_ok(msg, len) < 0)
        return server_fail(s, err, "client-final-message empty, too long or contains NUL");
    struct cursor c = { msg, msg + len };
    const char *cbind, *nonce, *proof_b64 = NULL;
    size_t cbind_len, nonce_len, proof_len = 0;
    if (read_attr(&c, 'c', &cbind, &cbind_len) < 0 || expect_comma(&c) < 0 ||
        read_attr(&c, 'r', &nonce, &nonce_len) < 0)
        return server_fail(s, err, "malformed client-final-message (expected c=...,r=...)");

    /* Channel binding: c= must carry exactly our gs2 header, plus, with p=, the hash of the
     * certificate this client really saw. A mismatch means a TLS interceptor in between. */
    unsigned char cb[GS2_MAX + SCRAM_CB_MAX];
    size_t want_len = s->gs2_len + (s->plus ? s->cb_len : 0);
    unsigned char want[GS2_MAX + SCRAM_CB_MAX];
    memcpy(want, s->gs2, s->gs2_len);
    if (s->plus)
        memcpy(want + s->gs2_len, s->cb_data, s->cb_len);
    int cb_got = scram_b64_decode(cbind, cbind_len, cb, sizeof cb);
    if (cb_got < 0 || (size_t)cb_got != want_len || CRYPTO_memcmp(cb, want, want_len) != 0)
        return server_fail(s, err, "channel binding does not match");
    if (nonce_len != s->nonce_len || memcmp(nonce, s->nonce, nonce_len) != 0)
        return server_fail(s, err, "nonce does not match");

    /* Optional extensions, then p= which must end the message. */
    const char *without_proof_end = NULL;
    while (c.p < c.end) {
        const char *attr_start = c.p;
        char name;
        const char *v;
        size_t vl;
        if (expect_comma(&c) < 0 || read_any_attr(&c, &name, &v, &vl) < 0)
            return server_fail(s, err, "malformed client-final-message");
        if (name == 'p') {
            without_proof_end = attr_start;
            proof_b64 = v;
            proof_len = vl;
            if (c.p != c.end)
                return server_fail(s, err, "garbage after the proof in client-final-message");
        }
    }
    if (!proof_b64)
        return server_fail(s, err, "client-final-message has no proof");
    unsigned char proof[SCRAM_KEY_LEN];
    if (scram_b64_decode(proof_b64, proof_len, proof, sizeof proof) != SCRAM_KEY_LEN)
        return server_fail(s, err, "malformed proof");

    struct sbuf am = { s->auth, 0, sizeof s->auth };
    if (auth_message(&am, s->bare, s->bare_len, s->server_first, s->server_first_len, msg,
                     (size_t)(without_proof_end - msg)) < 0)
        return server_fail(s, err, "AuthMessage too long");

    /* ClientKey = proof XOR HMAC(StoredKey, AuthMessage); H(ClientKey) must be StoredKey.
     * The mock exchange does the same work and fails regardless. */
    unsigned char sig[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN], stored[SCRAM_KEY_LEN];
    int crypto = scram_hmac(s->v.stored_key, SCRAM_KEY_LEN, am.buf, am.len, sig);
    for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
        client_key[i] = proof[i] ^ sig[i];
    crypto |= scram_sha256(client_key, sizeof client_key, stored);
    int differs = CRYPTO_memcmp(stored, s->v.stored_key, SCRAM_KEY_LEN);
    OPENSSL_cleanse(client_key, sizeof client_key);
    OPENSSL_cleanse(sig, sizeof sig);
    if (crypto != 0)
        return server_fail(s, err, "HMAC/SHA-256 failed (OpenSSL)");
    if (differs || s->mock)
        return server_fail(s, err, "invalid proof (wrong password or unknown user)");

    unsigned char server_sig[SCRAM_KEY_LEN];
    if (scram_hmac(s->v.server_key, SCRAM_KEY_LEN, am.buf, am.len, server_sig) < 0)
        return server_fail(s, err, "HMAC failed (OpenSSL)");
    struct sbuf o = { s->out, 0, sizeof s->out };
    if (sbuf_adds(&o, "v=") < 0 || sbuf_add_b64(&o, server_sig, sizeof server_sig) < 0)
        return server_fail(s, err, "server-final-message too long");
    s->state = SERVER_DONE;
    *out = s->out;
    *out_len = o.len;
    return 0;
}

void scram_server_free(struct scram_server *s)
{
    if (!s)
        return;
    OPENSSL_cleanse(s, sizeof *s);
    free(s);
}

/* ---- channel binding ---- */

int scram_cert_endpoint_hash(X509 *cert, unsigned char out[SCRAM_CB_MAX], size_t *out_len,
                             struct pgsov_err *err)
{
    int md_nid = NID_undef, pk_nid = NID_undef;
    if (!cert)
        return pgsov_fail(err, "no certificate for channel binding");
    if (!OBJ_find_sigid_algs(X509_get_signature_nid(cert), &md_nid, &pk_nid))
        return pgsov_fail(err, "unknown certificate signature algorithm: no channel binding");
    /* RFC 5929 §4.1: MD5 and SHA-1 are replaced by SHA-256. */
    if (md_nid == NID_md5 || md_nid == NID_sha1)
        md_nid = NID_sha256;
    const EVP_MD *md = md_nid == NID_undef ? NULL : EVP_get_digestbynid(md_nid);
    if (!md)
        return pgsov_fail(err, "certificate signature algorithm has no digest "
                               "(e.g. Ed25519): tls-server-end-point is undefined");
    if (EVP_MD_get_size(md) <= 0 || EVP_MD_get_size(md) > SCRAM_CB_MAX)
        return pgsov_fail(err, "certificate digest too large for channel binding");
    unsigned int n = 0;
    if (X509_digest(cert, md, out, &n) != 1)
        return pgsov_fail(err, "could not hash the certificate (OpenSSL)");
    *out_len = n;
    return 0;
}

/* ---- client side ---- */

int scram_select_mechanism(const char *list, size_t list_len, bool have_cb, bool require_cb,
                           enum scram_mechanism *out, struct pgsov_err *err)
{
    bool plain = false, plus = false, terminated = false;
    size_t i = 0;
    while (i < list_len) {
        const char *name = list + i;
        const char *nul = memchr(name, '\0', list_len - i);
        if (!nul)
            return pgsov_fail(err, "malformed AuthenticationSASL mechanism list");
        size_t n = (size_t)(nul - name);
        if (n == 0) {
            terminated = true;
            break;
        }
        if (strcmp(name, SCRAM_MECH) == 0)
            plain = true;
        else if (strcmp(name, SCRAM_MECH_PLUS) == 0)
            plus = true;
        i += n + 1;
    }
    if (!terminated)
        return pgsov_fail(err, "malformed AuthenticationSASL mechanism list (unterminated)");
    if (have_cb && plus) {
        *out = SCRAM_MECHANISM_SHA256_PLUS;
        return 0;
    }
    if (require_cb)
        return pgsov_fail(err, "upstream does not offer " SCRAM_MECH_PLUS " (channel binding "
                               "required%s)", have_cb ? "" : "; no TLS certificate to bind to");
    if (plain) {
        *out = SCRAM_MECHANISM_SHA256;
        return 0;
    }
    return pgsov_fail(err, "upstream offers no supported SASL mechanism (need " SCRAM_MECH ")");
}

const char *scram_mechanism_name(enum scram_mechanism m)
{
    return m == SCRAM_MECHANISM_SHA256_PLUS ? SCRAM_MECH_PLUS : SCRAM_MECH;
}

enum client_state { CLIENT_INIT, CLIENT_FIRST_SENT, CLIENT_FINAL_SENT, CLIENT_DONE,
                    CLIENT_FAILED };

struct scram_client {
    enum client_state state;
    char *password;
    size_t password_len;
    unsigned char cb_data[SCRAM_CB_MAX];
    size_t cb_len;
    bool plus;
    char gs2[GS2_MAX + 1];
    char nonce[SCRAM_MAX_MESSAGE + 1];              /* client nonce */
    char first[SCRAM_MAX_MESSAGE + 1];              /* client-first-message */
    size_t first_len, bare_off;
    unsigned char server_signature[SCRAM_KEY_LEN];  /* what v= must say */
    struct scram_key_cache *cache;
    char auth[AUTH_MSG_MAX];
    char out[SCRAM_MAX_MESSAGE + 1];
};

static int client_fail(struct scram_client *c, struct pgsov_err *err, const char *why)
{
    c->state = CLIENT_FAILED;
    return pgsov_fail(err, "SCRAM login to upstream failed: %s", why);
}

struct scram_client *scram_client_begin(const struct scram_client_params *p,
                                        struct pgsov_err *err)
{
    bool plus = p->mechanism == SCRAM_MECHANISM_SHA256_PLUS;
    if (p->cb_data && (p->cb_len == 0 || p->cb_len > SCRAM_CB_MAX)) {
        pgsov_fail(err, "channel binding data length %zu out of range", p->cb_len);
        return NULL;
    }
    if (plus && !p->cb_data) {
        pgsov_fail(err, SCRAM_MECH_PLUS " needs the upstream certificate's hash");
        return NULL;
    }
    if (p->nonce_override && (strlen(p->nonce_override) > SCRAM_MAX_MESSAGE / 2 ||
                              !nonce_ok(p->nonce_override, strlen(p->nonce_override)))) {
        pgsov_fail(err, "invalid nonce override");
        return NULL;
    }
    struct scram_client *c = calloc(1, sizeof *c);
    if (!c || !(c->password = malloc(p->password_len + 1))) {
        free(c);
        pgsov_fail(err, "out of memory");
        return NULL;
    }
    memcpy(c->password, p->password, p->password_len);
    c->password[p->password_len] = '\0';
    c->password_len = p->password_len;
    c->plus = plus;
    c->cache = p->cache;
    if (p->cb_data) {
        memcpy(c->cb_data, p->cb_data, p->cb_len);
        c->cb_len = p->cb_len;
    }
    pgsov_strlcpy(c->gs2, plus ? "p=" CB_NAME ",," : p->cb_data ? "y,," : "n,,", sizeof c->gs2);
    if (p->nonce_override)
        pgsov_strlcpy(c->nonce, p->nonce_override, sizeof c->nonce);
    else if (random_nonce(c->nonce, sizeof c->nonce) < 0) {
        pgsov_fail(err, "could not generate a nonce (OpenSSL RAND_bytes)");
        scram_client_free(c);
        return NULL;
    }

    /* client-first-message: gs2-header "n=" saslname ",r=" nonce; saslname escapes ',' and
     * '=' (RFC 5802 §5.1). */
    struct sbuf b = { c->first, 0, sizeof c->first };
    const char *user = p->user ? p->user : "";
    int bad = sbuf_adds(&b, c->gs2);
    c->bare_off = b.len;
    bad |= sbuf_adds(&b, "n=");
    for (const char *u = user; *u && !bad; u++)
        bad |= *u == ',' ? sbuf_adds(&b, "=2C") : *u == '=' ? sbuf_adds(&b, "=3D")
                                                            : sbuf_add(&b, u, 1);
    bad |= sbuf_adds(&b, ",r=");
    bad |= sbuf_adds(&b, c->nonce);
    if (bad) {
        pgsov_fail(err, "user name too long for SCRAM");
        scram_client_free(c);
        return NULL;
    }
    c->first_len = b.len;
    return c;
}

int scram_client_first(struct scram_client *c, const char **out, size_t *out_len,
                       struct pgsov_err *err)
{
    if (c->state != CLIENT_INIT)
        return client_fail(c, err, "client-first-message requested twice");
    c->state = CLIENT_FIRST_SENT;
    *out = c->first;
    *out_len = c->first_len;
    return 0;
}

int scram_client_handle_server_first(struct scram_client *c, const char *msg, size_t len,
                                     const char **out, size_t *out_len, struct pgsov_err *err)
{
    if (c->state != CLIENT_FIRST_SENT)
        return client_fail(c, err, "server-first-message out of order");
    if (message_ok(msg, len) < 0)
        return client_fail(c, err, "server-first-message empty, too long or contains NUL");
    struct cursor cur = { msg, msg + len };
    const char *nonce, *salt_b64, *iter;
    size_t nonce_len, salt_len, iter_len;
    if (cur.p < cur.end && *cur.p == 'm')
        return client_fail(c, err, "server requires an unsupported extension (m=)");
    if (read_attr(&cur, 'r', &nonce, &nonce_len) < 0 || expect_comma(&cur) < 0 ||
        read_attr(&cur, 's', &salt_b64, &salt_len) < 0 || expect_comma(&cur) < 0 ||
        read_attr(&cur, 'i', &iter, &iter_len) < 0 || cur.p != cur.end)
        return client_fail(c, err, "malformed server-first-message (expected r=,s=,i=)");
    size_t cn_len = strlen(c->nonce);
    if (nonce_len <= cn_len || memcmp(nonce, c->nonce, cn_len) != 0 ||
        !nonce_ok(nonce, nonce_len))
        return client_fail(c, err, "server nonce does not extend ours");
    unsigned char salt[SCRAM_MAX_SALT_LEN];
    int n = scram_b64_decode(salt_b64, salt_len, salt, sizeof salt);
    if (n < 1)
        return client_fail(c, err, "malformed salt in server-first-message");
    unsigned iterations;
    if (parse_uint(iter, iter_len, 1, SCRAM_MAX_ITERATIONS, &iterations) < 0)
        return client_fail(c, err, "iteration count in server-first-message out of range");

    /* client-final-message-without-proof: "c=" b64(gs2 [+ cb data]) ",r=" nonce */
    struct sbuf o = { c->out, 0, sizeof c->out };
    unsigned char cbind[GS2_MAX + SCRAM_CB_MAX];
    size_t gl = strlen(c->gs2);
    memcpy(cbind, c->gs2, gl);
    if (c->plus)
        memcpy(cbind + gl, c->cb_data, c->cb_len);
    if (sbuf_adds(&o, "c=") < 0 || sbuf_add_b64(&o, cbind, gl + (c->plus ? c->cb_len : 0)) < 0 ||
        sbuf_adds(&o, ",r=") < 0 || sbuf_add(&o, nonce, nonce_len) < 0)
        return client_fail(c, err, "client-final-message too long");
    struct sbuf am = { c->auth, 0, sizeof c->auth };
    if (auth_message(&am, c->first + c->bare_off, c->first_len - c->bare_off, msg, len, o.buf,
                     o.len) < 0)
        return client_fail(c, err, "AuthMessage too long");

    unsigned char salted[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN], stored[SCRAM_KEY_LEN];
    unsigned char sig[SCRAM_KEY_LEN], server_key[SCRAM_KEY_LEN], proof[SCRAM_KEY_LEN];
    struct scram_key_cache *kc = c->cache;
    int bad = 0;
    memset(salted, 0, sizeof salted);
    if (kc && kc->valid && kc->iterations == iterations && kc->salt_len == (size_t)n &&
        memcmp(kc->salt, salt, (size_t)n) == 0) {
        memcpy(client_key, kc->client_key, SCRAM_KEY_LEN);
        memcpy(server_key, kc->server_key, SCRAM_KEY_LEN);
    } else {
        bad |= scram_salted_password(c->password, c->password_len, salt, (size_t)n, iterations,
                                     salted);
        bad |= scram_hmac(salted, sizeof salted, "Client Key", 10, client_key);
        bad |= scram_hmac(salted, sizeof salted, "Server Key", 10, server_key);
        if (kc && !bad) {
            kc->valid = true;
            kc->iterations = iterations;
            kc->salt_len = (size_t)n;
            memcpy(kc->salt, salt, (size_t)n);
            memcpy(kc->client_key, client_key, SCRAM_KEY_LEN);
            memcpy(kc->server_key, server_key, SCRAM_KEY_LEN);
        }
    }
    bad |= scram_sha256(client_key, sizeof client_key, stored);
    bad |= scram_hmac(stored, sizeof stored, am.buf, am.len, sig);
    bad |= scram_hmac(server_key, sizeof server_key, am.buf, am.len, c->server_signature);
    for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
        proof[i] = client_key[i] ^ sig[i];
    OPENSSL_cleanse(salted, sizeof salted);
    OPENSSL_cleanse(client_key, sizeof client_key);
    OPENSSL_cleanse(server_key, sizeof server_key);
    if (bad)
        return client_fail(c, err, "key derivation failed (OpenSSL)");
    if (sbuf_adds(&o, ",p=") < 0 || sbuf_add_b64(&o, proof, sizeof proof) < 0)
        return client_fail(c, err, "client-final-message too long");
    c->state = CLIENT_FINAL_SENT;
    *out = o.buf;
    *out_len = o.len;
    return 0;
}

int scram_client_handle_server_final(struct scram_client *c, const char *msg, size_t len,
                                     struct pgsov_err *err)
{
    if (c->state != CLIENT_FINAL_SENT)
        return client_fail(c, err, "server-final-message out of order");
    if (message_ok(msg, len) < 0)
        return client_fail(c, err, "server-final-message empty, too long or contains NUL");
    struct cursor cur = { msg, msg + len };
    const char *v;
    size_t vl;
    if (read_attr(&cur, 'e', &v, &vl) == 0) {
        c->state = CLIENT_FAILED;
        if (cur.p == cur.end && vl <= 64 && nonce_ok(v, vl))
            return pgsov_fail(err, "SCRAM login to upstream failed: server error \"%.*s\"",
                              (int)vl, v);
        return client_fail(c, err, "server error");
    }
    unsigned char sig[SCRAM_KEY_LEN];
    cur.p = msg;
    if (read_attr(&cur, 'v', &v, &vl) < 0 || cur.p != cur.end ||
        scram_b64_decode(v, vl, sig, sizeof sig) != SCRAM_KEY_LEN)
        return client_fail(c, err, "malformed server-final-message");
    if (CRYPTO_memcmp(sig, c->server_signature, SCRAM_KEY_LEN) != 0)
        return client_fail(c, err, "wrong server signature: the upstream does not know this "
                                   "user's verifier (impostor or wrong server)");
    c->state = CLIENT_DONE;
    return 0;
}

void scram_client_free(struct scram_client *c)
{
    if (!c)
        return;
    if (c->password) {
        OPENSSL_cleanse(c->password, c->password_len);
        free(c->password);
    }
    OPENSSL_cleanse(c, sizeof *c);
    free(c);
}

/* ---- MD5 ---- */

static int md5_hex(const void *a, size_t alen, const void *b, size_t blen, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, a, alen) == 1 && EVP_DigestUpdate(ctx, b, blen) == 1 &&
             EVP_DigestFinal_ex(ctx, md, &n) == 1 && n == 16;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return -1;
    for (unsigned i = 0; i < 16; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[32] = '\0';
    OPENSSL_cleanse(md, sizeof md);
    return 0;
}

int scram_md5_response(const char *user, const char *password, size_t password_len,
                       const unsigned char salt[4], char out[36], struct pgsov_err *err)
{
    char inner[33];
    int rc = md5_hex(password, password_len, user, strlen(user), inner);
    if (rc == 0)
        rc = md5_hex(inner, 32, salt, 4, out + 3);
    OPENSSL_cleanse(inner, sizeof inner);
    if (rc < 0)
        return pgsov_fail(err, "MD5 unavailable (OpenSSL)");
    memcpy(out, "md5", 3);
    return 0;
}
