/* audit.c — `pgsov audit`: flags, manifest, connection through the shared target (hostname
 * guard first), the checks in audit_db.c, the report on stdout.
 * Exit codes: 0 compliant, 1 findings at or above --fail-on, 2 the audit could not run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pgsov/config.h"
#include "pgsov/env.h"
#include "audit.h"
#include "target.h"
#include "tools.h"

static void audit_usage(FILE *out)
{
    fprintf(out,
            "usage: pgsov audit --env NAME [options]\n"
            "\n"
            "Checks a live database against its environment's compliance manifest: RLS and\n"
            "policies, roles, settings, the DDL event trigger, extensions, migrations, backups,\n"
            "and Supabase-style security lints. Reads only (BEGIN READ ONLY).\n"
            "\n"
            TARGET_FLAGS_HELP
            "  --manifest FILE     compliance manifest (default rules/environment-manifest.json)\n"
            "  --format FMT        text (default), json or junit\n"
            "  --fail-on LEVEL     exit 1 on findings at or above error (default), warning or info\n"
            "  --backup-reply FILE Supabase GET /v1/projects/{ref}/database/backups reply (JSON)\n"
            "  --migrations DIR    migrations folder (default: the manifest's, else migrations)\n"
            "  --statement-timeout MS  per catalog query (default 10000)\n"
            "\n"
            "exit: 0 compliant, 1 findings at or above --fail-on, 2 the audit could not run\n");
}

/* "--name VALUE" or "--name=VALUE" at argv[*i]: 1 matched, 0 not this flag, -1 missing value. */
static int flag_value(const char *name, int argc, char **argv, int *i, const char **out)
{
    size_t len = strlen(name);
    if (strncmp(argv[*i], name, len) != 0)
        return 0;
    if (argv[*i][len] == '=') {
        *out = argv[*i] + len + 1;
        return 1;
    }
    if (argv[*i][len] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *out = argv[++*i];
    return 1;
}

/* The manifest's entry for env: by its section name, then an alias, then the canonical
 * spelling of either ([env.prod] with an entry "production"). */
static const struct audit_env_manifest *manifest_entry(const struct audit_manifest *m,
                                                       const struct env_config *env)
{
    const struct audit_env_manifest *e = audit_manifest_env(m, env->name);
    for (size_t i = 0; !e && i < env->n_aliases; i++)
        e = audit_manifest_env(m, env->aliases[i]);
    const char *canon = env_canonical_name(env->name);
    if (!e && canon)
        e = audit_manifest_env(m, canon);
    for (size_t i = 0; !e && i < env->n_aliases; i++)
        if ((canon = env_canonical_name(env->aliases[i])) != NULL)
            e = audit_manifest_env(m, canon);
    return e;
}

int cmd_audit(int argc, char **argv)
{
    struct target_options topt = { .application_name = "pgsov-audit" };
    const char *manifest_path = "rules/environment-manifest.json", *format = "text", *fail_on_s = "error";
    const char *backup_reply = NULL, *migrations = NULL, *timeout_s = NULL;
    struct pgsov_err err = { "" };

    for (int i = 1; i < argc;) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            audit_usage(stdout);
            return 0;
        }
        int rc = target_parse_flag(&topt, argc, argv, &i, &err);
        if (rc < 0) {
            fprintf(stderr, "pgsov audit: %s\n", err.msg);
            return 2;
        }
        if (rc == 1)
            continue;       /* target_parse_flag moved i past the flag and its value */
        static const char *const names[] = { "--manifest", "--format", "--fail-on", "--backup-reply",
                                             "--migrations", "--statement-timeout" };
        const char **slots[] = { &manifest_path, &format, &fail_on_s, &backup_reply, &migrations, &timeout_s };
        int matched = 0;
        for (size_t k = 0; k < sizeof names / sizeof names[0] && !matched; k++) {
            matched = flag_value(names[k], argc, argv, &i, slots[k]);
            if (matched < 0) {
                fprintf(stderr, "pgsov audit: %s needs a value\n", names[k]);
                return 2;
            }
        }
        if (!matched) {
            fprintf(stderr, "pgsov audit: unknown option \"%s\" (see pgsov audit --help)\n", argv[i]);
            return 2;
        }
        i++;
    }

    enum audit_format fmt;
    enum audit_level fail_on;
    if (audit_format_parse(format, &fmt) < 0) {
        fprintf(stderr, "pgsov audit: --format must be text, json or junit, not \"%s\"\n", format);
        return 2;
    }
    if (audit_level_parse(fail_on_s, &fail_on) < 0) {
        fprintf(stderr, "pgsov audit: --fail-on must be error, warning or info, not \"%s\"\n", fail_on_s);
        return 2;
    }
    int timeout_ms = 10000;
    if (timeout_s) {
        char *end;
        long v = strtol(timeout_s, &end, 10);
        if (*end || v < 100 || v > 600000) {
            fprintf(stderr, "pgsov audit: --statement-timeout must be 100..600000 milliseconds\n");
            return 2;
        }
        timeout_ms = (int)v;
    }

    struct audit_manifest *manifest = NULL;
    if (audit_manifest_load(manifest_path, &manifest, &err) < 0) {
        fprintf(stderr, "pgsov audit: %s\n", err.msg);
        return 2;
    }

    struct target t;
    memset(&t, 0, sizeof t);
    if (target_open(&t, &topt, &err) < 0) {
        fprintf(stderr, "pgsov audit: %s\n", err.msg);
        target_close(&t);
        audit_manifest_free(manifest);
        return 2;
    }
    if (t.warning[0])
        fprintf(stderr, "pgsov audit: warning: %s\n", t.warning);

    const struct audit_env_manifest *env = manifest_entry(manifest, t.env);
    if (!env) {
        fprintf(stderr, "pgsov audit: %s has no entry for environment \"%s\": add "
                "$.environments.%s to the manifest\n", manifest_path, t.env_name, t.env_name);
        target_close(&t);
        audit_manifest_free(manifest);
        return 2;
    }

    int code = 2;
    struct audit_report *r = audit_report_new(t.env_name, env);
    if (!r) {
        fprintf(stderr, "pgsov audit: out of memory\n");
        goto out;
    }
    char where[512];
    snprintf(where, sizeof where, "%s:%d/%s", t.host, t.port, t.dbname);
    audit_report_set_target(r, where, t.user, manifest_path);
    struct audit_db_facts facts = {
        .host = t.host, .port = t.port, .manifest = manifest, .migrations_dir = migrations,
        .backup_reply = backup_reply, .statement_timeout_ms = timeout_ms, .cfg = t.cfg,
    };
    if (audit_db_run(t.conn, r, env, &facts, &err) < 0) {
        fprintf(stderr, "pgsov audit: the audit could not run: %s\n", err.msg);
        goto out;
    }
    bool color = fmt == AUDIT_FORMAT_TEXT && isatty(STDOUT_FILENO) && !getenv("NO_COLOR");
    if (audit_render(r, fmt, fail_on, color, stdout) < 0 || fflush(stdout) != 0) {
        fprintf(stderr, "pgsov audit: cannot write the report\n");
        goto out;
    }
    code = audit_exit_code(r, fail_on);
out:
    audit_report_free(r);
    target_close(&t);
    audit_manifest_free(manifest);
    return code;
}
