/* fuzz_rules.c — libFuzzer target for proxy/rules.c: the rule-file parser, the matcher and the
 * rule_format round trip. Not built by make. Build and run from the repository root:
 *
 *   mkdir -p build/fuzz && clang -g -O1 -std=c11 -D_GNU_SOURCE -Iinclude \
 *       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
 *       tests/fuzz/fuzz_rules.c proxy/rules.c common/config.c common/env.c common/err.c \
 *       common/stmt_class.c $(pkg-config --libs inih) -o build/fuzz/fuzz_rules
 *   mkdir -p build/fuzz/corpus-rules
 *   for f in rules/access.rules; do { head -c 49 /dev/zero; cat "$f"; } \
 *       > build/fuzz/corpus-rules/$(basename "$f"); done
 *   printf '%s\n' '"allow"' '"deny"' '"all"' '"local"' '"any"' '"tls"' '"cert"' '"cn="' \
 *       '"sha256="' '"development"' '"prod"' '"upstream_user="' '"auth=proxy"' '"default"' \
 *       '"ddl"' '"/128"' '"::ffff:"' '"10.0.0.0/8"' '","' '"\x22"' '"#"' > build/fuzz/rules.dict
 *   build/fuzz/fuzz_rules -max_total_time=60 -max_len=8192 -dict=build/fuzz/rules.dict \
 *       build/fuzz/corpus-rules
 *
 * Input: the first FACTS_BYTES bytes describe one connection (see facts_from_bytes), the rest
 * is the rule text. Invariants checked beyond "no crash, no leak, no UB":
 *   - a failed load fills the error with "fuzz.rules:LINE: reason" and returns no rules;
 *   - rules_match returns NULL or a rule of the set, and the same answer twice;
 *   - every rule written back with rule_format parses to a rule that formats identically. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "pgsov/config.h"
#include "pgsov/rules.h"

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
    "[env.production]\n"
    "aliases = prod\n"
    "host = db.prod.example.com\n"
    "port = 5432\n"
    "database = app\n"
    "sslmode = disable\n"
    "host_patterns = *.prod.example.com\n";

static struct config *cfg;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct pgsov_err err;
    (void)argc;
    (void)argv;
    if (config_load_string(config_text, "fuzz.ini", &cfg, &err) != 0) {
        fprintf(stderr, "fuzz_rules: config: %s\n", err.msg);
        abort();
    }
    return 0;
}

#define FACTS_BYTES (1 + 16 + 32)

static void facts_from_bytes(const uint8_t *b, struct conn_facts *f)
{
    static const char *const users[] = { "app", "migrator", "preview", "all", "a b", NULL };
    static const char *const envs[] = { "development", "production", "prod", NULL };
    static const char *const cns[] = { "ci-deploy", "CI Deploy #1", NULL };
    uint8_t flags = b[0];
    memset(f, 0, sizeof *f);
    f->is_unix = (flags & 0x01) != 0;
    f->family = (flags & 0x02) ? AF_INET6 : AF_INET;
    memcpy(f->addr, b + 1, 16);
    if ((flags & 0x04) && f->family == AF_INET6) {     /* steer towards mapped IPv4 */
        memset(f->addr, 0, 10);
        f->addr[10] = f->addr[11] = 0xff;
    }
    f->tls = (flags & 0x08) != 0;
    f->client_cert = (flags & 0x10) != 0;
    f->user = users[(flags >> 5) % 6];
    f->env = envs[(b[1] ^ b[2]) % 4];
    f->cert_cn = cns[b[3] % 3];
    f->cert_sha256 = (b[4] & 1) ? b + 17 : NULL;
}

static void check_round_trip(const struct rule *r)
{
    char line[3 * RULES_MAX_LINE], again[3 * RULES_MAX_LINE];
    rule_format(r, line, sizeof line);
    if (strlen(line) > RULES_MAX_LINE)
        return;                 /* normalizing (e.g. adding /32) can lengthen a line */
    struct rules *rs = NULL;
    struct pgsov_err err;
    if (rules_load_string(cfg, line, "round-trip", &rs, &err) != 0) {
        fprintf(stderr, "round trip: \"%s\" does not parse: %s\n", line, err.msg);
        abort();
    }
    if (rules_count(rs) != 1)
        abort();
    rule_format(rules_get(rs, 0), again, sizeof again);
    if (strcmp(line, again) != 0) {
        fprintf(stderr, "round trip:\n  %s\n  %s\n", line, again);
        abort();
    }
    rules_free(rs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t facts_bytes[FACTS_BYTES] = { 0 };
    size_t n = size < FACTS_BYTES ? size : FACTS_BYTES;
    memcpy(facts_bytes, data, n);
    data += n;
    size -= n;

    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';          /* an embedded NUL ends the text early, as in a C string */

    struct rules *rs = NULL;
    struct pgsov_err err = { "" };
    int rc = rules_load_string(cfg, text, "fuzz.rules", &rs, &err);
    free(text);
    if (rc != 0) {
        if (rs != NULL || strncmp(err.msg, "fuzz.rules:", 11) != 0)
            abort();
        return 0;
    }

    struct conn_facts who;
    facts_from_bytes(facts_bytes, &who);
    const struct rule *r = rules_match(rs, &who);
    if (r != rules_match(rs, &who))
        abort();
    if (r) {
        bool found = false;
        for (size_t i = 0; i < rules_count(rs); i++)
            found = found || rules_get(rs, i) == r;
        if (!found)
            abort();
    }
    char src[64];
    conn_facts_format_source(&who, src, sizeof src);

    for (size_t i = 0; i < rules_count(rs) && i < 64; i++)
        check_round_trip(rules_get(rs, i));
    rules_free(rs);
    return 0;
}
