/* wire.h — PostgreSQL v3 framing: bounded header reads, startup/SSLRequest/CancelRequest
 * parsing, the few message bodies the proxy inspects, and builders for what it sends.
 * Pure: parsers take bytes, builders append to an evbuffer; no sockets, no logging. */
#ifndef PGSOV_WIRE_H
#define PGSOV_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "pgsov/err.h"

struct evbuffer;

#define WIRE_PROTO_V3          196608u     /* 3.0 */
#define WIRE_CANCEL_CODE       80877102u
#define WIRE_SSL_CODE          80877103u
#define WIRE_GSSENC_CODE       80877104u
#define WIRE_STARTUP_MAX       10000u      /* as PostgreSQL's MAX_STARTUP_PACKET_LENGTH */
#define WIRE_STARTUP_MAX_PARAMS 64
#define WIRE_HEADER_LEN        5u          /* type byte + int32 length */

enum startup_kind { STARTUP_NORMAL, STARTUP_SSL, STARTUP_GSSENC, STARTUP_CANCEL };

struct startup_packet {
    enum startup_kind kind;
    uint32_t version;                       /* NORMAL: major << 16 | minor */
    int n_params;
    const char *keys[WIRE_STARTUP_MAX_PARAMS];   /* point into the caller's bytes */
    const char *values[WIRE_STARTUP_MAX_PARAMS];
    uint32_t cancel_pid, cancel_secret;     /* CANCEL */
};

/* Length word of a startup-phase packet (first 4 bytes, includes itself): 8..10000. */
int wire_startup_length(const uint8_t hdr[4], uint32_t *len, struct pgsov_err *err);

/* Parses a whole startup-phase packet (len bytes, including the length word). The packet
 * bytes must stay alive while *out is used. Requires NUL-terminated pairs and the final
 * terminator; the version is not judged here (see session). */
int wire_parse_startup(const uint8_t *pkt, uint32_t len, struct startup_packet *out,
                       struct pgsov_err *err);

const char *startup_get(const struct startup_packet *sp, const char *key);

/* The bound for what the upstream sends: PostgreSQL builds a message in one allocation, and
 * its allocations stop below 1 GB; a little room for the framing of a maximal row. Without it
 * a length near 4 GB would overflow the relay's 32-bit counters. */
#define WIRE_MAX_MESSAGE_LEN ((1u << 30) + 4096u)

/* Regular message header: type and length (includes the length word, so >= 4, and
 * <= max). */
int wire_message_header(const uint8_t hdr[5], uint32_t max, char *type, uint32_t *len,
                        struct pgsov_err *err);

/* ---- message bodies (body = bytes after the 5-byte header; len = its length) ---------- */

/* 'Q': one NUL-terminated string filling the body. */
int wire_parse_query(const uint8_t *body, uint32_t len, const char **sql, size_t *sql_len);

/* FunctionCall ('F'): the function's OID. -1 when the body is shorter than its fixed part
 * (OID, argument format count, argument count, result format). */
int wire_parse_function_call(const uint8_t *body, uint32_t len, uint32_t *oid);

/* 'P': statement name, query, int16 count, oids. */
int wire_parse_parse(const uint8_t *body, uint32_t len, const char **name, const char **sql,
                     size_t *sql_len);

/* 'S' from the server: name and value. */
int wire_parse_parameter_status(const uint8_t *body, uint32_t len, const char **name,
                                const char **value);

/* 'E'/'N': the fields the proxy needs. Pointers into body. */
struct wire_error_fields {
    const char *severity, *sqlstate, *message, *detail, *hint;
};
int wire_parse_error(const uint8_t *body, uint32_t len, struct wire_error_fields *out);

/* AuthenticationSASL body (int32 10, then mechanism names): appends an 'R' message to out
 * that offers the same mechanisms minus SCRAM-SHA-256-PLUS. Returns the number of
 * mechanisms kept, or -1 when the body is malformed; appends nothing unless it keeps one. */
int wire_sasl_without_plus(const uint8_t *body, uint32_t len, struct evbuffer *out);

/* Finds `-c NAME=VALUE` (also `-cNAME=VALUE`, `--NAME=VALUE`) in a libpq options string.
 * Writes VALUE to value (unescaped) and the options without that switch to rest.
 * Returns 1 when found, 0 when not, -1 when a buffer is too small or the string is bad. */
int wire_options_take(const char *options, const char *name, char *value, size_t value_size,
                      char *rest, size_t rest_size);

/* Every NAME=VALUE setting the server would apply from a libpq options string, in order, read
 * as PostgreSQL's getopt reads it: -c NAME=VALUE, -cNAME=VALUE, --NAME=VALUE, and clustered
 * switches (-ec NAME=VALUE). NAME comes back lowercased with '-' as '_'; a setting without '='
 * gives an empty value. Returns 1 per setting, 0 at the end, -1 when a word or buffer is too
 * long. Start with { .options = str }. */
struct wire_options_iter {
    const char *options;
    size_t pos;
    char pending;               /* a switch whose argument is the next word */
};
int wire_options_next(struct wire_options_iter *it, char *name, size_t name_size, char *value,
                      size_t value_size);


/* ---- builders ------------------------------------------------------------------------- */

/* ErrorResponse. detail and hint may be NULL. severity: "FATAL" or "ERROR". */
void wire_error_response(struct evbuffer *out, const char *severity, const char *sqlstate,
                         const char *message, const char *detail, const char *hint);
void wire_ready_for_query(struct evbuffer *out, char status);
void wire_backend_key_data(struct evbuffer *out, uint32_t pid, uint32_t secret);
void wire_negotiate_protocol(struct evbuffer *out, uint32_t newest_minor,
                             const char *const *unknown, int n_unknown);
void wire_startup_message(struct evbuffer *out, uint32_t version, const char *const *keys,
                          const char *const *values, int n);
void wire_ssl_request(struct evbuffer *out);
void wire_cancel_request(uint8_t out[16], uint32_t pid, uint32_t secret);
void wire_query(struct evbuffer *out, const char *sql);
void wire_parse_message(struct evbuffer *out, const char *name, const char *sql);

#endif
