/* seed_cmd.c — `pgsov seed`: the thin layer around the pure seed core (seed.h): flags, the
 * production refusal, CSV files for --out, the dry run, and loading with COPY in one
 * transaction. Production is refused three ways, with no override: by the environment name,
 * by the hostname guard (target_open) and by the database's own attestation. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <pthread.h>

#include <libpq-fe.h>

#include "pgsov/env.h"
#include "seed.h"
#include "target.h"
#include "tools.h"

struct seed_opts {
    struct target_options target;
    const char *scenario;
    const char *out_dir;
    uint64_t seed;
    bool have_seed, truncate, dry_run, no_bulk, text_copy;
    double scale;
};

static void seed_usage(FILE *out)
{
    fprintf(out,
            "usage: pgsov seed --scenario FILE --seed N [options]\n"
            "\n"
            "Fills an environment's tables with deterministic, realistic test data: the same\n"
            "scenario and seed give byte-identical rows on any machine, on any day.\n"
            "Production is always refused (by name, hostname guard and attestation).\n"
            "\n"
            "options:\n"
            "  --scenario FILE     scenario (JSON; see docs/seed.md), e.g. rules/scenarios/credito.json\n"
            "  --seed N            64-bit seed (decimal)\n"
            "  --scale F           multiply the root tables' row counts by F (default 1)\n"
            "  --truncate          empty the scenario's tables first (same transaction)\n"
            "  --dry-run           print row counts and sample rows; connect to nothing\n"
            "  --no-bulk           keep keys and indexes in place while loading (slower; see\n"
            "                      docs/seed.md, \"bulk load\")\n"
            "  --text-copy         send rows as COPY text (the server parses every value)\n"
            "                      instead of COPY binary\n"
            "  --out DIR           write one CSV file per table (RFC 4180) instead of loading\n"
            TARGET_FLAGS_HELP
            "  -h, --help          this text\n");
}

/* "--name VALUE" or "--name=VALUE": 1 with *val set and *i advanced, 0 no match, -1 missing. */
static int flag_value(int argc, char **argv, int *i, const char *name, const char **val)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return 0;
    if (argv[*i][n] == '=') {
        *val = argv[*i] + n + 1;
        return 1;
    }
    if (argv[*i][n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *val = argv[++*i];
    return 1;
}

static int parse_args(int argc, char **argv, struct seed_opts *o, struct pgsov_err *err)
{
    memset(o, 0, sizeof *o);
    o->scale = 1.0;
    o->target.application_name = "pgsov-seed";
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int r = target_parse_flag(&o->target, argc, argv, &i, err);
        if (r < 0)
            return -1;
        if (r > 0) {
            i--;        /* target_parse_flag advanced past the value; the loop adds one */
            continue;
        }
        if ((r = flag_value(argc, argv, &i, "--scenario", &v)) != 0) {
            if (r < 0)
                return pgsov_fail(err, "--scenario needs a file");
            o->scenario = v;
        } else if ((r = flag_value(argc, argv, &i, "--seed", &v)) != 0) {
            char *end;
            if (r < 0)
                return pgsov_fail(err, "--seed needs a number");
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-')
                return pgsov_fail(err, "--seed \"%s\": expected a decimal number 0..2^64-1", v);
            o->seed = s;
            o->have_seed = true;
        } else if ((r = flag_value(argc, argv, &i, "--scale", &v)) != 0) {
            char *end;
            if (r < 0)
                return pgsov_fail(err, "--scale needs a number");
            o->scale = strtod(v, &end);
            if (end == v || *end || !(o->scale > 0) || o->scale > 1e6)
                return pgsov_fail(err, "--scale \"%s\": expected a number > 0", v);
        } else if ((r = flag_value(argc, argv, &i, "--out", &v)) != 0) {
            if (r < 0)
                return pgsov_fail(err, "--out needs a directory");
            o->out_dir = v;
        } else if (strcmp(argv[i], "--truncate") == 0) {
            o->truncate = true;
        } else if (strcmp(argv[i], "--dry-run") == 0) {
            o->dry_run = true;
        } else if (strcmp(argv[i], "--no-bulk") == 0) {
            o->no_bulk = true;
        } else if (strcmp(argv[i], "--text-copy") == 0) {
            o->text_copy = true;
        } else {
            return pgsov_fail(err, "unknown option \"%s\" (see pgsov seed --help)", argv[i]);
        }
    }
    if (!o->scenario)
        return pgsov_fail(err, "--scenario FILE is required");
    if (!o->have_seed)
        return pgsov_fail(err, "--seed N is required (the same seed gives the same data)");
    if (o->out_dir && o->dry_run)
        return pgsov_fail(err, "--out and --dry-run exclude each other");
    if (o->truncate && (o->out_dir || o->dry_run))
        return pgsov_fail(err, "--truncate only applies when loading a database");
    if (o->text_copy && (o->out_dir || o->dry_run))
        return pgsov_fail(err, "--text-copy only applies when loading a database");
    return 0;
}

/* The first refusal: an environment whose name means production, however it was given. */
static int refuse_production_name(const char *name, const char *how, struct pgsov_err *err)
{
    const char *canon = name ? env_canonical_name(name) : NULL;
    if (name && ((canon && strcmp(canon, "production") == 0) || strcasecmp(name, "production") == 0))
        return pgsov_fail(err,
                          "refused: seeding environment \"%s\" (%s) — test data never goes to "
                          "production and there is no override; use --env development or staging",
                          name, how);
    return 0;
}

static int check_env_names(const struct seed_opts *o, struct pgsov_err *err)
{
    if (refuse_production_name(o->target.env_name, "--env", err) < 0)
        return -1;
    if (!o->target.env_name) {
        if (refuse_production_name(getenv("PGSOV_ENV"), "$PGSOV_ENV", err) < 0)
            return -1;
        if (!getenv("PGSOV_ENV") && refuse_production_name(getenv("NODE_ENV"), "$NODE_ENV", err) < 0)
            return -1;
    }
    return 0;
}

/* ---- --out: CSV files ------------------------------------------------------------------- */

static int write_line(void *ctx, const char *line, size_t len, struct pgsov_err *err)
{
    if (fwrite(line, 1, len, (FILE *)ctx) != len)
        return pgsov_fail(err, "write error: %s", strerror(errno));
    return 0;
}

static int write_csv(const struct seed_scenario *sc, const struct seed_opts *o,
                     struct pgsov_err *err)
{
    if (mkdir(o->out_dir, 0777) < 0 && errno != EEXIST)
        return pgsov_fail(err, "%s: cannot create: %s", o->out_dir, strerror(errno));
    struct seed_run run = { .seed = o->seed, .scale = o->scale, .format = SEED_FORMAT_CSV };
    for (size_t t = 0; t < seed_table_count(sc); t++) {
        char path[4096], header[16384];
        snprintf(path, sizeof path, "%s/%s.csv", o->out_dir, seed_table_name(sc, t));
        int hl = seed_header(sc, t, header, sizeof header);
        if (hl < 0)
            return pgsov_fail(err, "%s: header too long", seed_table_name(sc, t));
        FILE *f = fopen(path, "wb");
        if (!f)
            return pgsov_fail(err, "%s: cannot create: %s", path, strerror(errno));
        static char fbuf[1 << 16];
        setvbuf(f, fbuf, _IOFBF, sizeof fbuf);
        uint64_t rows = 0;
        int rc = write_line(f, header, (size_t)hl, err);
        if (rc == 0)
            rc = seed_generate(sc, t, &run, write_line, f, &rows, err);
        if (fclose(f) != 0 && rc == 0)
            rc = pgsov_fail(err, "%s: %s", path, strerror(errno));
        if (rc < 0)
            return -1;
        printf("%s: %llu rows\n", path, (unsigned long long)rows);
    }
    return 0;
}

/* ---- --dry-run ---------------------------------------------------------------------------- */

struct sample {
    int shown;
};

static int sample_line(void *ctx, const char *line, size_t len, struct pgsov_err *err)
{
    struct sample *s = ctx;
    if (s->shown < 3) {
        size_t n = len;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            n--;
        printf("    %.*s\n", (int)n, line);
        s->shown++;
    }
    return 0;
}

static int dry_run(const struct seed_scenario *sc, const struct seed_opts *o,
                   struct pgsov_err *err)
{
    struct seed_run run = { .seed = o->seed, .scale = o->scale, .format = SEED_FORMAT_CSV };
    uint64_t total = 0;
    printf("dry run: scenario %s, seed %llu, scale %g (nothing is written)\n", o->scenario,
           (unsigned long long)o->seed, o->scale);
    for (size_t t = 0; t < seed_table_count(sc); t++) {
        char header[16384];
        struct sample s = { 0 };
        uint64_t rows = 0;
        if (seed_header(sc, t, header, sizeof header) < 0)
            return pgsov_fail(err, "%s: header too long", seed_table_name(sc, t));
        header[strcspn(header, "\r")] = '\0';
        printf("%s\n    %s\n", seed_table_name(sc, t), header);
        if (seed_generate(sc, t, &run, sample_line, &s, &rows, err) < 0)
            return -1;
        printf("    ... %llu rows\n", (unsigned long long)rows);
        total += rows;
    }
    printf("total: %llu rows\n", (unsigned long long)total);
    return 0;
}

/* ---- loading ----------------------------------------------------------------------------- */

/* "schema.table" → "\"schema\".\"table\"" (malloc'd), or NULL. */
static char *quote_qualified(PGconn *c, const char *name)
{
    const char *dot = strchr(name, '.');
    char *a = NULL, *b = NULL, *out = NULL;
    if (dot) {
        char schema[128];
        snprintf(schema, sizeof schema, "%.*s", (int)(dot - name), name);
        a = PQescapeIdentifier(c, schema, strlen(schema));
        b = PQescapeIdentifier(c, dot + 1, strlen(dot + 1));
    } else {
        b = PQescapeIdentifier(c, name, strlen(name));
    }
    if (b && (!dot || a)) {
        size_t n = (a ? strlen(a) + 1 : 0) + strlen(b) + 1;
        if ((out = malloc(n)))
            snprintf(out, n, "%s%s%s", a ? a : "", a ? "." : "", b);
    }
    PQfreemem(a);
    PQfreemem(b);
    return out;
}

static int exec_ok(PGconn *c, const char *sql, struct pgsov_err *err)
{
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        pgsov_fail(err, "%s", PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : -1;
}

/* ---- generation on its own thread ------------------------------------------------------------
 * The generator and the server's COPY take about the same time per row, so one thread doing
 * both leaves one of them idle half the time. A second thread generates into a ring of
 * buffers while the main thread hands full ones to PQputCopyData (libpq copies them): memory
 * stays PIPE_SLOTS buffers whatever the row count. */

#define PIPE_SLOTS 8
#define PIPE_SLOT_SIZE (1 << 18)

struct copy_pipe {
    pthread_mutex_t mu;
    pthread_cond_t changed;
    char *slot[PIPE_SLOTS];
    size_t cap[PIPE_SLOTS], len[PIPE_SLOTS];
    int read, filled;           /* slots [read, read + filled) are full, oldest first       */
    bool done, cancel;          /* producer finished (rc, err); consumer gave up              */
    int rc;
    struct pgsov_err err;
    /* producer side */
    const struct seed_scenario *sc;
    size_t table;
    const struct seed_run *run;
    int write;                  /* slot being filled: (read + filled) % PIPE_SLOTS           */
    uint64_t rows;
};

/* Producer: hands the slot being filled over and waits for a free one. */
static int pipe_push(struct copy_pipe *p, struct pgsov_err *err)
{
    pthread_mutex_lock(&p->mu);
    if (p->len[p->write] > 0) {
        p->filled++;
        pthread_cond_broadcast(&p->changed);
    }
    while (p->filled == PIPE_SLOTS && !p->cancel)
        pthread_cond_wait(&p->changed, &p->mu);
    bool cancel = p->cancel;
    p->write = (p->read + p->filled) % PIPE_SLOTS;
    p->len[p->write] = 0;
    pthread_mutex_unlock(&p->mu);
    return cancel ? pgsov_fail(err, "cancelled") : 0;
}

static int pipe_line(void *ctx, const char *line, size_t len, struct pgsov_err *err)
{
    struct copy_pipe *p = ctx;
    int w = p->write;
    if (p->len[w] + len > p->cap[w]) {
        if (p->len[w] > 0 && pipe_push(p, err) < 0)
            return -1;
        w = p->write;
        if (len > p->cap[w]) {                      /* a row larger than a slot */
            char *grown = realloc(p->slot[w], len);
            if (!grown)
                return pgsov_fail(err, "out of memory");
            p->slot[w] = grown;
            p->cap[w] = len;
        }
    }
    memcpy(p->slot[w] + p->len[w], line, len);
    p->len[w] += len;
    return 0;
}

static void *pipe_produce(void *arg)
{
    struct copy_pipe *p = arg;
    struct pgsov_err err = { "" };
    int rc = 0;
    bool binary = p->run->format == SEED_FORMAT_COPY_BINARY;
    if (binary)
        rc = pipe_line(p, SEED_COPY_BINARY_HEADER, SEED_COPY_BINARY_HEADER_LEN, &err);
    if (rc == 0)
        rc = seed_generate(p->sc, p->table, p->run, pipe_line, p, &p->rows, &err);
    if (rc == 0 && binary)
        rc = pipe_line(p, SEED_COPY_BINARY_TRAILER, SEED_COPY_BINARY_TRAILER_LEN, &err);
    pthread_mutex_lock(&p->mu);
    if (rc == 0 && p->len[p->write] > 0)
        p->filled++;                    /* the last, partly filled slot */
    p->done = true;
    p->rc = rc;
    p->err = err;
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Generates table t on a second thread and sends it as COPY data. Returns 0, -1 or
 * SEED_NOT_BINARY (err set); on failure nothing more is sent. */
static int pipe_run(PGconn *c, const struct seed_scenario *sc, size_t t,
                    const struct seed_run *run, uint64_t *rows, struct pgsov_err *err)
{
    struct copy_pipe *p = calloc(1, sizeof *p);
    if (!p)
        return pgsov_fail(err, "out of memory");
    int rc = 0;
    for (int i = 0; i < PIPE_SLOTS && rc == 0; i++) {
        p->cap[i] = PIPE_SLOT_SIZE;
        if (!(p->slot[i] = malloc(PIPE_SLOT_SIZE)))
            rc = pgsov_fail(err, "out of memory");
    }
    p->sc = sc;
    p->table = t;
    p->run = run;
    pthread_t thread;
    bool started = false;
    if (rc == 0) {
        pthread_mutex_init(&p->mu, NULL);
        pthread_cond_init(&p->changed, NULL);
        if (pthread_create(&thread, NULL, pipe_produce, p) != 0)
            rc = pgsov_fail(err, "cannot start the generator thread");
        else
            started = true;
    }
    while (started && rc == 0) {
        pthread_mutex_lock(&p->mu);
        while (p->filled == 0 && !p->done)
            pthread_cond_wait(&p->changed, &p->mu);
        if (p->filled == 0 || (p->done && p->rc != 0)) {   /* all sent, or generation failed */
            pthread_mutex_unlock(&p->mu);
            break;
        }
        int r = p->read;
        pthread_mutex_unlock(&p->mu);
        /* the producer never writes into a full slot: no lock needed to read it */
        if (PQputCopyData(c, p->slot[r], (int)p->len[r]) != 1)
            rc = pgsov_fail(err, "COPY: %s", PQerrorMessage(c));
        pthread_mutex_lock(&p->mu);
        p->read = (p->read + 1) % PIPE_SLOTS;
        p->filled--;
        pthread_cond_broadcast(&p->changed);
        pthread_mutex_unlock(&p->mu);
    }
    if (started) {
        pthread_mutex_lock(&p->mu);
        p->cancel = rc != 0;
        pthread_cond_broadcast(&p->changed);
        pthread_mutex_unlock(&p->mu);
        pthread_join(thread, NULL);
        if (rc == 0 && p->rc != 0) {
            rc = p->rc;
            *err = p->err;
        }
        *rows = p->rows;
        pthread_cond_destroy(&p->changed);
        pthread_mutex_destroy(&p->mu);
    }
    for (int i = 0; i < PIPE_SLOTS; i++)
        free(p->slot[i]);
    free(p);
    return rc;
}

/* The binary type of each emitted column of table t from the catalog, into types[]; returns
 * true when every column has one (else the table goes as text). */
static bool column_types(PGconn *c, const struct seed_scenario *sc, size_t t, const char *table,
                         enum seed_pgtype *types, struct pgsov_err *err, bool *failed)
{
    const char *params[1] = { table };
    *failed = false;
    PGresult *r = PQexecParams(c, "SELECT attname, atttypid::int8 FROM pg_attribute "
                               "WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped",
                               1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        pgsov_fail(err, "%s: reading column types: %s", seed_table_name(sc, t),
                   PQresultErrorMessage(r));
        PQclear(r);
        *failed = true;
        return false;
    }
    bool all = true;
    for (size_t k = 0; k < seed_column_count(sc, t); k++) {
        types[k] = SEED_PG_OTHER;
        for (int i = 0; i < PQntuples(r); i++)
            if (strcmp(PQgetvalue(r, i, 0), seed_column_name(sc, t, k)) == 0)
                types[k] = seed_pgtype_from_oid((unsigned)strtoul(PQgetvalue(r, i, 1), NULL, 10));
        all = all && types[k] != SEED_PG_OTHER;
    }
    PQclear(r);
    return all;
}

/* One COPY of table t in run->format: sql is "COPY table (cols) FROM STDIN" and the options.
 * Returns 0, -1 (err set) or SEED_NOT_BINARY (the COPY was cancelled; the transaction is
 * in error until the caller rolls back to its savepoint). */
static int copy_stream(PGconn *c, const char *sql, const struct seed_scenario *sc, size_t t,
                       const struct seed_run *run, uint64_t *rows, struct pgsov_err *err)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COPY_IN) {
        pgsov_fail(err, "%s: %s", seed_table_name(sc, t), PQresultErrorMessage(r));
        PQclear(r);
        return -1;
    }
    PQclear(r);
    int rc = pipe_run(c, sc, t, run, rows, err);
    if (PQputCopyEnd(c, rc == 0 ? NULL : "pgsov seed: generation stopped") != 1 && rc == 0)
        rc = pgsov_fail(err, "COPY: %s", PQerrorMessage(c));
    while ((r = PQgetResult(c)) != NULL) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK && rc == 0)
            rc = pgsov_fail(err, "%s: %s", seed_table_name(sc, t), PQresultErrorMessage(r));
        PQclear(r);
    }
    return rc;
}

/* Loads table t: COPY binary when the catalog's column types allow it, inside a savepoint so
 * that a value without an exact binary form (SEED_NOT_BINARY) sends the table again as text;
 * COPY text otherwise, or when run->format asks for text. */
static int copy_table(PGconn *c, const struct seed_scenario *sc, size_t t,
                      const struct seed_run *run, bool was_empty, uint64_t *rows,
                      const char **how, struct pgsov_err *err)
{
    char *table = quote_qualified(c, seed_table_name(sc, t));
    if (!table)
        return pgsov_fail(err, "out of memory");
    size_t cap = strlen(table) + 64, len;
    for (size_t k = 0; k < seed_column_count(sc, t); k++)
        cap += 2 * strlen(seed_column_name(sc, t, k)) + 8;
    char *sql = malloc(cap);
    enum seed_pgtype *types = calloc(seed_column_count(sc, t) + 1, sizeof *types);
    if (!sql || !types) {
        free(sql);
        free(types);
        free(table);
        return pgsov_fail(err, "out of memory");
    }
    len = (size_t)snprintf(sql, cap, "COPY %s (", table);
    for (size_t k = 0; k < seed_column_count(sc, t); k++) {
        const char *col = seed_column_name(sc, t, k);
        char *q = PQescapeIdentifier(c, col, strlen(col));
        if (!q) {
            free(sql);
            free(types);
            free(table);
            return pgsov_fail(err, "out of memory");
        }
        len += (size_t)snprintf(sql + len, cap - len, "%s%s", k ? ", " : "", q);
        PQfreemem(q);
    }
    len += (size_t)snprintf(sql + len, cap - len, ") FROM STDIN");
    struct seed_run text_run = *run, bin_run = *run;
    text_run.format = SEED_FORMAT_COPY_TEXT;
    bin_run.types = types;
    bool failed = false;
    int rc = 0;
    *how = "COPY text";
    if (run->format == SEED_FORMAT_COPY_BINARY &&
        column_types(c, sc, t, table, types, err, &failed)) {
        snprintf(sql + len, cap - len, " (FORMAT binary)");
        rc = exec_ok(c, "SAVEPOINT pgsov_seed_copy", err);
        if (rc == 0)
            rc = copy_stream(c, sql, sc, t, &bin_run, rows, err);
        *how = "COPY binary";
        if (rc == SEED_NOT_BINARY) {
            *how = "COPY text";
            fprintf(stderr, "pgsov seed: note: %s: loading as COPY text (%s)\n",
                    seed_table_name(sc, t), err->msg);
            rc = exec_ok(c, "ROLLBACK TO SAVEPOINT pgsov_seed_copy", err);
            sql[len] = '\0';
            if (rc == 0)
                rc = copy_stream(c, sql, sc, t, &text_run, rows, err);
        }
        if (rc == 0)
            rc = exec_ok(c, "RELEASE SAVEPOINT pgsov_seed_copy", err);
    } else if (failed) {
        rc = -1;
    } else {
        rc = copy_stream(c, sql, sc, t, &text_run, rows, err);
    }
    free(sql);
    free(types);
    PGresult *r;
    /* identity/serial columns written explicitly: move their sequences past the new values
     * so the application's own inserts do not collide */
    for (size_t k = 0; rc == 0 && k < seed_column_count(sc, t); k++) {
        if (!seed_column_is_sequence(sc, t, k))
            continue;
        const char *col = seed_column_name(sc, t, k);
        char *qcol = PQescapeIdentifier(c, col, strlen(col));
        char q[1024];
        if (!qcol) {
            rc = pgsov_fail(err, "out of memory");
            break;
        }
        /* in a table that was empty, the largest value is the largest one written: known
         * without scanning the table, unless the column may hold NULLs */
        int64_t max;
        char maxtext[32] = "";
        if (was_empty && seed_sequence_max(sc, t, k, *rows, &max))
            snprintf(maxtext, sizeof maxtext, "%lld", (long long)max);
        snprintf(q, sizeof q,
                 "SELECT setval(s, m) FROM (SELECT pg_get_serial_sequence($1, $2) AS s, "
                 "coalesce($3::int8, (SELECT max(%s) FROM %s)) AS m) x "
                 "WHERE s IS NOT NULL AND m IS NOT NULL", qcol, table);
        PQfreemem(qcol);
        const char *params[3] = { table, col, maxtext[0] ? maxtext : NULL };
        r = PQexecParams(c, q, 3, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            rc = pgsov_fail(err, "%s.%s: moving its sequence: %s", seed_table_name(sc, t), col,
                            PQresultErrorMessage(r));
        PQclear(r);
    }
    free(table);
    return rc;
}

static int truncate_tables(PGconn *c, const struct seed_scenario *sc, struct pgsov_err *err)
{
    /* one statement, children first: foreign keys among the scenario's tables are fine;
     * a table outside the scenario that references them makes this fail (no CASCADE: we
     * never empty tables the scenario does not name) */
    size_t cap = 32, len;
    for (size_t t = 0; t < seed_table_count(sc); t++)
        cap += 2 * strlen(seed_table_name(sc, t)) + 8;
    char *sql = malloc(cap);
    if (!sql)
        return pgsov_fail(err, "out of memory");
    len = (size_t)snprintf(sql, cap, "TRUNCATE ");
    for (size_t t = seed_table_count(sc); t-- > 0;) {
        char *q = quote_qualified(c, seed_table_name(sc, t));
        if (!q) {
            free(sql);
            return pgsov_fail(err, "out of memory");
        }
        len += (size_t)snprintf(sql + len, cap - len, "%s%s", t + 1 < seed_table_count(sc) ? ", " : "", q);
        free(q);
    }
    int rc = exec_ok(c, sql, err);
    free(sql);
    if (rc < 0) {
        char msg[sizeof err->msg];
        pgsov_strlcpy(msg, err->msg, sizeof msg);
        return pgsov_fail(err, "--truncate: %s", msg);
    }
    return 0;
}

/* ---- bulk load ------------------------------------------------------------------------------
 * Checking a foreign key and maintaining a B-tree costs more per row than writing the row, so
 * when every table of the scenario is empty (or was just truncated) and the seeding role owns
 * them, their keys and indexes are dropped before COPY and re-created after it, inside the same
 * transaction, as pg_restore does: one bulk build and one validation query per constraint
 * instead of a trigger and an index insertion per row. The end state is the same catalog
 * (names, definitions, comments); a failure anywhere rolls all of it back. Anything the simple
 * recipe would not restore exactly (partitioned tables, replica identity by index, clustered or
 * tablespace-placed indexes, renamed constraint indexes, foreign tables) keeps the slow path. */

struct bulk_plan {
    PGresult *stmts;    /* phase, drop_sql, create_sql, comment_sql; ordered by phase */
};

/* ARRAY['"app"."clients"', ...]::regclass[] as one text parameter "{...}" (malloc'd). */
static char *regclass_array(PGconn *c, const struct seed_scenario *sc)
{
    size_t cap = 8;
    for (size_t t = 0; t < seed_table_count(sc); t++)
        cap += 4 * strlen(seed_table_name(sc, t)) + 16;
    char *arr = malloc(cap), *o = arr;
    if (!arr)
        return NULL;
    *o++ = '{';
    for (size_t t = 0; t < seed_table_count(sc); t++) {
        char *q = quote_qualified(c, seed_table_name(sc, t));
        if (!q) {
            free(arr);
            return NULL;
        }
        if (t)
            *o++ = ',';
        *o++ = '"';
        for (const char *p = q; *p; p++) {     /* array-literal escaping of the quoted name */
            if (*p == '"' || *p == '\\')
                *o++ = '\\';
            *o++ = *p;
        }
        *o++ = '"';
        free(q);
    }
    *o++ = '}';
    *o = '\0';
    return arr;
}

static const char bulk_eligible_sql[] =
    "WITH t AS (SELECT unnest($1::regclass[])::oid AS rel) "
    "SELECT (SELECT count(*) FROM pg_class c WHERE c.oid IN (SELECT rel FROM t) AND "
    "        (NOT pg_has_role(c.relowner, 'USAGE') OR c.relkind <> 'r' OR c.relispartition "
    "         OR c.relreplident = 'i')) "
    "     + (SELECT count(*) FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
    "        WHERE i.indrelid IN (SELECT rel FROM t) AND (i.indisclustered OR ic.reltablespace <> 0 "
    "         OR NOT i.indisvalid OR EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid "
    "           AND k.conrelid = i.indrelid AND k.conname <> ic.relname))) "
    "     + (SELECT count(*) FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
    "        WHERE k.contype = 'f' AND k.confrelid IN (SELECT rel FROM t) "
    "        AND NOT pg_has_role(c.relowner, 'USAGE'))";

static const char bulk_plan_sql[] =
    "WITH t AS (SELECT unnest($1::regclass[])::oid AS rel) "
    "SELECT 1 AS phase, format('ALTER TABLE %s DROP CONSTRAINT %I', k.conrelid::regclass, k.conname), "
    "       format('ALTER TABLE %s ADD CONSTRAINT %I %s', k.conrelid::regclass, k.conname, "
    "              pg_get_constraintdef(k.oid)), "
    "       format('COMMENT ON CONSTRAINT %I ON %s IS %L', k.conname, k.conrelid::regclass, "
    "              obj_description(k.oid, 'pg_constraint')) "
    "FROM pg_constraint k WHERE k.contype = 'f' "
    "  AND (k.conrelid IN (SELECT rel FROM t) OR k.confrelid IN (SELECT rel FROM t)) "
    "UNION ALL "
    "SELECT 2, format('ALTER TABLE %s DROP CONSTRAINT %I', k.conrelid::regclass, k.conname), "
    "       format('ALTER TABLE %s ADD CONSTRAINT %I %s', k.conrelid::regclass, k.conname, "
    "              pg_get_constraintdef(k.oid)), "
    "       concat_ws('; ', format('COMMENT ON CONSTRAINT %I ON %s IS %L', k.conname, "
    "                 k.conrelid::regclass, obj_description(k.oid, 'pg_constraint')), "
    "                 CASE WHEN obj_description(k.conindid, 'pg_class') IS NOT NULL THEN "
    "                 format('COMMENT ON INDEX %s IS %L', k.conindid::regclass, "
    "                        obj_description(k.conindid, 'pg_class')) END) "
    "FROM pg_constraint k WHERE k.contype IN ('p', 'u', 'x') AND k.conrelid IN (SELECT rel FROM t) "
    "UNION ALL "
    "SELECT 3, format('DROP INDEX %s', i.indexrelid::regclass), pg_get_indexdef(i.indexrelid), "
    "       format('COMMENT ON INDEX %s IS %L', i.indexrelid::regclass, "
    "              obj_description(i.indexrelid, 'pg_class')) "
    "FROM pg_index i WHERE i.indrelid IN (SELECT rel FROM t) AND NOT EXISTS (SELECT 1 FROM "
    "  pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid "
    "  AND k.contype IN ('p', 'u', 'x')) "
    "ORDER BY 1, 2";

static int exec_step(PGconn *c, const char *sql, struct pgsov_err *err)
{
    if (exec_ok(c, sql, err) < 0) {
        char msg[sizeof err->msg];
        pgsov_strlcpy(msg, err->msg, sizeof msg);
        return pgsov_fail(err, "bulk load: %s: %s", sql, msg);
    }
    return 0;
}

/* Decides whether to bulk-load and, if so, drops the keys and indexes (plan->stmts set).
 * Returns 0 either way; -1 on error. */
static int bulk_begin(PGconn *c, const struct seed_scenario *sc, struct bulk_plan *plan,
                      struct pgsov_err *err)
{
    plan->stmts = NULL;
    for (size_t t = 0; t < seed_table_count(sc); t++) {
        char *q = quote_qualified(c, seed_table_name(sc, t)), sql[600];
        if (!q)
            return pgsov_fail(err, "out of memory");
        snprintf(sql, sizeof sql, "SELECT 1 FROM %s LIMIT 1", q);
        free(q);
        PGresult *r = PQexec(c, sql);
        int status = PQresultStatus(r), rows = PQntuples(r);
        if (status != PGRES_TUPLES_OK)
            pgsov_fail(err, "%s: %s", seed_table_name(sc, t), PQresultErrorMessage(r));
        PQclear(r);
        if (status != PGRES_TUPLES_OK)
            return -1;
        if (rows > 0)
            return 0;               /* not empty: adding to existing rows, keep the keys */
    }
    char *arr = regclass_array(c, sc);
    if (!arr)
        return pgsov_fail(err, "out of memory");
    const char *params[1] = { arr };
    PGresult *r = PQexecParams(c, bulk_eligible_sql, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        pgsov_fail(err, "bulk load check: %s", PQresultErrorMessage(r));
        PQclear(r);
        free(arr);
        return -1;
    }
    int blockers = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (blockers > 0) {
        free(arr);
        return 0;
    }
    r = PQexecParams(c, bulk_plan_sql, 1, NULL, params, NULL, NULL, 0);
    free(arr);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        pgsov_fail(err, "bulk load plan: %s", PQresultErrorMessage(r));
        PQclear(r);
        return -1;
    }
    /* A server-side DDL guard (rules/ddl_event_trigger.sql) may refuse these statements for
     * a role that owns the tables but is not a migration role: then load the plain way. */
    if (exec_step(c, "SAVEPOINT pgsov_seed_bulk", err) < 0) {
        PQclear(r);
        return -1;
    }
    for (int i = 0; i < PQntuples(r); i++)
        if (exec_step(c, PQgetvalue(r, i, 1), err) < 0) {
            PQclear(r);
            fprintf(stderr, "pgsov seed: note: keeping keys in place (%s)\n", err->msg);
            return exec_step(c, "ROLLBACK TO SAVEPOINT pgsov_seed_bulk", err);
        }
    plan->stmts = r;
    return exec_step(c, "RELEASE SAVEPOINT pgsov_seed_bulk", err);
}

/* Re-creates what bulk_begin dropped: indexes and keys first, then foreign keys (each one
 * validated by a single query over the loaded rows), then comments. */
static int bulk_end(PGconn *c, struct bulk_plan *plan, struct pgsov_err *err)
{
    PGresult *r = plan->stmts;
    if (!r)
        return 0;
    /* index builds sort in memory, and foreign key validation hashes in it (PostgreSQL gives
     * it maintenance_work_mem too): at the default 64 MB a million-row table spills to temp
     * files. Raised for this transaction only, never lowered. */
    int rc = exec_step(c, "SELECT set_config('maintenance_work_mem', '256MB', true) "
                          "WHERE pg_size_bytes(current_setting('maintenance_work_mem')) < 268435456",
                       err);
    for (int i = PQntuples(r) - 1; rc == 0 && i >= 0; i--)
        rc = exec_step(c, PQgetvalue(r, i, 2), err);
    for (int i = 0; rc == 0 && i < PQntuples(r); i++)
        if (!PQgetisnull(r, i, 3) && PQgetvalue(r, i, 3)[0])
            rc = exec_step(c, PQgetvalue(r, i, 3), err);
    return rc;
}

static void bulk_free(struct bulk_plan *plan)
{
    PQclear(plan->stmts);
    plan->stmts = NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int load(const struct seed_scenario *sc, const struct seed_opts *o, struct pgsov_err *err)
{
    struct target t;
    struct bulk_plan bulk = { NULL };
    memset(&t, 0, sizeof t);
    int rc = -1;
    if (target_open(&t, &o->target, err) < 0)
        goto done;
    if (t.warning[0])
        fprintf(stderr, "pgsov seed: warning: %s\n", t.warning);
    if (refuse_production_name(t.env_name, "the resolved environment", err) < 0)
        goto done;
    if (env_is_production(t.env)) {
        pgsov_fail(err, "refused: environment \"%s\" is production by one of its aliases in %s — "
                   "test data never goes to production and there is no override",
                   t.env_name, t.cfg && t.cfg->path ? t.cfg->path : "the config");
        goto done;
    }
    char attested[128] = "";
    int a = target_read_attestation(t.conn, attested, sizeof attested, err);
    if (a < 0)
        goto done;
    if (a == 1 && refuse_production_name(attested, "the database's attestation", err) < 0)
        goto done;
    /* required: an unattested database cannot prove it is not production */
    if (target_check_attestation(&t, true, err) < 0)
        goto done;

    struct seed_run run = { .seed = o->seed, .scale = o->scale,
                            .format = o->text_copy ? SEED_FORMAT_COPY_TEXT : SEED_FORMAT_COPY_BINARY };
    double start = now_s();
    uint64_t total = 0;
    if (exec_ok(t.conn, "BEGIN", err) < 0)
        goto done;
    if (o->truncate && truncate_tables(t.conn, sc, err) < 0)
        goto rollback;
    if (!o->no_bulk && bulk_begin(t.conn, sc, &bulk, err) < 0)
        goto rollback;
    for (size_t i = 0; i < seed_table_count(sc); i++) {
        uint64_t rows = 0;
        const char *how = "";
        double t0 = now_s();
        if (copy_table(t.conn, sc, i, &run, o->truncate || bulk.stmts, &rows, &how, err) < 0)
            goto rollback;
        printf("%s: %llu rows (%.2fs, %s)\n", seed_table_name(sc, i), (unsigned long long)rows,
               now_s() - t0, how);
        total += rows;
    }
    if (bulk.stmts) {
        double t0 = now_s();
        if (bulk_end(t.conn, &bulk, err) < 0)
            goto rollback;
        printf("keys and indexes: %d re-created after COPY (%.2fs; --no-bulk keeps them in place)\n",
               PQntuples(bulk.stmts), now_s() - t0);
    }
    if (exec_ok(t.conn, "COMMIT", err) < 0)
        goto done;
    printf("seeded %s (database %s on %s:%d): %llu rows in %.2fs, seed %llu\n", t.env_name,
           t.dbname, t.host, t.port, (unsigned long long)total, now_s() - start,
           (unsigned long long)o->seed);
    rc = 0;
    goto done;
rollback: {
        struct pgsov_err ignore;
        exec_ok(t.conn, "ROLLBACK", &ignore);
    }
done:
    bulk_free(&bulk);
    target_close(&t);
    return rc;
}

int cmd_seed(int argc, char **argv)
{
    struct seed_opts o;
    struct pgsov_err err = { "" };
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            seed_usage(stdout);
            return 0;
        }
    if (parse_args(argc, argv, &o, &err) < 0) {
        fprintf(stderr, "pgsov seed: %s\n", err.msg);
        return 2;
    }
    if (check_env_names(&o, &err) < 0) {
        fprintf(stderr, "pgsov seed: %s\n", err.msg);
        return 1;
    }
    struct seed_scenario *sc;
    if (seed_scenario_load(o.scenario, &sc, &err) < 0) {
        fprintf(stderr, "pgsov seed: %s\n", err.msg);
        return 1;
    }
    int rc = o.out_dir ? write_csv(sc, &o, &err) : o.dry_run ? dry_run(sc, &o, &err)
                                                             : load(sc, &o, &err);
    seed_scenario_free(sc);
    if (rc < 0) {
        fprintf(stderr, "pgsov seed: %s\n", err.msg);
        return 1;
    }
    return 0;
}
