/* test_audit.c — `pgsov audit` against a real database on cluster dev: the example migrations
 * (applied with `pgsov migrate`), the DDL event trigger and the attestation make a compliant
 * "staging" database; then one violation at a time must produce exactly its finding id and
 * exit 1, and is undone. Also: a non-superuser gets "not verified", never a pass; the JSON
 * output has its documented shape; exit 2 when the audit cannot run. */
#include "harness.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DB "pgsov_audit_it"

static char work[1024], ini[1200], manifest[1200], manifest_archive[1200], reply[1200];

static int run_audit(char **out, const char *user, const char *pass, const char *extra)
{
    const struct it_env *e = it_env();
    return it_sh(out, "cd '%s' && PGPASSWORD='%s' '%s/pgsov' audit -c '%s' --env staging --user %s "
                      "--manifest '%s' --migrations '%s/migrations' --backup-reply '%s' %s 2>'%s/stderr.txt'",
                 work, pass, e->bin, ini, user, manifest, work, reply, extra ? extra : "", work);
}

static int run_super(char **out, const char *extra)
{
    return run_audit(out, "postgres", it_env()->superpass, extra);
}

/* Sorted, comma-joined ids of the findings that count (not waived), "?" before unverified. */
static char *finding_ids(const char *json_text)
{
    json_error_t je;
    json_t *j = json_loads(json_text, 0, &je);
    if (!j) {
        char *err = NULL;
        it_sh(&err, "cat '%s/stderr.txt'", work);
        fail_msg("audit output is not JSON (%s):\n%s\nstderr: %s", je.text, json_text, err ? err : "");
    }
    char *ids[256];
    size_t n = 0;
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(j, "findings"), i, f) {
        if (!json_is_null(json_object_get(f, "waived")) || n == 256)
            continue;
        char buf[128];
        snprintf(buf, sizeof buf, "%s%s", json_is_true(json_object_get(f, "verified")) ? "" : "?",
                 json_string_value(json_object_get(f, "id")));
        ids[n++] = strdup(buf);
    }
    for (size_t a = 0; a < n; a++)
        for (size_t b = a + 1; b < n; b++)
            if (strcmp(ids[a], ids[b]) > 0) {
                char *t = ids[a];
                ids[a] = ids[b];
                ids[b] = t;
            }
    char *out = calloc(1, 4096);
    for (size_t k = 0; k < n; k++) {
        if (strlen(out) + strlen(ids[k]) + 2 < 4096) {
            if (k)
                strcat(out, ",");
            strcat(out, ids[k]);
        }
        free(ids[k]);
    }
    json_decref(j);
    return out;
}

/* The test manifest: the example's staging entry, pointed at cluster dev. */
static void write_manifests(void)
{
    const struct it_env *e = it_env();
    char path[1200];
    snprintf(path, sizeof path, "%s/rules/environment-manifest.json", e->src);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root)
        fail_msg("cannot read the example manifest: %s", je.text);
    json_t *envs = json_object_get(root, "environments");
    json_t *st = json_object_get(envs, "staging");
    char host[64];
    snprintf(host, sizeof host, "localhost:%d", e->dev_port);
    json_object_set_new(st, "hosts", json_pack("[s]", host));
    json_array_append_new(json_object_get(json_object_get(st, "roles"), "not_superuser"), json_string("app"));
    json_t *settings = json_object_get(st, "settings");
    json_object_set_new(settings, "wal_level", json_pack("{s:[ss]}", "one_of", "replica", "logical"));
    json_object_set_new(settings, "max_connections", json_pack("{s:i}", "min", 100));
    /* the other environments must not claim this host: production claims the prod cluster */
    snprintf(host, sizeof host, "localhost:%d", e->prod_port);
    json_object_set_new(json_object_get(envs, "production"), "hosts", json_pack("[s]", host));
    json_object_set_new(json_object_get(envs, "development"), "hosts", json_pack("[s]", "dev.invalid"));
    if (json_dump_file(root, manifest, JSON_INDENT(2)) != 0)
        fail_msg("cannot write %s", manifest);
    /* a variant that expects what the test cluster lacks: WAL archiving */
    json_object_set_new(settings, "archive_mode", json_pack("{s:[ss]}", "one_of", "on", "always"));
    if (json_dump_file(root, manifest_archive, JSON_INDENT(2)) != 0)
        fail_msg("cannot write %s", manifest_archive);
    json_decref(root);
}

static int setup(void **state)
{
    (void)state;
    const struct it_env *e = it_env();
    char *dir = it_tmpdir("audit");
    snprintf(work, sizeof work, "%s", dir);
    free(dir);
    snprintf(ini, sizeof ini, "%s/proxy.ini", work);
    snprintf(manifest, sizeof manifest, "%s/manifest.json", work);
    snprintf(manifest_archive, sizeof manifest_archive, "%s/manifest-archive.json", work);
    snprintf(reply, sizeof reply, "%s/backups.json", work);

    it_create_db("dev", DB, NULL);
    char text[4096];
    snprintf(text, sizeof text,
             "[proxy]\nclient_tls = disable\n\n[env.staging]\nhost = localhost\nport = %d\ndatabase = " DB "\nsslmode = verify-full\n"
             "sslrootcert = %s/ca.crt\nhost_patterns = localhost:%d\nrequire_approval = false\n"
             "migrations_dir = %s/migrations\n",
             e->dev_port, e->pki, e->dev_port, work);
    it_write_file(ini, text);
    char *out = NULL;
    if (it_sh(&out, "cd '%s' && cp -r '%s/migrations' migrations && cp -r migrations migrations-pending && "
                    "printf 'CREATE TABLE app.extra (id int);\\n' > migrations-pending/0006_extra.sql && "
                    "cp -r migrations migrations-drift && echo '-- edited' >> migrations-drift/0002_clients.sql && "
                    "cp -r migrations migrations-unknown && rm migrations-unknown/0005_*",
              work, e->src) != 0)
        fail_msg("copying migrations: %s", out);
    free(out);
    if (it_sh(&out, "cd '%s' && PGPASSWORD='%s' '%s/pgsov' migrate -c '%s' --env staging --user postgres && "
                    "PGPASSWORD='%s' '%s/pgsov' migrate baseline -c '%s' --env staging --user postgres",
              work, e->superpass, e->bin, ini, e->superpass, e->bin, ini) != 0)
        fail_msg("pgsov migrate failed:\n%s", out);
    free(out);
    if (it_sh(&out, "PGPASSWORD='%s' psql -X -q -v ON_ERROR_STOP=1 'host=localhost port=%d dbname=" DB
                    " user=postgres sslmode=verify-full sslrootcert=%s/ca.crt' -f '%s/rules/ddl_event_trigger.sql'",
              e->superpass, e->dev_port, e->pki, e->src) != 0)
        fail_msg("installing the DDL event trigger failed:\n%s", out);
    free(out);
    PGconn *c = it_super("dev", DB);
    it_exec(c, "ALTER DATABASE " DB " SET log_statement = 'ddl'");
    PQfinish(c);
    write_manifests();
    /* a backups reply that satisfies staging's policy: daily, 7 days */
    time_t now = time(NULL);
    char t1[32], t2[32];
    struct tm tm;
    time_t a = now - 3 * 3600, b = now - 8 * 86400;
    strftime(t1, sizeof t1, "%Y-%m-%dT%H:%M:%S.000Z", gmtime_r(&a, &tm));
    strftime(t2, sizeof t2, "%Y-%m-%dT%H:%M:%S.000Z", gmtime_r(&b, &tm));
    snprintf(text, sizeof text,
             "{\"region\":\"sa-east-1\",\"walg_enabled\":true,\"pitr_enabled\":false,\"backups\":["
             "{\"is_physical_backup\":true,\"status\":\"COMPLETED\",\"inserted_at\":\"%s\"},"
             "{\"is_physical_backup\":true,\"status\":\"COMPLETED\",\"inserted_at\":\"%s\"}],"
             "\"physical_backup_data\":{}}\n", t1, t2);
    it_write_file(reply, text);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    PGconn *c = it_super("dev", "postgres");
    it_exec(c, "ALTER ROLE app NOSUPERUSER");
    it_exec(c, "DROP DATABASE IF EXISTS " DB " WITH (FORCE)");
    it_exec(c, "DROP ROLE IF EXISTS pgsov_auditor");
    PQfinish(c);
    return 0;
}

static void test_compliant(void **state)
{
    (void)state;
    char *out = NULL;
    int rc = run_super(&out, "--format json --fail-on info");
    char *ids = finding_ids(out);
    if (rc != 0 || ids[0])
        fail_msg("the example database should be compliant: exit %d, findings [%s]\n%s", rc, ids, out);
    free(ids);
    free(out);
    rc = run_super(&out, "--format text");
    assert_int_equal(rc, 0);
    assert_true(it_contains(out, "COMPLIANT"));
    assert_true(it_contains(out, "[rls]"));
    assert_false(it_contains(out, "\033["));        /* not a terminal: no colour */
    free(out);
    rc = run_super(&out, "--format junit");
    assert_int_equal(rc, 0);
    assert_true(it_contains(out, "<testsuites>"));
    assert_false(it_contains(out, "<failure"));
    free(out);
}

/* One violation each: SQL that makes it and undoes it, or a manifest whose staging entry is
 * merged with "patch" (JSON), or both. "want" is the exact sorted list of finding ids. */
static const struct {
    const char *name, *do_sql, *undo_sql, *extra, *want, *patch;
} violations[] = {
    { "RLS off on one table", "ALTER TABLE app.contracts DISABLE ROW LEVEL SECURITY",
      "ALTER TABLE app.contracts ENABLE ROW LEVEL SECURITY", NULL, "policy_exists_rls_disabled", NULL },
    { "table without RLS in public", "CREATE TABLE public.notes (id int)", "DROP TABLE public.notes", NULL,
      "rls_disabled_in_public", NULL },
    { "a missing policy", "DROP POLICY contracts_app_client ON app.contracts",
      "CREATE POLICY contracts_app_client ON app.contracts FOR SELECT TO app_client "
      "USING (client_id = app.current_client_id())", NULL, "policy_missing", NULL },
    { "an always-true write policy", "CREATE POLICY open_insert ON app.payments FOR INSERT TO app_client WITH CHECK (true)",
      "DROP POLICY open_insert ON app.payments", NULL, "permissive_rls_policy", NULL },
    { "a superuser app role", "ALTER ROLE app SUPERUSER", "ALTER ROLE app NOSUPERUSER", NULL, "role_superuser", NULL },
    { "a setting changed", "ALTER DATABASE " DB " SET log_statement = 'none'",
      "ALTER DATABASE " DB " SET log_statement = 'ddl'", NULL, "setting_mismatch", NULL },
    { "a setting the cluster lacks", NULL, NULL, "manifest", "setting_mismatch", NULL },
    { "the event trigger disabled", "ALTER EVENT TRIGGER pgsov_ddl_guard DISABLE",
      "ALTER EVENT TRIGGER pgsov_ddl_guard ENABLE", NULL, "ddl_guard_disabled", NULL },
    { "a pending migration", NULL, NULL, "migrations-pending", "migration_pending", NULL },
    { "an applied file changed", NULL, NULL, "migrations-drift", "migration_drift", NULL },
    { "an applied file missing", NULL, NULL, "migrations-unknown", "migration_unknown", NULL },
    { "point-in-time recovery required, the reply says off", NULL, NULL, NULL, "backup_pitr",
      "{\"backups\": {\"pitr\": true}}" },
    { "an extension in public", "CREATE EXTENSION pg_trgm SCHEMA public", "DROP EXTENSION pg_trgm", NULL,
      "extension_in_public", NULL },
    { "an extension not allowed", "CREATE SCHEMA ext; CREATE EXTENSION hstore SCHEMA ext",
      "DROP SCHEMA ext CASCADE", NULL, "extension_not_allowed", NULL },
    { "a security definer view", "CREATE VIEW public.client_names AS SELECT name FROM app.clients",
      "DROP VIEW public.client_names", NULL, "security_definer_view", NULL },
    { "a mutable search_path function", "CREATE FUNCTION public.one() RETURNS int LANGUAGE sql AS 'SELECT 1'",
      "DROP FUNCTION public.one()", NULL, "function_search_path_mutable", NULL },
    { "a cpf column exposed", "CREATE TABLE public.pessoas (id int, nome text, cpf char(11)); "
      "GRANT SELECT ON public.pessoas TO app_client", "DROP TABLE public.pessoas", NULL, "sensitive_columns_exposed", NULL },
    { "auth.users exposed", "CREATE SCHEMA auth; CREATE TABLE auth.users (id int, email text); "
      "CREATE VIEW public.users_v WITH (security_invoker = true) AS SELECT id, email FROM auth.users; "
      "GRANT SELECT ON public.users_v TO app_client", "DROP SCHEMA auth CASCADE", NULL, "auth_users_exposed", NULL },
    { "an object owned by a role not allowed", "CREATE SEQUENCE app.tickets; ALTER SEQUENCE app.tickets OWNER TO app",
      "DROP SEQUENCE app.tickets", NULL, "object_owner_not_allowed", NULL },
    { "RLS enabled without a policy", "CREATE TABLE app.notes (id int); ALTER TABLE app.notes ENABLE ROW LEVEL SECURITY",
      "DROP TABLE app.notes", NULL, "rls_enabled_no_policy", NULL },
    { "the event trigger for replica sessions only", "ALTER EVENT TRIGGER pgsov_ddl_guard ENABLE REPLICA",
      "ALTER EVENT TRIGGER pgsov_ddl_guard ENABLE", NULL, "ddl_guard_disabled", NULL },
    { "the event trigger missing", "ALTER EVENT TRIGGER pgsov_ddl_guard RENAME TO pgsov_ddl_guard_away",
      "ALTER EVENT TRIGGER pgsov_ddl_guard_away RENAME TO pgsov_ddl_guard", NULL, "ddl_guard_missing", NULL },
    { "a role that bypasses RLS", "ALTER ROLE app_user BYPASSRLS", "ALTER ROLE app_user NOBYPASSRLS", NULL,
      "role_bypassrls", NULL },
    { "a group role that can log in", "ALTER ROLE app_client LOGIN", "ALTER ROLE app_client NOLOGIN", NULL,
      "role_can_login", NULL },
    { "a required role missing", NULL, NULL, NULL, "role_missing",
      "{\"roles\": {\"must_exist\": [\"app_user\", \"app_client\", \"pgsov_it_ghost\"]}}" },
    { "a policy for other roles", "ALTER POLICY contracts_app_client ON app.contracts TO app_user",
      "ALTER POLICY contracts_app_client ON app.contracts TO app_client", NULL, "policy_mismatch", NULL },
    { "a policy the manifest does not declare",
      "CREATE POLICY clients_extra ON app.clients FOR SELECT TO app_user USING (false)",
      "DROP POLICY clients_extra ON app.clients", NULL, "policy_unexpected", "{\"rls\": {\"exhaustive\": true}}" },
    { "RLS not forced on one table",
      "ALTER TABLE app.clients FORCE ROW LEVEL SECURITY; ALTER TABLE app.proposals FORCE ROW LEVEL SECURITY; "
      "ALTER TABLE app.installments FORCE ROW LEVEL SECURITY; ALTER TABLE app.payments FORCE ROW LEVEL SECURITY",
      "ALTER TABLE app.clients NO FORCE ROW LEVEL SECURITY; ALTER TABLE app.proposals NO FORCE ROW LEVEL SECURITY; "
      "ALTER TABLE app.installments NO FORCE ROW LEVEL SECURITY; ALTER TABLE app.payments NO FORCE ROW LEVEL SECURITY",
      NULL, "rls_not_forced", "{\"rls\": {\"force\": true}}" },
    { "an attestation of another environment", "UPDATE pgsov.environment_attestation SET environment = 'production'",
      "UPDATE pgsov.environment_attestation SET environment = 'staging'", NULL, "attestation_mismatch", NULL },
    { "no attestation", "CREATE TABLE pgsov.att_saved AS SELECT * FROM pgsov.environment_attestation; "
      "DELETE FROM pgsov.environment_attestation",
      "INSERT INTO pgsov.environment_attestation SELECT * FROM pgsov.att_saved; DROP TABLE pgsov.att_saved", NULL,
      "attestation_missing", NULL },
    { "no migration history", "ALTER TABLE pgsov.schema_migrations RENAME TO schema_migrations_away",
      "ALTER TABLE pgsov.schema_migrations_away RENAME TO schema_migrations", NULL,
      "migration_history_missing,migration_pending,migration_pending,migration_pending,migration_pending,"
      "migration_pending", NULL },   /* every example file is pending without a history */
    { "an extension version not allowed", "CREATE SCHEMA ext; CREATE EXTENSION pg_trgm SCHEMA ext",
      "DROP SCHEMA ext CASCADE", NULL, "extension_version_mismatch",
      "{\"extensions\": {\"allowed\": [{\"name\": \"pg_trgm\", \"versions\": [\"0.9\"]}]}}" },
    { "a host the manifest does not allow", NULL, NULL, NULL, "host_not_allowed",
      "{\"hosts\": [\"db.staging.invalid\"]}" },
};

/* The test manifest with its staging entry merged with patch; returns the variant's path. */
static const char *manifest_variant(const char *patch)
{
    static char path[1300];
    snprintf(path, sizeof path, "%s/manifest-variant.json", work);
    json_error_t je;
    json_t *root = json_load_file(manifest, 0, &je);
    json_t *p = json_loads(patch, 0, &je);
    if (!root || !p)
        fail_msg("manifest variant: %s", je.text);
    json_t *st = json_object_get(json_object_get(root, "environments"), "staging");
    if (json_object_update_recursive(st, p) != 0 || json_dump_file(root, path, JSON_INDENT(2)) != 0)
        fail_msg("cannot write %s", path);
    json_decref(p);
    json_decref(root);
    return path;
}

static void test_violations(void **state)
{
    (void)state;
    PGconn *c = it_super("dev", DB);
    for (size_t i = 0; i < sizeof violations / sizeof violations[0]; i++) {
        if (violations[i].do_sql)
            it_exec(c, violations[i].do_sql);
        char extra[2600];
        const char *kind = violations[i].extra ? violations[i].extra : "";
        /* --manifest / --migrations given again: the last one wins */
        if (!strcmp(kind, "manifest"))
            snprintf(extra, sizeof extra, "--format json --fail-on info --manifest '%s'", manifest_archive);
        else if (violations[i].patch)
            snprintf(extra, sizeof extra, "--format json --fail-on info --manifest '%s'",
                     manifest_variant(violations[i].patch));
        else if (!strncmp(kind, "migrations-", 11))
            snprintf(extra, sizeof extra, "--format json --fail-on info --migrations '%s/%s'", work, kind);
        else
            snprintf(extra, sizeof extra, "--format json --fail-on info");
        char *out = NULL;
        int rc = run_super(&out, extra);
        char *ids = finding_ids(out);
        if (violations[i].undo_sql)
            it_exec(c, violations[i].undo_sql);
        if (rc != 1 || strcmp(ids, violations[i].want) != 0)
            fail_msg("%s: exit %d, findings [%s], want exit 1 and [%s]\n%s", violations[i].name, rc, ids,
                     violations[i].want, out);
        free(ids);
        free(out);
    }
    PQfinish(c);
    char *out = NULL;     /* everything undone: compliant again */
    int rc = run_super(&out, "--format json --fail-on info");
    char *ids = finding_ids(out);
    if (rc != 0 || ids[0])
        fail_msg("after undoing every violation: exit %d, findings [%s]", rc, ids);
    free(ids);
    free(out);
}

/* The documented JSON shape (docs/audit.md), key by key. */
static void test_json_shape(void **state)
{
    (void)state;
    char *out = NULL;
    int rc = run_super(&out, "--format json");
    assert_int_equal(rc, 0);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "pgsov_audit")), 1);
    assert_string_equal(json_string_value(json_object_get(j, "environment")), "staging");
    json_t *target = json_object_get(j, "target");
    assert_true(json_is_string(json_object_get(target, "database")));
    assert_true(it_contains(json_string_value(json_object_get(target, "database")), "/" DB));
    assert_string_equal(json_string_value(json_object_get(target, "user")), "postgres");
    assert_true(json_is_string(json_object_get(j, "manifest")));
    assert_true(json_is_string(json_object_get(j, "started_at")));
    assert_true(json_is_true(json_object_get(j, "compliant")));
    assert_string_equal(json_string_value(json_object_get(j, "fail_on")), "error");
    static const char *const sums[] = { "checks", "passed", "failed", "unverified", "skipped",
                                        "errors", "warnings", "info", "waived" };
    json_t *sum = json_object_get(j, "summary");
    for (size_t i = 0; i < sizeof sums / sizeof sums[0]; i++)
        assert_true(json_is_integer(json_object_get(sum, sums[i])));
    assert_int_equal(json_integer_value(json_object_get(sum, "waived")), 1);   /* app.current_client_id() */
    size_t i;
    json_t *ck;
    size_t passed = 0;
    json_array_foreach(json_object_get(j, "checks"), i, ck) {
        assert_true(json_is_string(json_object_get(ck, "id")));
        assert_true(json_is_string(json_object_get(ck, "area")));
        assert_true(json_is_string(json_object_get(ck, "title")));
        const char *st = json_string_value(json_object_get(ck, "status"));
        assert_true(st && (!strcmp(st, "pass") || !strcmp(st, "fail") || !strcmp(st, "unverified") ||
                           !strcmp(st, "skipped")));
        passed += strcmp(st, "pass") == 0;
    }
    assert_int_equal(passed, (size_t)json_integer_value(json_object_get(sum, "passed")));
    assert_true(passed >= 25);
    json_t *f = json_array_get(json_object_get(j, "findings"), 0);
    static const char *const keys[] = { "id", "level", "area", "object", "found", "expected", "fix", "waived" };
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        assert_true(json_is_string(json_object_get(f, keys[k])));
    assert_true(json_is_boolean(json_object_get(f, "verified")));
    json_decref(j);
    free(out);
}

static void test_non_superuser(void **state)
{
    (void)state;
    PGconn *c = it_super("dev", DB);
    it_exec(c, "DROP ROLE IF EXISTS pgsov_auditor");
    it_exec(c, "CREATE ROLE pgsov_auditor LOGIN PASSWORD 'auditor-secret'");
    PQfinish(c);
    char *out = NULL;
    int rc = run_audit(&out, "pgsov_auditor", "auditor-secret", "--format json --fail-on warning");
    char *ids = finding_ids(out);
    /* the history table is not readable by PUBLIC: not verified, and never a pass */
    if (rc != 1 || !it_contains(ids, "?migration_pending"))
        fail_msg("non-superuser: exit %d, findings [%s]\n%s", rc, ids, out);
    assert_false(it_contains(ids, ",migration_pending"));   /* no verified claim either way */
    json_t *j = json_loads(out, 0, NULL);
    size_t i;
    json_t *ck;
    json_array_foreach(json_object_get(j, "checks"), i, ck)
        if (!strcmp(json_string_value(json_object_get(ck, "id")), "migration_pending"))
            assert_string_equal(json_string_value(json_object_get(ck, "status")), "unverified");
    assert_true(json_integer_value(json_object_get(json_object_get(j, "summary"), "unverified")) >= 1);
    json_decref(j);
    free(ids);
    free(out);
    /* with the default --fail-on error, staging's unverified level (warning) does not fail */
    rc = run_audit(&out, "pgsov_auditor", "auditor-secret", "--format text");
    assert_int_equal(rc, 0);
    assert_true(it_contains(out, "not verified"));
    free(out);
}

static void test_backups_unverified_and_cannot_run(void **state)
{
    (void)state;
    const struct it_env *e = it_env();
    char *out = NULL;
    /* without --backup-reply the backup checks are not verified */
    int rc = it_sh(&out, "cd '%s' && PGPASSWORD='%s' '%s/pgsov' audit -c '%s' --env staging --user postgres "
                         "--manifest '%s' --format json --fail-on warning 2>/dev/null",
                   work, e->superpass, e->bin, ini, manifest);
    char *ids = finding_ids(out);
    if (rc != 1 || strcmp(ids, "?backup_daily,?backup_retention") != 0)
        fail_msg("no backup reply: exit %d, findings [%s]", rc, ids);
    free(ids);
    free(out);
    /* exit 2: the manifest cannot be read, an unknown environment, a refused host */
    rc = run_super(&out, "--manifest /nonexistent.json");
    assert_int_equal(rc, 2);
    free(out);
    rc = it_sh(&out, "cd '%s' && PGPASSWORD=x '%s/pgsov' audit -c '%s' --env production --manifest '%s'",
               work, e->bin, ini, manifest);
    assert_int_equal(rc, 2);
    free(out);
    rc = run_super(&out, "--format yaml");
    assert_int_equal(rc, 2);
    free(out);
}

/* A section named otherwise finds its manifest entry through an alias or a canonical spelling. */
static void test_manifest_entry_by_alias(void **state)
{
    (void)state;
    const struct it_env *e = it_env();
    char alias_ini[1300], text[1024];
    snprintf(alias_ini, sizeof alias_ini, "%s/alias.ini", work);
    snprintf(text, sizeof text,
             "[proxy]\nclient_tls = disable\n\n[env.main]\naliases = qa, staging\nhost = localhost\n"
             "port = %d\ndatabase = " DB "\nsslmode = verify-full\nsslrootcert = %s/ca.crt\n"
             "host_patterns = localhost:%d\nrequire_approval = false\n",
             e->dev_port, e->pki, e->dev_port);
    it_write_file(alias_ini, text);
    char *out = NULL;
    int rc = it_sh(&out, "cd '%s' && PGPASSWORD='%s' '%s/pgsov' audit -c '%s' --env main --user postgres "
                         "--manifest '%s' --migrations '%s/migrations' --backup-reply '%s' --format json "
                         "--fail-on info 2>&1",
                   work, e->superpass, e->bin, alias_ini, manifest, work, reply);
    if (rc != 0 || !it_contains(out, "\"environment\": \"main\"") || !it_contains(out, "\"compliant\": true"))
        fail_msg("[env.main] aliases = staging: exit %d\n%s", rc, out);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compliant),
        cmocka_unit_test(test_violations),
        cmocka_unit_test(test_json_shape),
        cmocka_unit_test(test_non_superuser),
        cmocka_unit_test(test_backups_unverified_and_cannot_run),
        cmocka_unit_test(test_manifest_entry_by_alias),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
