/* test_migrate.c — `pgsov migrate`, `rollback` and `status` against the dev cluster, running
 * the real bin/pgsov: apply and re-run, drift / missing / out of order, the migration lock,
 * a failing file, non-transactional files, plan approval, rollback by steps and to a version,
 * the attestation and hostname-guard refusals, the drizzle-kit fixture, and the runbook's
 * down-migration path checked with a catalog snapshot. One fresh database per test. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"

#define LOCK_KEY "482771955574"   /* 0x7067736f76, tools/migrate.c's MIGRATE_LOCK_KEY */

struct ctx {
    char db[64];
    char *dir;          /* scratch dir: proxy.ini, migration folders */
    char ini[600];
};

/* proxy.ini whose development env points at the dev cluster (verify-full), production at the
 * prod cluster; extra_dev: more lines for [env.development]. */
static void write_ini(struct ctx *c, const char *extra_dev)
{
    const struct it_env *e = it_env();
    char text[4096];
    snprintf(text, sizeof text,
             "[proxy]\nclient_tls = disable\n\n"
             "[env.development]\naliases = dev\nhost = localhost\nport = %d\ndatabase = %s\n"
             "sslmode = verify-full\nsslrootcert = %s/ca.crt\nhost_patterns = localhost:%d\n%s\n"
             "[env.production]\naliases = prod\nhost = 127.0.0.1\nport = %d\ndatabase = %s\n"
             "sslmode = verify-full\nsslrootcert = %s/ca.crt\nhost_patterns = 127.0.0.1:%d\n",
             e->dev_port, c->db, e->pki, e->dev_port, extra_dev ? extra_dev : "",
             e->prod_port, c->db, e->pki, e->prod_port);
    snprintf(c->ini, sizeof c->ini, "%s/proxy.ini", c->dir);
    it_write_file(c->ini, text);
}

static void ctx_open(struct ctx *c, const char *db, const char *extra_dev)
{
    memset(c, 0, sizeof *c);
    snprintf(c->db, sizeof c->db, "%s", db);
    c->dir = it_tmpdir(db);
    it_create_db("dev", db, NULL);
    write_ini(c, extra_dev);
}

static void ctx_close(struct ctx *c)
{
    PGconn *s = it_super("dev", "postgres");
    char sql[200];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", c->db);
    it_exec(s, sql);
    PQfinish(s);
    it_sh(NULL, "rm -rf '%s'", c->dir);
    free(c->dir);
}

/* Runs bin/pgsov with the test's config; args is the rest of the command line. */
static int pgsov(const struct ctx *c, char **out, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int pgsov(const struct ctx *c, char **out, const char *fmt, ...)
{
    const struct it_env *e = it_env();
    char args[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *buf = NULL;
    int rc = it_sh(&buf, "cd '%s' && env -u PGSOV_ENV -u NODE_ENV -u DEV_DATABASE_URL PGUSER=postgres "
                   "PGPASSWORD='%s' '%s/pgsov' %s -c '%s'", c->dir, e->superpass, e->bin, args, c->ini);
    if (getenv("PGSOV_IT_VERBOSE"))
        fprintf(stderr, "$ pgsov %s → %d\n%s", args, rc, buf ? buf : "");
    if (out)
        *out = buf;
    else
        free(buf);
    return rc;
}

static void run_expect(const struct ctx *c, int want_rc, const char *want_text, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void run_expect(const struct ctx *c, int want_rc, const char *want_text, const char *fmt, ...)
{
    char args[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *out = NULL;
    int rc = pgsov(c, &out, "%s", args);
    if (rc != want_rc || (want_text && !it_contains(out, want_text)))
        fail_msg("pgsov %s: exit %d (want %d), want \"%s\" in:\n%s", args, rc, want_rc,
                 want_text ? want_text : "", out ? out : "");
    free(out);
}

static char *q(const struct ctx *c, const char *sql)
{
    PGconn *s = it_super("dev", c->db);
    char *v = it_value(s, sql);
    PQfinish(s);
    return v;
}

static void expect_sql(const struct ctx *c, const char *sql, const char *want)
{
    char *v = q(c, sql);
    if (strcmp(v, want) != 0)
        fail_msg("%s: \"%s\", want \"%s\"", sql, v, want);
    free(v);
}

/* A migrations folder in the scratch dir: name, text pairs. */
static char *folder(const struct ctx *c, const char *name, const char *const *files)
{
    char *path = NULL;
    if (asprintf(&path, "%s/%s", c->dir, name) < 0)
        fail_msg("out of memory");
    it_sh(NULL, "mkdir -p '%s'", path);
    for (size_t i = 0; files[i]; i += 2) {
        char p[1200];
        snprintf(p, sizeof p, "%s/%s", path, files[i]);
        it_write_file(p, files[i + 1]);
    }
    return path;
}

static const char *examples(void)
{
    static char path[1024];
    snprintf(path, sizeof path, "%s/migrations", it_env()->src);
    return path;
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_apply_and_rerun(void **state)
{
    (void)state;
    struct ctx c;
    ctx_open(&c, "mig_apply", NULL);
    run_expect(&c, 10, "5 pending", "status --env development --dir '%s'", examples());
    run_expect(&c, 0, "applied  0005_installments_due_date_index", "migrate --env dev --dir '%s'", examples());
    expect_sql(&c, "SELECT count(*) FROM pgsov.schema_migrations", "5");
    expect_sql(&c, "SELECT environment FROM pgsov.environment_attestation", "development");
    expect_sql(&c, "SELECT count(*) FROM pg_tables WHERE schemaname = 'app' AND rowsecurity", "5");
    /* the CREATE INDEX CONCURRENTLY file ran outside a transaction and left a valid index */
    expect_sql(&c, "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                     "WHERE c.relname = 'installments_due_date_idx'", "t");
    expect_sql(&c, "SELECT string_agg(transactional::text, ',' ORDER BY version) FROM "
                     "pgsov.schema_migrations", "true,true,true,true,false");
    /* history: checksums, chain, plan hash, environment, duration */
    expect_sql(&c, "SELECT count(DISTINCT chain_checksum) || '/' || count(DISTINCT plan_hash) || '/' "
                     "|| bool_and(length(checksum) = 64 AND environment = 'development' AND "
                     "duration_ms >= 0) FROM pgsov.schema_migrations", "5/1/true");
    run_expect(&c, 0, "up to date", "migrate --env dev --dir '%s'", examples());
    expect_sql(&c, "SELECT count(*) FROM pgsov.migration_log WHERE action = 'apply'", "5");
    run_expect(&c, 0, "0 pending, 0 problems", "status --env dev --dir '%s'", examples());
    run_expect(&c, 0, "\"applied\": 5", "status --env dev --dir '%s' --format json", examples());
    ctx_close(&c);
}

static void test_drift_missing_out_of_order(void **state)
{
    (void)state;
    struct ctx c;
    ctx_open(&c, "mig_drift", NULL);
    static const char *const files[] = {
        "0010_a.sql", "CREATE TABLE a (id int);",
        "0020_b.sql", "CREATE TABLE b (id int);",
        NULL,
    };
    char *dir = folder(&c, "m", files);
    run_expect(&c, 0, "applied  0020_b", "migrate --env dev --dir '%s'", dir);

    char p[1200];
    snprintf(p, sizeof p, "%s/0010_a.sql", dir);
    it_write_file(p, "CREATE TABLE a (id bigint);");
    run_expect(&c, 3, "drift: 0010_a was applied with checksum", "migrate --env dev --dir '%s'", dir);
    run_expect(&c, 3, "drifted", "status --env dev --dir '%s'", dir);
    it_write_file(p, "CREATE TABLE a (id int);");

    snprintf(p, sizeof p, "%s/0020_b.sql", dir);
    it_sh(NULL, "mv '%s' '%s.away'", p, p);
    run_expect(&c, 3, "missing: 0020_b was applied", "migrate --env dev --dir '%s'", dir);
    it_sh(NULL, "mv '%s.away' '%s'", p, p);

    snprintf(p, sizeof p, "%s/0015_c.sql", dir);
    it_write_file(p, "CREATE TABLE c (id int);");
    run_expect(&c, 3, "out of order: 0015_c is pending but older", "migrate --env dev --dir '%s'", dir);
    expect_sql(&c, "SELECT to_regclass('public.c') IS NULL", "t");
    run_expect(&c, 0, "applied  0015_c", "migrate --env dev --dir '%s' --allow-out-of-order", dir);
    expect_sql(&c, "SELECT count(*) FROM pgsov.schema_migrations", "3");
    free(dir);
    ctx_close(&c);
}

static void test_lock_contention(void **state)
{
    (void)state;
    struct ctx c;
    ctx_open(&c, "mig_lock", NULL);
    static const char *const files[] = { "0001_a.sql", "CREATE TABLE a (id int);", NULL };
    char *dir = folder(&c, "m", files);
    PGconn *holder = it_super("dev", c.db);
    it_exec(holder, "SET application_name = 'other-migrator'");
    it_exec(holder, "SELECT pg_advisory_lock(" LOCK_KEY ")");
    run_expect(&c, 4, "application \"other-migrator\"", "migrate --env dev --dir '%s' --lock-timeout 600ms", dir);
    expect_sql(&c, "SELECT to_regclass('public.a') IS NULL", "t");
    it_exec(holder, "SELECT pg_advisory_unlock(" LOCK_KEY ")");
    run_expect(&c, 0, "applied  0001_a", "migrate --env dev --dir '%s' --lock-timeout 600ms", dir);
    PQfinish(holder);
    free(dir);
    ctx_close(&c);
}

static void test_failing_and_mixed_files(void **state)
{
    (void)state;
    struct ctx c;
    ctx_open(&c, "mig_fail", NULL);
    /* refused at plan time, before anything of theirs runs */
    static const char *const mixed[] = {
        "0001_mixed.sql", "CREATE TABLE t (id int);\nCREATE INDEX CONCURRENTLY t_i ON t (id);\n",
        NULL,
    };
    char *dir2 = folder(&c, "m2", mixed);
    run_expect(&c, 3, "move the non-transactional statement into a file of its own",
               "migrate --env dev --dir '%s'", dir2);
    static const char *const txctl[] = { "0001_tx.sql", "BEGIN;\nCREATE TABLE u (id int);\nCOMMIT;\n", NULL };
    char *dir3 = folder(&c, "m3", txctl);
    run_expect(&c, 3, "pgsov runs each file in its own transaction", "migrate --env dev --dir '%s'", dir3);
    expect_sql(&c, "SELECT to_regclass('public.t') IS NULL AND to_regclass('public.u') IS NULL", "t");

    /* a failing statement rolls its whole file back; earlier files stay recorded */
    static const char *const files[] = {
        "0001_ok.sql", "CREATE TABLE ok (id int);",
        "0002_bad.sql", "CREATE TABLE half (id int);\nINSERT INTO half VALUES (1);\nSELECT 1/0;\n",
        NULL,
    };
    char *dir = folder(&c, "m", files);
    run_expect(&c, 1, "0002_bad.sql line 3: ERROR 22012", "migrate --env dev --dir '%s'", dir);
    expect_sql(&c, "SELECT to_regclass('public.ok') IS NOT NULL AND to_regclass('public.half') IS NULL", "t");
    expect_sql(&c, "SELECT string_agg(version, ',') FROM pgsov.schema_migrations", "0001");
    expect_sql(&c, "SELECT count(*) FROM pgsov.migration_log", "1");
    free(dir);
    free(dir2);
    free(dir3);
    ctx_close(&c);
}

/* Extracts the 64-hex plan hash from `plan` output. */
static void plan_hash(const struct ctx *c, const char *args, char hash[65])
{
    char *out = NULL;
    int rc = pgsov(c, &out, "%s", args);
    const char *h = out ? strstr(out, "plan hash: ") : NULL;
    if (rc != 0 || !h)
        fail_msg("pgsov %s: exit %d\n%s", args, rc, out ? out : "");
    snprintf(hash, 65, "%.64s", h + strlen("plan hash: "));
    free(out);
}

static void test_plan_and_approval(void **state)
{
    (void)state;
    struct ctx c;
    ctx_open(&c, "mig_approve", "require_approval = on\n");
    static const char *const files[] = {
        "0001_a.sql", "CREATE TABLE a (id int, note text);",
        "0002_b.sql", "ALTER TABLE a DROP COLUMN note;\nCREATE INDEX a_id ON a (id);\n",
        NULL,
    };
    char *dir = folder(&c, "m", files);
    /* approval environments need an explicit baseline first */
    run_expect(&c, 3, "pgsov migrate baseline --env development", "migrate --env dev --dir '%s'", dir);
    run_expect(&c, 0, "attested as environment development", "migrate baseline --env dev --dir '%s'", dir);
    char hash[65];
    plan_hash(&c, "migrate plan --env dev --dir m --to 1", hash);
    run_expect(&c, 3, "requires approval", "migrate --env dev --dir '%s' --to 1", dir);
    run_expect(&c, 3, "does not match the current plan", "migrate --env dev --dir '%s' --to 1 --approve 0123456789abcdef", dir);
    /* a plan approved for one file does not approve two */
    run_expect(&c, 3, "does not match", "migrate --env dev --dir '%s' --approve %.16s", dir, hash);
    run_expect(&c, 0, "applied  0001_a", "migrate --env dev --dir '%s' --to 1 --approve %.12s", dir, hash);
    expect_sql(&c, "SELECT plan_hash FROM pgsov.schema_migrations", hash);
    /* the plan shows destructive and locking operations */
    run_expect(&c, 0, "DESTRUCTIVE line 1: DROP COLUMN a.note", "migrate plan --env dev --dir '%s'", dir);
    run_expect(&c, 0, "LOCKING line 2: CREATE INDEX on existing table a", "migrate plan --env dev --dir '%s'", dir);
    free(dir);
    ctx_close(&c);
}

static void test_rollback(void **state)
{
    (void)state;
    struct ctx c;
    ctx_open(&c, "mig_rollback", NULL);
    run_expect(&c, 0, NULL, "migrate --env dev --dir '%s'", examples());
    /* the plan's hint is a command that can be pasted: the real step count, not a placeholder */
    run_expect(&c, 0, "revert with: pgsov rollback --env development --steps 2 --approve ",
               "rollback plan --env dev --dir '%s' --steps 2", examples());
    run_expect(&c, 0, "reverted 0005_installments_due_date_index", "rollback --env dev --dir '%s' --steps 1", examples());
    expect_sql(&c, "SELECT to_regclass('app.installments_due_date_idx') IS NULL AND "
                     "to_regclass('app.installments') IS NOT NULL", "t");
    run_expect(&c, 0, "reverted 0003_proposals_contracts", "rollback --env dev --dir '%s' --to 0002", examples());
    expect_sql(&c, "SELECT to_regclass('app.contracts') IS NULL AND to_regclass('app.clients') IS NOT NULL", "t");
    expect_sql(&c, "SELECT string_agg(version, ',' ORDER BY version) FROM pgsov.schema_migrations", "0001,0002");
    expect_sql(&c, "SELECT count(*) FROM pgsov.migration_log WHERE action = 'rollback'", "3");
    run_expect(&c, 10, "3 pending", "status --env dev --dir '%s'", examples());

    /* a migration without a down file stops the rollback before anything runs */
    static const char *const files[] = {
        "0001_a.sql", "CREATE TABLE a (id int);", "0001_a.down.sql", "DROP TABLE a;",
        "0002_b.sql", "CREATE TABLE b (id int);",
        NULL,
    };
    struct ctx c2;
    ctx_open(&c2, "mig_rollback2", NULL);
    char *dir = folder(&c2, "m", files);
    run_expect(&c2, 0, NULL, "migrate --env dev --dir '%s'", dir);
    run_expect(&c2, 3, "0002_b has no down file", "rollback --env dev --dir '%s' --to 0", dir);
    expect_sql(&c2, "SELECT count(*) FROM pgsov.schema_migrations", "2");
    expect_sql(&c2, "SELECT to_regclass('public.a') IS NOT NULL", "t");
    free(dir);
    ctx_close(&c2);
    ctx_close(&c);
}

static void test_attestation_refusal(void **state)
{
    (void)state;
    struct ctx c;
    ctx_open(&c, "mig_attest", NULL);
    run_expect(&c, 0, "attested as environment development", "migrate baseline --env dev --dir '%s'", examples());
    PGconn *s = it_super("dev", c.db);
    it_exec(s, "UPDATE pgsov.environment_attestation SET environment = 'production'");
    PQfinish(s);
    run_expect(&c, 3, "attests environment \"production\", but this command was asked to act on "
                  "\"development\"; nothing ran", "migrate --env dev --dir '%s'", examples());
    run_expect(&c, 3, "attests environment \"production\"", "rollback --env dev --dir '%s' --steps 1", examples());
    expect_sql(&c, "SELECT to_regnamespace('app') IS NULL AND (SELECT count(*) FROM pgsov.schema_migrations) = 0", "t");
    run_expect(&c, 3, "pass --force", "migrate baseline --env dev --dir '%s'", examples());
    run_expect(&c, 0, "attested as environment development", "migrate baseline --env dev --force --dir '%s'", examples());
    expect_sql(&c, "SELECT environment FROM pgsov.environment_attestation", "development");
    ctx_close(&c);
}

static void test_hostname_guard(void **state)
{
    (void)state;
    const struct it_env *e = it_env();
    struct ctx c;
    ctx_open(&c, "mig_guard", NULL);
    /* a URL whose host:port matches production's pattern is refused for development */
    run_expect(&c, 3, "belongs to environment \"production\"",
           "migrate --env dev --dir '%s' --url 'postgresql://postgres@127.0.0.1:%d/%s'",
           examples(), e->prod_port, c.db);
    /* a host:port that matches no pattern of development */
    run_expect(&c, 3, "matches none of its host_patterns",
           "migrate --env dev --dir '%s' --url 'postgresql://postgres@localhost:%d/%s'",
           examples(), e->prod_port, c.db);
    /* a URL may not weaken sslmode */
    run_expect(&c, 3, "weaker than sslmode = verify-full",
           "migrate --env dev --dir '%s' --url 'postgresql://postgres@localhost:%d/%s?sslmode=disable'",
           examples(), e->dev_port, c.db);
    /* libpq would take an address from $PGHOSTADDR or a $PGSERVICE entry, past the guard */
    static const char *const redirecting[][2] = { { "PGHOSTADDR", "127.0.0.1" }, { "PGSERVICE", "prod" } };
    for (size_t i = 0; i < 2; i++) {
        setenv(redirecting[i][0], redirecting[i][1], 1);
        char want[64];
        snprintf(want, sizeof want, "$%s is set", redirecting[i][0]);
        run_expect(&c, 3, want, "migrate --env dev --dir '%s'", examples());
        unsetenv(redirecting[i][0]);
    }
    expect_sql(&c, "SELECT to_regclass('pgsov.environment_attestation') IS NULL", "t");
    /* the right URL works, also from DEV_DATABASE_URL */
    run_expect(&c, 0, "applied  0001", "migrate --env dev --dir '%s' --to 1 --url "
           "'postgresql://postgres@localhost:%d/%s'", examples(), e->dev_port, c.db);
    ctx_close(&c);
}

static void test_drizzle_fixture(void **state)
{
    (void)state;
    struct ctx c;
    ctx_open(&c, "mig_drizzle", NULL);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/drizzle", it_env()->src);
    run_expect(&c, 10, "(drizzle-kit)", "status --env dev --dir '%s'", dir);
    run_expect(&c, 0, "applied  0001_add_order_note", "migrate --env dev --dir '%s'", dir);
    /* drizzle's table holds what drizzle-kit migrate would have written: sha256 of the file
     * text and the journal's "when", in journal order */
    char *journal = NULL;
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "python3 -c \"import json;print(','.join(str(e['when']) for e in "
             "json.load(open('%s/meta/_journal.json'))['entries']))\"", dir);
    it_sh(&journal, "%s", cmd);
    journal[strcspn(journal, "\n")] = '\0';
    expect_sql(&c, "SELECT string_agg(created_at::text, ',' ORDER BY id) FROM drizzle.__drizzle_migrations", journal);
    char *sums = NULL;
    it_sh(&sums, "cd '%s' && sha256sum 0000_init.sql 0001_add_order_note.sql | cut -c1-64 | paste -sd,", dir);
    sums[strcspn(sums, "\n")] = '\0';
    expect_sql(&c, "SELECT string_agg(hash, ',' ORDER BY id) FROM drizzle.__drizzle_migrations", sums);
    expect_sql(&c, "SELECT string_agg(checksum, ',' ORDER BY version) FROM pgsov.schema_migrations", sums);
    expect_sql(&c, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' "
                     "AND column_name = 'note'", "1");
    run_expect(&c, 0, "up to date", "migrate --env dev --dir '%s'", dir);

    /* a row drizzle-kit wrote itself counts as applied: not run twice */
    struct ctx c2;
    ctx_open(&c2, "mig_drizzle2", NULL);
    PGconn *s = it_super("dev", c2.db);
    it_exec(s, "CREATE TABLE users (id int)");      /* as if 0000 had run */
    it_exec(s, "CREATE SCHEMA drizzle; CREATE TABLE drizzle.__drizzle_migrations "
               "(id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)");
    char ins[400];
    char *first_when = strdup(journal);
    first_when[strcspn(first_when, ",")] = '\0';
    char *first_sum = strdup(sums);
    first_sum[strcspn(first_sum, ",")] = '\0';
    snprintf(ins, sizeof ins, "INSERT INTO drizzle.__drizzle_migrations (hash, created_at) "
             "VALUES ('%s', %s)", first_sum, first_when);
    it_exec(s, ins);
    PQfinish(s);
    run_expect(&c2, 10, "1 pending", "status --env dev --dir '%s'", dir);
    free(first_when);
    free(first_sum);
    free(journal);
    free(sums);
    ctx_close(&c2);
    ctx_close(&c);
}

/* The runbook's down-migration path: apply to a version, snapshot, apply the rest, roll back
 * to the version, and the catalog must be what it was. */
static const char snapshot_sql[] =
    "SELECT coalesce(string_agg(x, E'\\n' ORDER BY x), '') FROM ("
    " SELECT 'rel ' || c.relname || ' ' || c.relkind::text || ' rls=' || c.relrowsecurity FROM pg_class c"
    "   JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'app'"
    " UNION ALL SELECT 'col ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)"
    "   || ' nn=' || a.attnotnull FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
    "   JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'app' AND a.attnum > 0"
    "   AND NOT a.attisdropped"
    " UNION ALL SELECT 'con ' || co.conname || ' ' || pg_get_constraintdef(co.oid) FROM pg_constraint co"
    "   JOIN pg_namespace n ON n.oid = co.connamespace WHERE n.nspname = 'app'"
    " UNION ALL SELECT 'pol ' || p.polname || ' ' || pg_get_expr(p.polqual, p.polrelid) FROM pg_policy p"
    "   JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
    "   WHERE n.nspname = 'app'"
    " UNION ALL SELECT 'idx ' || indexname || ' ' || indexdef FROM pg_indexes WHERE schemaname = 'app'"
    " UNION ALL SELECT 'fn ' || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
    "   WHERE n.nspname = 'app'"
    " UNION ALL SELECT 'acl ' || c.relname || ' ' || coalesce(c.relacl::text, '') FROM pg_class c"
    "   JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'app'"
    ") s(x)";

static void test_runbook_down_path(void **state)
{
    (void)state;
    struct ctx c;
    ctx_open(&c, "mig_runbook", NULL);
    char *empty = q(&c, snapshot_sql);
    run_expect(&c, 0, "applied  0003_proposals_contracts", "migrate --env development --dir '%s' --to 0003", examples());
    char *before = q(&c, snapshot_sql);
    assert_true(strlen(before) > strlen(empty));
    run_expect(&c, 0, "applied  0005", "migrate --env development --dir '%s'", examples());
    char *after_up = q(&c, snapshot_sql);
    assert_string_not_equal(before, after_up);
    /* runbook step: plan the rollback, review, run it, verify */
    run_expect(&c, 0, "revert 0005_installments_due_date_index (down)", "rollback plan --env development --dir '%s' --to 0003", examples());
    run_expect(&c, 0, "reverted 0004_installments_payments", "rollback --env development --dir '%s' --to 0003", examples());
    char *after_down = q(&c, snapshot_sql);
    if (strcmp(before, after_down) != 0)
        fail_msg("catalog after rollback differs:\n--- before\n%s\n--- after\n%s", before, after_down);
    run_expect(&c, 10, "2 pending, 0 problems", "status --env development --dir '%s'", examples());
    /* and all the way down: the app schema is gone again */
    run_expect(&c, 0, "reverted 0001_app_schema", "rollback --env development --dir '%s' --to 0", examples());
    char *gone = q(&c, snapshot_sql);
    assert_string_equal(gone, empty);
    free(empty);
    free(before);
    free(after_up);
    free(after_down);
    free(gone);
    ctx_close(&c);
}

static int teardown_roles(void **state)
{
    (void)state;
    PGconn *s = it_super("dev", "postgres");
    it_exec(s, "DROP ROLE IF EXISTS app_user");
    it_exec(s, "DROP ROLE IF EXISTS app_client");
    PQfinish(s);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_and_rerun),
        cmocka_unit_test(test_drift_missing_out_of_order),
        cmocka_unit_test(test_lock_contention),
        cmocka_unit_test(test_failing_and_mixed_files),
        cmocka_unit_test(test_plan_and_approval),
        cmocka_unit_test(test_rollback),
        cmocka_unit_test(test_attestation_refusal),
        cmocka_unit_test(test_hostname_guard),
        cmocka_unit_test(test_drizzle_fixture),
        cmocka_unit_test(test_runbook_down_path),
    };
    return cmocka_run_group_tests(tests, NULL, teardown_roles);
}
