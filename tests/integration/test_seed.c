/* test_seed.c — `pgsov seed` against the dev cluster, running the real bin/pgsov: the credit
 * scenario loaded into the example schema (migrations/ applied with `pgsov migrate`), its
 * coherence checked in SQL (foreign keys, installment sums, PMT, due dates, payments before the
 * reference date, late share, proposal states), the same seed twice → identical table hashes,
 * another seed → different, a failed load writes nothing, the CSV output loads into PostgreSQL
 * to the very same rows, COPY binary and COPY text (--text-copy) load identical rows (the credit
 * scenario and a table of every type the binary path encodes; text fallback per table), and
 * production refused by name, by hostname guard and by attestation
 * with row counts staying 0. One fresh database per test. */
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

static const char *const tables[] = { "clients", "proposals", "contracts", "installments",
                                      "payments" };
#define N_TABLES 5

struct ctx {
    char db[64];
    char *dir;
    char ini[600];
};

static void ctx_open(struct ctx *c, const char *db)
{
    const struct it_env *e = it_env();
    memset(c, 0, sizeof *c);
    snprintf(c->db, sizeof c->db, "%s", db);
    c->dir = it_tmpdir(db);
    it_create_db("dev", db, NULL);
    char text[4096];
    /* development → dev cluster (host localhost), production → prod cluster (127.0.0.1) */
    snprintf(text, sizeof text,
             "[proxy]\nclient_tls = disable\n\n"
             "[env.development]\naliases = dev\nhost = localhost\nport = %d\ndatabase = %s\n"
             "sslmode = verify-full\nsslrootcert = %s/ca.crt\nhost_patterns = localhost:%d\n\n"
             "[env.production]\naliases = prod\nhost = 127.0.0.1\nport = %d\ndatabase = %s\n"
             "sslmode = verify-full\nsslrootcert = %s/ca.crt\nhost_patterns = 127.0.0.1:%d\n",
             e->dev_port, db, e->pki, e->dev_port,
             e->prod_port, db, e->pki, e->prod_port);
    snprintf(c->ini, sizeof c->ini, "%s/proxy.ini", c->dir);
    it_write_file(c->ini, text);
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

/* Runs bin/pgsov with the test's config; env_prefix: extra VAR=value words (or ""). */
static int pgsov_env(const struct ctx *c, char **out, const char *env_prefix, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int pgsov_env(const struct ctx *c, char **out, const char *env_prefix, const char *fmt, ...)
{
    const struct it_env *e = it_env();
    char args[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *buf = NULL;
    int rc = it_sh(&buf, "cd '%s' && env -u PGSOV_ENV -u NODE_ENV -u DEV_DATABASE_URL "
                   "-u STAGING_DATABASE_URL -u PROD_DATABASE_URL PGUSER=postgres PGPASSWORD='%s' %s "
                   "'%s/pgsov' %s -c '%s'", c->dir, e->superpass, env_prefix, e->bin, args, c->ini);
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
    int rc = pgsov_env(c, &out, "", "%s", args);
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

static long q_long(const struct ctx *c, const char *sql)
{
    char *v = q(c, sql);
    long n = atol(v);
    free(v);
    return n;
}

static const char *src_path(const char *rel)
{
    static char path[4][1024];
    static int k;
    k = (k + 1) % 4;
    snprintf(path[k], sizeof path[k], "%s/%s", it_env()->src, rel);
    return path[k];
}

#define SCENARIO src_path("rules/scenarios/credito.json")

/* The example schema, applied (and the database attested "development") by pgsov migrate. */
static void migrate(const struct ctx *c)
{
    run_expect(c, 0, "applied", "migrate --env dev --dir '%s'", src_path("migrations"));
    expect_sql(c, "SELECT environment FROM pgsov.environment_attestation", "development");
}

/* md5 of each table's rows in id order. */
static void table_hashes(const struct ctx *c, char hashes[N_TABLES][40])
{
    for (int t = 0; t < N_TABLES; t++) {
        char sql[300];
        snprintf(sql, sizeof sql,
                 "SELECT md5(string_agg(x::text, '|' ORDER BY x.id)) FROM app.%s x", tables[t]);
        char *v = q(c, sql);
        snprintf(hashes[t], 40, "%s", v);
        free(v);
    }
}

/* Every key, index and comment of schema app, as text: bulk loading must leave it unchanged. */
#define CATALOG_SQL                                                                          \
    "SELECT string_agg(x, E'\\n' ORDER BY x) FROM ("                                         \
    " SELECT k.conrelid::regclass || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid) || ' ' " \
    "        || coalesce(obj_description(k.oid, 'pg_constraint'), '-') AS x "                  \
    " FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace WHERE n.nspname = 'app' " \
    " UNION ALL SELECT pg_get_indexdef(i.indexrelid) || ' ' || coalesce(obj_description(i.indexrelid, " \
    "        'pg_class'), '-') || ' ' || i.indisvalid "                                       \
    " FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace " \
    " WHERE n.nspname = 'app') s"

static void expect_counts_zero(const struct ctx *c)
{
    for (int t = 0; t < N_TABLES; t++) {
        char sql[200];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM app.%s", tables[t]);
        expect_sql(c, sql, "0");
    }
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_credit_scenario_is_coherent(void **state)
{
    (void)state;
    struct ctx c;
    ctx_open(&c, "seed_coherent");
    migrate(&c);
    PGconn *s = it_super("dev", c.db);
    it_exec(s, "COMMENT ON CONSTRAINT installments_contract_id_fkey ON app.installments IS 'schedule of a contract'");
    it_exec(s, "COMMENT ON INDEX app.installments_due_date_idx IS 'collections'");
    PQfinish(s);
    char *catalog_before = q(&c, CATALOG_SQL);
    /* empty tables owned by the seeding role: keys and indexes are rebuilt after COPY */
    run_expect(&c, 0, "re-created after COPY", "seed --env dev --scenario '%s' --seed 42 --scale 0.5",
               SCENARIO);
    char *catalog_after = q(&c, CATALOG_SQL);
    assert_true(strlen(catalog_before) > 500);
    assert_string_equal(catalog_before, catalog_after);
    free(catalog_before);
    free(catalog_after);
    for (int t = 0; t < N_TABLES; t++) {
        char sql[200];
        snprintf(sql, sizeof sql, "SELECT count(*) > 0 FROM app.%s", tables[t]);
        expect_sql(&c, sql, "t");
    }
    expect_sql(&c, "SELECT count(*) FROM app.clients", "500");
    /* foreign keys are enforced; check them anyway, and the redundant client_id too */
    expect_sql(&c, "SELECT count(*) FROM app.contracts k JOIN app.proposals p ON p.id = k.proposal_id "
                   "WHERE p.client_id <> k.client_id OR p.amount <> k.principal "
                   "OR p.rate_monthly <> k.rate OR p.term_months <> k.term", "0");
    /* only approved proposals become contracts, and every approved one does */
    expect_sql(&c, "SELECT count(*) FROM app.contracts k JOIN app.proposals p ON p.id = k.proposal_id "
                   "WHERE p.status <> 'approved'", "0");
    expect_sql(&c, "SELECT count(*) FROM app.proposals p WHERE p.status = 'approved' AND NOT EXISTS "
                   "(SELECT 1 FROM app.contracts k WHERE k.proposal_id = p.id)", "0");
    expect_sql(&c, "SELECT string_agg(DISTINCT status, ',' ORDER BY status) FROM app.proposals",
               "approved,cancelled,pending,rejected");
    /* installments: one per month of the term, principal parts sum exactly to the principal,
     * amounts to principal plus interest */
    expect_sql(&c, "SELECT count(*) FROM app.contracts k LEFT JOIN (SELECT contract_id, count(*) n, "
                   "sum(principal) sp, sum(interest) si, sum(amount) sa, max(number) mx "
                   "FROM app.installments GROUP BY 1) i ON i.contract_id = k.id "
                   "WHERE i.n IS DISTINCT FROM k.term::bigint OR i.mx <> k.term OR i.sp <> k.principal "
                   "OR i.sa <> k.principal + i.si", "0");
    /* level payments: every installment but the last is PMT = P·i/(1−(1+i)^−n) rounded */
    expect_sql(&c, "SELECT count(*) FROM app.installments i JOIN app.contracts k ON k.id = i.contract_id "
                   "WHERE i.number < k.term AND k.rate > 0 AND abs(i.amount - round(k.principal * k.rate / "
                   "(1 - power(1 + k.rate, -k.term)), 2)) > 0.01", "0");
    /* due dates: month by month from first_due, clamped to the month's end */
    expect_sql(&c, "SELECT count(*) FROM app.installments i JOIN app.contracts k ON k.id = i.contract_id "
                   "WHERE i.due_date <> (k.first_due + make_interval(months => i.number - 1))::date", "0");
    expect_sql(&c, "SELECT count(*) FROM app.contracts WHERE first_due <> (signed_at + interval '1 month')::date "
                   "OR signed_at > date '2026-06-30'", "0");
    /* payments only for installments due before the reference date, and made before it */
    expect_sql(&c, "SELECT count(*) FROM app.payments p JOIN app.installments i ON i.id = p.installment_id "
                   "WHERE i.due_date >= date '2026-06-30' OR p.paid_at >= timestamptz '2026-06-30 00:00-03'",
               "0");
    /* a realistic share is late: paid after the due date, or not paid at all */
    long due = q_long(&c, "SELECT count(*) FROM app.installments WHERE due_date < date '2026-06-30'");
    long late = q_long(&c, "SELECT count(*) FROM app.payments p JOIN app.installments i ON "
                           "i.id = p.installment_id WHERE (p.paid_at AT TIME ZONE INTERVAL '-03:00')::date > i.due_date");
    long unpaid = q_long(&c, "SELECT count(*) FROM app.installments i WHERE i.due_date < date '2026-06-30' "
                             "AND NOT EXISTS (SELECT 1 FROM app.payments p WHERE p.installment_id = i.id)");
    if (!(late > due / 20 && late < due / 4 && unpaid > due / 40 && unpaid < due / 6))
        fail_msg("late %ld, unpaid %ld of %ld due installments: not a realistic share", late, unpaid, due);
    /* late payments carry the fine; on-time ones are the installment amount */
    expect_sql(&c, "SELECT count(*) FROM app.payments p JOIN app.installments i ON i.id = p.installment_id "
                   "WHERE ((p.paid_at AT TIME ZONE INTERVAL '-03:00')::date > i.due_date) <> (p.amount > i.amount)", "0");
    /* people: valid CPFs (check digits in SQL), e-mails from names, UF agrees with CEP region */
    expect_sql(&c, "SELECT count(*) FROM app.clients WHERE email IS NOT NULL AND "
                   "split_part(email, '@', 1) !~ '^[a-z]+[._][a-z]+[0-9]+$'", "0");
    expect_sql(&c, "SELECT count(*) FROM app.clients WHERE (uf = 'SP' AND cep !~ '^[01]') "
                   "OR (uf = 'RJ' AND cep !~ '^2[0-8]') OR (uf = 'RS' AND cep !~ '^9') "
                   "OR (uf = 'SP' AND substr(phone, 3, 1) <> '1')", "0");
    expect_sql(&c, "WITH d AS (SELECT cpf, array(SELECT substr(cpf, k, 1)::int FROM generate_series(1, 11) k) a "
                   "FROM app.clients), s AS (SELECT cpf, a, "
                   "(SELECT sum(a[k] * (11 - k)) FROM generate_series(1, 9) k) s1, "
                   "(SELECT sum(a[k] * (12 - k)) FROM generate_series(1, 10) k) s2 FROM d) "
                   "SELECT count(*) FROM s WHERE a[10] <> (s1 * 10 % 11) % 10 OR a[11] <> (s2 * 10 % 11) % 10",
               "0");
    /* the identity sequences moved past the seeded ids: the application can insert */
    expect_sql(&c, "INSERT INTO app.clients (name, cpf, birth_date) VALUES ('Nova Cliente', '52998224725', "
                   "'1990-01-01') RETURNING id > 500", "t");
    ctx_close(&c);
}

static void test_same_seed_same_rows(void **state)
{
    (void)state;
    struct ctx c;
    ctx_open(&c, "seed_determinism");
    migrate(&c);
    char h1[N_TABLES][40], h2[N_TABLES][40], h3[N_TABLES][40], h4[N_TABLES][40];
    run_expect(&c, 0, "seeded", "seed --env dev --scenario '%s' --seed 7 --scale 0.2", SCENARIO);
    table_hashes(&c, h1);
    /* again without --truncate: duplicate keys, the one transaction rolls back, nothing changes */
    run_expect(&c, 1, "duplicate key", "seed --env dev --scenario '%s' --seed 7 --scale 0.2", SCENARIO);
    table_hashes(&c, h2);
    for (int t = 0; t < N_TABLES; t++)
        assert_string_equal(h1[t], h2[t]);
    run_expect(&c, 0, "seeded", "seed --env dev --scenario '%s' --seed 7 --scale 0.2 --truncate", SCENARIO);
    table_hashes(&c, h3);
    run_expect(&c, 0, "seeded", "seed --env dev --scenario '%s' --seed 8 --scale 0.2 --truncate", SCENARIO);
    table_hashes(&c, h4);
    for (int t = 0; t < N_TABLES; t++) {
        assert_string_equal(h1[t], h3[t]);
        if (strcmp(h1[t], h4[t]) == 0)
            fail_msg("app.%s identical under seeds 7 and 8", tables[t]);
    }
    ctx_close(&c);
}

/* Loads every CSV of dir into c's database with psql \copy, columns from the header line. */
static void load_csv_dir(const struct ctx *c, const char *dir)
{
    const struct it_env *e = it_env();
    const char *pgbin = getenv("PGSOV_IT_PGBIN") ? getenv("PGSOV_IT_PGBIN") : "/usr/bin";
    for (int t = 0; t < N_TABLES; t++) {
        char *out = NULL;
        int rc = it_sh(&out, "cols=$(head -1 '%s/app.%s.csv' | tr -d '\\r') && "
                       "PGPASSWORD='%s' '%s/psql' -X -q -v ON_ERROR_STOP=1 "
                       "'host=localhost port=%d dbname=%s user=postgres sslmode=require' "
                       "-c \"\\copy app.%s ($cols) FROM '%s/app.%s.csv' WITH (FORMAT csv, HEADER true)\"",
                       dir, tables[t], e->superpass, pgbin, e->dev_port, c->db, tables[t], dir, tables[t]);
        if (rc != 0)
            fail_msg("loading %s/app.%s.csv: %s", dir, tables[t], out ? out : "");
        free(out);
    }
}

static void test_csv_roundtrip(void **state)
{
    (void)state;
    struct ctx c;
    ctx_open(&c, "seed_csv");
    migrate(&c);
    run_expect(&c, 0, "seeded", "seed --env dev --scenario '%s' --seed 11 --scale 0.1", SCENARIO);
    char via_copy[N_TABLES][40], via_csv[N_TABLES][40];
    table_hashes(&c, via_copy);
    /* --out needs no database; twice gives identical files */
    run_expect(&c, 0, "app.payments.csv", "seed --scenario '%s' --seed 11 --scale 0.1 --out '%s/a'", SCENARIO, c.dir);
    run_expect(&c, 0, "app.payments.csv", "seed --scenario '%s' --seed 11 --scale 0.1 --out '%s/b'", SCENARIO, c.dir);
    char *diff = NULL;
    if (it_sh(&diff, "diff -r '%s/a' '%s/b'", c.dir, c.dir) != 0)
        fail_msg("two --out runs differ: %s", diff);
    free(diff);
    /* the CSV files load with PostgreSQL's own CSV reader into exactly the rows COPY wrote */
    PGconn *s = it_super("dev", c.db);
    it_exec(s, "TRUNCATE app.payments, app.installments, app.contracts, app.proposals, app.clients");
    PQfinish(s);
    char dir[700];
    snprintf(dir, sizeof dir, "%s/a", c.dir);
    load_csv_dir(&c, dir);
    table_hashes(&c, via_csv);
    for (int t = 0; t < N_TABLES; t++)
        if (strcmp(via_copy[t], via_csv[t]) != 0)
            fail_msg("app.%s: CSV rows differ from COPY rows", tables[t]);
    ctx_close(&c);
}

/* md5 of a table's rows in id order, as text (the server's own output functions). */
static char *rows_md5(const struct ctx *c, const char *table)
{
    char sql[300];
    snprintf(sql, sizeof sql, "SELECT count(*) || ':' || md5(string_agg(x::text, '|' ORDER BY x.id)) "
             "FROM %s x", table);
    return q(c, sql);
}

/* COPY binary (the default) and COPY text (--text-copy) give the same rows: the credit
 * scenario, and a table of every type the binary path encodes (int2/4/8, uuid, bool, varchar,
 * char(n) padding, timestamp and timestamptz across the 2000-01-01 epoch, unconstrained and
 * typmod-rounded numerics with negatives, dates, text with tab/newline/backslash, NULLs).
 * Values without an exact binary form (text into numeric) and types it does not encode (jsonb)
 * fall back to text for their table and load the same rows as --text-copy. */
static void test_binary_and_text_copy_same_rows(void **state)
{
    (void)state;
    struct ctx c;
    ctx_open(&c, "seed_binary");
    migrate(&c);
    char bin[N_TABLES][40], text[N_TABLES][40];
    char *out = NULL;
    int rc = pgsov_env(&c, &out, "", "seed --env dev --scenario '%s' --seed 3 --scale 0.2", SCENARIO);
    if (rc != 0 || it_contains(out, "COPY text") || !it_contains(out, "app.payments: "))
        fail_msg("binary load: exit %d:\n%s", rc, out ? out : "");
    free(out);
    table_hashes(&c, bin);
    run_expect(&c, 0, "app.installments: ", "seed --env dev --scenario '%s' --seed 3 --scale 0.2 "
               "--truncate --text-copy", SCENARIO);
    table_hashes(&c, text);
    for (int t = 0; t < N_TABLES; t++)
        if (strcmp(bin[t], text[t]) != 0)
            fail_msg("app.%s: COPY binary rows differ from COPY text rows", tables[t]);

    PGconn *s = it_super("dev", c.db);
    it_exec(s, "CREATE TABLE public.kinds (id int8 PRIMARY KEY, s2 int2, i4 int4, u uuid, b bool, "
               "vc varchar(60), ch char(12), ts timestamp, tstz timestamptz, n numeric, "
               "n3 numeric(10,3), d date, t text)");
    it_exec(s, "CREATE TABLE public.odd (id int8, j jsonb, n numeric)");
    PQfinish(s);
    char path[700];
    snprintf(path, sizeof path, "%s/kinds.json", c.dir);
    it_write_file(path,
        "{\"reference_date\":\"2026-06-30\",\"tables\":["
        "{\"name\":\"public.kinds\",\"rows\":400,\"columns\":["
        "{\"name\":\"id\",\"gen\":\"sequence\",\"start\":5000000000},"
        "{\"name\":\"s2\",\"gen\":\"int\",\"min\":-300,\"max\":300},"
        "{\"name\":\"i4\",\"gen\":\"int\",\"min\":-2000000,\"max\":2000000,\"null_rate\":0.1},"
        "{\"name\":\"u\",\"gen\":\"uuid\"},"
        "{\"name\":\"b\",\"gen\":\"expr\",\"expr\":\"i4 > 0\"},"
        "{\"name\":\"vc\",\"gen\":\"name\"},"
        "{\"name\":\"ch\",\"gen\":\"cpf\"},"
        "{\"name\":\"ts\",\"gen\":\"timestamp\",\"from\":\"date('1999-12-30')\",\"to\":\"date('2000-01-02')\"},"
        "{\"name\":\"tstz\",\"gen\":\"timestamp\",\"from\":\"date('1999-12-30')\",\"to\":\"date('2000-01-02')\"},"
        "{\"name\":\"n\",\"gen\":\"number\",\"min\":-1000,\"max\":1000,\"scale\":6,\"dist\":\"normal\",\"mean\":0,\"sd\":300},"
        "{\"name\":\"n3\",\"gen\":\"number\",\"min\":0,\"max\":100,\"scale\":5},"
        "{\"name\":\"d\",\"gen\":\"date\",\"from\":\"date('1950-01-01')\",\"to\":\"reference_date\"},"
        "{\"name\":\"t\",\"gen\":\"const\",\"value\":\"tab\\there \\\\ back\\nline\"}]},"
        "{\"name\":\"public.odd\",\"rows\":50,\"columns\":["
        "{\"name\":\"id\",\"gen\":\"sequence\"},"
        "{\"name\":\"n\",\"gen\":\"expr\",\"expr\":\"if(row < 40, 1.5, '12.50')\"}]}]}");
    const char *checked[] = { "public.kinds", "public.odd" };
    char *via_bin[2], *via_text[2];
    out = NULL;
    rc = pgsov_env(&c, &out, "", "seed --env dev --scenario '%s' --seed 9", path);
    if (rc != 0 || !it_contains(out, "public.kinds: 400 rows") || !it_contains(out, "COPY binary)") ||
        !it_contains(out, "public.odd: loading as COPY text") || !it_contains(out, "12.50"))
        fail_msg("binary load of kinds.json: exit %d:\n%s", rc, out ? out : "");
    free(out);
    for (int k = 0; k < 2; k++)
        via_bin[k] = rows_md5(&c, checked[k]);
    run_expect(&c, 0, "public.odd: 50 rows", "seed --env dev --scenario '%s' --seed 9 --truncate "
               "--text-copy", path);
    for (int k = 0; k < 2; k++) {
        via_text[k] = rows_md5(&c, checked[k]);
        if (strcmp(via_bin[k], via_text[k]) != 0)
            fail_msg("%s: binary %s, text %s", checked[k], via_bin[k], via_text[k]);
        free(via_bin[k]);
        free(via_text[k]);
    }
    /* a type the binary path does not encode: the table goes as text from the start */
    s = it_super("dev", c.db);
    it_exec(s, "ALTER TABLE public.odd ALTER COLUMN n TYPE jsonb USING to_jsonb(n)");
    PQfinish(s);
    run_expect(&c, 0, "public.odd: 50 rows (", "seed --env dev --scenario '%s' --seed 9 --truncate", path);
    expect_sql(&c, "SELECT count(*) FROM public.odd WHERE n = '1.5'::jsonb", "39");
    /* the cases the comment promises are there */
    expect_sql(&c, "SELECT concat_ws(',', bool_or(ts < '2000-01-01'), bool_or(ts >= '2000-01-01'), "
                   "bool_or(tstz < '2000-01-01 03:00+00'), bool_or(n < 0), bool_or(i4 IS NULL), "
                   "bool_or(b), bool_or(NOT b), bool_or(t LIKE E'tab\\there \\\\\\\\ back\\nline')) "
                   "FROM public.kinds", "t,t,t,t,t,t,t,t");
    ctx_close(&c);
}

static void test_dry_run_touches_nothing(void **state)
{
    (void)state;
    struct ctx c;
    ctx_open(&c, "seed_dry");
    migrate(&c);
    char *out = NULL;
    int rc = pgsov_env(&c, &out, "", "seed --env dev --scenario '%s' --seed 3 --dry-run", SCENARIO);
    if (rc != 0 || !it_contains(out, "app.installments") || !it_contains(out, "total:") ||
        !it_contains(out, "1000 rows") || !it_contains(out, "id,name,cpf"))
        fail_msg("dry run: exit %d:\n%s", rc, out);
    free(out);
    expect_counts_zero(&c);
    ctx_close(&c);
}

static void test_production_refused(void **state)
{
    (void)state;
    const struct it_env *e = it_env();
    struct ctx c;
    ctx_open(&c, "seed_prod");
    migrate(&c);

    /* 1. by name, however it is spelled or given; no override exists */
    run_expect(&c, 1, "refused: seeding environment \"production\"",
               "seed --env production --scenario '%s' --seed 1", SCENARIO);
    run_expect(&c, 1, "refused", "seed --env prod --scenario '%s' --seed 1", SCENARIO);
    char *out = NULL;
    int rc = pgsov_env(&c, &out, "NODE_ENV=production", "seed --scenario '%s' --seed 1", SCENARIO);
    if (rc != 1 || !it_contains(out, "$NODE_ENV"))
        fail_msg("NODE_ENV=production: exit %d:\n%s", rc, out);
    free(out);
    rc = pgsov_env(&c, &out, "PGSOV_ENV=live", "seed --scenario '%s' --seed 1 --out '%s/x'", SCENARIO, c.dir);
    if (rc != 1 || !it_contains(out, "refused"))
        fail_msg("PGSOV_ENV=live --out: exit %d:\n%s", rc, out);
    free(out);
    run_expect(&c, 2, "unknown option \"--force\"", "seed --env production --force --scenario '%s' --seed 1",
               SCENARIO);

    /* 1b. by an alias: a section with no telling name whose alias says production */
    char saved_ini[sizeof c.ini], text[1024];
    memcpy(saved_ini, c.ini, sizeof saved_ini);
    snprintf(c.ini, sizeof c.ini, "%s/alias.ini", c.dir);
    snprintf(text, sizeof text,
             "[proxy]\nclient_tls = disable\n\n[env.main]\naliases = primary, live\n"
             "host = localhost\nport = %d\ndatabase = %s\nsslmode = verify-full\n"
             "sslrootcert = %s/ca.crt\nhost_patterns = localhost:%d\n",
             e->dev_port, c.db, e->pki, e->dev_port);
    it_write_file(c.ini, text);
    run_expect(&c, 1, "is production by one of its aliases", "seed --env main --scenario '%s' --seed 1",
               SCENARIO);
    memcpy(c.ini, saved_ini, sizeof c.ini);
    expect_counts_zero(&c);

    /* 2. by the hostname guard: development's name, the production cluster's address */
    rc = pgsov_env(&c, &out, "", "seed --env dev --url 'postgresql://postgres@127.0.0.1:%d/%s?"
                   "sslmode=verify-full&sslrootcert=%s/ca.crt' --scenario '%s' --seed 1",
                   e->prod_port, c.db, e->pki, SCENARIO);
    if (rc == 0 || !it_contains(out, "production"))
        fail_msg("guard: exit %d:\n%s", rc, out);
    free(out);

    /* 3. by the attestation: a database that attests production, reached as development */
    PGconn *s = it_super("dev", c.db);
    it_exec(s, "UPDATE pgsov.environment_attestation SET environment = 'production'");
    PQfinish(s);
    run_expect(&c, 1, "the database's attestation", "seed --env dev --scenario '%s' --seed 1", SCENARIO);
    run_expect(&c, 1, "production", "seed --env dev --scenario '%s' --seed 1 --truncate", SCENARIO);
    expect_counts_zero(&c);

    /* and an unattested database cannot prove it is not production */
    s = it_super("dev", c.db);
    it_exec(s, "DELETE FROM pgsov.environment_attestation");
    PQfinish(s);
    run_expect(&c, 1, "baseline", "seed --env dev --scenario '%s' --seed 1", SCENARIO);
    expect_counts_zero(&c);
    ctx_close(&c);
}

static void test_foreign_keys_enforced(void **state)
{
    (void)state;
    struct ctx c;
    ctx_open(&c, "seed_fk");
    migrate(&c);
    char path[700];
    snprintf(path, sizeof path, "%s/orphans.json", c.dir);
    /* proposals pointing one past their client: the last one references no client */
    it_write_file(path,
        "{\"reference_date\":\"2026-06-30\",\"tables\":["
        "{\"name\":\"app.clients\",\"rows\":20,\"columns\":[{\"name\":\"id\",\"gen\":\"sequence\"},"
        "{\"name\":\"name\",\"gen\":\"name\"},{\"name\":\"cpf\",\"gen\":\"cpf\"},"
        "{\"name\":\"birth_date\",\"gen\":\"date\",\"from\":\"reference_date - 20000\",\"to\":\"reference_date - 7000\"}]},"
        "{\"name\":\"app.proposals\",\"parent\":\"app.clients\",\"per_parent\":1,\"columns\":["
        "{\"name\":\"client_id\",\"gen\":\"expr\",\"expr\":\"parent.id + 1\"},"
        "{\"name\":\"amount\",\"gen\":\"money\",\"min\":100,\"max\":200},"
        "{\"name\":\"term_months\",\"gen\":\"const\",\"value\":12},"
        "{\"name\":\"rate_monthly\",\"gen\":\"const\",\"value\":0.02}]}]}");
    char *catalog_before = q(&c, CATALOG_SQL);
    run_expect(&c, 1, "proposals_client_id_fkey", "seed --env dev --scenario '%s' --seed 1", path);
    run_expect(&c, 1, "proposals_client_id_fkey", "seed --env dev --scenario '%s' --seed 1 --no-bulk", path);
    char *catalog_after = q(&c, CATALOG_SQL);
    assert_string_equal(catalog_before, catalog_after);
    free(catalog_before);
    free(catalog_after);
    expect_counts_zero(&c);
    ctx_close(&c);
}

/* A role that owns the tables but is not a migration role, in a database with pgsov's DDL
 * event trigger: bulk load's DDL is refused there, so the load falls back to keeping the keys
 * in place, and still succeeds. */
static void test_ddl_guard_falls_back(void **state)
{
    (void)state;
    struct ctx c;
    ctx_open(&c, "seed_ddlguard");
    migrate(&c);
    char *sql = NULL;
    if (it_sh(&sql, "cat '%s'", src_path("rules/ddl_event_trigger.sql")) != 0)
        fail_msg("cannot read rules/ddl_event_trigger.sql");
    PGconn *s = it_super("dev", c.db);
    it_exec(s, sql);
    free(sql);
    for (int t = 0; t < N_TABLES; t++) {
        char stmt[200];
        snprintf(stmt, sizeof stmt, "ALTER TABLE app.%s OWNER TO app", tables[t]);
        it_exec(s, stmt);
    }
    it_exec(s, "GRANT USAGE ON SCHEMA app TO app");
    it_exec(s, "GRANT SELECT ON pgsov.environment_attestation TO app");
    PQfinish(s);
    char *catalog_before = q(&c, CATALOG_SQL);
    char *out = NULL;
    int rc = pgsov_env(&c, &out, "PGUSER=app PGPASSWORD=app-secret",
                       "seed --env dev --scenario '%s' --seed 4 --scale 0.05", SCENARIO);
    if (rc != 0 || !it_contains(out, "keeping keys in place") || !it_contains(out, "DDL refused") ||
        it_contains(out, "re-created after COPY"))
        fail_msg("seed as a table owner under the DDL guard: exit %d:\n%s", rc, out);
    free(out);
    expect_sql(&c, "SELECT count(*) FROM app.clients", "50");
    char *catalog_after = q(&c, CATALOG_SQL);
    assert_string_equal(catalog_before, catalog_after);
    free(catalog_before);
    free(catalog_after);
    ctx_close(&c);
}

static void test_bad_scenario_reports_path(void **state)
{
    (void)state;
    struct ctx c;
    ctx_open(&c, "seed_bad");
    char path[700];
    snprintf(path, sizeof path, "%s/bad.json", c.dir);
    it_write_file(path, "{\"reference_date\":\"2026-06-30\",\"tables\":[{\"name\":\"app.clients\","
                        "\"rows\":1,\"columns\":[{\"name\":\"id\",\"gen\":\"sequence\",\"strat\":1}]}]}");
    run_expect(&c, 1, "bad.json: tables[0].columns[0].strat: unknown key",
               "seed --env dev --scenario '%s' --seed 1", path);
    run_expect(&c, 2, "--seed N is required", "seed --env dev --scenario '%s'", path);
    run_expect(&c, 2, "--text-copy only applies when loading a database",
               "seed --scenario '%s' --seed 1 --dry-run --text-copy", path);
    ctx_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_credit_scenario_is_coherent),
        cmocka_unit_test(test_same_seed_same_rows),
        cmocka_unit_test(test_csv_roundtrip),
        cmocka_unit_test(test_binary_and_text_copy_same_rows),
        cmocka_unit_test(test_dry_run_touches_nothing),
        cmocka_unit_test(test_production_refused),
        cmocka_unit_test(test_foreign_keys_enforced),
        cmocka_unit_test(test_ddl_guard_falls_back),
        cmocka_unit_test(test_bad_scenario_reports_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
