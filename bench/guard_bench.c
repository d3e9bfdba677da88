/* guard_bench.c — micro-benchmark of the statement classifier (proxy/guard.c) on a corpus of
 * typical ORM statements (Prisma, Drizzle, Rails, Django, SQLAlchemy shapes) and on pgbench's
 * statements. Prints, as the median of several rounds, statements per second and µs per
 * statement for: exact-level hits (repeated text); masked-level hits (the statements with
 * their literal values changed on every pass, as a simple-protocol client or a driver that
 * interpolates parameters sends them, so the exact level always misses); misses with the cache
 * disabled (parse + walk); unique texts with only the exact level on (parse + walk + insert +
 * eviction). No arguments; runs in a few seconds. */
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

/* pgbench's statements as its simple protocol sends them (-M simple): the literal values
 * change on every transaction. */
static const char *const pgbench_corpus[] = {
    "SELECT abalance FROM pgbench_accounts WHERE aid = 81734;",                 /* -S */
    "UPDATE pgbench_accounts SET abalance = abalance + 4075 WHERE aid = 5361;",
    "SELECT abalance FROM pgbench_accounts WHERE aid = 5361;",
    "UPDATE pgbench_tellers SET tbalance = tbalance + 4075 WHERE tid = 7;",
    "UPDATE pgbench_branches SET bbalance = bbalance + 4075 WHERE bid = 1;",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 5361, 4075, "
    "CURRENT_TIMESTAMP);",
};
#define N_PGBENCH (sizeof pgbench_corpus / sizeof pgbench_corpus[0])

/* Texts to classify in order, per_pass of them per pass. */
struct texts {
    char **text;
    size_t *len;
    size_t n, per_pass;
};

/* Median seconds per statement over ROUNDS rounds of PASSES passes over t (t->n texts are
 * used in order, wrapping; unique: each text gets a distinct leading comment first). */
static double run(struct guard *g, const struct texts *t, bool unique)
{
    double per_stmt[ROUNDS];
    struct guard_verdict v;
    unsigned long serial = 0;
    size_t next = 0;
    char buf[4096];
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = now_seconds();
        for (int p = 0; p < PASSES; p++) {
            for (size_t i = 0; i < t->per_pass; i++) {
                const char *sql = t->text[next];
                size_t len = t->len[next];
                next = (next + 1) % t->n;
                if (unique) {
                    int n = snprintf(buf, sizeof buf, "/* %lu */ %s", serial++, sql);
                    if (n < 0 || (size_t)n >= sizeof buf)
                        exit(1);
                    sql = buf;
                    len = (size_t)n;
                }
                guard_classify(g, sql, len, &v);
                if (v.worst == CLASS_UNKNOWN) {
                    fprintf(stderr, "guard_bench: %s is unknown: %s\n", sql, v.reason);
                    exit(1);
                }
            }
        }
        per_stmt[r] = (now_seconds() - t0) / (double)(PASSES * t->per_pass);
    }
    qsort(per_stmt, ROUNDS, sizeof per_stmt[0], cmp_double);
    return per_stmt[ROUNDS / 2];
}

static void report(const char *what, double seconds)
{
    printf("  %-44s %12.0f %10.2f\n", what, 1.0 / seconds, seconds * 1e6);
}

static int texts_add(struct texts *t, const char *sql, size_t len)
{
    char **text = realloc(t->text, (t->n + 1) * sizeof *text);
    if (text)
        t->text = text;
    size_t *lens = realloc(t->len, (t->n + 1) * sizeof *lens);
    if (lens)
        t->len = lens;
    char *copy = malloc(len + 1);
    if (!text || !lens || !copy) {
        free(copy);
        return -1;
    }
    memcpy(copy, sql, len);
    copy[len] = '\0';
    t->text[t->n] = copy;
    t->len[t->n++] = len;
    return 0;
}

static void texts_free(struct texts *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->text[i]);
    free(t->text);
    free(t->len);
}

/* The statements of src whose literal values can vary and whose verdict the masked level
 * shares (a probe guard tells), as ROUNDS x PASSES distinct variants each, in pass order:
 * no text repeats during a run, so the exact level always misses. *never_shared counts the
 * statements left out because their verdict reads a literal. */
static int make_variants(const char *const *src, size_t n_src, struct texts *t,
                         size_t *never_shared)
{
    bool use[64];
    char a[2048];
    *never_shared = 0;
    if (n_src > 64)
        return -1;
    for (size_t i = 0; i < n_src; i++) {
        struct guard *probe = guard_new(NULL);
        if (!probe)
            return -1;
        struct guard_verdict v;
        struct guard_stats st;
        for (unsigned long serial = 1; serial <= 2; serial++) {
            size_t n = vary_literals(src[i], serial, a, sizeof a);
            if (n)
                guard_classify(probe, a, n, &v);
        }
        guard_get_stats(probe, &st);
        guard_free(probe);
        use[i] = st.masked_hits + st.digit_hits == 1;   /* shared by either level */
        *never_shared += !use[i] && st.misses == 2;
        t->per_pass += use[i];
    }
    for (unsigned long serial = 10; t->n < t->per_pass * PASSES * ROUNDS; serial++)
        for (size_t i = 0; i < n_src; i++) {
            if (!use[i])
                continue;
            size_t n = vary_literals(src[i], serial, a, sizeof a);
            if (!n || texts_add(t, a, n) < 0)
                return -1;
        }
    return 0;
}

static void masked_stats(const char *what, struct guard *g, const struct guard_stats *before)
{
    struct guard_stats st;
    guard_get_stats(g, &st);
    printf("  %s: %llu digit hits, %llu masked hits, %llu exact hits, %llu parsed\n", what,
           (unsigned long long)(st.digit_hits - before->digit_hits),
           (unsigned long long)(st.masked_hits - before->masked_hits),
           (unsigned long long)(st.hits - before->hits),
           (unsigned long long)(st.misses - before->misses));
}

int main(void)
{
    struct texts plain = { 0 }, orm = { 0 }, pgb = { 0 };
    size_t total = 0, orm_never = 0, pgb_never = 0;
    for (size_t i = 0; i < N_CORPUS; i++) {
        total += strlen(corpus[i]);
        if (texts_add(&plain, corpus[i], strlen(corpus[i])) < 0)
            return 1;
    }
    plain.per_pass = plain.n;
    if (make_variants(corpus, N_CORPUS, &orm, &orm_never) < 0 ||
        make_variants(pgbench_corpus, N_PGBENCH, &pgb, &pgb_never) < 0) {
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

    /* Warm up libpg_query's per-thread state and the caches: the repeated texts, and one
     * variant of each varying statement (serial 1, never used by the timed runs). */
    struct guard_verdict v;
    char warm[2048];
    for (size_t i = 0; i < N_CORPUS; i++) {
        guard_classify(cached, corpus[i], strlen(corpus[i]), &v);
        size_t n = vary_literals(corpus[i], 1, warm, sizeof warm);
        if (n)
            guard_classify(masked, warm, n, &v);
    }
    for (size_t i = 0; i < N_PGBENCH; i++) {
        size_t n = vary_literals(pgbench_corpus[i], 1, warm, sizeof warm);
        if (n)
            guard_classify(masked, warm, n, &v);
    }

    struct guard_stats before_orm, before_pgb;
    double hit = run(cached, &plain, false);
    guard_get_stats(masked, &before_orm);
    double masked_orm = run(masked, &orm, false);
    guard_get_stats(masked, &before_pgb);
    double masked_pgb = run(masked, &pgb, false);
    double miss = run(uncached, &plain, false);
    double uniq = run(exact_only, &plain, true);
    /* What the masked key adds to a miss: texts that miss both levels (a new table name
     * each time), through a guard with both levels and through one without a cache. */
    struct texts fresh = { 0 };
    for (unsigned long n = 0; n < (unsigned long)(PASSES * ROUNDS * 8); n++) {
        int len = snprintf(warm, sizeof warm,
                           "SELECT abalance FROM pgbench_accounts_%lu WHERE aid = %lu;", n, n);
        if (len < 0 || texts_add(&fresh, warm, (size_t)len) < 0)
            return 1;
    }
    fresh.per_pass = 8;
    struct guard *both = guard_new(NULL);
    if (!both)
        return 1;
    double miss_both = run(both, &fresh, false);
    double miss_none = run(uncached, &fresh, false);

    printf("guard_bench: %zu ORM-style statements (mean %zu bytes), median of %d rounds x %d "
           "passes\n", N_CORPUS, total / N_CORPUS, ROUNDS, PASSES);
    printf("  %-44s %12s %10s\n", "mode", "stmts/s", "us/stmt");
    report("exact hit (repeated text)", hit);
    report("shared hit (digit/masked), ORM, literals vary", masked_orm);
    report("shared hit (digit/masked), pgbench -M simple", masked_pgb);
    report("miss, cache off (parse + walk)", miss);
    report("miss, unique text (exact level: insert/evict)", uniq);
    report("miss, new table name, cache off", miss_none);
    report("miss, new table name, both levels (+key)", miss_both);
    printf("  masked rows: %zu of %zu ORM statements vary and are shared (%zu never shared: "
           "their verdict reads a literal); %zu of %zu pgbench statements\n", orm.per_pass,
           N_CORPUS, orm_never, pgb.per_pass, N_PGBENCH);
    masked_stats("ORM masked run", masked, &before_orm);
    masked_stats("pgbench masked run", masked, &before_pgb);

    guard_free(cached);
    guard_free(masked);
    guard_free(exact_only);
    guard_free(uncached);
    guard_free(both);
    texts_free(&fresh);
    texts_free(&plain);
    texts_free(&orm);
    texts_free(&pgb);
    return 0;
}
