/* audit_eval.c — the audit's pure judgements: does a setting value satisfy the manifest, is a
 * column name sensitive, does the migrations folder match the applied history, does a backups
 * reply satisfy the backup policy. No database access; the migrations scan reads files only. */
#include "audit.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>

#include "migrate_core.h"

/* ---- settings ------------------------------------------------------------------------ */

static const char *bool_norm(const char *v)
{
    static const char *const on[] = { "on", "true", "yes", "1", NULL };
    static const char *const off[] = { "off", "false", "no", "0", NULL };
    for (size_t i = 0; on[i]; i++)
        if (strcasecmp(v, on[i]) == 0)
            return "on";
    for (size_t i = 0; off[i]; i++)
        if (strcasecmp(v, off[i]) == 0)
            return "off";
    return v;
}

static bool value_eq(const char *want, const char *have)
{
    return strcasecmp(bool_norm(want), bool_norm(have)) == 0;
}

bool audit_setting_ok(const struct audit_setting *s, const char *value, char *expected_buf,
                      size_t size)
{
    size_t len = 0;
    expected_buf[0] = '\0';
    switch (s->op) {
    case AUDIT_SET_EQUALS:
    case AUDIT_SET_ONE_OF:
        for (size_t i = 0; i < s->values.n; i++)
            if (value && value_eq(s->values.v[i], value))
                return true;
        if (s->op == AUDIT_SET_ONE_OF)
            len += (size_t)snprintf(expected_buf, size, "one of ");
        for (size_t i = 0; i < s->values.n && len < size; i++)
            len += (size_t)snprintf(expected_buf + len, size - len, "%s%s", i ? ", " : "", s->values.v[i]);
        return false;
    case AUDIT_SET_RANGE: {
        char *end = NULL;
        errno = 0;
        double v = value ? strtod(value, &end) : 0;
        bool numeric = value && end != value && *end == '\0' && errno == 0;
        bool ok = numeric && (!s->has_min || v >= s->min) && (!s->has_max || v <= s->max);
        if (!ok) {
            if (s->has_min)
                len += (size_t)snprintf(expected_buf, size, ">= %g", s->min);
            if (s->has_max && len < size)
                snprintf(expected_buf + len, size - len, "%s<= %g", len ? " and " : "", s->max);
        }
        return ok;
    }
    }
    return false;
}

/* ---- sensitive column names ----------------------------------------------------------- */

static const char *const sensitive_names[] = {
    /* credentials */
    "password", "passwd", "pwd", "passphrase", "senha", "secret", "secret_key", "private_key",
    "api_key", "apikey", "token", "access_token", "refresh_token", "session_token", "jwt",
    "otp", "recovery_code", "totp_secret",
    /* personal identifiers, general */
    "ssn", "social_security_number", "passport_number", "passport", "national_id", "tax_id",
    "driver_license", "drivers_license",
    /* Brazilian identifiers */
    "cpf", "cnpj", "rg", "pis", "pasep", "pis_pasep", "nis", "nit", "titulo_eleitor",
    "titulo_de_eleitor", "cns", "cartao_sus", "cnh", "ctps", "passaporte", "chave_pix",
    /* financial */
    "credit_card", "card_number", "numero_cartao", "cvv", "cvc", "iban", "bank_account",
    "account_number", "conta_bancaria",
    /* health */
    "medical_record", "health_record", "prontuario",
    NULL,
};

/* "_" + lower(name) + "_" with '-' and ' ' as '_': patterns match on word boundaries, so
 * "cpf", "cpf_cliente" and "client_cpf" are sensitive but "organization" is not "rg". */
static void norm_name(const char *in, char *out, size_t size)
{
    size_t o = 0;
    if (size < 3) {
        if (size)
            out[0] = '\0';
        return;
    }
    out[o++] = '_';
    for (; *in && o < size - 2; in++)
        out[o++] = (*in == '-' || *in == ' ') ? '_' : (char)tolower((unsigned char)*in);
    out[o++] = '_';
    out[o] = '\0';
}

static bool name_has(const char *normalized, const char *pattern)
{
    char p[160];
    norm_name(pattern, p, sizeof p);
    return strstr(normalized, p) != NULL;
}

bool audit_sensitive_column(const char *name, const struct audit_strlist *extra)
{
    char n[256];
    norm_name(name, n, sizeof n);
    for (size_t i = 0; sensitive_names[i]; i++)
        if (name_has(n, sensitive_names[i]))
            return true;
    for (size_t i = 0; extra && i < extra->n; i++)
        if (name_has(n, extra->v[i]))
            return true;
    return false;
}

/* ---- migrations ------------------------------------------------------------------------ */

int audit_migrations_compare(struct audit_report *r, const struct mig_set *set,
                             const struct mig_applied *applied, size_t n_applied,
                             bool allow_pending, struct pgsov_err *err)
{
    struct mig_status_row *rows = NULL;
    size_t n = 0;
    if (mig_status(set, applied, n_applied, &rows, &n, err) < 0)
        return -1;
    audit_report_ran(r, "migration_pending");
    audit_report_ran(r, "migration_drift");
    audit_report_ran(r, "migration_unknown");
    for (size_t i = 0; i < n; i++) {
        const struct mig_status_row *row = &rows[i];
        char obj[MIG_VERSION_MAX + MIG_NAME_MAX + 2];
        snprintf(obj, sizeof obj, "%s_%s", row->version, row->name);
        switch (row->state) {
        case MIG_STATE_PENDING:
        case MIG_STATE_OUT_OF_ORDER:
            if (!allow_pending)
                audit_report_add(r, "migration_pending", obj,
                                 row->state == MIG_STATE_PENDING ? "in the folder, not applied"
                                 : "not applied, older than the newest applied version (out of order)",
                                 "applied", NULL);
            break;
        case MIG_STATE_DRIFTED: {
            char found[160], want[160];
            snprintf(found, sizeof found, "file sha256 %.16s...", row->file ? row->file->checksum : "?");
            snprintf(want, sizeof want, "sha256 %.16s... as applied", row->applied ? row->applied->checksum : "?");
            audit_report_add(r, "migration_drift", obj, found, want, NULL);
            break;
        }
        case MIG_STATE_MISSING:
            audit_report_add(r, "migration_unknown", obj, "applied, no file in the folder",
                             "a file for every applied version", NULL);
            break;
        case MIG_STATE_APPLIED:
            break;
        }
    }
    free(rows);
    return 0;
}

/* ---- backups --------------------------------------------------------------------------- */

static const char backup_by_hand[] =
    "Supabase dashboard > Database > Backups (daily backups, PITR, retention), or pass "
    "--backup-reply FILE with the reply of GET /v1/projects/{ref}/database/backups";

/* "2024-05-01T03:04:05.123Z" / "...+00:00" / no zone (UTC) → time_t; -1 when unparsable. */
static time_t parse_iso(const char *s)
{
    struct tm tm = { 0 };
    int used = 0;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                     &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &used) != 6)
        return (time_t)-1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    const char *z = s + used;
    if (*z == '.')
        for (z++; isdigit((unsigned char)*z); z++)
            ;
    if (*z == '+' || *z == '-') {
        int hh = 0, mm = 0;
        if (sscanf(z + 1, "%2d:%2d", &hh, &mm) >= 1)
            t -= (*z == '+' ? 1 : -1) * (time_t)(hh * 3600 + mm * 60);
    }
    return t;
}

static void unverified_all(struct audit_report *r, const struct audit_env_manifest *env,
                           const char *why)
{
    if (env->backups_daily)
        audit_report_unverified(r, "backup_daily", "backups", why, backup_by_hand);
    if (env->backups_pitr)
        audit_report_unverified(r, "backup_pitr", "backups", why, backup_by_hand);
    if (env->backups_retention_days > 0)
        audit_report_unverified(r, "backup_retention", "backups", why, backup_by_hand);
}

void audit_backups_evaluate(struct audit_report *r, const struct audit_env_manifest *env,
                            const char *reply_text, const char *reply_name, time_t now)
{
    if (!env->backups_checked)
        return;
    if (!reply_text) {
        unverified_all(r, env, "backups are kept by the provider outside the database; SQL cannot see them");
        return;
    }
    json_error_t je;
    json_t *root = json_loads(reply_text, 0, &je);
    if (!root || !json_is_object(root)) {
        char why[512];
        snprintf(why, sizeof why, "%s is not a backups reply object (%s)", reply_name,
                 root ? "not an object" : je.text);
        json_decref(root);
        unverified_all(r, env, why);
        return;
    }
    json_t *pitr = json_object_get(root, "pitr_enabled");
    json_t *list = json_object_get(root, "backups");
    json_t *phys = json_object_get(root, "physical_backup_data");
    if (list && !json_is_array(list))
        list = NULL;

    /* newest and oldest completed backup, from the list and the physical (PITR) window */
    time_t newest = (time_t)-1, oldest = (time_t)-1;
    size_t i;
    json_t *b;
    if (list)
        json_array_foreach(list, i, b) {
            const char *st = json_string_value(json_object_get(b, "status"));
            time_t t = parse_iso(json_string_value(json_object_get(b, "inserted_at")));
            if (!st || strcmp(st, "COMPLETED") != 0 || t == (time_t)-1)
                continue;
            if (newest == (time_t)-1 || t > newest)
                newest = t;
            if (oldest == (time_t)-1 || t < oldest)
                oldest = t;
        }
    bool pitr_on = json_is_true(pitr);
    if (pitr_on && json_is_object(phys)) {
        json_t *e = json_object_get(phys, "earliest_physical_backup_date_unix");
        json_t *l = json_object_get(phys, "latest_physical_backup_date_unix");
        if (json_is_integer(l) && json_integer_value(l) > 0 &&
            (newest == (time_t)-1 || (time_t)json_integer_value(l) > newest))
            newest = (time_t)json_integer_value(l);
        if (json_is_integer(e) && json_integer_value(e) > 0 &&
            (oldest == (time_t)-1 || (time_t)json_integer_value(e) < oldest))
            oldest = (time_t)json_integer_value(e);
    }

    if (env->backups_pitr) {
        if (!json_is_boolean(pitr))
            audit_report_unverified(r, "backup_pitr", "backups",
                                    "the reply has no boolean pitr_enabled", backup_by_hand);
        else if (!pitr_on)
            audit_report_add(r, "backup_pitr", "backups", "pitr_enabled: false", "pitr_enabled: true", NULL);
        else
            audit_report_ran(r, "backup_pitr");
    }
    if (env->backups_daily) {
        if (!list && !pitr_on)
            audit_report_unverified(r, "backup_daily", "backups", "the reply has no backups array",
                                    backup_by_hand);
        else if (newest == (time_t)-1)
            audit_report_add(r, "backup_daily", "backups", "no completed backup in the reply",
                             "a COMPLETED backup from the last 26 hours", NULL);
        else if (now - newest > 26 * 3600)
            audit_report_addf(r, "backup_daily", "backups", "a COMPLETED backup from the last 26 hours",
                              "newest completed backup is %.1f hours old", (double)(now - newest) / 3600.0);
        else
            audit_report_ran(r, "backup_daily");
    }
    if (env->backups_retention_days > 0) {
        char want[96];
        snprintf(want, sizeof want, "backups reaching back %d days", env->backups_retention_days);
        time_t need = (time_t)(env->backups_retention_days - 1) * 86400;
        if (!list && !pitr_on)
            audit_report_unverified(r, "backup_retention", "backups", "the reply has no backups array",
                                    backup_by_hand);
        else if (oldest == (time_t)-1)
            audit_report_add(r, "backup_retention", "backups", "no completed backup in the reply", want, NULL);
        else if (now - oldest < need)
            audit_report_addf(r, "backup_retention", "backups", want, "oldest restorable point is %.1f days old",
                              (double)(now - oldest) / 86400.0);
        else
            audit_report_ran(r, "backup_retention");
    }
    json_decref(root);
}
