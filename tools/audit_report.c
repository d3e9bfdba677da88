/* audit_report.c — the audit's findings model: the table of known checks, a report that
 * collects findings (levels and waivers from the manifest applied here, in one place), the
 * exit-code policy, and the three renderers (text grouped by area, JSON, JUnit XML).
 * Pure: writes only to the FILE the caller passes. */
#include "audit.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

/* Ids of Supabase's splinter lints keep splinter's names; the others are pgsov's. */
static const struct audit_check_def defs[] = {
    { "host_not_allowed", "target", AUDIT_ERROR, "connected host matches this environment's host patterns only",
      "Point --url / the [env] section at this environment's own host, or fix \"hosts\" in the manifest." },
    { "attestation_missing", "target", AUDIT_ERROR, "database attests its environment",
      "Run `pgsov migrate baseline --env NAME` on the right database to write pgsov.environment_attestation." },
    { "attestation_mismatch", "target", AUDIT_ERROR, "database attests this environment, not another",
      "You are connected to another environment's database: check --url / the [env] section." },
    { "rls_disabled_in_public", "rls", AUDIT_ERROR, "every table in exposed schemas has RLS enabled",
      "ALTER TABLE <table> ENABLE ROW LEVEL SECURITY; then add policies for the roles that use it." },
    { "policy_exists_rls_disabled", "rls", AUDIT_ERROR, "no table has policies while RLS is disabled",
      "ALTER TABLE <table> ENABLE ROW LEVEL SECURITY; (its policies are ignored until then)." },
    { "rls_enabled_no_policy", "rls", AUDIT_INFO, "no table has RLS enabled without any policy",
      "CREATE POLICY for the roles that must see rows, or document that no role may." },
    { "rls_not_forced", "rls", AUDIT_ERROR, "RLS is forced (applies to the table owner too)",
      "ALTER TABLE <table> FORCE ROW LEVEL SECURITY;" },
    { "policy_missing", "rls", AUDIT_ERROR, "every expected policy exists",
      "Create the policy in a migration (CREATE POLICY ... ON <table> ...)." },
    { "policy_mismatch", "rls", AUDIT_ERROR, "expected policies have the declared command, roles and mode",
      "Recreate the policy with the declared FOR <command> TO <roles> AS PERMISSIVE|RESTRICTIVE." },
    { "policy_unexpected", "rls", AUDIT_WARNING, "no policy beyond the declared ones (rls.exhaustive)",
      "Drop the policy, or declare it in the manifest." },
    { "permissive_rls_policy", "rls", AUDIT_WARNING, "no write policy for client roles is always true",
      "Replace USING (true) / WITH CHECK (true) with a condition on the row (e.g. its owner)." },
    { "role_missing", "roles", AUDIT_ERROR, "required roles exist",
      "CREATE ROLE <name> ... (in the migration that needs it, or by the cluster administrator)." },
    { "role_superuser", "roles", AUDIT_ERROR, "application roles are not superusers",
      "ALTER ROLE <name> NOSUPERUSER;" },
    { "role_bypassrls", "roles", AUDIT_ERROR, "application roles do not bypass RLS",
      "ALTER ROLE <name> NOBYPASSRLS;" },
    { "role_can_login", "roles", AUDIT_ERROR, "group roles cannot log in",
      "ALTER ROLE <name> NOLOGIN; grant it to a login role instead." },
    { "object_owner_not_allowed", "roles", AUDIT_ERROR, "objects in app schemas are owned by allowed roles",
      "ALTER <kind> <object> OWNER TO <an allowed owner>;" },
    { "setting_mismatch", "settings", AUDIT_ERROR, "server settings have the required values",
      "ALTER SYSTEM SET <name> = ... (or the provider's settings page), then reload or restart." },
    { "ddl_guard_missing", "ddl_guard", AUDIT_ERROR, "the DDL event trigger is installed",
      "Install rules/ddl_event_trigger.sql as a superuser (creates pgsov.ddl_guard() and the trigger)." },
    { "ddl_guard_disabled", "ddl_guard", AUDIT_ERROR, "the DDL event trigger is enabled",
      "ALTER EVENT TRIGGER <name> ENABLE;" },
    { "extension_not_allowed", "extensions", AUDIT_ERROR, "only allowed extensions are installed",
      "DROP EXTENSION <name>; or add it to extensions.allowed in the manifest." },
    { "extension_version_mismatch", "extensions", AUDIT_ERROR, "extensions have an allowed version",
      "ALTER EXTENSION <name> UPDATE TO '<version>';" },
    { "extension_in_public", "extensions", AUDIT_WARNING, "no extension is installed in schema public",
      "CREATE SCHEMA extensions; ALTER EXTENSION <name> SET SCHEMA extensions;" },
    { "migration_history_missing", "migrations", AUDIT_ERROR, "the migration history table exists",
      "Run `pgsov migrate --env NAME` (or `pgsov migrate baseline`) on this database." },
    { "migration_pending", "migrations", AUDIT_ERROR, "no migration in the folder is pending",
      "Run `pgsov migrate --env NAME`." },
    { "migration_drift", "migrations", AUDIT_ERROR, "applied migrations match their files (SHA-256)",
      "An applied file was edited: restore it from version control and write a new migration instead." },
    { "migration_unknown", "migrations", AUDIT_ERROR, "every applied migration has its file in the folder",
      "Restore the missing file from version control, or audit the right branch/folder (--migrations)." },
    { "backup_daily", "backups", AUDIT_ERROR, "a completed backup exists from the last 26 hours",
      "Check the provider's backup schedule (Supabase: Database > Backups)." },
    { "backup_pitr", "backups", AUDIT_ERROR, "point-in-time recovery is enabled",
      "Enable PITR (Supabase: Add-ons > Point in time recovery; self-hosted: WAL archiving)." },
    { "backup_retention", "backups", AUDIT_ERROR, "backups reach back the required number of days",
      "Raise backup retention (plan or PITR window) to the required days." },
    { "security_definer_view", "lints", AUDIT_ERROR, "views in exposed schemas run with the caller's rights",
      "ALTER VIEW <view> SET (security_invoker = true);" },
    { "function_search_path_mutable", "lints", AUDIT_WARNING, "functions pin their search_path",
      "ALTER FUNCTION <function> SET search_path = '';  (and schema-qualify names in its body)" },
    { "auth_users_exposed", "lints", AUDIT_ERROR, "auth.users is not exposed through a view",
      "Drop the view or REVOKE SELECT on it from client roles; never expose auth.users." },
    { "sensitive_columns_exposed", "lints", AUDIT_ERROR, "no table with sensitive columns is exposed without RLS",
      "ENABLE ROW LEVEL SECURITY on the table (with policies), or REVOKE SELECT from client roles." },
};

#define N_DEFS (sizeof defs / sizeof defs[0])

const struct audit_check_def *audit_check_defs(size_t *n)
{
    *n = N_DEFS;
    return defs;
}

static long def_index(const char *id)
{
    for (size_t i = 0; id && i < N_DEFS; i++)
        if (strcmp(defs[i].id, id) == 0)
            return (long)i;
    return -1;
}

const struct audit_check_def *audit_check_find(const char *id)
{
    long i = def_index(id);
    return i < 0 ? NULL : &defs[i];
}

const char *audit_level_name(enum audit_level l)
{
    return l == AUDIT_ERROR ? "error" : l == AUDIT_WARNING ? "warning" : "info";
}

int audit_level_parse(const char *s, enum audit_level *out)
{
    if (!s)
        return -1;
    if (strcmp(s, "error") == 0)
        *out = AUDIT_ERROR;
    else if (strcmp(s, "warning") == 0)
        *out = AUDIT_WARNING;
    else if (strcmp(s, "info") == 0)
        *out = AUDIT_INFO;
    else
        return -1;
    return 0;
}

const char *audit_status_name(enum audit_status s)
{
    switch (s) {
    case AUDIT_PASS: return "pass";
    case AUDIT_FAIL: return "fail";
    case AUDIT_UNVERIFIED: return "unverified";
    default: return "skipped";
    }
}

int audit_format_parse(const char *s, enum audit_format *out)
{
    if (!s)
        return -1;
    if (strcmp(s, "text") == 0)
        *out = AUDIT_FORMAT_TEXT;
    else if (strcmp(s, "json") == 0)
        *out = AUDIT_FORMAT_JSON;
    else if (strcmp(s, "junit") == 0)
        *out = AUDIT_FORMAT_JUNIT;
    else
        return -1;
    return 0;
}

struct audit_report *audit_report_new(const char *environment, const struct audit_env_manifest *env)
{
    struct audit_report *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->ran = calloc(N_DEFS, sizeof *r->ran);
    r->environment = strdup(environment ? environment : "");
    if (!r->ran || !r->environment) {
        audit_report_free(r);
        return NULL;
    }
    r->env = env;
    r->started = time(NULL);
    return r;
}

static void finding_free(struct audit_finding *f)
{
    free(f->id);
    free(f->area);
    free(f->object);
    free(f->found);
    free(f->expected);
    free(f->fix);
    free(f->waived);
}

void audit_report_free(struct audit_report *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_findings; i++)
        finding_free(&r->findings[i]);
    free(r->findings);
    free(r->ran);
    free(r->environment);
    free(r->target);
    free(r->user);
    free(r->manifest);
    free(r);
}

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

void audit_report_set_target(struct audit_report *r, const char *target, const char *user,
                             const char *manifest)
{
    free(r->target);
    free(r->user);
    free(r->manifest);
    r->target = dup_or_empty(target);
    r->user = dup_or_empty(user);
    r->manifest = dup_or_empty(manifest);
    if (!r->target || !r->user || !r->manifest)
        r->oom = true;
}

bool audit_report_enabled(const struct audit_report *r, const char *id)
{
    return !(r->env && audit_strlist_has(&r->env->disabled, id));
}

void audit_report_ran(struct audit_report *r, const char *id)
{
    long i = def_index(id);
    if (i >= 0 && audit_report_enabled(r, id))
        r->ran[i] = true;
}

static enum audit_level level_for(const struct audit_report *r, long i)
{
    if (r->env)
        for (size_t k = 0; k < r->env->n_levels; k++)
            if (strcmp(r->env->levels[k].id, defs[i].id) == 0)
                return r->env->levels[k].level;
    return defs[i].level;
}

static const char *waiver_for(const struct audit_report *r, const char *id, const char *object)
{
    if (!r->env || !object)
        return NULL;
    for (size_t k = 0; k < r->env->n_waivers; k++)
        if (strcmp(r->env->waivers[k].id, id) == 0 && strcmp(r->env->waivers[k].object, object) == 0)
            return r->env->waivers[k].reason;
    return NULL;
}

/* The fix text with the environment's name where the generic text says "--env NAME", so the
 * command in it can be pasted as it stands. */
static char *fix_for(const struct audit_report *r, const char *fix)
{
    const char *at = strstr(fix, "--env NAME");
    if (!at || !r->environment)
        return strdup(fix);
    size_t head = (size_t)(at - fix) + strlen("--env ");
    const char *tail = at + strlen("--env NAME");
    size_t n = head + strlen(r->environment) + strlen(tail) + 1;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%.*s%s%s", (int)head, fix, r->environment, tail);
    return out;
}

static void add(struct audit_report *r, const char *id, const char *object, const char *found,
                const char *expected, const char *fix, bool verified)
{
    long i = def_index(id);
    if (i < 0 || !audit_report_enabled(r, id))
        return;
    r->ran[i] = true;
    if (r->n_findings == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        struct audit_finding *nf = realloc(r->findings, cap * sizeof *nf);
        if (!nf) {
            r->oom = true;
            return;
        }
        r->findings = nf;
        r->cap = cap;
    }
    struct audit_finding *f = &r->findings[r->n_findings];
    memset(f, 0, sizeof *f);
    const char *w = verified ? waiver_for(r, id, object) : NULL;
    f->id = strdup(id);
    f->area = strdup(defs[i].area);
    f->object = dup_or_empty(object);
    f->found = dup_or_empty(found);
    f->expected = dup_or_empty(expected);
    f->fix = fix_for(r, fix ? fix : defs[i].fix ? defs[i].fix : "");
    f->waived = w ? strdup(w) : NULL;
    f->verified = verified;
    f->level = verified ? level_for(r, i) : (r->env ? r->env->unverified_level : AUDIT_WARNING);
    if (!f->id || !f->area || !f->object || !f->found || !f->expected || !f->fix || (w && !f->waived)) {
        finding_free(f);
        r->oom = true;
        return;
    }
    r->n_findings++;
}

void audit_report_add(struct audit_report *r, const char *id, const char *object,
                      const char *found, const char *expected, const char *fix)
{
    add(r, id, object, found, expected, fix, true);
}

void audit_report_addf(struct audit_report *r, const char *id, const char *object,
                       const char *expected, const char *fmt, ...)
{
    char found[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(found, sizeof found, fmt, ap);
    va_end(ap);
    add(r, id, object, found, expected, NULL, true);
}

void audit_report_unverified(struct audit_report *r, const char *id, const char *object,
                             const char *why, const char *by_hand)
{
    char found[1024];
    snprintf(found, sizeof found, "not verified: %s", why ? why : "the check could not run");
    long i = def_index(id);
    add(r, id, object, found, i >= 0 ? defs[i].title : "", by_hand, false);
}

enum audit_status audit_report_status(const struct audit_report *r, size_t i)
{
    if (i >= N_DEFS || !r->ran[i])
        return AUDIT_SKIPPED;
    bool any = false, unverified = false;
    for (size_t k = 0; k < r->n_findings; k++) {
        const struct audit_finding *f = &r->findings[k];
        if (strcmp(f->id, defs[i].id) != 0 || f->waived)
            continue;
        if (f->verified)
            any = true;
        else
            unverified = true;
    }
    return any ? AUDIT_FAIL : unverified ? AUDIT_UNVERIFIED : AUDIT_PASS;
}

int audit_exit_code(const struct audit_report *r, enum audit_level fail_on)
{
    for (size_t k = 0; k < r->n_findings; k++)
        if (!r->findings[k].waived && r->findings[k].level >= fail_on)
            return 1;
    return 0;
}

/* ---- rendering ------------------------------------------------------------------------ */

struct counts {
    size_t checks, pass, fail, unverified, skipped, errors, warnings, infos, waived;
};

static struct counts count(const struct audit_report *r)
{
    struct counts c = { 0 };
    for (size_t i = 0; i < N_DEFS; i++) {
        c.checks++;
        switch (audit_report_status(r, i)) {
        case AUDIT_PASS: c.pass++; break;
        case AUDIT_FAIL: c.fail++; break;
        case AUDIT_UNVERIFIED: c.unverified++; break;
        default: c.skipped++; break;
        }
    }
    for (size_t k = 0; k < r->n_findings; k++) {
        const struct audit_finding *f = &r->findings[k];
        if (f->waived)
            c.waived++;
        else if (f->level == AUDIT_ERROR)
            c.errors++;
        else if (f->level == AUDIT_WARNING)
            c.warnings++;
        else
            c.infos++;
    }
    return c;
}

static void iso_time(time_t t, char *buf, size_t size)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_t *report_json(const struct audit_report *r, enum audit_level fail_on)
{
    struct counts c = count(r);
    char ts[32];
    iso_time(r->started, ts, sizeof ts);
    json_t *checks = json_array(), *findings = json_array();
    json_t *root = json_pack("{s:i, s:s, s:{s:s, s:s}, s:s, s:s, s:b, s:s, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}}",
                             "pgsov_audit", 1, "environment", r->environment,
                             "target", "database", r->target ? r->target : "", "user", r->user ? r->user : "",
                             "manifest", r->manifest ? r->manifest : "", "started_at", ts,
                             "compliant", audit_exit_code(r, fail_on) == 0, "fail_on", audit_level_name(fail_on),
                             "summary", "checks", (json_int_t)c.checks, "passed", (json_int_t)c.pass,
                             "failed", (json_int_t)c.fail, "unverified", (json_int_t)c.unverified,
                             "skipped", (json_int_t)c.skipped, "errors", (json_int_t)c.errors,
                             "warnings", (json_int_t)c.warnings, "info", (json_int_t)c.infos,
                             "waived", (json_int_t)c.waived);
    if (!root || !checks || !findings)
        goto fail;
    for (size_t i = 0; i < N_DEFS; i++) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "id", defs[i].id, "area", defs[i].area,
                              "status", audit_status_name(audit_report_status(r, i)), "title", defs[i].title);
        if (!o || json_array_append_new(checks, o) < 0)
            goto fail;
    }
    for (size_t k = 0; k < r->n_findings; k++) {
        const struct audit_finding *f = &r->findings[k];
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:o}", "id", f->id,
                              "level", audit_level_name(f->level), "area", f->area, "object", f->object,
                              "found", f->found, "expected", f->expected, "fix", f->fix,
                              "verified", f->verified, "waived", f->waived ? json_string(f->waived) : json_null());
        if (!o || json_array_append_new(findings, o) < 0)
            goto fail;
    }
    if (json_object_set_new(root, "checks", checks) < 0 || json_object_set_new(root, "findings", findings) < 0) {
        json_decref(root);
        return NULL;
    }
    return root;
fail:
    json_decref(root);
    json_decref(checks);
    json_decref(findings);
    return NULL;
}

static void xml_escape(FILE *out, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", out); break;
        case '>': fputs("&gt;", out); break;
        case '&': fputs("&amp;", out); break;
        case '"': fputs("&quot;", out); break;
        case '\'': fputs("&apos;", out); break;
        default:
            /* control characters other than tab/newline are not allowed in XML 1.0 */
            if ((unsigned char)*s < 0x20 && *s != '\n' && *s != '\t')
                fputc('?', out);
            else
                fputc(*s, out);
        }
    }
}

static int render_junit(const struct audit_report *r, enum audit_level fail_on, FILE *out)
{
    struct counts c = count(r);
    size_t failures = 0;
    for (size_t i = 0; i < N_DEFS; i++) {
        for (size_t k = 0; k < r->n_findings; k++)
            if (strcmp(r->findings[k].id, defs[i].id) == 0 && !r->findings[k].waived &&
                r->findings[k].level >= fail_on) {
                failures++;
                break;
            }
    }
    char ts[32];
    iso_time(r->started, ts, sizeof ts);
    fprintf(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    fprintf(out, "  <testsuite name=\"pgsov audit ");
    xml_escape(out, r->environment);
    fprintf(out, "\" tests=\"%zu\" failures=\"%zu\" errors=\"0\" skipped=\"%zu\" timestamp=\"%s\">\n",
            c.checks, failures, c.skipped, ts);
    for (size_t i = 0; i < N_DEFS; i++) {
        enum audit_status st = audit_report_status(r, i);
        fprintf(out, "    <testcase classname=\"pgsov.audit.%s\" name=\"%s\">\n", defs[i].area, defs[i].id);
        if (st == AUDIT_SKIPPED)
            fprintf(out, "      <skipped message=\"not run (disabled or not declared in the manifest)\"/>\n");
        size_t nf = 0;
        for (size_t k = 0; k < r->n_findings; k++) {
            const struct audit_finding *f = &r->findings[k];
            if (strcmp(f->id, defs[i].id) != 0)
                continue;
            bool fails = !f->waived && f->level >= fail_on;
            fprintf(out, "      <%s message=\"", fails ? "failure" : "system-out");
            if (!fails) {
                fprintf(out, "\">");
            } else {
                fprintf(out, "%s: ", audit_level_name(f->level));
                xml_escape(out, f->object);
                fprintf(out, "\" type=\"%s\">", f->verified ? "finding" : "unverified");
            }
            fprintf(out, "%s%s\nobject: ", f->waived ? "waived: " : "", f->waived ? f->waived : "");
            xml_escape(out, f->object);
            fprintf(out, "\nlevel: %s\nfound: ", audit_level_name(f->level));
            xml_escape(out, f->found);
            fprintf(out, "\nexpected: ");
            xml_escape(out, f->expected);
            fprintf(out, "\nfix: ");
            xml_escape(out, f->fix);
            fprintf(out, "\n</%s>\n", fails ? "failure" : "system-out");
            nf++;
        }
        (void)nf;
        fprintf(out, "    </testcase>\n");
    }
    fprintf(out, "  </testsuite>\n</testsuites>\n");
    return ferror(out) ? -1 : 0;
}

static int render_text(const struct audit_report *r, enum audit_level fail_on, bool color, FILE *out)
{
    const char *red = color ? "\033[31m" : "", *yellow = color ? "\033[33m" : "",
               *green = color ? "\033[32m" : "", *dim = color ? "\033[2m" : "",
               *bold = color ? "\033[1m" : "", *reset = color ? "\033[0m" : "";
    struct counts c = count(r);
    fprintf(out, "%spgsov audit%s  environment %s  target %s  user %s\n", bold, reset, r->environment,
            r->target ? r->target : "?", r->user ? r->user : "?");
    const char *area = NULL;
    for (size_t i = 0; i < N_DEFS; i++) {
        if (!area || strcmp(area, defs[i].area) != 0) {
            area = defs[i].area;
            fprintf(out, "\n%s[%s]%s\n", bold, area, reset);
        }
        enum audit_status st = audit_report_status(r, i);
        const char *mark = st == AUDIT_PASS ? "ok  " : st == AUDIT_FAIL ? "FAIL" :
                           st == AUDIT_UNVERIFIED ? "????" : "skip";
        const char *col = st == AUDIT_PASS ? green : st == AUDIT_FAIL ? red :
                          st == AUDIT_UNVERIFIED ? yellow : dim;
        fprintf(out, "  %s%s%s %-28s %s%s%s\n", col, mark, reset, defs[i].id, dim, defs[i].title, reset);
        for (size_t k = 0; k < r->n_findings; k++) {
            const struct audit_finding *f = &r->findings[k];
            if (strcmp(f->id, defs[i].id) != 0)
                continue;
            const char *lc = f->waived ? dim : f->level == AUDIT_ERROR ? red :
                             f->level == AUDIT_WARNING ? yellow : "";
            fprintf(out, "       %s%s%s%s %s\n", lc, f->waived ? "waived " : "", audit_level_name(f->level),
                    reset, f->object);
            fprintf(out, "         found:    %s\n", f->found);
            fprintf(out, "         expected: %s\n", f->expected);
            if (f->waived)
                fprintf(out, "         waived:   %s\n", f->waived);
            else
                fprintf(out, "         fix:      %s\n", f->fix);
        }
    }
    int code = audit_exit_code(r, fail_on);
    fprintf(out, "\n%s%s%s: %zu checks: %zu passed, %zu failed, %zu unverified, %zu skipped; "
            "findings: %zu error, %zu warning, %zu info, %zu waived (fail on %s)\n",
            code ? red : green, code ? "NOT COMPLIANT" : "COMPLIANT", reset, c.checks, c.pass, c.fail,
            c.unverified, c.skipped, c.errors, c.warnings, c.infos, c.waived, audit_level_name(fail_on));
    if (c.unverified)
        fprintf(out, "%sunverified checks are not passes: run as a role that can read them, or check by hand.%s\n",
                yellow, reset);
    return ferror(out) ? -1 : 0;
}

int audit_render(const struct audit_report *r, enum audit_format fmt, enum audit_level fail_on,
                 bool color, FILE *out)
{
    switch (fmt) {
    case AUDIT_FORMAT_JSON: {
        json_t *j = report_json(r, fail_on);
        if (!j)
            return -1;
        int rc = json_dumpf(j, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        json_decref(j);
        fputc('\n', out);
        return rc < 0 || ferror(out) ? -1 : 0;
    }
    case AUDIT_FORMAT_JUNIT:
        return render_junit(r, fail_on, out);
    default:
        return render_text(r, fail_on, color, out);
    }
}
