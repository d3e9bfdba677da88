/* migrate.c — `pgsov migrate [plan|baseline]`, `pgsov rollback [plan]`, `pgsov status`:
 * flags, and the thin libpq layer over migrate_core (history tables, the advisory lock,
 * running a plan step, recording it). Order of proof before any write: hostname guard
 * (target_open), environment attestation, migration lock, history checks, approval. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "migrate_core.h"
#include "target.h"
#include "tools.h"

enum {
    EXIT_OK = 0,
    EXIT_FAILED = 1,        /* a migration failed, or a database/connection error          */
    EXIT_USAGE = 2,
    EXIT_REFUSED = 3,       /* guard, attestation, drift, order, approval, missing down file */
    EXIT_LOCKED = 4,        /* another migrator holds the migration lock                    */
    EXIT_PENDING = 10,      /* status: migrations are pending                               */
};

#define MIGRATE_LOCK_KEY 0x7067736f76LL   /* "pgsov": one migration lock per database      */

struct cli {
    const char *cmd;                 /* "migrate", "rollback", "status"                      */
    const char *sub;                 /* NULL, "plan", "baseline"                              */
    struct target_options topt;
    const char *dir;
    const char *approve;
    const char *to;                  /* migrate/rollback --to VERSION                         */
    const char *mark_applied;        /* baseline --mark-applied VERSION                       */
    int steps;                       /* rollback --steps N                                    */
    bool allow_out_of_order, drizzle, no_drizzle, force, json, quiet;
    int lock_wait_ms;
    struct mig_settings defaults;
};

/* ---- help -------------------------------------------------------------------------------- */

static void help(const char *cmd, FILE *out)
{
    if (strcmp(cmd, "status") == 0) {
        fprintf(out,
                "usage: pgsov status [options]\n\n"
                "Applied, pending, drifted, missing and out-of-order migrations of an environment.\n"
                "Exit: 0 up to date, %d pending, %d drift/missing/out of order, 1 error.\n\n"
                "options:\n" TARGET_FLAGS_HELP
                "  --dir DIR           migrations folder (default: the env's migrations_dir)\n"
                "  --drizzle, --no-drizzle   force or disable drizzle-kit mode (default: auto,\n"
                "                      when DIR/meta/_journal.json exists)\n"
                "  --format text|json  output format (default text)\n", EXIT_PENDING, EXIT_REFUSED);
        return;
    }
    if (strcmp(cmd, "rollback") == 0) {
        fprintf(out,
                "usage: pgsov rollback [plan] (--steps N | --to VERSION) [options]\n\n"
                "Runs NNNN_name.down.sql files of applied migrations, newest first, under the same\n"
                "guard, attestation, lock and history checks as migrate. A migration without a down\n"
                "file stops the rollback before anything runs. 'plan' prints what would run and\n"
                "the plan hash; environments with require_approval need --approve HASH.\n\n"
                "options:\n" TARGET_FLAGS_HELP
                "  --steps N           revert the N most recently applied migrations\n"
                "  --to VERSION        revert every applied migration newer than VERSION (0: all)\n"
                "  --approve HASH      the plan hash (at least 12 hex digits) printed by plan\n"
                "  --dir DIR, --drizzle, --no-drizzle, --lock-timeout DUR   as for migrate\n"
                "Exit: 0 ok, 1 a down file failed or database error, 2 usage, 3 refused, 4 locked.\n");
        return;
    }
    fprintf(out,
            "usage: pgsov migrate [plan|baseline] [options]\n\n"
            "  pgsov migrate --env development             apply pending migrations\n"
            "  pgsov migrate plan --env production         print what would run and the plan hash\n"
            "  pgsov migrate --env production --approve H  apply exactly the approved plan\n"
            "  pgsov migrate baseline --env production     attest this database as production\n\n"
            "Files: NNNN_name.sql (or .up.sql) and NNNN_name.down.sql in the migrations folder,\n"
            "applied in version order, one transaction per file; a file holding statements that\n"
            "cannot run in a transaction (CREATE INDEX CONCURRENTLY, ...) and nothing else runs\n"
            "outside one. Header: '-- pgsov: lock_timeout=10s statement_timeout=0 transaction=off'.\n"
            "History: pgsov.schema_migrations and pgsov.migration_log in the database.\n\n"
            "options:\n" TARGET_FLAGS_HELP
            "  --dir DIR              migrations folder (default: the env's migrations_dir)\n"
            "  --to VERSION           apply pending migrations up to VERSION only\n"
            "  --approve HASH         plan hash from 'migrate plan' (required when the env has\n"
            "                         require_approval, the default for production)\n"
            "  --allow-out-of-order   apply pending files older than the newest applied one\n"
            "  --lock-timeout DUR     wait this long for the migration lock (default 30s)\n"
            "  --sql-lock-timeout DUR default lock_timeout per file (default 5s)\n"
            "  --statement-timeout DUR default statement_timeout per file (default 60s; 0: none)\n"
            "  --drizzle, --no-drizzle  force or disable drizzle-kit mode (default: auto)\n"
            "  baseline: --force      overwrite another environment's attestation\n"
            "            --mark-applied VERSION  record files up to VERSION as applied, unrun\n"
            "Exit: 0 ok or nothing to do, 1 a migration failed or database error, 2 usage,\n"
            "      3 refused (guard, attestation, drift, order, approval), 4 locked.\n");
}

/* ---- flags --------------------------------------------------------------------------------- */

static int parse_cli(struct cli *c, int argc, char **argv)
{
    memset(c, 0, sizeof *c);
    c->cmd = argv[0];
    c->steps = -1;
    c->lock_wait_ms = 30000;
    c->defaults = (struct mig_settings){ MIG_DEFAULT_LOCK_TIMEOUT_MS,
                                         MIG_DEFAULT_STATEMENT_TIMEOUT_MS, MIG_TX_AUTO };
    char appname[64];
    snprintf(appname, sizeof appname, "pgsov-%s", c->cmd);
    static char appname_store[64];
    memcpy(appname_store, appname, sizeof appname_store);
    c->topt.application_name = appname_store;
    int i = 1;
    if (i < argc && argv[i][0] != '-') {
        bool ok = (strcmp(c->cmd, "migrate") == 0 &&
                   (strcmp(argv[i], "plan") == 0 || strcmp(argv[i], "baseline") == 0)) ||
                  (strcmp(c->cmd, "rollback") == 0 && strcmp(argv[i], "plan") == 0);
        if (!ok) {
            fprintf(stderr, "pgsov %s: unknown subcommand \"%s\"\n", c->cmd, argv[i]);
            return -1;
        }
        c->sub = argv[i++];
    }
    while (i < argc) {
        struct pgsov_err err;
        int r = target_parse_flag(&c->topt, argc, argv, &i, &err);
        if (r < 0) {
            fprintf(stderr, "pgsov %s: %s\n", c->cmd, err.msg);
            return -1;
        }
        if (r == 1)
            continue;
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int used = 1;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            help(c->cmd, stdout);
            return 1;
        } else if (strcmp(a, "--allow-out-of-order") == 0) {
            c->allow_out_of_order = true;
        } else if (strcmp(a, "--drizzle") == 0) {
            c->drizzle = true;
        } else if (strcmp(a, "--no-drizzle") == 0) {
            c->no_drizzle = true;
        } else if (strcmp(a, "--force") == 0) {
            c->force = true;
        } else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
            c->quiet = true;
        } else {
            used = 2;
            if (!v) {
                fprintf(stderr, "pgsov %s: unknown option or missing value: %s\n", c->cmd, a);
                return -1;
            }
            int *ms = NULL;
            if (strcmp(a, "--dir") == 0)
                c->dir = v;
            else if (strcmp(a, "--approve") == 0)
                c->approve = v;
            else if (strcmp(a, "--to") == 0)
                c->to = v;
            else if (strcmp(a, "--mark-applied") == 0)
                c->mark_applied = v;
            else if (strcmp(a, "--format") == 0) {
                if (strcmp(v, "json") != 0 && strcmp(v, "text") != 0) {
                    fprintf(stderr, "pgsov %s: --format json or text\n", c->cmd);
                    return -1;
                }
                c->json = strcmp(v, "json") == 0;
            } else if (strcmp(a, "--steps") == 0) {
                char *end;
                long n = strtol(v, &end, 10);
                if (*end || n < 1 || n > 100000) {
                    fprintf(stderr, "pgsov %s: --steps needs a positive number\n", c->cmd);
                    return -1;
                }
                c->steps = (int)n;
            } else if (strcmp(a, "--lock-timeout") == 0)
                ms = &c->lock_wait_ms;
            else if (strcmp(a, "--sql-lock-timeout") == 0)
                ms = &c->defaults.lock_timeout_ms;
            else if (strcmp(a, "--statement-timeout") == 0)
                ms = &c->defaults.statement_timeout_ms;
            else {
                fprintf(stderr, "pgsov %s: unknown option %s (see --help)\n", c->cmd, a);
                return -1;
            }
            if (ms && mig_parse_duration_ms(v, ms) < 0) {
                fprintf(stderr, "pgsov %s: %s %s is not a duration (250ms, 10s, 2min)\n",
                        c->cmd, a, v);
                return -1;
            }
        }
        i += used;
    }
    if (strcmp(c->cmd, "rollback") == 0 && (c->steps < 0) == (c->to == NULL)) {
        fprintf(stderr, "pgsov rollback: give exactly one of --steps N or --to VERSION\n");
        return -1;
    }
    if (c->drizzle && c->no_drizzle) {
        fprintf(stderr, "pgsov %s: --drizzle and --no-drizzle exclude each other\n", c->cmd);
        return -1;
    }
    return 0;
}

static int parse_version(const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || *end || text[0] == '-' || !text[0])
        return -1;
    *out = v;
    return 0;
}

/* ---- libpq helpers --------------------------------------------------------------------------- */

/* One-line error of a failed result: "ERROR 42P07: relation ... (detail) (hint)". */
static void result_error(const PGresult *r, const PGconn *conn, char *buf, size_t size)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL) : NULL;
    const char *hint = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_HINT) : NULL;
    if (!msg) {
        pgsov_strlcpy(buf, PQerrorMessage(conn), size);
        buf[strcspn(buf, "\n")] = '\0';
        return;
    }
    snprintf(buf, size, "ERROR %s: %s%s%s%s%s", state ? state : "?", msg,
             detail ? " — " : "", detail ? detail : "", hint ? " — hint: " : "", hint ? hint : "");
}

static int db_exec(PGconn *c, const char *sql, struct pgsov_err *err)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType s = PQresultStatus(r);
    int rc = 0;
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
        char msg[400];
        result_error(r, c, msg, sizeof msg);
        rc = pgsov_fail(err, "%s", msg);
    }
    PQclear(r);
    return rc;
}

static int db_params(PGconn *c, const char *sql, int n, const char *const *vals,
                     struct pgsov_err *err)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        char msg[400];
        result_error(r, c, msg, sizeof msg);
        rc = pgsov_fail(err, "%s", msg);
    }
    PQclear(r);
    return rc;
}

static bool db_has_table(PGconn *c, const char *name)
{
    const char *vals[1] = { name };
    PGresult *r = PQexecParams(c, "SELECT to_regclass($1) IS NOT NULL", 1, NULL, vals, NULL, NULL, 0);
    bool yes = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
               PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return yes;
}

static const char history_ddl[] =
    "SET client_min_messages = warning;"
    "CREATE SCHEMA IF NOT EXISTS pgsov;"
    "CREATE TABLE IF NOT EXISTS pgsov.schema_migrations ("
    "  version text PRIMARY KEY,"
    "  version_num bigint NOT NULL,"
    "  name text NOT NULL,"
    "  checksum text NOT NULL,"
    "  chain_checksum text NOT NULL,"
    "  applied_at timestamptz NOT NULL DEFAULT now(),"
    "  applied_by text NOT NULL DEFAULT current_user,"
    "  client text,"
    "  environment text NOT NULL,"
    "  duration_ms bigint NOT NULL,"
    "  plan_hash text NOT NULL,"
    "  transactional boolean NOT NULL);"
    "CREATE TABLE IF NOT EXISTS pgsov.migration_log ("
    "  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  action text NOT NULL CHECK (action IN ('apply', 'rollback', 'baseline')),"
    "  version text NOT NULL,"
    "  name text NOT NULL,"
    "  checksum text NOT NULL,"
    "  at timestamptz NOT NULL DEFAULT now(),"
    "  by_user text NOT NULL DEFAULT current_user,"
    "  client text,"
    "  environment text NOT NULL,"
    "  duration_ms bigint,"
    "  plan_hash text);"
    "RESET client_min_messages";

/* drizzle-orm's own DDL (pg-core dialect.migrate), so both tools create the same table. */
static const char drizzle_ddl[] =
    "SET client_min_messages = warning;"
    "CREATE SCHEMA IF NOT EXISTS \"drizzle\";"
    "CREATE TABLE IF NOT EXISTS \"drizzle\".\"__drizzle_migrations\" ("
    "  id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint);"
    "RESET client_min_messages";

struct history {
    struct mig_applied *rows;
    size_t n;
    char **applied_at_order;    /* versions, most recently applied first                   */
};

static void history_free(struct history *h)
{
    free(h->rows);
    free(h->applied_at_order);
    memset(h, 0, sizeof *h);
}

/* pgsov's history, plus (drizzle mode) the drizzle rows pgsov did not write: a journal
 * entry whose "when" is in drizzle's table counts as applied, with drizzle's hash. */
static int history_read(PGconn *c, const struct mig_set *set, struct history *h,
                        struct pgsov_err *err)
{
    memset(h, 0, sizeof *h);
    PGresult *r = NULL;
    size_t n_pgsov = 0, n_drizzle = 0;
    if (db_has_table(c, "pgsov.schema_migrations")) {
        r = PQexec(c, "SELECT version, name, checksum, applied_at::text, environment "
                      "FROM pgsov.schema_migrations ORDER BY applied_at DESC, version_num DESC");
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            char msg[400];
            result_error(r, c, msg, sizeof msg);
            PQclear(r);
            return pgsov_fail(err, "reading pgsov.schema_migrations: %s", msg);
        }
        n_pgsov = (size_t)PQntuples(r);
    }
    PGresult *dr = NULL;
    if (set->drizzle && db_has_table(c, "drizzle.__drizzle_migrations")) {
        dr = PQexec(c, "SELECT hash, created_at::text FROM drizzle.__drizzle_migrations "
                       "WHERE created_at IS NOT NULL");
        if (PQresultStatus(dr) != PGRES_TUPLES_OK) {
            char msg[400];
            result_error(dr, c, msg, sizeof msg);
            PQclear(r);
            PQclear(dr);
            return pgsov_fail(err, "reading drizzle.__drizzle_migrations: %s", msg);
        }
        n_drizzle = (size_t)PQntuples(dr);
    }
    h->rows = calloc(n_pgsov + n_drizzle + 1, sizeof *h->rows);
    if (!h->rows) {
        PQclear(r);
        PQclear(dr);
        return pgsov_fail(err, "out of memory");
    }
    for (size_t i = 0; i < n_pgsov; i++) {
        struct mig_applied *a = &h->rows[h->n++];
        pgsov_strlcpy(a->version, PQgetvalue(r, (int)i, 0), sizeof a->version);
        pgsov_strlcpy(a->name, PQgetvalue(r, (int)i, 1), sizeof a->name);
        pgsov_strlcpy(a->checksum, PQgetvalue(r, (int)i, 2), sizeof a->checksum);
        pgsov_strlcpy(a->applied_at, PQgetvalue(r, (int)i, 3), sizeof a->applied_at);
        pgsov_strlcpy(a->environment, PQgetvalue(r, (int)i, 4), sizeof a->environment);
        if (parse_version(a->version, &a->vnum) < 0) {
            PQclear(r);
            PQclear(dr);
            return pgsov_fail(err, "pgsov.schema_migrations: version \"%s\" is not a number",
                              a->version);
        }
    }
    for (size_t i = 0; i < n_drizzle; i++) {
        long long when = atoll(PQgetvalue(dr, (int)i, 1));
        const struct mig_file *f = NULL;
        for (size_t k = 0; k < set->n_files && !f; k++)
            if (set->files[k].drizzle_when == when)
                f = &set->files[k];
        if (!f)
            continue;           /* drizzle row of an entry no longer in the journal: ignored */
        bool known = false;
        for (size_t k = 0; k < h->n && !known; k++)
            known = h->rows[k].vnum == f->vnum;
        if (known)
            continue;
        struct mig_applied *a = &h->rows[h->n++];
        pgsov_strlcpy(a->version, f->version, sizeof a->version);
        pgsov_strlcpy(a->name, f->name, sizeof a->name);
        pgsov_strlcpy(a->checksum, PQgetvalue(dr, (int)i, 0), sizeof a->checksum);
        snprintf(a->applied_at, sizeof a->applied_at, "by drizzle-kit");
        snprintf(a->environment, sizeof a->environment, "?");
        a->vnum = f->vnum;
    }
    PQclear(r);
    PQclear(dr);
    return 0;
}

static int lock_acquire(PGconn *c, int wait_ms, const char *dbname, struct pgsov_err *err)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT pg_try_advisory_lock(%lld)", MIGRATE_LOCK_KEY);
    for (;;) {
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            char msg[400];
            result_error(r, c, msg, sizeof msg);
            PQclear(r);
            return pgsov_fail(err, "taking the migration lock: %s", msg);
        }
        bool got = PQgetvalue(r, 0, 0)[0] == 't';
        PQclear(r);
        if (got)
            return 0;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long waited = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (waited >= wait_ms)
            break;
        usleep(200 * 1000);
    }
    /* Name the holder, so the operator knows whom to wait for. */
    char holder[200] = "another session";
    char q[400];
    snprintf(q, sizeof q,
             "SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.usename::text, ''), "
             "coalesce(a.client_addr::text, 'local') FROM pg_locks l JOIN pg_stat_activity a "
             "USING (pid) WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %lld "
             "AND l.objid = %lld AND l.objsubid = 1 AND l.database = "
             "(SELECT oid FROM pg_database WHERE datname = current_database()) LIMIT 1",
             MIGRATE_LOCK_KEY >> 32, MIGRATE_LOCK_KEY & 0xffffffffLL);
    PGresult *r = PQexec(c, q);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        snprintf(holder, sizeof holder, "pid %s (application \"%s\", user %s, from %s)",
                 PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3));
    PQclear(r);
    return pgsov_fail(err, "another migration holds the migration lock on database %s: %s; "
                      "waited %d ms (--lock-timeout). Wait for it to finish and run again",
                      dbname, holder, wait_ms);
}

static void lock_release(PGconn *c)
{
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT pg_advisory_unlock(%lld)", MIGRATE_LOCK_KEY);
    PQclear(PQexec(c, sql));
}

static void client_identity(char *buf, size_t size)
{
    char host[128] = "?";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    const char *user = getenv("USER");
    snprintf(buf, size, "%s@%s", user && *user ? user : "?", host);
}

/* ---- running a step ------------------------------------------------------------------------- */

static long elapsed_ms(const struct timespec *a)
{
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (b.tv_sec - a->tv_sec) * 1000 + (b.tv_nsec - a->tv_nsec) / 1000000;
}

static int set_timeouts(PGconn *c, const struct mig_settings *s, bool local, struct pgsov_err *err)
{
    char sql[160];
    snprintf(sql, sizeof sql, "SET %slock_timeout = %d; SET %sstatement_timeout = %d",
             local ? "LOCAL " : "", s->lock_timeout_ms, local ? "LOCAL " : "",
             s->statement_timeout_ms);
    return db_exec(c, sql, err);
}

/* The history writes of one step, inside the caller's transaction. */
static int record_step(PGconn *c, const struct mig_plan *plan, const struct mig_plan_step *st,
                       long duration, const char *action, struct pgsov_err *err)
{
    const struct mig_file *f = st->file;
    char vnum[24], dur[24], client[200];
    snprintf(vnum, sizeof vnum, "%llu", (unsigned long long)f->vnum);
    snprintf(dur, sizeof dur, "%ld", duration);
    client_identity(client, sizeof client);
    const char *tx = st->transactional ? "true" : "false";
    bool apply = strcmp(action, "rollback") != 0;
    if (apply) {
        const char *v[10] = { f->version, vnum, f->name, f->checksum, f->chain, client,
                              plan->environment, dur, plan->hash, tx };
        if (db_params(c, "INSERT INTO pgsov.schema_migrations (version, version_num, name, "
                         "checksum, chain_checksum, client, environment, duration_ms, plan_hash, "
                         "transactional) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                      10, v, err) < 0)
            return -1;
    } else {
        const char *v[1] = { f->version };
        if (db_params(c, "DELETE FROM pgsov.schema_migrations WHERE version = $1", 1, v, err) < 0)
            return -1;
    }
    const char *lv[8] = { action, f->version, f->name, apply ? f->checksum : f->down_checksum,
                          client, plan->environment, dur, plan->hash };
    if (db_params(c, "INSERT INTO pgsov.migration_log (action, version, name, checksum, client, "
                     "environment, duration_ms, plan_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                  8, lv, err) < 0)
        return -1;
    if (f->drizzle_when >= 0) {
        char when[24];
        snprintf(when, sizeof when, "%lld", (long long)f->drizzle_when);
        const char *dv[2] = { f->checksum, when };
        if (db_params(c, apply ?
                      "INSERT INTO drizzle.__drizzle_migrations (hash, created_at) "
                      "SELECT $1, $2::bigint WHERE NOT EXISTS (SELECT 1 FROM "
                      "drizzle.__drizzle_migrations WHERE created_at = $2::bigint)" :
                      "DELETE FROM drizzle.__drizzle_migrations WHERE created_at = $2::bigint "
                      "AND $1::text IS NOT NULL",
                      2, dv, err) < 0)
            return -1;
    }
    return 0;
}

static int run_step(PGconn *c, const struct mig_plan *plan, const struct mig_plan_step *st,
                    bool quiet, struct pgsov_err *err)
{
    const struct mig_file *f = st->file;
    bool up = st->direction == MIG_UP;
    const char *path = up ? f->up_path : f->down_path;
    const char *action = up ? "apply" : "rollback";
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    struct pgsov_err e2;

    if (st->transactional && (db_exec(c, "BEGIN", err) < 0 || set_timeouts(c, &st->settings, true, err) < 0))
        return -1;
    if (!st->transactional && set_timeouts(c, &st->settings, false, err) < 0)
        return -1;
    for (size_t i = 0; i < st->n_stmts; i++) {
        const struct mig_stmt *s = &st->stmts[i];
        char *sql = strndup(s->sql, s->len);
        if (!sql) {
            if (st->transactional)
                db_exec(c, "ROLLBACK", NULL);
            return pgsov_fail(err, "out of memory");
        }
        PGresult *r = PQexec(c, sql);
        free(sql);
        ExecStatusType rs = PQresultStatus(r);
        if (rs != PGRES_COMMAND_OK && rs != PGRES_TUPLES_OK) {
            char msg[400];
            result_error(r, c, msg, sizeof msg);
            PQclear(r);
            if (st->transactional) {
                db_exec(c, "ROLLBACK", NULL);
                return pgsov_fail(err, "%s line %d: %s; the file's transaction was rolled back, "
                                  "nothing from it was applied or recorded", path, s->line, msg);
            }
            db_exec(c, "RESET lock_timeout; RESET statement_timeout", NULL);
            return pgsov_fail(err, "%s line %d: %s; this file runs outside a transaction: "
                              "statements before line %d stay applied and the file is NOT recorded "
                              "— clean up (e.g. DROP INDEX CONCURRENTLY of an invalid index) and run "
                              "again", path, s->line, msg, s->line);
        }
        PQclear(r);
    }
    long dur = elapsed_ms(&start);
    if (!st->transactional) {
        db_exec(c, "RESET lock_timeout; RESET statement_timeout", NULL);
        if (db_exec(c, "BEGIN", err) < 0)
            return -1;
    }
    if (record_step(c, plan, st, dur, action, &e2) < 0) {
        db_exec(c, "ROLLBACK", NULL);
        return pgsov_fail(err, "%s: recording it in pgsov.schema_migrations failed: %s%s", path,
                          e2.msg, st->transactional ? "; the file's transaction was rolled back"
                          : "; its statements DID run — record or revert them by hand");
    }
    if (db_exec(c, "COMMIT", err) < 0)
        return -1;
    if (!quiet)
        printf("%s %s_%s (%ld ms%s)\n", up ? "applied " : "reverted", f->version, f->name, dur,
               st->transactional ? "" : ", no transaction");
    return 0;
}

/* ---- the commands ---------------------------------------------------------------------------- */

struct run {
    struct cli *cli;
    struct target t;
    struct mig_set *set;
    struct history hist;
    struct mig_status_row *rows;
    size_t n_rows;
    bool locked;
};

static void run_end(struct run *r)
{
    if (r->locked)
        lock_release(r->t.conn);
    free(r->rows);
    history_free(&r->hist);
    mig_set_free(r->set);
    target_close(&r->t);
}

/* Common start: target (guard), attestation read check, folder scan. */
static int run_begin(struct run *r, struct cli *c, int *code)
{
    struct pgsov_err err;
    memset(r, 0, sizeof *r);
    r->cli = c;
    if (target_open(&r->t, &c->topt, &err) != 0) {
        fprintf(stderr, "pgsov %s: %s\n", c->cmd, err.msg);
        *code = r->t.refused ? EXIT_REFUSED : EXIT_FAILED;
        return -1;
    }
    if (r->t.warning[0])
        fprintf(stderr, "pgsov %s: warning: %s\n", c->cmd, r->t.warning);
    bool baseline = c->sub && strcmp(c->sub, "baseline") == 0;   /* checks on its own */
    if (!baseline && target_check_attestation(&r->t, false, &err) < 0) {
        fprintf(stderr, "pgsov %s: %s\n", c->cmd, err.msg);
        *code = EXIT_REFUSED;
        return -1;
    }
    const char *dir = c->dir ? c->dir : r->t.env->migrations_dir;
    if (mig_scan(dir, c->drizzle, !c->no_drizzle, &r->set, &err) != 0) {
        fprintf(stderr, "pgsov %s: %s\n", c->cmd, err.msg);
        *code = EXIT_FAILED;
        return -1;
    }
    return 0;
}

static int run_read_status(struct run *r, int *code)
{
    struct pgsov_err err;
    if (history_read(r->t.conn, r->set, &r->hist, &err) != 0 ||
        mig_status(r->set, r->hist.rows, r->hist.n, &r->rows, &r->n_rows, &err) != 0) {
        fprintf(stderr, "pgsov %s: %s\n", r->cli->cmd, err.msg);
        *code = EXIT_FAILED;
        return -1;
    }
    return 0;
}

/* Lock, then make sure pgsov's (and drizzle's) tables exist. */
static int run_lock(struct run *r, int *code)
{
    struct pgsov_err err;
    if (lock_acquire(r->t.conn, r->cli->lock_wait_ms, r->t.dbname, &err) != 0) {
        fprintf(stderr, "pgsov %s: %s\n", r->cli->cmd, err.msg);
        *code = EXIT_LOCKED;
        return -1;
    }
    r->locked = true;
    if (db_exec(r->t.conn, history_ddl, &err) != 0 ||
        (r->set->drizzle && db_exec(r->t.conn, drizzle_ddl, &err) != 0)) {
        fprintf(stderr, "pgsov %s: creating the history tables: %s\n", r->cli->cmd, err.msg);
        *code = EXIT_FAILED;
        return -1;
    }
    return 0;
}

/* Approval: required by the env, or checked whenever given. */
static int check_approval(const struct run *r, const struct mig_plan *plan)
{
    const struct cli *c = r->cli;
    if (c->approve && !mig_approval_matches(c->approve, plan->hash)) {
        fprintf(stderr, "pgsov %s: refused: --approve %s does not match the current plan's hash "
                "%s; the files, the environment or what is pending changed since the plan was "
                "approved. Run `pgsov %s plan --env %s` again and review it\n", c->cmd,
                c->approve, plan->hash, c->cmd, r->t.env_name);
        return -1;
    }
    if (!c->approve && r->t.env->require_approval) {
        mig_plan_print(plan, stderr, true);
        fprintf(stderr, "\npgsov %s: refused: environment %s requires approval (require_approval "
                "in [env.%s]); review the plan above and run again with --approve %.16s\n",
                c->cmd, r->t.env_name, r->t.env_name, plan->hash);
        return -1;
    }
    return 0;
}

static int plan_execute(struct run *r, struct mig_plan *plan)
{
    struct pgsov_err err;
    for (size_t i = 0; i < plan->n_steps; i++)
        if (run_step(r->t.conn, plan, &plan->steps[i], r->cli->quiet, &err) != 0) {
            fprintf(stderr, "pgsov %s: %s\n", r->cli->cmd, err.msg);
            if (i > 0)
                fprintf(stderr, "pgsov %s: %zu earlier file%s of this plan %s recorded; "
                        "`pgsov status --env %s` shows where it stopped\n", r->cli->cmd, i,
                        i == 1 ? "" : "s", i == 1 ? "was" : "were", r->t.env_name);
            return EXIT_FAILED;
        }
    return EXIT_OK;
}

static int cmd_migrate_baseline(struct run *r)
{
    struct cli *c = r->cli;
    struct pgsov_err err;
    int code = EXIT_OK;
    char attested[128];
    int a = target_read_attestation(r->t.conn, attested, sizeof attested, &err);
    if (a < 0) {
        fprintf(stderr, "pgsov migrate baseline: %s\n", err.msg);
        return EXIT_FAILED;
    }
    if (a == 1 && strcmp(attested, r->t.env_name) != 0 && !c->force) {
        fprintf(stderr, "pgsov migrate baseline: refused: database %s at %s:%d attests \"%s\"; "
                "pass --force to re-attest it as \"%s\" (only when it truly is that now)\n",
                r->t.dbname, r->t.host, r->t.port, attested, r->t.env_name);
        return EXIT_REFUSED;
    }
    if (run_lock(r, &code) != 0)
        return code;
    if (target_write_attestation(r->t.conn, r->t.env_name, &err) != 0) {
        fprintf(stderr, "pgsov migrate baseline: %s\n", err.msg);
        return EXIT_FAILED;
    }
    printf("database %s at %s:%d attested as environment %s\n", r->t.dbname, r->t.host,
           r->t.port, r->t.env_name);
    if (!c->mark_applied)
        return EXIT_OK;
    uint64_t upto;
    if (parse_version(c->mark_applied, &upto) < 0) {
        fprintf(stderr, "pgsov migrate baseline: --mark-applied %s is not a version\n", c->mark_applied);
        return EXIT_USAGE;
    }
    if (run_read_status(r, &code) != 0)
        return code;
    struct mig_plan plan = { .kind = MIG_PLAN_APPLY };
    pgsov_strlcpy(plan.environment, r->t.env_name, sizeof plan.environment);
    snprintf(plan.hash, sizeof plan.hash, "baseline");
    if (db_exec(r->t.conn, "BEGIN", &err) != 0)
        return EXIT_FAILED;
    size_t marked = 0;
    for (size_t i = 0; i < r->n_rows; i++) {
        const struct mig_status_row *row = &r->rows[i];
        if (row->state != MIG_STATE_PENDING && row->state != MIG_STATE_OUT_OF_ORDER)
            continue;
        if (row->vnum > upto)
            continue;
        struct mig_plan_step st = { .file = row->file, .direction = MIG_UP, .transactional = true };
        if (record_step(r->t.conn, &plan, &st, 0, "baseline", &err) != 0) {
            db_exec(r->t.conn, "ROLLBACK", NULL);
            fprintf(stderr, "pgsov migrate baseline: %s\n", err.msg);
            return EXIT_FAILED;
        }
        printf("marked applied (not run): %s_%s\n", row->version, row->name);
        marked++;
    }
    if (db_exec(r->t.conn, "COMMIT", &err) != 0) {
        fprintf(stderr, "pgsov migrate baseline: %s\n", err.msg);
        return EXIT_FAILED;
    }
    printf("%zu migration%s marked applied\n", marked, marked == 1 ? "" : "s");
    return EXIT_OK;
}

/* Pending files in version order (up to --to), for apply. */
static size_t pending_files(const struct run *r, uint64_t upto, const struct mig_file **out)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n_rows; i++) {
        const struct mig_status_row *row = &r->rows[i];
        if ((row->state == MIG_STATE_PENDING || row->state == MIG_STATE_OUT_OF_ORDER) &&
            row->vnum <= upto)
            out[n++] = row->file;
    }
    return n;
}

int cmd_migrate(int argc, char **argv)
{
    struct cli c;
    int p = parse_cli(&c, argc, argv);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    uint64_t upto = UINT64_MAX;
    if (c.to && parse_version(c.to, &upto) < 0) {
        fprintf(stderr, "pgsov migrate: --to %s is not a version number\n", c.to);
        return EXIT_USAGE;
    }
    struct run r;
    int code = EXIT_OK;
    if (run_begin(&r, &c, &code) != 0) {
        run_end(&r);
        return code;
    }
    if (c.sub && strcmp(c.sub, "baseline") == 0) {
        code = cmd_migrate_baseline(&r);
        run_end(&r);
        return code;
    }
    bool plan_only = c.sub && strcmp(c.sub, "plan") == 0;
    struct pgsov_err err;
    struct mig_plan plan = { 0 };
    const struct mig_file **files = NULL;

    if (!plan_only) {
        /* Attestation before any write: required for approval environments (baseline first),
         * written on first use elsewhere. */
        int a = target_check_attestation(&r.t, r.t.env->require_approval, &err);
        if (a < 0) {
            fprintf(stderr, "pgsov migrate: %s\n", err.msg);
            code = EXIT_REFUSED;
            goto out;
        }
        if (run_lock(&r, &code) != 0)
            goto out;
        if (a == 0) {
            if (target_write_attestation(r.t.conn, r.t.env_name, &err) != 0) {
                fprintf(stderr, "pgsov migrate: %s\n", err.msg);
                code = EXIT_FAILED;
                goto out;
            }
            if (!c.quiet)
                printf("database %s at %s:%d attested as environment %s (first migration)\n",
                       r.t.dbname, r.t.host, r.t.port, r.t.env_name);
        }
    }
    if (run_read_status(&r, &code) != 0)
        goto out;
    if (mig_status_check(r.rows, r.n_rows, c.allow_out_of_order, &err) != 0) {
        fprintf(stderr, "pgsov migrate: refused: %s\n", err.msg);
        code = EXIT_REFUSED;
        goto out;
    }
    files = calloc(r.n_rows + 1, sizeof *files);
    if (!files) {
        code = EXIT_FAILED;
        goto out;
    }
    size_t n = pending_files(&r, upto, files);
    if (mig_plan_build(MIG_PLAN_APPLY, r.t.env_name, files, n, &c.defaults, &plan, &err) != 0) {
        fprintf(stderr, "pgsov migrate: %s\n", err.msg);
        code = EXIT_REFUSED;
        goto out;
    }
    if (plan_only) {
        mig_plan_print(&plan, stdout, true);
        if (n > 0)
            printf("apply with: pgsov migrate --env %s --approve %.16s\n", r.t.env_name, plan.hash);
        goto out;
    }
    if (n == 0) {
        if (!c.quiet)
            printf("environment %s (database %s): up to date, nothing to apply\n", r.t.env_name,
                   r.t.dbname);
        goto out;
    }
    if (check_approval(&r, &plan) != 0) {
        code = EXIT_REFUSED;
        goto out;
    }
    if (!c.quiet)
        printf("applying %zu migration%s to %s (database %s at %s:%d), plan %.16s\n", n,
               n == 1 ? "" : "s", r.t.env_name, r.t.dbname, r.t.host, r.t.port, plan.hash);
    code = plan_execute(&r, &plan);
out:
    free(files);
    mig_plan_free(&plan);
    run_end(&r);
    return code;
}

int cmd_rollback(int argc, char **argv)
{
    struct cli c;
    int p = parse_cli(&c, argc, argv);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    uint64_t to = 0;
    if (c.to && parse_version(c.to, &to) < 0) {
        fprintf(stderr, "pgsov rollback: --to %s is not a version number\n", c.to);
        return EXIT_USAGE;
    }
    bool plan_only = c.sub != NULL;
    struct run r;
    int code = EXIT_OK;
    struct pgsov_err err;
    struct mig_plan plan = { 0 };
    const struct mig_file **files = NULL;
    if (run_begin(&r, &c, &code) != 0)
        goto out;
    if (!plan_only) {
        if (target_check_attestation(&r.t, true, &err) < 0) {
            fprintf(stderr, "pgsov rollback: %s\n", err.msg);
            code = EXIT_REFUSED;
            goto out;
        }
        if (run_lock(&r, &code) != 0)
            goto out;
    }
    if (run_read_status(&r, &code) != 0)
        goto out;
    /* Out of order is fine for a rollback; drift and missing files are not. */
    if (mig_status_check(r.rows, r.n_rows, true, &err) != 0) {
        fprintf(stderr, "pgsov rollback: refused: %s\n", err.msg);
        code = EXIT_REFUSED;
        goto out;
    }
    files = calloc(r.hist.n + 1, sizeof *files);
    if (!files) {
        code = EXIT_FAILED;
        goto out;
    }
    /* History is ordered most recently applied first: revert in that order. */
    size_t n = 0;
    for (size_t i = 0; i < r.hist.n; i++) {
        const struct mig_applied *a = &r.hist.rows[i];
        if (c.steps > 0 ? n >= (size_t)c.steps : a->vnum <= to)
            continue;
        for (size_t k = 0; k < r.set->n_files; k++)
            if (r.set->files[k].vnum == a->vnum)
                files[n++] = &r.set->files[k];
    }
    if (c.to && c.steps < 0) {
        /* --to: strictly newest version first, whatever the apply order was. */
        for (size_t i = 1; i < n; i++)
            for (size_t j = i; j > 0 && files[j]->vnum > files[j - 1]->vnum; j--) {
                const struct mig_file *tmp = files[j];
                files[j] = files[j - 1];
                files[j - 1] = tmp;
            }
    }
    if (mig_plan_build(MIG_PLAN_ROLLBACK, r.t.env_name, files, n, &c.defaults, &plan, &err) != 0) {
        fprintf(stderr, "pgsov rollback: %s\n", err.msg);
        code = EXIT_REFUSED;
        goto out;
    }
    if (plan_only) {
        mig_plan_print(&plan, stdout, true);
        if (n > 0 && c.steps > 0)
            printf("revert with: pgsov rollback --env %s --steps %d --approve %.16s\n",
                   r.t.env_name, c.steps, plan.hash);
        else if (n > 0)
            printf("revert with: pgsov rollback --env %s --to %s --approve %.16s\n", r.t.env_name,
                   c.to, plan.hash);
        goto out;
    }
    if (n == 0) {
        printf("environment %s: nothing to roll back\n", r.t.env_name);
        goto out;
    }
    if (check_approval(&r, &plan) != 0) {
        code = EXIT_REFUSED;
        goto out;
    }
    if (!c.quiet)
        printf("reverting %zu migration%s on %s (database %s at %s:%d), plan %.16s\n", n,
               n == 1 ? "" : "s", r.t.env_name, r.t.dbname, r.t.host, r.t.port, plan.hash);
    code = plan_execute(&r, &plan);
out:
    free(files);
    mig_plan_free(&plan);
    run_end(&r);
    return code;
}

static int status_json(const struct run *r, int code)
{
    json_t *root = json_object();
    json_t *list = json_array();
    if (!root || !list) {
        json_decref(root);
        json_decref(list);
        return EXIT_FAILED;
    }
    json_object_set_new(root, "environment", json_string(r->t.env_name));
    json_object_set_new(root, "database", json_string(r->t.dbname));
    json_object_set_new(root, "host", json_string(r->t.host));
    json_object_set_new(root, "port", json_integer(r->t.port));
    json_object_set_new(root, "drizzle", json_boolean(r->set->drizzle));
    size_t counts[5] = { 0 };
    for (size_t i = 0; i < r->n_rows; i++) {
        const struct mig_status_row *row = &r->rows[i];
        counts[row->state]++;
        json_t *o = json_pack("{s:s, s:s, s:s}", "version", row->version, "name", row->name,
                              "state", mig_state_name(row->state));
        if (!o)
            continue;
        if (row->file)
            json_object_set_new(o, "checksum", json_string(row->file->checksum));
        if (row->applied) {
            json_object_set_new(o, "applied_checksum", json_string(row->applied->checksum));
            json_object_set_new(o, "applied_at", json_string(row->applied->applied_at));
        }
        json_array_append_new(list, o);
    }
    json_object_set_new(root, "migrations", list);
    for (int s = 0; s < 5; s++)
        json_object_set_new(root, mig_state_name((enum mig_state)s), json_integer((json_int_t)counts[s]));
    char *text = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    if (!text)
        return EXIT_FAILED;
    printf("%s\n", text);
    free(text);
    return code;
}

int cmd_status(int argc, char **argv)
{
    struct cli c;
    int p = parse_cli(&c, argc, argv);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    struct run r;
    int code = EXIT_OK;
    if (run_begin(&r, &c, &code) != 0 || run_read_status(&r, &code) != 0) {
        run_end(&r);
        return code;
    }
    size_t pending = 0, problems = 0;
    for (size_t i = 0; i < r.n_rows; i++) {
        enum mig_state s = r.rows[i].state;
        pending += s == MIG_STATE_PENDING || s == MIG_STATE_OUT_OF_ORDER;
        problems += s == MIG_STATE_DRIFTED || s == MIG_STATE_MISSING || s == MIG_STATE_OUT_OF_ORDER;
    }
    code = problems ? EXIT_REFUSED : pending ? EXIT_PENDING : EXIT_OK;
    if (c.json) {
        code = status_json(&r, code);
    } else {
        char attested[128] = "";
        struct pgsov_err err;
        int a = target_read_attestation(r.t.conn, attested, sizeof attested, &err);
        printf("environment %s: database %s at %s:%d, attested %s%s\n", r.t.env_name, r.t.dbname,
               r.t.host, r.t.port, a == 1 ? "as " : "", a == 1 ? attested : "no");
        printf("migrations folder %s%s\n", r.set->dir, r.set->drizzle ? " (drizzle-kit)" : "");
        for (size_t i = 0; i < r.n_rows; i++) {
            const struct mig_status_row *row = &r.rows[i];
            printf("  %-12s %s_%s%s%s\n", mig_state_name(row->state), row->version, row->name,
                   row->applied ? "  " : "", row->applied ? row->applied->applied_at : "");
        }
        printf("%zu migration%s, %zu pending, %zu problem%s\n", r.n_rows, r.n_rows == 1 ? "" : "s",
               pending, problems, problems == 1 ? "" : "s");
        struct pgsov_err e2;
        if (problems && mig_status_check(r.rows, r.n_rows, false, &e2) != 0)
            printf("first problem: %s\n", e2.msg);
    }
    run_end(&r);
    return code;
}
