/* rules.c — access rules: parsing rule files and matching connections against them.
 *
 * Owns the rule file format (docs/rules.md): tokenizing lines, resolving environment names
 * against the config, CIDRs, TLS identity forms, classes and options, with every error as
 * "file:line: reason". Matching is a linear first-match scan that never allocates.
 * Deliberately does not: log, read the config file, decide what a refusal looks like on the
 * wire, or watch files for changes (reload is the caller building a new set and swapping). */
#include "pgsov/rules.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "pgsov/config.h"

#define RULES_MAX_FILE   (16u * 1024u * 1024u)  /* a rule file is hand-written; bound it   */
#define RULES_MAX_COLUMNS 16
#define RULES_MAX_NAME   63                      /* PostgreSQL NAMEDATALEN - 1              */
#define RULES_MAX_CN     255

/* ---- arena: every string and array a rule points at lives here until rules_free -------- */

struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    max_align_t data[];
};

struct rules {
    struct arena_chunk *arena;
    struct rule *rules;
    size_t n, cap;
};

static void *arena_alloc(struct rules *rs, size_t size)
{
    const size_t align = _Alignof(max_align_t);
    if (size > SIZE_MAX / 2)
        return NULL;
    size = (size + align - 1) & ~(align - 1);
    if (size == 0)
        size = align;
    struct arena_chunk *c = rs->arena;
    if (!c || c->cap - c->used < size) {
        size_t cap = size > 8192 ? size : 8192;
        c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        c->next = rs->arena;
        c->used = 0;
        c->cap = cap;
        rs->arena = c;
    }
    void *p = (unsigned char *)c->data + c->used;
    c->used += size;
    return p;
}

static char *arena_strdup(struct rules *rs, const char *s)
{
    size_t len = strlen(s);
    char *p = arena_alloc(rs, len + 1);
    if (p)
        memcpy(p, s, len + 1);
    return p;
}

/* ---- errors ---------------------------------------------------------------------------- */

struct parse_ctx {
    const struct config *cfg;
    struct rules *rs;
    const char *file;           /* arena copy of the file name                               */
    int line;
    struct pgsov_err *err;
};

__attribute__((format(printf, 2, 3)))
static int line_fail(const struct parse_ctx *pc, const char *fmt, ...)
{
    char reason[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    return pgsov_fail(pc->err, "%s:%d: %s", pc->file, pc->line, reason);
}

static int oom(const struct parse_ctx *pc)
{
    return line_fail(pc, "out of memory");
}

/* ---- tokenizer ------------------------------------------------------------------------- */

struct tokens {
    char buf[RULES_MAX_LINE + 1];
    char *col[RULES_MAX_COLUMNS];
    size_t n;
};

static bool is_blank(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Splits one line (len <= RULES_MAX_LINE, no '\n') into columns. Outside double quotes, '#'
 * starts a comment and blanks separate columns; a double quote toggles quoting and is dropped,
 * so "cn=CI Deploy" can carry a space. */
static int tokenize(const struct parse_ctx *pc, const char *line, size_t len, struct tokens *t)
{
    size_t out = 0;
    bool in_token = false, in_quote = false;
    t->n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c == '\0')
            return line_fail(pc, "NUL byte in line");
        if (c < 0x20 && !is_blank(c))
            return line_fail(pc, "control character 0x%02x in line", c);
        if (!in_quote && c == '#')
            break;
        if (!in_quote && is_blank(c)) {
            if (in_token) {
                t->buf[out++] = '\0';
                in_token = false;
            }
            continue;
        }
        if (!in_token) {
            if (t->n == RULES_MAX_COLUMNS)
                return line_fail(pc, "too many columns (at most %d)", RULES_MAX_COLUMNS);
            t->col[t->n++] = &t->buf[out];
            in_token = true;
        }
        if (c == '"') {
            in_quote = !in_quote;
            continue;
        }
        t->buf[out++] = (char)c;
    }
    if (in_quote)
        return line_fail(pc, "unterminated double quote");
    /* out <= len <= RULES_MAX_LINE: each input byte writes at most one byte, and a column
     * terminator replaces the blank or quote that ended it, except the last one here. */
    t->buf[out] = '\0';
    return 0;
}

/* ---- list helpers ---------------------------------------------------------------------- */

/* Comma lists are split in place: list_count() sizes the result array (commas + 1 items),
 * list_next() hands out one item at a time, sets *cursor to NULL after the last one and
 * rejects empty items ("a,,b", "a,", ""). */
static size_t list_count(const char *list)
{
    size_t n = 1;
    for (; *list; list++)
        n += *list == ',';
    return n;
}

static char *list_next(const struct parse_ctx *pc, const char *what, char **cursor)
{
    char *item = *cursor;
    char *comma = strchr(item, ',');
    if (comma) {
        *comma = '\0';
        *cursor = comma + 1;
    } else {
        *cursor = NULL;
    }
    if (*item == '\0') {
        line_fail(pc, "empty item in %s list (lists are comma-separated without spaces, "
                  "e.g. a,b)", what);
        return NULL;
    }
    return item;
}

static int check_name(const struct parse_ctx *pc, const char *what, const char *name)
{
    size_t len = strlen(name);
    if (len == 0)
        return line_fail(pc, "empty %s", what);
    if (len > RULES_MAX_NAME)
        return line_fail(pc, "%s \"%.40s...\" is longer than %d bytes", what, name,
                         RULES_MAX_NAME);
    return 0;
}

/* ---- columns --------------------------------------------------------------------------- */

static int parse_envs(const struct parse_ctx *pc, char *col, struct rule *r)
{
    if (strcmp(col, "all") == 0) {
        r->n_envs = 0;
        return 0;
    }
    size_t n = list_count(col), used = 0;
    const char **envs = arena_alloc(pc->rs, n * sizeof *envs);
    if (!envs)
        return oom(pc);
    for (char *cursor = col; cursor;) {
        char *item = list_next(pc, "environment", &cursor);
        if (!item)
            return -1;
        if (strcmp(item, "all") == 0)
            return line_fail(pc, "\"all\" cannot be combined with other environments");
        const struct env_config *env = pc->cfg ? config_find_env(pc->cfg, item) : NULL;
        if (!env) {
            char known[256] = "none";
            if (pc->cfg)
                config_env_names(pc->cfg, known, sizeof known);
            return line_fail(pc, "unknown environment \"%.64s\" (known: %s; aliases are set "
                             "with aliases = in [env.NAME] of the config)", item, known);
        }
        bool dup = false;
        for (size_t j = 0; j < used; j++)
            dup = dup || strcmp(envs[j], env->name) == 0;
        if (dup)
            continue;
        envs[used] = arena_strdup(pc->rs, env->name);
        if (!envs[used])
            return oom(pc);
        used++;
    }
    r->envs = envs;
    r->n_envs = used;
    return 0;
}

static void cidr_mask(unsigned char *addr, size_t bytes, unsigned prefix)
{
    for (size_t i = 0; i < bytes; i++) {
        unsigned bits = prefix >= 8 * (i + 1) ? 8 : prefix > 8 * i ? prefix - 8 * (unsigned)i : 0;
        addr[i] &= (unsigned char)(bits == 0 ? 0 : 0xffu << (8 - bits));
    }
}

static int parse_cidr(const struct parse_ctx *pc, const char *text, struct rule_cidr *out)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(text, '/');
    size_t hlen = slash ? (size_t)(slash - text) : strlen(text);
    if (hlen == 0 || hlen >= sizeof host)
        return line_fail(pc, "invalid address \"%.64s\" (expected an IPv4/IPv6 address or "
                         "CIDR such as 10.0.0.0/8, or all, or local)", text);
    memcpy(host, text, hlen);
    host[hlen] = '\0';
    memset(out, 0, sizeof *out);
    unsigned max;
    if (inet_pton(AF_INET, host, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, host, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        return line_fail(pc, "invalid address \"%.64s\" (expected an IPv4/IPv6 address or "
                         "CIDR such as 10.0.0.0/8, or all, or local)", text);
    }
    unsigned prefix = max;
    if (slash) {
        const char *p = slash + 1;
        if (*p == '\0' || strlen(p) > 3)
            return line_fail(pc, "invalid prefix length in \"%.64s\" (0..%u)", text, max);
        prefix = 0;
        for (; *p; p++) {
            if (*p < '0' || *p > '9')
                return line_fail(pc, "invalid prefix length in \"%.64s\" (0..%u)", text, max);
            prefix = prefix * 10 + (unsigned)(*p - '0');
        }
        if (prefix > max)
            return line_fail(pc, "prefix length %u out of range in \"%.64s\" (0..%u for %s)",
                             prefix, text, max, max == 32 ? "IPv4" : "IPv6");
    }
    size_t bytes = max / 8;
    unsigned char net[16];
    memcpy(net, out->addr, bytes);
    cidr_mask(net, bytes, prefix);
    if (memcmp(net, out->addr, bytes) != 0) {
        char shown[INET6_ADDRSTRLEN];
        inet_ntop(out->family, net, shown, sizeof shown);
        return line_fail(pc, "\"%.64s\" has host bits set beyond the /%u prefix (did you "
                         "mean %s/%u?)", text, prefix, shown, prefix);
    }
    out->prefix = (unsigned char)prefix;
    return 0;
}

static int parse_source(const struct parse_ctx *pc, char *col, struct rule *r)
{
    if (strcmp(col, "all") == 0) {
        r->source = RULE_SOURCE_ALL;
        return 0;
    }
    r->source = RULE_SOURCE_LIST;
    size_t n = list_count(col), used = 0;
    struct rule_cidr *cidrs = arena_alloc(pc->rs, n * sizeof *cidrs);
    if (!cidrs)
        return oom(pc);
    for (char *cursor = col; cursor;) {
        char *item = list_next(pc, "source", &cursor);
        if (!item)
            return -1;
        if (strcmp(item, "all") == 0)
            return line_fail(pc, "\"all\" cannot be combined with other sources");
        if (strcmp(item, "local") == 0) {
            r->source_local = true;
            continue;
        }
        if (parse_cidr(pc, item, &cidrs[used]) < 0)
            return -1;
        used++;
    }
    r->cidrs = cidrs;
    r->n_cidrs = used;
    return 0;
}

static int parse_users(const struct parse_ctx *pc, char *col, struct rule *r)
{
    if (strcmp(col, "all") == 0) {
        r->n_users = 0;
        return 0;
    }
    size_t n = list_count(col), used = 0;
    const char **users = arena_alloc(pc->rs, n * sizeof *users);
    if (!users)
        return oom(pc);
    for (char *cursor = col; cursor;) {
        char *item = list_next(pc, "user", &cursor);
        if (!item)
            return -1;
        if (strcmp(item, "all") == 0)
            return line_fail(pc, "\"all\" cannot be combined with other users");
        if (check_name(pc, "user name", item) < 0)
            return -1;
        users[used] = arena_strdup(pc->rs, item);
        if (!users[used])
            return oom(pc);
        used++;
    }
    r->users = users;
    r->n_users = used;
    return 0;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* 64 hex digits, or 32 colon-separated pairs (as openssl x509 -fingerprint prints them). */
static int parse_sha256(const char *hex, unsigned char out[32])
{
    size_t len = strlen(hex);
    bool colons = len == 32 * 3 - 1;
    if (len != 64 && !colons)
        return -1;
    const char *p = hex;
    for (size_t i = 0; i < 32; i++) {
        int hi = hex_value(p[0]), lo = hex_value(p[1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
        p += 2;
        if (colons && i < 31) {
            if (*p != ':')
                return -1;
            p++;
        }
    }
    return 0;
}

static int parse_tls(const struct parse_ctx *pc, const char *col, struct rule *r)
{
    if (strcmp(col, "any") == 0) {
        r->tls = RULE_TLS_ANY;
    } else if (strcmp(col, "tls") == 0) {
        r->tls = RULE_TLS_REQUIRED;
    } else if (strcmp(col, "cert") == 0) {
        r->tls = RULE_TLS_CERT;
    } else if (strncmp(col, "cn=", 3) == 0) {
        const char *cn = col + 3;
        if (*cn == '\0')
            return line_fail(pc, "empty certificate CN in \"cn=\"");
        if (strlen(cn) > RULES_MAX_CN)
            return line_fail(pc, "certificate CN longer than %d bytes", RULES_MAX_CN);
        r->tls = RULE_TLS_CN;
        r->tls_cn = arena_strdup(pc->rs, cn);
        if (!r->tls_cn)
            return oom(pc);
    } else if (strncmp(col, "sha256=", 7) == 0) {
        if (parse_sha256(col + 7, r->tls_sha256) < 0)
            return line_fail(pc, "invalid certificate fingerprint \"%.100s\" (expected "
                             "sha256= and 64 hex digits, colons between bytes allowed; get it "
                             "with: openssl x509 -noout -fingerprint -sha256 -in client.crt)", col);
        r->tls = RULE_TLS_SHA256;
    } else {
        return line_fail(pc, "unknown tls requirement \"%.64s\" (expected any, tls, cert, "
                         "cn=NAME or sha256=HEX)", col);
    }
    return 0;
}

static int parse_option(const struct parse_ctx *pc, char *col, struct rule *r)
{
    char *eq = strchr(col, '=');
    *eq = '\0';
    const char *key = col, *value = eq + 1;
    if (*key == '\0')
        return line_fail(pc, "option \"=%.64s\" has no name", value);
    if (strcmp(key, "upstream_user") == 0) {
        if (r->upstream_user)
            return line_fail(pc, "option upstream_user given twice");
        if (check_name(pc, "upstream_user", value) < 0)
            return -1;
        r->upstream_user = arena_strdup(pc->rs, value);
        if (!r->upstream_user)
            return oom(pc);
    } else if (strcmp(key, "auth") == 0) {
        if (r->auth != -1)
            return line_fail(pc, "option auth given twice");
        if (strcmp(value, "passthrough") == 0)
            r->auth = RULE_AUTH_PASSTHROUGH;
        else if (strcmp(value, "proxy") == 0)
            r->auth = RULE_AUTH_PROXY;
        else
            return line_fail(pc, "invalid auth=%.64s (expected passthrough or proxy)", value);
    } else {
        return line_fail(pc, "unknown option \"%.64s\" (known: upstream_user, auth)", key);
    }
    return 0;
}

/* ---- lines ----------------------------------------------------------------------------- */

static int rules_append(const struct parse_ctx *pc, const struct rule *r)
{
    struct rules *rs = pc->rs;
    if (rs->n == rs->cap) {
        size_t cap = rs->cap ? rs->cap * 2 : 16;
        if (cap > SIZE_MAX / sizeof *rs->rules)
            return oom(pc);
        struct rule *grown = realloc(rs->rules, cap * sizeof *grown);
        if (!grown)
            return oom(pc);
        rs->rules = grown;
        rs->cap = cap;
    }
    rs->rules[rs->n++] = *r;
    return 0;
}

static int parse_line(const struct parse_ctx *pc, const char *line, size_t len)
{
    static const char *const column_names[] = { "action", "environment", "source", "user",
                                                "tls" };
    struct tokens t;
    if (tokenize(pc, line, len, &t) < 0)
        return -1;
    if (t.n == 0)
        return 0;

    struct rule r;
    memset(&r, 0, sizeof r);
    r.file = pc->file;
    r.line = pc->line;
    r.auth = -1;
    if (strcmp(t.col[0], "allow") == 0)
        r.action = RULE_ALLOW;
    else if (strcmp(t.col[0], "deny") == 0)
        r.action = RULE_DENY;
    else
        return line_fail(pc, "unknown action \"%.64s\" (expected allow or deny)", t.col[0]);
    if (t.n < 5)
        return line_fail(pc, "missing %s column (columns: action environment source user tls "
                         "[classes] [options])", column_names[t.n]);
    if (parse_envs(pc, t.col[1], &r) < 0 || parse_source(pc, t.col[2], &r) < 0 ||
        parse_users(pc, t.col[3], &r) < 0 || parse_tls(pc, t.col[4], &r) < 0)
        return -1;

    if (r.action == RULE_DENY) {
        if (t.n > 5)
            return line_fail(pc, "deny rules take no classes or options (unexpected \"%.64s\")",
                             t.col[5]);
        r.classes = 0;
        return rules_append(pc, &r);
    }

    size_t i = 5;
    r.classes = CLASS_SET_DEFAULT;
    if (i < t.n && !strchr(t.col[i], '=')) {
        struct pgsov_err cerr;
        if (class_set_parse(t.col[i], &r.classes, &cerr) < 0)
            return line_fail(pc, "%s", cerr.msg);
        i++;
    }
    for (; i < t.n; i++) {
        if (!strchr(t.col[i], '='))
            return line_fail(pc, "unexpected column \"%.64s\" (classes come right after tls; "
                             "options after that are key=value)", t.col[i]);
        if (parse_option(pc, t.col[i], &r) < 0)
            return -1;
    }
    return rules_append(pc, &r);
}

static int parse_text(const struct config *cfg, struct rules *rs, const char *text, size_t len,
                      const char *name, struct pgsov_err *err)
{
    struct parse_ctx pc = { .cfg = cfg, .rs = rs, .file = NULL, .line = 0, .err = err };
    pc.file = arena_strdup(rs, name);
    if (!pc.file)
        return pgsov_fail(err, "%s: out of memory", name);
    size_t pos = 0;
    while (pos < len) {
        const char *start = text + pos;
        const char *nl = memchr(start, '\n', len - pos);
        size_t line_len = nl ? (size_t)(nl - start) : len - pos;
        pc.line++;
        if (line_len > RULES_MAX_LINE)
            return line_fail(&pc, "line is longer than %d bytes", RULES_MAX_LINE);
        if (parse_line(&pc, start, line_len) < 0)
            return -1;
        pos += line_len + (nl ? 1 : 0);
    }
    return 0;
}

/* ---- load / free ----------------------------------------------------------------------- */

static struct rules *rules_new(void)
{
    return calloc(1, sizeof(struct rules));
}

void rules_free(struct rules *rs)
{
    if (!rs)
        return;
    struct arena_chunk *c = rs->arena;
    while (c) {
        struct arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    free(rs->rules);
    free(rs);
}

int rules_load_string(const struct config *cfg, const char *text, const char *name,
                      struct rules **out, struct pgsov_err *err)
{
    struct rules *rs = rules_new();
    if (!rs)
        return pgsov_fail(err, "%s: out of memory", name);
    if (parse_text(cfg, rs, text, strlen(text), name, err) < 0) {
        rules_free(rs);
        return -1;
    }
    *out = rs;
    return 0;
}

/* Reads a whole file (regular or not: /dev/null and pipes have no useful st_size). */
static int read_file(const char *path, char **text, size_t *len, struct pgsov_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return pgsov_fail(err, "%s: cannot open rule file: %s", path, strerror(errno));
    size_t cap = 4096, used = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return pgsov_fail(err, "%s: out of memory", path);
    }
    for (;;) {
        if (used == cap) {
            if (cap >= RULES_MAX_FILE) {
                free(buf);
                fclose(f);
                return pgsov_fail(err, "%s: rule file is larger than %u bytes", path,
                                  RULES_MAX_FILE);
            }
            char *grown = realloc(buf, cap * 2);
            if (!grown) {
                free(buf);
                fclose(f);
                return pgsov_fail(err, "%s: out of memory", path);
            }
            buf = grown;
            cap *= 2;
        }
        size_t got = fread(buf + used, 1, cap - used, f);
        used += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        int saved = errno;
        free(buf);
        fclose(f);
        return pgsov_fail(err, "%s: cannot read rule file: %s", path, strerror(saved));
    }
    fclose(f);
    *text = buf;
    *len = used;
    return 0;
}

int rules_load(const struct config *cfg, const char *const *paths, size_t n_paths,
               struct rules **out, struct pgsov_err *err)
{
    struct rules *rs = rules_new();
    if (!rs)
        return pgsov_fail(err, "out of memory loading rules");
    for (size_t i = 0; i < n_paths; i++) {
        char *text = NULL;
        size_t len = 0;
        if (read_file(paths[i], &text, &len, err) < 0) {
            rules_free(rs);
            return -1;
        }
        int rc = parse_text(cfg, rs, text, len, paths[i], err);
        free(text);
        if (rc < 0) {
            rules_free(rs);
            return -1;
        }
    }
    *out = rs;
    return 0;
}

size_t rules_count(const struct rules *rs)
{
    return rs ? rs->n : 0;
}

const struct rule *rules_get(const struct rules *rs, size_t i)
{
    return rs && i < rs->n ? &rs->rules[i] : NULL;
}

/* ---- matching -------------------------------------------------------------------------- */

static bool prefix_equal(const unsigned char *a, const unsigned char *b, unsigned prefix)
{
    size_t full = prefix / 8;
    unsigned rest = prefix % 8;
    if (memcmp(a, b, full) != 0)
        return false;
    if (rest == 0)
        return true;
    unsigned char mask = (unsigned char)(0xffu << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

static bool is_v4_mapped(const unsigned char *a)
{
    static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    return memcmp(a, mapped, sizeof mapped) == 0;
}

static bool cidr_match(const struct rule_cidr *c, const struct conn_facts *who)
{
    if (c->family == AF_INET) {
        if (who->family == AF_INET)
            return prefix_equal(c->addr, who->addr, c->prefix);
        /* An IPv6 socket reports IPv4 clients as ::ffff:a.b.c.d; they are IPv4 clients. */
        if (who->family == AF_INET6 && is_v4_mapped(who->addr))
            return prefix_equal(c->addr, who->addr + 12, c->prefix);
        return false;
    }
    /* An IPv4 client is not an IPv6 one because an IPv6 listener accepted it: IPv6 rules match
     * a mapped address only when they name the mapped range themselves (::ffff:10.0.0.0/104). */
    if (who->family != AF_INET6)
        return false;
    if (is_v4_mapped(who->addr) && !(c->prefix >= 96 && is_v4_mapped(c->addr)))
        return false;
    return prefix_equal(c->addr, who->addr, c->prefix);
}

static bool name_in(const char *const *names, size_t n, const char *name)
{
    if (n == 0)
        return true;            /* "all" */
    if (!name)
        return false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

static bool source_match(const struct rule *r, const struct conn_facts *who)
{
    if (r->source == RULE_SOURCE_ALL)
        return true;
    if (who->is_unix)
        return r->source_local;
    for (size_t i = 0; i < r->n_cidrs; i++)
        if (cidr_match(&r->cidrs[i], who))
            return true;
    return false;
}

static bool tls_match(const struct rule *r, const struct conn_facts *who)
{
    switch (r->tls) {
    case RULE_TLS_ANY:
        return true;
    case RULE_TLS_REQUIRED:
        return who->tls;
    case RULE_TLS_CERT:
        return who->tls && who->client_cert;
    case RULE_TLS_CN:
        return who->tls && who->client_cert && who->cert_cn && strcmp(who->cert_cn, r->tls_cn) == 0;
    case RULE_TLS_SHA256:
        return who->tls && who->client_cert && who->cert_sha256 &&
               memcmp(who->cert_sha256, r->tls_sha256, sizeof r->tls_sha256) == 0;
    }
    return false;               /* impossible value: fail closed */
}

const struct rule *rules_match(const struct rules *rs, const struct conn_facts *who)
{
    if (!rs || !who)
        return NULL;
    for (size_t i = 0; i < rs->n; i++) {
        const struct rule *r = &rs->rules[i];
        if (name_in(r->envs, r->n_envs, who->env) && name_in(r->users, r->n_users, who->user) &&
            source_match(r, who) && tls_match(r, who))
            return r;
    }
    return NULL;
}

/* ---- formatting ------------------------------------------------------------------------ */

void conn_facts_format_source(const struct conn_facts *who, char *buf, size_t size)
{
    char addr[INET6_ADDRSTRLEN];
    if (size == 0)
        return;
    if (who->is_unix) {
        snprintf(buf, size, "local");
    } else if (who->family == AF_INET && inet_ntop(AF_INET, who->addr, addr, sizeof addr)) {
        snprintf(buf, size, "%s", addr);
    } else if (who->family == AF_INET6 && inet_ntop(AF_INET6, who->addr, addr, sizeof addr)) {
        snprintf(buf, size, "[%s]", addr);
    } else {
        snprintf(buf, size, "unknown");
    }
}

struct out_buf {
    char *buf;
    size_t size, used;
};

__attribute__((format(printf, 2, 3)))
static void out_printf(struct out_buf *o, const char *fmt, ...)
{
    if (o->used + 1 >= o->size)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->used, o->size - o->used, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    o->used += (size_t)n < o->size - o->used ? (size_t)n : o->size - o->used - 1;
}

const char *rule_tls_name(enum rule_tls t)
{
    switch (t) {
    case RULE_TLS_ANY: return "any";
    case RULE_TLS_REQUIRED: return "tls";
    case RULE_TLS_CERT: return "cert";
    case RULE_TLS_CN: return "cn";
    case RULE_TLS_SHA256: return "sha256";
    }
    return "invalid";
}

const char *rule_auth_name(int auth)
{
    switch (auth) {
    case RULE_AUTH_PASSTHROUGH: return "passthrough";
    case RULE_AUTH_PROXY: return "proxy";
    default: return "unset";
    }
}

static bool needs_quotes(const char *s)
{
    for (; *s; s++)
        if (is_blank((unsigned char)*s) || *s == '#')
            return true;
    return false;
}

/* Names that the tokenizer only accepts in double quotes (blanks, '#') are written quoted,
 * so that the output of rule_format parses back to the same rule. */
static void out_word(struct out_buf *o, const char *before, const char *s)
{
    const char *q = needs_quotes(s) ? "\"" : "";
    out_printf(o, "%s%s%s%s", before, q, s, q);
}

static void out_names(struct out_buf *o, const char *const *names, size_t n)
{
    if (n == 0)
        out_printf(o, " all");
    for (size_t i = 0; i < n; i++)
        out_word(o, i ? "," : " ", names[i]);
}

void rule_format(const struct rule *r, char *buf, size_t size)
{
    struct out_buf o = { buf, size, 0 };
    if (size == 0)
        return;
    buf[0] = '\0';
    out_printf(&o, "%s", r->action == RULE_ALLOW ? "allow" : "deny");
    out_names(&o, r->envs, r->n_envs);
    if (r->source == RULE_SOURCE_ALL) {
        out_printf(&o, " all");
    } else {
        const char *sep = " ";
        if (r->source_local) {
            out_printf(&o, "%slocal", sep);
            sep = ",";
        }
        for (size_t i = 0; i < r->n_cidrs; i++) {
            char addr[INET6_ADDRSTRLEN] = "?";
            inet_ntop(r->cidrs[i].family, r->cidrs[i].addr, addr, sizeof addr);
            out_printf(&o, "%s%s/%u", sep, addr, r->cidrs[i].prefix);
            sep = ",";
        }
    }
    out_names(&o, r->users, r->n_users);
    if (r->tls == RULE_TLS_CN) {
        out_word(&o, " cn=", r->tls_cn);
    } else if (r->tls == RULE_TLS_SHA256) {
        out_printf(&o, " sha256=");
        for (size_t i = 0; i < sizeof r->tls_sha256; i++)
            out_printf(&o, "%02x", r->tls_sha256[i]);
    } else {
        out_printf(&o, " %s", rule_tls_name(r->tls));
    }
    if (r->action == RULE_ALLOW) {
        char classes[160];
        class_set_format(r->classes, classes, sizeof classes);
        out_printf(&o, " %s", classes);
        if (r->upstream_user)
            out_word(&o, " upstream_user=", r->upstream_user);
        if (r->auth != -1)
            out_printf(&o, " auth=%s", rule_auth_name(r->auth));
    }
}
