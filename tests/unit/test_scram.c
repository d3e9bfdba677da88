/* test_scram.c — SCRAM-SHA-256(-PLUS) both ways, verifiers, base64, MD5, channel binding.
 * Vectors: RFC 7677 §3 byte for byte, and verifiers made by a real PostgreSQL 15
 * (`SET password_encryption='scram-sha-256'; CREATE ROLE x PASSWORD 'pw';
 *   SELECT rolpassword FROM pg_authid`, run once on a throw-away tests/lib/pgcluster.sh cluster). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "pgsov/scram.h"

/* RFC 7677 §3 */
#define RFC_CLIENT_NONCE "rOprNGfwEbeRWgbNEkqO"
#define RFC_SERVER_NONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_CLIENT_FIRST "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
#define RFC_SERVER_FIRST "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0," \
                         "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
#define RFC_CLIENT_FINAL "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0," \
                         "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
/* StoredKey/ServerKey of "pencil" with the RFC's salt and count, computed independently
 * (Python hashlib/hmac) when this test was written. */
#define RFC_VERIFIER "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$" \
                     "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:" \
                     "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="

/* From PostgreSQL 15.x pg_authid. */
#define PG_X "SCRAM-SHA-256$4096:MCF91VHDbO4m8l5np3ju7Q==$KFKWw+K7ktmMdVsdJqAnYm51ouK4GGR9WK7W4UPvzXI=:Bc7Xie9fUKnBH8vemalQFVwQiuQ3RpjMF4yXY7hQV7Q="
#define PG_Y "SCRAM-SHA-256$4096:M6TU47OO55xqe3pFVnKMuA==$4LaMbVTSthAFlfPinXs7+71VfQpd0R21WbbhU3HEdd4=:iiJvmdA6ePTuFLZFc1W/MeVSpEnLf72RjGVZ540oQBc="
#define PG_Z "SCRAM-SHA-256$4096:oCSQMMWFI71f/Au2mMrPag==$ObFcb3S2cjMvYZReyYiaHZ1Ivn96BE8iKVsAbQd2qTk=:4ruWSjVoRj8LWPQMZQc8dxaDB4yxrpHHXTAzlhZ04R8="

static const unsigned char mock_secret[SCRAM_MOCK_SECRET_LEN] = "0123456789abcdef0123456789abcde";
static const unsigned char cb_a[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
static const unsigned char cb_b[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 11 };

static void expect_msg(const char *got, size_t len, const char *want)
{
    assert_int_equal(len, strlen(want));
    assert_memory_equal(got, want, len);
}

static void test_rfc7677_client(void **state)
{
    struct pgsov_err err;
    struct scram_client_params p = { .password = "pencil", .password_len = 6, .user = "user",
                                     .mechanism = SCRAM_MECHANISM_SHA256,
                                     .nonce_override = RFC_CLIENT_NONCE };
    struct scram_client *c = scram_client_begin(&p, &err);
    assert_non_null(c);
    const char *out;
    size_t len;
    assert_int_equal(scram_client_first(c, &out, &len, &err), 0);
    expect_msg(out, len, RFC_CLIENT_FIRST);
    assert_int_equal(scram_client_handle_server_first(c, RFC_SERVER_FIRST,
                                                      strlen(RFC_SERVER_FIRST), &out, &len, &err), 0);
    expect_msg(out, len, RFC_CLIENT_FINAL);
    assert_int_equal(scram_client_handle_server_final(c, RFC_SERVER_FINAL,
                                                      strlen(RFC_SERVER_FINAL), &err), 0);
    scram_client_free(c);
}

/* The key cache: a hit skips PBKDF2 (shown by a wrong password still producing the RFC's
 * proof from cached keys), a different salt or count is a miss that refills it. */
static void test_client_key_cache(void **state)
{
    static const struct { const char *password, *server_first, *want_final; bool hit; } steps[] = {
        { "pencil", RFC_SERVER_FIRST, RFC_CLIENT_FINAL, false },   /* fills */
        { "wrong",  RFC_SERVER_FIRST, RFC_CLIENT_FINAL, true  },   /* from the cache */
        { "pencil", "r=rOprNGfwEbeRWgbNEkqOx,s=QUJD,i=4096", NULL, false },  /* other salt */
        { "pencil", "r=rOprNGfwEbeRWgbNEkqOx,s=QUJD,i=4097", NULL, false },  /* other count */
        { "wrong",  RFC_SERVER_FIRST, NULL, false },               /* miss: wrong password */
    };
    struct scram_key_cache cache;
    memset(&cache, 0, sizeof cache);
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        struct pgsov_err err;
        struct scram_client_params p = { .password = steps[i].password,
                                         .password_len = strlen(steps[i].password),
                                         .user = "user", .nonce_override = RFC_CLIENT_NONCE,
                                         .cache = &cache };
        struct scram_client *c = scram_client_begin(&p, &err);
        const char *out;
        size_t len;
        assert_int_equal(scram_client_first(c, &out, &len, &err), 0);
        assert_int_equal(scram_client_handle_server_first(c, steps[i].server_first,
                                                          strlen(steps[i].server_first), &out,
                                                          &len, &err), 0);
        if (steps[i].want_final)
            expect_msg(out, len, steps[i].want_final);
        else
            assert_false(len == strlen(RFC_CLIENT_FINAL) &&
                         memcmp(out, RFC_CLIENT_FINAL, len) == 0);
        assert_true(cache.valid);
        assert_int_equal(cache.iterations, i == 3 ? 4097 : 4096);
        scram_client_free(c);
    }
}

static void test_rfc7677_server(void **state)
{
    struct pgsov_err err;
    static const unsigned char salt[] = { 0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e,
                                          0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81 };
    struct scram_verifier v;
    char text[256];
    assert_int_equal(scram_verifier_make("pencil", 6, 4096, salt, sizeof salt, &v, &err), 0);
    assert_int_equal(scram_verifier_format(&v, text, sizeof text, &err), 0);
    assert_string_equal(text, RFC_VERIFIER);

    struct scram_server_params p = { .verifier = &v, .user = "user", .mock_secret = mock_secret,
                                     .nonce_override = RFC_SERVER_NONCE };
    struct scram_server *s = scram_server_begin(&p, SCRAM_MECH, &err);
    assert_non_null(s);
    const char *out;
    size_t len;
    assert_int_equal(scram_server_handle_client_first(s, RFC_CLIENT_FIRST,
                                                      strlen(RFC_CLIENT_FIRST), &out, &len, &err), 0);
    expect_msg(out, len, RFC_SERVER_FIRST);
    assert_int_equal(scram_server_handle_client_final(s, RFC_CLIENT_FINAL,
                                                      strlen(RFC_CLIENT_FINAL), &out, &len, &err), 0);
    expect_msg(out, len, RFC_SERVER_FINAL);
    scram_server_free(s);
}

/* Runs a whole exchange in memory. Returns 0 when both sides succeed, 1 when the server
 * refused, 2 when the client refused the server. */
struct exchange {
    const struct scram_verifier *verifier;   /* NULL: unknown user */
    const char *password;
    enum scram_mechanism mech;
    const unsigned char *client_cb, *server_cb;
    const char *client_user;
};

static int run_exchange(const struct exchange *x)
{
    struct pgsov_err err;
    struct scram_client_params cp = { .password = x->password, .password_len = strlen(x->password),
                                      .user = x->client_user, .mechanism = x->mech,
                                      .cb_data = x->client_cb, .cb_len = x->client_cb ? 32 : 0 };
    struct scram_server_params sp = { .verifier = x->verifier, .user = "alice",
                                      .mock_secret = mock_secret, .cb_data = x->server_cb,
                                      .cb_len = x->server_cb ? 32 : 0 };
    struct scram_client *c = scram_client_begin(&cp, &err);
    assert_non_null(c);
    struct scram_server *s = scram_server_begin(&sp, scram_mechanism_name(x->mech), &err);
    if (!s) {
        scram_client_free(c);
        return 1;
    }
    const char *m1, *m2, *m3, *m4;
    size_t l1, l2, l3, l4;
    int rc = 0;
    assert_int_equal(scram_client_first(c, &m1, &l1, &err), 0);
    if (scram_server_handle_client_first(s, m1, l1, &m2, &l2, &err) < 0)
        rc = 1;
    else if (scram_client_handle_server_first(c, m2, l2, &m3, &l3, &err) < 0)
        rc = 2;
    else if (scram_server_handle_client_final(s, m3, l3, &m4, &l4, &err) < 0)
        rc = 1;
    else if (scram_client_handle_server_final(c, m4, l4, &err) < 0)
        rc = 2;
    scram_client_free(c);
    scram_server_free(s);
    return rc;
}

static void test_pg15_verifiers(void **state)
{
    static const struct { const char *verifier, *password; int want; } cases[] = {
        { PG_X, "pw",                            0 },
        { PG_X, "pw ",                           1 },
        { PG_X, "PW",                            1 },
        { PG_X, "",                              1 },
        { PG_Y, "caf\xc3\xa9",                   0 },  /* UTF-8, already NFKC: raw bytes match */
        { PG_Y, "cafe",                          1 },
        { PG_Z, "correct horse battery staple",  0 },
        { PG_Z, "correct horse battery stapl",   1 },
        { RFC_VERIFIER, "pencil",                0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct pgsov_err err;
        struct scram_verifier v;
        char again[256];
        assert_int_equal(scram_verifier_parse(cases[i].verifier, &v, &err), 0);
        assert_int_equal(scram_verifier_format(&v, again, sizeof again, &err), 0);
        assert_string_equal(again, cases[i].verifier);
        for (int plus = 0; plus < 2; plus++) {
            struct exchange x = { .verifier = &v, .password = cases[i].password,
                                  .mech = plus ? SCRAM_MECHANISM_SHA256_PLUS : SCRAM_MECHANISM_SHA256,
                                  .client_cb = plus ? cb_a : NULL, .server_cb = plus ? cb_a : NULL };
            if (run_exchange(&x) != cases[i].want)
                fail_msg("case %zu (plus=%d): want %d", i, plus, cases[i].want);
        }
    }
}

static void test_channel_binding(void **state)
{
    struct pgsov_err err;
    struct scram_verifier v;
    assert_int_equal(scram_verifier_parse(PG_X, &v, &err), 0);
    static const struct {
        enum scram_mechanism mech;
        const unsigned char *client_cb, *server_cb;
        int want;
        const char *what;
    } cases[] = {
        { SCRAM_MECHANISM_SHA256,      NULL, NULL, 0, "no TLS: gs2 n" },
        { SCRAM_MECHANISM_SHA256,      NULL, cb_a, 0, "client cannot bind: gs2 n, server offered -PLUS" },
        { SCRAM_MECHANISM_SHA256,      cb_a, NULL, 0, "client could bind, server cannot: gs2 y" },
        { SCRAM_MECHANISM_SHA256,      cb_a, cb_a, 1, "downgrade: -PLUS stripped from the list, gs2 y" },
        { SCRAM_MECHANISM_SHA256_PLUS, cb_a, cb_a, 0, "-PLUS, same certificate" },
        { SCRAM_MECHANISM_SHA256_PLUS, cb_a, cb_b, 1, "-PLUS, interceptor's certificate" },
        { SCRAM_MECHANISM_SHA256_PLUS, cb_a, NULL, 1, "-PLUS chosen but server has no TLS" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct exchange x = { .verifier = &v, .password = "pw", .mech = cases[i].mech,
                              .client_cb = cases[i].client_cb, .server_cb = cases[i].server_cb };
        if (run_exchange(&x) != cases[i].want)
            fail_msg("case %zu (%s): want %d", i, cases[i].what, cases[i].want);
    }
}

/* The SCRAM user name is ignored and may need escaping: the exchange still works. */
static void test_client_user_names(void **state)
{
    struct pgsov_err err;
    struct scram_verifier v;
    assert_int_equal(scram_verifier_parse(PG_X, &v, &err), 0);
    static const char *const users[] = { NULL, "", "user", "a,b=c", "=2C" };
    for (size_t i = 0; i < sizeof users / sizeof users[0]; i++) {
        struct exchange x = { .verifier = &v, .password = "pw", .client_user = users[i] };
        assert_int_equal(run_exchange(&x), 0);
    }
    struct scram_client_params p = { .password = "x", .password_len = 1, .user = "a,b=c",
                                     .nonce_override = "N" };
    struct scram_client *c = scram_client_begin(&p, &err);
    const char *out;
    size_t len;
    assert_int_equal(scram_client_first(c, &out, &len, &err), 0);
    expect_msg(out, len, "n,,n=a=2Cb=3Dc,r=N");
    scram_client_free(c);
}

static void test_mock_user(void **state)
{
    struct pgsov_err err;
    struct exchange x = { .verifier = NULL, .password = "anything" };
    assert_int_equal(run_exchange(&x), 1);

    /* The fake salt is stable per user (like a real one) and differs between users. */
    static const struct { const char *user; } users[] = { { "ghost" }, { "ghost" }, { "phantom" } };
    char first[3][256];
    for (size_t i = 0; i < 3; i++) {
        struct scram_server_params p = { .user = users[i].user, .mock_secret = mock_secret,
                                         .nonce_override = "S" };
        struct scram_server *s = scram_server_begin(&p, SCRAM_MECH, &err);
        assert_non_null(s);
        const char *out;
        size_t len;
        assert_int_equal(scram_server_handle_client_first(s, "n,,n=,r=C", 9, &out, &len, &err), 0);
        assert_true(len < sizeof first[i]);
        memcpy(first[i], out, len);
        first[i][len] = '\0';
        assert_non_null(strstr(first[i], ",i=4096"));
        /* A well-formed final message with some proof still fails. */
        const char *final = "c=biws,r=CS,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_int_equal(scram_server_handle_client_final(s, final, strlen(final), &out, &len,
                                                          &err), -1);
        scram_server_free(s);
    }
    assert_string_equal(first[0], first[1]);
    assert_string_not_equal(first[0], first[2]);
    /* Without the mock secret the server refuses to start rather than run a guessable mock. */
    struct scram_server_params bad = { .user = "ghost" };
    assert_null(scram_server_begin(&bad, SCRAM_MECH, &err));
}

struct server_case {
    const char *mech;
    bool server_cb;
    const char *msg;
    size_t len;          /* 0: strlen(msg) */
    int want;
    const char *what;
};

static void test_server_client_first(void **state)
{
    static char longmsg[SCRAM_MAX_MESSAGE + 16];
    memset(longmsg, 'x', sizeof longmsg - 1);
    memcpy(longmsg, "n,,n=,r=", 8);
    static const struct server_case cases[] = {
        { SCRAM_MECH,      false, "n,,n=,r=abc",                  0,  0, "minimal" },
        { SCRAM_MECH,      false, "n,,n=user,r=abc,x=ext",        0,  0, "optional extension ignored" },
        { SCRAM_MECH,      false, "y,,n=,r=abc",                  0,  0, "y without TLS" },
        { SCRAM_MECH_PLUS, true,  "p=tls-server-end-point,,n=,r=abc", 0, 0, "p" },
        { SCRAM_MECH,      false, "",                             0, -1, "empty" },
        { SCRAM_MECH,      false, "n,,r=abc",                     0, -1, "missing n=" },
        { SCRAM_MECH,      false, "n,,n=",                        0, -1, "missing r=" },
        { SCRAM_MECH,      false, "n,,n=,r=",                     0, -1, "empty nonce" },
        { SCRAM_MECH,      false, "n,,r=abc,n=",                  0, -1, "reordered" },
        { SCRAM_MECH,      false, "n,,n=,r=a\x01" "b",            0, -1, "control char in nonce" },
        { SCRAM_MECH,      false, "n,,n=,r=a b",                  0, -1, "space in nonce" },
        { SCRAM_MECH,      false, "n,,n=,r=ab\0c",               12, -1, "embedded NUL" },
        { SCRAM_MECH,      false, "n,a=admin,n=,r=abc",           0, -1, "authzid" },
        { SCRAM_MECH,      false, "n,,m=x,n=,r=abc",              0, -1, "mandatory extension" },
        { SCRAM_MECH,      false, "x,,n=,r=abc",                  0, -1, "bad gs2 flag" },
        { SCRAM_MECH,      false, "n,n=,r=abc",                   0, -1, "gs2 header cut short" },
        { SCRAM_MECH,      false, "nn,,n=,r=abc",                 0, -1, "gs2 flag too long" },
        { SCRAM_MECH,      false, "n,,n=,r=abc,",                 0, -1, "trailing comma" },
        { SCRAM_MECH,      false, "n,,n=,r=abc,1=x",              0, -1, "bad extension name" },
        { SCRAM_MECH,      true,  "y,,n=,r=abc",                  0, -1, "downgrade: y while -PLUS offered" },
        { SCRAM_MECH,      true,  "p=tls-server-end-point,,n=,r=abc", 0, -1, "p with non-PLUS mechanism" },
        { SCRAM_MECH_PLUS, true,  "n,,n=,r=abc",                  0, -1, "PLUS with n" },
        { SCRAM_MECH_PLUS, true,  "y,,n=,r=abc",                  0, -1, "PLUS with y" },
        { SCRAM_MECH_PLUS, true,  "p=tls-unique,,n=,r=abc",       0, -1, "unsupported binding type" },
        { SCRAM_MECH_PLUS, true,  "p=,,n=,r=abc",                 0, -1, "empty binding type" },
        { SCRAM_MECH,      false, longmsg,                        0, -1, "over-long" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct pgsov_err err;
        struct scram_verifier v;
        assert_int_equal(scram_verifier_parse(PG_X, &v, &err), 0);
        struct scram_server_params p = { .verifier = &v, .user = "u", .mock_secret = mock_secret,
                                         .cb_data = cases[i].server_cb ? cb_a : NULL,
                                         .cb_len = cases[i].server_cb ? 32 : 0 };
        struct scram_server *s = scram_server_begin(&p, cases[i].mech, &err);
        assert_non_null(s);
        const char *out;
        size_t len;
        size_t mlen = cases[i].len ? cases[i].len : strlen(cases[i].msg);
        int rc = scram_server_handle_client_first(s, cases[i].msg, mlen, &out, &len, &err);
        if (rc != cases[i].want)
            fail_msg("case %zu (%s): got %d want %d (%s)", i, cases[i].what, rc, cases[i].want,
                     rc ? err.msg : "");
        if (rc < 0)  /* a failed exchange stays failed */
            assert_int_equal(scram_server_handle_client_final(s, "c=biws,r=abcS,p=", 16, &out,
                                                              &len, &err), -1);
        scram_server_free(s);
    }
}

/* Client-final messages after client-first "n,,n=,r=C" and server nonce "S" (so r=CS). The
 * valid proof for PG_X/"pw" is computed by the real client in test_pg15_verifiers; here every
 * case must fail, and the baseline shows that the structure alone is not what fails. */
static void test_server_client_final(void **state)
{
    static char longmsg[SCRAM_MAX_MESSAGE + 16];
    memset(longmsg, 'A', sizeof longmsg - 1);
    memcpy(longmsg, "c=biws,r=CS,p=", 14);
#define PROOF "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    static const struct { const char *msg; size_t len; const char *what; } cases[] = {
        { "c=biws,r=CS,p=" PROOF,                0, "wrong proof (baseline)" },
        { "c=biws,r=CS,x=1,p=" PROOF,            0, "extension, wrong proof" },
        { "c=biws,r=CX,p=" PROOF,                0, "wrong nonce" },
        { "c=biws,r=C,p=" PROOF,                 0, "client nonce only" },
        { "c=biws,r=CSS,p=" PROOF,               0, "nonce too long" },
        { "c=eSws,r=CS,p=" PROOF,                0, "channel binding y,, after n,," },
        { "c=bixx,r=CS,p=" PROOF,                0, "channel binding garbage" },
        { "c=biw,r=CS,p=" PROOF,                 0, "bad base64 in c=" },
        { "c=,r=CS,p=" PROOF,                    0, "empty c=" },
        { "r=CS,c=biws,p=" PROOF,                0, "reordered" },
        { "c=biws,p=" PROOF ",r=CS",             0, "proof not last" },
        { "c=biws,r=CS",                         0, "missing proof" },
        { "c=biws,r=CS,p=",                      0, "empty proof" },
        { "c=biws,r=CS,p=dHzbZapW",              0, "short proof" },
        { "c=biws,r=CS,p=" PROOF "AAAA",         0, "long proof" },
        { "c=biws,r=CS,p=!HzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", 0, "bad base64 in p=" },
        { "c=biws,r=CS,p=" PROOF ",x=1",         0, "garbage after proof" },
        { "c=biws,r=CS,p=" PROOF ",",            0, "trailing comma" },
        { "c=biws,r=C\0S,p=" PROOF,             59, "embedded NUL" },
        { "",                                    0, "empty" },
        { longmsg,                               0, "over-long" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct pgsov_err err;
        struct scram_verifier v;
        assert_int_equal(scram_verifier_parse(PG_X, &v, &err), 0);
        struct scram_server_params p = { .verifier = &v, .user = "u", .mock_secret = mock_secret,
                                         .nonce_override = "S" };
        struct scram_server *s = scram_server_begin(&p, SCRAM_MECH, &err);
        const char *out;
        size_t len;
        assert_int_equal(scram_server_handle_client_first(s, "n,,n=,r=C", 9, &out, &len, &err), 0);
        size_t mlen = cases[i].len ? cases[i].len : strlen(cases[i].msg);
        if (scram_server_handle_client_final(s, cases[i].msg, mlen, &out, &len, &err) != -1)
            fail_msg("case %zu (%s) passed", i, cases[i].what);
        /* The reason is for the proxy's log; it never carries the verifier. */
        assert_null(strstr(err.msg, "KFKWw"));
        scram_server_free(s);
    }
}

static void test_state_order(void **state)
{
    struct pgsov_err err;
    struct scram_verifier v;
    assert_int_equal(scram_verifier_parse(PG_X, &v, &err), 0);
    struct scram_server_params p = { .verifier = &v, .user = "u", .mock_secret = mock_secret };
    struct scram_server *s = scram_server_begin(&p, SCRAM_MECH, &err);
    const char *out;
    size_t len;
    assert_int_equal(scram_server_handle_client_final(s, "c=biws,r=x,p=" PROOF,
                                                      13 + strlen(PROOF), &out, &len, &err), -1);
    assert_int_equal(scram_server_handle_client_first(s, "n,,n=,r=C", 9, &out, &len, &err), -1);
    scram_server_free(s);

    assert_null(scram_server_begin(&p, "SCRAM-SHA-1", &err));
    assert_null(scram_server_begin(&p, SCRAM_MECH_PLUS, &err));  /* -PLUS without TLS data */

    struct scram_client_params cp = { .password = "pw", .password_len = 2 };
    struct scram_client *c = scram_client_begin(&cp, &err);
    assert_int_equal(scram_client_handle_server_final(c, RFC_SERVER_FINAL,
                                                      strlen(RFC_SERVER_FINAL), &err), -1);
    scram_client_free(c);
    cp.mechanism = SCRAM_MECHANISM_SHA256_PLUS;
    assert_null(scram_client_begin(&cp, &err));
}

/* What a client accepts from an upstream's server-first-message (client nonce "C"). */
static void test_client_server_first(void **state)
{
    static const struct { const char *msg; size_t len; int want; const char *what; } cases[] = {
        { "r=CS,s=QUJD,i=1",              0,  0, "minimum iterations" },
        { "r=CS,s=QUJD,i=4096",           0,  0, "default" },
        { "r=C,s=QUJD,i=4096",            0, -1, "nonce not extended" },
        { "r=XS,s=QUJD,i=4096",           0, -1, "nonce not ours" },
        { "r=,s=QUJD,i=4096",             0, -1, "empty nonce" },
        { "r=C S,s=QUJD,i=4096",          0, -1, "space in nonce" },
        { "r=CS,s=,i=4096",               0, -1, "empty salt" },
        { "r=CS,s=QUJ,i=4096",            0, -1, "bad base64 salt" },
        { "r=CS,s=QU=D,i=4096",           0, -1, "padding inside salt" },
        { "r=CS,s=QUJD,i=0",              0, -1, "zero iterations" },
        { "r=CS,s=QUJD,i=10000001",       0, -1, "too many iterations" },
        { "r=CS,s=QUJD,i=-1",             0, -1, "negative iterations" },
        { "r=CS,s=QUJD,i=4096x",          0, -1, "iterations garbage" },
        { "r=CS,s=QUJD,i=",               0, -1, "empty iterations" },
        { "r=CS,s=QUJD",                  0, -1, "missing iterations" },
        { "s=QUJD,r=CS,i=4096",           0, -1, "reordered" },
        { "r=CS,s=QUJD,i=4096,x=1",       0, -1, "trailing attribute" },
        { "m=x,r=CS,s=QUJD,i=4096",       0, -1, "mandatory extension" },
        { "r=CS,s=QUJD,i=40\0" "96",     19, -1, "embedded NUL" },
        { "e=other-error",                0, -1, "server error instead" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct pgsov_err err;
        struct scram_client_params p = { .password = "pw", .password_len = 2,
                                         .nonce_override = "C" };
        struct scram_client *c = scram_client_begin(&p, &err);
        const char *out;
        size_t len;
        assert_int_equal(scram_client_first(c, &out, &len, &err), 0);
        size_t mlen = cases[i].len ? cases[i].len : strlen(cases[i].msg);
        int rc = scram_client_handle_server_first(c, cases[i].msg, mlen, &out, &len, &err);
        if (rc != cases[i].want)
            fail_msg("case %zu (%s): got %d want %d", i, cases[i].what, rc, cases[i].want);
        scram_client_free(c);
    }
}

/* server-final-message checks, on the RFC exchange. */
static void test_client_server_final(void **state)
{
    static const struct { const char *msg; int want; const char *what; } cases[] = {
        { RFC_SERVER_FINAL,                                       0, "right signature" },
        { "v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",      -1, "impostor: wrong signature" },
        { "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G5=",      -1, "non-canonical base64" },
        { "v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",      -1, "impostor: zeros" },
        { RFC_SERVER_FINAL ",x=1",                               -1, "garbage after v=" },
        { "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4",       -1, "bad base64" },
        { "v=",                                                  -1, "empty" },
        { "e=invalid-proof",                                     -1, "server error" },
        { "",                                                    -1, "nothing" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct pgsov_err err;
        struct scram_client_params p = { .password = "pencil", .password_len = 6, .user = "user",
                                         .nonce_override = RFC_CLIENT_NONCE };
        struct scram_client *c = scram_client_begin(&p, &err);
        const char *out;
        size_t len;
        assert_int_equal(scram_client_first(c, &out, &len, &err), 0);
        assert_int_equal(scram_client_handle_server_first(c, RFC_SERVER_FIRST,
                                                          strlen(RFC_SERVER_FIRST), &out, &len,
                                                          &err), 0);
        int rc = scram_client_handle_server_final(c, cases[i].msg, strlen(cases[i].msg), &err);
        if (rc != cases[i].want)
            fail_msg("case %zu (%s): got %d want %d", i, cases[i].what, rc, cases[i].want);
        if (strcmp(cases[i].msg, "e=invalid-proof") == 0)
            assert_non_null(strstr(err.msg, "invalid-proof"));
        scram_client_free(c);
    }
}

static void test_select_mechanism(void **state)
{
#define L(s) s, sizeof s   /* list literal including its final NUL */
    static const struct {
        const char *list;
        size_t len;
        bool have_cb, require_cb;
        int want;
        enum scram_mechanism mech;
    } cases[] = {
        { L("SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0"), true,  false,  0, SCRAM_MECHANISM_SHA256_PLUS },
        { L("SCRAM-SHA-256\0SCRAM-SHA-256-PLUS\0"), true,  false,  0, SCRAM_MECHANISM_SHA256_PLUS },
        { L("SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0"), false, false,  0, SCRAM_MECHANISM_SHA256 },
        { L("SCRAM-SHA-256\0"),                     true,  false,  0, SCRAM_MECHANISM_SHA256 },
        { L("SCRAM-SHA-256\0"),                     true,  true,  -1, 0 },
        { L("SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0"), false, true,  -1, 0 },
        { L("SCRAM-SHA-256-PLUS\0"),                false, false, -1, 0 },
        { L("OTHER\0SCRAM-SHA-256\0"),              false, false,  0, SCRAM_MECHANISM_SHA256 },
        { L("SCRAM-SHA-1\0"),                       false, false, -1, 0 },
        { L(""),                                    false, false, -1, 0 },
        { "SCRAM-SHA-256", 13,                      false, false, -1, 0 },  /* unterminated */
        { "SCRAM-SHA-256\0", 14,                    false, false, -1, 0 },  /* no end marker */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct pgsov_err err;
        enum scram_mechanism m = 99;
        int rc = scram_select_mechanism(cases[i].list, cases[i].len, cases[i].have_cb,
                                        cases[i].require_cb, &m, &err);
        if (rc != cases[i].want)
            fail_msg("case %zu: got %d want %d", i, rc, cases[i].want);
        if (rc == 0)
            assert_int_equal(m, cases[i].mech);
    }
}

static void test_md5(void **state)
{
    /* app_md5 / md5-secret: PostgreSQL stored "md50a2b6a39d03d795b7d1eace799b9838e"; the
     * server checks md5hex(that hex + salt). Expected value computed with Python hashlib. */
    struct pgsov_err err;
    char out[36];
    static const unsigned char salt[4] = { 1, 2, 3, 4 };
    assert_int_equal(scram_md5_response("app_md5", "md5-secret", 10, salt, out, &err), 0);
    assert_string_equal(out, "md55be5fda7590a1d56ede1b20fb4923813");
    static const unsigned char salt2[4] = { 1, 2, 3, 5 };
    assert_int_equal(scram_md5_response("app_md5", "md5-secret", 10, salt2, out, &err), 0);
    assert_string_not_equal(out, "md55be5fda7590a1d56ede1b20fb4923813");
}

static void test_base64(void **state)
{
    static const struct { const char *in; int want; const char *bytes; } cases[] = {
        { "",        0, "" },
        { "QQ==",    1, "A" },
        { "QUI=",    2, "AB" },
        { "QUJD",    3, "ABC" },
        { "QUJDRA==", 4, "ABCD" },
        { "QQ=",    -1, NULL },
        { "Q===",   -1, NULL },
        { "QQ=A",   -1, NULL },
        { "=QQA",   -1, NULL },
        { " QQ=",   -1, NULL },
        { "QQ==\n", -1, NULL },
        { "QU\nJD", -1, NULL },
        { "QU-D",   -1, NULL },   /* URL-safe alphabet is not SCRAM's */
        { "@@@@",   -1, NULL },
        { "QUJDRA==QQ==", -1, NULL },
        { "QR==",   -1, NULL },   /* non-canonical: leftover bits set */
        { "QUJ=",   -1, NULL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char out[16];
        int n = scram_b64_decode(cases[i].in, strlen(cases[i].in), out, sizeof out);
        if (n != cases[i].want)
            fail_msg("case %zu (\"%s\"): got %d want %d", i, cases[i].in, n, cases[i].want);
        if (n > 0)
            assert_memory_equal(out, cases[i].bytes, (size_t)n);
    }
    unsigned char small[2];
    assert_int_equal(scram_b64_decode("QUJD", 4, small, sizeof small), -1);
    char enc[8];
    assert_int_equal(scram_b64_encode((const unsigned char *)"ABCD", 4, enc, sizeof enc), -1);
    char enc2[9];
    assert_int_equal(scram_b64_encode((const unsigned char *)"ABCD", 4, enc2, sizeof enc2), 8);
    assert_string_equal(enc2, "QUJDRA==");
}

static void test_verifier_parse_errors(void **state)
{
#define K "KFKWw+K7ktmMdVsdJqAnYm51ouK4GGR9WK7W4UPvzXI="
    static const struct { const char *text; int want; } cases[] = {
        { "SCRAM-SHA-256$4096:MCF91VHDbO4m8l5np3ju7Q==$" K ":" K,       0 },
        { "SCRAM-SHA-256$1:QQ==$" K ":" K,                              0 },
        { "SCRAM-SHA-256$10000000:QQ==$" K ":" K,                       0 },
        { "SCRAM-SHA-256$10000001:QQ==$" K ":" K,                      -1 },
        { "SCRAM-SHA-256$0:QQ==$" K ":" K,                             -1 },
        { "SCRAM-SHA-256$:QQ==$" K ":" K,                              -1 },
        { "SCRAM-SHA-256$4096x:QQ==$" K ":" K,                         -1 },
        { "SCRAM-SHA-256$4096:$" K ":" K,                              -1 },
        { "SCRAM-SHA-256$4096:QQ=$" K ":" K,                           -1 },
        { "SCRAM-SHA-256$4096:QQ==$" K,                                -1 },
        { "SCRAM-SHA-256$4096:QQ==$" K ":",                            -1 },
        { "SCRAM-SHA-256$4096:QQ==$" K ":" K "x",                      -1 },
        { "SCRAM-SHA-256$4096:QQ==$QUJD:" K,                           -1 },
        { "SCRAM-SHA-256$4096$QQ==:" K ":" K,                          -1 },
        { "SCRAM-SHA-1$4096:QQ==$" K ":" K,                            -1 },
        { "md50a2b6a39d03d795b7d1eace799b9838e",                       -1 },
        { "",                                                          -1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct pgsov_err err = { { 0 } };
        struct scram_verifier v;
        int rc = scram_verifier_parse(cases[i].text, &v, &err);
        if (rc != cases[i].want)
            fail_msg("case %zu: got %d want %d", i, rc, cases[i].want);
        if (rc < 0) {
            assert_true(err.msg[0] != '\0');
            assert_null(strstr(err.msg, "KFKW"));
            assert_null(strstr(err.msg, "0a2b6a39"));
        }
    }
}

static void test_verifier_make(void **state)
{
    struct pgsov_err err;
    struct scram_verifier a, b, parsed;
    char text[256];
    assert_int_equal(scram_verifier_generate("pw", 2, 4096, &a, &err), 0);
    assert_int_equal(scram_verifier_generate("pw", 2, 4096, &b, &err), 0);
    assert_memory_not_equal(a.salt, b.salt, SCRAM_DEFAULT_SALT_LEN);  /* fresh random salt */
    assert_int_equal(scram_verifier_format(&a, text, sizeof text, &err), 0);
    assert_int_equal(scram_verifier_parse(text, &parsed, &err), 0);
    assert_memory_equal(&parsed, &a, sizeof a);
    struct exchange x = { .verifier = &parsed, .password = "pw" };
    assert_int_equal(run_exchange(&x), 0);
    x.password = "pW";
    assert_int_equal(run_exchange(&x), 1);
    assert_int_equal(scram_verifier_generate("pw", 2, 0, &a, &err), -1);
    assert_int_equal(scram_verifier_generate("pw", 2, SCRAM_MAX_ITERATIONS + 1, &a, &err), -1);
    assert_int_equal(scram_verifier_format(&parsed, text, 20, &err), -1);
}

static X509 *make_cert(EVP_PKEY *key, const EVP_MD *md)
{
    X509 *x = X509_new();
    assert_non_null(x);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"pgsov test", -1,
                               -1, 0);
    X509_set_issuer_name(x, name);
    assert_true(X509_sign(x, key, md) > 0);
    return x;
}

/* Expected: the digest of the DER encoding, computed here without X509_digest. */
static void expect_endpoint(X509 *x, const EVP_MD *want_md)
{
    unsigned char *der = NULL;
    int der_len = i2d_X509(x, &der);
    assert_true(der_len > 0);
    unsigned char want[EVP_MAX_MD_SIZE];
    unsigned int want_len = 0;
    assert_int_equal(EVP_Digest(der, (size_t)der_len, want, &want_len, want_md, NULL), 1);
    OPENSSL_free(der);
    unsigned char got[SCRAM_CB_MAX];
    size_t got_len = 0;
    struct pgsov_err err;
    assert_int_equal(scram_cert_endpoint_hash(x, got, &got_len, &err), 0);
    assert_int_equal(got_len, want_len);
    assert_memory_equal(got, want, want_len);
}

static void test_cert_endpoint_hash(void **state)
{
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    assert_non_null(ec);
    static const struct { const char *sign_with, *want; } cases[] = {
        { "SHA256", "SHA256" },
        { "SHA384", "SHA384" },
        { "SHA512", "SHA512" },
        { "SHA1",   "SHA256" },   /* RFC 5929: SHA-1 is replaced by SHA-256 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        X509 *x = make_cert(ec, EVP_get_digestbyname(cases[i].sign_with));
        expect_endpoint(x, EVP_get_digestbyname(cases[i].want));
        X509_free(x);
    }
    EVP_PKEY_free(ec);

    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_non_null(ed);
    X509 *x = make_cert(ed, NULL);
    unsigned char got[SCRAM_CB_MAX];
    size_t got_len;
    struct pgsov_err err;
    assert_int_equal(scram_cert_endpoint_hash(x, got, &got_len, &err), -1);
    X509_free(x);
    EVP_PKEY_free(ed);
    assert_int_equal(scram_cert_endpoint_hash(NULL, got, &got_len, &err), -1);
}

static void test_user_names(void **state)
{
    static const struct { const char *name; int want; } cases[] = {
        { "app", 0 }, { "app_md5", 0 }, { "Ünïcode", 0 }, { "a.b-c@d", 0 },
        { "", -1 }, { "a b", -1 }, { "a\tb", -1 }, { "a#b", -1 }, { "a\"b", -1 },
        { "certmap", -1 }, { "a\x7f", -1 },
        { "123456789012345678901234567890123456789012345678901234567890123", 0 },
        { "1234567890123456789012345678901234567890123456789012345678901234", -1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct pgsov_err err;
        if (scram_user_name_check(cases[i].name, &err) != cases[i].want)
            fail_msg("case %zu (\"%s\")", i, cases[i].name);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7677_client),
        cmocka_unit_test(test_rfc7677_server),
        cmocka_unit_test(test_client_key_cache),
        cmocka_unit_test(test_pg15_verifiers),
        cmocka_unit_test(test_channel_binding),
        cmocka_unit_test(test_client_user_names),
        cmocka_unit_test(test_mock_user),
        cmocka_unit_test(test_server_client_first),
        cmocka_unit_test(test_server_client_final),
        cmocka_unit_test(test_state_order),
        cmocka_unit_test(test_client_server_first),
        cmocka_unit_test(test_client_server_final),
        cmocka_unit_test(test_select_mechanism),
        cmocka_unit_test(test_md5),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_verifier_parse_errors),
        cmocka_unit_test(test_verifier_make),
        cmocka_unit_test(test_cert_endpoint_hash),
        cmocka_unit_test(test_user_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
