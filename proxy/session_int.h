/* session_int.h — what the parts of one session share inside the proxy: the session object
 * and its states (session.c owns them and every state change), and the statement guard's side
 * of a session (session_guard.c). Not a public header: nothing outside proxy/ includes it. */
#ifndef PGSOV_SESSION_INT_H
#define PGSOV_SESSION_INT_H

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "pgsov/config.h"
#include "pgsov/pool.h"
#include "pgsov/rules.h"
#include "pgsov/scram.h"
#include "pgsov/server.h"
#include "pgsov/stmt_class.h"
#include "pgsov/tls.h"
#include "pgsov/users.h"

#define MAX_PENDING_REFUSALS 1024   /* beyond this, stop reading the client until they return */
#define MAX_PREPARED_NAMES 256
#define REFUSAL_STMT_NAME "pgsov_refused"

enum session_state {
    S_STARTUP, S_CLIENT_TLS, S_CLIENT_AUTH, S_CONNECTING, S_UPSTREAM_SSL, S_UPSTREAM_TLS, S_AUTH,
    S_RELAY, S_RESET, S_CLOSING,
};


/* auth = proxy: what authentication needs, freed once the session relays. */
struct proxy_auth {
    const struct user_entry *entry;     /* NULL: unknown user (mock exchange) */
    unsigned char cb_data[SCRAM_CB_MAX];/* our certificate's tls-server-end-point hash */
    size_t cb_len;
    struct scram_server *server;        /* client ↔ proxy */
    struct scram_client *client;        /* proxy ↔ upstream */
    bool upstream_proved;               /* the upstream's SCRAM signature verified */
    bool failed;                        /* answer 28P01 when the back-off timer fires */
};

struct refusal {                 /* a refusal whose marked server error has not come back */
    struct refusal *next;
    uint32_t seq;
    uint64_t unit;                 /* ready_received when the ReadyForQuery that closes its
                                      Query or Sync unit has come: done, answered or skipped */
    char *message, *detail, *hint;
};

struct prepared_name {           /* SQL-level PREPARE name → classes, for EXECUTE */
    struct prepared_name *next;
    class_set classes;
    char name[64];
};

struct session {
    struct session *prev, *next;
    struct worker *w;
    struct snapshot *snap;
    uint64_t id;
    enum session_state state;

    int client_fd;
    bool client_fd_owned_by_bev;
    struct bufferevent *client, *server;
    struct event *client_rev, *server_rev;  /* relay on plain TCP: our own reads (see raw_read) */
    int server_fd;
    bool server_fd_owned_by_bev;        /* TLS bufferevents close their fd; plain ones do not */
    struct event *timer;

    /* who */
    struct conn_facts facts;
    char source[64];
    char user[64];
    char env_name[64];
    int env_index;
    const struct rule *rule;
    struct tls_identity tls_id;
    bool client_tls;
    bool gssenc_answered;

    /* auth = proxy */
    bool proxy_auth;
    char upstream_user[64];             /* the role the proxy logs in as */
    const char *upstream_password;      /* from the snapshot's config; NULL: none configured */
    struct proxy_auth *auth;
    unsigned char backoff_key[BACKOFF_KEY_LEN];

    /* startup for the upstream, built once routed */
    struct evbuffer *upstream_startup;
    int addr_index;

    /* upstream reuse (auth = proxy with upstream_reuse): NULL when this backend is never reused */
    uint8_t *pool_key;                  /* SHA-256 of the upstream startup packet: who else may have it */
    size_t pool_key_len;
    struct param_list *params;          /* what the backend reported, for the next client */
    uint64_t upstream_uses;             /* clients this backend served before this one */

    /* relay framing */
    uint32_t client_left, server_left;  /* bytes of the current message still to stream */
    char txn_status;                    /* 'I', 'T', 'E' from ReadyForQuery */
    uint32_t pending_ready;             /* Q/S/F forwarded minus ReadyForQuery received */
    uint64_t ready_received;            /* ReadyForQuery messages from the server so far */
    bool after_execute;                 /* the last client message (bar Sync/Flush) was Execute */
    uint32_t syncs_after_execute;       /* Syncs since it: ignored if it started a copy-in */
    bool copy_in;                       /* the client is sending COPY data */
    bool lexing_unsafe;
    char lexing_reason[160];
    bool batch_open;                    /* extended-protocol messages forwarded since the last Sync */
    bool draining;

    /* guard */
    char nonce[17];
    uint32_t refusal_seq;
    struct refusal *refusals, *refusals_tail;
    int n_refusals;
    bool paused_for_refusals;           /* client reading stopped at MAX_PENDING_REFUSALS */
    struct prepared_name *prepared;
    int n_prepared;

    /* cancel */
    uint32_t proxy_pid, proxy_secret;
    bool cancel_registered;
    uint32_t upstream_pid, upstream_secret;

    /* stats */
    uint64_t bytes_from_client, bytes_from_server;
    struct timespec started;
    const char *close_reason;
};

static inline const struct config *cfg_of(const struct session *s)
{
    return s->snap->cfg;
}

static inline void id_text(const struct session *s, char *buf, size_t size)
{
    snprintf(buf, size, "%llu", (unsigned long long)s->id);
}

static inline const char *tls_text(const struct session *s, char *buf, size_t size)
{
    if (!s->client_tls)
        return "none";
    if (!s->tls_id.has_cert)
        return "tls";
    snprintf(buf, size, "cert:%s", s->tls_id.cn);
    return buf;
}

/* ---- the statement guard's side of a session (session_guard.c) ---------------------------- */

/* A Query ('Q'), Parse ('P') or FunctionCall ('F', naming function fn_oid) whose SQL is sql:
 * true when the session's
 * rule allows it (audited when its class is ddl, role or privileged); false when it is refused,
 * with the refusal queued for session_guard_substitute() and the audit line written. */
bool session_guard_message(struct session *s, char type, const char *sql, size_t sql_len,
                           uint32_t fn_oid);

/* Writes to the server, in place of the refused message of this type, a marked statement that
 * fails at parse analysis where the refused one would have run. */
void session_guard_substitute(struct session *s, char type);

/* A ReadyForQuery from the server (counted in ready_received): refusals of the units it closes
 * whose marked error never came (the server skipped them: an aborted transaction, an earlier
 * error in the batch) are done, so they no longer count against MAX_PENDING_REFUSALS. */
void session_guard_ready(struct session *s);

/* An ErrorResponse from the server while refusals are pending: when it is the marked error of
 * the oldest one, writes the proxy's own ErrorResponse (42501, rule, hint) to out instead and
 * returns true; false for any other error, which the caller relays as it is. */
bool session_guard_replace_error(struct session *s, const uint8_t *body, uint32_t len, struct evbuffer *out);

/* Frees the pending refusals and the SQL-level prepared-statement names. */
void session_guard_free(struct session *s);

#endif
