/* audit.h — `pgsov audit`: is this database configured the way its environment must be?
 *
 * Three parts, one header:
 *  - the manifest (rules/environment-manifest.json, format in docs/audit.md): parsed and
 *    validated with jansson; every error names the JSON path ($.environments.x.rls.schemas[0]).
 *  - the report: checks that ran, findings (id, level, area, object, found, expected, fix),
 *    renderers for text, JSON and JUnit, and the exit-code policy. Pure.
 *  - the checks against a live database (audit_db.c): catalog queries inside a READ ONLY
 *    transaction; a check the role may not run is an unverified finding, never a pass.
 * Pure helpers (setting comparison, sensitive column names, migration folder vs history,
 * backup reply) are exposed so they are unit-tested without a server. */
#ifndef PGSOV_TOOLS_AUDIT_H
#define PGSOV_TOOLS_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>
#include <libpq-fe.h>

#include "pgsov/err.h"

enum audit_level { AUDIT_INFO = 0, AUDIT_WARNING, AUDIT_ERROR };

const char *audit_level_name(enum audit_level l);            /* "info", "warning", "error" */
int audit_level_parse(const char *s, enum audit_level *out);  /* -1 when unknown */

/* ---- manifest ------------------------------------------------------------------------ */

struct audit_strlist {
    char **v;
    size_t n;
};

bool audit_strlist_has(const struct audit_strlist *l, const char *s);

enum audit_setting_op { AUDIT_SET_EQUALS, AUDIT_SET_ONE_OF, AUDIT_SET_RANGE };

struct audit_setting {
    char *name;
    enum audit_setting_op op;
    struct audit_strlist values;   /* equals: one value; one_of: the allowed values          */
    bool has_min, has_max;         /* range: numbers in the unit pg_settings reports          */
    double min, max;
};

struct audit_policy {
    char *table;                   /* "schema.table"                                          */
    char *name;
    char *command;                 /* "all", "select", "insert", "update", "delete"; NULL: any */
    struct audit_strlist roles;    /* n == 0: not checked; "public" means PUBLIC              */
    int permissive;                /* 1 permissive, 0 restrictive, -1 not checked             */
};

struct audit_extension {
    char *name;
    struct audit_strlist versions; /* n == 0: any version                                     */
};

struct audit_waiver {
    char *id;
    char *object;
    char *reason;
};

struct audit_level_override {
    char *id;
    enum audit_level level;
};

struct audit_env_manifest {
    char *name;
    struct audit_strlist hosts;               /* host patterns (env_host_pattern_match)       */
    bool attestation_required;
    enum audit_level unverified_level;        /* level of checks that could not run           */

    bool rls_checked;
    struct audit_strlist rls_schemas;
    bool rls_force;
    bool rls_exhaustive;                       /* policies not listed are findings            */
    struct audit_policy *policies;
    size_t n_policies;

    bool roles_checked;
    struct audit_strlist roles_must_exist, roles_not_superuser, roles_not_bypassrls,
        roles_no_login, owner_schemas, owners_allowed;

    struct audit_setting *settings;
    size_t n_settings;

    bool ddl_guard_checked;
    char *ddl_guard_trigger;                   /* default "pgsov_ddl_guard"                   */
    char *ddl_guard_function;                  /* default "pgsov.ddl_guard"                   */

    bool extensions_checked;
    struct audit_extension *extensions;
    size_t n_extensions;

    bool migrations_checked;
    char *migrations_dir;                      /* default "migrations"                         */
    bool allow_pending;

    bool backups_checked;
    bool backups_daily, backups_pitr;
    int backups_retention_days;                /* 0: not checked                               */

    struct audit_strlist exposed_schemas;      /* default ["public"]; rls.schemas are added    */
    struct audit_strlist client_roles;         /* default ["anon", "authenticated"]            */
    struct audit_strlist sensitive_columns;    /* extra names for sensitive_columns_exposed    */

    struct audit_strlist disabled;             /* check ids not run                           */
    struct audit_level_override *levels;
    size_t n_levels;
    struct audit_waiver *waivers;
    size_t n_waivers;
};

struct audit_manifest {
    struct audit_env_manifest *envs;
    size_t n_envs;
};

/* Parses and validates; on error returns -1 with "<name>: $.path: reason" in err. */
int audit_manifest_load(const char *path, struct audit_manifest **out, struct pgsov_err *err);
int audit_manifest_load_string(const char *text, const char *name, struct audit_manifest **out,
                               struct pgsov_err *err);
void audit_manifest_free(struct audit_manifest *m);
/* By canonical name, exact; NULL when the manifest has no entry. */
const struct audit_env_manifest *audit_manifest_env(const struct audit_manifest *m,
                                                    const char *name);

/* ---- checks and findings --------------------------------------------------------------- */

/* Every check id the audit knows, with its area, default level, title and generic fix. */
struct audit_check_def {
    const char *id;
    const char *area;
    enum audit_level level;
    const char *title;
    const char *fix;
};
const struct audit_check_def *audit_check_find(const char *id);
const struct audit_check_def *audit_check_defs(size_t *n);

enum audit_status { AUDIT_SKIPPED = 0, AUDIT_PASS, AUDIT_FAIL, AUDIT_UNVERIFIED };
const char *audit_status_name(enum audit_status s);

struct audit_finding {
    char *id, *area, *object, *found, *expected, *fix;
    enum audit_level level;
    bool verified;              /* false: the check could not run; not a pass               */
    char *waived;               /* reason from the manifest's waivers, or NULL               */
};

struct audit_report {
    char *environment;
    char *target;               /* "host:port/database"                                      */
    char *user;
    char *manifest;
    time_t started;
    const struct audit_env_manifest *env;   /* levels, waivers, disabled; may be NULL        */
    bool *ran;                  /* per audit_check_defs index                                */
    struct audit_finding *findings;
    size_t n_findings, cap;
    bool oom;                   /* an allocation failed: the report is incomplete           */
};

/* env may be NULL (defaults). Returns NULL on allocation failure. */
struct audit_report *audit_report_new(const char *environment, const struct audit_env_manifest *env);
void audit_report_free(struct audit_report *r);
void audit_report_set_target(struct audit_report *r, const char *target, const char *user,
                             const char *manifest);

/* Is the check enabled by the manifest (not in checks.disabled)? */
bool audit_report_enabled(const struct audit_report *r, const char *id);
/* Marks a check as run (it passes unless findings are added). Unknown ids are ignored. */
void audit_report_ran(struct audit_report *r, const char *id);
/* Adds a finding for check id (marks it run). fix NULL: the check's generic fix. The level is
 * the check's default or the manifest's override; a matching waiver is attached. */
void audit_report_add(struct audit_report *r, const char *id, const char *object,
                      const char *found, const char *expected, const char *fix);
/* Adds an unverified finding: the check could not run (why), what to check by hand. */
void audit_report_unverified(struct audit_report *r, const char *id, const char *object,
                             const char *why, const char *by_hand);
/* printf-style found text. */
void audit_report_addf(struct audit_report *r, const char *id, const char *object,
                       const char *expected, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

enum audit_status audit_report_status(const struct audit_report *r, size_t def_index);

/* 1 when a finding that is not waived has level >= fail_on, else 0. */
int audit_exit_code(const struct audit_report *r, enum audit_level fail_on);

enum audit_format { AUDIT_FORMAT_TEXT, AUDIT_FORMAT_JSON, AUDIT_FORMAT_JUNIT };
int audit_format_parse(const char *s, enum audit_format *out);

/* Renders to out. color: ANSI colours in text (caller decides: isatty && !NO_COLOR).
 * Returns 0, or -1 on allocation/write failure. */
int audit_render(const struct audit_report *r, enum audit_format fmt, enum audit_level fail_on,
                 bool color, FILE *out);

/* ---- pure helpers ---------------------------------------------------------------------- */

/* Does value (and unit, may be NULL/"") satisfy s? On false writes what was expected into
 * expected_buf ("on", "one of ddl, all", ">= 100"). */
bool audit_setting_ok(const struct audit_setting *s, const char *value, char *expected_buf,
                      size_t size);

/* Is this column name sensitive (credentials, personal ids incl. Brazilian cpf, cnpj, rg,
 * pis, titulo_eleitor, cns ...; or listed in extra)? Case-insensitive, '-' as '_'. */
bool audit_sensitive_column(const char *name, const struct audit_strlist *extra);

/* Compares the migrations folder (migrate_core's mig_scan) with the applied history rows
 * (pgsov.schema_migrations) through migrate_core's mig_status: pending or out of order →
 * migration_pending (unless allow_pending), checksum changed → migration_drift, applied but
 * its file gone → migration_unknown. Marks the three checks run. -1 with err when the
 * comparison itself fails. */
struct mig_set;
struct mig_applied;
int audit_migrations_compare(struct audit_report *r, const struct mig_set *set,
                             const struct mig_applied *applied, size_t n_applied,
                             bool allow_pending, struct pgsov_err *err);

/* Evaluates a Supabase management API backups reply (GET /v1/projects/{ref}/database/backups;
 * shape in docs/audit.md) against the manifest's backup policy at time now. A reply that is
 * malformed is an unverified finding, never a pass. reply_text NULL: every backup check is
 * unverified, with what to check by hand. */
void audit_backups_evaluate(struct audit_report *r, const struct audit_env_manifest *env,
                            const char *reply_text, const char *reply_name, time_t now);

/* ---- against a live database ----------------------------------------------------------- */

struct config;

struct audit_db_facts {
    const char *host;           /* host:port the connection went to (for the hosts check)    */
    int port;
    const struct audit_manifest *manifest;   /* all environments: patterns of the others    */
    const char *migrations_dir; /* overrides the manifest's (--migrations)                   */
    const char *backup_reply;   /* file path or NULL                                         */
    int statement_timeout_ms;
    const struct config *cfg;   /* proxy.ini: its hostname guard decides when the manifest
                                   entry names no "hosts"                                   */
};

/* Runs every enabled check on c inside BEGIN READ ONLY (rolled back at the end).
 * Returns 0 when the audit ran (findings or not), -1 with err when it could not run at all. */
int audit_db_run(PGconn *c, struct audit_report *r, const struct audit_env_manifest *env,
                 const struct audit_db_facts *facts, struct pgsov_err *err);

#endif
