/* audit_manifest.c — reads and validates the environment compliance manifest with jansson.
 * Strict: an unknown key, a wrong type or an out-of-range value is an error that names the
 * JSON path ($.environments.production.rls.schemas[0]), so a typo never silently disables a
 * check. Owns nothing beyond the parsed struct audit_manifest. Format: docs/audit.md. */
#include "audit.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

struct mctx {
    const char *name;          /* file name for messages */
    struct pgsov_err *err;
};

static int mfail(struct mctx *m, const char *path, const char *what)
{
    return pgsov_fail(m->err, "%s: %s: %s", m->name, path, what);
}

static int oom(struct mctx *m)
{
    return pgsov_fail(m->err, "%s: out of memory", m->name);
}

/* path + ".key" (or ["key"] when key is not an identifier). */
static void path_key(char *out, size_t size, const char *path, const char *key)
{
    bool ident = *key != '\0' && !isdigit((unsigned char)*key);
    for (const char *p = key; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_')
            ident = false;
    int n = ident ? snprintf(out, size, "%s.%s", path, key)
                  : snprintf(out, size, "%s[\"%s\"]", path, key);
    if (n < 0 || (size_t)n >= size)
        out[size - 1] = '\0';   /* a cut path is still a useful message */
}

static void path_index(char *out, size_t size, const char *path, size_t i)
{
    int n = snprintf(out, size, "%s[%zu]", path, i);
    if (n < 0 || (size_t)n >= size)
        out[size - 1] = '\0';
}

static const char *json_type_name(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static int want_type(struct mctx *m, const char *path, const json_t *j, json_type t,
                     const char *tname)
{
    if (json_typeof(j) == t || (t == JSON_TRUE && json_is_boolean(j)))
        return 0;
    char msg[160];
    snprintf(msg, sizeof msg, "expected %s, found %s", tname, json_type_name(j));
    return mfail(m, path, msg);
}

/* Every key of obj must be in allowed (NULL-terminated). */
static int only_keys(struct mctx *m, const char *path, json_t *obj, const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        bool ok = false;
        for (size_t i = 0; allowed[i]; i++)
            if (strcmp(allowed[i], key) == 0)
                ok = true;
        if (!ok) {
            char p[512], msg[1024];
            path_key(p, sizeof p, path, key);
            size_t len = (size_t)snprintf(msg, sizeof msg, "unknown key; allowed here:");
            for (size_t i = 0; allowed[i] && len < sizeof msg; i++)
                len += (size_t)snprintf(msg + len, sizeof msg - len, "%s %s", i ? "," : "", allowed[i]);
            return mfail(m, p, msg);
        }
    }
    return 0;
}

static int get_string(struct mctx *m, const char *path, json_t *obj, const char *key, char **out)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    char p[512];
    path_key(p, sizeof p, path, key);
    if (want_type(m, p, v, JSON_STRING, "a string") < 0)
        return -1;
    if (json_string_length(v) == 0)
        return mfail(m, p, "must not be empty");
    free(*out);
    *out = strdup(json_string_value(v));
    return *out ? 0 : oom(m);
}

static int get_bool(struct mctx *m, const char *path, json_t *obj, const char *key, bool *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    char p[512];
    path_key(p, sizeof p, path, key);
    if (want_type(m, p, v, JSON_TRUE, "a boolean") < 0)
        return -1;
    *out = json_is_true(v);
    return 0;
}

static int get_level(struct mctx *m, const char *p, json_t *v, enum audit_level *out)
{
    if (want_type(m, p, v, JSON_STRING, "a string") < 0)
        return -1;
    if (audit_level_parse(json_string_value(v), out) < 0)
        return mfail(m, p, "expected \"error\", \"warning\" or \"info\"");
    return 0;
}

static int strlist_push(struct audit_strlist *l, const char *s)
{
    char **nv = realloc(l->v, (l->n + 1) * sizeof *nv);
    if (!nv)
        return -1;
    l->v = nv;
    if (!(l->v[l->n] = strdup(s)))
        return -1;
    l->n++;
    return 0;
}

static void strlist_free(struct audit_strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

bool audit_strlist_has(const struct audit_strlist *l, const char *s)
{
    for (size_t i = 0; l && i < l->n; i++)
        if (strcmp(l->v[i], s) == 0)
            return true;
    return false;
}

/* Array of non-empty strings at path (v already fetched). */
static int parse_strlist(struct mctx *m, const char *p, json_t *v, struct audit_strlist *out)
{
    if (want_type(m, p, v, JSON_ARRAY, "an array of strings") < 0)
        return -1;
    strlist_free(out);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        char ep[512];
        path_index(ep, sizeof ep, p, i);
        if (want_type(m, ep, e, JSON_STRING, "a string") < 0)
            return -1;
        if (json_string_length(e) == 0)
            return mfail(m, ep, "must not be empty");
        if (strlist_push(out, json_string_value(e)) < 0)
            return oom(m);
    }
    return 0;
}

static int get_strlist(struct mctx *m, const char *path, json_t *obj, const char *key,
                       struct audit_strlist *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    char p[512];
    path_key(p, sizeof p, path, key);
    return parse_strlist(m, p, v, out);
}

/* Returns the object at key (NULL when absent, or -1 via *bad on a wrong type). */
static json_t *get_object(struct mctx *m, const char *path, json_t *obj, const char *key,
                          char *p, size_t psize, int *bad)
{
    json_t *v = json_object_get(obj, key);
    path_key(p, psize, path, key);
    if (v && want_type(m, p, v, JSON_OBJECT, "an object") < 0) {
        *bad = 1;
        return NULL;
    }
    return v;
}

static const char *const commands[] = { "all", "select", "insert", "update", "delete", NULL };

static int parse_policies(struct mctx *m, const char *path, json_t *v, struct audit_env_manifest *e)
{
    if (want_type(m, path, v, JSON_OBJECT, "an object of \"schema.table\": [policies]") < 0)
        return -1;
    const char *table;
    json_t *list;
    json_object_foreach(v, table, list) {
        char tp[512];
        path_key(tp, sizeof tp, path, table);
        const char *dot = strchr(table, '.');
        if (!dot || dot == table || dot[1] == '\0' || strchr(dot + 1, '.'))
            return mfail(m, tp, "key must be \"schema.table\"");
        if (want_type(m, tp, list, JSON_ARRAY, "an array of policies") < 0)
            return -1;
        size_t i;
        json_t *pj;
        json_array_foreach(list, i, pj) {
            char pp[512];
            path_index(pp, sizeof pp, tp, i);
            if (want_type(m, pp, pj, JSON_OBJECT, "an object") < 0)
                return -1;
            static const char *const keys[] = { "name", "command", "roles", "permissive", NULL };
            if (only_keys(m, pp, pj, keys) < 0)
                return -1;
            struct audit_policy *np = realloc(e->policies, (e->n_policies + 1) * sizeof *np);
            if (!np)
                return oom(m);
            e->policies = np;
            struct audit_policy *pol = &e->policies[e->n_policies++];
            memset(pol, 0, sizeof *pol);
            pol->permissive = -1;
            if (!(pol->table = strdup(table)))
                return oom(m);
            if (get_string(m, pp, pj, "name", &pol->name) < 0 ||
                get_string(m, pp, pj, "command", &pol->command) < 0 ||
                get_strlist(m, pp, pj, "roles", &pol->roles) < 0)
                return -1;
            if (!pol->name) {
                char np2[512];
                path_key(np2, sizeof np2, pp, "name");
                return mfail(m, np2, "required");
            }
            if (pol->command) {
                bool ok = false;
                for (char *c = pol->command; *c; c++)
                    *c = (char)tolower((unsigned char)*c);
                for (size_t k = 0; commands[k]; k++)
                    ok |= strcmp(commands[k], pol->command) == 0;
                if (!ok) {
                    char cp[512];
                    path_key(cp, sizeof cp, pp, "command");
                    return mfail(m, cp, "expected one of all, select, insert, update, delete");
                }
            }
            json_t *perm = json_object_get(pj, "permissive");
            if (perm) {
                char cp[512];
                path_key(cp, sizeof cp, pp, "permissive");
                if (want_type(m, cp, perm, JSON_TRUE, "a boolean (false: restrictive)") < 0)
                    return -1;
                pol->permissive = json_is_true(perm);
            }
        }
    }
    return 0;
}

static int parse_settings(struct mctx *m, const char *path, json_t *v, struct audit_env_manifest *e)
{
    if (want_type(m, path, v, JSON_OBJECT, "an object") < 0)
        return -1;
    const char *name;
    json_t *sj;
    json_object_foreach(v, name, sj) {
        char sp[512];
        path_key(sp, sizeof sp, path, name);
        if (want_type(m, sp, sj, JSON_OBJECT, "an object with equals, one_of or min/max") < 0)
            return -1;
        static const char *const keys[] = { "equals", "one_of", "min", "max", NULL };
        if (only_keys(m, sp, sj, keys) < 0)
            return -1;
        struct audit_setting *ns = realloc(e->settings, (e->n_settings + 1) * sizeof *ns);
        if (!ns)
            return oom(m);
        e->settings = ns;
        struct audit_setting *s = &e->settings[e->n_settings++];
        memset(s, 0, sizeof *s);
        if (!(s->name = strdup(name)))
            return oom(m);
        json_t *eq = json_object_get(sj, "equals"), *one = json_object_get(sj, "one_of");
        json_t *mn = json_object_get(sj, "min"), *mx = json_object_get(sj, "max");
        int kinds = (eq != NULL) + (one != NULL) + (mn || mx);
        if (kinds != 1)
            return mfail(m, sp, "give exactly one of equals, one_of, or min/max");
        char p[512];
        if (eq) {
            path_key(p, sizeof p, sp, "equals");
            if (want_type(m, p, eq, JSON_STRING, "a string") < 0)
                return -1;
            s->op = AUDIT_SET_EQUALS;
            if (strlist_push(&s->values, json_string_value(eq)) < 0)
                return oom(m);
        } else if (one) {
            path_key(p, sizeof p, sp, "one_of");
            if (parse_strlist(m, p, one, &s->values) < 0)
                return -1;
            if (s->values.n == 0)
                return mfail(m, p, "must list at least one value");
            s->op = AUDIT_SET_ONE_OF;
        } else {
            s->op = AUDIT_SET_RANGE;
            if (mn) {
                path_key(p, sizeof p, sp, "min");
                if (!json_is_number(mn))
                    return want_type(m, p, mn, JSON_REAL, "a number");
                s->has_min = true;
                s->min = json_number_value(mn);
            }
            if (mx) {
                path_key(p, sizeof p, sp, "max");
                if (!json_is_number(mx))
                    return want_type(m, p, mx, JSON_REAL, "a number");
                s->has_max = true;
                s->max = json_number_value(mx);
            }
        }
    }
    return 0;
}

static int parse_extensions(struct mctx *m, const char *path, json_t *v, struct audit_env_manifest *e)
{
    static const char *const keys[] = { "allowed", NULL };
    if (want_type(m, path, v, JSON_OBJECT, "an object") < 0 || only_keys(m, path, v, keys) < 0)
        return -1;
    json_t *al = json_object_get(v, "allowed");
    if (!al)
        return 0;
    char ap[512];
    path_key(ap, sizeof ap, path, "allowed");
    if (want_type(m, ap, al, JSON_ARRAY, "an array") < 0)
        return -1;
    size_t i;
    json_t *xj;
    json_array_foreach(al, i, xj) {
        char xp[512];
        path_index(xp, sizeof xp, ap, i);
        if (want_type(m, xp, xj, JSON_OBJECT, "an object {\"name\", \"versions\"}") < 0)
            return -1;
        static const char *const xkeys[] = { "name", "versions", NULL };
        if (only_keys(m, xp, xj, xkeys) < 0)
            return -1;
        struct audit_extension *nx = realloc(e->extensions, (e->n_extensions + 1) * sizeof *nx);
        if (!nx)
            return oom(m);
        e->extensions = nx;
        struct audit_extension *x = &e->extensions[e->n_extensions++];
        memset(x, 0, sizeof *x);
        if (get_string(m, xp, xj, "name", &x->name) < 0 ||
            get_strlist(m, xp, xj, "versions", &x->versions) < 0)
            return -1;
        if (!x->name) {
            char np[512];
            path_key(np, sizeof np, xp, "name");
            return mfail(m, np, "required");
        }
    }
    return 0;
}

static int parse_checks(struct mctx *m, const char *path, json_t *v, struct audit_env_manifest *e)
{
    static const char *const keys[] = { "disabled", "levels", "waivers", NULL };
    if (want_type(m, path, v, JSON_OBJECT, "an object") < 0 || only_keys(m, path, v, keys) < 0)
        return -1;
    if (get_strlist(m, path, v, "disabled", &e->disabled) < 0)
        return -1;
    char p[512];
    for (size_t i = 0; i < e->disabled.n; i++)
        if (!audit_check_find(e->disabled.v[i])) {
            char dp[512];
            path_key(p, sizeof p, path, "disabled");
            path_index(dp, sizeof dp, p, i);
            return mfail(m, dp, "unknown check id (docs/audit.md lists them)");
        }
    int bad = 0;
    json_t *lv = get_object(m, path, v, "levels", p, sizeof p, &bad);
    if (bad)
        return -1;
    const char *id;
    json_t *l;
    if (lv)
        json_object_foreach(lv, id, l) {
            char lp[512];
            path_key(lp, sizeof lp, p, id);
            if (!audit_check_find(id))
                return mfail(m, lp, "unknown check id (docs/audit.md lists them)");
            struct audit_level_override *no = realloc(e->levels, (e->n_levels + 1) * sizeof *no);
            if (!no)
                return oom(m);
            e->levels = no;
            struct audit_level_override *o = &e->levels[e->n_levels];
            if (get_level(m, lp, l, &o->level) < 0)
                return -1;
            if (!(o->id = strdup(id)))
                return oom(m);
            e->n_levels++;
        }
    json_t *wv = json_object_get(v, "waivers");
    if (!wv)
        return 0;
    path_key(p, sizeof p, path, "waivers");
    if (want_type(m, p, wv, JSON_ARRAY, "an array") < 0)
        return -1;
    size_t i;
    json_t *w;
    json_array_foreach(wv, i, w) {
        char wp[512];
        path_index(wp, sizeof wp, p, i);
        static const char *const wkeys[] = { "id", "object", "reason", NULL };
        if (want_type(m, wp, w, JSON_OBJECT, "an object {id, object, reason}") < 0 ||
            only_keys(m, wp, w, wkeys) < 0)
            return -1;
        struct audit_waiver *nw = realloc(e->waivers, (e->n_waivers + 1) * sizeof *nw);
        if (!nw)
            return oom(m);
        e->waivers = nw;
        struct audit_waiver *wa = &e->waivers[e->n_waivers++];
        memset(wa, 0, sizeof *wa);
        if (get_string(m, wp, w, "id", &wa->id) < 0 || get_string(m, wp, w, "object", &wa->object) < 0 ||
            get_string(m, wp, w, "reason", &wa->reason) < 0)
            return -1;
        const char *missing = !wa->id ? "id" : !wa->object ? "object" : !wa->reason ? "reason" : NULL;
        if (missing) {
            char mp[512];
            path_key(mp, sizeof mp, wp, missing);
            return mfail(m, mp, "required (a waiver names the check, the object and why)");
        }
        if (!audit_check_find(wa->id)) {
            char mp[512];
            path_key(mp, sizeof mp, wp, "id");
            return mfail(m, mp, "unknown check id (docs/audit.md lists them)");
        }
    }
    return 0;
}

static int parse_env(struct mctx *m, const char *path, const char *name, json_t *ej,
                     struct audit_env_manifest *e)
{
    static const char *const keys[] = { "hosts", "attestation", "unverified_level", "rls", "roles",
                                        "settings", "ddl_guard", "extensions", "migrations",
                                        "backups", "lints", "checks", NULL };
    if (want_type(m, path, ej, JSON_OBJECT, "an object") < 0 || only_keys(m, path, ej, keys) < 0)
        return -1;
    if (!(e->name = strdup(name)))
        return oom(m);
    e->unverified_level = AUDIT_WARNING;
    if (get_strlist(m, path, ej, "hosts", &e->hosts) < 0)
        return -1;
    char p[512];
    json_t *v;
    if ((v = json_object_get(ej, "unverified_level"))) {
        path_key(p, sizeof p, path, "unverified_level");
        if (get_level(m, p, v, &e->unverified_level) < 0)
            return -1;
    }
    int bad = 0;
    if ((v = get_object(m, path, ej, "attestation", p, sizeof p, &bad))) {
        static const char *const k[] = { "required", NULL };
        if (only_keys(m, p, v, k) < 0 || get_bool(m, p, v, "required", &e->attestation_required) < 0)
            return -1;
    }
    if (bad)
        return -1;
    if ((v = get_object(m, path, ej, "rls", p, sizeof p, &bad))) {
        static const char *const k[] = { "schemas", "force", "exhaustive", "policies", NULL };
        if (only_keys(m, p, v, k) < 0 || get_strlist(m, p, v, "schemas", &e->rls_schemas) < 0 ||
            get_bool(m, p, v, "force", &e->rls_force) < 0 ||
            get_bool(m, p, v, "exhaustive", &e->rls_exhaustive) < 0)
            return -1;
        json_t *pv = json_object_get(v, "policies");
        char pp[512];
        path_key(pp, sizeof pp, p, "policies");
        if (pv && parse_policies(m, pp, pv, e) < 0)
            return -1;
        e->rls_checked = true;
    }
    if (bad)
        return -1;
    if ((v = get_object(m, path, ej, "roles", p, sizeof p, &bad))) {
        static const char *const k[] = { "must_exist", "not_superuser", "not_bypassrls", "no_login",
                                         "owners", NULL };
        if (only_keys(m, p, v, k) < 0 || get_strlist(m, p, v, "must_exist", &e->roles_must_exist) < 0 ||
            get_strlist(m, p, v, "not_superuser", &e->roles_not_superuser) < 0 ||
            get_strlist(m, p, v, "not_bypassrls", &e->roles_not_bypassrls) < 0 ||
            get_strlist(m, p, v, "no_login", &e->roles_no_login) < 0)
            return -1;
        char op[512];
        json_t *ov = get_object(m, p, v, "owners", op, sizeof op, &bad);
        if (bad)
            return -1;
        if (ov) {
            static const char *const ok[] = { "schemas", "allowed", NULL };
            if (only_keys(m, op, ov, ok) < 0 || get_strlist(m, op, ov, "schemas", &e->owner_schemas) < 0 ||
                get_strlist(m, op, ov, "allowed", &e->owners_allowed) < 0)
                return -1;
        }
        e->roles_checked = true;
    }
    if (bad)
        return -1;
    if ((v = json_object_get(ej, "settings"))) {
        path_key(p, sizeof p, path, "settings");
        if (parse_settings(m, p, v, e) < 0)
            return -1;
    }
    if ((v = get_object(m, path, ej, "ddl_guard", p, sizeof p, &bad))) {
        static const char *const k[] = { "required", "trigger", "function", NULL };
        bool req = true;
        if (only_keys(m, p, v, k) < 0 || get_bool(m, p, v, "required", &req) < 0 ||
            get_string(m, p, v, "trigger", &e->ddl_guard_trigger) < 0 ||
            get_string(m, p, v, "function", &e->ddl_guard_function) < 0)
            return -1;
        e->ddl_guard_checked = req;
    }
    if (bad)
        return -1;
    if ((v = json_object_get(ej, "extensions"))) {
        path_key(p, sizeof p, path, "extensions");
        if (parse_extensions(m, p, v, e) < 0)
            return -1;
        e->extensions_checked = true;
    }
    if ((v = get_object(m, path, ej, "migrations", p, sizeof p, &bad))) {
        static const char *const k[] = { "dir", "allow_pending", NULL };
        if (only_keys(m, p, v, k) < 0 || get_string(m, p, v, "dir", &e->migrations_dir) < 0 ||
            get_bool(m, p, v, "allow_pending", &e->allow_pending) < 0)
            return -1;
        e->migrations_checked = true;
    }
    if (bad)
        return -1;
    if ((v = get_object(m, path, ej, "backups", p, sizeof p, &bad))) {
        static const char *const k[] = { "daily", "pitr", "retention_days", NULL };
        if (only_keys(m, p, v, k) < 0 || get_bool(m, p, v, "daily", &e->backups_daily) < 0 ||
            get_bool(m, p, v, "pitr", &e->backups_pitr) < 0)
            return -1;
        json_t *rd = json_object_get(v, "retention_days");
        if (rd) {
            char rp[512];
            path_key(rp, sizeof rp, p, "retention_days");
            if (want_type(m, rp, rd, JSON_INTEGER, "an integer") < 0)
                return -1;
            if (json_integer_value(rd) < 0 || json_integer_value(rd) > 3650)
                return mfail(m, rp, "out of range 0..3650");
            e->backups_retention_days = (int)json_integer_value(rd);
        }
        e->backups_checked = true;
    }
    if (bad)
        return -1;
    if ((v = get_object(m, path, ej, "lints", p, sizeof p, &bad))) {
        static const char *const k[] = { "exposed_schemas", "client_roles", "sensitive_columns", NULL };
        if (only_keys(m, p, v, k) < 0 || get_strlist(m, p, v, "exposed_schemas", &e->exposed_schemas) < 0 ||
            get_strlist(m, p, v, "client_roles", &e->client_roles) < 0 ||
            get_strlist(m, p, v, "sensitive_columns", &e->sensitive_columns) < 0)
            return -1;
    }
    if (bad)
        return -1;
    if (!json_object_get(ej, "lints") || !json_object_get(json_object_get(ej, "lints"), "exposed_schemas"))
        if (strlist_push(&e->exposed_schemas, "public") < 0)
            return oom(m);
    if (!json_object_get(ej, "lints") || !json_object_get(json_object_get(ej, "lints"), "client_roles"))
        if (strlist_push(&e->client_roles, "anon") < 0 || strlist_push(&e->client_roles, "authenticated") < 0)
            return oom(m);
    if ((v = json_object_get(ej, "checks"))) {
        path_key(p, sizeof p, path, "checks");
        if (parse_checks(m, p, v, e) < 0)
            return -1;
    }
    if (!e->ddl_guard_trigger && !(e->ddl_guard_trigger = strdup("pgsov_ddl_guard")))
        return oom(m);
    if (!e->ddl_guard_function && !(e->ddl_guard_function = strdup("pgsov.ddl_guard")))
        return oom(m);
    if (!e->migrations_dir && !(e->migrations_dir = strdup("migrations")))
        return oom(m);
    return 0;
}

static void env_free(struct audit_env_manifest *e)
{
    free(e->name);
    strlist_free(&e->hosts);
    strlist_free(&e->rls_schemas);
    for (size_t i = 0; i < e->n_policies; i++) {
        free(e->policies[i].table);
        free(e->policies[i].name);
        free(e->policies[i].command);
        strlist_free(&e->policies[i].roles);
    }
    free(e->policies);
    strlist_free(&e->roles_must_exist);
    strlist_free(&e->roles_not_superuser);
    strlist_free(&e->roles_not_bypassrls);
    strlist_free(&e->roles_no_login);
    strlist_free(&e->owner_schemas);
    strlist_free(&e->owners_allowed);
    for (size_t i = 0; i < e->n_settings; i++) {
        free(e->settings[i].name);
        strlist_free(&e->settings[i].values);
    }
    free(e->settings);
    free(e->ddl_guard_trigger);
    free(e->ddl_guard_function);
    for (size_t i = 0; i < e->n_extensions; i++) {
        free(e->extensions[i].name);
        strlist_free(&e->extensions[i].versions);
    }
    free(e->extensions);
    free(e->migrations_dir);
    strlist_free(&e->exposed_schemas);
    strlist_free(&e->client_roles);
    strlist_free(&e->sensitive_columns);
    strlist_free(&e->disabled);
    for (size_t i = 0; i < e->n_levels; i++)
        free(e->levels[i].id);
    free(e->levels);
    for (size_t i = 0; i < e->n_waivers; i++) {
        free(e->waivers[i].id);
        free(e->waivers[i].object);
        free(e->waivers[i].reason);
    }
    free(e->waivers);
}

void audit_manifest_free(struct audit_manifest *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_envs; i++)
        env_free(&m->envs[i]);
    free(m->envs);
    free(m);
}

static int parse_root(struct mctx *m, json_t *root, struct audit_manifest *out)
{
    if (want_type(m, "$", root, JSON_OBJECT, "an object") < 0)
        return -1;
    static const char *const keys[] = { "version", "environments", "$comment", NULL };
    if (only_keys(m, "$", root, keys) < 0)
        return -1;
    json_t *ver = json_object_get(root, "version");
    if (!ver)
        return mfail(m, "$.version", "required (1)");
    if (!json_is_integer(ver) || json_integer_value(ver) != 1)
        return mfail(m, "$.version", "unsupported version: expected 1");
    json_t *envs = json_object_get(root, "environments");
    if (!envs)
        return mfail(m, "$.environments", "required");
    if (want_type(m, "$.environments", envs, JSON_OBJECT, "an object") < 0)
        return -1;
    if (json_object_size(envs) == 0)
        return mfail(m, "$.environments", "must name at least one environment");
    out->envs = calloc(json_object_size(envs), sizeof *out->envs);
    if (!out->envs)
        return oom(m);
    const char *name;
    json_t *ej;
    json_object_foreach(envs, name, ej) {
        char p[512];
        path_key(p, sizeof p, "$.environments", name);
        struct audit_env_manifest *e = &out->envs[out->n_envs++];
        if (parse_env(m, p, name, ej, e) < 0)
            return -1;
    }
    return 0;
}

static int load_json(json_t *root, const char *name, struct audit_manifest **out,
                     struct pgsov_err *err)
{
    struct mctx m = { name, err };
    struct audit_manifest *man = calloc(1, sizeof *man);
    if (!man) {
        json_decref(root);
        return oom(&m);
    }
    int rc = parse_root(&m, root, man);
    json_decref(root);
    if (rc < 0) {
        audit_manifest_free(man);
        return -1;
    }
    *out = man;
    return 0;
}

int audit_manifest_load_string(const char *text, const char *name, struct audit_manifest **out,
                               struct pgsov_err *err)
{
    json_error_t je;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return pgsov_fail(err, "%s:%d:%d: invalid JSON: %s", name, je.line, je.column, je.text);
    return load_json(root, name, out, err);
}

int audit_manifest_load(const char *path, struct audit_manifest **out, struct pgsov_err *err)
{
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return pgsov_fail(err, "%s:%d:%d: cannot read manifest: %s", path, je.line, je.column, je.text);
    return load_json(root, path, out, err);
}

const struct audit_env_manifest *audit_manifest_env(const struct audit_manifest *m, const char *name)
{
    for (size_t i = 0; m && name && i < m->n_envs; i++)
        if (strcmp(m->envs[i].name, name) == 0)
            return &m->envs[i];
    return NULL;
}
