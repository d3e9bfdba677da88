/* test_audit_core.c — the audit's pure core: manifest validation (every error names its JSON
 * path), findings → text/JSON/JUnit, exit codes by --fail-on, settings, sensitive names,
 * migrations folder vs history, backup replies. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "../../tools/audit.h"
#include "../../tools/migrate_core.h"

/* A minimal valid environment body, for building cases. */
#define ENV(body) "{\"version\":1,\"environments\":{\"production\":{" body "}}}"

static void test_manifest_validation(void **state)
{
    (void)state;
    static const struct { const char *json; const char *want; } cases[] = {
        { ENV(""), NULL },
        { ENV("\"rls\":{\"schemas\":[\"app\"],\"force\":true}"), NULL },
        { ENV("\"rls\":{\"schemas\":[\"app\", 3]}"),
          "$.environments.production.rls.schemas[1]: expected a string, found an integer" },
        { ENV("\"rls\":{\"schemas\":[\"\"]}"), "$.environments.production.rls.schemas[0]: must not be empty" },
        { ENV("\"rls\":{\"schema\":[\"app\"]}"), "$.environments.production.rls.schema: unknown key" },
        { ENV("\"rls\":{\"force\":\"yes\"}"), "$.environments.production.rls.force: expected a boolean" },
        { ENV("\"rls\":{\"policies\":{\"clients\":[]}}"),
          "$.environments.production.rls.policies.clients: key must be \"schema.table\"" },
        { ENV("\"rls\":{\"policies\":{\"app.clients\":[{\"name\":\"p\",\"command\":\"upsert\"}]}}"),
          "$.environments.production.rls.policies[\"app.clients\"][0].command: expected one of" },
        { ENV("\"rls\":{\"policies\":{\"app.clients\":[{\"command\":\"all\"}]}}"),
          "$.environments.production.rls.policies[\"app.clients\"][0].name: required" },
        { ENV("\"rls\":{\"policies\":{\"app.clients\":[{\"name\":\"p\",\"permissive\":1}]}}"),
          "$.environments.production.rls.policies[\"app.clients\"][0].permissive: expected a boolean" },
        { ENV("\"settings\":{\"ssl\":{\"equals\":true}}"),
          "$.environments.production.settings.ssl.equals: expected a string, found a boolean" },
        { ENV("\"settings\":{\"ssl\":{\"equals\":\"on\",\"one_of\":[\"on\"]}}"),
          "$.environments.production.settings.ssl: give exactly one of" },
        { ENV("\"settings\":{\"log_statement\":{\"one_of\":[]}}"),
          "$.environments.production.settings.log_statement.one_of: must list at least one value" },
        { ENV("\"settings\":{\"max_connections\":{\"min\":\"100\"}}"),
          "$.environments.production.settings.max_connections.min: expected a number" },
        { ENV("\"settings\":{\"max_connections\":{\"min\":100,\"max\":500}}"), NULL },
        { ENV("\"settings\":{\"ssl\":{\"is\":\"on\"}}"), "$.environments.production.settings.ssl.is: unknown key" },
        { ENV("\"roles\":{\"owners\":{\"schemas\":\"app\"}}"),
          "$.environments.production.roles.owners.schemas: expected an array of strings, found a string" },
        { ENV("\"roles\":{\"owners\":[]}"), "$.environments.production.roles.owners: expected an object" },
        { ENV("\"extensions\":{\"allowed\":[{\"versions\":[\"1.0\"]}]}"),
          "$.environments.production.extensions.allowed[0].name: required" },
        { ENV("\"backups\":{\"retention_days\":-1}"),
          "$.environments.production.backups.retention_days: out of range" },
        { ENV("\"backups\":{\"retention_days\":7.5}"),
          "$.environments.production.backups.retention_days: expected an integer, found a number" },
        { ENV("\"unverified_level\":\"fatal\""),
          "$.environments.production.unverified_level: expected \"error\", \"warning\" or \"info\"" },
        { ENV("\"checks\":{\"disabled\":[\"no_such_check\"]}"),
          "$.environments.production.checks.disabled[0]: unknown check id" },
        { ENV("\"checks\":{\"levels\":{\"extension_in_public\":\"loud\"}}"),
          "$.environments.production.checks.levels.extension_in_public: expected \"error\"" },
        { ENV("\"checks\":{\"waivers\":[{\"id\":\"security_definer_view\",\"object\":\"public.v\"}]}"),
          "$.environments.production.checks.waivers[0].reason: required" },
        { ENV("\"hosts\":\"db\""), "$.environments.production.hosts: expected an array of strings" },
        { ENV("\"attestation\":{\"required\":true,\"env\":\"x\"}"),
          "$.environments.production.attestation.env: unknown key" },
        { ENV("\"ddl_guard\":{\"trigger\":7}"), "$.environments.production.ddl_guard.trigger: expected a string" },
        { "{\"version\":2,\"environments\":{}}", "$.version: unsupported version" },
        { "{\"environments\":{\"x\":{}}}", "$.version: required" },
        { "{\"version\":1}", "$.environments: required" },
        { "{\"version\":1,\"environments\":{}}", "$.environments: must name at least one environment" },
        { "{\"version\":1,\"environments\":{\"production\":[]}}",
          "$.environments.production: expected an object, found an array" },
        { "{\"version\":1,\"environments\":{},\"extra\":1}", "$.extra: unknown key" },
        { "{\"version\":1,", "invalid JSON" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct audit_manifest *m = NULL;
        struct pgsov_err err = { "" };
        int rc = audit_manifest_load_string(cases[i].json, "m.json", &m, &err);
        if (!cases[i].want) {
            if (rc != 0)
                fail_msg("case %zu: unexpected error: %s", i, err.msg);
            assert_non_null(audit_manifest_env(m, "production"));
            audit_manifest_free(m);
        } else {
            if (rc == 0)
                fail_msg("case %zu: accepted, wanted error %s", i, cases[i].want);
            if (!strstr(err.msg, cases[i].want))
                fail_msg("case %zu: error \"%s\" lacks \"%s\"", i, err.msg, cases[i].want);
        }
    }
}

static void test_example_manifest(void **state)
{
    (void)state;
    struct audit_manifest *m = NULL;
    struct pgsov_err err = { "" };
    if (audit_manifest_load("rules/environment-manifest.json", &m, &err) != 0)
        fail_msg("%s", err.msg);
    static const char *const envs[] = { "development", "staging", "production" };
    for (size_t i = 0; i < 3; i++) {
        const struct audit_env_manifest *e = audit_manifest_env(m, envs[i]);
        assert_non_null(e);
        assert_true(e->rls_checked);
        assert_int_equal(e->n_policies, 10);     /* 5 tables × (app_user, app_client) */
        assert_true(audit_strlist_has(&e->rls_schemas, "app"));
        assert_string_equal(e->ddl_guard_trigger, "pgsov_ddl_guard");
    }
    const struct audit_env_manifest *p = audit_manifest_env(m, "production");
    assert_true(p->backups_pitr);
    assert_int_equal(p->backups_retention_days, 7);
    assert_int_equal(p->unverified_level, AUDIT_WARNING);   /* reported, not gating: see README (audit) */
    assert_null(audit_manifest_env(m, "prod"));
    audit_manifest_free(m);
}

/* ---- report -------------------------------------------------------------------------------- */

static char *render(const struct audit_report *r, enum audit_format fmt, enum audit_level fail_on, bool color)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(audit_render(r, fmt, fail_on, color, f), 0);
    fclose(f);
    return buf;
}

static size_t count_str(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static struct audit_report *sample_report(void)
{
    struct audit_report *r = audit_report_new("production", NULL);
    assert_non_null(r);
    audit_report_set_target(r, "db:5432/app", "auditor", "m.json");
    audit_report_ran(r, "role_superuser");
    audit_report_add(r, "policy_exists_rls_disabled", "app.contracts", "RLS disabled while 2 policies exist",
                     "RLS enabled", NULL);
    audit_report_add(r, "extension_in_public", "pg_trgm", "installed in schema public", "another schema", NULL);
    audit_report_unverified(r, "setting_mismatch", "archive_mode", "hidden <from> \"role\" & co", "SHOW archive_mode");
    return r;
}

/* A fix that names a command carries the audited environment, ready to paste. */
static void test_fix_names_the_environment(void **state)
{
    (void)state;
    struct audit_report *r = audit_report_new("staging", NULL);
    assert_non_null(r);
    audit_report_add(r, "attestation_missing", "pgsov.environment_attestation", "no row", "staging", NULL);
    audit_report_add(r, "migration_pending", "0002_x", "pending", "applied", "Run `pgsov migrate --env NAME` now.");
    audit_report_add(r, "rls_disabled_in_public", "public.t", "off", "on", NULL);
    assert_int_equal(r->n_findings, 3);
    assert_non_null(strstr(r->findings[0].fix, "pgsov migrate baseline --env staging`"));
    assert_string_equal(r->findings[1].fix, "Run `pgsov migrate --env staging` now.");
    assert_null(strstr(r->findings[2].fix, "--env"));
    for (size_t i = 0; i < r->n_findings; i++)
        assert_null(strstr(r->findings[i].fix, "--env NAME"));
    audit_report_free(r);
}

static void test_render_json(void **state)
{
    (void)state;
    struct audit_report *r = sample_report();
    char *out = render(r, AUDIT_FORMAT_JSON, AUDIT_ERROR, false);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    if (!j)
        fail_msg("JSON output does not parse: %s\n%s", je.text, out);
    assert_int_equal(json_integer_value(json_object_get(j, "pgsov_audit")), 1);
    assert_string_equal(json_string_value(json_object_get(j, "environment")), "production");
    assert_true(json_is_false(json_object_get(j, "compliant")));
    assert_string_equal(json_string_value(json_object_get(j, "fail_on")), "error");
    json_t *target = json_object_get(j, "target");
    assert_string_equal(json_string_value(json_object_get(target, "database")), "db:5432/app");
    json_t *sum = json_object_get(j, "summary");
    assert_int_equal(json_integer_value(json_object_get(sum, "errors")), 1);
    assert_int_equal(json_integer_value(json_object_get(sum, "warnings")), 2);  /* lint + unverified */
    assert_int_equal(json_integer_value(json_object_get(sum, "failed")), 2);
    assert_int_equal(json_integer_value(json_object_get(sum, "passed")), 1);
    assert_int_equal(json_integer_value(json_object_get(sum, "unverified")), 1);
    size_t ndefs;
    audit_check_defs(&ndefs);
    assert_int_equal(json_array_size(json_object_get(j, "checks")), ndefs);
    json_t *findings = json_object_get(j, "findings");
    assert_int_equal(json_array_size(findings), 3);
    static const char *const keys[] = { "id", "level", "area", "object", "found", "expected", "fix" };
    size_t i;
    json_t *f;
    json_array_foreach(findings, i, f) {
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            assert_true(json_is_string(json_object_get(f, keys[k])));
        assert_true(json_is_boolean(json_object_get(f, "verified")));
        assert_true(json_is_null(json_object_get(f, "waived")));
    }
    json_t *f0 = json_array_get(findings, 0);
    assert_string_equal(json_string_value(json_object_get(f0, "id")), "policy_exists_rls_disabled");
    assert_string_equal(json_string_value(json_object_get(f0, "area")), "rls");
    assert_string_equal(json_string_value(json_object_get(f0, "level")), "error");
    json_t *f2 = json_array_get(findings, 2);
    assert_true(json_is_false(json_object_get(f2, "verified")));
    assert_non_null(strstr(json_string_value(json_object_get(f2, "found")), "not verified"));
    json_decref(j);
    free(out);
    audit_report_free(r);
}

static void test_render_junit_and_text(void **state)
{
    (void)state;
    struct audit_report *r = sample_report();
    size_t ndefs;
    audit_check_defs(&ndefs);
    char *x = render(r, AUDIT_FORMAT_JUNIT, AUDIT_WARNING, false);
    assert_int_equal(count_str(x, "<testcase "), ndefs);
    assert_int_equal(count_str(x, "<failure "), 3);       /* error, warning, unverified(warning) */
    assert_non_null(strstr(x, "failures=\"3\""));
    assert_non_null(strstr(x, "hidden &lt;from&gt; &quot;role&quot; &amp; co"));
    assert_null(strstr(x, "hidden <from>"));
    free(x);
    x = render(r, AUDIT_FORMAT_JUNIT, AUDIT_ERROR, false);
    assert_int_equal(count_str(x, "<failure "), 1);       /* only the error fails the build */
    free(x);

    char *t = render(r, AUDIT_FORMAT_TEXT, AUDIT_ERROR, false);
    assert_non_null(strstr(t, "[rls]"));
    assert_non_null(strstr(t, "[extensions]"));
    assert_non_null(strstr(t, "FAIL policy_exists_rls_disabled"));
    assert_non_null(strstr(t, "????"));
    assert_non_null(strstr(t, "NOT COMPLIANT"));
    assert_null(strchr(t, '\033'));
    free(t);
    t = render(r, AUDIT_FORMAT_TEXT, AUDIT_ERROR, true);
    assert_non_null(strchr(t, '\033'));
    free(t);
    audit_report_free(r);
}

static void test_exit_policy(void **state)
{
    (void)state;
    static const struct { const char *id; bool unverified; enum audit_level fail_on; int want; } cases[] = {
        { NULL, false, AUDIT_ERROR, 0 },
        { NULL, false, AUDIT_INFO, 0 },
        { "role_superuser", false, AUDIT_ERROR, 1 },          /* error */
        { "extension_in_public", false, AUDIT_ERROR, 0 },     /* warning */
        { "extension_in_public", false, AUDIT_WARNING, 1 },
        { "rls_enabled_no_policy", false, AUDIT_WARNING, 0 }, /* info */
        { "rls_enabled_no_policy", false, AUDIT_INFO, 1 },
        { "role_superuser", true, AUDIT_ERROR, 0 },           /* unverified: warning by default */
        { "role_superuser", true, AUDIT_WARNING, 1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct audit_report *r = audit_report_new("x", NULL);
        if (cases[i].id && cases[i].unverified)
            audit_report_unverified(r, cases[i].id, "o", "why", "hand");
        else if (cases[i].id)
            audit_report_add(r, cases[i].id, "o", "f", "e", NULL);
        if (audit_exit_code(r, cases[i].fail_on) != cases[i].want)
            fail_msg("case %zu: exit %d, want %d", i, audit_exit_code(r, cases[i].fail_on), cases[i].want);
        audit_report_free(r);
    }
}

static void test_manifest_levels_waivers_disabled(void **state)
{
    (void)state;
    struct audit_manifest *m = NULL;
    struct pgsov_err err = { "" };
    assert_int_equal(audit_manifest_load_string(
        ENV("\"unverified_level\":\"error\",\"checks\":{\"disabled\":[\"rls_enabled_no_policy\"],"
            "\"levels\":{\"extension_in_public\":\"error\"},"
            "\"waivers\":[{\"id\":\"security_definer_view\",\"object\":\"public.v\",\"reason\":\"reviewed\"}]}"),
        "m", &m, &err), 0);
    const struct audit_env_manifest *e = audit_manifest_env(m, "production");
    struct audit_report *r = audit_report_new("production", e);
    audit_report_add(r, "rls_enabled_no_policy", "app.t", "f", "e", NULL);     /* disabled: dropped */
    assert_int_equal(r->n_findings, 0);
    audit_report_add(r, "security_definer_view", "public.v", "f", "e", NULL);  /* waived */
    assert_int_equal(audit_exit_code(r, AUDIT_INFO), 0);
    assert_string_equal(r->findings[0].waived, "reviewed");
    audit_report_add(r, "extension_in_public", "pg_trgm", "f", "e", NULL);    /* raised to error */
    assert_int_equal(r->findings[1].level, AUDIT_ERROR);
    assert_int_equal(audit_exit_code(r, AUDIT_ERROR), 1);
    audit_report_free(r);
    r = audit_report_new("production", e);
    audit_report_unverified(r, "migration_pending", "x", "denied", "hand");
    assert_int_equal(r->findings[0].level, AUDIT_ERROR);                       /* unverified_level */
    assert_int_equal(audit_exit_code(r, AUDIT_ERROR), 1);
    size_t n, idx = 0;
    const struct audit_check_def *d = audit_check_defs(&n);
    while (strcmp(d[idx].id, "migration_pending") != 0)
        idx++;
    assert_int_equal(audit_report_status(r, idx), AUDIT_UNVERIFIED);
    audit_report_free(r);
    audit_manifest_free(m);
}

/* ---- pure helpers -------------------------------------------------------------------------- */

static void test_settings(void **state)
{
    (void)state;
    struct audit_manifest *m = NULL;
    struct pgsov_err err = { "" };
    assert_int_equal(audit_manifest_load_string(
        ENV("\"settings\":{\"ssl\":{\"equals\":\"on\"},\"log_statement\":{\"one_of\":[\"ddl\",\"all\"]},"
            "\"max_connections\":{\"min\":100},\"work_mem\":{\"min\":1024,\"max\":65536}}"), "m", &m, &err), 0);
    const struct audit_env_manifest *e = audit_manifest_env(m, "production");
    static const struct { const char *name, *value; bool ok; const char *expected; } cases[] = {
        { "ssl", "on", true, "" },
        { "ssl", "true", true, "" },
        { "ssl", "off", false, "on" },
        { "log_statement", "ddl", true, "" },
        { "log_statement", "ALL", true, "" },
        { "log_statement", "none", false, "one of ddl, all" },
        { "max_connections", "200", true, "" },
        { "max_connections", "99", false, ">= 100" },
        { "max_connections", "lots", false, ">= 100" },
        { "work_mem", "4096", true, "" },
        { "work_mem", "100000", false, ">= 1024 and <= 65536" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct audit_setting *s = NULL;
        for (size_t k = 0; k < e->n_settings; k++)
            if (strcmp(e->settings[k].name, cases[i].name) == 0)
                s = &e->settings[k];
        assert_non_null(s);
        char exp[128];
        bool ok = audit_setting_ok(s, cases[i].value, exp, sizeof exp);
        if (ok != cases[i].ok || (!ok && strcmp(exp, cases[i].expected) != 0))
            fail_msg("case %zu (%s=%s): ok=%d expected=\"%s\"", i, cases[i].name, cases[i].value, ok, exp);
    }
    audit_manifest_free(m);
}

static void test_sensitive_columns(void **state)
{
    (void)state;
    char *extra_v[] = { "nome_mae" };
    struct audit_strlist extra = { extra_v, 1 };
    static const struct { const char *name; bool want; } cases[] = {
        { "cpf", true }, { "CPF", true }, { "cpf_cliente", true }, { "client_cpf", true },
        { "cnpj", true }, { "rg", true }, { "pis", true }, { "titulo_eleitor", true },
        { "titulo-eleitor", true }, { "cns", true }, { "password", true }, { "api_key", true },
        { "credit_card", true }, { "nome_mae", true },
        { "organization", false }, { "name", false }, { "cpfx", false }, { "email", false },
        { "spis", false }, { "created_at", false },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (audit_sensitive_column(cases[i].name, &extra) != cases[i].want)
            fail_msg("case %zu: %s should%s be sensitive", i, cases[i].name, cases[i].want ? "" : " not");
}

static char *ids_of(const struct audit_report *r)
{
    static char buf[1024];
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < r->n_findings && len < sizeof buf; i++)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s%s", len ? "," : "", r->findings[i].verified ? "" : "?",
                                r->findings[i].id);
    return buf;
}

static void test_backups(void **state)
{
    (void)state;
    struct audit_manifest *m = NULL;
    struct pgsov_err err = { "" };
    assert_int_equal(audit_manifest_load_string(
        ENV("\"backups\":{\"daily\":true,\"pitr\":true,\"retention_days\":7}"), "m", &m, &err), 0);
    const struct audit_env_manifest *e = audit_manifest_env(m, "production");
    time_t now = 1756800000;   /* 2025-09-02T08:00:00Z */
    static const struct { const char *reply; const char *want; } cases[] = {
        { NULL, "?backup_daily,?backup_pitr,?backup_retention" },
        { "not json", "?backup_daily,?backup_pitr,?backup_retention" },
        { "{\"region\":\"sa-east-1\",\"walg_enabled\":true,\"pitr_enabled\":true,\"backups\":[],"
          "\"physical_backup_data\":{\"earliest_physical_backup_date_unix\":1756000000,"
          "\"latest_physical_backup_date_unix\":1756799000}}", "" },
        { "{\"pitr_enabled\":false,\"backups\":["
          "{\"is_physical_backup\":true,\"status\":\"COMPLETED\",\"inserted_at\":\"2025-09-02T03:00:00.000Z\"},"
          "{\"is_physical_backup\":true,\"status\":\"COMPLETED\",\"inserted_at\":\"2025-08-25T03:00:00.000Z\"}]}",
          "backup_pitr" },
        { "{\"pitr_enabled\":false,\"backups\":["
          "{\"is_physical_backup\":true,\"status\":\"FAILED\",\"inserted_at\":\"2025-09-02T03:00:00Z\"},"
          "{\"is_physical_backup\":true,\"status\":\"COMPLETED\",\"inserted_at\":\"2025-08-30T03:00:00Z\"}]}",
          "backup_pitr,backup_daily,backup_retention" },
        { "{\"backups\":[]}", "?backup_pitr,backup_daily,backup_retention" },
        { "{\"pitr_enabled\":true}", "backup_daily,backup_retention" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct audit_report *r = audit_report_new("production", e);
        audit_backups_evaluate(r, e, cases[i].reply, "reply.json", now);
        const char *got = ids_of(r);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("case %zu: findings \"%s\", want \"%s\"", i, got, cases[i].want);
        audit_report_free(r);
    }
    audit_manifest_free(m);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_migrations_compare(void **state)
{
    (void)state;
    char dir[] = "/tmp/pgsov-audit-unit-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char p[256];
    snprintf(p, sizeof p, "%s/0001_a.sql", dir);
    write_file(p, "create table a (id int);\n");
    snprintf(p, sizeof p, "%s/0001_a.down.sql", dir);
    write_file(p, "drop table a;\n");
    snprintf(p, sizeof p, "%s/0002_b.sql", dir);
    write_file(p, "create table b (id int);\n");
    struct mig_set *set = NULL;
    struct pgsov_err err = { "" };
    if (mig_scan(dir, false, true, &set, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(set->n_files, 2);
    struct mig_applied ok1 = { .version = "0001", .vnum = 1, .name = "a" };
    snprintf(ok1.checksum, sizeof ok1.checksum, "%s", set->files[0].checksum);
    struct mig_applied ok2 = { .version = "0002", .vnum = 2, .name = "b" };
    snprintf(ok2.checksum, sizeof ok2.checksum, "%s", set->files[1].checksum);
    struct mig_applied bad2 = ok2;
    memset(bad2.checksum, 'a', MIG_HEX_LEN);
    struct mig_applied gone = { .version = "0003", .vnum = 3, .name = "c" };
    memset(gone.checksum, 'b', MIG_HEX_LEN);

    const struct mig_applied *none = NULL;
    struct { const struct mig_applied *rows[3]; size_t n; bool allow_pending; const char *want; } cases[] = {
        { { &ok1, &ok2, none }, 2, false, "" },
        { { &ok1, none, none }, 1, false, "migration_pending" },
        { { &ok1, none, none }, 1, true, "" },
        { { none, none, none }, 0, false, "migration_pending,migration_pending" },
        { { &ok1, &bad2, none }, 2, false, "migration_drift" },
        { { &ok1, &ok2, &gone }, 3, false, "migration_unknown" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct mig_applied rows[3];
        for (size_t k = 0; k < cases[i].n; k++)
            rows[k] = *cases[i].rows[k];
        struct audit_report *r = audit_report_new("x", NULL);
        assert_int_equal(audit_migrations_compare(r, set, rows, cases[i].n, cases[i].allow_pending, &err), 0);
        const char *got = ids_of(r);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("case %zu: findings \"%s\", want \"%s\"", i, got, cases[i].want);
        audit_report_free(r);
    }
    mig_set_free(set);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_manifest_validation),
        cmocka_unit_test(test_example_manifest),
        cmocka_unit_test(test_render_json),
        cmocka_unit_test(test_render_junit_and_text),
        cmocka_unit_test(test_exit_policy),
        cmocka_unit_test(test_manifest_levels_waivers_disabled),
        cmocka_unit_test(test_settings),
        cmocka_unit_test(test_sensitive_columns),
        cmocka_unit_test(test_backups),
        cmocka_unit_test(test_fix_names_the_environment),
        cmocka_unit_test(test_migrations_compare),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
