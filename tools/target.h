/* target.h — which database a pgsov command acts on, proven before anything is written.
 *
 * Shared by migrate, rollback, status, audit and seed. A command fills a struct
 * target_options from its flags (target_parse_flag helps), calls target_open(), and gets a
 * libpq connection to the environment it asked for, or a refusal that says why. Proof comes in
 * two layers:
 *
 *  1. The hostname guard (env_guard_check, the same code the proxy runs): the host:port the
 *     tool is about to connect to must match the environment's own host_patterns and no other
 *     environment's. It runs BEFORE connecting, on the host:port actually used.
 *  2. The environment attestation: a singleton row in pgsov.environment_attestation inside the
 *     database names the environment it belongs to. A command that writes calls
 *     target_check_attestation() after target_open(); a database attesting "production" is
 *     never migrated or seeded as "development".
 *
 * Where the connection comes from, first match wins:
 *   --url URL                       (postgres:// URI or key=value conninfo)
 *   $<ENV>_DATABASE_URL             DEV_DATABASE_URL, TEST_DATABASE_URL, STAGING_DATABASE_URL,
 *                                   PROD_DATABASE_URL by canonical name (env_canonical_name);
 *                                   another environment name NAME uses $NAME_DATABASE_URL
 *                                   (upper case, non-alphanumerics as '_')
 *   the [env.NAME] section          host, port, database, sslmode, sslrootcert, sslcert, sslkey;
 *                                   user from --user, else $PGUSER; the password as libpq finds
 *                                   it ($PGPASSWORD, ~/.pgpass) — never in proxy.ini.
 * A URL must name its host explicitly (no $PGHOST/unix-socket fallback), may not carry several
 * hosts, and may not ask for a weaker sslmode than the section's; sslrootcert/sslcert/sslkey
 * come from the section when the URL omits them, and the section's sslmode when the URL has
 * none. If the URL sets hostaddr, that address is guarded too.
 *
 * The config file (-c, else $PGSOV_CONFIG, else ./proxy.ini) is required, with one exception
 * that fails closed everywhere else: when the file does not exist, a URL (--url or
 * $<ENV>_DATABASE_URL) is given, and the environment's canonical name is "development" or
 * "test", the tool runs with a synthetic environment of that name and no hostname guard
 * (there are no patterns to check against; a warning is set in t->warning). Staging and
 * production always need the config.
 *
 * Not thread-safe; one target per command run. */
#ifndef PGSOV_TOOLS_TARGET_H
#define PGSOV_TOOLS_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <libpq-fe.h>

#include "pgsov/config.h"
#include "pgsov/err.h"

struct target_options {
    const char *config_path;      /* -c/--config; NULL: $PGSOV_CONFIG, else ./proxy.ini        */
    const char *env_name;         /* --env; NULL: $PGSOV_ENV, else $NODE_ENV (env_resolve)     */
    const char *url;              /* --url; NULL: $<ENV>_DATABASE_URL, else the env section    */
    const char *user;             /* --user; NULL: from the URL, else $PGUSER, else libpq's    */
    const char *application_name; /* e.g. "pgsov-migrate"; NULL: "pgsov"                      */
    int connect_timeout_s;        /* 0: 10 seconds                                             */
};

struct target {
    struct config *cfg;              /* owned; NULL only in the no-config case above           */
    const struct env_config *env;    /* the resolved environment (inside cfg, or synthetic)    */
    const char *env_name;            /* == env->name: canonical section name                   */
    PGconn *conn;                    /* open, CONNECTION_OK, after target_open() returned 0    */
    char host[256];                  /* host the guard checked and libpq connected to          */
    int port;
    char dbname[128];                /* current_database() as the server reports it            */
    char user[128];                  /* current_user as the server reports it                  */
    char source[192];                /* "--url", "DEV_DATABASE_URL", "proxy.ini [env.X]", ... */
    char warning[256];               /* non-empty: something the command should print once     */
    bool refused;                    /* target_open failed because a check refused the target
                                        (hostname guard, weaker sslmode, a URL it cannot check),
                                        not because the connection failed                      */
    struct env_config synthetic;     /* internal: the no-config environment                    */
};

/* Loads the config, resolves the environment, picks the connection source, runs the hostname
 * guard on the host:port about to be used, and connects with PQconnectdbParams.
 * Returns 0 with t->conn open, or -1 with err naming what was refused and which setting or
 * flag to change. Never prints a password or a URL (only host:port and database).
 * On -1 target_close(t) is still safe (and needed: it frees whatever was loaded). */
int target_open(struct target *t, const struct target_options *o, struct pgsov_err *err);

/* Closes the connection and frees the config; t may be zeroed or half-open. */
void target_close(struct target *t);

/* The attestation, in the database's own table:
 *   pgsov.environment_attestation (singleton: id boolean PRIMARY KEY DEFAULT true CHECK (id),
 *     environment text NOT NULL, attested_at timestamptz, attested_by text,
 *     system_identifier bigint — from pg_control_system(), NULL when not readable)
 * read: returns 1 and copies the environment name into env_out, 0 when the table or the row
 * is absent, -1 on error. */
int target_read_attestation(PGconn *c, char *env_out, size_t size, struct pgsov_err *err);

/* Creates schema pgsov and the table if needed and writes (upserts) the row for env, in its
 * own transaction. It does not check what was there before: callers that must not overwrite
 * another environment's attestation call target_check_attestation() first. 0 or -1. */
int target_write_attestation(PGconn *c, const char *env, struct pgsov_err *err);

/* Refuses (-1, message naming both environments and the fix) when the database attests
 * another environment than t->env_name. With required=true also refuses when there is no
 * attestation (message: run `pgsov migrate baseline --env NAME`). Returns 1 when the database
 * attests t->env_name, 0 when it is unattested and required=false. */
int target_check_attestation(const struct target *t, bool required, struct pgsov_err *err);

/* Common flags for every command that uses a target:
 *   -c FILE | --config FILE | --config=FILE,  --env NAME | --env=NAME,
 *   --url URL | --url=URL,  --user NAME | --user=NAME
 * Looks at argv[*i]: returns 1 when it was a target flag (stored in o, *i advanced past its
 * value), 0 when it is not a target flag (*i unchanged), -1 when the value is missing. */
int target_parse_flag(struct target_options *o, int argc, char **argv, int *i,
                      struct pgsov_err *err);

/* Help text for those flags, to include in each command's --help. */
#define TARGET_FLAGS_HELP                                                                   \
    "  -c, --config FILE   proxy.ini with the environments (default $PGSOV_CONFIG, ./proxy.ini)\n" \
    "  --env NAME          environment (default $PGSOV_ENV, then $NODE_ENV)\n"                 \
    "  --url URL           connection URL (default $<ENV>_DATABASE_URL, then the env section);\n" \
    "                      the hostname guard checks its host:port before connecting\n"        \
    "  --user NAME         database user when the URL names none (default $PGUSER)\n"

#endif
