/* test_migrate_core.c — the database-free half of pgsov migrate: file names, header comments,
 * checksums and the chain, SQL analysis (non-transactional and destructive statements),
 * transaction decisions, drizzle journals, status against history, plan hashes, approvals. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../tools/migrate_core.h"

static void test_filenames(void **state)
{
    (void)state;
    static const struct {
        const char *file;
        int rc;
        const char *version, *name;
        enum mig_direction dir;
    } cases[] = {
        { "0001_init.sql",                   1, "0001", "init", MIG_UP },
        { "0002_add_clients.up.sql",         1, "0002", "add_clients", MIG_UP },
        { "0002_add_clients.down.sql",       1, "0002", "add_clients", MIG_DOWN },
        { "20240501120000_big-one.sql",      1, "20240501120000", "big-one", MIG_UP },
        { "README.md",                       0, NULL, NULL, MIG_UP },
        { "meta",                            0, NULL, NULL, MIG_UP },
        { "notes.sql",                       0, NULL, NULL, MIG_UP },
        { "0001_init.txt",                   0, NULL, NULL, MIG_UP },
        { "12.sql",                         -1, NULL, NULL, MIG_UP },
        { "0001-init.sql",                  -1, NULL, NULL, MIG_UP },
        { "0001_.sql",                      -1, NULL, NULL, MIG_UP },
        { "0001_.down.sql",                 -1, NULL, NULL, MIG_UP },
        { "0001_a b.sql",                   -1, NULL, NULL, MIG_UP },
        { "0001_a.b.sql",                   -1, NULL, NULL, MIG_UP },
        { "1234567890123456789_x.sql",      -1, NULL, NULL, MIG_UP },   /* 19 digits */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct mig_name nm;
        struct pgsov_err err = { "" };
        int rc = mig_parse_filename(cases[i].file, &nm, &err);
        if (rc != cases[i].rc)
            fail_msg("%s: rc %d, want %d (%s)", cases[i].file, rc, cases[i].rc, err.msg);
        if (rc == 1) {
            assert_string_equal(nm.version, cases[i].version);
            assert_string_equal(nm.name, cases[i].name);
            assert_int_equal(nm.direction, cases[i].dir);
            assert_int_equal(nm.vnum, strtoull(cases[i].version, NULL, 10));
        }
        if (rc < 0)
            assert_true(strstr(err.msg, cases[i].file) != NULL);
    }
}

static void test_durations(void **state)
{
    (void)state;
    static const struct { const char *text; int rc, ms; } cases[] = {
        { "0", 0, 0 }, { "250", 0, 250 }, { "250ms", 0, 250 }, { "10s", 0, 10000 },
        { "2min", 0, 120000 }, { "1h", 0, 3600000 }, { "24h", 0, 86400000 },
        { "25h", -1, 0 }, { "-1s", -1, 0 }, { "s", -1, 0 }, { "10 s", -1, 0 }, { "10d", -1, 0 },
        { "", -1, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int ms = -7;
        int rc = mig_parse_duration_ms(cases[i].text, &ms);
        if (rc != cases[i].rc || (rc == 0 && ms != cases[i].ms))
            fail_msg("\"%s\": rc %d ms %d", cases[i].text, rc, ms);
    }
}

static void test_header(void **state)
{
    (void)state;
    static const struct {
        const char *sql;
        int rc;
        int lock_ms, stmt_ms;
        enum mig_tx tx;
    } cases[] = {
        { "create table t (id int);", 0, 5000, 60000, MIG_TX_AUTO },
        { "-- pgsov: lock_timeout=10s\ncreate table t (id int);", 0, 10000, 60000, MIG_TX_AUTO },
        { "-- just a comment\n\n--pgsov: statement_timeout=0 transaction=off\nvacuum;", 0, 5000, 0, MIG_TX_OFF },
        { "-- pgsov: transaction=on lock_timeout=250ms\nselect 1;", 0, 250, 60000, MIG_TX_ON },
        /* after the first SQL line, pgsov: comments are ordinary comments */
        { "select 1;\n-- pgsov: lock_timeout=1s\n", 0, 5000, 60000, MIG_TX_AUTO },
        { "-- pgsov: lock_timeout=soon\nselect 1;", -1, 0, 0, MIG_TX_AUTO },
        { "-- pgsov: colour=blue\nselect 1;", -1, 0, 0, MIG_TX_AUTO },
        { "-- pgsov: transaction=maybe\n", -1, 0, 0, MIG_TX_AUTO },
        { "-- pgsov: lock_timeout\n", -1, 0, 0, MIG_TX_AUTO },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct mig_settings s = { 5000, 60000, MIG_TX_AUTO };
        struct pgsov_err err = { "" };
        int rc = mig_parse_header(cases[i].sql, strlen(cases[i].sql), &s, &err);
        if (rc != cases[i].rc)
            fail_msg("case %zu: rc %d (%s)", i, rc, err.msg);
        if (rc == 0) {
            assert_int_equal(s.lock_timeout_ms, cases[i].lock_ms);
            assert_int_equal(s.statement_timeout_ms, cases[i].stmt_ms);
            assert_int_equal(s.transaction, cases[i].tx);
        } else {
            assert_true(strstr(err.msg, "line ") != NULL);
        }
    }
}

static void test_checksums(void **state)
{
    (void)state;
    char h[MIG_HEX_LEN + 1];
    /* Known SHA-256 vectors. */
    assert_int_equal(mig_sha256_hex("", 0, h), 0);
    assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_int_equal(mig_sha256_hex("abc", 3, h), 0);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    /* The chain depends on every earlier file, its version and its order. */
    char c1[MIG_HEX_LEN + 1], c2[MIG_HEX_LEN + 1], c2b[MIG_HEX_LEN + 1], c2c[MIG_HEX_LEN + 1];
    assert_int_equal(mig_chain_next("", "0001", "aa", c1), 0);
    assert_int_equal(mig_chain_next(c1, "0002", "bb", c2), 0);
    assert_int_equal(mig_chain_next(c1, "0002", "bc", c2b), 0);
    assert_int_equal(mig_chain_next("", "0002", "bb", c2c), 0);
    assert_string_not_equal(c2, c2b);
    assert_string_not_equal(c2, c2c);
    char again[MIG_HEX_LEN + 1];
    assert_int_equal(mig_chain_next(c1, "0002", "bb", again), 0);
    assert_string_equal(c2, again);
}

/* Analyses sql and returns the statements; fails the test on a parse error. */
static struct mig_stmt *analyze(const char *sql, size_t *n, struct mig_names *created)
{
    struct mig_stmt *st = NULL;
    struct pgsov_err err = { "" };
    if (mig_analyze_sql(sql, strlen(sql), created, &st, n, &err) != 0)
        fail_msg("analyze \"%s\": %s", sql, err.msg);
    return st;
}

static bool has_finding(const struct mig_stmt *st, size_t n, enum mig_finding_kind kind)
{
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < st[i].n_findings; k++)
            if (st[i].findings[k].kind == kind)
                return true;
    return false;
}

static void test_non_transactional(void **state)
{
    (void)state;
    static const struct { const char *sql; bool nontx; } cases[] = {
        { "CREATE INDEX CONCURRENTLY i ON t (a)", true },
        { "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON s.t (a)", true },
        { "CREATE INDEX i ON t (a)", false },
        { "DROP INDEX CONCURRENTLY i", true },
        { "DROP INDEX i", false },
        { "REINDEX (CONCURRENTLY) INDEX i", true },
        { "REINDEX INDEX CONCURRENTLY i", true },
        { "REINDEX INDEX i", false },
        { "REINDEX DATABASE d", true },
        { "VACUUM t", true },
        { "VACUUM (FULL) t", true },
        { "ANALYZE t", false },
        { "CREATE DATABASE d", true },
        { "DROP DATABASE d", true },
        { "ALTER SYSTEM SET work_mem = '8MB'", true },
        { "CREATE TABLESPACE ts LOCATION '/x'", true },
        { "ALTER TYPE e ADD VALUE 'x'", false },         /* PG >= 12: allowed in a transaction */
        { "CREATE TABLE t (id int)", false },
        { "SET maintenance_work_mem = '1GB'", false },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = 0;
        struct mig_stmt *st = analyze(cases[i].sql, &n, NULL);
        assert_int_equal(n, 1);
        if (st[0].non_transactional != cases[i].nontx)
            fail_msg("%s: non_transactional=%d", cases[i].sql, st[0].non_transactional);
        mig_stmts_free(st, n);
    }
}

static void test_findings(void **state)
{
    (void)state;
    static const struct {
        const char *sql;
        int kind;       /* enum mig_finding_kind, or -1 for "no finding at all" */
    } cases[] = {
        { "DROP TABLE app.clients", MIG_FIND_DESTRUCTIVE },
        { "DROP SCHEMA app CASCADE", MIG_FIND_DESTRUCTIVE },
        { "ALTER TABLE t DROP COLUMN c", MIG_FIND_DESTRUCTIVE },
        { "TRUNCATE t", MIG_FIND_DESTRUCTIVE },
        { "DELETE FROM t", MIG_FIND_DESTRUCTIVE },
        { "UPDATE t SET a = 1", MIG_FIND_DESTRUCTIVE },
        { "DELETE FROM t WHERE id = 1", -1 },
        { "UPDATE t SET a = 1 WHERE id = 2", -1 },
        { "ALTER TABLE t ALTER COLUMN c TYPE bigint", MIG_FIND_LOCKING },
        { "ALTER TABLE t ALTER COLUMN c SET NOT NULL", MIG_FIND_LOCKING },
        { "CREATE INDEX i ON t (a)", MIG_FIND_LOCKING },
        { "CREATE INDEX CONCURRENTLY i ON t (a)", -1 },
        { "DROP INDEX i", MIG_FIND_LOCKING },
        { "ALTER TABLE t ADD CONSTRAINT k CHECK (a > 0)", MIG_FIND_LOCKING },
        { "ALTER TABLE t ADD CONSTRAINT k CHECK (a > 0) NOT VALID", -1 },
        { "ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES u (id)", MIG_FIND_LOCKING },
        { "VACUUM FULL t", MIG_FIND_LOCKING },
        { "ALTER TABLE t ADD COLUMN c int NOT NULL", MIG_FIND_BREAKING },
        { "ALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT 0", -1 },
        { "ALTER TABLE t ADD COLUMN c int", -1 },
        { "ALTER TABLE t RENAME TO u", MIG_FIND_BREAKING },
        { "ALTER TABLE t RENAME COLUMN a TO b", MIG_FIND_BREAKING },
        { "ALTER TYPE e ADD VALUE 'x'", MIG_FIND_NOTE },
        { "CREATE TABLE t (id int)", -1 },
        { "GRANT SELECT ON t TO app_user", -1 },
        /* a table created in the same plan is new: indexing it blocks nobody */
        { "CREATE TABLE s.n (id int); CREATE INDEX n_i ON s.n (id); ALTER TABLE s.n ALTER COLUMN id SET NOT NULL", -1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct mig_names created = { 0 };
        size_t n = 0;
        struct mig_stmt *st = analyze(cases[i].sql, &n, &created);
        size_t total = 0;
        for (size_t j = 0; j < n; j++)
            total += st[j].n_findings;
        if (cases[i].kind < 0 ? total != 0 : !has_finding(st, n, (enum mig_finding_kind)cases[i].kind))
            fail_msg("%s: %zu findings, first \"%s\"", cases[i].sql, total,
                     total ? st[0].findings ? st[0].findings[0].text : "(later stmt)" : "");
        mig_stmts_free(st, n);
        mig_names_free(&created);
    }
}

static void test_statement_split(void **state)
{
    (void)state;
    const char *sql = "-- header\n-- pgsov: lock_timeout=1s\nCREATE TABLE a (id int);\n\n"
                      "/* block\n comment */ INSERT INTO a VALUES (1);\n-- trailing comment\n";
    size_t n = 0;
    struct mig_stmt *st = analyze(sql, &n, NULL);
    assert_int_equal(n, 2);
    assert_int_equal(st[0].line, 3);
    assert_true(strncmp(st[0].sql, "CREATE TABLE a", 14) == 0);
    assert_string_equal(st[0].tag, "CreateStmt");
    assert_int_equal(st[1].line, 6);
    assert_true(strncmp(st[1].sql, "INSERT INTO a", 13) == 0);
    mig_stmts_free(st, n);

    struct mig_stmt *bad = NULL;
    struct pgsov_err err = { "" };
    const char *broken = "select 1;\n\ncreate tabel x (id int);";
    assert_int_equal(mig_analyze_sql(broken, strlen(broken), NULL, &bad, &n, &err), -1);
    assert_non_null(strstr(err.msg, "line 3"));
}

static void test_decide_transaction(void **state)
{
    (void)state;
    static const struct {
        const char *sql;
        enum mig_tx header;
        int rc;
        bool tx;
    } cases[] = {
        { "CREATE TABLE t (id int); CREATE INDEX i ON t (id)", MIG_TX_AUTO, 0, true },
        { "CREATE INDEX CONCURRENTLY i ON t (id)", MIG_TX_AUTO, 0, false },
        { "SET maintenance_work_mem = '1GB'; CREATE INDEX CONCURRENTLY i ON t (id)", MIG_TX_AUTO, 0, false },
        { "CREATE INDEX CONCURRENTLY i ON t (a); CREATE INDEX CONCURRENTLY j ON t (b)", MIG_TX_AUTO, 0, false },
        { "CREATE TABLE t (id int); CREATE INDEX CONCURRENTLY i ON t (id)", MIG_TX_AUTO, -1, false },
        { "CREATE INDEX CONCURRENTLY i ON t (id)", MIG_TX_ON, -1, false },
        { "CREATE TABLE t (id int)", MIG_TX_OFF, 0, false },
        { "BEGIN; CREATE TABLE t (id int); COMMIT", MIG_TX_AUTO, -1, false },
        { "", MIG_TX_AUTO, 0, true },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = 0;
        struct mig_stmt *st = analyze(cases[i].sql, &n, NULL);
        bool tx = !cases[i].tx;
        struct pgsov_err err = { "" };
        int rc = mig_decide_transaction("f.sql", st, n, cases[i].header, &tx, &err);
        if (rc != cases[i].rc || (rc == 0 && tx != cases[i].tx))
            fail_msg("%s: rc %d tx %d (%s)", cases[i].sql, rc, tx, err.msg);
        if (rc < 0)
            assert_non_null(strstr(err.msg, "f.sql"));
        mig_stmts_free(st, n);
    }
}

static void test_drizzle_journal(void **state)
{
    (void)state;
    static const struct { const char *json; int n; } cases[] = {
        { "{\"version\":\"7\",\"dialect\":\"postgresql\",\"entries\":["
          "{\"idx\":0,\"version\":\"7\",\"when\":1700000000000,\"tag\":\"0000_init\",\"breakpoints\":true},"
          "{\"idx\":1,\"version\":\"7\",\"when\":1700000001000,\"tag\":\"0001_more\",\"breakpoints\":true}]}", 2 },
        { "{\"dialect\":\"postgresql\",\"entries\":[]}", 0 },
        { "{\"dialect\":\"mysql\",\"entries\":[]}", -1 },
        { "{\"dialect\":\"postgresql\"}", -1 },
        { "{\"dialect\":\"postgresql\",\"entries\":[{\"idx\":1,\"when\":1,\"tag\":\"0000_a\"}]}", -1 },
        { "{\"dialect\":\"postgresql\",\"entries\":[{\"idx\":0,\"tag\":\"0000_a\"}]}", -1 },
        { "{\"dialect\":\"postgresql\",\"entries\":[{\"idx\":0,\"when\":1,\"tag\":\"../x\"}]}", -1 },
        { "{\"dialect\":\"postgresql\",\"entries\":[{\"idx\":0,\"when\":1,\"tag\":\"0000_a\"},"
          "{\"idx\":1,\"when\":2,\"tag\":\"0000_a\"}]}", -1 },
        { "not json", -1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char tags[4][MIG_NAME_MAX + MIG_VERSION_MAX];
        int64_t whens[4];
        struct pgsov_err err = { "" };
        int n = mig_parse_drizzle_journal(cases[i].json, strlen(cases[i].json), tags, whens, 4, &err);
        if (n != cases[i].n)
            fail_msg("case %zu: %d entries (%s)", i, n, err.msg);
        if (i == 0) {
            assert_string_equal(tags[1], "0001_more");
            assert_int_equal(whens[0], 1700000000000LL);
        }
    }
}

/* The real drizzle-kit fixture: files come from the journal; checksums equal drizzle's hash. */
static void test_drizzle_fixture(void **state)
{
    (void)state;
    const char *src = getenv("PGSOV_SRC");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/drizzle", src ? src : ".");
    if (access(dir, R_OK) != 0)
        snprintf(dir, sizeof dir, "tests/fixtures/drizzle");
    struct mig_set *set = NULL;
    struct pgsov_err err = { "" };
    if (mig_scan(dir, false, true, &set, &err) != 0)
        fail_msg("scan %s: %s", dir, err.msg);
    assert_true(set->drizzle);
    assert_int_equal(set->n_files, 2);
    assert_string_equal(set->files[0].drizzle_tag, "0000_init");
    assert_true(set->files[0].drizzle_when > 0);
    assert_true(set->files[1].drizzle_when > set->files[0].drizzle_when);
    /* sha256 of the file text, as drizzle-orm's readMigrationFiles computes it (checked with
     * node's crypto when the fixture was generated). */
    assert_string_equal(set->files[0].checksum,
                        "f9dbff475a1dfdf349fb392407ff69563d58e7bb8cda1b74e6be954e28d9fd68");
    /* "--> statement-breakpoint" is a comment to the parser: three statements. */
    size_t n = 0;
    struct mig_stmt *st = analyze(set->files[0].up_sql, &n, NULL);
    assert_int_equal(n, 3);
    mig_stmts_free(st, n);
    mig_set_free(set);
}

static const struct mig_file *file_of(const struct mig_set *s, const char *version)
{
    for (size_t i = 0; i < s->n_files; i++)
        if (strcmp(s->files[i].version, version) == 0)
            return &s->files[i];
    return NULL;
}

/* Builds a migrations folder in a temp dir from name → text pairs. */
static char *make_dir(const char *const *files)
{
    char *dir = strdup("/tmp/pgsov-migrate-unit.XXXXXX");
    assert_non_null(dir);
    assert_non_null(mkdtemp(dir));
    for (size_t i = 0; files[i]; i += 2) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(files[i + 1], f);
        fclose(f);
    }
    return dir;
}

static void remove_dir(char *dir, const char *const *files)
{
    for (size_t i = 0; files[i]; i += 2) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
    free(dir);
}

static void test_scan_and_status(void **state)
{
    (void)state;
    static const char *const files[] = {
        "0001_a.sql", "create table a (id int);",
        "0001_a.down.sql", "drop table a;",
        "0002_b.up.sql", "create table b (id int);",
        "0010_c.sql", "create table c (id int);",
        "README.md", "not a migration",
        NULL,
    };
    char *dir = make_dir(files);
    struct mig_set *set = NULL;
    struct pgsov_err err = { "" };
    assert_int_equal(mig_scan(dir, false, true, &set, &err), 0);
    assert_false(set->drizzle);
    assert_int_equal(set->n_files, 3);
    assert_string_equal(set->files[0].version, "0001");
    assert_non_null(set->files[0].down_path);
    assert_null(set->files[1].down_path);
    assert_string_equal(set->files[2].version, "0010");

    static const struct {
        const char *applied[3][2];   /* version, checksum ("=" means: the file's own) */
        enum mig_state want[4];      /* states in version order */
        size_t n_rows;
        int check_rc, check_rc_ooo;
    } cases[] = {
        { { { NULL, NULL } }, { MIG_STATE_PENDING, MIG_STATE_PENDING, MIG_STATE_PENDING }, 3, 0, 0 },
        { { { "0001", "=" }, { "0002", "=" } },
          { MIG_STATE_APPLIED, MIG_STATE_APPLIED, MIG_STATE_PENDING }, 3, 0, 0 },
        { { { "0001", "0000" } }, { MIG_STATE_DRIFTED, MIG_STATE_PENDING, MIG_STATE_PENDING }, 3, -1, -1 },
        { { { "0001", "=" }, { "0010", "=" } },
          { MIG_STATE_APPLIED, MIG_STATE_OUT_OF_ORDER, MIG_STATE_APPLIED }, 3, -1, 0 },
        { { { "0001", "=" }, { "0005", "x" } },
          { MIG_STATE_APPLIED, MIG_STATE_OUT_OF_ORDER, MIG_STATE_MISSING, MIG_STATE_PENDING }, 4, -1, -1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct mig_applied applied[3];
        size_t n_applied = 0;
        memset(applied, 0, sizeof applied);
        for (size_t k = 0; k < 3 && cases[i].applied[k][0]; k++) {
            struct mig_applied *a = &applied[n_applied++];
            snprintf(a->version, sizeof a->version, "%s", cases[i].applied[k][0]);
            a->vnum = strtoull(a->version, NULL, 10);
            const struct mig_file *f = file_of(set, a->version);
            snprintf(a->name, sizeof a->name, "%s", f ? f->name : "gone");
            snprintf(a->checksum, sizeof a->checksum, "%s",
                     strcmp(cases[i].applied[k][1], "=") == 0 ? f->checksum : cases[i].applied[k][1]);
        }
        struct mig_status_row *rows = NULL;
        size_t n = 0;
        assert_int_equal(mig_status(set, applied, n_applied, &rows, &n, &err), 0);
        assert_int_equal(n, cases[i].n_rows);
        for (size_t k = 0; k < n; k++)
            if (rows[k].state != cases[i].want[k])
                fail_msg("case %zu row %zu (%s): %s, want %s", i, k, rows[k].version,
                         mig_state_name(rows[k].state), mig_state_name(cases[i].want[k]));
        assert_int_equal(mig_status_check(rows, n, false, &err), cases[i].check_rc);
        assert_int_equal(mig_status_check(rows, n, true, &err), cases[i].check_rc_ooo);
        free(rows);
    }
    mig_set_free(set);
    remove_dir(dir, files);

    /* Broken folders are refused with the reason. */
    static const struct { const char *const files[5]; const char *want; } bad[] = {
        { { "0001_a.sql", "select 1;", "0001_b.sql", "select 2;", NULL }, "used twice" },
        { { "0003_x.down.sql", "select 1;", NULL, NULL, NULL }, "has no up file" },
        { { "0003_x y.sql", "select 1;", NULL, NULL, NULL }, "not allowed" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *d = make_dir(bad[i].files);
        struct mig_set *s2 = NULL;
        assert_int_equal(mig_scan(d, false, true, &s2, &err), -1);
        if (!strstr(err.msg, bad[i].want))
            fail_msg("bad folder %zu: %s", i, err.msg);
        remove_dir(d, bad[i].files);
    }
}

static void test_plan_hash(void **state)
{
    (void)state;
    static const char *const files[] = {
        "0001_a.sql", "create table a (id int);",
        "0001_a.down.sql", "drop table a;",
        "0002_b.sql", "-- pgsov: lock_timeout=1s\ncreate index concurrently b_i on a (id);",
        NULL,
    };
    char *dir = make_dir(files);
    struct mig_set *set = NULL;
    struct pgsov_err err = { "" };
    assert_int_equal(mig_scan(dir, false, false, &set, &err), 0);
    const struct mig_file *both[2] = { &set->files[0], &set->files[1] };
    const struct mig_file *first[1] = { &set->files[0] };
    struct mig_settings def = { 5000, 60000, MIG_TX_AUTO };

    struct mig_plan p1, p2, p3, p4, p5;
    assert_int_equal(mig_plan_build(MIG_PLAN_APPLY, "production", both, 2, &def, &p1, &err), 0);
    assert_int_equal(mig_plan_build(MIG_PLAN_APPLY, "production", both, 2, &def, &p2, &err), 0);
    assert_int_equal(mig_plan_build(MIG_PLAN_APPLY, "staging", both, 2, &def, &p3, &err), 0);
    assert_int_equal(mig_plan_build(MIG_PLAN_APPLY, "production", first, 1, &def, &p4, &err), 0);
    assert_int_equal(mig_plan_build(MIG_PLAN_ROLLBACK, "production", first, 1, &def, &p5, &err), 0);
    assert_string_equal(p1.hash, p2.hash);           /* stable */
    assert_string_not_equal(p1.hash, p3.hash);       /* environment is part of it */
    assert_string_not_equal(p1.hash, p4.hash);       /* the file list is part of it */
    assert_string_not_equal(p4.hash, p5.hash);       /* the direction is part of it */
    assert_true(p1.steps[0].transactional);
    assert_false(p1.steps[1].transactional);
    assert_int_equal(p1.steps[1].settings.lock_timeout_ms, 1000);

    /* The hash is over exactly the documented text. */
    char want[MIG_HEX_LEN + 1], text[512];
    snprintf(text, sizeof text, "pgsov-plan-v1\nkind=apply\nenv=production\n0001 a up %s\n",
             set->files[0].checksum);
    assert_int_equal(mig_sha256_hex(text, strlen(text), want), 0);
    assert_string_equal(p4.hash, want);

    /* A changed file changes the hash. */
    set->files[0].checksum[0] = set->files[0].checksum[0] == 'a' ? 'b' : 'a';
    char changed[MIG_HEX_LEN + 1];
    assert_int_equal(mig_plan_hash(&p4, changed), 0);
    assert_string_not_equal(changed, p4.hash);

    /* Rollback of a file without a down file stops before anything. */
    const struct mig_file *second[1] = { &set->files[1] };
    struct mig_plan p6;
    assert_int_equal(mig_plan_build(MIG_PLAN_ROLLBACK, "production", second, 1, &def, &p6, &err), -1);
    assert_non_null(strstr(err.msg, "no down file"));

    /* The plan text names the hash; findings are counted. */
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    mig_plan_print(&p1, out, true);
    fclose(out);
    assert_non_null(strstr(buf, p1.hash));
    assert_non_null(strstr(buf, "NO transaction"));
    free(buf);

    mig_plan_free(&p1); mig_plan_free(&p2); mig_plan_free(&p3); mig_plan_free(&p4); mig_plan_free(&p5);
    mig_set_free(set);
    remove_dir(dir, files);
}

static void test_approval(void **state)
{
    (void)state;
    const char *hash = "3f9c0a1b2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789ab";
    static const struct { const char *given; bool ok; } cases[] = {
        { "3f9c0a1b2c3d", true },
        { "3F9C0A1B2C3D4E5F", true },
        { "3f9c0a1b2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789ab", true },
        { "3f9c0a1b2c3", false },                  /* 11 digits: too short */
        { "3f9c0a1b2c3e", false },
        { "", false },
        { "3f9c0a1b2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789ab0", false },
        { "3f9c0a1b2c3g", false },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (mig_approval_matches(cases[i].given, hash) != cases[i].ok)
            fail_msg("approve \"%s\": want %d", cases[i].given, cases[i].ok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_filenames),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_checksums),
        cmocka_unit_test(test_non_transactional),
        cmocka_unit_test(test_findings),
        cmocka_unit_test(test_statement_split),
        cmocka_unit_test(test_decide_transaction),
        cmocka_unit_test(test_drizzle_journal),
        cmocka_unit_test(test_drizzle_fixture),
        cmocka_unit_test(test_scan_and_status),
        cmocka_unit_test(test_plan_hash),
        cmocka_unit_test(test_approval),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
