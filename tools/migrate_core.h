/* migrate_core.h — the database-free half of `pgsov migrate`, `rollback` and `status`.
 *
 * Owns: migration file names, the `-- pgsov:` header comment, SHA-256 checksums and the
 * checksum chain, reading a migrations folder (plain or drizzle-kit), splitting and analysing
 * SQL with libpg_query (statements that cannot run in a transaction; destructive or locking
 * operations), comparing files with the applied history (applied, pending, drifted, missing,
 * out of order), and the plan with its hash. Reads files; never touches a database
 * (migrate_db.h does that). */
#ifndef PGSOV_TOOLS_MIGRATE_CORE_H
#define PGSOV_TOOLS_MIGRATE_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "pgsov/err.h"

#define MIG_HEX_LEN 64                  /* SHA-256 as lower-case hex                         */
#define MIG_VERSION_MAX 32
#define MIG_NAME_MAX 128
#define MIG_MAX_FILE_BYTES (16u << 20)  /* a migration file larger than 16 MiB is refused     */
#define MIG_MAX_FILES 10000

/* ---- file names ------------------------------------------------------------------------ */

enum mig_direction { MIG_UP, MIG_DOWN };

struct mig_name {
    char version[MIG_VERSION_MAX];      /* the digits as written: "0003", "20240501120000"   */
    uint64_t vnum;                      /* their value: files sort by it                     */
    char name[MIG_NAME_MAX];            /* "add_clients"                                     */
    enum mig_direction direction;       /* NNNN_x.sql and NNNN_x.up.sql: up; .down.sql: down */
};

/* "NNNN_name.sql", "NNNN_name.up.sql", "NNNN_name.down.sql": digits (1–18), '_', a name of
 * [A-Za-z0-9_-] (1–127). Returns 1 and fills out; 0 for a file that is not a migration at all
 * (no leading digit or not .sql: README.md, meta/); -1 with err for a file that looks like a
 * migration but is malformed ("12.sql", "0001-x.sql", "0001_.sql", "0001_a b.sql"). */
int mig_parse_filename(const char *file, struct mig_name *out, struct pgsov_err *err);

/* ---- header comment -------------------------------------------------------------------- */

enum mig_tx { MIG_TX_AUTO, MIG_TX_ON, MIG_TX_OFF };

struct mig_settings {
    int lock_timeout_ms;                /* SET lock_timeout before each statement batch       */
    int statement_timeout_ms;           /* 0: none                                           */
    enum mig_tx transaction;            /* auto: detect; on: must be transactional; off: not  */
};

#define MIG_DEFAULT_LOCK_TIMEOUT_MS 5000
#define MIG_DEFAULT_STATEMENT_TIMEOUT_MS 60000

/* Reads "-- pgsov: key=value ..." lines among the comment lines that open the file (blank lines
 * allowed; the first SQL line ends the header). Keys: lock_timeout, statement_timeout
 * (durations: 0, 250ms, 10s, 2min, 1h; a bare number is milliseconds) and transaction
 * (on|off|auto). Settings not named keep the values already in *s. -1 with err on an unknown
 * key or bad value, with the line number. */
int mig_parse_header(const char *sql, size_t len, struct mig_settings *s, struct pgsov_err *err);

/* "10s" → 10000. -1 on error. Values up to 24h. */
int mig_parse_duration_ms(const char *text, int *out_ms);

/* ---- checksums --------------------------------------------------------------------------- */

/* SHA-256 of data as 64 lower-case hex digits + NUL (OpenSSL EVP). 0 or -1. */
int mig_sha256_hex(const void *data, size_t len, char out[MIG_HEX_LEN + 1]);

/* chain = sha256_hex(prev_chain "\n" version "\n" checksum); prev_chain is "" for the first
 * file. The chain at file k therefore covers every file up to k, in version order. */
int mig_chain_next(const char *prev_chain, const char *version, const char *checksum,
                   char out[MIG_HEX_LEN + 1]);

/* ---- statements ------------------------------------------------------------------------ */

enum mig_finding_kind {
    MIG_FIND_DESTRUCTIVE,   /* loses data: DROP TABLE/COLUMN/SCHEMA..., TRUNCATE, DELETE or
                               UPDATE without WHERE                                           */
    MIG_FIND_LOCKING,       /* long ACCESS EXCLUSIVE / SHARE lock or rewrite: type change,
                               SET NOT NULL, validating constraint, CREATE INDEX without
                               CONCURRENTLY on an existing table, VACUUM FULL, CLUSTER       */
    MIG_FIND_BREAKING,      /* breaks code using the old shape: renames, ADD COLUMN NOT NULL
                               without DEFAULT                                               */
    MIG_FIND_NOTE,          /* worth knowing: enum value usable only after commit, non-atomic
                               non-transactional file                                        */
};

struct mig_finding {
    enum mig_finding_kind kind;
    char text[200];
};

struct mig_stmt {
    const char *sql;        /* points into the file's text (not NUL-terminated)              */
    size_t len;
    int line;               /* 1-based line of the statement's first SQL token               */
    char tag[48];           /* parse node name: "CreateStmt", "IndexStmt", ...               */
    bool non_transactional; /* cannot run inside a transaction block                         */
    bool is_set;            /* SET/RESET: allowed in a non-transactional file                */
    struct mig_finding *findings;
    size_t n_findings;
};

/* ---- migration files -------------------------------------------------------------------- */

struct mig_file {
    char version[MIG_VERSION_MAX];
    uint64_t vnum;
    char name[MIG_NAME_MAX];
    char *up_path, *down_path;          /* down_path NULL: no down file                       */
    char *up_sql;   size_t up_len;      /* whole up file                                      */
    char *down_sql; size_t down_len;    /* whole down file, when there is one                 */
    char checksum[MIG_HEX_LEN + 1];     /* of the up file's bytes                             */
    char down_checksum[MIG_HEX_LEN + 1];
    char chain[MIG_HEX_LEN + 1];        /* over all files up to this one                      */
    int64_t drizzle_when;               /* drizzle journal "when" (ms), or -1                 */
    char drizzle_tag[MIG_NAME_MAX + MIG_VERSION_MAX];
};

struct mig_set {
    char *dir;
    bool drizzle;                       /* meta/_journal.json decided the file list           */
    struct mig_file *files;             /* sorted by vnum                                     */
    size_t n_files;
};

/* Reads dir: every migration file (names as above), pairs up and down files, checksums and
 * chains them. With drizzle (or when dir/meta/_journal.json exists and drizzle_auto), the
 * journal lists the files: entries' "tag".sql in "idx" order, "when" kept for the drizzle
 * table; a journal entry without its file, or a .sql file the journal does not list, is an
 * error. Errors: duplicate versions, a down file without its up file, unreadable or oversized
 * files. The caller frees *out with mig_set_free(). */
int mig_scan(const char *dir, bool drizzle_force, bool drizzle_auto, struct mig_set **out,
             struct pgsov_err *err);
void mig_set_free(struct mig_set *s);

/* Parses drizzle's meta/_journal.json text: fills tags[i] ("0000_name") and whens[i] in idx
 * order. Checks dialect "postgresql", idx = position, unique tags, increasing when is NOT
 * required (drizzle does not require it). Returns the number of entries or -1. */
int mig_parse_drizzle_journal(const char *json, size_t len, char (*tags)[MIG_NAME_MAX + MIG_VERSION_MAX],
                              int64_t *whens, size_t max, struct pgsov_err *err);

/* Splits sql with libpg_query (pg_query_split_with_parser), parses each statement
 * (pg_query_parse → JSON, read with jansson) and fills *out / *n with one mig_stmt each.
 * created_tables: names ("schema.table" or "table") created by earlier files of the same plan,
 * so that CREATE INDEX on them is not a locking finding; the tables this file creates are
 * appended to it (a NULL list is allowed). Free with mig_stmts_free(). -1 with err naming
 * the line on a syntax error (PostgreSQL 15 grammar). */
struct mig_names { char **v; size_t n, cap; };
int mig_analyze_sql(const char *sql, size_t len, struct mig_names *created_tables,
                    struct mig_stmt **out, size_t *n, struct pgsov_err *err);
void mig_stmts_free(struct mig_stmt *stmts, size_t n);
void mig_names_free(struct mig_names *names);

/* How a file will run: 0 with *transactional set, or -1 with err when it mixes statements that
 * cannot run in a transaction with anything but SET/RESET, holds BEGIN/COMMIT/ROLLBACK
 * (pgsov owns the transaction), or its header says transaction=on but it cannot. */
int mig_decide_transaction(const char *file, const struct mig_stmt *stmts, size_t n,
                           enum mig_tx header, bool *transactional, struct pgsov_err *err);

/* ---- status ------------------------------------------------------------------------------ */

/* One applied history row, as read from pgsov.schema_migrations. */
struct mig_applied {
    char version[MIG_VERSION_MAX];
    uint64_t vnum;
    char name[MIG_NAME_MAX];
    char checksum[MIG_HEX_LEN + 1];
    char applied_at[40];
    char environment[64];
};

enum mig_state {
    MIG_STATE_APPLIED,
    MIG_STATE_PENDING,
    MIG_STATE_DRIFTED,          /* applied, but the file's checksum changed since             */
    MIG_STATE_MISSING,          /* applied, but its file is gone                              */
    MIG_STATE_OUT_OF_ORDER,     /* pending, but older than the newest applied version         */
};

struct mig_status_row {
    enum mig_state state;
    char version[MIG_VERSION_MAX];
    uint64_t vnum;
    char name[MIG_NAME_MAX];
    const struct mig_file *file;        /* NULL for MISSING                                   */
    const struct mig_applied *applied;  /* NULL for PENDING / OUT_OF_ORDER                    */
};

/* Compares files with history, in version order. Caller frees *rows with free(). */
int mig_status(const struct mig_set *set, const struct mig_applied *applied, size_t n_applied,
               struct mig_status_row **rows, size_t *n_rows, struct pgsov_err *err);

const char *mig_state_name(enum mig_state s);

/* Is the status safe to migrate on? 0, or -1 with a precise message for the first problem:
 * drifted, missing, or (unless allow_out_of_order) out of order. */
int mig_status_check(const struct mig_status_row *rows, size_t n, bool allow_out_of_order,
                     struct pgsov_err *err);

/* ---- plans ---------------------------------------------------------------------------------- */

enum mig_plan_kind { MIG_PLAN_APPLY, MIG_PLAN_ROLLBACK };

struct mig_plan_step {
    const struct mig_file *file;
    enum mig_direction direction;       /* up for apply, down for rollback                    */
    struct mig_settings settings;
    bool transactional;
    struct mig_stmt *stmts;
    size_t n_stmts;
};

struct mig_plan {
    enum mig_plan_kind kind;
    char environment[64];
    struct mig_plan_step *steps;
    size_t n_steps;
    char hash[MIG_HEX_LEN + 1];         /* see mig_plan_hash                                  */
};

/* Builds the plan for files (in the order given: ascending for apply, descending for
 * rollback), parsing headers and SQL. defaults: settings when a header names none.
 * Rollback needs every file's down file: a file without one stops the build (nothing runs).
 * Free with mig_plan_free(). */
int mig_plan_build(enum mig_plan_kind kind, const char *environment,
                   const struct mig_file *const *files, size_t n,
                   const struct mig_settings *defaults, struct mig_plan *out,
                   struct pgsov_err *err);
void mig_plan_free(struct mig_plan *p);

/* SHA-256 hex over exactly what the plan does:
 *   "pgsov-plan-v1\nkind=apply|rollback\nenv=<environment>\n" then per step
 *   "<version> <name> <up|down> <checksum of the file that runs>\n".
 * The same files and environment always give the same hash; any change gives another. */
int mig_plan_hash(const struct mig_plan *p, char out[MIG_HEX_LEN + 1]);

/* Does the user's --approve value match? Needs at least 12 hex digits, case-insensitive,
 * a prefix of the hash. */
bool mig_approval_matches(const char *given, const char *hash);

/* Human-readable plan: per step the file, how it runs, its statements (first line of each)
 * and findings, then the hash and the approve command. */
void mig_plan_print(const struct mig_plan *p, FILE *out, bool show_statements);

/* Number of findings of the given kind over the whole plan. */
size_t mig_plan_count(const struct mig_plan *p, enum mig_finding_kind kind);

#endif
