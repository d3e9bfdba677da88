/* config.c — proxy.ini into one immutable struct config (see config.h).
 *
 * inih does the INI syntax; this file owns the keys, their defaults, ${VAR} expansion and
 * validation. Line numbers come from our own line reader, because Debian's inih is built
 * without INI_HANDLER_LINENO. It does not open sockets or files other than the config, and
 * it does not load rules: the proxy does that after the config is valid. */
#include "pgsov/config.h"
#include "pgsov/env.h"

#include <ctype.h>
#include <math.h>
#include <errno.h>
#include <ini.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct loader {
    struct config *cfg;
    const char *name;           /* file name for messages */
    const char *text;           /* whole file */
    size_t pos;
    int line;                   /* line of the text most recently handed to inih */
    struct env_config *cur_env; /* section being filled, or NULL for [proxy] */
    bool in_proxy;
    struct pgsov_err *err;
    bool failed;
    bool approval_set;          /* require_approval given in the current env section */
    bool header_seen;           /* a [section] line was read since the last key */
    bool continuation;          /* the line just read is indented: it continues a value */
    unsigned flags;             /* CONFIG_* */
};

/* ---- small helpers ------------------------------------------------------------------- */


static void free_list(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

static int loader_fail(struct loader *ld, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int loader_fail(struct loader *ld, const char *fmt, ...)
{
    if (!ld->failed) {
        char reason[400];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(reason, sizeof reason, fmt, ap);
        va_end(ap);
        pgsov_fail(ld->err, "%s:%d: %s", ld->name, ld->line, reason);
        ld->failed = true;
    }
    return 0;   /* inih: stop */
}

/* Expands ${VAR} and ${VAR:-default}. Undefined variables without default are an error:
 * a secret that silently became "" is worse than a refusal to start. */
static char *expand_vars(struct loader *ld, const char *value)
{
    size_t cap = strlen(value) + 64, len = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    for (const char *p = value; *p;) {
        const char *piece = p;
        size_t piece_len = 1;
        char *heap = NULL;
        if (p[0] == '$' && p[1] == '{') {
            const char *end = strchr(p + 2, '}');
            if (!end) {
                free(out);
                loader_fail(ld, "unterminated ${ in value");
                return NULL;
            }
            char name[128];
            size_t nlen = (size_t)(end - (p + 2));
            if (nlen == 0 || nlen >= sizeof name) {
                free(out);
                loader_fail(ld, "bad variable reference in value");
                return NULL;
            }
            memcpy(name, p + 2, nlen);
            name[nlen] = '\0';
            const char *def = NULL;
            char *colon = strstr(name, ":-");
            if (colon) {
                *colon = '\0';
                def = colon + 2;
            }
            const char *v = getenv(name);
            if (!v || !*v)              /* set but empty counts as unset: never an empty secret */
                v = def;
            if (!v) {
                free(out);
                loader_fail(ld, "environment variable %s is not set or empty (referenced as ${%s}; "
                            "${%s:-} allows an empty value)", name, name, name);
                return NULL;
            }
            heap = strdup(v);
            piece = heap;
            piece_len = strlen(v);
            p = end + 1;
        } else {
            p++;
        }
        if (len + piece_len + 1 > cap) {
            cap = (len + piece_len + 1) * 2;
            char *n = realloc(out, cap);
            if (!n) {
                free(out);
                free(heap);
                return NULL;
            }
            out = n;
        }
        memcpy(out + len, piece, piece_len);
        len += piece_len;
        free(heap);
    }
    out[len] = '\0';
    return out;
}

/* Splits "a, b ,c" into a fresh array of trimmed, non-empty words. */
/* Appends value's comma-separated items to the list *out of *n_out. */
static int split_list(const char *value, char ***out, size_t *n_out)
{
    char **list = *out;
    size_t n = *n_out;
    const char *p = value;
    while (*p) {
        while (*p == ',' || isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && isspace((unsigned char)end[-1]))
            end--;
        char **grown = realloc(list, (n + 1) * sizeof *list);
        if (!grown) {
            free_list(list, n);
            *out = NULL;
            *n_out = 0;
            return -1;
        }
        list = grown;
        list[n] = strndup(start, (size_t)(end - start));
        if (!list[n]) {
            free_list(list, n);
            *out = NULL;
            *n_out = 0;
            return -1;
        }
        n++;
    }
    *out = list;
    *n_out = n;
    return 0;
}

static int parse_int(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* "30", "30s", "500ms", "2m", "1h" → milliseconds. */
static int parse_duration_ms(const char *s, int *out)
{
    /* plain decimal digits with an optional fraction: strtod alone would take "nan", "inf",
     * "0x10" and "1e3" */
    const char *num_end = s + strspn(s, "0123456789");
    if (num_end == s)
        return -1;
    if (*num_end == '.') {
        size_t frac = strspn(num_end + 1, "0123456789");
        if (frac == 0)
            return -1;
        num_end += 1 + frac;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end != num_end || !isfinite(v))
        return -1;
    double mult = 1000;
    if (*end == '\0' || strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
        mult = 60000;
    else if (strcmp(end, "h") == 0)
        mult = 3600000;
    else
        return -1;
    double ms = v * mult;
    if (ms > 2147483647.0 || (v > 0 && ms < 1))      /* a non-zero value must not round to "off" */
        return -1;
    *out = (int)ms;
    return 0;
}

/* "64MB", "1048576", "16kB" → bytes. */
static int parse_size(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || s[0] == '-')
        return -1;
    uint64_t mult = 1;
    if (*end == '\0' || strcasecmp(end, "B") == 0)
        mult = 1;
    else if (strcasecmp(end, "kB") == 0 || strcasecmp(end, "K") == 0)
        mult = 1024;
    else if (strcasecmp(end, "MB") == 0 || strcasecmp(end, "M") == 0)
        mult = 1024 * 1024;
    else if (strcasecmp(end, "GB") == 0 || strcasecmp(end, "G") == 0)
        mult = 1024ull * 1024 * 1024;
    else
        return -1;
    if (v > max / mult)
        return -1;
    *out = v * mult;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    if (!strcasecmp(s, "on") || !strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcmp(s, "1"))
        *out = true;
    else if (!strcasecmp(s, "off") || !strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcmp(s, "0"))
        *out = false;
    else
        return -1;
    return 0;
}

static const char *const sslmode_names[] = {
    [SSLMODE_DISABLE] = "disable",
    [SSLMODE_REQUIRE] = "require",
    [SSLMODE_VERIFY_CA] = "verify-ca",
    [SSLMODE_VERIFY_FULL] = "verify-full",
};

const char *sslmode_name(enum sslmode m)
{
    return (unsigned)m <= SSLMODE_VERIFY_FULL ? sslmode_names[m] : "invalid";
}

int sslmode_parse(const char *s, enum sslmode *out)
{
    for (int m = SSLMODE_DISABLE; m <= SSLMODE_VERIFY_FULL; m++) {
        if (strcasecmp(s, sslmode_names[m]) == 0) {
            *out = (enum sslmode)m;
            return 0;
        }
    }
    return -1;
}

static int parse_client_tls(const char *s, enum client_tls_mode *out)
{
    static const char *const names[] = { "disable", "allow", "require", "verify-ca" };
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, names[i]) == 0) {
            *out = (enum client_tls_mode)i;
            return 0;
        }
    }
    return -1;
}

/* ---- key handlers --------------------------------------------------------------------- */

#define SET_STR(field) do { free(field); field = v; v = NULL; } while (0)
/* An indented line continues the key's list (inih hands it over as the same key again). */
#define SET_LIST(field, count) do {                                         \
        if (!ld->continuation) {                                            \
            free_list(field, count); field = NULL; count = 0;               \
        }                                                                   \
        if (split_list(v, &field, &count) != 0) goto oom;                   \
    } while (0)

static int handle_proxy_key(struct loader *ld, const char *key, char *v)
{
    struct config *c = ld->cfg;
    long n;
    uint64_t size;
    int rc = 1;

    if (!strcmp(key, "listen")) {
        SET_LIST(c->listen, c->n_listen);
        if (c->n_listen == 0)
            rc = loader_fail(ld, "listen: give at least one address, e.g. 127.0.0.1:6432");
    } else if (!strcmp(key, "unix_socket_dir")) {
        SET_STR(c->unix_socket_dir);
    } else if (!strcmp(key, "rules")) {
        SET_LIST(c->rules_files, c->n_rules_files);
    } else if (!strcmp(key, "client_tls")) {
        if (parse_client_tls(v, &c->client_tls) != 0)
            rc = loader_fail(ld, "client_tls: \"%s\" is not one of disable, allow, require, verify-ca", v);
    } else if (!strcmp(key, "client_tls_cert")) {
        SET_STR(c->client_tls_cert);
    } else if (!strcmp(key, "client_tls_key")) {
        SET_STR(c->client_tls_key);
    } else if (!strcmp(key, "client_tls_ca")) {
        SET_STR(c->client_tls_ca);
    } else if (!strcmp(key, "max_clients")) {
        if (parse_int(v, 1, 1000000, &n) != 0)
            rc = loader_fail(ld, "max_clients: \"%s\" is not a number from 1 to 1000000", v);
        else
            c->max_clients = (int)n;
    } else if (!strcmp(key, "max_message_size")) {
        if (parse_size(v, 1024ull * 1024 * 1024, &size) != 0 || size < 8192)
            rc = loader_fail(ld, "max_message_size: \"%s\" must be a size from 8kB to 1GB", v);
        else
            c->max_message_size = (uint32_t)size;
    } else if (!strcmp(key, "upstream_reuse")) {
        if (parse_bool(v, &c->upstream_reuse) != 0)
            rc = loader_fail(ld, "upstream_reuse: \"%s\" is not on or off", v);
    } else if (!strcmp(key, "upstream_idle_timeout")) {
        int ms;
        if (parse_duration_ms(v, &ms) != 0 || ms <= 0)
            rc = loader_fail(ld, "upstream_idle_timeout: \"%s\" is not a duration above 0 (e.g. 60s)", v);
        else
            c->upstream_idle_timeout_ms = ms;
    } else if (!strcmp(key, "upstream_max_idle")) {
        if (parse_int(v, 0, 100000, &n) != 0)
            rc = loader_fail(ld, "upstream_max_idle: \"%s\" is not a number from 0 to 100000", v);
        else
            c->upstream_max_idle = (int)n;
    } else if (!strcmp(key, "startup_timeout") || !strcmp(key, "idle_timeout") ||
               !strcmp(key, "connect_timeout") || !strcmp(key, "shutdown_timeout")) {
        int ms;
        if (parse_duration_ms(v, &ms) != 0)
            rc = loader_fail(ld, "%s: \"%s\" is not a duration (e.g. 10s, 500ms, 2m)", key, v);
        else if (key[0] == 's' && key[1] == 't')
            c->startup_timeout_ms = ms;
        else if (key[0] == 'i')
            c->idle_timeout_ms = ms;
        else if (key[0] == 'c')
            c->connect_timeout_ms = ms;
        else
            c->shutdown_timeout_ms = ms;
    } else if (!strcmp(key, "workers")) {
        if (!strcasecmp(v, "auto"))
            c->workers = 0;
        else if (parse_int(v, 1, 64, &n) != 0)
            rc = loader_fail(ld, "workers: \"%s\" is not auto or a number from 1 to 64", v);
        else
            c->workers = (int)n;
    } else if (!strcmp(key, "log_format")) {
        if (!strcasecmp(v, "kv") || !strcasecmp(v, "key=value") || !strcasecmp(v, "text"))
            c->log_format = LOG_FORMAT_KV;
        else if (!strcasecmp(v, "json"))
            c->log_format = LOG_FORMAT_JSON;
        else
            rc = loader_fail(ld, "log_format: \"%s\" is not kv or json", v);
    } else if (!strcmp(key, "log_level")) {
        static const char *const levels[] = { "debug", "info", "warn", "error" };
        int found = -1;
        for (int i = 0; i < 4; i++)
            if (!strcasecmp(v, levels[i]) || (i == 2 && !strcasecmp(v, "warning")))
                found = i;
        if (found < 0)
            rc = loader_fail(ld, "log_level: \"%s\" is not debug, info, warn or error", v);
        else
            c->log_level = (enum log_level)found;
    } else if (!strcmp(key, "log_file")) {
        SET_STR(c->log_file);
    } else if (!strcmp(key, "audit_log")) {
        SET_STR(c->audit_log);
    } else if (!strcmp(key, "pid_file")) {
        SET_STR(c->pid_file);
    } else if (!strcmp(key, "users_file")) {
        SET_STR(c->users_file);
    } else if (!strcmp(key, "guard")) {
        if (parse_bool(v, &c->guard) != 0)
            rc = loader_fail(ld, "guard: \"%s\" is not on or off", v);
    } else if (!strcmp(key, "guard_max_statement_length")) {
        if (parse_size(v, 64ull * 1024 * 1024, &size) != 0 || size < 64)
            rc = loader_fail(ld, "guard_max_statement_length: \"%s\" must be a size from 64B to 64MB", v);
        else
            c->guard_max_statement_length = (uint32_t)size;
    } else if (!strcmp(key, "guard_cache_entries")) {
        if (parse_int(v, 0, 10000000, &n) != 0)
            rc = loader_fail(ld, "guard_cache_entries: \"%s\" is not a number from 0 to 10000000", v);
        else
            c->guard_cache_entries = (size_t)n;
    } else if (!strcmp(key, "privileged_functions")) {
        SET_LIST(c->privileged_functions, c->n_privileged_functions);
    } else {
        rc = loader_fail(ld, "unknown key \"%s\" in [proxy] (see proxy.ini.example)", key);
    }
    free(v);
    return rc;
oom:
    free(v);
    return loader_fail(ld, "out of memory");
}

static int handle_env_key(struct loader *ld, const char *key, char *v)
{
    struct env_config *e = ld->cur_env;
    long n;
    int rc = 1;

    if (!strcmp(key, "aliases")) {
        SET_LIST(e->aliases, e->n_aliases);
    } else if (!strcmp(key, "host")) {
        SET_STR(e->host);
    } else if (!strcmp(key, "port")) {
        if (parse_int(v, 1, 65535, &n) != 0)
            rc = loader_fail(ld, "port: \"%s\" is not a port number", v);
        else
            e->port = (int)n;
    } else if (!strcmp(key, "database")) {
        SET_STR(e->database);
    } else if (!strcmp(key, "sslmode")) {
        if (sslmode_parse(v, &e->sslmode) != 0)
            rc = loader_fail(ld, "sslmode: \"%s\" is not disable, require, verify-ca or verify-full "
                             "(pgsov does not offer prefer or allow: they fall back to plaintext)", v);
    } else if (!strcmp(key, "sslrootcert")) {
        SET_STR(e->sslrootcert);
    } else if (!strcmp(key, "sslcert")) {
        SET_STR(e->sslcert);
    } else if (!strcmp(key, "sslkey")) {
        SET_STR(e->sslkey);
    } else if (!strcmp(key, "host_patterns")) {
        SET_LIST(e->host_patterns, e->n_host_patterns);
    } else if (!strcmp(key, "require_approval")) {
        if (parse_bool(v, &e->require_approval) != 0)
            rc = loader_fail(ld, "require_approval: \"%s\" is not on or off", v);
        ld->approval_set = true;
    } else if (!strcmp(key, "migrations_dir")) {
        SET_STR(e->migrations_dir);
    } else if (!strcmp(key, "auth")) {
        if (!strcasecmp(v, "passthrough"))
            e->auth = ENV_AUTH_PASSTHROUGH;
        else if (!strcasecmp(v, "proxy"))
            e->auth = ENV_AUTH_PROXY;
        else
            rc = loader_fail(ld, "auth: \"%s\" is not passthrough or proxy", v);
    } else if (!strncmp(key, "upstream_user.", 14) && key[14]) {
        struct upstream_user_map *grown = realloc(e->user_map, (e->n_user_map + 1) * sizeof *grown);
        if (!grown)
            goto oom;
        e->user_map = grown;
        grown[e->n_user_map].client_user = strdup(key + 14);
        grown[e->n_user_map].upstream_user = v;
        v = NULL;
        e->n_user_map++;
    } else if (!strncmp(key, "upstream_password.", 18) && key[18]) {
        struct upstream_password *grown = realloc(e->passwords, (e->n_passwords + 1) * sizeof *grown);
        if (!grown)
            goto oom;
        e->passwords = grown;
        grown[e->n_passwords].role = strdup(key + 18);
        grown[e->n_passwords].password = v;
        v = NULL;
        e->n_passwords++;
    } else {
        rc = loader_fail(ld, "unknown key \"%s\" in [env.%s] (see proxy.ini.example)", key, e->name);
    }
    free(v);
    return rc;
oom:
    free(v);
    return loader_fail(ld, "out of memory");
}

static bool valid_env_name(const char *s)
{
    if (!*s || strlen(s) > 63)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
            return false;
    return true;
}

static void finish_env(struct loader *ld)
{
    struct env_config *e = ld->cur_env;
    if (e && !ld->approval_set)
        e->require_approval = env_is_production(e);
}

static int on_key(void *user, const char *section, const char *key, const char *raw)
{
    struct loader *ld = user;
    if (ld->failed)
        return 0;

    bool is_proxy = strcmp(section, "proxy") == 0;
    bool is_env = strncmp(section, "env.", 4) == 0;

    /* inih reports the section with each key; detect section changes ourselves. */
    if (is_proxy) {
        if (!ld->in_proxy) {
            finish_env(ld);
            ld->cur_env = NULL;
            ld->in_proxy = true;
        }
    } else if (is_env) {
        const char *name = section + 4;
        if (!ld->cur_env || strcmp(ld->cur_env->name, name) != 0 || ld->header_seen) {
            finish_env(ld);
            ld->in_proxy = false;
            if (!valid_env_name(name))
                return loader_fail(ld, "[env.%s]: environment names use letters, digits, _ and -", name);
            for (size_t i = 0; i < ld->cfg->n_envs; i++)
                if (strcasecmp(ld->cfg->envs[i].name, name) == 0)
                    return loader_fail(ld, "[env.%s] appears twice; keep all of its keys in one section", name);
            struct env_config *grown = realloc(ld->cfg->envs, (ld->cfg->n_envs + 1) * sizeof *grown);
            if (!grown)
                return loader_fail(ld, "out of memory");
            ld->cfg->envs = grown;
            struct env_config *e = &grown[ld->cfg->n_envs++];
            memset(e, 0, sizeof *e);
            e->name = strdup(name);
            e->port = 5432;
            e->sslmode = SSLMODE_VERIFY_FULL;
            e->line = ld->line;
            ld->cur_env = e;
            ld->approval_set = false;
        }
    } else {
        return loader_fail(ld, "unknown section [%s]: use [proxy] or [env.NAME]", section);
    }

    ld->header_seen = false;
    if ((ld->flags & CONFIG_NO_SECRETS) && is_env && !strncmp(key, "upstream_password.", 18))
        return 1;
    char *v = expand_vars(ld, raw);
    if (!v)
        return ld->failed ? 0 : loader_fail(ld, "out of memory");
    return is_proxy ? handle_proxy_key(ld, key, v) : handle_env_key(ld, key, v);
}

/* inih line reader over our string, counting lines so handlers know where they are. */
static char *read_line(char *buf, int size, void *stream)
{
    struct loader *ld = stream;
    if (ld->failed || ld->text[ld->pos] == '\0' || size <= 1)
        return NULL;
    int n = 0;
    while (n < size - 1 && ld->text[ld->pos]) {
        char ch = ld->text[ld->pos++];
        buf[n++] = ch;
        if (ch == '\n')
            break;
    }
    buf[n] = '\0';
    ld->line++;
    /* inih's line buffer is fixed (INI_MAX_LINE in Debian's build): the rest of a longer line
     * would come back as a line of its own, and could replace a list with its tail. */
    if (n == size - 1 && buf[n - 1] != '\n' && ld->text[ld->pos] && ld->text[ld->pos] != '\n') {
        loader_fail(ld, "line longer than %d bytes; continue a list on the next lines, indented", size - 2);
        return NULL;
    }
    const char *p = buf;
    while (*p == ' ' || *p == '\t')
        p++;
    ld->continuation = p != buf && *p && *p != '\n' && *p != '\r' && *p != ';' && *p != '#';
    if (*p == '[')
        ld->header_seen = true;
    return buf;
}

static void config_defaults(struct config *c)
{
    c->client_tls = CLIENT_TLS_REQUIRE;
    c->max_clients = 1000;
    c->max_message_size = 64u * 1024 * 1024;
    c->startup_timeout_ms = 10000;
    c->idle_timeout_ms = 0;
    c->connect_timeout_ms = 5000;
    c->shutdown_timeout_ms = 30000;
    c->workers = 0;                 /* auto: one per online CPU */
    c->upstream_reuse = true;
    c->upstream_idle_timeout_ms = 60000;
    c->upstream_max_idle = 100;
    c->log_format = LOG_FORMAT_KV;
    c->log_level = LOG_INFO;
    c->guard = true;
    c->guard_max_statement_length = 65536;
    c->guard_cache_entries = 4096;
}

static int validate(struct config *c, const char *name, struct pgsov_err *err)
{
    if (c->n_listen == 0) {
        c->listen = calloc(1, sizeof *c->listen);
        if (!c->listen || !(c->listen[0] = strdup("127.0.0.1:6432")))
            return pgsov_fail(err, "out of memory");
        c->n_listen = 1;
    }
    if (c->client_tls != CLIENT_TLS_DISABLE && (!c->client_tls_cert || !c->client_tls_key))
        return pgsov_fail(err, "%s: client_tls = %s needs client_tls_cert and client_tls_key "
                          "(or client_tls = disable, for loopback-only setups)", name,
                          c->client_tls == CLIENT_TLS_ALLOW ? "allow" :
                          c->client_tls == CLIENT_TLS_REQUIRE ? "require" : "verify-ca");
    if (c->client_tls == CLIENT_TLS_VERIFY_CA && !c->client_tls_ca)
        return pgsov_fail(err, "%s: client_tls = verify-ca needs client_tls_ca (the CA that signs "
                          "client certificates)", name);
    if (c->n_envs == 0)
        return pgsov_fail(err, "%s: no environments: add at least one [env.NAME] section", name);
    for (size_t i = 0; i < c->n_envs; i++)
        if (c->envs[i].auth == ENV_AUTH_PROXY && !c->users_file)
            return pgsov_fail(err, "%s:%d: [env.%s] auth = proxy needs users_file in [proxy] (the "
                              "client credentials the proxy checks)", name, c->envs[i].line, c->envs[i].name);

    for (size_t i = 0; i < c->n_envs; i++) {
        struct env_config *e = &c->envs[i];
        if (!e->host)
            return pgsov_fail(err, "%s:%d: [env.%s] has no host", name, e->line, e->name);
        if (!*e->host || strpbrk(e->host, ", \t/"))
            return pgsov_fail(err, "%s:%d: [env.%s] host \"%s\" must be one host name or address "
                              "(libpq would read a comma-separated list, and the hostname guard "
                              "checks one host)", name, e->line, e->name, e->host);
        if (!e->database)
            return pgsov_fail(err, "%s:%d: [env.%s] has no database (the real database name on the "
                              "upstream)", name, e->line, e->name);
        if (e->n_host_patterns == 0)
            return pgsov_fail(err, "%s:%d: [env.%s] has no host_patterns: the hostname guard needs "
                              "the hosts this environment may point at (e.g. host_patterns = %s)",
                              name, e->line, e->name, e->host);
        if ((e->sslcert == NULL) != (e->sslkey == NULL))
            return pgsov_fail(err, "%s:%d: [env.%s] sslcert and sslkey go together", name, e->line, e->name);
        if (e->sslmode == SSLMODE_VERIFY_CA && !e->sslrootcert)
            return pgsov_fail(err, "%s:%d: [env.%s] sslmode = verify-ca needs sslrootcert: against the "
                              "system trust store it would accept any publicly issued certificate, "
                              "for any host name (libpq refuses it too); set sslrootcert, or use "
                              "verify-full", name, e->line, e->name);
        if (!e->migrations_dir && !(e->migrations_dir = strdup("migrations")))
            return pgsov_fail(err, "out of memory");
        /* every name and alias must be unique across environments */
        for (size_t j = 0; j <= e->n_aliases; j++) {
            const char *nm = j == 0 ? e->name : e->aliases[j - 1];
            for (size_t k = 0; k < c->n_envs; k++) {
                const struct env_config *o = &c->envs[k];
                for (size_t m = 0; m <= o->n_aliases; m++) {
                    const char *other = m == 0 ? o->name : o->aliases[m - 1];
                    if ((k != i || m != j) && strcasecmp(nm, other) == 0)
                        return pgsov_fail(err, "%s:%d: the name \"%s\" is used by [env.%s] and "
                                          "[env.%s]; every environment name and alias must be unique",
                                          name, e->line, nm, e->name, o->name);
                }
            }
        }
    }
    if (env_guard_check_all(c, err) != 0) {
        if (err) {
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%s", err->msg);
            pgsov_fail(err, "%s: %s", name, msg);
        }
        return -1;
    }
    return 0;
}

int config_load_string(const char *text, const char *name, struct config **out, struct pgsov_err *err)
{
    return config_load_string_ex(text, name, 0, out, err);
}

int config_load_string_ex(const char *text, const char *name, unsigned flags, struct config **out,
                          struct pgsov_err *err)
{
    struct config *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return pgsov_fail(err, "out of memory");
    config_defaults(cfg);
    cfg->path = strdup(name);
    struct loader ld = { .cfg = cfg, .name = name, .text = text, .err = err, .flags = flags };
    int rc = ini_parse_stream(read_line, &ld, on_key, &ld);
    if (!ld.failed)
        finish_env(&ld);
    if (ld.failed || rc != 0) {
        if (!ld.failed)
            pgsov_fail(err, "%s:%d: syntax error (expected [section], key = value or a comment)",
                       name, rc > 0 ? rc : ld.line);
        config_free(cfg);
        return -1;
    }
    if (validate(cfg, name, err) != 0) {
        config_free(cfg);
        return -1;
    }
    *out = cfg;
    return 0;
}

int config_load(const char *path, struct config **out, struct pgsov_err *err)
{
    return config_load_ex(path, 0, out, err);
}

int config_load_ex(const char *path, unsigned flags, struct config **out, struct pgsov_err *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return pgsov_fail(err, "%s: cannot open: %s", path, strerror(errno));
    char *text = NULL;
    size_t cap = 0, len = 0;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *grown = realloc(text, cap);
            if (!grown) {
                free(text);
                fclose(f);
                return pgsov_fail(err, "out of memory");
            }
            text = grown;
        }
        memcpy(text + len, chunk, n);
        len += n;
        if (len > 1024 * 1024) {
            free(text);
            fclose(f);
            return pgsov_fail(err, "%s: larger than 1 MB; is this the right file?", path);
        }
    }
    bool read_error = ferror(f);
    fclose(f);
    if (read_error) {
        free(text);
        return pgsov_fail(err, "%s: read error", path);
    }
    if (!text && !(text = calloc(1, 1)))
        return pgsov_fail(err, "out of memory");
    text[len] = '\0';
    int rc = config_load_string_ex(text, path, flags, out, err);
    free(text);
    return rc;
}

void config_free(struct config *c)
{
    if (!c)
        return;
    free(c->path);
    free_list(c->listen, c->n_listen);
    free(c->unix_socket_dir);
    free_list(c->rules_files, c->n_rules_files);
    free(c->client_tls_cert);
    free(c->client_tls_key);
    free(c->client_tls_ca);
    free(c->log_file);
    free(c->audit_log);
    free(c->pid_file);
    free(c->users_file);
    free_list(c->privileged_functions, c->n_privileged_functions);
    for (size_t i = 0; i < c->n_envs; i++) {
        struct env_config *e = &c->envs[i];
        free(e->name);
        free_list(e->aliases, e->n_aliases);
        free(e->host);
        free(e->database);
        free(e->sslrootcert);
        free(e->sslcert);
        free(e->sslkey);
        free_list(e->host_patterns, e->n_host_patterns);
        free(e->migrations_dir);
        for (size_t j = 0; j < e->n_user_map; j++) {
            free(e->user_map[j].client_user);
            free(e->user_map[j].upstream_user);
        }
        free(e->user_map);
        for (size_t j = 0; j < e->n_passwords; j++) {
            free(e->passwords[j].role);
            if (e->passwords[j].password)
                OPENSSL_cleanse(e->passwords[j].password, strlen(e->passwords[j].password));
            free(e->passwords[j].password);
        }
        free(e->passwords);
    }
    free(c->envs);
    free(c);
}

const struct env_config *config_find_env(const struct config *cfg, const char *name)
{
    if (!cfg || !name)
        return NULL;
    for (size_t i = 0; i < cfg->n_envs; i++) {
        const struct env_config *e = &cfg->envs[i];
        if (strcasecmp(e->name, name) == 0)
            return e;
        for (size_t j = 0; j < e->n_aliases; j++)
            if (strcasecmp(e->aliases[j], name) == 0)
                return e;
    }
    return NULL;
}

const char *env_upstream_user(const struct env_config *env, const char *client_user)
{
    for (size_t i = 0; i < env->n_user_map; i++)
        if (strcmp(env->user_map[i].client_user, client_user) == 0)
            return env->user_map[i].upstream_user;
    return client_user;
}

const char *env_upstream_password(const struct env_config *env, const char *role)
{
    for (size_t i = 0; i < env->n_passwords; i++)
        if (strcmp(env->passwords[i].role, role) == 0)
            return env->passwords[i].password;
    return NULL;
}

void config_env_names(const struct config *cfg, char *buf, size_t size)
{
    size_t used = 0;
    if (size == 0)
        return;
    buf[0] = '\0';
    for (size_t i = 0; cfg && i < cfg->n_envs; i++) {
        int n = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", cfg->envs[i].name);
        if (n < 0 || (size_t)n >= size - used)
            break;
        used += (size_t)n;
    }
}
