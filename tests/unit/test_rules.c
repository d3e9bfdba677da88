/* test_rules.c — unit tests for proxy/rules.c: parse errors (each naming file:line), matching
 * (first match wins, deny by default, environments, CIDRs, users, TLS identities), classes,
 * options, several files, formatting. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pgsov/config.h"
#include "pgsov/rules.h"
#include "pgsov/tls.h"

static const char config_text[] =
    "[proxy]\n"
    "listen = 127.0.0.1:6432\n"
    "rules = /dev/null\n"
    "client_tls = disable\n"
    "[env.development]\n"
    "aliases = dev, preview\n"
    "host = localhost\n"
    "port = 5433\n"
    "database = app\n"
    "sslmode = disable\n"
    "host_patterns = localhost:5433\n"
    "[env.staging]\n"
    "aliases = stage\n"
    "host = db.staging.example.com\n"
    "port = 5432\n"
    "database = app\n"
    "sslmode = disable\n"
    "host_patterns = *.staging.example.com\n"
    "[env.production]\n"
    "aliases = prod\n"
    "host = db.prod.example.com\n"
    "port = 5432\n"
    "database = app\n"
    "sslmode = disable\n"
    "host_patterns = *.prod.example.com\n";

static struct config *cfg;

static int group_setup(void **state)
{
    struct pgsov_err err = { "" };
    (void)state;
    if (config_load_string(config_text, "test.ini", &cfg, &err) != 0) {
        fprintf(stderr, "config: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    config_free(cfg);
    return 0;
}

static struct rules *load_ok(const char *text)
{
    struct rules *rs = NULL;
    struct pgsov_err err = { "" };
    int rc = rules_load_string(cfg, text, "t.rules", &rs, &err);
    if (rc != 0)
        fail_msg("unexpected parse error: %s\n--- text ---\n%s", err.msg, text);
    assert_non_null(rs);
    return rs;
}

/* ---- parse errors ---------------------------------------------------------------------- */

static void test_parse_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int line;
        const char *reason;     /* substring of the message */
    } cases[] = {
        { "permit all all all any\n", 1, "unknown action \"permit\"" },
        { "# c\n\nallow all all all\n", 3, "missing tls column" },
        { "allow\n", 1, "missing environment column" },
        { "allow all\n", 1, "missing source column" },
        { "allow all all\n", 1, "missing user column" },
        { "allow qa all all any\n", 1, "unknown environment \"qa\" (known: development, staging, production" },
        { "allow dev,qa all all any\n", 1, "unknown environment \"qa\"" },
        { "allow all,dev all all any\n", 1, "\"all\" cannot be combined" },
        { "allow dev,,prod all all any\n", 1, "empty item in environment list" },
        { "allow dev, all all any\n", 1, "empty item in environment list" },
        { "allow all 10.0.0.0/8, all any\n", 1, "empty item in source list" },
        { "allow all 10.0.0.0/33 all any\n", 1, "prefix length 33 out of range" },
        { "allow all ::/129 all any\n", 1, "prefix length 129 out of range" },
        { "allow all 10.0.0.0/ all any\n", 1, "invalid prefix length" },
        { "allow all 10.0.0.0/8x all any\n", 1, "invalid prefix length" },
        { "allow all 10.0.0.0/-1 all any\n", 1, "invalid prefix length" },
        { "allow all 10.0.0.0/0008 all any\n", 1, "invalid prefix length" },
        { "allow all 10.0.0.1/8 all any\n", 1, "host bits set beyond the /8 prefix (did you mean 10.0.0.0/8?)" },
        { "allow all fd00::1/8 all any\n", 1, "did you mean fd00::/8?" },
        { "allow all 10.0.0/8 all any\n", 1, "invalid address \"10.0.0/8\"" },
        { "allow all 300.0.0.0/8 all any\n", 1, "invalid address" },
        { "allow all /8 all any\n", 1, "invalid address" },
        { "allow all localhost all any\n", 1, "invalid address \"localhost\"" },
        { "allow all all,local all any\n", 1, "\"all\" cannot be combined with other sources" },
        { "allow all all app,all any\n", 1, "\"all\" cannot be combined with other users" },
        { "allow all all app,,x any\n", 1, "empty item in user list" },
        { "allow all all a234567890123456789012345678901234567890123456789012345678901234 any\n", 1,
          "longer than 63 bytes" },
        { "allow all all all ssl\n", 1, "unknown tls requirement \"ssl\"" },
        { "allow all all all TLS\n", 1, "unknown tls requirement" },
        { "allow all all all cn=\n", 1, "empty certificate CN" },
        { "allow all all all sha256=abcd\n", 1, "invalid certificate fingerprint" },
        { "allow all all all sha256=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1g\n",
          1, "invalid certificate fingerprint" },
        { "allow all all all sha256=00:0102:03:04:05:06:07:08:09:0a:0b:0c:0d:0e:0f:10:11:12:13:14:15:16:17:18:19:1a:1b:1c:1d:1e:1f:\n",
          1, "invalid certificate fingerprint" },
        { "allow all all all any reed\n", 1, "unknown statement class \"reed\"" },
        { "allow all all all any read,,ddl\n", 1, "empty item in class list" },
        { "allow all all all any read,\n", 1, "empty item in class list" },
        { "allow all all all any ,\n", 1, "empty item in class list" },
        { "allow all all all any read upstream=x\n", 1, "unknown option \"upstream\"" },
        { "allow all all all any read auth=md5\n", 1, "invalid auth=md5" },
        { "allow all all all any auth=proxy auth=proxy\n", 1, "option auth given twice" },
        { "allow all all all any upstream_user=a upstream_user=b\n", 1, "upstream_user given twice" },
        { "allow all all all any upstream_user=\n", 1, "empty upstream_user" },
        { "allow all all all any =x\n", 1, "has no name" },
        { "allow all all all any auth=proxy read\n", 1, "unexpected column \"read\"" },
        { "allow all all all any read write\n", 1, "unexpected column \"write\"" },
        { "deny all all all any read\n", 1, "deny rules take no classes or options" },
        { "deny all all all any upstream_user=x\n", 1, "deny rules take no classes or options" },
        { "allow all all all \"cn=CI Deploy\n", 1, "unterminated double quote" },
        { "allow all all all any\n\x01\n", 2, "control character 0x01" },
        { "allow all all all any\nallow all all all any a a a a a a a a a a a a\n", 2, "too many columns" },
        { "deny all all all any\n\n\n\n   \t\nallow prod 10.0.0.0/8 app tls nope\n", 6,
          "unknown statement class" },
        { "allow all all all any\r\nallow all all all nope\r\n", 2, "unknown tls requirement" },
        { "allow all all \"\" any\n", 1, "empty item in user list" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct rules *rs = NULL;
        struct pgsov_err err = { "" };
        int rc = rules_load_string(cfg, cases[i].text, "t.rules", &rs, &err);
        if (rc != -1 || rs != NULL)
            fail_msg("case %zu accepted but should fail: %s", i, cases[i].text);
        char where[32];
        snprintf(where, sizeof where, "t.rules:%d: ", cases[i].line);
        if (strncmp(err.msg, where, strlen(where)) != 0 || !strstr(err.msg, cases[i].reason))
            fail_msg("case %zu: got \"%s\", want prefix \"%s\" and \"%s\"", i, err.msg, where,
                     cases[i].reason);
    }
}

static void test_long_line(void **state)
{
    (void)state;
    /* Exactly RULES_MAX_LINE bytes is fine (padded with a comment); one more is an error. */
    for (int extra = 0; extra <= 1; extra++) {
        static const char first[] = "deny all all all any\n";
        static const char second[] = "allow all all all any #";
        size_t len = RULES_MAX_LINE + (size_t)extra;    /* length of line 2 */
        char *text = malloc(sizeof first + len + 2);
        assert_non_null(text);
        char *p = text;
        memcpy(p, first, strlen(first));
        p += strlen(first);
        memcpy(p, second, strlen(second));
        memset(p + strlen(second), 'x', len - strlen(second));
        p += len;
        *p++ = '\n';
        *p = '\0';
        struct rules *rs = NULL;
        struct pgsov_err err = { "" };
        int rc = rules_load_string(cfg, text, "t.rules", &rs, &err);
        if (extra == 0) {
            if (rc != 0)
                fail_msg("4096-byte line refused: %s", err.msg);
            assert_int_equal(rules_count(rs), 2);
            rules_free(rs);
        } else {
            assert_int_equal(rc, -1);
            assert_non_null(strstr(err.msg, "t.rules:2: line is longer than 4096 bytes"));
        }
        free(text);
    }
}

static void test_nul_in_file(void **state)
{
    (void)state;
    char path[] = "/tmp/pgsov-test-rules-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    static const char bytes[] = "deny all all all any\nallow all all\0 all any\n";
    assert_int_equal(write(fd, bytes, sizeof bytes - 1), (ssize_t)(sizeof bytes - 1));
    close(fd);
    const char *paths[] = { path };
    struct rules *rs = NULL;
    struct pgsov_err err = { "" };
    int rc = rules_load(cfg, paths, 1, &rs, &err);
    unlink(path);
    assert_int_equal(rc, -1);
    char want[64];
    snprintf(want, sizeof want, "%s:2: NUL byte", path);
    if (!strstr(err.msg, want))
        fail_msg("got \"%s\"", err.msg);
}

/* ---- matching -------------------------------------------------------------------------- */

static const unsigned char fp_a[32] = {
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0xff,
};
static const unsigned char fp_b[32] = { 0xaa };

struct facts_spec {
    const char *src;            /* "local" or an address */
    const char *user;
    const char *env;            /* canonical */
    int tls;                    /* 0 plain, 1 TLS, 2 TLS + verified cert */
    const char *cn;
    const unsigned char *fp;
};

static struct conn_facts facts_from(const struct facts_spec *s)
{
    struct conn_facts f;
    memset(&f, 0, sizeof f);
    if (strcmp(s->src, "local") == 0) {
        f.is_unix = true;
    } else if (inet_pton(AF_INET, s->src, f.addr) == 1) {
        f.family = AF_INET;
    } else if (inet_pton(AF_INET6, s->src, f.addr) == 1) {
        f.family = AF_INET6;
    } else {
        fail_msg("bad address in test: %s", s->src);
    }
    f.user = s->user;
    f.env = s->env;
    f.tls = s->tls >= 1;
    f.client_cert = s->tls >= 2;
    f.cert_cn = s->cn;
    f.cert_sha256 = s->fp;
    return f;
}

static const char demo_rules[] =
    "# action  environment   source            user        tls           classes  options\n"
    "allow     development   all               all         any           all\n"                 /* 2 */
    "allow     production    10.0.0.0/8        app         tls           default\n"             /* 3 */
    "allow     production    127.0.0.1/32      migrator    cn=ci-deploy  default,ddl,role  upstream_user=schema_owner\n" /* 4 */
    "allow     staging       ::1/128,fd00::/8  app,worker  any           read\n"                /* 5 */
    "deny      production    all               all         any\n";                              /* 6 */

/* cn= rules see the subject's one CN, as UTF-8; a subject with two CNs, or a CN holding a NUL
 * ("ci-deploy\0attacker" would read as "ci-deploy"), has none a rule can name. */
static void test_subject_cn(void **state)
{
    (void)state;
    static const struct {
        const char *cn1, *cn2;
        int cn1_len, type;
        const char *want;
    } cases[] = {
        { "ci-deploy", NULL, -1, MBSTRING_ASC, "ci-deploy" },
        { "Jo\xc3\xa3o Deploy", NULL, -1, MBSTRING_UTF8, "Jo\xc3\xa3o Deploy" },
        { "ci-deploy", "someone-else", -1, MBSTRING_ASC, "" },
        { "ci-deploy\0attacker", NULL, 18, MBSTRING_ASC, "" },
        { NULL, NULL, -1, MBSTRING_ASC, "" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        X509_NAME *name = X509_NAME_new();
        assert_non_null(name);
        X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"pgsov", -1, -1, 0);
        if (cases[i].cn1)
            assert_int_equal(X509_NAME_add_entry_by_NID(name, NID_commonName, cases[i].type,
                                                        (const unsigned char *)cases[i].cn1,
                                                        cases[i].cn1_len, -1, 0), 1);
        if (cases[i].cn2)
            assert_int_equal(X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_ASC,
                                                        (const unsigned char *)cases[i].cn2, -1, -1, 0), 1);
        char cn[256] = "untouched";
        subject_cn(name, cn, sizeof cn);
        if (strcmp(cn, cases[i].want) != 0)
            fail_msg("case %zu: cn \"%s\", want \"%s\"", i, cn, cases[i].want);
        X509_NAME_free(name);
    }
    /* longer than the buffer: none, not a prefix */
    X509_NAME *name = X509_NAME_new();
    X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_ASC, (const unsigned char *)"ci-deploy-long", -1, -1, 0);
    char small[10];
    subject_cn(name, small, sizeof small);
    assert_string_equal(small, "");
    X509_NAME_free(name);
}

static void test_match_table(void **state)
{
    (void)state;
    static const char cidr_rules[] =
        "allow all 0.0.0.0/0 v4any any\n"                         /* 1 */
        "allow all ::/0 v6any any\n"                              /* 2 */
        "allow all 192.168.1.7 host32 any\n"                      /* 3: bare address = /32 */
        "allow all 2001:db8::7 host128 any\n"                     /* 4: bare address = /128 */
        "allow all 172.16.0.0/12 odd any\n"                       /* 5: prefix not on a byte */
        "allow all 2001:db8:8000::/33 odd6 any\n"                 /* 6 */
        "allow all local,10.1.0.0/16 mixed any\n"                 /* 7 */
        "allow all ::ffff:10.0.0.0/104 mapped6 any\n";            /* 8: the mapped range by name */
    static const char tls_rules[] =
        "allow all all plain any\n"                               /* 1 */
        "allow all all t tls\n"                                   /* 2 */
        "allow all all c cert\n"                                  /* 3 */
        "allow all all n cn=ci-deploy\n"                          /* 4 */
        "allow all all q \"cn=CI Deploy #1\"\n"                   /* 5: quoted, space and # */
        "allow all all h sha256=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1eff\n" /* 6 */
        "allow all all k sha256=00:01:02:03:04:05:06:07:08:09:0A:0B:0C:0D:0E:0F:10:11:12:13:14:15:16:17:18:19:1A:1B:1C:1D:1E:FF\n" /* 7 */
        "deny all all all any\n";                                 /* 8 */
    static const char user_env_rules[] =
        "allow dev,stage all alice,bob any\n"                     /* 1: aliases */
        "allow PROD all Alice any\n"                              /* 2: env case-insensitive, user exact */
        "allow preview all carol any\n"                           /* 3: alias of development */
        "deny all all all any\n";                                 /* 4 */
    static const struct {
        const char *rules;
        struct facts_spec who;
        int want_line;          /* 0: no rule matches */
    } cases[] = {
        /* the brief's example: first match wins, deny by default */
        { demo_rules, { "203.0.113.5", "anyone", "development", 0, NULL, NULL }, 2 },
        { demo_rules, { "local", "anyone", "development", 0, NULL, NULL }, 2 },
        { demo_rules, { "10.20.30.40", "app", "production", 1, NULL, NULL }, 3 },
        { demo_rules, { "10.20.30.40", "app", "production", 0, NULL, NULL }, 6 },     /* no TLS */
        { demo_rules, { "11.0.0.1", "app", "production", 1, NULL, NULL }, 6 },        /* outside /8 */
        { demo_rules, { "::ffff:10.1.2.3", "app", "production", 1, NULL, NULL }, 3 }, /* mapped */
        { demo_rules, { "::ffff:11.1.2.3", "app", "production", 1, NULL, NULL }, 6 },
        { demo_rules, { "::10.1.2.3", "app", "production", 1, NULL, NULL }, 6 },      /* compat, not mapped */
        { demo_rules, { "127.0.0.1", "migrator", "production", 2, "ci-deploy", NULL }, 4 },
        { demo_rules, { "127.0.0.1", "migrator", "production", 2, "CI-deploy", NULL }, 6 },
        { demo_rules, { "127.0.0.1", "migrator", "production", 1, "ci-deploy", NULL }, 6 }, /* unverified */
        { demo_rules, { "127.0.0.2", "migrator", "production", 2, "ci-deploy", NULL }, 6 },
        { demo_rules, { "::1", "worker", "staging", 0, NULL, NULL }, 5 },
        { demo_rules, { "fd12:3456::9", "app", "staging", 0, NULL, NULL }, 5 },
        { demo_rules, { "fe80::1", "app", "staging", 0, NULL, NULL }, 0 },            /* deny by default */
        { demo_rules, { "::1", "other", "staging", 0, NULL, NULL }, 0 },
        { demo_rules, { "local", "app", "staging", 0, NULL, NULL }, 0 },
        { demo_rules, { "local", "app", "production", 0, NULL, NULL }, 6 },
        { demo_rules, { "10.0.0.1", NULL, "production", 1, NULL, NULL }, 6 },         /* no user: only all */
        { demo_rules, { "10.0.0.1", "app", NULL, 1, NULL, NULL }, 0 },                /* no env: only all */
        /* CIDRs */
        { cidr_rules, { "255.255.255.255", "v4any", "staging", 0, NULL, NULL }, 1 },
        { cidr_rules, { "::ffff:1.2.3.4", "v4any", "staging", 0, NULL, NULL }, 1 },
        { cidr_rules, { "::1", "v4any", "staging", 0, NULL, NULL }, 0 },
        { cidr_rules, { "2001:db8::1", "v6any", "staging", 0, NULL, NULL }, 2 },
        /* an IPv4 client on an IPv6 listener is still an IPv4 client */
        { cidr_rules, { "::ffff:1.2.3.4", "v6any", "staging", 0, NULL, NULL }, 0 },
        { cidr_rules, { "::ffff:10.9.8.7", "mapped6", "staging", 0, NULL, NULL }, 8 },
        { cidr_rules, { "::ffff:11.9.8.7", "mapped6", "staging", 0, NULL, NULL }, 0 },
        { cidr_rules, { "10.9.8.7", "mapped6", "staging", 0, NULL, NULL }, 0 },
        { cidr_rules, { "1.2.3.4", "v6any", "staging", 0, NULL, NULL }, 0 },
        { cidr_rules, { "local", "v6any", "staging", 0, NULL, NULL }, 0 },
        { cidr_rules, { "local", "v4any", "staging", 0, NULL, NULL }, 0 },
        { cidr_rules, { "192.168.1.7", "host32", "staging", 0, NULL, NULL }, 3 },
        { cidr_rules, { "192.168.1.6", "host32", "staging", 0, NULL, NULL }, 0 },
        { cidr_rules, { "::ffff:192.168.1.7", "host32", "staging", 0, NULL, NULL }, 3 },
        { cidr_rules, { "2001:db8::7", "host128", "staging", 0, NULL, NULL }, 4 },
        { cidr_rules, { "2001:db8::6", "host128", "staging", 0, NULL, NULL }, 0 },
        { cidr_rules, { "172.31.255.255", "odd", "staging", 0, NULL, NULL }, 5 },
        { cidr_rules, { "172.32.0.0", "odd", "staging", 0, NULL, NULL }, 0 },
        { cidr_rules, { "172.15.255.255", "odd", "staging", 0, NULL, NULL }, 0 },
        { cidr_rules, { "2001:db8:ffff::1", "odd6", "staging", 0, NULL, NULL }, 6 },
        { cidr_rules, { "2001:db8:7fff::1", "odd6", "staging", 0, NULL, NULL }, 0 },
        { cidr_rules, { "local", "mixed", "staging", 0, NULL, NULL }, 7 },
        { cidr_rules, { "10.1.200.3", "mixed", "staging", 0, NULL, NULL }, 7 },
        { cidr_rules, { "10.2.0.1", "mixed", "staging", 0, NULL, NULL }, 0 },
        /* TLS forms */
        { tls_rules, { "10.0.0.1", "plain", "staging", 0, NULL, NULL }, 1 },
        { tls_rules, { "10.0.0.1", "t", "staging", 0, NULL, NULL }, 8 },
        { tls_rules, { "10.0.0.1", "t", "staging", 1, NULL, NULL }, 2 },
        { tls_rules, { "10.0.0.1", "t", "staging", 2, "x", fp_a }, 2 },
        { tls_rules, { "10.0.0.1", "c", "staging", 1, NULL, NULL }, 8 },
        { tls_rules, { "10.0.0.1", "c", "staging", 2, NULL, NULL }, 3 },
        { tls_rules, { "10.0.0.1", "n", "staging", 2, "ci-deploy", NULL }, 4 },
        { tls_rules, { "10.0.0.1", "n", "staging", 2, "ci-deploy2", NULL }, 8 },
        { tls_rules, { "10.0.0.1", "n", "staging", 2, NULL, NULL }, 8 },
        { tls_rules, { "10.0.0.1", "q", "staging", 2, "CI Deploy #1", NULL }, 5 },
        { tls_rules, { "10.0.0.1", "h", "staging", 2, NULL, fp_a }, 6 },
        { tls_rules, { "10.0.0.1", "h", "staging", 2, NULL, fp_b }, 8 },
        { tls_rules, { "10.0.0.1", "h", "staging", 1, NULL, fp_a }, 8 },            /* unverified */
        { tls_rules, { "10.0.0.1", "h", "staging", 2, NULL, NULL }, 8 },
        { tls_rules, { "10.0.0.1", "k", "staging", 2, NULL, fp_a }, 7 },            /* colons, upper */
        { tls_rules, { "10.0.0.1", "k", "staging", 2, NULL, fp_b }, 8 },
        /* users and environments */
        { user_env_rules, { "local", "alice", "development", 0, NULL, NULL }, 1 },
        { user_env_rules, { "local", "bob", "staging", 0, NULL, NULL }, 1 },
        { user_env_rules, { "local", "bob", "production", 0, NULL, NULL }, 4 },
        { user_env_rules, { "local", "Alice", "production", 0, NULL, NULL }, 2 },
        { user_env_rules, { "local", "alice", "production", 0, NULL, NULL }, 4 },
        { user_env_rules, { "local", "ALICE", "development", 0, NULL, NULL }, 4 },
        { user_env_rules, { "local", "carol", "development", 0, NULL, NULL }, 3 },
        { user_env_rules, { "local", "carol", "staging", 0, NULL, NULL }, 4 },
        /* empty rule set: deny by default */
        { "# nothing here\n\n", { "127.0.0.1", "app", "development", 2, "x", fp_a }, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct rules *rs = load_ok(cases[i].rules);
        struct conn_facts who = facts_from(&cases[i].who);
        const struct rule *r = rules_match(rs, &who);
        int got = r ? r->line : 0;
        if (got != cases[i].want_line)
            fail_msg("case %zu (%s user=%s env=%s): matched line %d, want %d", i,
                     cases[i].who.src, cases[i].who.user ? cases[i].who.user : "(null)",
                     cases[i].who.env ? cases[i].who.env : "(null)", got, cases[i].want_line);
        if (r)
            assert_string_equal(r->file, "t.rules");
        rules_free(rs);
    }
}

static void test_canonical_envs(void **state)
{
    (void)state;
    struct rules *rs = load_ok("allow dev,development,PROD,stage all all any\n");
    const struct rule *r = rules_get(rs, 0);
    assert_non_null(r);
    assert_int_equal(r->n_envs, 3);    /* dev and development are one environment */
    assert_string_equal(r->envs[0], "development");
    assert_string_equal(r->envs[1], "production");
    assert_string_equal(r->envs[2], "staging");
    assert_null(rules_get(rs, 1));
    rules_free(rs);
}

static void test_classes_and_options(void **state)
{
    (void)state;
    struct rules *rs = load_ok(
        "allow all all a any\n"
        "allow all all b any default,ddl,role,maintenance\n"
        "allow all all c any all\n"
        "allow all all d any read upstream_user=schema_owner auth=proxy\n"
        "allow all all e any auth=passthrough\n"
        "allow all all f any none\n"
        "deny  all all g any\n");
    static const struct {
        class_set classes;
        const char *upstream_user;
        int auth;
        enum rule_action action;
    } want[] = {
        { CLASS_SET_DEFAULT, NULL, -1, RULE_ALLOW },
        { CLASS_SET_DEFAULT | CLASS_BIT(CLASS_DDL) | CLASS_BIT(CLASS_ROLE) |
          CLASS_BIT(CLASS_MAINTENANCE), NULL, -1, RULE_ALLOW },
        { CLASS_SET_ALL & ~CLASS_BIT(CLASS_UNKNOWN), NULL, -1, RULE_ALLOW },
        { CLASS_BIT(CLASS_READ), "schema_owner", RULE_AUTH_PROXY, RULE_ALLOW },
        { CLASS_SET_DEFAULT, NULL, RULE_AUTH_PASSTHROUGH, RULE_ALLOW },
        { 0, NULL, -1, RULE_ALLOW },
        { 0, NULL, -1, RULE_DENY },
    };
    assert_int_equal(rules_count(rs), sizeof want / sizeof want[0]);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const struct rule *r = rules_get(rs, i);
        assert_int_equal(r->line, (int)i + 1);
        assert_int_equal(r->action, want[i].action);
        assert_int_equal(r->classes, want[i].classes);
        assert_int_equal(r->auth, want[i].auth);
        if (want[i].upstream_user)
            assert_string_equal(r->upstream_user, want[i].upstream_user);
        else
            assert_null(r->upstream_user);
    }
    rules_free(rs);
}

/* ---- several files --------------------------------------------------------------------- */

static void write_file(char *path, const char *text)
{
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
}

static void test_several_files(void **state)
{
    (void)state;
    char first[] = "/tmp/pgsov-test-rules-a-XXXXXX";
    char second[] = "/tmp/pgsov-test-rules-b-XXXXXX";
    char broken[] = "/tmp/pgsov-test-rules-c-XXXXXX";
    write_file(first, "# team rules\nallow dev all all any\n");
    write_file(second, "\n\nallow prod 10.0.0.0/8 app tls\ndeny all all all any\n");
    write_file(broken, "allow dev all all any\n\nallow prod all all nope\n");

    const char *paths[] = { first, second, "/dev/null" };
    struct rules *rs = NULL;
    struct pgsov_err err = { "" };
    if (rules_load(cfg, paths, 3, &rs, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(rules_count(rs), 3);

    static const struct {
        struct facts_spec who;
        int which_file;         /* index into paths, -1 none */
        int line;
    } cases[] = {
        { { "10.0.0.1", "app", "development", 0, NULL, NULL }, 0, 2 },
        { { "10.0.0.1", "app", "production", 1, NULL, NULL }, 1, 3 },
        { { "10.0.0.1", "app", "production", 0, NULL, NULL }, 1, 4 },
        { { "10.0.0.1", "app", "staging", 0, NULL, NULL }, 1, 4 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct conn_facts who = facts_from(&cases[i].who);
        const struct rule *r = rules_match(rs, &who);
        assert_non_null(r);
        assert_string_equal(r->file, paths[cases[i].which_file]);
        assert_int_equal(r->line, cases[i].line);
    }
    rules_free(rs);

    /* An error in the second file names that file and its line; nothing is returned. */
    const char *with_broken[] = { first, broken };
    rs = NULL;
    assert_int_equal(rules_load(cfg, with_broken, 2, &rs, &err), -1);
    assert_null(rs);
    char want[96];
    snprintf(want, sizeof want, "%s:3: unknown tls requirement", broken);
    if (strncmp(err.msg, want, strlen(want)) != 0)
        fail_msg("got \"%s\", want \"%s...\"", err.msg, want);

    /* A missing file is an error naming it. */
    const char *missing[] = { first, "/nonexistent/pgsov.rules" };
    assert_int_equal(rules_load(cfg, missing, 2, &rs, &err), -1);
    assert_non_null(strstr(err.msg, "/nonexistent/pgsov.rules: cannot open rule file"));

    /* No files: an empty set, which refuses everything. */
    assert_int_equal(rules_load(cfg, NULL, 0, &rs, &err), 0);
    assert_int_equal(rules_count(rs), 0);
    struct facts_spec s = { "127.0.0.1", "app", "development", 0, NULL, NULL };
    struct conn_facts who = facts_from(&s);
    assert_null(rules_match(rs, &who));
    rules_free(rs);

    unlink(first);
    unlink(second);
    unlink(broken);
}

/* ---- formatting ------------------------------------------------------------------------ */

static void test_format_source(void **state)
{
    (void)state;
    static const struct {
        const char *src;
        const char *want;
    } cases[] = {
        { "local", "local" },
        { "203.0.113.5", "203.0.113.5" },
        { "2001:db8::1", "[2001:db8::1]" },
        { "::ffff:10.1.2.3", "[::ffff:10.1.2.3]" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct facts_spec s = { cases[i].src, "u", "development", 0, NULL, NULL };
        struct conn_facts who = facts_from(&s);
        char buf[64];
        conn_facts_format_source(&who, buf, sizeof buf);
        assert_string_equal(buf, cases[i].want);
    }
    struct conn_facts odd;
    memset(&odd, 0, sizeof odd);
    char small[4];
    conn_facts_format_source(&odd, small, sizeof small);
    assert_string_equal(small, "unk");      /* unknown family, truncated safely */
}

static void test_rule_format(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        const char *want;
    } cases[] = {
        { "allow dev all all any", "allow development all all any read,write,transaction,session" },
        { "allow prod,stage local,10.0.0.0/8,fd00::/8 app,worker tls ddl upstream_user=o auth=proxy",
          "allow production,staging local,10.0.0.0/8,fd00::/8 app,worker tls ddl upstream_user=o auth=proxy" },
        { "allow all 10.1.2.3 m \"cn=CI Deploy\" none",
          "allow all 10.1.2.3/32 m cn=\"CI Deploy\" none" },
        { "allow all all \"a b\",c,\"d#e\" any read upstream_user=\"x y\"",
          "allow all all \"a b\",c,\"d#e\" any read upstream_user=\"x y\"" },
        { "deny all all all sha256=00:01:02:03:04:05:06:07:08:09:0A:0B:0C:0D:0E:0F:10:11:12:13:14:15:16:17:18:19:1A:1B:1C:1D:1E:FF",
          "deny all all all sha256=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1eff" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct rules *rs = load_ok(cases[i].line);
        char buf[512];
        rule_format(rules_get(rs, 0), buf, sizeof buf);
        assert_string_equal(buf, cases[i].want);
        rules_free(rs);
        /* The normalized form parses back to itself. */
        rs = load_ok(buf);
        char again[512];
        rule_format(rules_get(rs, 0), again, sizeof again);
        assert_string_equal(again, buf);
        rules_free(rs);
    }
}

/* The example shipped with the project must load against a config with its environments and
 * say what its comments promise. */
static void test_shipped_example(void **state)
{
    (void)state;
    const char *paths[] = { "rules/access.rules" };
    struct rules *rs = NULL;
    struct pgsov_err err = { "" };
    if (rules_load(cfg, paths, 1, &rs, &err) != 0)   /* make runs unit tests from the repository root */
        fail_msg("%s", err.msg);
    static const struct {
        struct facts_spec who;
        int allowed;            /* 1 allow rule, 0 deny rule or none */
        class_set classes;
    } cases[] = {
        { { "127.0.0.1", "anyone", "development", 0, NULL, NULL }, 1, CLASS_SET_ALL & ~CLASS_BIT(CLASS_UNKNOWN) },
        { { "::1", "preview", "development", 0, NULL, NULL }, 1, CLASS_SET_ALL & ~CLASS_BIT(CLASS_UNKNOWN) },
        { { "10.9.9.9", "anyone", "development", 0, NULL, NULL }, 0, 0 },
        { { "10.9.9.9", "preview", "development", 1, NULL, NULL }, 1, CLASS_SET_DEFAULT },
        { { "10.9.9.9", "preview", "development", 0, NULL, NULL }, 0, 0 },
        { { "10.9.9.9", "preview", "production", 2, "preview", NULL }, 0, 0 },
        { { "127.0.0.1", "preview", "production", 1, NULL, NULL }, 0, 0 },
        { { "127.0.0.1", "app", "production", 0, NULL, NULL }, 1, CLASS_SET_DEFAULT },
        { { "127.0.0.1", "migrator", "production", 0, NULL, NULL }, 1,
          CLASS_SET_DEFAULT | CLASS_BIT(CLASS_DDL) | CLASS_BIT(CLASS_ROLE) | CLASS_BIT(CLASS_MAINTENANCE) },
        { { "127.0.0.1", "postgres", "production", 1, NULL, NULL }, 0, 0 },
        { { "10.0.0.1", "app", "production", 1, NULL, NULL }, 0, 0 },
        { { "127.0.0.1", "app", "staging", 0, NULL, NULL }, 0, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct conn_facts who = facts_from(&cases[i].who);
        const struct rule *r = rules_match(rs, &who);
        int allowed = r && r->action == RULE_ALLOW;
        if (allowed != cases[i].allowed)
            fail_msg("case %zu (%s %s %s): allowed=%d want %d (line %d)", i, cases[i].who.src,
                     cases[i].who.user, cases[i].who.env, allowed, cases[i].allowed,
                     r ? r->line : 0);
        if (allowed)
            assert_int_equal(r->classes, cases[i].classes);
    }
    rules_free(rs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_nul_in_file),
        cmocka_unit_test(test_subject_cn),
        cmocka_unit_test(test_match_table),
        cmocka_unit_test(test_canonical_envs),
        cmocka_unit_test(test_classes_and_options),
        cmocka_unit_test(test_several_files),
        cmocka_unit_test(test_format_source),
        cmocka_unit_test(test_rule_format),
        cmocka_unit_test(test_shipped_example),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
