/* guard_bench.c — micro-benchmark of the statement classifier (proxy/guard.c) on a corpus of
 * typical ORM statements (Prisma, Drizzle, Rails, Django, SQLAlchemy shapes). Prints, as the
 * median of several rounds, statements per second and µs per statement for exact cache hits
 * (repeated text), masked cache hits (the corpus with its literal values changed on every
 * pass, as a simple-protocol client sends it: the exact level always misses), misses with the
 * cache disabled (parse + walk), and unique texts with only the exact level on (parse + walk
 * + insert + eviction). Also the cost of the masked key alone on a miss. No arguments; runs in
 * a few seconds. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pgsov/guard.h"

static const char *const corpus[] = {
    /* Prisma */
    "SELECT \"public\".\"User\".\"id\", \"public\".\"User\".\"email\", \"public\".\"User\".\"name\" "
    "FROM \"public\".\"User\" WHERE \"public\".\"User\".\"id\" = $1 LIMIT $2 OFFSET $3",
    "INSERT INTO \"public\".\"Post\" (\"title\",\"content\",\"authorId\",\"createdAt\") "
    "VALUES ($1,$2,$3,$4) RETURNING \"public\".\"Post\".\"id\", \"public\".\"Post\".\"title\"",
    "UPDATE \"public\".\"Post\" SET \"published\" = $1, \"updatedAt\" = $2 WHERE "
    "(\"public\".\"Post\".\"id\" = $3 AND 1=1) RETURNING \"public\".\"Post\".\"id\"",
    "DELETE FROM \"public\".\"Session\" WHERE \"public\".\"Session\".\"expires\" < $1",
    "SELECT COUNT(*) AS \"_count._all\" FROM (SELECT \"public\".\"Post\".\"id\" FROM "
    "\"public\".\"Post\" WHERE \"public\".\"Post\".\"published\" = $1 OFFSET $2) AS \"sub\"",
    /* Drizzle */
    "select \"id\", \"name\", \"email\" from \"users\" where \"users\".\"email\" = $1 limit $2",
    "insert into \"orders\" (\"id\", \"user_id\", \"total\", \"status\") values (default, $1, $2, $3) "
    "returning \"id\"",
    "insert into \"cart_items\" (\"cart_id\", \"product_id\", \"qty\") values ($1, $2, $3) "
    "on conflict (\"cart_id\", \"product_id\") do update set \"qty\" = \"cart_items\".\"qty\" + "
    "excluded.\"qty\"",
    "select \"users\".\"id\", \"posts\".\"id\", \"posts\".\"title\" from \"users\" left join "
    "\"posts\" on \"users\".\"id\" = \"posts\".\"author_id\" where \"users\".\"id\" in ($1, $2, $3)",
    /* Rails / ActiveRecord */
    "SELECT \"accounts\".* FROM \"accounts\" WHERE \"accounts\".\"id\" = $1 LIMIT $2",
    "SELECT 1 AS one FROM \"users\" WHERE \"users\".\"email\" = $1 AND \"users\".\"id\" != $2 "
    "LIMIT $3",
    "INSERT INTO \"comments\" (\"body\", \"post_id\", \"created_at\", \"updated_at\") VALUES "
    "($1, $2, $3, $4) RETURNING \"id\"",
    "UPDATE \"posts\" SET \"comments_count\" = COALESCE(\"comments_count\", 0) + 1 WHERE "
    "\"posts\".\"id\" = $1",
    "SELECT \"schema_migrations\".\"version\" FROM \"schema_migrations\" ORDER BY "
    "\"schema_migrations\".\"version\" ASC",
    "SELECT \"products\".* FROM \"products\" INNER JOIN \"categories\" ON "
    "\"categories\".\"id\" = \"products\".\"category_id\" WHERE \"categories\".\"slug\" = $1 "
    "ORDER BY \"products\".\"created_at\" DESC LIMIT $2",
    /* Django */
    "SELECT \"auth_user\".\"id\", \"auth_user\".\"password\", \"auth_user\".\"last_login\", "
    "\"auth_user\".\"is_superuser\", \"auth_user\".\"username\" FROM \"auth_user\" WHERE "
    "\"auth_user\".\"username\" = 'alice' LIMIT 21",
    "SELECT \"django_session\".\"session_key\", \"django_session\".\"session_data\", "
    "\"django_session\".\"expire_date\" FROM \"django_session\" WHERE "
    "(\"django_session\".\"expire_date\" > '2024-01-01T00:00:00'::timestamptz AND "
    "\"django_session\".\"session_key\" = 'abc') LIMIT 21",
    "UPDATE \"shop_order\" SET \"status\" = 'paid' WHERE \"shop_order\".\"id\" = 42",
    "SELECT \"shop_item\".\"id\" FROM \"shop_item\" WHERE \"shop_item\".\"id\" = 7 FOR UPDATE",
    "SELECT COUNT(*) AS \"__count\" FROM \"shop_order\" WHERE \"shop_order\".\"user_id\" = 3",
    /* SQLAlchemy / raw */
    "WITH recent AS (SELECT user_id, max(created_at) AS at FROM events GROUP BY user_id) "
    "SELECT u.id, r.at FROM users u JOIN recent r ON r.user_id = u.id WHERE r.at > now() - "
    "interval '7 days'",
    "SELECT id, payload FROM jobs WHERE state = 'ready' ORDER BY id LIMIT 10 FOR UPDATE SKIP "
    "LOCKED",
    "WITH moved AS (DELETE FROM jobs WHERE state = 'done' RETURNING *) INSERT INTO "
    "jobs_archive SELECT * FROM moved",
    /* session and transaction chatter */
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT active_record_1",
    "RELEASE SAVEPOINT active_record_1",
    "SET search_path TO public",
    "SET TIME ZONE 'UTC'",
    "SHOW TRANSACTION ISOLATION LEVEL",
    "SELECT set_config('request.jwt.claims', $1, true)",
};

#define N_CORPUS (sizeof corpus / sizeof corpus[0])
#define ROUNDS 7
#define PASSES 60           /* corpus passes per round */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

enum mode { MODE_HIT, MODE_MISS, MODE_UNIQUE, MODE_VARIANTS };

/* Appends to out; false when it does not fit. */
__attribute__((format(printf, 4, 5)))
static bool append(char *out, size_t cap, size_t *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + *o, cap - *o, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap - *o)
        return false;
    *o += (size_t)n;
    return true;
}

static bool ident_char(char c)
{
    return c == '_' || c == '$' || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

/* A variant of sql with other literal values (bench input, not a lexer the guard relies on):
 * '...' strings become 'v<serial>', $n parameters and free-standing integers become numbers
 * derived from serial; quoted identifiers and digits inside identifiers stay. 0: no room. */
static size_t vary_literals(const char *sql, unsigned long serial, char *out, size_t cap)
{
    size_t o = 0;
    bool ok = true;
    for (const char *p = sql; *p && ok;) {
        if (*p == '"' || *p == '\'') {
            const char *e = strchr(p + 1, *p);
            if (!e)
                return 0;
            ok = *p == '"' ? append(out, cap, &o, "%.*s", (int)(e + 1 - p), p)
                           : append(out, cap, &o, "'v%lu'", serial);
            p = e + 1;
        } else if ((*p == '$' && p[1] >= '0' && p[1] <= '9') ||
                   (*p >= '0' && *p <= '9' && (p == sql || !ident_char(p[-1])))) {
            p += *p == '$';
            char *e;
            unsigned long k = strtoul(p, &e, 10);
            p = e;
            ok = append(out, cap, &o, "%lu", (serial * 7919 + k) % 1000003 + 1);
        } else {
            ok = append(out, cap, &o, "%c", *p);
            p++;
        }
    }
    return ok ? o : 0;
}

struct texts {
    char **text;
    size_t *len;
    size_t n;
};

/* Median seconds per statement over ROUNDS rounds. */
static double run(struct guard *g, enum mode mode, size_t *lengths, char **unique,
                  const struct texts *variants)
{
    double per_stmt[ROUNDS];
    struct guard_verdict v;
    unsigned long serial = 0;
    size_t next = 0;
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = now_seconds();
        size_t count = 0;
        for (int p = 0; p < PASSES; p++) {
            for (size_t i = 0; i < N_CORPUS; i++, count++) {
                if (mode == MODE_VARIANTS) {
                    guard_classify(g, variants->text[next], variants->len[next], &v);
                    next = (next + 1) % variants->n;
                } else if (mode == MODE_UNIQUE) {
                    /* A distinct comment makes every text new to the cache. */
                    int n = snprintf(unique[i], lengths[i] + 32, "/* %lu */ %s", serial++,
                                     corpus[i]);
                    guard_classify(g, unique[i], (size_t)n, &v);
                } else {
                    guard_classify(g, corpus[i], lengths[i], &v);
                }
                if (v.worst == CLASS_UNKNOWN) {
                    fprintf(stderr, "guard_bench: corpus statement %zu is unknown: %s\n", i,
                            v.reason);
                    exit(1);
                }
            }
        }
        per_stmt[r] = (now_seconds() - t0) / (double)count;
    }
    qsort(per_stmt, ROUNDS, sizeof per_stmt[0], cmp_double);
    return per_stmt[ROUNDS / 2];
}

static void report(const char *what, double seconds)
{
    printf("  %-40s %12.0f %10.2f\n", what, 1.0 / seconds, seconds * 1e6);
}

/* ROUNDS x PASSES distinct variants of every corpus statement that has a literal value to
 * vary, in pass order, so no text repeats during the masked-hit run. */
static int make_variants(struct texts *t, size_t *n_statements)
{
    size_t per_pass = 0;
    bool varies[N_CORPUS];
    char a[2048], b[2048];
    for (size_t i = 0; i < N_CORPUS; i++) {
        size_t la = vary_literals(corpus[i], 1, a, sizeof a);
        size_t lb = vary_literals(corpus[i], 2, b, sizeof b);
        varies[i] = la && lb && (la != lb || memcmp(a, b, la) != 0);
        per_pass += varies[i];
    }
    *n_statements = per_pass;
    t->n = per_pass * PASSES * ROUNDS;
    t->text = calloc(t->n, sizeof *t->text);
    t->len = calloc(t->n, sizeof *t->len);
    if (!t->text || !t->len)
        return -1;
    size_t k = 0;
    for (unsigned long serial = 10; k < t->n; serial++)
        for (size_t i = 0; i < N_CORPUS && k < t->n; i++) {
            if (!varies[i])
                continue;
            t->len[k] = vary_literals(corpus[i], serial, a, sizeof a);
            t->text[k] = malloc(t->len[k] + 1);
            if (!t->text[k])
                return -1;
            memcpy(t->text[k], a, t->len[k] + 1);
            k++;
        }
    return 0;
}

int main(void)
{
    size_t lengths[N_CORPUS];
    char *unique[N_CORPUS];
    size_t total = 0;
    for (size_t i = 0; i < N_CORPUS; i++) {
        lengths[i] = strlen(corpus[i]);
        total += lengths[i];
        unique[i] = malloc(lengths[i] + 32);
        if (!unique[i]) {
            fprintf(stderr, "guard_bench: out of memory\n");
            return 1;
        }
    }
    struct texts variants = { 0 };
    size_t n_varying = 0;
    if (make_variants(&variants, &n_varying) < 0) {
        fprintf(stderr, "guard_bench: out of memory\n");
        return 1;
    }

    struct guard_options opt;
    guard_options_default(&opt);
    struct guard *cached = guard_new(&opt);
    struct guard *masked = guard_new(&opt);
    opt.masked_cache_off = true;
    struct guard *exact_only = guard_new(&opt);
    opt.cache_entries = 0;
    struct guard *uncached = guard_new(&opt);
    if (!cached || !masked || !exact_only || !uncached) {
        fprintf(stderr, "guard_bench: guard_new failed\n");
        return 1;
    }

    /* Warm up libpg_query's per-thread state and the caches (the masked one with variants
     * that the timed run does not use again before it wraps around). */
    struct guard_verdict v;
    for (size_t i = 0; i < N_CORPUS; i++)
        guard_classify(cached, corpus[i], lengths[i], &v);
    char warm[2048];
    for (size_t i = 0; i < N_CORPUS; i++) {
        size_t n = vary_literals(corpus[i], 1, warm, sizeof warm);
        if (n)
            guard_classify(masked, warm, n, &v);
    }
    struct guard_stats before;
    guard_get_stats(masked, &before);

    double hit = run(cached, MODE_HIT, lengths, unique, NULL);
    double masked_hit = run(masked, MODE_VARIANTS, lengths, unique, &variants);
    double miss = run(uncached, MODE_MISS, lengths, unique, NULL);
    double uniq = run(exact_only, MODE_UNIQUE, lengths, unique, NULL);

    struct guard_stats st, ms, us;
    guard_get_stats(cached, &st);
    guard_get_stats(masked, &ms);
    guard_get_stats(exact_only, &us);
    printf("guard_bench: %zu ORM-style statements (mean %zu bytes), median of %d rounds x %d "
           "passes\n", N_CORPUS, total / N_CORPUS, ROUNDS, PASSES);
    printf("  %-40s %12s %10s\n", "mode", "stmts/s", "us/stmt");
    report("cache hit (repeated text)", hit);
    report("masked hit (literals vary, simple protocol)", masked_hit);
    report("miss, cache off (parse + walk)", miss);
    report("miss, unique text (+insert/evict)", uniq);
    printf("  exact level, repeated text: %llu hits, %llu misses\n",
           (unsigned long long)st.hits, (unsigned long long)st.misses);
    printf("  masked run, %zu statements with literals: %llu masked hits, %llu exact hits, "
           "%llu parsed (never shared: they read a literal)\n", n_varying,
           (unsigned long long)(ms.masked_hits - before.masked_hits),
           (unsigned long long)(ms.hits - before.hits),
           (unsigned long long)(ms.misses - before.misses));
    printf("  unique run: %llu misses, %llu evictions\n", (unsigned long long)us.misses,
           (unsigned long long)us.evictions);

    guard_free(cached);
    guard_free(masked);
    guard_free(exact_only);
    guard_free(uncached);
    for (size_t i = 0; i < N_CORPUS; i++)
        free(unique[i]);
    for (size_t i = 0; i < variants.n; i++)
        free(variants.text[i]);
    free(variants.text);
    free(variants.len);
    return 0;
}
