/* target.c — which database a pgsov command acts on (see target.h): config and environment,
 * the connection source, the hostname guard before connecting, and the environment
 * attestation inside the database. Does not print; errors travel in struct pgsov_err. */
#include "target.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pgsov/env.h"

/* ---- flags --------------------------------------------------------------------------------- */

int target_parse_flag(struct target_options *o, int argc, char **argv, int *i,
                      struct pgsov_err *err)
{
    static const struct { const char *lng; const char *shrt; size_t off; } flags[] = {
        { "--config", "-c", offsetof(struct target_options, config_path) },
        { "--env", NULL, offsetof(struct target_options, env_name) },
        { "--url", NULL, offsetof(struct target_options, url) },
        { "--user", NULL, offsetof(struct target_options, user) },
    };
    const char *arg = argv[*i];
    for (size_t k = 0; k < sizeof flags / sizeof flags[0]; k++) {
        size_t n = strlen(flags[k].lng);
        const char **slot = (const char **)((char *)o + flags[k].off);
        if (strncmp(arg, flags[k].lng, n) == 0 && arg[n] == '=') {
            if (arg[n + 1] == '\0')
                return pgsov_fail(err, "%s needs a value", flags[k].lng);
            *slot = arg + n + 1;
            (*i)++;
            return 1;
        }
        if (strcmp(arg, flags[k].lng) == 0 || (flags[k].shrt && strcmp(arg, flags[k].shrt) == 0)) {
            if (*i + 1 >= argc || argv[*i + 1][0] == '\0')
                return pgsov_fail(err, "%s needs a value", arg);
            *slot = argv[*i + 1];
            *i += 2;
            return 1;
        }
    }
    return 0;
}

/* ---- connection source -------------------------------------------------------------------- */

/* DEV_DATABASE_URL etc. for the canonical names, NAME_DATABASE_URL otherwise. */
static void url_variable(const char *env_name, char *buf, size_t size)
{
    static const struct { const char *canon, *var; } vars[] = {
        { "development", "DEV_DATABASE_URL" }, { "test", "TEST_DATABASE_URL" },
        { "staging", "STAGING_DATABASE_URL" }, { "production", "PROD_DATABASE_URL" },
    };
    const char *canon = env_canonical_name(env_name);
    for (size_t i = 0; canon && i < sizeof vars / sizeof vars[0]; i++)
        if (strcmp(canon, vars[i].canon) == 0) {
            snprintf(buf, size, "%s", vars[i].var);
            return;
        }
    size_t j = 0;
    for (const char *p = env_name; *p && j + 1 < size; p++)
        buf[j++] = isalnum((unsigned char)*p) ? (char)toupper((unsigned char)*p) : '_';
    buf[j] = '\0';
    snprintf(buf + j, size - j, "_DATABASE_URL");
}

/* libpq's sslmode strength, so a URL cannot weaken what the section demands. */
static int sslmode_rank(const char *m)
{
    static const char *order[] = { "disable", "allow", "prefer", "require", "verify-ca", "verify-full" };
    for (int i = 0; i < 6; i++)
        if (strcmp(m, order[i]) == 0)
            return i;
    return -1;
}

/* Connection parameters for PQconnectdbParams; values borrowed, never freed here. */
#define MAX_PARAMS 48
struct params {
    const char *key[MAX_PARAMS + 1];
    const char *val[MAX_PARAMS + 1];
    int n;
};

static void params_set(struct params *p, const char *key, const char *val)
{
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->key[i], key) == 0) {
            p->val[i] = val;
            return;
        }
    if (p->n < MAX_PARAMS) {
        p->key[p->n] = key;
        p->val[p->n] = val;
        p->n++;
        p->key[p->n] = NULL;
        p->val[p->n] = NULL;
    }
}

static const char *params_get(const struct params *p, const char *key)
{
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->key[i], key) == 0)
            return p->val[i];
    return NULL;
}

static int parse_port(const char *text, int *port)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || *end || v < 1 || v > 65535)
        return -1;
    *port = (int)v;
    return 0;
}

/* Fills params from a URL: everything libpq parsed, then the checks of target.h. */
static int params_from_url(struct params *p, PQconninfoOption *opts, const struct env_config *env,
                           bool have_cfg, const char *source, struct pgsov_err *err)
{
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (o->val && o->val[0])
            params_set(p, o->keyword, o->val);
    const char *host = params_get(p, "host");
    const char *hostaddr = params_get(p, "hostaddr");
    const char *port = params_get(p, "port");
    if (!host || !*host)
        return pgsov_fail(err, "the URL from %s names no host; write the host in the URL "
                          "(pgsov does not fall back to $PGHOST or a local socket)", source);
    if (strchr(host, ',') || (hostaddr && strchr(hostaddr, ',')) || (port && strchr(port, ',')))
        return pgsov_fail(err, "the URL from %s names several hosts; pgsov connects to exactly "
                          "one, checked by the hostname guard", source);
    if (params_get(p, "service"))
        return pgsov_fail(err, "the URL from %s uses service=; pgsov needs host and port in the "
                          "URL itself so that the hostname guard sees them", source);
    if (!port)
        params_set(p, "port", "5432");
    const char *mode = params_get(p, "sslmode");
    if (have_cfg) {
        const char *want = sslmode_name(env->sslmode);
        if (mode && sslmode_rank(mode) < sslmode_rank(want))
            return pgsov_fail(err, "the URL from %s asks for sslmode=%s, weaker than sslmode = %s "
                              "in [env.%s]; remove sslmode from the URL or change the section",
                              source, mode, want, env->name);
        if (!mode)
            params_set(p, "sslmode", want);
        if (!params_get(p, "sslrootcert") && env->sslrootcert)
            params_set(p, "sslrootcert", env->sslrootcert);
        if (!params_get(p, "sslcert") && env->sslcert) {
            params_set(p, "sslcert", env->sslcert);
            params_set(p, "sslkey", env->sslkey);
        }
    }
    return 0;
}

static void params_from_section(struct params *p, const struct env_config *env, char *port_buf,
                                size_t port_size)
{
    snprintf(port_buf, port_size, "%d", env->port);
    params_set(p, "host", env->host);
    params_set(p, "port", port_buf);
    params_set(p, "dbname", env->database);
    params_set(p, "sslmode", sslmode_name(env->sslmode));
    if (env->sslrootcert)
        params_set(p, "sslrootcert", env->sslrootcert);
    if (env->sslcert) {
        params_set(p, "sslcert", env->sslcert);
        params_set(p, "sslkey", env->sslkey);
    }
}

/* ---- open / close -------------------------------------------------------------------------- */

static const char *first_set(const char *a, const char *b, const char *c)
{
    if (a && *a)
        return a;
    if (b && *b)
        return b;
    return c && *c ? c : NULL;
}

/* Loads the config or, in the one allowed case, sets up the synthetic environment. */
static int target_environment(struct target *t, const struct target_options *o, bool *url_needed,
                              struct pgsov_err *err)
{
    const char *path = first_set(o->config_path, getenv("PGSOV_CONFIG"), "proxy.ini");
    bool explicit_path = first_set(o->config_path, getenv("PGSOV_CONFIG"), NULL) != NULL;
    struct stat st;
    *url_needed = false;
    if (stat(path, &st) == 0 || explicit_path) {
        if (config_load_ex(path, CONFIG_NO_SECRETS, &t->cfg, err) != 0)
            return -1;
        t->env = env_resolve(t->cfg, o->env_name, err);
        if (!t->env)
            return -1;
        t->env_name = t->env->name;
        return 0;
    }
    const char *name = first_set(o->env_name, getenv("PGSOV_ENV"), getenv("NODE_ENV"));
    const char *canon = env_canonical_name(name);
    if (!canon || (strcmp(canon, "development") != 0 && strcmp(canon, "test") != 0))
        return pgsov_fail(err, "no config file (%s not found; pass -c FILE or set PGSOV_CONFIG): "
                          "without one, pgsov runs only for development or test with a URL, and "
                          "environment \"%s\" is neither", path, name ? name : "(none given)");
    t->synthetic.name = (char *)canon;
    t->synthetic.migrations_dir = (char *)"migrations";
    t->synthetic.sslmode = SSLMODE_VERIFY_FULL;
    t->env = &t->synthetic;
    t->env_name = canon;
    *url_needed = true;
    snprintf(t->warning, sizeof t->warning, "no config file (%s): environment %s taken from the "
             "URL without a hostname guard", path, canon);
    return 0;
}

int target_open(struct target *t, const struct target_options *o, struct pgsov_err *err)
{
    memset(t, 0, sizeof *t);
    bool url_needed;
    if (target_environment(t, o, &url_needed, err) != 0)
        return -1;

    char var[128];
    url_variable(t->env_name, var, sizeof var);
    const char *url = o->url;
    if (url)
        snprintf(t->source, sizeof t->source, "--url");
    else if ((url = getenv(var)) && *url)
        snprintf(t->source, sizeof t->source, "$%s", var);
    else
        url = NULL;
    if (!url && url_needed)
        return pgsov_fail(err, "no config file and no URL: pass --url, set %s, or write a "
                          "proxy.ini with [env.%s]", var, t->env_name);

    struct params p = { .n = 0 };
    PQconninfoOption *opts = NULL;
    char port_buf[16];
    if (url) {
        char *perr = NULL;
        opts = PQconninfoParse(url, &perr);
        if (!opts) {
            /* libpq's message may quote the URL: do not pass it on, it can hold a password. */
            PQfreemem(perr);
            return pgsov_fail(err, "the URL from %s is not a valid connection string "
                              "(postgres://user@host:port/db?sslmode=verify-full)", t->source);
        }
        if (params_from_url(&p, opts, t->env, t->cfg != NULL, t->source, err) != 0) {
            PQconninfoFree(opts);
            t->refused = true;          /* a URL the guard cannot check, or a weaker sslmode */
            return -1;
        }
    } else {
        snprintf(t->source, sizeof t->source, "[env.%s] in %s", t->env_name, t->cfg->path);
        params_from_section(&p, t->env, port_buf, sizeof port_buf);
    }
    if (o->user)
        params_set(&p, "user", o->user);
    params_set(&p, "application_name", o->application_name ? o->application_name : "pgsov");
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%d", o->connect_timeout_s > 0 ? o->connect_timeout_s : 10);
    params_set(&p, "connect_timeout", timeout);

    int rc = 0;
    const char *host = params_get(&p, "host");
    const char *hostaddr = params_get(&p, "hostaddr");
    pgsov_strlcpy(t->host, host, sizeof t->host);
    if (parse_port(params_get(&p, "port"), &t->port) != 0)
        rc = pgsov_fail(err, "port \"%s\" from %s is not a port number", params_get(&p, "port"),
                        t->source);
    /* libpq fills every option left unset from the environment: $PGHOSTADDR, or a $PGSERVICE
     * entry's hostaddr, would send it to an address the guard never saw (PQhost() would still
     * name the checked host). Refuse instead of guessing which one the user meant. */
    if (rc == 0 && !params_get(&p, "hostaddr")) {
        static const char *const redirecting[] = { "PGHOSTADDR", "PGSERVICE" };
        for (size_t i = 0; i < sizeof redirecting / sizeof redirecting[0] && rc == 0; i++) {
            const char *v = getenv(redirecting[i]);
            if (v && *v) {
                t->refused = true;
                rc = pgsov_fail(err, "$%s is set: libpq would take the address from it, which the "
                                "hostname guard does not check; unset it (the host comes from "
                                "--url, <ENV>_DATABASE_URL or [env.%s])", redirecting[i], t->env_name);
            }
        }
    }
    /* The hostname guard, on what libpq will actually use, before any packet is sent. */
    if (rc == 0 && t->cfg) {
        rc = env_guard_check(t->cfg, t->env, host, t->port, err);
        if (rc == 0 && hostaddr)
            rc = env_guard_check(t->cfg, t->env, hostaddr, t->port, err);
        t->refused = rc != 0;
    }
    if (rc == 0) {
        t->conn = PQconnectdbParams(p.key, p.val, 0);
        if (!t->conn)
            rc = pgsov_fail(err, "out of memory");
        else if (PQstatus(t->conn) != CONNECTION_OK) {
            char msg[300];
            pgsov_strlcpy(msg, PQerrorMessage(t->conn), sizeof msg);
            msg[strcspn(msg, "\n")] = '\0';
            rc = pgsov_fail(err, "cannot connect to environment %s at %s:%d (from %s): %s",
                            t->env_name, t->host, t->port, t->source, msg);
        }
    }
    PQconninfoFree(opts);           /* the params borrowed from it are no longer needed */
    if (rc != 0)
        return -1;

    /* libpq connected where the guard looked? (It must; this catches surprises.) */
    const char *chost = PQhost(t->conn), *cport = PQport(t->conn);
    if (!chost || strcmp(chost, t->host) != 0 || !cport || atoi(cport) != t->port) {
        t->refused = true;
        return pgsov_fail(err, "connected to %s:%s, not to the %s:%d the hostname guard checked; "
                          "refusing", chost ? chost : "?", cport ? cport : "?", t->host, t->port);
    }
    PGresult *r = PQexec(t->conn, "SELECT current_database(), current_user");
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        rc = pgsov_fail(err, "environment %s: %s", t->env_name, PQerrorMessage(t->conn));
    } else {
        pgsov_strlcpy(t->dbname, PQgetvalue(r, 0, 0), sizeof t->dbname);
        pgsov_strlcpy(t->user, PQgetvalue(r, 0, 1), sizeof t->user);
    }
    PQclear(r);
    return rc;
}

void target_close(struct target *t)
{
    if (!t)
        return;
    if (t->conn)
        PQfinish(t->conn);
    t->conn = NULL;
    if (t->cfg)
        config_free(t->cfg);
    t->cfg = NULL;
    t->env = NULL;
}

/* ---- attestation ----------------------------------------------------------------------------- */

static int exec_ok(PGconn *c, const char *sql, struct pgsov_err *err)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType s = PQresultStatus(r);
    int rc = 0;
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
        char msg[300];
        pgsov_strlcpy(msg, PQresultErrorMessage(r), sizeof msg);
        msg[strcspn(msg, "\n")] = '\0';
        rc = pgsov_fail(err, "environment attestation: %s", msg);
    }
    PQclear(r);
    return rc;
}

int target_read_attestation(PGconn *c, char *env_out, size_t size, struct pgsov_err *err)
{
    PGresult *r = PQexec(c, "SELECT to_regclass('pgsov.environment_attestation') IS NOT NULL");
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        PQclear(r);
        return pgsov_fail(err, "reading the environment attestation: %s", PQerrorMessage(c));
    }
    bool exists = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (!exists)
        return 0;
    r = PQexec(c, "SELECT environment FROM pgsov.environment_attestation");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        char msg[300];
        pgsov_strlcpy(msg, PQresultErrorMessage(r), sizeof msg);
        msg[strcspn(msg, "\n")] = '\0';
        PQclear(r);
        return pgsov_fail(err, "reading pgsov.environment_attestation: %s", msg);
    }
    int rc = 0;
    if (PQntuples(r) == 1) {
        pgsov_strlcpy(env_out, PQgetvalue(r, 0, 0), size);
        rc = 1;
    }
    PQclear(r);
    return rc;
}

int target_write_attestation(PGconn *c, const char *env, struct pgsov_err *err)
{
    /* pg_control_system() may be restricted; then the identifier stays NULL. */
    PGresult *r = PQexec(c, "SELECT CASE WHEN has_function_privilege('pg_control_system()', "
                            "'EXECUTE') THEN (SELECT system_identifier::text FROM "
                            "pg_control_system()) END");
    char sysid[32] = "";
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
        pgsov_strlcpy(sysid, PQgetvalue(r, 0, 0), sizeof sysid);
    PQclear(r);

    if (exec_ok(c, "BEGIN", err) != 0)
        return -1;
    if (exec_ok(c,
                "SET LOCAL client_min_messages = warning;"
                "CREATE SCHEMA IF NOT EXISTS pgsov;"
                "CREATE TABLE IF NOT EXISTS pgsov.environment_attestation ("
                "  id boolean PRIMARY KEY DEFAULT true CHECK (id),"
                "  environment text NOT NULL,"
                "  attested_at timestamptz NOT NULL DEFAULT now(),"
                "  attested_by text NOT NULL DEFAULT current_user,"
                "  system_identifier bigint);"
                "COMMENT ON TABLE pgsov.environment_attestation IS "
                "  'which pgsov environment this database belongs to; written by pgsov migrate'",
                err) != 0) {
        exec_ok(c, "ROLLBACK", NULL);
        return -1;
    }
    const char *vals[2] = { env, sysid[0] ? sysid : NULL };
    r = PQexecParams(c,
                     "INSERT INTO pgsov.environment_attestation "
                     "  (id, environment, attested_at, attested_by, system_identifier) "
                     "VALUES (true, $1, now(), current_user, $2::bigint) "
                     "ON CONFLICT (id) DO UPDATE SET environment = excluded.environment, "
                     "  attested_at = excluded.attested_at, attested_by = excluded.attested_by, "
                     "  system_identifier = excluded.system_identifier",
                     2, NULL, vals, NULL, NULL, 0);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        char msg[300];
        pgsov_strlcpy(msg, PQresultErrorMessage(r), sizeof msg);
        msg[strcspn(msg, "\n")] = '\0';
        rc = pgsov_fail(err, "writing the environment attestation: %s", msg);
    }
    PQclear(r);
    if (rc != 0) {
        exec_ok(c, "ROLLBACK", NULL);
        return -1;
    }
    return exec_ok(c, "COMMIT", err);
}

int target_check_attestation(const struct target *t, bool required, struct pgsov_err *err)
{
    char attested[128];
    int r = target_read_attestation(t->conn, attested, sizeof attested, err);
    if (r < 0)
        return -1;
    if (r == 0) {
        if (required)
            return pgsov_fail(err, "database %s at %s:%d has no environment attestation; "
                              "environment %s requires one before any write: check that this is "
                              "the %s database, then run `pgsov migrate baseline --env %s`",
                              t->dbname, t->host, t->port, t->env_name, t->env_name, t->env_name);
        return 0;
    }
    if (strcmp(attested, t->env_name) != 0)
        return pgsov_fail(err, "refused: database %s at %s:%d attests environment \"%s\", but this "
                          "command was asked to act on \"%s\"; nothing ran. Point --env/--url at the "
                          "right database; if this database really became %s (e.g. restored from "
                          "a dump), re-attest it with `pgsov migrate baseline --env %s --force`",
                          t->dbname, t->host, t->port, attested, t->env_name, t->env_name,
                          t->env_name);
    return 1;
}
