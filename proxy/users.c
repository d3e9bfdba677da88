/* users.c — the users file (who may log in to the proxy and how) and the login failure
 * back-off table. Pure apart from reading the file; no logging; no secrets in messages.
 * Does not decide where "trust" or "cert" are acceptable: the proxy's rules do. */
#include "pgsov/users.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#define LINE_MAX_LEN   4096
#define FILE_MAX_LEN   (16u << 20)
#define CN_MAX         255
#define MAX_TOKENS     4

struct certmap_entry {
    char cn[CN_MAX + 1];
    char user[SCRAM_NAME_MAX + 1];
    unsigned line;
};

struct users {
    struct user_entry *v;           /* sorted by name */
    size_t n, cap;
    struct certmap_entry *map;
    size_t map_n, map_cap;
};

/* ---- parsing ---- */

struct token {
    const char *p;
    size_t len;
};

/* Splits a line into at most MAX_TOKENS tokens: whitespace separates, "..." quotes (no
 * escapes; a quoted token must end at whitespace or the line's end), '#' outside quotes
 * starts a comment. Returns the count, or -1 with a reason. */
static int tokenize(const char *s, size_t len, struct token *t, const char **why)
{
    size_t i = 0;
    int n = 0;
    for (;;) {
        while (i < len && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (i == len || s[i] == '#')
            return n;
        if (n == MAX_TOKENS) {
            *why = "too many fields";
            return -1;
        }
        if (s[i] == '"') {
            const char *close = memchr(s + i + 1, '"', len - i - 1);
            if (!close) {
                *why = "unterminated quote";
                return -1;
            }
            size_t end = (size_t)(close - s);
            if (end + 1 < len && s[end + 1] != ' ' && s[end + 1] != '\t') {
                *why = "text right after a closing quote";
                return -1;
            }
            t[n].p = s + i + 1;
            t[n].len = end - i - 1;
            i = end + 1;
        } else {
            size_t start = i;
            while (i < len && s[i] != ' ' && s[i] != '\t')
                i++;
            t[n].p = s + start;
            t[n].len = i - start;
        }
        n++;
    }
}

static bool token_is(const struct token *t, const char *word)
{
    return t->len == strlen(word) && memcmp(t->p, word, t->len) == 0;
}

/* Copies a token into a NUL-terminated buffer; -1 when it does not fit or holds a NUL. */
static int token_copy(const struct token *t, char *buf, size_t size)
{
    if (t->len >= size || memchr(t->p, '\0', t->len))
        return -1;
    memcpy(buf, t->p, t->len);
    buf[t->len] = '\0';
    return 0;
}

static int grow(void **arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 16;
    void *p = realloc(*arr, ncap * elem);
    if (!p)
        return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct user_entry *)a)->name, ((const struct user_entry *)b)->name);
}

static int parse_line(struct users *u, const char *line, size_t len, unsigned lineno,
                      const char *origin, struct pgsov_err *err)
{
    struct token t[MAX_TOKENS];
    const char *why = NULL;
    int n = tokenize(line, len, t, &why);
    if (n < 0)
        return pgsov_fail(err, "%s:%u: %s", origin, lineno, why);
    if (n == 0)
        return 0;

    char name[SCRAM_NAME_MAX + 1];
    if (token_is(&t[0], "certmap")) {
        if (n != 3)
            return pgsov_fail(err, "%s:%u: expected: certmap <certificate CN> <user>", origin,
                              lineno);
        if (grow((void **)&u->map, &u->map_cap, u->map_n, sizeof *u->map) < 0)
            return pgsov_fail(err, "%s:%u: out of memory", origin, lineno);
        struct certmap_entry *m = &u->map[u->map_n];
        if (t[1].len == 0 || token_copy(&t[1], m->cn, sizeof m->cn) < 0)
            return pgsov_fail(err, "%s:%u: certificate CN must be 1..%d bytes", origin, lineno,
                              CN_MAX);
        if (token_copy(&t[2], m->user, sizeof m->user) < 0 ||
            scram_user_name_check(m->user, NULL) < 0)
            return pgsov_fail(err, "%s:%u: certmap target is not a valid user name", origin,
                              lineno);
        m->line = lineno;
        u->map_n++;
        return 0;
    }

    struct pgsov_err why_name;
    if (token_copy(&t[0], name, sizeof name) < 0)
        return pgsov_fail(err, "%s:%u: user name longer than %d bytes", origin, lineno,
                          SCRAM_NAME_MAX);
    if (scram_user_name_check(name, &why_name) < 0)
        return pgsov_fail(err, "%s:%u: %s", origin, lineno, why_name.msg);
    if (n == 1)
        return pgsov_fail(err, "%s:%u: user \"%s\" has no method (expected a SCRAM-SHA-256$ "
                               "verifier, 'cert' or 'trust')", origin, lineno, name);
    if (n > 2)
        return pgsov_fail(err, "%s:%u: unexpected text after the method of user \"%s\"", origin,
                          lineno, name);

    if (grow((void **)&u->v, &u->cap, u->n, sizeof *u->v) < 0)
        return pgsov_fail(err, "%s:%u: out of memory", origin, lineno);
    struct user_entry *e = &u->v[u->n];
    memset(e, 0, sizeof *e);
    memcpy(e->name, name, strlen(name) + 1);
    e->line = lineno;
    if (token_is(&t[1], "cert")) {
        e->method = USER_CERT;
    } else if (token_is(&t[1], "trust")) {
        e->method = USER_TRUST;
    } else if (t[1].len > 14 && memcmp(t[1].p, "SCRAM-SHA-256$", 14) == 0) {
        char text[LINE_MAX_LEN + 1];
        struct pgsov_err vwhy;
        int rc = token_copy(&t[1], text, sizeof text);
        if (rc == 0)
            rc = scram_verifier_parse(text, &e->verifier, &vwhy);
        else
            pgsov_strlcpy(vwhy.msg, "verifier contains a NUL byte", sizeof vwhy.msg);
        OPENSSL_cleanse(text, sizeof text);
        if (rc < 0)
            return pgsov_fail(err, "%s:%u: user \"%s\": %s", origin, lineno, name, vwhy.msg);
        e->method = USER_SCRAM;
    } else if (t[1].len == 35 && memcmp(t[1].p, "md5", 3) == 0) {
        return pgsov_fail(err, "%s:%u: user \"%s\": MD5 verifiers are not accepted; make a "
                               "SCRAM verifier with 'pgsov passwd %s'", origin, lineno, name, name);
    } else {
        /* Not quoted back: an unrecognised value may be a password pasted in by mistake. */
        return pgsov_fail(err, "%s:%u: user \"%s\": unknown method (expected a SCRAM-SHA-256$ "
                               "verifier, 'cert' or 'trust'; the value is not shown)",
                          origin, lineno, name);
    }
    u->n++;
    return 0;
}

/* Cross-line checks: duplicates, certmap targets. */
static int users_finish(struct users *u, const char *origin, struct pgsov_err *err)
{
    if (u->n > 1)
        qsort(u->v, u->n, sizeof *u->v, by_name);
    for (size_t i = 1; i < u->n; i++) {
        if (strcmp(u->v[i - 1].name, u->v[i].name) == 0) {
            unsigned a = u->v[i - 1].line, b = u->v[i].line;
            return pgsov_fail(err, "%s:%u: user \"%s\" is already defined on line %u", origin,
                              a > b ? a : b, u->v[i].name, a < b ? a : b);
        }
    }
    for (size_t i = 0; i < u->map_n; i++) {
        const struct user_entry *e = users_find(u, u->map[i].user);
        if (!e || e->method != USER_CERT)
            return pgsov_fail(err, "%s:%u: certmap names user \"%s\", which is not declared "
                                   "'cert' in this file", origin, u->map[i].line, u->map[i].user);
        for (size_t j = 0; j < i; j++)
            if (strcmp(u->map[j].cn, u->map[i].cn) == 0 &&
                strcmp(u->map[j].user, u->map[i].user) == 0)
                return pgsov_fail(err, "%s:%u: same certmap as line %u", origin, u->map[i].line,
                                  u->map[j].line);
    }
    return 0;
}

int users_parse(const char *text, size_t len, const char *origin, struct users **out,
                struct pgsov_err *err)
{
    struct users *u = calloc(1, sizeof *u);
    if (!u)
        return pgsov_fail(err, "%s: out of memory", origin);
    unsigned lineno = 0;
    size_t pos = 0;
    while (pos < len) {
        lineno++;
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        size_t llen = end - pos;
        if (llen > 0 && text[pos + llen - 1] == '\r')
            llen--;
        if (llen > LINE_MAX_LEN) {
            users_free(u);
            return pgsov_fail(err, "%s:%u: line longer than %d bytes", origin, lineno,
                              LINE_MAX_LEN);
        }
        if (memchr(text + pos, '\0', llen)) {
            users_free(u);
            return pgsov_fail(err, "%s:%u: NUL byte in line", origin, lineno);
        }
        if (parse_line(u, text + pos, llen, lineno, origin, err) < 0) {
            users_free(u);
            return -1;
        }
        pos = end + 1;
    }
    if (users_finish(u, origin, err) < 0) {
        users_free(u);
        return -1;
    }
    *out = u;
    return 0;
}

int users_load(const char *path, struct users **out, struct pgsov_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return pgsov_fail(err, "%s: cannot open users file: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return pgsov_fail(err, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return pgsov_fail(err, "%s: users file is not a regular file", path);
    }
    if (st.st_mode & (S_IRWXO)) {
        close(fd);
        return pgsov_fail(err, "%s: users file is accessible to other users (mode %04o); it "
                               "holds password verifiers: chmod o-rwx %s", path,
                          (unsigned)(st.st_mode & 07777), path);
    }
    if ((uintmax_t)st.st_size > FILE_MAX_LEN) {
        close(fd);
        return pgsov_fail(err, "%s: users file larger than %u bytes", path, FILE_MAX_LEN);
    }
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size + 1);
    if (!buf) {
        close(fd);
        return pgsov_fail(err, "%s: out of memory", path);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    int read_errno = errno;
    close(fd);
    if (got != size) {
        OPENSSL_cleanse(buf, got);
        free(buf);
        return pgsov_fail(err, "%s: short read: %s", path, strerror(read_errno));
    }
    int rc = users_parse(buf, size, path, out, err);
    OPENSSL_cleanse(buf, size);
    free(buf);
    return rc;
}

const struct user_entry *users_find(const struct users *u, const char *name)
{
    if (!u || u->n == 0 || strlen(name) > SCRAM_NAME_MAX)
        return NULL;
    struct user_entry key;
    memcpy(key.name, name, strlen(name) + 1);
    return bsearch(&key, u->v, u->n, sizeof *u->v, by_name);
}

bool users_cert_allows(const struct users *u, const char *cn, size_t cn_len, const char *user)
{
    const struct user_entry *e = users_find(u, user);
    if (!e || e->method != USER_CERT || cn_len == 0 || cn_len > CN_MAX ||
        memchr(cn, '\0', cn_len))
        return false;
    if (cn_len == strlen(user) && memcmp(cn, user, cn_len) == 0)
        return true;
    for (size_t i = 0; i < u->map_n; i++)
        if (strlen(u->map[i].cn) == cn_len && memcmp(u->map[i].cn, cn, cn_len) == 0 &&
            strcmp(u->map[i].user, user) == 0)
            return true;
    return false;
}

size_t users_count(const struct users *u)
{
    return u ? u->n : 0;
}

void users_free(struct users *u)
{
    if (!u)
        return;
    if (u->v) {
        OPENSSL_cleanse(u->v, u->cap * sizeof *u->v);
        free(u->v);
    }
    free(u->map);
    free(u);
}

/* ---- failure back-off ---- */

#define WAYS 8

struct backoff_slot {
    unsigned char key[BACKOFF_KEY_LEN];
    bool used;
    unsigned failures;
    uint64_t last_ms;
};

struct backoff {
    struct backoff_policy policy;
    uint64_t seed;
    size_t buckets;
    struct backoff_slot slots[];
};

struct backoff *backoff_new(size_t slots, const struct backoff_policy *p, uint64_t seed,
                            struct pgsov_err *err)
{
    if (slots > (1u << 24)) {
        pgsov_fail(err, "back-off table of %zu slots is too large", slots);
        return NULL;
    }
    size_t buckets = slots < WAYS ? 1 : (slots + WAYS - 1) / WAYS;
    struct backoff *b = calloc(1, sizeof *b + buckets * WAYS * sizeof b->slots[0]);
    if (!b) {
        pgsov_fail(err, "out of memory");
        return NULL;
    }
    b->policy = *p;
    b->seed = seed;
    b->buckets = buckets;
    return b;
}

void backoff_free(struct backoff *b)
{
    free(b);
}

/* Keyed FNV-1a then a final mix; not cryptographic, but the seed is unknown to clients. */
static size_t bucket_of(const struct backoff *b, const unsigned char *key)
{
    uint64_t h = 0xcbf29ce484222325ull ^ b->seed;
    for (size_t i = 0; i < BACKOFF_KEY_LEN; i++) {
        h ^= key[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return (size_t)(h % b->buckets);
}

static bool slot_live(const struct backoff *b, const struct backoff_slot *s, uint64_t now_ms)
{
    return s->used && now_ms - s->last_ms < b->policy.window_ms;
}

static struct backoff_slot *slot_find(const struct backoff *b, const unsigned char *key)
{
    struct backoff_slot *s = (struct backoff_slot *)&b->slots[bucket_of(b, key) * WAYS];
    for (size_t i = 0; i < WAYS; i++)
        if (s[i].used && memcmp(s[i].key, key, BACKOFF_KEY_LEN) == 0)
            return &s[i];
    return NULL;
}

static unsigned delay_for(const struct backoff_policy *p, unsigned failures)
{
    if (failures <= p->free_failures)
        return 0;
    unsigned shift = failures - p->free_failures - 1;
    uint64_t d = shift >= 32 ? UINT64_MAX : (uint64_t)p->base_ms << shift;
    return d > p->cap_ms ? p->cap_ms : (unsigned)d;
}

unsigned backoff_failure(struct backoff *b, const unsigned char key[BACKOFF_KEY_LEN],
                         uint64_t now_ms)
{
    struct backoff_slot *s = slot_find(b, key);
    if (s && !slot_live(b, s, now_ms))
        s->failures = 0;
    if (!s) {
        /* A free or expired way, else the one that failed longest ago. */
        struct backoff_slot *way = &b->slots[bucket_of(b, key) * WAYS];
        s = &way[0];
        for (size_t i = 0; i < WAYS; i++) {
            if (!slot_live(b, &way[i], now_ms)) {
                s = &way[i];
                break;
            }
            if (way[i].last_ms < s->last_ms)
                s = &way[i];
        }
        memcpy(s->key, key, BACKOFF_KEY_LEN);
        s->used = true;
        s->failures = 0;
    }
    if (s->failures < UINT32_MAX)
        s->failures++;
    s->last_ms = now_ms;
    return delay_for(&b->policy, s->failures);
}

unsigned backoff_delay(const struct backoff *b, const unsigned char key[BACKOFF_KEY_LEN],
                       uint64_t now_ms)
{
    const struct backoff_slot *s = slot_find(b, key);
    if (!s || !slot_live(b, s, now_ms))
        return 0;
    return delay_for(&b->policy, s->failures);
}

void backoff_success(struct backoff *b, const unsigned char key[BACKOFF_KEY_LEN])
{
    struct backoff_slot *s = slot_find(b, key);
    if (s)
        memset(s, 0, sizeof *s);
}

void backoff_key_from_sockaddr(const struct sockaddr *sa, unsigned char key[BACKOFF_KEY_LEN])
{
    memset(key, 0, BACKOFF_KEY_LEN);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        key[10] = 0xff;
        key[11] = 0xff;
        memcpy(key + 12, &in->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        const unsigned char *a = in6->sin6_addr.s6_addr;
        static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
        if (memcmp(a, mapped, 12) == 0)
            memcpy(key, a, 16);       /* v4-mapped: the whole IPv4 address */
        else
            memcpy(key, a, 8);        /* /64 */
    }
}
