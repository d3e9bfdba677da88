/* pool.h — idle upstream connections kept for reuse, and the server parameters that go with
 * them (auth = proxy only).
 *
 * With auth = proxy the proxy logs in to the upstream with its own credentials, so two clients
 * that map to the same upstream role, database and startup parameters would get identical
 * backends. When such a client ends cleanly (Terminate, outside a transaction, nothing in
 * flight) the session resets its backend with DISCARD ALL and parks it here; the next client
 * with the same key gets it instead of a new TCP/TLS connection, a backend fork and a SCRAM
 * exchange. This is what PgBouncer's session mode does with server_reset_query = DISCARD ALL.
 *
 * What it deliberately does not do: share a backend between two live clients (no transaction
 * pooling), reuse a passthrough login (the client's own credentials authenticated that
 * backend), or keep a connection across a reload (server.c flushes every pool on SIGHUP, and
 * the key includes the snapshot).
 *
 * Everything here runs on one worker's event-loop thread; each worker has its own pool. */
#ifndef PGSOV_POOL_H
#define PGSOV_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct event_base;
struct bufferevent;
struct snapshot;

/* ---- server parameters (pure) ------------------------------------------------------------
 * The ParameterStatus values a backend has reported, latest value per name, in first-report
 * order: a client that gets a reused backend is sent exactly these, as the server itself sent
 * them to the first client (and as it reported changes since). */

#define PARAMS_MAX 48            /* PostgreSQL 15 reports 14; more means something odd */
#define PARAM_NAME_MAX 128
#define PARAM_VALUE_MAX 1024     /* longer values are not kept: the backend is not reused */

/* One buffer of "name\0value\0" pairs (a few hundred bytes for PostgreSQL's 14): this sits
 * in every auth = proxy session, so it is kept small. Zero-initialised is empty. */
struct param_list {
    char *buf;
    size_t len, cap;
    size_t n;                    /* pairs */
    bool overflow;               /* a value did not fit: this backend must not be reused */
};

/* Sets name to value (adding it when new). -1 when the list is full, a name or value is too
 * long or memory runs out; the list then has overflow set and keeps its old pairs. */
int params_set(struct param_list *l, const char *name, const char *value);
/* Value of name, or NULL. */
const char *params_get(const struct param_list *l, const char *name);
/* Walks the pairs in order: start with *off = 0; false after the last. */
bool params_next(const struct param_list *l, size_t *off, const char **name, const char **value);
/* One ParameterStatus message per parameter, in order. */
void params_write(const struct param_list *l, struct evbuffer *out);
void params_clear(struct param_list *l);
/* Gives back the buffer's unused capacity (the list stays as it is; on failure nothing changes). */
void params_compact(struct param_list *l);

/* ---- the pool ----------------------------------------------------------------------------- */

/* An idle upstream connection and what a client needs to be handed it. */
struct pooled_upstream {
    struct pooled_upstream *next, *prev;
    struct pool *pool;
    struct snapshot *snap;          /* referenced: the key's config, rules and TLS contexts */
    int env_index, addr_index;      /* addr_index: as session.c counts it (next to try) */
    uint8_t *key;                   /* SHA-256 of the startup packet the upstream was opened with */
    size_t key_len;
    struct bufferevent *bev;        /* the server link (TLS or plain) */
    int fd;
    bool fd_owned_by_bev;
    uint32_t upstream_pid, upstream_secret;
    struct param_list params;
    struct event *timer;            /* idle timeout */
    uint64_t uses;                  /* clients served before this one */
};

struct pool;

struct pool *pool_new(struct event_base *base);
/* Closes every idle connection and frees the pool. */
void pool_free(struct pool *p);
/* Closes every idle connection (drain, shutdown). */
void pool_flush(struct pool *p);
size_t pool_idle_count(const struct pool *p);

/* Parks u (allocated by the caller with calloc, owning its bev/fd/key/params/snapshot ref).
 * The pool watches it: anything the server sends while idle (a FATAL from pg_terminate_backend,
 * EOF) closes it, and so does idle_timeout_ms. When max_idle connections are parked already the
 * oldest is closed. */
void pool_put(struct pool *p, struct pooled_upstream *u, size_t max_idle, int idle_timeout_ms);

/* The most recently parked connection with exactly this key (the session uses the SHA-256 of
 * the upstream startup packet), unlinked and handed to the caller (who sets its own callbacks
 * on u->bev and frees u with pooled_upstream_release()), or NULL. Connections of other
 * snapshots are closed on the way. */
struct pooled_upstream *pool_take(struct pool *p, const struct snapshot *snap, int env_index,
                                  const uint8_t *key, size_t key_len);

/* Frees u's bookkeeping after the caller took its bev and fd (set u->bev = NULL, u->fd = -1
 * first), or closes the connection too when they are still set. */
void pooled_upstream_release(struct pooled_upstream *u);

#endif
