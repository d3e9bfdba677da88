/* test_users.c — the users file (parse, errors with line numbers and no secrets, lookups,
 * certificate mapping, file permissions) and the failure back-off table. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pgsov/users.h"

/* Real PostgreSQL 15 verifier for password "pw" (see test_scram.c). */
#define PG_X "SCRAM-SHA-256$4096:MCF91VHDbO4m8l5np3ju7Q==$KFKWw+K7ktmMdVsdJqAnYm51ouK4GGR9WK7W4UPvzXI=:Bc7Xie9fUKnBH8vemalQFVwQiuQ3RpjMF4yXY7hQV7Q="

static const char good[] =
    "# pgsov users\n"
    "\n"
    "alice   " PG_X "\n"
    "deploy\tcert   # CI\r\n"
    "   local   trust\n"
    "ops     cert\n"
    "certmap \"CI Runner 7\" deploy\n"
    "certmap ops-laptop  ops\n"
    "certmap ops-laptop  deploy\n"
    "Ünïcode cert";

static void test_parse_good(void **state)
{
    struct users *u = NULL;
    struct pgsov_err err;
    if (users_parse(good, strlen(good), "users.txt", &u, &err) < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(users_count(u), 5);
    static const struct { const char *name; int method; unsigned line; } cases[] = {
        { "alice",   USER_SCRAM, 3 },
        { "deploy",  USER_CERT,  4 },
        { "local",   USER_TRUST, 5 },
        { "ops",     USER_CERT,  6 },
        { "Ünïcode", USER_CERT,  10 },
        { "bob",     -1,         0 },
        { "Alice",   -1,         0 },   /* names are case-sensitive, as in PostgreSQL */
        { "certmap", -1,         0 },
        { "",        -1,         0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct user_entry *e = users_find(u, cases[i].name);
        if (cases[i].method < 0) {
            assert_null(e);
            continue;
        }
        assert_non_null(e);
        assert_string_equal(e->name, cases[i].name);
        assert_int_equal(e->method, cases[i].method);
        assert_int_equal(e->line, cases[i].line);
    }
    const struct user_entry *alice = users_find(u, "alice");
    assert_int_equal(alice->verifier.iterations, 4096);
    assert_int_equal(alice->verifier.salt_len, 16);
    char too_long[100];
    memset(too_long, 'a', sizeof too_long - 1);
    too_long[sizeof too_long - 1] = '\0';
    assert_null(users_find(u, too_long));
    users_free(u);

    /* Empty and comment-only files are valid and hold nobody. */
    assert_int_equal(users_parse("", 0, "e", &u, &err), 0);
    assert_int_equal(users_count(u), 0);
    assert_null(users_find(u, "alice"));
    users_free(u);
}

static void test_cert_allows(void **state)
{
    struct users *u = NULL;
    struct pgsov_err err;
    assert_int_equal(users_parse(good, strlen(good), "users.txt", &u, &err), 0);
    static const struct { const char *cn; size_t len; const char *user; bool want; } cases[] = {
        { "deploy",      0,  "deploy", true  },   /* CN equals the name */
        { "CI Runner 7", 0,  "deploy", true  },   /* certmap */
        { "ops-laptop",  0,  "ops",    true  },
        { "ops-laptop",  0,  "deploy", true  },   /* one certificate, two users */
        { "CI Runner 7", 0,  "ops",    false },   /* mapped to someone else */
        { "ci runner 7", 0,  "deploy", false },   /* exact match only */
        { "alice",       0,  "alice",  false },   /* alice is a password user */
        { "local",       0,  "local",  false },   /* trust is not cert */
        { "nobody",      0,  "nobody", false },
        { "deploy\0x",   8,  "deploy", false },   /* embedded NUL in a CN */
        { "",            0,  "deploy", false },
        { "deployx",     6,  "deploy", true  },   /* length counts, not the NUL */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].cn);
        if (users_cert_allows(u, cases[i].cn, len, cases[i].user) != cases[i].want)
            fail_msg("case %zu (%s -> %s)", i, cases[i].cn, cases[i].user);
    }
    users_free(u);
}

static void test_parse_errors(void **state)
{
    static char long_line[5000];
    memset(long_line, 'a', sizeof long_line - 1);
    static const struct { const char *text; size_t len; const char *want; } cases[] = {
        { "alice",                              0, "f:1: user \"alice\" has no method" },
        { "# c\n\nalice hunter2",               0, "f:3: user \"alice\": unknown method" },
        { "alice " PG_X " extra",               0, "f:1: unexpected text after the method" },
        { "alice SCRAM-SHA-256$4096:QQ==$c2VjcmV0:c2VjcmV0", 0, "f:1: user \"alice\": malformed SCRAM verifier" },
        { "alice SCRAM-SHA-256$0:QQ==$c2VjcmV0:c2VjcmV0",    0, "f:1: user \"alice\": malformed SCRAM verifier: iteration" },
        { "alice md50a2b6a39d03d795b7d1eace799b9838e", 0, "f:1: user \"alice\": MD5 verifiers are not accepted" },
        { "a trust\nb cert\na cert",            0, "f:3: user \"a\" is already defined on line 1" },
        { "a trust\ncertmap CN a",              0, "f:2: certmap names user \"a\", which is not declared 'cert'" },
        { "certmap CN ghost",                   0, "f:1: certmap names user \"ghost\"" },
        { "a cert\ncertmap CN a\ncertmap CN a", 0, "f:3: same certmap as line 2" },
        { "certmap CN",                         0, "f:1: expected: certmap <certificate CN> <user>" },
        { "certmap \"\" a",                     0, "f:1: certificate CN must be" },
        { "a cert\ncertmap \"CN a",             0, "f:2: unterminated quote" },
        { "certmap \"CN\"x a",                  0, "f:1: text right after a closing quote" },
        { "a b c d e",                          0, "f:1: too many fields" },
        { "a\"b trust",                         0, "f:1: user name may not contain" },
        { "\"a b\" trust",                      0, "f:1: user name may not contain" },
        { "\"\" trust",                         0, "f:1: user name is empty" },
        { "x123456789012345678901234567890123456789012345678901234567890123 trust", 0,
          "f:1: user name longer than 63 bytes" },
        { "a trust\nb tr\0st",                 13, "f:2: NUL byte in line" },
        { long_line,                            0, "f:1: line longer than 4096 bytes" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct users *u = (struct users *)&u;  /* must stay untouched on error */
        struct users *before = u;
        struct pgsov_err err = { { 0 } };
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].text);
        if (users_parse(cases[i].text, len, "f", &u, &err) != -1)
            fail_msg("case %zu parsed", i);
        assert_ptr_equal(u, before);
        if (strncmp(err.msg, cases[i].want, strlen(cases[i].want)) != 0)
            fail_msg("case %zu: got \"%s\"\nwant prefix \"%s\"", i, err.msg, cases[i].want);
        /* Secrets are never echoed. */
        assert_null(strstr(err.msg, "hunter2"));
        assert_null(strstr(err.msg, "c2VjcmV0"));
        assert_null(strstr(err.msg, "0a2b6a39"));
    }
}

static void test_load_file(void **state)
{
    char dir[] = "/tmp/pgsov-users-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/users", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(good, f);
    fclose(f);

    static const struct { mode_t mode; int want; const char *msg; } cases[] = {
        { 0600, 0,  NULL },
        { 0640, 0,  NULL },
        { 0644, -1, "accessible to other users (mode 0644)" },
        { 0602, -1, "chmod o-rwx" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct users *u = NULL;
        struct pgsov_err err;
        assert_int_equal(chmod(path, cases[i].mode), 0);
        int rc = users_load(path, &u, &err);
        if (rc != cases[i].want)
            fail_msg("mode %o: got %d (%s)", (unsigned)cases[i].mode, rc, rc ? err.msg : "");
        if (rc == 0) {
            assert_int_equal(users_count(u), 5);
            users_free(u);
        } else {
            assert_non_null(strstr(err.msg, cases[i].msg));
        }
    }
    struct users *u = NULL;
    struct pgsov_err err;
    assert_int_equal(users_load(dir, &u, &err), -1);            /* a directory */
    unlink(path);
    assert_int_equal(users_load(path, &u, &err), -1);           /* missing */
    assert_non_null(strstr(err.msg, "cannot open users file"));
    rmdir(dir);
}

static void key_of(unsigned n, unsigned char key[BACKOFF_KEY_LEN])
{
    memset(key, 0, BACKOFF_KEY_LEN);
    memcpy(key, &n, sizeof n);
}

static void test_backoff_sequence(void **state)
{
    const struct backoff_policy p = { .free_failures = 3, .base_ms = 250, .cap_ms = 2000,
                                      .window_ms = 60000 };
    struct pgsov_err err;
    struct backoff *b = backoff_new(64, &p, 42, &err);
    assert_non_null(b);
    unsigned char k[BACKOFF_KEY_LEN], other[BACKOFF_KEY_LEN];
    key_of(1, k);
    key_of(2, other);
    /* step: at time t, a failure (or a success) from k; want = returned delay,
     * then = backoff_delay afterwards. */
    static const struct { uint64_t t; char what; unsigned want, then; } steps[] = {
        { 1000,  'f', 0,    0    },
        { 2000,  'f', 0,    0    },
        { 3000,  'f', 0,    0    },
        { 4000,  'f', 250,  250  },
        { 5000,  'f', 500,  500  },
        { 6000,  'f', 1000, 1000 },
        { 7000,  'f', 2000, 2000 },   /* cap */
        { 8000,  'f', 2000, 2000 },
        { 67999, 'd', 0,    2000 },   /* 59.999 s quiet: still counted */
        { 68000, 'd', 0,    0    },   /* 60 s quiet: forgotten */
        { 68001, 'f', 0,    0    },   /* starts over */
        { 68002, 'f', 0,    0    },
        { 68003, 'f', 0,    0    },
        { 68004, 'f', 250,  250  },
        { 68005, 's', 0,    0    },   /* success forgets */
        { 68006, 'f', 0,    0    },
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        unsigned got = 0;
        if (steps[i].what == 'f')
            got = backoff_failure(b, k, steps[i].t);
        else if (steps[i].what == 's')
            backoff_success(b, k);
        if (got != steps[i].want)
            fail_msg("step %zu: delay %u want %u", i, got, steps[i].want);
        unsigned then = backoff_delay(b, k, steps[i].t);
        if (then != steps[i].then)
            fail_msg("step %zu: then %u want %u", i, then, steps[i].then);
        assert_int_equal(backoff_delay(b, other, steps[i].t), 0);  /* others unaffected */
    }
    /* Thousands of failures do not overflow the shift. */
    for (unsigned i = 0; i < 5000; i++)
        backoff_failure(b, k, 100000 + i);
    assert_int_equal(backoff_delay(b, k, 105000), 2000);
    backoff_free(b);
}

static void test_backoff_bounded(void **state)
{
    const struct backoff_policy p = BACKOFF_POLICY_DEFAULT;
    struct pgsov_err err;
    /* 8 slots = one bucket: the ninth source evicts the one that failed longest ago. */
    struct backoff *b = backoff_new(8, &p, 7, &err);
    assert_non_null(b);
    unsigned char k[BACKOFF_KEY_LEN];
    for (unsigned src = 0; src < 8; src++)
        for (unsigned f = 0; f < 5; f++) {
            key_of(src, k);
            backoff_failure(b, k, 1000 + src * 10 + f);
        }
    for (unsigned src = 0; src < 8; src++) {
        key_of(src, k);
        assert_int_equal(backoff_delay(b, k, 2000), 500);
    }
    key_of(100, k);
    assert_int_equal(backoff_failure(b, k, 2000), 0);
    key_of(0, k);
    assert_int_equal(backoff_delay(b, k, 2000), 0);       /* evicted: oldest */
    for (unsigned src = 1; src < 8; src++) {
        key_of(src, k);
        assert_int_equal(backoff_delay(b, k, 2000), 500);  /* the rest kept */
    }
    /* A flood of distinct sources never needs more memory: a big table stays its size. */
    struct backoff *big = backoff_new(1000, &p, 7, &err);
    assert_non_null(big);
    for (unsigned src = 0; src < 200000; src++) {
        key_of(src, k);
        backoff_failure(big, k, 5000);
    }
    key_of(199999, k);
    assert_int_equal(backoff_delay(big, k, 5000), 0);     /* 1 failure: free */
    backoff_failure(big, k, 5001);
    backoff_failure(big, k, 5002);
    assert_int_equal(backoff_failure(big, k, 5003), 250);
    backoff_free(big);
    backoff_free(b);
    assert_null(backoff_new((size_t)1 << 30, &p, 1, &err));
}

static void test_backoff_keys(void **state)
{
    static const struct { int fam_a; const char *a; int fam_b; const char *b; bool same; } cases[] = {
        { AF_INET,  "192.0.2.1",          AF_INET,  "192.0.2.1",          true  },
        { AF_INET,  "192.0.2.1",          AF_INET,  "192.0.2.2",          false },
        { AF_INET,  "192.0.2.1",          AF_INET6, "::ffff:192.0.2.1",   true  },
        { AF_INET6, "::ffff:192.0.2.1",   AF_INET6, "::ffff:192.0.2.2",   false },
        { AF_INET6, "2001:db8:1:2::1",    AF_INET6, "2001:db8:1:2:ffff::9", true },  /* same /64 */
        { AF_INET6, "2001:db8:1:2::1",    AF_INET6, "2001:db8:1:3::1",    false },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char ka[BACKOFF_KEY_LEN], kb[BACKOFF_KEY_LEN];
        struct sockaddr_storage sa, sb;
        const char *addr[2] = { cases[i].a, cases[i].b };
        int fam[2] = { cases[i].fam_a, cases[i].fam_b };
        struct sockaddr_storage *ss[2] = { &sa, &sb };
        unsigned char *keys[2] = { ka, kb };
        for (int j = 0; j < 2; j++) {
            memset(ss[j], 0, sizeof *ss[j]);
            ss[j]->ss_family = (sa_family_t)fam[j];
            void *dst = fam[j] == AF_INET ? (void *)&((struct sockaddr_in *)ss[j])->sin_addr
                                          : (void *)&((struct sockaddr_in6 *)ss[j])->sin6_addr;
            assert_int_equal(inet_pton(fam[j], addr[j], dst), 1);
            backoff_key_from_sockaddr((struct sockaddr *)ss[j], keys[j]);
        }
        if ((memcmp(ka, kb, BACKOFF_KEY_LEN) == 0) != cases[i].same)
            fail_msg("case %zu: %s vs %s", i, cases[i].a, cases[i].b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_cert_allows),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_backoff_sequence),
        cmocka_unit_test(test_backoff_bounded),
        cmocka_unit_test(test_backoff_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
