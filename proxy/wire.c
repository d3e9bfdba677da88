/* wire.c — PostgreSQL v3 framing (see wire.h).
 * Every length read from the wire is checked against the bytes actually present before it
 * is used; parsers never read past len and never assume NUL termination they have not seen. */
#include "pgsov/wire.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <ctype.h>
#include <string.h>

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

int wire_startup_length(const uint8_t hdr[4], uint32_t *len, struct pgsov_err *err)
{
    uint32_t n = get32(hdr);
    if (n < 8 || n > WIRE_STARTUP_MAX)
        return pgsov_fail(err, "invalid startup packet length %u (must be 8..%u)", n, WIRE_STARTUP_MAX);
    *len = n;
    return 0;
}

/* Length of a NUL-terminated string starting at p within [p, end), or -1. */
static long bounded_strlen(const uint8_t *p, const uint8_t *end)
{
    const uint8_t *nul = memchr(p, '\0', (size_t)(end - p));
    return nul ? (long)(nul - p) : -1;
}

int wire_parse_startup(const uint8_t *pkt, uint32_t len, struct startup_packet *out,
                       struct pgsov_err *err)
{
    memset(out, 0, sizeof *out);
    if (len < 8 || get32(pkt) != len)
        return pgsov_fail(err, "startup packet length mismatch");
    uint32_t code = get32(pkt + 4);
    switch (code) {
    case WIRE_SSL_CODE:
        out->kind = STARTUP_SSL;
        return len == 8 ? 0 : pgsov_fail(err, "SSLRequest with length %u", len);
    case WIRE_GSSENC_CODE:
        out->kind = STARTUP_GSSENC;
        return len == 8 ? 0 : pgsov_fail(err, "GSSENCRequest with length %u", len);
    case WIRE_CANCEL_CODE:
        if (len != 16)
            return pgsov_fail(err, "CancelRequest with length %u", len);
        out->kind = STARTUP_CANCEL;
        out->cancel_pid = get32(pkt + 8);
        out->cancel_secret = get32(pkt + 12);
        return 0;
    default:
        break;
    }
    out->kind = STARTUP_NORMAL;
    out->version = code;
    const uint8_t *p = pkt + 8, *end = pkt + len;
    for (;;) {
        if (p >= end)
            return pgsov_fail(err, "startup packet is missing its terminator");
        if (*p == '\0') {
            if (p + 1 != end)
                return pgsov_fail(err, "startup packet has bytes after its terminator");
            break;
        }
        long klen = bounded_strlen(p, end);
        if (klen < 0)
            return pgsov_fail(err, "startup parameter name is not terminated");
        const uint8_t *v = p + klen + 1;
        if (v >= end)
            return pgsov_fail(err, "startup parameter \"%.*s\" has no value", (int)(klen > 64 ? 64 : klen), p);
        long vlen = bounded_strlen(v, end);
        if (vlen < 0)
            return pgsov_fail(err, "startup parameter value is not terminated");
        if (out->n_params == WIRE_STARTUP_MAX_PARAMS)
            return pgsov_fail(err, "more than %d startup parameters", WIRE_STARTUP_MAX_PARAMS);
        out->keys[out->n_params] = (const char *)p;
        out->values[out->n_params] = (const char *)v;
        out->n_params++;
        p = v + vlen + 1;
    }
    return 0;
}

const char *startup_get(const struct startup_packet *sp, const char *key)
{
    for (int i = 0; i < sp->n_params; i++)
        if (strcmp(sp->keys[i], key) == 0)
            return sp->values[i];
    return NULL;
}

int wire_message_header(const uint8_t hdr[5], uint32_t max, char *type, uint32_t *len,
                        struct pgsov_err *err)
{
    uint32_t n = get32(hdr + 1);
    if (n < 4)
        return pgsov_fail(err, "message '%c' has invalid length %u", hdr[0] >= 32 && hdr[0] < 127 ? hdr[0] : '?', n);
    if (n > max)
        return pgsov_fail(err, "message '%c' of %u bytes exceeds max_message_size (%u)",
                          hdr[0] >= 32 && hdr[0] < 127 ? hdr[0] : '?', n, max);
    *type = (char)hdr[0];
    *len = n;
    return 0;
}

int wire_parse_query(const uint8_t *body, uint32_t len, const char **sql, size_t *sql_len)
{
    if (len == 0 || body[len - 1] != '\0')
        return -1;
    long n = bounded_strlen(body, body + len);
    if (n != (long)len - 1)
        return -1;  /* embedded NUL: PostgreSQL would reject it too */
    *sql = (const char *)body;
    *sql_len = (size_t)n;
    return 0;
}

int wire_parse_function_call(const uint8_t *body, uint32_t len, uint32_t *oid)
{
    if (len < 4 + 2 + 2 + 2)
        return -1;
    *oid = get32(body);
    return 0;
}

int wire_parse_parse(const uint8_t *body, uint32_t len, const char **name, const char **sql,
                     size_t *sql_len)
{
    const uint8_t *end = body + len;
    long nlen = bounded_strlen(body, end);
    if (nlen < 0)
        return -1;
    const uint8_t *q = body + nlen + 1;
    if (q >= end)
        return -1;
    long qlen = bounded_strlen(q, end);
    if (qlen < 0)
        return -1;
    const uint8_t *rest = q + qlen + 1;
    if (end - rest < 2)
        return -1;
    uint32_t n_oids = (uint32_t)rest[0] << 8 | rest[1];
    if ((size_t)(end - rest - 2) != (size_t)n_oids * 4)
        return -1;
    *name = (const char *)body;
    *sql = (const char *)q;
    *sql_len = (size_t)qlen;
    return 0;
}

int wire_parse_parameter_status(const uint8_t *body, uint32_t len, const char **name,
                                const char **value)
{
    const uint8_t *end = body + len;
    long nlen = bounded_strlen(body, end);
    if (nlen < 0 || body + nlen + 1 >= end)
        return -1;
    const uint8_t *v = body + nlen + 1;
    long vlen = bounded_strlen(v, end);
    if (vlen < 0 || v + vlen + 1 != end)
        return -1;
    *name = (const char *)body;
    *value = (const char *)v;
    return 0;
}

int wire_parse_error(const uint8_t *body, uint32_t len, struct wire_error_fields *out)
{
    memset(out, 0, sizeof *out);
    const uint8_t *p = body, *end = body + len;
    while (p < end && *p != '\0') {
        uint8_t code = *p++;
        long n = bounded_strlen(p, end);
        if (n < 0)
            return -1;
        const char *v = (const char *)p;
        switch (code) {
        case 'S': out->severity = v; break;
        case 'C': out->sqlstate = v; break;
        case 'M': out->message = v; break;
        case 'D': out->detail = v; break;
        case 'H': out->hint = v; break;
        default: break;
        }
        p += n + 1;
    }
    return p < end ? 0 : -1;
}

int wire_sasl_without_plus(const uint8_t *body, uint32_t len, struct evbuffer *out)
{
    if (len < 5 || get32(body) != 10)
        return -1;
    /* Built aside and appended only when usable: nothing half-made reaches the client. */
    struct evbuffer *msg = evbuffer_new();
    if (!msg)
        return -1;
    const uint8_t *p = body + 4, *end = body + len;
    int kept = 0;
    for (;;) {
        if (p >= end) {
            evbuffer_free(msg);
            return -1;
        }
        if (*p == '\0') {
            if (p + 1 != end) {
                evbuffer_free(msg);
                return -1;
            }
            break;
        }
        long n = bounded_strlen(p, end);
        if (n < 0) {
            evbuffer_free(msg);
            return -1;
        }
        if (strcmp((const char *)p, "SCRAM-SHA-256-PLUS") != 0) {
            evbuffer_add(msg, p, (size_t)n + 1);
            kept++;
        }
        p += n + 1;
    }
    if (kept > 0) {
        uint8_t hdr[9] = { 'R' };
        put32(hdr + 1, (uint32_t)(8 + evbuffer_get_length(msg) + 1));
        put32(hdr + 5, 10);
        evbuffer_add(out, hdr, sizeof hdr);
        evbuffer_add_buffer(out, msg);
        evbuffer_add(out, "", 1);
    }
    evbuffer_free(msg);
    return kept;
}

/* ---- options ------------------------------------------------------------------------ */

/* Splits the next whitespace-separated, backslash-escaped word of s starting at *pos.
 * Returns 0 at end, 1 with the unescaped word in word, -1 if it does not fit. Records the
 * raw span [*start, *pos). */
static int next_option_word(const char *s, size_t *pos, size_t *start, char *word, size_t size)
{
    size_t i = *pos, n = 0;
    while (s[i] == ' ' || s[i] == '\t')
        i++;
    if (!s[i]) {
        *pos = i;
        return 0;
    }
    *start = i;
    while (s[i] && s[i] != ' ' && s[i] != '\t') {
        if (s[i] == '\\' && s[i + 1])
            i++;
        if (n + 1 >= size)
            return -1;
        word[n++] = s[i++];
    }
    word[n] = '\0';
    *pos = i;
    return 1;
}

static int options_find(const char *options, const char *name, char *value, size_t value_size,
                        size_t *span_start, size_t *span_end)
{
    char word[1024];
    size_t pos = 0, start = 0, nlen = strlen(name);
    int rc;
    while ((rc = next_option_word(options, &pos, &start, word, sizeof word)) == 1) {
        const char *setting = NULL;
        size_t first = start;
        if (strcmp(word, "-c") == 0) {
            rc = next_option_word(options, &pos, &start, word, sizeof word);
            if (rc <= 0)
                return rc;
            setting = word;
        } else if (strncmp(word, "-c", 2) == 0) {
            setting = word + 2;
        } else if (strncmp(word, "--", 2) == 0) {
            setting = word + 2;
        }
        if (!setting)
            continue;
        /* PostgreSQL treats '-' and '_' alike in option names given this way */
        bool same = strlen(setting) > nlen && setting[nlen] == '=';
        for (size_t k = 0; same && k < nlen; k++) {
            char a = setting[k] == '-' ? '_' : setting[k], b = name[k] == '-' ? '_' : name[k];
            if (a != b)
                same = false;
        }
        if (same) {
            if (strlen(setting + nlen + 1) >= value_size)
                return -1;
            strcpy(value, setting + nlen + 1);
            *span_start = first;
            *span_end = pos;
            return 1;
        }
    }
    return rc;
}

/* The switches of PostgreSQL 15's process_postgres_switches() that take an argument: its getopt
 * string is "B:bc:C:D:d:EeFf:h:ijk:lN:nOPp:r:S:sTt:v:W:-:". 'c' and '-' carry NAME=VALUE. */
static bool switch_takes_argument(char ch)
{
    return ch && strchr("BcCDdfhkNprStvW-", ch) != NULL;
}

/* NAME=VALUE as ParseLongOption reads it: '-' in the name is '_'; names are case-insensitive. */
static int split_setting(const char *arg, char *name, size_t name_size, char *value, size_t value_size)
{
    const char *eq = strchr(arg, '=');
    size_t n = eq ? (size_t)(eq - arg) : strlen(arg);
    if (n + 1 > name_size || (eq && strlen(eq + 1) + 1 > value_size))
        return -1;
    for (size_t i = 0; i < n; i++)
        name[i] = arg[i] == '-' ? '_' : (char)tolower((unsigned char)arg[i]);
    name[n] = '\0';
    if (eq)
        strcpy(value, eq + 1);
    else
        value[0] = '\0';
    return 1;
}

int wire_options_next(struct wire_options_iter *it, char *name, size_t name_size, char *value,
                      size_t value_size)
{
    char word[1024];
    size_t start;
    int rc;
    while ((rc = next_option_word(it->options, &it->pos, &start, word, sizeof word)) == 1) {
        if (it->pending) {                       /* the argument of the previous word's switch */
            char sw = it->pending;
            it->pending = 0;
            if (sw == 'c' || sw == '-')
                return split_setting(word, name, name_size, value, value_size);
            continue;
        }
        if (word[0] != '-' || !word[1] || strcmp(word, "--") == 0)
            continue;                            /* not a switch: the server refuses it */
        for (size_t i = 1; word[i]; i++) {       /* clustered, as getopt reads them: -ec x=y */
            if (!switch_takes_argument(word[i]))
                continue;
            if (word[i + 1]) {
                if (word[i] == 'c' || word[i] == '-')
                    return split_setting(word + i + 1, name, name_size, value, value_size);
            } else {
                it->pending = word[i];
            }
            break;
        }
    }
    return rc;
}

int wire_options_take(const char *options, const char *name, char *value, size_t value_size,
                      char *rest, size_t rest_size)
{
    size_t a = 0, b = 0;
    int rc = options_find(options, name, value, value_size, &a, &b);
    if (rc <= 0) {
        if (rc == 0 && pgsov_strlcpy(rest, options, rest_size) >= rest_size)
            return -1;
        return rc;
    }
    size_t olen = strlen(options);
    if (a + (olen - b) + 1 > rest_size)
        return -1;
    memcpy(rest, options, a);
    memcpy(rest + a, options + b, olen - b);
    rest[a + olen - b] = '\0';
    return 1;
}

/* ---- builders ----------------------------------------------------------------------- */

static void add_header(struct evbuffer *out, char type, uint32_t body_len)
{
    uint8_t hdr[5] = { (uint8_t)type };
    put32(hdr + 1, body_len + 4);
    evbuffer_add(out, hdr, 5);
}

static void add_field(struct evbuffer *out, char code, const char *value, uint32_t *len, bool write)
{
    if (!value)
        return;
    size_t n = strlen(value) + 1;
    if (write) {
        evbuffer_add(out, &code, 1);
        evbuffer_add(out, value, n);
    }
    *len += 1 + (uint32_t)n;
}

void wire_error_response(struct evbuffer *out, const char *severity, const char *sqlstate,
                         const char *message, const char *detail, const char *hint)
{
    uint32_t len = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            add_header(out, 'E', len + 1);
        add_field(out, 'S', severity, &len, pass);
        add_field(out, 'V', severity, &len, pass);
        add_field(out, 'C', sqlstate, &len, pass);
        add_field(out, 'M', message, &len, pass);
        add_field(out, 'D', detail, &len, pass);
        add_field(out, 'H', hint, &len, pass);
    }
    evbuffer_add(out, "", 1);
}

void wire_ready_for_query(struct evbuffer *out, char status)
{
    add_header(out, 'Z', 1);
    evbuffer_add(out, &status, 1);
}

void wire_backend_key_data(struct evbuffer *out, uint32_t pid, uint32_t secret)
{
    uint8_t body[8];
    put32(body, pid);
    put32(body + 4, secret);
    add_header(out, 'K', 8);
    evbuffer_add(out, body, 8);
}

void wire_negotiate_protocol(struct evbuffer *out, uint32_t newest_minor,
                             const char *const *unknown, int n_unknown)
{
    uint32_t len = 8;
    for (int i = 0; i < n_unknown; i++)
        len += (uint32_t)strlen(unknown[i]) + 1;
    add_header(out, 'v', len);
    uint8_t fixed[8];
    put32(fixed, WIRE_PROTO_V3 | newest_minor);
    put32(fixed + 4, (uint32_t)n_unknown);
    evbuffer_add(out, fixed, 8);
    for (int i = 0; i < n_unknown; i++)
        evbuffer_add(out, unknown[i], strlen(unknown[i]) + 1);
}

void wire_startup_message(struct evbuffer *out, uint32_t version, const char *const *keys,
                          const char *const *values, int n)
{
    uint32_t len = 8 + 1;
    for (int i = 0; i < n; i++)
        len += (uint32_t)(strlen(keys[i]) + 1 + strlen(values[i]) + 1);
    uint8_t fixed[8];
    put32(fixed, len);
    put32(fixed + 4, version);
    evbuffer_add(out, fixed, 8);
    for (int i = 0; i < n; i++) {
        evbuffer_add(out, keys[i], strlen(keys[i]) + 1);
        evbuffer_add(out, values[i], strlen(values[i]) + 1);
    }
    evbuffer_add(out, "", 1);
}

void wire_ssl_request(struct evbuffer *out)
{
    uint8_t pkt[8];
    put32(pkt, 8);
    put32(pkt + 4, WIRE_SSL_CODE);
    evbuffer_add(out, pkt, 8);
}

void wire_cancel_request(uint8_t out[16], uint32_t pid, uint32_t secret)
{
    put32(out, 16);
    put32(out + 4, WIRE_CANCEL_CODE);
    put32(out + 8, pid);
    put32(out + 12, secret);
}

void wire_query(struct evbuffer *out, const char *sql)
{
    size_t n = strlen(sql) + 1;
    add_header(out, 'Q', (uint32_t)n);
    evbuffer_add(out, sql, n);
}

void wire_parse_message(struct evbuffer *out, const char *name, const char *sql)
{
    size_t a = strlen(name) + 1, b = strlen(sql) + 1;
    add_header(out, 'P', (uint32_t)(a + b + 2));
    evbuffer_add(out, name, a);
    evbuffer_add(out, sql, b);
    evbuffer_add(out, "\0\0", 2);
}
