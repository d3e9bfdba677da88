/* audit_db.c — the audit's thin libpq layer: catalog queries against a live database, turned
 * into findings with the pure helpers in audit_eval.c and the report in audit_report.c.
 *
 * Everything runs in one BEGIN READ ONLY transaction with a statement_timeout, and is rolled
 * back. Each query runs under its own savepoint, so a permission error (the audit works as a
 * non-superuser: Supabase's `postgres` is not one) makes only that check unverified — never a
 * pass — and the rest of the audit goes on. The queries are written for pgsov from the
 * catalogs; lint ids follow Supabase's splinter so findings read the same in both tools. */
#include "audit.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pgsov/config.h"
#include "pgsov/env.h"
#include "migrate_core.h"
#include "target.h"

/* Schemas the lints never look into: the catalogs and what Supabase manages itself. */
#define SYSTEM_SCHEMAS                                                                          \
    "'pg_catalog','information_schema','pg_toast','auth','storage','realtime','_realtime',"     \
    "'extensions','graphql','graphql_public','vault','pgsodium','pgsodium_masks',"             \
    "'supabase_functions','supabase_migrations','net','cron','pgbouncer','pgtle','repack',"    \
    "'_analytics','topology','tiger'"
#define NOT_SYSTEM(col) \
    "(" col " NOT IN (" SYSTEM_SCHEMAS ") AND " col " NOT LIKE 'pg\\_temp\\_%' AND " col " NOT LIKE 'pg\\_toast\\_temp\\_%')"

struct db {
    PGconn *c;
    struct audit_report *r;
    const struct audit_env_manifest *env;
    char why[512];              /* last query error, for unverified findings */
    char sqlstate[6];
};

/* Runs sql under a savepoint. Returns the result (caller PQclear) or NULL with x->why set;
 * the transaction stays usable either way. */
static PGresult *query(struct db *x, const char *sql, int nparams, const char *const *params)
{
    PGresult *sp = PQexec(x->c, "SAVEPOINT pgsov_audit");
    bool sp_ok = PQresultStatus(sp) == PGRES_COMMAND_OK;
    PQclear(sp);
    if (!sp_ok) {
        snprintf(x->why, sizeof x->why, "%s", PQerrorMessage(x->c));
        return NULL;
    }
    PGresult *res = PQexecParams(x->c, sql, nparams, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK) {
        PQclear(PQexec(x->c, "RELEASE SAVEPOINT pgsov_audit"));
        return res;
    }
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    snprintf(x->sqlstate, sizeof x->sqlstate, "%s", state ? state : "");
    snprintf(x->why, sizeof x->why, "%s%s%s", msg ? msg : PQerrorMessage(x->c),
             state ? " (SQLSTATE " : "", state ? state : "");
    if (state)
        strncat(x->why, ")", sizeof x->why - strlen(x->why) - 1);
    PQclear(res);
    PQclear(PQexec(x->c, "ROLLBACK TO SAVEPOINT pgsov_audit"));
    return NULL;
}

/* {"a","b"} literal for a text[] parameter; quoted, so any name is safe. */
static char *pg_array(const struct audit_strlist *a, const struct audit_strlist *b)
{
    size_t cap = 3;
    for (size_t i = 0; a && i < a->n; i++)
        cap += 2 * strlen(a->v[i]) + 3;
    for (size_t i = 0; b && i < b->n; i++)
        cap += 2 * strlen(b->v[i]) + 3;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    size_t o = 0;
    out[o++] = '{';
    const struct audit_strlist *lists[2] = { a, b };
    bool first = true;
    for (int l = 0; l < 2; l++)
        for (size_t i = 0; lists[l] && i < lists[l]->n; i++) {
            if (!first)
                out[o++] = ',';
            first = false;
            out[o++] = '"';
            for (const char *s = lists[l]->v[i]; *s; s++) {
                if (*s == '"' || *s == '\\')
                    out[o++] = '\\';
                out[o++] = *s;
            }
            out[o++] = '"';
        }
    out[o++] = '}';
    out[o] = '\0';
    return out;
}

static bool is_t(const PGresult *res, int row, int col)
{
    return strcmp(PQgetvalue(res, row, col), "t") == 0;
}

/* ---- target ------------------------------------------------------------------------------ */

static void check_hosts(struct db *x, const struct audit_db_facts *f)
{
    const struct audit_env_manifest *env = x->env;
    if (!f->host)
        return;
    char obj[300];
    snprintf(obj, sizeof obj, "%s:%d", f->host, f->port);
    if (env->hosts.n == 0) {
        /* No "hosts" in the manifest: proxy.ini's host_patterns are the one source of truth. */
        const struct env_config *ce = f->cfg ? config_find_env(f->cfg, env->name) : NULL;
        struct pgsov_err gerr;
        if (!ce)
            return;
        if (env_guard_check(f->cfg, ce, f->host, f->port, &gerr) != 0)
            audit_report_add(x->r, "host_not_allowed", obj, gerr.msg,
                             "a host matching this environment's host_patterns in proxy.ini", NULL);
        else
            audit_report_ran(x->r, "host_not_allowed");
        return;
    }
    bool own = false;
    for (size_t i = 0; i < env->hosts.n; i++)
        own |= env_host_pattern_match(env->hosts.v[i], f->host, f->port);
    if (!own) {
        audit_report_add(x->r, "host_not_allowed", obj, "matches none of this environment's host patterns",
                         "a host matching \"hosts\" of this environment", NULL);
        return;
    }
    for (size_t k = 0; f->manifest && k < f->manifest->n_envs; k++) {
        const struct audit_env_manifest *o = &f->manifest->envs[k];
        if (o == env || strcmp(o->name, env->name) == 0)
            continue;
        for (size_t i = 0; i < o->hosts.n; i++)
            if (env_host_pattern_match(o->hosts.v[i], f->host, f->port)) {
                char found[400];
                snprintf(found, sizeof found, "also matches %s's pattern \"%s\"", o->name, o->hosts.v[i]);
                audit_report_add(x->r, "host_not_allowed", obj, found,
                                 "a host that belongs to this environment only", NULL);
                return;
            }
    }
    audit_report_ran(x->r, "host_not_allowed");
}

static void check_attestation(struct db *x)
{
    if (!x->env->attestation_required)
        return;
    PGresult *sp = PQexec(x->c, "SAVEPOINT pgsov_audit_att");
    PQclear(sp);
    char attested[128] = "";
    struct pgsov_err err = { "" };
    int rc = target_read_attestation(x->c, attested, sizeof attested, &err);
    if (rc < 0) {
        PQclear(PQexec(x->c, "ROLLBACK TO SAVEPOINT pgsov_audit_att"));
        audit_report_unverified(x->r, "attestation_missing", "pgsov.environment_attestation", err.msg,
                                "SELECT environment FROM pgsov.environment_attestation as a role allowed to read it");
        return;
    }
    PQclear(PQexec(x->c, "RELEASE SAVEPOINT pgsov_audit_att"));
    audit_report_ran(x->r, "attestation_mismatch");
    if (rc == 0) {
        audit_report_add(x->r, "attestation_missing", "pgsov.environment_attestation", "no attestation row",
                         x->env->name, NULL);
        return;
    }
    audit_report_ran(x->r, "attestation_missing");
    if (strcmp(attested, x->env->name) != 0) {
        char found[200];
        snprintf(found, sizeof found, "database attests \"%s\"", attested);
        audit_report_add(x->r, "attestation_mismatch", "pgsov.environment_attestation", found, x->env->name, NULL);
    }
}

/* ---- RLS and the table lints ----------------------------------------------------------------- */

static void check_tables(struct db *x)
{
    static const char sql[] =
        "SELECT n.nspname, c.relname, c.relrowsecurity, c.relforcerowsecurity,"
        "       (SELECT count(*) FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid),"
        "       n.nspname = ANY($1::text[]) AS in_scope,"
        "       n.nspname = ANY($2::text[]) AS rls_schema,"
        "       EXISTS (SELECT 1 FROM pg_catalog.aclexplode(coalesce(c.relacl,"
        "                       pg_catalog.acldefault('r', c.relowner))) a"
        "               WHERE a.privilege_type = 'SELECT' AND (a.grantee = 0 OR"
        "                     pg_catalog.pg_get_userbyid(a.grantee) = ANY($3::text[]))) AS client_readable,"
        "       coalesce((SELECT pg_catalog.string_agg(a.attname, ',' ORDER BY a.attnum)"
        "                 FROM pg_catalog.pg_attribute a"
        "                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')"
        "  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p') AND " NOT_SYSTEM("n.nspname")
        " ORDER BY 1, 2";
    char *scope = pg_array(&x->env->exposed_schemas, &x->env->rls_schemas);
    char *rls = pg_array(&x->env->rls_schemas, NULL);
    char *clients = pg_array(&x->env->client_roles, NULL);
    const char *params[3] = { scope, rls, clients };
    PGresult *res = scope && rls && clients ? query(x, sql, 3, params) : NULL;
    free(scope);
    free(rls);
    free(clients);
    static const char *const ids[] = { "rls_disabled_in_public", "policy_exists_rls_disabled",
                                       "rls_enabled_no_policy", "sensitive_columns_exposed", NULL };
    if (!res) {
        for (size_t i = 0; ids[i]; i++)
            audit_report_unverified(x->r, ids[i], "pg_class", x->why, "SELECT relname, relrowsecurity FROM pg_class");
        return;
    }
    for (size_t i = 0; ids[i]; i++)
        audit_report_ran(x->r, ids[i]);
    if (x->env->rls_force)
        audit_report_ran(x->r, "rls_not_forced");
    for (int row = 0; row < PQntuples(res); row++) {
        char obj[300];
        snprintf(obj, sizeof obj, "%s.%s", PQgetvalue(res, row, 0), PQgetvalue(res, row, 1));
        bool enabled = is_t(res, row, 2), forced = is_t(res, row, 3);
        long policies = atol(PQgetvalue(res, row, 4));
        bool in_scope = is_t(res, row, 5), rls_schema = is_t(res, row, 6), readable = is_t(res, row, 7);
        if (!enabled) {
            /* One finding per table, the most specific one. */
            char sens[512] = "";
            if (readable) {
                char *cols = strdup(PQgetvalue(res, row, 8)), *save = NULL;
                size_t len = 0;
                for (char *col = cols ? strtok_r(cols, ",", &save) : NULL; col; col = strtok_r(NULL, ",", &save))
                    if (audit_sensitive_column(col, &x->env->sensitive_columns) && len < sizeof sens)
                        len += (size_t)snprintf(sens + len, sizeof sens - len, "%s%s", len ? ", " : "", col);
                free(cols);
            }
            if (sens[0])
                audit_report_addf(x->r, "sensitive_columns_exposed", obj,
                                  "RLS enabled, or no SELECT for PUBLIC/client roles",
                                  "RLS disabled, readable by PUBLIC or client roles, sensitive column(s): %s", sens);
            else if (policies > 0)
                audit_report_addf(x->r, "policy_exists_rls_disabled", obj, "RLS enabled",
                                  "RLS disabled while %ld polic%s exist", policies, policies == 1 ? "y" : "ies");
            else if (in_scope)
                audit_report_add(x->r, "rls_disabled_in_public", obj, "RLS disabled", "RLS enabled", NULL);
            continue;
        }
        if (policies == 0)
            audit_report_add(x->r, "rls_enabled_no_policy", obj, "RLS enabled, no policy",
                             "at least one policy", NULL);
        if (x->env->rls_force && rls_schema && !forced)
            audit_report_add(x->r, "rls_not_forced", obj, "RLS not forced", "FORCE ROW LEVEL SECURITY", NULL);
    }
    PQclear(res);
}

static const char *cmd_name(const char *polcmd)
{
    switch (polcmd[0]) {
    case 'r': return "select";
    case 'a': return "insert";
    case 'w': return "update";
    case 'd': return "delete";
    default: return "all";
    }
}

/* "true", "(true)", "1 = 1", "(1 = 1)" after deparsing: a condition that never filters. */
static bool always_true(const char *expr)
{
    if (!expr)
        return false;
    char buf[64];
    size_t o = 0;
    for (const char *p = expr; *p && o < sizeof buf - 1; p++)
        if (*p != ' ' && *p != '(' && *p != ')')
            buf[o++] = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    buf[o] = '\0';
    return strcmp(buf, "true") == 0 || strcmp(buf, "1=1") == 0;
}

/* Compares two comma-separated role lists as sets. */
static bool same_roles(const char *csv, const struct audit_strlist *want)
{
    size_t n = 0;
    char *copy = strdup(csv), *save = NULL;
    bool ok = copy != NULL;
    for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t && ok; t = strtok_r(NULL, ",", &save)) {
        n++;
        ok = audit_strlist_has(want, t);
    }
    free(copy);
    return ok && n == want->n;
}

static void check_policies(struct db *x)
{
    static const char sql[] =
        "SELECT n.nspname || '.' || c.relname, p.polname, p.polcmd, p.polpermissive,"
        "       coalesce((SELECT pg_catalog.string_agg(CASE WHEN r = 0 THEN 'public'"
        "                                   ELSE pg_catalog.pg_get_userbyid(r)::text END, ',')"
        "                 FROM pg_catalog.unnest(p.polroles) r), ''),"
        "       pg_catalog.pg_get_expr(p.polqual, p.polrelid),"
        "       pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid),"
        "       n.nspname = ANY($1::text[]),"
        "       EXISTS (SELECT 1 FROM pg_catalog.unnest(p.polroles) r"
        "               WHERE r = 0 OR pg_catalog.pg_get_userbyid(r) = ANY($2::text[]))"
        "  FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid"
        "  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE " NOT_SYSTEM("n.nspname") " ORDER BY 1, 2";
    char *rls = pg_array(&x->env->rls_schemas, NULL);
    char *clients = pg_array(&x->env->client_roles, NULL);
    const char *params[2] = { rls, clients };
    PGresult *res = rls && clients ? query(x, sql, 2, params) : NULL;
    free(rls);
    free(clients);
    bool declared = x->env->rls_checked && x->env->n_policies > 0;
    if (!res) {
        audit_report_unverified(x->r, "permissive_rls_policy", "pg_policy", x->why, "SELECT * FROM pg_policies");
        if (declared)
            audit_report_unverified(x->r, "policy_missing", "pg_policy", x->why, "SELECT * FROM pg_policies");
        return;
    }
    audit_report_ran(x->r, "permissive_rls_policy");
    int n = PQntuples(res);
    for (int row = 0; row < n; row++) {
        const char *table = PQgetvalue(res, row, 0), *name = PQgetvalue(res, row, 1);
        const char *cmd = cmd_name(PQgetvalue(res, row, 2));
        char obj[400];
        snprintf(obj, sizeof obj, "%s policy %s", table, name);
        bool permissive = is_t(res, row, 3), for_clients = is_t(res, row, 8);
        const char *qual = PQgetisnull(res, row, 5) ? NULL : PQgetvalue(res, row, 5);
        const char *check = PQgetisnull(res, row, 6) ? NULL : PQgetvalue(res, row, 6);
        /* The condition a written row must pass: WITH CHECK, else USING (update/all). */
        const char *write_cond = check ? check : qual;
        bool writes = strcmp(cmd, "select") != 0;
        bool open = false;
        if (strcmp(cmd, "delete") == 0)
            open = !qual || always_true(qual);
        else if (writes)
            open = !write_cond || always_true(write_cond);
        if (permissive && writes && for_clients && open)
            audit_report_addf(x->r, "permissive_rls_policy", obj, "a condition on the row being written",
                              "%s policy for %s (%s) is always true", cmd, PQgetvalue(res, row, 4),
                              write_cond ? write_cond : "no condition");
        if (x->env->rls_exhaustive && is_t(res, row, 7)) {
            bool listed = false;
            for (size_t k = 0; k < x->env->n_policies && !listed; k++)
                listed = strcmp(x->env->policies[k].table, table) == 0 && strcmp(x->env->policies[k].name, name) == 0;
            if (!listed)
                audit_report_add(x->r, "policy_unexpected", obj, "policy not declared in the manifest",
                                 "only the declared policies", NULL);
        }
    }
    if (x->env->rls_exhaustive)
        audit_report_ran(x->r, "policy_unexpected");
    if (declared) {
        audit_report_ran(x->r, "policy_missing");
        audit_report_ran(x->r, "policy_mismatch");
    }
    for (size_t k = 0; declared && k < x->env->n_policies; k++) {
        const struct audit_policy *want = &x->env->policies[k];
        char obj[400];
        snprintf(obj, sizeof obj, "%s policy %s", want->table, want->name);
        int row = -1;
        for (int i = 0; i < n && row < 0; i++)
            if (strcmp(PQgetvalue(res, i, 0), want->table) == 0 && strcmp(PQgetvalue(res, i, 1), want->name) == 0)
                row = i;
        if (row < 0) {
            audit_report_add(x->r, "policy_missing", obj, "no such policy", "the policy exists", NULL);
            continue;
        }
        const char *cmd = cmd_name(PQgetvalue(res, row, 2));
        if (want->command && strcmp(want->command, cmd) != 0)
            audit_report_addf(x->r, "policy_mismatch", obj, want->command, "command %s", cmd);
        if (want->roles.n && !same_roles(PQgetvalue(res, row, 4), &want->roles)) {
            char exp[512];
            size_t len = (size_t)snprintf(exp, sizeof exp, "roles ");
            for (size_t i = 0; i < want->roles.n && len < sizeof exp; i++)
                len += (size_t)snprintf(exp + len, sizeof exp - len, "%s%s", i ? "," : "", want->roles.v[i]);
            audit_report_addf(x->r, "policy_mismatch", obj, exp, "roles %s", PQgetvalue(res, row, 4));
        }
        if (want->permissive >= 0 && (bool)want->permissive != is_t(res, row, 3))
            audit_report_add(x->r, "policy_mismatch", obj, is_t(res, row, 3) ? "permissive" : "restrictive",
                             want->permissive ? "permissive" : "restrictive", NULL);
    }
    PQclear(res);
}

/* ---- roles ------------------------------------------------------------------------------------- */

static void check_roles(struct db *x)
{
    const struct audit_env_manifest *e = x->env;
    if (!e->roles_checked)
        return;
    PGresult *res = query(x, "SELECT rolname, rolsuper, rolbypassrls, rolcanlogin FROM pg_catalog.pg_roles",
                          0, NULL);
    if (!res) {
        static const char *const ids[] = { "role_missing", "role_superuser", "role_bypassrls", "role_can_login", NULL };
        for (size_t i = 0; ids[i]; i++)
            audit_report_unverified(x->r, ids[i], "pg_roles", x->why, "\\du in psql");
    } else {
        const struct { const struct audit_strlist *names; const char *id; int col; const char *bad; const char *good; }
        rules[] = {
            { &e->roles_not_superuser, "role_superuser", 1, "SUPERUSER", "NOSUPERUSER" },
            { &e->roles_not_bypassrls, "role_bypassrls", 2, "BYPASSRLS", "NOBYPASSRLS" },
            { &e->roles_no_login, "role_can_login", 3, "LOGIN", "NOLOGIN" },
        };
        if (e->roles_must_exist.n)
            audit_report_ran(x->r, "role_missing");
        for (size_t k = 0; k < sizeof rules / sizeof rules[0]; k++)
            if (rules[k].names->n)
                audit_report_ran(x->r, rules[k].id);
        for (size_t i = 0; i < e->roles_must_exist.n; i++) {
            bool found = false;
            for (int row = 0; row < PQntuples(res) && !found; row++)
                found = strcmp(PQgetvalue(res, row, 0), e->roles_must_exist.v[i]) == 0;
            if (!found)
                audit_report_add(x->r, "role_missing", e->roles_must_exist.v[i], "role does not exist",
                                 "role exists", NULL);
        }
        for (int row = 0; row < PQntuples(res); row++)
            for (size_t k = 0; k < sizeof rules / sizeof rules[0]; k++)
                if (audit_strlist_has(rules[k].names, PQgetvalue(res, row, 0)) && is_t(res, row, rules[k].col))
                    audit_report_add(x->r, rules[k].id, PQgetvalue(res, row, 0), rules[k].bad, rules[k].good, NULL);
        PQclear(res);
    }
    if (!e->owners_allowed.n || !e->owner_schemas.n)
        return;
    static const char sql[] =
        "SELECT 'schema', n.nspname::text, pg_catalog.pg_get_userbyid(n.nspowner)::text"
        "  FROM pg_catalog.pg_namespace n WHERE n.nspname = ANY($1::text[])"
        " UNION ALL "
        "SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'"
        "                      WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table' ELSE 'table' END,"
        "       n.nspname || '.' || c.relname, pg_catalog.pg_get_userbyid(c.relowner)::text"
        "  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"
        " UNION ALL "
        "SELECT 'function', p.oid::pg_catalog.regprocedure::text, pg_catalog.pg_get_userbyid(p.proowner)::text"
        "  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = ANY($1::text[])"
        " ORDER BY 2";
    char *schemas = pg_array(&e->owner_schemas, NULL);
    const char *params[1] = { schemas };
    res = schemas ? query(x, sql, 1, params) : NULL;
    free(schemas);
    if (!res) {
        audit_report_unverified(x->r, "object_owner_not_allowed", "app schemas", x->why, "\\dn+ and \\d+ in psql");
        return;
    }
    audit_report_ran(x->r, "object_owner_not_allowed");
    for (int row = 0; row < PQntuples(res); row++)
        if (!audit_strlist_has(&e->owners_allowed, PQgetvalue(res, row, 2))) {
            char obj[400];
            snprintf(obj, sizeof obj, "%s %s", PQgetvalue(res, row, 0), PQgetvalue(res, row, 1));
            audit_report_addf(x->r, "object_owner_not_allowed", obj, "owner in roles.owners.allowed",
                              "owned by %s", PQgetvalue(res, row, 2));
        }
    PQclear(res);
}

/* ---- settings ------------------------------------------------------------------------------------ */

static void check_settings(struct db *x)
{
    const struct audit_env_manifest *e = x->env;
    if (!e->n_settings)
        return;
    PGresult *res = query(x, "SELECT name, setting FROM pg_catalog.pg_settings", 0, NULL);
    for (size_t i = 0; i < e->n_settings; i++) {
        const struct audit_setting *s = &e->settings[i];
        int row = -1;
        for (int k = 0; res && k < PQntuples(res) && row < 0; k++)
            if (strcasecmp(PQgetvalue(res, k, 0), s->name) == 0)
                row = k;
        char expected[512];
        audit_setting_ok(s, NULL, expected, sizeof expected);
        if (!res || row < 0 || PQgetisnull(res, row, 1)) {
            char why[600], hand[1200];
            snprintf(why, sizeof why, "%s", !res ? x->why
                     : "not visible to this role (superuser-only setting: needs pg_read_all_settings) or unknown");
            snprintf(hand, sizeof hand, "SHOW %s; as a role with pg_read_all_settings; expected %s", s->name, expected);
            audit_report_unverified(x->r, "setting_mismatch", s->name, why, hand);
            continue;
        }
        const char *value = PQgetvalue(res, row, 1);
        if (!audit_setting_ok(s, value, expected, sizeof expected))
            audit_report_add(x->r, "setting_mismatch", s->name, value, expected, NULL);
        else
            audit_report_ran(x->r, "setting_mismatch");
    }
    PQclear(res);
}

/* ---- DDL guard, extensions --------------------------------------------------------------------- */

static void check_ddl_guard(struct db *x)
{
    const struct audit_env_manifest *e = x->env;
    if (!e->ddl_guard_checked)
        return;
    const char *params[1] = { e->ddl_guard_trigger };
    PGresult *res = query(x,
        "SELECT t.evtenabled, n.nspname || '.' || p.proname"
        "  FROM pg_catalog.pg_event_trigger t JOIN pg_catalog.pg_proc p ON p.oid = t.evtfoid"
        "  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE t.evtname = $1", 1, params);
    if (!res) {
        audit_report_unverified(x->r, "ddl_guard_missing", e->ddl_guard_trigger, x->why, "\\dy in psql");
        return;
    }
    audit_report_ran(x->r, "ddl_guard_disabled");
    if (PQntuples(res) == 0) {
        audit_report_add(x->r, "ddl_guard_missing", e->ddl_guard_trigger, "no such event trigger",
                         "event trigger installed", NULL);
    } else if (strcmp(PQgetvalue(res, 0, 1), e->ddl_guard_function) != 0) {
        audit_report_addf(x->r, "ddl_guard_missing", e->ddl_guard_trigger, e->ddl_guard_function,
                          "trigger calls %s", PQgetvalue(res, 0, 1));
    } else {
        audit_report_ran(x->r, "ddl_guard_missing");
        /* O (origin) and A (always) fire in ordinary sessions; D never fires, and R (replica)
         * only when session_replication_role = replica: neither guards anything. */
        const char *state = PQgetvalue(res, 0, 0);
        if (strcmp(state, "O") != 0 && strcmp(state, "A") != 0)
            audit_report_add(x->r, "ddl_guard_disabled", e->ddl_guard_trigger,
                             strcmp(state, "R") == 0 ? "enabled for replica sessions only" : "disabled",
                             "enabled (ENABLE or ENABLE ALWAYS)", NULL);
    }
    PQclear(res);
}

static void check_extensions(struct db *x)
{
    const struct audit_env_manifest *e = x->env;
    PGresult *res = query(x,
        "SELECT e.extname, e.extversion, n.nspname FROM pg_catalog.pg_extension e"
        "  JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace ORDER BY 1", 0, NULL);
    if (!res) {
        audit_report_unverified(x->r, "extension_in_public", "pg_extension", x->why, "\\dx in psql");
        return;
    }
    audit_report_ran(x->r, "extension_in_public");
    if (e->extensions_checked) {
        audit_report_ran(x->r, "extension_not_allowed");
        audit_report_ran(x->r, "extension_version_mismatch");
    }
    for (int row = 0; row < PQntuples(res); row++) {
        const char *name = PQgetvalue(res, row, 0), *ver = PQgetvalue(res, row, 1);
        if (strcmp(PQgetvalue(res, row, 2), "public") == 0)
            audit_report_add(x->r, "extension_in_public", name, "installed in schema public",
                             "installed in another schema (e.g. extensions)", NULL);
        if (!e->extensions_checked || strcmp(name, "plpgsql") == 0)
            continue;
        const struct audit_extension *allowed = NULL;
        for (size_t k = 0; k < e->n_extensions && !allowed; k++)
            if (strcmp(e->extensions[k].name, name) == 0)
                allowed = &e->extensions[k];
        if (!allowed)
            audit_report_addf(x->r, "extension_not_allowed", name, "listed in extensions.allowed",
                              "installed (version %s)", ver);
        else if (allowed->versions.n && !audit_strlist_has(&allowed->versions, ver)) {
            char exp[256];
            size_t len = (size_t)snprintf(exp, sizeof exp, "one of ");
            for (size_t i = 0; i < allowed->versions.n && len < sizeof exp; i++)
                len += (size_t)snprintf(exp + len, sizeof exp - len, "%s%s", i ? ", " : "", allowed->versions.v[i]);
            audit_report_addf(x->r, "extension_version_mismatch", name, exp, "version %s", ver);
        }
    }
    PQclear(res);
}

/* ---- migrations ------------------------------------------------------------------------------------ */

static void check_migrations(struct db *x, const struct audit_db_facts *f)
{
    const struct audit_env_manifest *e = x->env;
    if (!e->migrations_checked)
        return;
    const char *dir = f->migrations_dir ? f->migrations_dir : e->migrations_dir;
    static const char *const ids[] = { "migration_pending", "migration_drift", "migration_unknown", NULL };
    struct mig_set *set = NULL;
    struct pgsov_err err = { "" };
    if (mig_scan(dir, false, true, &set, &err) < 0) {
        for (size_t i = 0; ids[i]; i++)
            audit_report_unverified(x->r, ids[i], dir, err.msg,
                                    "run the audit from the repository root or pass --migrations DIR");
        return;
    }
    PGresult *res = query(x, "SELECT pg_catalog.to_regclass('pgsov.schema_migrations') IS NOT NULL", 0, NULL);
    if (res && !is_t(res, 0, 0)) {
        PQclear(res);
        audit_report_add(x->r, "migration_history_missing", "pgsov.schema_migrations", "table does not exist",
                         "migration history (pgsov migrate)", NULL);
        if (audit_migrations_compare(x->r, set, NULL, 0, e->allow_pending, &err) < 0)
            for (size_t i = 0; ids[i]; i++)
                audit_report_unverified(x->r, ids[i], dir, err.msg, "pgsov status --env NAME");
        mig_set_free(set);
        return;
    }
    bool have_table = res != NULL;
    PQclear(res);
    res = have_table ? query(x, "SELECT version::text, name::text, coalesce(checksum::text, '')"
                                "  FROM pgsov.schema_migrations", 0, NULL) : NULL;
    if (!res) {
        for (size_t i = 0; ids[i]; i++)
            audit_report_unverified(x->r, ids[i], "pgsov.schema_migrations", x->why,
                                    "`pgsov status --env NAME` as the migrating role");
        mig_set_free(set);
        return;
    }
    audit_report_ran(x->r, "migration_history_missing");
    size_t n_applied = (size_t)PQntuples(res);
    struct mig_applied *applied = calloc(n_applied ? n_applied : 1, sizeof *applied);
    if (!applied) {
        x->r->oom = true;
    } else {
        for (size_t i = 0; i < n_applied; i++) {
            struct mig_applied *a = &applied[i];
            pgsov_strlcpy(a->version, PQgetvalue(res, (int)i, 0), sizeof a->version);
            a->vnum = strtoull(a->version, NULL, 10);
            pgsov_strlcpy(a->name, PQgetvalue(res, (int)i, 1), sizeof a->name);
            pgsov_strlcpy(a->checksum, PQgetvalue(res, (int)i, 2), sizeof a->checksum);
        }
        if (audit_migrations_compare(x->r, set, applied, n_applied, e->allow_pending, &err) < 0)
            for (size_t i = 0; ids[i]; i++)
                audit_report_unverified(x->r, ids[i], "pgsov.schema_migrations", err.msg,
                                        "pgsov status --env NAME");
        free(applied);
    }
    PQclear(res);
    mig_set_free(set);
}

/* ---- view and function lints ------------------------------------------------------------------------ */

static void check_views(struct db *x)
{
    static const char sql[] =
        "SELECT n.nspname || '.' || c.relname,"
        "       EXISTS (SELECT 1 FROM pg_catalog.unnest(coalesce(c.reloptions, '{}')) o"
        "               WHERE lower(o) IN ('security_invoker=true', 'security_invoker=on',"
        "                                  'security_invoker=1', 'security_invoker=yes')),"
        "       pg_catalog.to_regclass('auth.users') IS NOT NULL AND EXISTS ("
        "           SELECT 1 FROM pg_catalog.pg_rewrite rw JOIN pg_catalog.pg_depend d"
        "             ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = rw.oid"
        "            WHERE rw.ev_class = c.oid AND d.refobjid = pg_catalog.to_regclass('auth.users')),"
        "       EXISTS (SELECT 1 FROM pg_catalog.aclexplode(coalesce(c.relacl,"
        "                       pg_catalog.acldefault('r', c.relowner))) a"
        "               WHERE a.privilege_type = 'SELECT' AND (a.grantee = 0 OR"
        "                     pg_catalog.pg_get_userbyid(a.grantee) = ANY($2::text[]))),"
        "       pg_catalog.to_regclass('auth.users') IS NOT NULL"
        "  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('v', 'm') AND n.nspname = ANY($1::text[]) ORDER BY 1";
    char *scope = pg_array(&x->env->exposed_schemas, &x->env->rls_schemas);
    char *clients = pg_array(&x->env->client_roles, NULL);
    const char *params[2] = { scope, clients };
    PGresult *res = scope && clients ? query(x, sql, 2, params) : NULL;
    free(scope);
    free(clients);
    if (!res) {
        audit_report_unverified(x->r, "security_definer_view", "pg_class", x->why, "\\dv+ in psql");
        return;
    }
    audit_report_ran(x->r, "security_definer_view");
    PGresult *auth = query(x, "SELECT pg_catalog.to_regclass('auth.users') IS NOT NULL", 0, NULL);
    if (auth && is_t(auth, 0, 0))
        audit_report_ran(x->r, "auth_users_exposed");
    PQclear(auth);
    for (int row = 0; row < PQntuples(res); row++) {
        const char *obj = PQgetvalue(res, row, 0);
        bool invoker = is_t(res, row, 1), uses_auth = is_t(res, row, 2), readable = is_t(res, row, 3);
        if (uses_auth && readable)
            audit_report_add(x->r, "auth_users_exposed", obj,
                             "view over auth.users readable by PUBLIC or client roles",
                             "auth.users never exposed to clients", NULL);
        else if (!invoker)
            audit_report_add(x->r, "security_definer_view", obj,
                             "view runs with its owner's rights (bypasses the caller's RLS)",
                             "security_invoker = true", NULL);
    }
    PQclear(res);
}

static void check_functions(struct db *x)
{
    static const char sql[] =
        "SELECT p.oid::pg_catalog.regprocedure::text"
        "  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
        " WHERE " NOT_SYSTEM("n.nspname") " AND p.prokind IN ('f', 'p')"
        "   AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(coalesce(p.proconfig, '{}')) s"
        "                   WHERE s LIKE 'search\\_path=%')"
        "   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d"
        "                   WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass"
        "                     AND d.objid = p.oid AND d.deptype = 'e')"
        " ORDER BY 1";
    PGresult *res = query(x, sql, 0, NULL);
    if (!res) {
        audit_report_unverified(x->r, "function_search_path_mutable", "pg_proc", x->why, "\\df+ in psql");
        return;
    }
    audit_report_ran(x->r, "function_search_path_mutable");
    for (int row = 0; row < PQntuples(res); row++)
        audit_report_add(x->r, "function_search_path_mutable", PQgetvalue(res, row, 0),
                         "search_path not set: resolves names through the caller's search_path",
                         "SET search_path on the function", NULL);
    PQclear(res);
}

/* ---- backups ------------------------------------------------------------------------------------------ */

static char *read_small_file(const char *path, struct pgsov_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        pgsov_fail(err, "cannot read %s", path);
        return NULL;
    }
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0)
            break;
        if (cap - len < 2) {
            if (cap >= 16u << 20) {
                pgsov_fail(err, "%s is larger than 16 MB", path);
                free(buf);
                buf = NULL;
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf)
        buf[len] = '\0';
    else if (!err->msg[0])
        pgsov_fail(err, "out of memory reading %s", path);
    return buf;
}

/* ---- the run ----------------------------------------------------------------------------------------- */

int audit_db_run(PGconn *c, struct audit_report *r, const struct audit_env_manifest *env,
                 const struct audit_db_facts *facts, struct pgsov_err *err)
{
    struct db x = { .c = c, .r = r, .env = env };
    char sql[128];
    PGresult *res = PQexec(c, "BEGIN READ ONLY");
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok)
        return pgsov_fail(err, "cannot start a read-only transaction: %s", PQerrorMessage(c));
    snprintf(sql, sizeof sql, "SET LOCAL statement_timeout = %d",
             facts->statement_timeout_ms > 0 ? facts->statement_timeout_ms : 10000);
    res = PQexec(c, sql);
    ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok) {
        pgsov_fail(err, "cannot set statement_timeout: %s", PQerrorMessage(c));
        PQclear(PQexec(c, "ROLLBACK"));
        return -1;
    }

    check_hosts(&x, facts);
    check_attestation(&x);
    check_tables(&x);
    check_policies(&x);
    check_roles(&x);
    check_settings(&x);
    check_ddl_guard(&x);
    check_extensions(&x);
    check_migrations(&x, facts);
    check_views(&x);
    check_functions(&x);

    PQclear(PQexec(c, "ROLLBACK"));
    if (PQstatus(c) != CONNECTION_OK)
        return pgsov_fail(err, "connection lost during the audit: %s", PQerrorMessage(c));

    if (env->backups_checked) {
        char *reply = NULL;
        struct pgsov_err ferr = { "" };
        if (facts->backup_reply && !(reply = read_small_file(facts->backup_reply, &ferr)))
            return pgsov_fail(err, "--backup-reply: %s", ferr.msg);
        audit_backups_evaluate(r, env, reply, facts->backup_reply, time(NULL));
        free(reply);
    }
    if (r->oom)
        return pgsov_fail(err, "out of memory: the report is incomplete");
    return 0;
}
