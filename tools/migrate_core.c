/* migrate_core.c — the database-free half of migrate/rollback/status (see migrate_core.h):
 * file names, header comments, checksums, folder scanning (plain and drizzle-kit), SQL analysis
 * with libpg_query, status against history, plans and their hashes.
 * Deliberately does not connect anywhere or decide what to print on error. */
#include "migrate_core.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <pg_query.h>

/* ---- file names ------------------------------------------------------------------------ */

static bool name_char_ok(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '-';
}

static bool ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && strncmp(s + len - n, suffix, n) == 0;
}

int mig_parse_filename(const char *file, struct mig_name *out, struct pgsov_err *err)
{
    size_t len = strlen(file);
    if (!isdigit((unsigned char)file[0]) || !ends_with(file, len, ".sql"))
        return 0;
    size_t digits = 0;
    while (isdigit((unsigned char)file[digits]))
        digits++;
    if (digits > 18)
        return pgsov_fail(err, "%s: version has %zu digits (at most 18)", file, digits);
    if (file[digits] != '_')
        return pgsov_fail(err, "%s: expected NNNN_name.sql (digits, '_', name)", file);

    enum mig_direction dir = MIG_UP;
    size_t end = len - 4;                               /* strip ".sql" */
    if (ends_with(file, end, ".down")) {
        dir = MIG_DOWN;
        end -= 5;
    } else if (ends_with(file, end, ".up")) {
        end -= 3;
    }
    size_t name_len = end - digits - 1;
    if (end <= digits + 1 || name_len == 0)
        return pgsov_fail(err, "%s: the name after the version is empty", file);
    if (name_len >= MIG_NAME_MAX)
        return pgsov_fail(err, "%s: name longer than %d characters", file, MIG_NAME_MAX - 1);
    for (size_t i = digits + 1; i < end; i++)
        if (!name_char_ok(file[i]))
            return pgsov_fail(err, "%s: character '%c' not allowed in a migration name "
                              "(use letters, digits, '_' and '-')", file, file[i]);

    memset(out, 0, sizeof *out);
    memcpy(out->version, file, digits);
    out->version[digits] = '\0';
    out->vnum = strtoull(out->version, NULL, 10);
    memcpy(out->name, file + digits + 1, name_len);
    out->name[name_len] = '\0';
    out->direction = dir;
    return 1;
}

/* ---- header comment -------------------------------------------------------------------- */

int mig_parse_duration_ms(const char *text, int *out_ms)
{
    static const struct { const char *unit; long long mult; } units[] = {
        { "ms", 1 }, { "s", 1000 }, { "min", 60000 }, { "h", 3600000 }, { "", 1 },
    };
    if (!isdigit((unsigned char)text[0]))
        return -1;
    errno = 0;
    char *end;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || v < 0)
        return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(end, units[i].unit) == 0) {
            if (v > 86400000LL / units[i].mult)
                return -1;
            *out_ms = (int)(v * units[i].mult);
            return 0;
        }
    }
    return -1;
}

static int header_apply(const char *key, const char *value, struct mig_settings *s, int line,
                        struct pgsov_err *err)
{
    if (strcmp(key, "lock_timeout") == 0 || strcmp(key, "statement_timeout") == 0) {
        int ms;
        if (mig_parse_duration_ms(value, &ms) < 0)
            return pgsov_fail(err, "line %d: %s=%s is not a duration (0, 250ms, 10s, 2min, 1h)",
                              line, key, value);
        if (key[0] == 'l')
            s->lock_timeout_ms = ms;
        else
            s->statement_timeout_ms = ms;
        return 0;
    }
    if (strcmp(key, "transaction") == 0) {
        if (strcmp(value, "on") == 0)
            s->transaction = MIG_TX_ON;
        else if (strcmp(value, "off") == 0)
            s->transaction = MIG_TX_OFF;
        else if (strcmp(value, "auto") == 0)
            s->transaction = MIG_TX_AUTO;
        else
            return pgsov_fail(err, "line %d: transaction=%s (expected on, off or auto)", line, value);
        return 0;
    }
    return pgsov_fail(err, "line %d: unknown pgsov header setting \"%s\" (known: lock_timeout, "
                      "statement_timeout, transaction)", line, key);
}

int mig_parse_header(const char *sql, size_t len, struct mig_settings *s, struct pgsov_err *err)
{
    static const char marker[] = "pgsov:";
    size_t pos = 0;
    int line = 0;
    while (pos < len) {
        size_t eol = pos;
        while (eol < len && sql[eol] != '\n')
            eol++;
        line++;
        size_t p = pos;
        while (p < eol && isspace((unsigned char)sql[p]))
            p++;
        if (p == eol) {                          /* blank line */
            pos = eol + 1;
            continue;
        }
        if (eol - p < 2 || sql[p] != '-' || sql[p + 1] != '-')
            break;                               /* first SQL line: header over */
        p += 2;
        while (p < eol && (sql[p] == ' ' || sql[p] == '\t'))
            p++;
        if ((size_t)(eol - p) >= sizeof marker - 1 && strncmp(sql + p, marker, sizeof marker - 1) == 0) {
            p += sizeof marker - 1;
            char buf[512];
            size_t n = eol - p;
            if (n >= sizeof buf)
                return pgsov_fail(err, "line %d: pgsov header line too long", line);
            memcpy(buf, sql + p, n);
            buf[n] = '\0';
            char *save = NULL;
            for (char *tok = strtok_r(buf, " \t\r", &save); tok; tok = strtok_r(NULL, " \t\r", &save)) {
                char *eq = strchr(tok, '=');
                if (!eq || eq == tok || eq[1] == '\0')
                    return pgsov_fail(err, "line %d: \"%s\" is not key=value", line, tok);
                *eq = '\0';
                if (header_apply(tok, eq + 1, s, line, err) < 0)
                    return -1;
            }
        }
        pos = eol + 1;
    }
    return 0;
}

/* ---- checksums --------------------------------------------------------------------------- */

int mig_sha256_hex(const void *data, size_t len, char out[MIG_HEX_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL) != 1 || md_len != 32)
        return -1;
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < md_len; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[MIG_HEX_LEN] = '\0';
    return 0;
}

int mig_chain_next(const char *prev_chain, const char *version, const char *checksum,
                   char out[MIG_HEX_LEN + 1])
{
    char buf[MIG_HEX_LEN + MIG_VERSION_MAX + MIG_HEX_LEN + 4];
    int n = snprintf(buf, sizeof buf, "%s\n%s\n%s", prev_chain, version, checksum);
    if (n < 0 || (size_t)n >= sizeof buf)
        return -1;
    return mig_sha256_hex(buf, (size_t)n, out);
}

/* ---- reading files ------------------------------------------------------------------------ */

static int read_file(const char *path, char **out, size_t *out_len, struct pgsov_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return pgsov_fail(err, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return pgsov_fail(err, "%s: not a regular file", path);
    }
    if ((unsigned long long)st.st_size > MIG_MAX_FILE_BYTES) {
        fclose(f);
        return pgsov_fail(err, "%s: %lld bytes, larger than the %u-byte limit for a migration",
                          path, (long long)st.st_size, MIG_MAX_FILE_BYTES);
    }
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size + 1);
    if (!buf) {
        fclose(f);
        return pgsov_fail(err, "%s: out of memory", path);
    }
    size_t got = fread(buf, 1, size, f);
    bool bad = ferror(f) || got != size;
    fclose(f);
    if (bad) {
        free(buf);
        return pgsov_fail(err, "%s: read error", path);
    }
    if (memchr(buf, '\0', size)) {
        free(buf);
        return pgsov_fail(err, "%s: contains a NUL byte; not a SQL text file", path);
    }
    buf[size] = '\0';
    *out = buf;
    *out_len = size;
    return 0;
}

static char *path_join(const char *dir, const char *file)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s", dir, file) < 0)
        return NULL;
    return p;
}

static void file_free(struct mig_file *f)
{
    free(f->up_path);
    free(f->down_path);
    free(f->up_sql);
    free(f->down_sql);
}

void mig_set_free(struct mig_set *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_files; i++)
        file_free(&s->files[i]);
    free(s->files);
    free(s->dir);
    free(s);
}

static struct mig_file *set_find(struct mig_set *s, uint64_t vnum)
{
    for (size_t i = 0; i < s->n_files; i++)
        if (s->files[i].vnum == vnum)
            return &s->files[i];
    return NULL;
}

static int cmp_file(const void *a, const void *b)
{
    const struct mig_file *x = a, *y = b;
    return x->vnum < y->vnum ? -1 : x->vnum > y->vnum;
}

/* Adds (or completes) the entry for one parsed file name. */
static int set_add(struct mig_set *s, size_t *cap, const char *fname, const struct mig_name *nm,
                   struct pgsov_err *err)
{
    struct mig_file *f = set_find(s, nm->vnum);
    if (f && (strcmp(f->name, nm->name) != 0 || strcmp(f->version, nm->version) != 0))
        return pgsov_fail(err, "%s: version %s is used twice (%s_%s and %s_%s); every migration "
                          "needs its own version", s->dir, nm->version, f->version, f->name,
                          nm->version, nm->name);
    if (!f) {
        if (s->n_files >= MIG_MAX_FILES)
            return pgsov_fail(err, "%s: more than %d migrations", s->dir, MIG_MAX_FILES);
        if (s->n_files == *cap) {
            size_t ncap = *cap ? *cap * 2 : 16;
            struct mig_file *nf = realloc(s->files, ncap * sizeof *nf);
            if (!nf)
                return pgsov_fail(err, "out of memory");
            s->files = nf;
            *cap = ncap;
        }
        f = &s->files[s->n_files++];
        memset(f, 0, sizeof *f);
        pgsov_strlcpy(f->version, nm->version, sizeof f->version);
        pgsov_strlcpy(f->name, nm->name, sizeof f->name);
        f->vnum = nm->vnum;
        f->drizzle_when = -1;
    }
    char **slot = nm->direction == MIG_UP ? &f->up_path : &f->down_path;
    if (*slot)
        return pgsov_fail(err, "%s: two %s files for version %s (%s and %s)", s->dir,
                          nm->direction == MIG_UP ? "up" : "down", nm->version, *slot, fname);
    *slot = path_join(s->dir, fname);
    if (!*slot)
        return pgsov_fail(err, "out of memory");
    return 0;
}

static int set_load_contents(struct mig_set *s, struct pgsov_err *err)
{
    char prev[MIG_HEX_LEN + 1] = "";
    for (size_t i = 0; i < s->n_files; i++) {
        struct mig_file *f = &s->files[i];
        if (!f->up_path)
            return pgsov_fail(err, "%s: down file for version %s (%s) has no up file",
                              s->dir, f->version, f->down_path);
        if (read_file(f->up_path, &f->up_sql, &f->up_len, err) < 0)
            return -1;
        if (mig_sha256_hex(f->up_sql, f->up_len, f->checksum) < 0)
            return pgsov_fail(err, "sha256 failed");
        if (f->down_path) {
            if (read_file(f->down_path, &f->down_sql, &f->down_len, err) < 0)
                return -1;
            if (mig_sha256_hex(f->down_sql, f->down_len, f->down_checksum) < 0)
                return pgsov_fail(err, "sha256 failed");
        }
        if (mig_chain_next(prev, f->version, f->checksum, f->chain) < 0)
            return pgsov_fail(err, "sha256 failed");
        memcpy(prev, f->chain, sizeof prev);
    }
    return 0;
}

int mig_parse_drizzle_journal(const char *json, size_t len,
                              char (*tags)[MIG_NAME_MAX + MIG_VERSION_MAX], int64_t *whens,
                              size_t max, struct pgsov_err *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    if (!root)
        return pgsov_fail(err, "meta/_journal.json: line %d: %s", jerr.line, jerr.text);
    int rc = -1;
    json_t *dialect = json_object_get(root, "dialect");
    json_t *entries = json_object_get(root, "entries");
    if (!json_is_string(dialect) || strcmp(json_string_value(dialect), "postgresql") != 0) {
        pgsov_fail(err, "meta/_journal.json: dialect is not \"postgresql\"");
        goto out;
    }
    if (!json_is_array(entries)) {
        pgsov_fail(err, "meta/_journal.json: no \"entries\" array");
        goto out;
    }
    size_t n = json_array_size(entries);
    if (n > max) {
        pgsov_fail(err, "meta/_journal.json: %zu entries (at most %zu)", n, max);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(entries, i);
        json_t *idx = json_object_get(e, "idx");
        json_t *tag = json_object_get(e, "tag");
        json_t *when = json_object_get(e, "when");
        if (!json_is_integer(idx) || json_integer_value(idx) != (json_int_t)i) {
            pgsov_fail(err, "meta/_journal.json: entry %zu: \"idx\" missing or not %zu", i, i);
            goto out;
        }
        if (!json_is_string(tag) || json_string_length(tag) == 0 ||
            json_string_length(tag) >= MIG_NAME_MAX + MIG_VERSION_MAX) {
            pgsov_fail(err, "meta/_journal.json: entry %zu: \"tag\" missing or too long", i);
            goto out;
        }
        if (!json_is_integer(when) || json_integer_value(when) < 0) {
            pgsov_fail(err, "meta/_journal.json: entry %zu: \"when\" missing or negative", i);
            goto out;
        }
        const char *t = json_string_value(tag);
        if (strchr(t, '/') || strstr(t, "..")) {
            pgsov_fail(err, "meta/_journal.json: entry %zu: tag \"%s\" is not a file name", i, t);
            goto out;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(tags[j], t) == 0) {
                pgsov_fail(err, "meta/_journal.json: tag \"%s\" listed twice", t);
                goto out;
            }
        pgsov_strlcpy(tags[i], t, sizeof tags[i]);
        whens[i] = (int64_t)json_integer_value(when);
    }
    rc = (int)n;
out:
    json_decref(root);
    return rc;
}

static int scan_drizzle(struct mig_set *s, size_t *cap, struct pgsov_err *err)
{
    char *jpath = path_join(s->dir, "meta/_journal.json");
    if (!jpath)
        return pgsov_fail(err, "out of memory");
    char *text = NULL;
    size_t len = 0;
    int rc = read_file(jpath, &text, &len, err);
    free(jpath);
    if (rc < 0)
        return -1;
    enum { MAXJ = 2000 };
    char (*tags)[MIG_NAME_MAX + MIG_VERSION_MAX] = calloc(MAXJ, sizeof *tags);
    int64_t *whens = calloc(MAXJ, sizeof *whens);
    if (!tags || !whens) {
        free(text); free(tags); free(whens);
        return pgsov_fail(err, "out of memory");
    }
    int n = mig_parse_drizzle_journal(text, len, tags, whens, MAXJ, err);
    free(text);
    for (int i = 0; i < n && rc == 0; i++) {
        char fname[MIG_NAME_MAX + MIG_VERSION_MAX + 8];
        snprintf(fname, sizeof fname, "%s.sql", tags[i]);
        struct mig_name nm;
        int r = mig_parse_filename(fname, &nm, err);
        if (r <= 0) {
            if (r == 0)
                pgsov_fail(err, "meta/_journal.json: tag \"%s\" is not NNNN_name", tags[i]);
            rc = -1;
            break;
        }
        if (set_add(s, cap, fname, &nm, err) < 0) {
            rc = -1;
            break;
        }
        struct mig_file *f = &s->files[s->n_files - 1];
        f->drizzle_when = whens[i];
        pgsov_strlcpy(f->drizzle_tag, tags[i], sizeof f->drizzle_tag);
    }
    free(tags);
    free(whens);
    return n < 0 ? -1 : rc;
}

int mig_scan(const char *dir, bool drizzle_force, bool drizzle_auto, struct mig_set **out,
             struct pgsov_err *err)
{
    *out = NULL;
    struct mig_set *s = calloc(1, sizeof *s);
    if (!s || !(s->dir = strdup(dir))) {
        free(s);
        return pgsov_fail(err, "out of memory");
    }
    size_t cap = 0;
    char *jpath = path_join(dir, "meta/_journal.json");
    if (!jpath) {
        mig_set_free(s);
        return pgsov_fail(err, "out of memory");
    }
    struct stat st;
    s->drizzle = drizzle_force || (drizzle_auto && stat(jpath, &st) == 0);
    free(jpath);

    DIR *d = opendir(dir);
    if (!d) {
        pgsov_fail(err, "migrations folder %s: %s (set migrations_dir in the env section or "
                   "pass --dir)", dir, strerror(errno));
        mig_set_free(s);
        return -1;
    }
    if (s->drizzle && scan_drizzle(s, &cap, err) < 0) {
        closedir(d);
        mig_set_free(s);
        return -1;
    }
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        struct mig_name nm;
        struct pgsov_err e2;
        int r = mig_parse_filename(de->d_name, &nm, &e2);
        if (r < 0) {
            rc = pgsov_fail(err, "%s: %s", dir, e2.msg);
        } else if (r == 1 && s->drizzle) {
            struct mig_file *f = set_find(s, nm.vnum);
            if (nm.direction == MIG_UP) {
                if (!f || strcmp(f->name, nm.name) != 0)
                    rc = pgsov_fail(err, "%s: %s is not listed in meta/_journal.json; drizzle-kit "
                                    "would not apply it", dir, de->d_name);
            } else {
                rc = set_add(s, &cap, de->d_name, &nm, err);
            }
        } else if (r == 1) {
            rc = set_add(s, &cap, de->d_name, &nm, err);
        }
    }
    closedir(d);
    if (rc == 0 && s->n_files > 1)
        qsort(s->files, s->n_files, sizeof *s->files, cmp_file);
    if (rc == 0)
        rc = set_load_contents(s, err);
    if (rc < 0) {
        mig_set_free(s);
        return -1;
    }
    *out = s;
    return 0;
}

/* ---- statements ------------------------------------------------------------------------ */

void mig_names_free(struct mig_names *names)
{
    if (!names)
        return;
    for (size_t i = 0; i < names->n; i++)
        free(names->v[i]);
    free(names->v);
    names->v = NULL;
    names->n = names->cap = 0;
}

static int names_add(struct mig_names *names, const char *name)
{
    if (!names)
        return 0;
    if (names->n == names->cap) {
        size_t ncap = names->cap ? names->cap * 2 : 8;
        char **nv = realloc(names->v, ncap * sizeof *nv);
        if (!nv)
            return -1;
        names->v = nv;
        names->cap = ncap;
    }
    if (!(names->v[names->n] = strdup(name)))
        return -1;
    names->n++;
    return 0;
}

static bool names_has(const struct mig_names *names, const char *name)
{
    for (size_t i = 0; names && i < names->n; i++)
        if (strcmp(names->v[i], name) == 0)
            return true;
    return false;
}

/* "schema.rel" or "rel" from a RangeVar JSON object. */
static void rangevar_name(json_t *rv, char *buf, size_t size)
{
    const char *schema = json_string_value(json_object_get(rv, "schemaname"));
    const char *rel = json_string_value(json_object_get(rv, "relname"));
    if (!rel)
        rel = "?";
    if (schema)
        snprintf(buf, size, "%s.%s", schema, rel);
    else
        snprintf(buf, size, "%s", rel);
}

static int add_finding(struct mig_stmt *st, enum mig_finding_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int add_finding(struct mig_stmt *st, enum mig_finding_kind kind, const char *fmt, ...)
{
    struct mig_finding *nf = realloc(st->findings, (st->n_findings + 1) * sizeof *nf);
    if (!nf)
        return -1;
    st->findings = nf;
    struct mig_finding *f = &nf[st->n_findings++];
    f->kind = kind;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->text, sizeof f->text, fmt, ap);
    va_end(ap);
    return 0;
}

static bool defelem_list_has(json_t *list, const char *name)
{
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item) {
        const char *d = json_string_value(json_object_get(json_object_get(item, "DefElem"), "defname"));
        if (d && strcmp(d, name) == 0)
            return true;
    }
    return false;
}

static const char *str(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "";
}

static bool flag(json_t *obj, const char *key)
{
    return json_is_true(json_object_get(obj, key));
}

/* Does a ColumnDef have a constraint of this contype? */
static bool coldef_has(json_t *coldef, const char *contype)
{
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(coldef, "constraints"), i, c)
        if (strcmp(str(json_object_get(c, "Constraint"), "contype"), contype) == 0)
            return true;
    return false;
}

static const char *objtype_word(const char *objtype)
{
    static const struct { const char *type, *word; } map[] = {
        { "OBJECT_TABLE", "table" }, { "OBJECT_INDEX", "index" }, { "OBJECT_SCHEMA", "schema" },
        { "OBJECT_VIEW", "view" }, { "OBJECT_MATVIEW", "materialized view" },
        { "OBJECT_SEQUENCE", "sequence" }, { "OBJECT_TYPE", "type" },
        { "OBJECT_FUNCTION", "function" }, { "OBJECT_COLUMN", "column" },
        { "OBJECT_TRIGGER", "trigger" }, { "OBJECT_POLICY", "policy" },
        { "OBJECT_EXTENSION", "extension" }, { "OBJECT_DOMAIN", "domain" },
        { "OBJECT_FOREIGN_TABLE", "foreign table" }, { "OBJECT_TABCONSTRAINT", "constraint" },
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i].type, objtype) == 0)
            return map[i].word;
    return "object";
}

/* Looks at one parsed statement ({"StmtName": {...}}) and sets the flags and findings. */
static int classify(struct mig_stmt *st, json_t *stmt, struct mig_names *created)
{
    const char *tag = NULL;
    json_t *node = NULL;
    void *iter = json_object_iter(stmt);
    if (iter) {
        tag = json_object_iter_key(iter);
        node = json_object_iter_value(iter);
    }
    if (!tag)
        return 0;
    pgsov_strlcpy(st->tag, tag, sizeof st->tag);
    char rel[200];
    int rc = 0;

    if (strcmp(tag, "IndexStmt") == 0) {
        rangevar_name(json_object_get(node, "relation"), rel, sizeof rel);
        if (flag(node, "concurrent"))
            st->non_transactional = true;
        else if (!names_has(created, rel))
            rc = add_finding(st, MIG_FIND_LOCKING, "CREATE INDEX on existing table %s without "
                             "CONCURRENTLY blocks writes while it builds", rel);
    } else if (strcmp(tag, "DropStmt") == 0) {
        const char *what = objtype_word(str(node, "removeType"));
        bool cascade = strcmp(str(node, "behavior"), "DROP_CASCADE") == 0;
        if (flag(node, "concurrent"))
            st->non_transactional = true;
        if (strcmp(str(node, "removeType"), "OBJECT_INDEX") == 0 && !flag(node, "concurrent"))
            rc = add_finding(st, MIG_FIND_LOCKING, "DROP INDEX without CONCURRENTLY takes an "
                             "ACCESS EXCLUSIVE lock on the table");
        else if (strcmp(str(node, "removeType"), "OBJECT_INDEX") != 0)
            rc = add_finding(st, MIG_FIND_DESTRUCTIVE, "DROP %s%s", what,
                             cascade ? " ... CASCADE (also drops dependent objects)" : "");
    } else if (strcmp(tag, "TruncateStmt") == 0) {
        rc = add_finding(st, MIG_FIND_DESTRUCTIVE, "TRUNCATE removes every row");
    } else if (strcmp(tag, "DeleteStmt") == 0 || strcmp(tag, "UpdateStmt") == 0) {
        rangevar_name(json_object_get(node, "relation"), rel, sizeof rel);
        if (!json_object_get(node, "whereClause"))
            rc = add_finding(st, MIG_FIND_DESTRUCTIVE, "%s without WHERE on %s touches every row",
                             tag[0] == 'D' ? "DELETE" : "UPDATE", rel);
    } else if (strcmp(tag, "AlterTableStmt") == 0) {
        rangevar_name(json_object_get(node, "relation"), rel, sizeof rel);
        bool is_new = names_has(created, rel);
        size_t i;
        json_t *cmd;
        json_array_foreach(json_object_get(node, "cmds"), i, cmd) {
            json_t *c = json_object_get(cmd, "AlterTableCmd");
            const char *sub = str(c, "subtype");
            const char *col = str(c, "name");
            json_t *def = json_object_get(c, "def");
            if (rc < 0)
                break;
            if (strcmp(sub, "AT_DropColumn") == 0)
                rc = add_finding(st, MIG_FIND_DESTRUCTIVE, "DROP COLUMN %s.%s", rel, col);
            else if (is_new)
                continue;
            else if (strcmp(sub, "AT_AlterColumnType") == 0)
                rc = add_finding(st, MIG_FIND_LOCKING, "type change of %s.%s rewrites or scans "
                                 "the table under ACCESS EXCLUSIVE lock", rel, col);
            else if (strcmp(sub, "AT_SetNotNull") == 0)
                rc = add_finding(st, MIG_FIND_LOCKING, "SET NOT NULL on %s.%s scans the table "
                                 "under ACCESS EXCLUSIVE lock", rel, col);
            else if (strcmp(sub, "AT_AddColumn") == 0) {
                json_t *cd = json_object_get(def, "ColumnDef");
                if (coldef_has(cd, "CONSTR_NOTNULL") && !coldef_has(cd, "CONSTR_DEFAULT") &&
                    !coldef_has(cd, "CONSTR_IDENTITY") && !coldef_has(cd, "CONSTR_GENERATED"))
                    rc = add_finding(st, MIG_FIND_BREAKING, "ADD COLUMN %s.%s NOT NULL without "
                                     "DEFAULT fails on a non-empty table and breaks inserts "
                                     "that omit it", rel, str(cd, "colname"));
            } else if (strcmp(sub, "AT_AddConstraint") == 0) {
                json_t *con = json_object_get(def, "Constraint");
                const char *ct = str(con, "contype");
                if ((strcmp(ct, "CONSTR_CHECK") == 0 || strcmp(ct, "CONSTR_FOREIGN") == 0) &&
                    !flag(con, "skip_validation"))
                    rc = add_finding(st, MIG_FIND_LOCKING, "constraint on %s validated while "
                                     "locked; add it NOT VALID, then VALIDATE CONSTRAINT", rel);
                else if (strcmp(ct, "CONSTR_PRIMARY") == 0 || strcmp(ct, "CONSTR_UNIQUE") == 0)
                    rc = add_finding(st, MIG_FIND_LOCKING, "PRIMARY KEY/UNIQUE on %s builds an "
                                     "index while writes are blocked", rel);
            } else if (strcmp(sub, "AT_DropConstraint") == 0)
                rc = add_finding(st, MIG_FIND_BREAKING, "DROP CONSTRAINT %s on %s", col, rel);
        }
    } else if (strcmp(tag, "RenameStmt") == 0) {
        rc = add_finding(st, MIG_FIND_BREAKING, "RENAME %s to %s breaks code that uses the "
                         "old name", objtype_word(str(node, "renameType")), str(node, "newname"));
    } else if (strcmp(tag, "CreateStmt") == 0) {
        rangevar_name(json_object_get(node, "relation"), rel, sizeof rel);
        if (names_add(created, rel) < 0)
            return -1;
    } else if (strcmp(tag, "ReindexStmt") == 0) {
        const char *kind = str(node, "kind");
        if (defelem_list_has(json_object_get(node, "params"), "concurrently") ||
            strcmp(kind, "REINDEX_OBJECT_DATABASE") == 0 || strcmp(kind, "REINDEX_OBJECT_SYSTEM") == 0)
            st->non_transactional = true;
        else
            rc = add_finding(st, MIG_FIND_LOCKING, "REINDEX without CONCURRENTLY blocks writes");
    } else if (strcmp(tag, "VacuumStmt") == 0) {
        if (flag(node, "is_vacuumcmd"))
            st->non_transactional = true;
        if (defelem_list_has(json_object_get(node, "options"), "full"))
            rc = add_finding(st, MIG_FIND_LOCKING, "VACUUM FULL rewrites under ACCESS EXCLUSIVE lock");
    } else if (strcmp(tag, "ClusterStmt") == 0) {
        if (!json_object_get(node, "relation"))
            st->non_transactional = true;
        rc = add_finding(st, MIG_FIND_LOCKING, "CLUSTER rewrites under ACCESS EXCLUSIVE lock");
    } else if (strcmp(tag, "CreatedbStmt") == 0 || strcmp(tag, "DropdbStmt") == 0 ||
               strcmp(tag, "AlterSystemStmt") == 0 || strcmp(tag, "CreateTableSpaceStmt") == 0 ||
               strcmp(tag, "DropTableSpaceStmt") == 0 ||
               strcmp(tag, "CreateSubscriptionStmt") == 0 ||
               strcmp(tag, "DropSubscriptionStmt") == 0) {
        st->non_transactional = true;
        if (strcmp(tag, "DropdbStmt") == 0)
            rc = add_finding(st, MIG_FIND_DESTRUCTIVE, "DROP DATABASE");
    } else if (strcmp(tag, "AlterEnumStmt") == 0 && json_object_get(node, "newVal") &&
               !json_object_get(node, "oldVal")) {
        rc = add_finding(st, MIG_FIND_NOTE, "ALTER TYPE ... ADD VALUE: the new value cannot be "
                         "used until this file's transaction commits; use it in a later file");
    } else if (strcmp(tag, "VariableSetStmt") == 0) {
        st->is_set = true;
    }
    return rc;
}

void mig_stmts_free(struct mig_stmt *stmts, size_t n)
{
    for (size_t i = 0; stmts && i < n; i++)
        free(stmts[i].findings);
    free(stmts);
}

static int line_of(const char *sql, size_t pos)
{
    int line = 1;
    for (size_t i = 0; i < pos; i++)
        if (sql[i] == '\n')
            line++;
    return line;
}

/* Offset of the first SQL token after whitespace and comments. */
static size_t skip_space_comments(const char *s, size_t len)
{
    size_t i = 0;
    for (;;) {
        while (i < len && isspace((unsigned char)s[i]))
            i++;
        if (i + 1 < len && s[i] == '-' && s[i + 1] == '-') {
            while (i < len && s[i] != '\n')
                i++;
        } else if (i + 1 < len && s[i] == '/' && s[i + 1] == '*') {
            size_t depth = 1;
            i += 2;
            while (i < len && depth > 0) {
                if (i + 1 < len && s[i] == '/' && s[i + 1] == '*') { depth++; i += 2; }
                else if (i + 1 < len && s[i] == '*' && s[i + 1] == '/') { depth--; i += 2; }
                else i++;
            }
        } else {
            return i;
        }
    }
}

int mig_analyze_sql(const char *sql, size_t len, struct mig_names *created,
                    struct mig_stmt **out, size_t *n_out, struct pgsov_err *err)
{
    *out = NULL;
    *n_out = 0;
    /* libpg_query wants a NUL-terminated string; the file text is, but be exact about len. */
    char *text = strndup(sql, len);
    if (!text)
        return pgsov_fail(err, "out of memory");
    PgQuerySplitResult split = pg_query_split_with_parser(text);
    int rc = 0;
    if (split.error) {
        rc = pgsov_fail(err, "line %d: syntax error: %s (PostgreSQL 15 grammar)",
                        line_of(text, split.error->cursorpos > 0 ? (size_t)split.error->cursorpos - 1 : 0),
                        split.error->message);
        goto out;
    }
    struct mig_stmt *stmts = calloc(split.n_stmts ? (size_t)split.n_stmts : 1, sizeof *stmts);
    if (!stmts) {
        rc = pgsov_fail(err, "out of memory");
        goto out;
    }
    size_t n = 0;
    for (int i = 0; i < split.n_stmts && rc == 0; i++) {
        size_t loc = (size_t)split.stmts[i]->stmt_location;
        size_t slen = (size_t)split.stmts[i]->stmt_len;
        if (loc > len || slen > len - loc) {
            rc = pgsov_fail(err, "statement %d: location out of range", i + 1);
            break;
        }
        size_t skip = skip_space_comments(text + loc, slen);
        if (skip == slen)
            continue;                                   /* only comments */
        struct mig_stmt *st = &stmts[n++];
        st->sql = sql + loc + skip;
        st->len = slen - skip;
        st->line = line_of(text, loc + skip);
        char *one = strndup(text + loc, slen);
        if (!one) {
            rc = pgsov_fail(err, "out of memory");
            break;
        }
        PgQueryParseResult pr = pg_query_parse(one);
        free(one);
        if (pr.error) {
            rc = pgsov_fail(err, "line %d: syntax error: %s (PostgreSQL 15 grammar)", st->line,
                            pr.error->message);
        } else {
            json_error_t jerr;
            json_t *tree = json_loads(pr.parse_tree, 0, &jerr);
            json_t *s0 = json_object_get(json_array_get(json_object_get(tree, "stmts"), 0), "stmt");
            if (!tree || !s0)
                rc = pgsov_fail(err, "line %d: unexpected parse tree", st->line);
            else if (classify(st, s0, created) < 0)
                rc = pgsov_fail(err, "out of memory");
            json_decref(tree);
        }
        pg_query_free_parse_result(pr);
    }
    if (rc < 0) {
        mig_stmts_free(stmts, n);
        goto out;
    }
    *out = stmts;
    *n_out = n;
out:
    pg_query_free_split_result(split);
    free(text);
    return rc;
}

int mig_decide_transaction(const char *file, const struct mig_stmt *stmts, size_t n,
                           enum mig_tx header, bool *transactional, struct pgsov_err *err)
{
    const struct mig_stmt *nontx = NULL, *other = NULL;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(stmts[i].tag, "TransactionStmt") == 0)
            return pgsov_fail(err, "%s line %d: BEGIN/COMMIT/ROLLBACK/SAVEPOINT in a migration; "
                              "pgsov runs each file in its own transaction — remove them "
                              "(or use '-- pgsov: transaction=off' and no transaction control)",
                              file, stmts[i].line);
        if (stmts[i].non_transactional) {
            if (!nontx)
                nontx = &stmts[i];
        } else if (!stmts[i].is_set && !other) {
            other = &stmts[i];
        }
    }
    if (nontx && other)
        return pgsov_fail(err, "%s: line %d (%s) cannot run inside a transaction, and line %d "
                          "(%s) should; move the non-transactional statement into a file of "
                          "its own", file, nontx->line, nontx->tag, other->line, other->tag);
    if (nontx && header == MIG_TX_ON)
        return pgsov_fail(err, "%s: header says transaction=on, but line %d (%s) cannot run "
                          "inside a transaction", file, nontx->line, nontx->tag);
    *transactional = header == MIG_TX_OFF ? false : header == MIG_TX_ON ? true : !nontx;
    return 0;
}

/* ---- status ------------------------------------------------------------------------------ */

const char *mig_state_name(enum mig_state s)
{
    switch (s) {
    case MIG_STATE_APPLIED:      return "applied";
    case MIG_STATE_PENDING:      return "pending";
    case MIG_STATE_DRIFTED:      return "drifted";
    case MIG_STATE_MISSING:      return "missing";
    case MIG_STATE_OUT_OF_ORDER: return "out-of-order";
    }
    return "?";
}

static int cmp_row(const void *a, const void *b)
{
    const struct mig_status_row *x = a, *y = b;
    return x->vnum < y->vnum ? -1 : x->vnum > y->vnum;
}

int mig_status(const struct mig_set *set, const struct mig_applied *applied, size_t n_applied,
               struct mig_status_row **rows_out, size_t *n_rows, struct pgsov_err *err)
{
    size_t cap = set->n_files + n_applied;
    struct mig_status_row *rows = calloc(cap ? cap : 1, sizeof *rows);
    if (!rows)
        return pgsov_fail(err, "out of memory");
    uint64_t newest = 0;
    bool any = false;
    for (size_t j = 0; j < n_applied; j++)
        if (!any || applied[j].vnum > newest) {
            newest = applied[j].vnum;
            any = true;
        }
    size_t n = 0;
    for (size_t i = 0; i < set->n_files; i++) {
        const struct mig_file *f = &set->files[i];
        const struct mig_applied *a = NULL;
        for (size_t j = 0; j < n_applied && !a; j++)
            if (applied[j].vnum == f->vnum)
                a = &applied[j];
        struct mig_status_row *r = &rows[n++];
        pgsov_strlcpy(r->version, f->version, sizeof r->version);
        pgsov_strlcpy(r->name, f->name, sizeof r->name);
        r->vnum = f->vnum;
        r->file = f;
        r->applied = a;
        if (a)
            r->state = strcmp(a->checksum, f->checksum) == 0 ? MIG_STATE_APPLIED : MIG_STATE_DRIFTED;
        else
            r->state = any && f->vnum < newest ? MIG_STATE_OUT_OF_ORDER : MIG_STATE_PENDING;
    }
    for (size_t j = 0; j < n_applied; j++) {
        bool found = false;
        for (size_t i = 0; i < set->n_files && !found; i++)
            found = set->files[i].vnum == applied[j].vnum;
        if (found)
            continue;
        struct mig_status_row *r = &rows[n++];
        pgsov_strlcpy(r->version, applied[j].version, sizeof r->version);
        pgsov_strlcpy(r->name, applied[j].name, sizeof r->name);
        r->vnum = applied[j].vnum;
        r->applied = &applied[j];
        r->state = MIG_STATE_MISSING;
    }
    qsort(rows, n, sizeof *rows, cmp_row);
    *rows_out = rows;
    *n_rows = n;
    return 0;
}

int mig_status_check(const struct mig_status_row *rows, size_t n, bool allow_out_of_order,
                     struct pgsov_err *err)
{
    for (size_t i = 0; i < n; i++) {
        const struct mig_status_row *r = &rows[i];
        switch (r->state) {
        case MIG_STATE_DRIFTED:
            return pgsov_fail(err, "drift: %s_%s was applied with checksum %.12s… but the file "
                              "now has %.12s…; an applied migration must not change — restore "
                              "the file and put the change in a new migration",
                              r->version, r->name, r->applied->checksum, r->file->checksum);
        case MIG_STATE_MISSING:
            return pgsov_fail(err, "missing: %s_%s was applied (%s) but its file is not in the "
                              "migrations folder; restore the file", r->version, r->name,
                              r->applied->applied_at);
        case MIG_STATE_OUT_OF_ORDER:
            if (!allow_out_of_order)
                return pgsov_fail(err, "out of order: %s_%s is pending but older than the newest "
                                  "applied migration; renumber it after the newest, or pass "
                                  "--allow-out-of-order", r->version, r->name);
            break;
        default:
            break;
        }
    }
    return 0;
}

/* ---- plans ---------------------------------------------------------------------------------- */

void mig_plan_free(struct mig_plan *p)
{
    for (size_t i = 0; p->steps && i < p->n_steps; i++)
        mig_stmts_free(p->steps[i].stmts, p->steps[i].n_stmts);
    free(p->steps);
    p->steps = NULL;
    p->n_steps = 0;
}

int mig_plan_build(enum mig_plan_kind kind, const char *environment,
                   const struct mig_file *const *files, size_t n,
                   const struct mig_settings *defaults, struct mig_plan *out,
                   struct pgsov_err *err)
{
    memset(out, 0, sizeof *out);
    out->kind = kind;
    pgsov_strlcpy(out->environment, environment, sizeof out->environment);
    if (kind == MIG_PLAN_ROLLBACK)
        for (size_t i = 0; i < n; i++)
            if (!files[i]->down_path)
                return pgsov_fail(err, "rollback stopped before anything ran: %s_%s has no down "
                                  "file (%s_%s.down.sql); write one, or fix forward",
                                  files[i]->version, files[i]->name, files[i]->version,
                                  files[i]->name);
    out->steps = calloc(n ? n : 1, sizeof *out->steps);
    if (!out->steps)
        return pgsov_fail(err, "out of memory");
    struct mig_names created = { 0 };
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const struct mig_file *f = files[i];
        struct mig_plan_step *st = &out->steps[out->n_steps++];
        st->file = f;
        st->direction = kind == MIG_PLAN_APPLY ? MIG_UP : MIG_DOWN;
        st->settings = *defaults;
        const char *sql = st->direction == MIG_UP ? f->up_sql : f->down_sql;
        size_t len = st->direction == MIG_UP ? f->up_len : f->down_len;
        const char *path = st->direction == MIG_UP ? f->up_path : f->down_path;
        struct pgsov_err e2;
        if (mig_parse_header(sql, len, &st->settings, &e2) < 0) {
            rc = pgsov_fail(err, "%s: %s", path, e2.msg);
            break;
        }
        if (mig_analyze_sql(sql, len, &created, &st->stmts, &st->n_stmts, &e2) < 0) {
            rc = pgsov_fail(err, "%s: %s", path, e2.msg);
            break;
        }
        rc = mig_decide_transaction(path, st->stmts, st->n_stmts, st->settings.transaction,
                                    &st->transactional, err);
        if (rc == 0 && !st->transactional && st->n_stmts > 1 && st->stmts[0].n_findings == 0)
            /* Attach the note to the first statement so the plan shows it. */
            rc = add_finding(&st->stmts[0], MIG_FIND_NOTE, "runs outside a transaction, one "
                             "statement at a time: if statement k fails, statements before it "
                             "stay applied") < 0 ? pgsov_fail(err, "out of memory") : 0;
    }
    mig_names_free(&created);
    if (rc == 0)
        rc = mig_plan_hash(out, out->hash) < 0 ? pgsov_fail(err, "sha256 failed") : 0;
    if (rc < 0)
        mig_plan_free(out);
    return rc;
}

int mig_plan_hash(const struct mig_plan *p, char out[MIG_HEX_LEN + 1])
{
    size_t cap = 128 + strlen(p->environment) + p->n_steps * (MIG_VERSION_MAX + MIG_NAME_MAX + MIG_HEX_LEN + 16);
    char *buf = malloc(cap);
    if (!buf)
        return -1;
    size_t len = (size_t)snprintf(buf, cap, "pgsov-plan-v1\nkind=%s\nenv=%s\n",
                                  p->kind == MIG_PLAN_APPLY ? "apply" : "rollback", p->environment);
    for (size_t i = 0; i < p->n_steps && len < cap; i++) {
        const struct mig_plan_step *s = &p->steps[i];
        bool up = s->direction == MIG_UP;
        len += (size_t)snprintf(buf + len, cap - len, "%s %s %s %s\n", s->file->version,
                                s->file->name, up ? "up" : "down",
                                up ? s->file->checksum : s->file->down_checksum);
    }
    int rc = len < cap ? mig_sha256_hex(buf, len, out) : -1;
    free(buf);
    return rc;
}

bool mig_approval_matches(const char *given, const char *hash)
{
    size_t n = strlen(given);
    if (n < 12 || n > MIG_HEX_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)given[i]) || tolower((unsigned char)given[i]) != hash[i])
            return false;
    return true;
}

size_t mig_plan_count(const struct mig_plan *p, enum mig_finding_kind kind)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n_steps; i++)
        for (size_t j = 0; j < p->steps[i].n_stmts; j++)
            for (size_t k = 0; k < p->steps[i].stmts[j].n_findings; k++)
                n += p->steps[i].stmts[j].findings[k].kind == kind;
    return n;
}

static const char *finding_word(enum mig_finding_kind k)
{
    switch (k) {
    case MIG_FIND_DESTRUCTIVE: return "DESTRUCTIVE";
    case MIG_FIND_LOCKING:     return "LOCKING";
    case MIG_FIND_BREAKING:    return "BREAKING";
    case MIG_FIND_NOTE:        return "note";
    }
    return "?";
}

static void print_duration(FILE *out, int ms)
{
    if (ms == 0)
        fprintf(out, "none");
    else if (ms % 1000 == 0)
        fprintf(out, "%ds", ms / 1000);
    else
        fprintf(out, "%dms", ms);
}

void mig_plan_print(const struct mig_plan *p, FILE *out, bool show_statements)
{
    bool apply = p->kind == MIG_PLAN_APPLY;
    fprintf(out, "%s plan for environment %s: %zu file%s\n", apply ? "Migration" : "Rollback",
            p->environment, p->n_steps, p->n_steps == 1 ? "" : "s");
    for (size_t i = 0; i < p->n_steps; i++) {
        const struct mig_plan_step *s = &p->steps[i];
        fprintf(out, "\n  %s %s_%s%s  sha256 %.12s  %s, lock_timeout ", apply ? "apply" : "revert",
                s->file->version, s->file->name, apply ? "" : " (down)",
                apply ? s->file->checksum : s->file->down_checksum,
                s->transactional ? "one transaction" : "NO transaction");
        print_duration(out, s->settings.lock_timeout_ms);
        fprintf(out, ", statement_timeout ");
        print_duration(out, s->settings.statement_timeout_ms);
        fprintf(out, "\n");
        for (size_t j = 0; j < s->n_stmts; j++) {
            const struct mig_stmt *st = &s->stmts[j];
            if (show_statements) {
                size_t eol = 0;
                while (eol < st->len && st->sql[eol] != '\n')
                    eol++;
                int shown = eol > 100 ? 100 : (int)eol;
                fprintf(out, "    %4d  %.*s%s\n", st->line, shown, st->sql,
                        (size_t)shown < st->len ? " …" : "");
            }
            for (size_t k = 0; k < st->n_findings; k++)
                fprintf(out, "          %s line %d: %s\n", finding_word(st->findings[k].kind),
                        st->line, st->findings[k].text);
        }
    }
    fprintf(out, "\n  destructive: %zu, locking: %zu, breaking: %zu\n",
            mig_plan_count(p, MIG_FIND_DESTRUCTIVE), mig_plan_count(p, MIG_FIND_LOCKING),
            mig_plan_count(p, MIG_FIND_BREAKING));
    fprintf(out, "plan hash: %s\n", p->hash);
}
