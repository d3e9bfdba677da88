/* session.c — one client and its upstream, from the first byte to close (see session.h).
 *
 * States move through session_set_state() only:
 *   S_STARTUP      reading SSLRequest / GSSENCRequest / CancelRequest / StartupMessage
 *   S_CLIENT_TLS   TLS handshake with the client
 *   S_CLIENT_AUTH  auth = proxy: the proxy authenticates the client (SCRAM, certificate) before
 *                  any upstream connection is opened
 *   S_CONNECTING   TCP connect to the upstream (tries each resolved address)
 *   S_UPSTREAM_SSL SSLRequest sent, waiting for 'S' / 'N'
 *   S_UPSTREAM_TLS TLS handshake with the upstream
 *   S_AUTH         startup sent; authentication relayed until the first ReadyForQuery
 *   S_RELAY        both directions stream; the framing of each is tracked
 *   S_RESET        the client has gone; its upstream runs DISCARD ALL before it is parked for
 *                  the next client (auth = proxy, upstream_reuse; see pool.h)
 *   S_CLOSING      flushing a last message to the client
 *
 * Relay looks at message headers only and moves bodies with evbuffer_remove_buffer (no
 * copy), except for the few types it must read: Query, Parse and FunctionCall from the
 * client when the statement guard is on; ReadyForQuery, ParameterStatus and (while a refusal
 * is pending) ErrorResponse from the server.
 *
 * Refusal by substitution: a refused statement is replaced by one that makes the *server*
 * raise an error at exactly that point (a cast of a marked string to int4, which fails at
 * parse analysis). The server thus keeps transaction state, pipelining and message order
 * exactly as for any other error: a transaction block is aborted, an extended-protocol batch
 * is skipped up to Sync and its implicit transaction rolled back. When that marked error
 * comes back, the proxy swaps it for its own ErrorResponse (42501, rule, hint); that side —
 * classification, the substitute, the swap, the audit lines — lives in session_guard.c, and
 * the session object both files share in session_int.h. */
#include "pgsov/session.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/rand.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "pgsov/cancel.h"
#include "pgsov/log.h"
#include "pgsov/pool.h"
#include "pgsov/rules.h"
#include "pgsov/scram.h"
#include "pgsov/server.h"
#include "pgsov/users.h"
#include "pgsov/tls.h"
#include "pgsov/wire.h"
#include "session_int.h"

#define HIGH_WATER (256 * 1024)     /* stop reading the other side above this much output */
#define LOW_WATER (64 * 1024)       /* resume below this */

static const char *const state_names[] = {
    "startup", "client_tls", "client_auth", "connecting", "upstream_ssl", "upstream_tls", "auth",
    "relay", "reset", "closing",
};

static atomic_uint_fast64_t next_session_id = 1;

static void session_free(struct session *s);
static void proxy_auth_free(struct session *s);
static void client_read_cb(struct bufferevent *bev, void *arg);
static void client_event_cb(struct bufferevent *bev, short what, void *arg);
static void client_write_cb(struct bufferevent *bev, void *arg);
static void server_read_cb(struct bufferevent *bev, void *arg);
static void server_event_cb(struct bufferevent *bev, short what, void *arg);
static void server_write_cb(struct bufferevent *bev, void *arg);
static void upstream_connect_next(struct session *s);
static void start_raw_reads(struct session *s);
static void reuse_prepare(struct session *s);
static bool reuse_attach(struct session *s);
static void register_cancel(struct session *s, struct evbuffer *out);
static void enter_relay(struct session *s);

/* ---- small helpers -------------------------------------------------------------------- */

static bool transition_ok(enum session_state from, enum session_state to)
{
    if (to == S_CLOSING)
        return true;
    switch (from) {
    case S_STARTUP: return to == S_CLIENT_TLS || to == S_CONNECTING || to == S_CLIENT_AUTH;
    case S_CLIENT_TLS: return to == S_STARTUP;
    case S_CLIENT_AUTH: return to == S_CONNECTING || to == S_RELAY;   /* S_RELAY: a reused upstream */
    case S_CONNECTING: return to == S_UPSTREAM_SSL || to == S_AUTH || to == S_CONNECTING;
    case S_UPSTREAM_SSL: return to == S_UPSTREAM_TLS;
    case S_UPSTREAM_TLS: return to == S_AUTH;
    case S_AUTH: return to == S_RELAY;
    case S_RELAY: return to == S_RESET;
    case S_RESET: return false;
    case S_CLOSING: return false;
    }
    return false;
}

static void session_set_state(struct session *s, enum session_state to)
{
    if (!transition_ok(s->state, to)) {
        log_event(LOG_ERROR, "bug", "session_state_transition", state_names[s->state], "to",
                  state_names[to], NULL);
        abort();
    }
    s->state = to;
}

static void timer_cb(evutil_socket_t fd, short what, void *arg);

static void arm_timer(struct session *s, int ms)
{
    if (ms <= 0) {
        if (s->timer)
            evtimer_del(s->timer);
        return;
    }
    if (!s->timer && !(s->timer = evtimer_new(worker_base(s->w), timer_cb, s)))
        return;
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    evtimer_add(s->timer, &tv);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Copies n bytes at offset off of buf into dst. */
static void peek_at(struct evbuffer *buf, size_t off, void *dst, size_t n)
{
    struct evbuffer_ptr p;
    evbuffer_ptr_set(buf, &p, off, EVBUFFER_PTR_SET);
    evbuffer_copyout_from(buf, &p, dst, n);
}

enum next_message { MSG_BAD = -1, MSG_NEED_HEADER, MSG_NEED_BODY, MSG_WHOLE };

/* Reads the header of the next message in in (type and length; the body is len - 4 bytes after
 * the 5-byte header) and says whether the whole message has arrived. MSG_BAD: the header is
 * invalid (err says why). Used where messages are handled whole, before and around relay. */
static enum next_message next_message(struct evbuffer *in, uint32_t max, char *type, uint32_t *len,
                                      struct pgsov_err *err)
{
    size_t avail = evbuffer_get_length(in);
    if (avail < WIRE_HEADER_LEN)
        return MSG_NEED_HEADER;
    uint8_t hdr[5];
    evbuffer_copyout(in, hdr, 5);
    if (wire_message_header(hdr, max, type, len, err) != 0)
        return MSG_BAD;
    return avail >= 1 + (size_t)*len ? MSG_WHOLE : MSG_NEED_BODY;
}

/* ---- closing ---------------------------------------------------------------------------- */

/* The one place the upstream connection is dropped, whoever owns its fd. */
static void server_drop(struct session *s)
{
    if (s->server_rev) {
        event_free(s->server_rev);
        s->server_rev = NULL;
    }
    if (s->server)
        bufferevent_free(s->server);
    if (!s->server_fd_owned_by_bev && s->server_fd >= 0)
        close(s->server_fd);
    s->server = NULL;
    s->server_fd = -1;
    s->server_fd_owned_by_bev = false;
}

static void log_close(struct session *s)
{
    if (!log_enabled(LOG_INFO))
        return;
    char id[24], in[24], out[24], dur[32];
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double ms = (double)(now.tv_sec - s->started.tv_sec) * 1000.0 +
                (double)(now.tv_nsec - s->started.tv_nsec) / 1e6;
    id_text(s, id, sizeof id);
    snprintf(in, sizeof in, "%llu", (unsigned long long)s->bytes_from_client);
    snprintf(out, sizeof out, "%llu", (unsigned long long)s->bytes_from_server);
    snprintf(dur, sizeof dur, "%.1f", ms);
    log_event(LOG_INFO, "close", "session", id, "src", s->source, "user", s->user,
              "env", s->env_name, "reason", s->close_reason ? s->close_reason : "client",
              "bytes_in", in, "bytes_out", out, "duration_ms", dur, NULL);
}

/* Starts or stops reading one side, whichever way it is read (our event or the bufferevent). */
static void read_enable(struct session *s, bool client, bool on)
{
    struct event *ev = client ? s->client_rev : s->server_rev;
    struct bufferevent *bev = client ? s->client : s->server;
    if (ev) {
        if (on)
            event_add(ev, NULL);
        else
            event_del(ev);
    } else if (bev) {
        if (on)
            bufferevent_enable(bev, EV_READ);
        else
            bufferevent_disable(bev, EV_READ);
    }
}

/* Sends what is queued for the client, then closes. */
static void session_close_after_flush(struct session *s, const char *reason)
{
    if (!s->close_reason)
        s->close_reason = reason;
    if (s->state == S_CLOSING)
        return;
    session_set_state(s, S_CLOSING);
    server_drop(s);
    if (!s->client || evbuffer_get_length(bufferevent_get_output(s->client)) == 0) {
        session_free(s);
        return;
    }
    read_enable(s, true, false);
    bufferevent_setwatermark(s->client, EV_WRITE, 0, 0);
    bufferevent_setcb(s->client, NULL, client_write_cb, client_event_cb, s);
    bufferevent_enable(s->client, EV_WRITE);
    arm_timer(s, 5000);   /* a client that never reads must not pin the session */
}

static void session_fatal(struct session *s, const char *sqlstate, const char *message,
                          const char *detail, const char *hint, const char *reason)
{
    if (s->client)
        wire_error_response(bufferevent_get_output(s->client), "FATAL", sqlstate, message, detail, hint);
    session_close_after_flush(s, reason);
}

static void session_free(struct session *s)
{
    log_close(s);
    if (s->timer)
        event_free(s->timer);
    server_drop(s);
    if (s->client_rev)
        event_free(s->client_rev);
    if (s->client)
        bufferevent_free(s->client);
    if (!s->client_fd_owned_by_bev && s->client_fd >= 0)
        close(s->client_fd);
    if (s->upstream_startup)
        evbuffer_free(s->upstream_startup);
    free(s->pool_key);
    if (s->params) {
        params_clear(s->params);
        free(s->params);
    }
    proxy_auth_free(s);
    if (s->cancel_registered)
        cancel_unregister(s->proxy_pid);
    session_guard_free(s);
    worker_session_removed(s->w, s);
    snapshot_unref(s->snap);
    free(s);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    switch (s->state) {
    case S_CLIENT_AUTH:
        if (s->auth && s->auth->failed) {
            char msg[160];
            snprintf(msg, sizeof msg, "password authentication failed for user \"%s\"", s->user);
            session_fatal(s, "28P01", msg, NULL, NULL, "authentication failed");
            return;
        }
        session_fatal(s, "08006", "pgsov: authentication timed out", NULL, NULL, "auth timeout");
        return;
    case S_CLOSING:
        s->close_reason = "client did not read its last message";
        session_free(s);
        return;
    case S_RESET:
        s->close_reason = "upstream reset timed out";
        session_free(s);
        return;
    case S_RELAY:
        if (s->draining) {
            session_terminate(s);
            return;
        }
        if (s->txn_status == 'I' && s->pending_ready == 0) {
            session_fatal(s, "57P05", "pgsov: terminating connection due to idle timeout",
                          NULL, "The proxy closes idle sessions after idle_timeout in proxy.ini.",
                          "idle timeout");
        } else {
            arm_timer(s, cfg_of(s)->idle_timeout_ms);
        }
        return;
    case S_CONNECTING:
    case S_UPSTREAM_SSL:
    case S_UPSTREAM_TLS:
        log_event(LOG_WARN, "upstream_timeout", "env", s->env_name, "state", state_names[s->state], NULL);
        session_fatal(s, "08006", "pgsov: timed out connecting to the upstream of this environment",
                      NULL, "Check that the database is reachable from the proxy (connect_timeout in proxy.ini).",
                      "upstream connect timeout");
        return;
    default:
        session_fatal(s, "08006", "pgsov: startup timed out", NULL,
                      "The connection must finish startup and authentication within startup_timeout.",
                      "startup timeout");
        return;
    }
}

/* ---- startup ---------------------------------------------------------------------------- */

static void describe_source(struct session *s, const struct sockaddr *addr, socklen_t len)
{
    memset(&s->facts, 0, sizeof s->facts);
    if (addr->sa_family == AF_UNIX) {
        s->facts.is_unix = true;
        snprintf(s->source, sizeof s->source, "local");
        return;
    }
    if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        s->facts.family = AF_INET;
        memcpy(s->facts.addr, &in->sin_addr, 4);
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        snprintf(s->source, sizeof s->source, "%s:%u", ip, ntohs(in->sin_port));
    } else if (addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
        s->facts.family = AF_INET6;
        memcpy(s->facts.addr, &in6->sin6_addr, 16);
        char ip[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        snprintf(s->source, sizeof s->source, "[%s]:%u", ip, ntohs(in6->sin6_port));
    }
}

void session_accept(struct worker *w, int fd, const struct sockaddr *addr, socklen_t len)
{
    struct session *s = calloc(1, sizeof *s);
    if (!s) {
        close(fd);
        return;
    }
    s->w = w;
    s->snap = server_snapshot();
    s->id = atomic_fetch_add(&next_session_id, 1);
    s->client_fd = fd;
    s->server_fd = -1;
    s->env_index = -1;
    s->txn_status = 'I';
    clock_gettime(CLOCK_MONOTONIC, &s->started);
    unsigned char rnd[8];
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        close(fd);
        snapshot_unref(s->snap);
        free(s);
        return;
    }
    for (int i = 0; i < 8; i++)
        snprintf(s->nonce + 2 * i, 3, "%02x", rnd[i]);
    describe_source(s, addr, len);
    backoff_key_from_sockaddr(addr, s->backoff_key);
    worker_session_added(w, s);

    if (addr->sa_family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    }
    s->client = bufferevent_socket_new(worker_base(w), fd, 0);
    s->timer = evtimer_new(worker_base(w), timer_cb, s);
    if (!s->client || !s->timer) {
        s->close_reason = "out of memory";
        session_free(s);
        return;
    }
    char id[24], worker[16];
    id_text(s, id, sizeof id);
    snprintf(worker, sizeof worker, "%d", worker_index(w));
    log_event(LOG_DEBUG, "connect", "session", id, "src", s->source, "worker", worker, NULL);
    bufferevent_setcb(s->client, client_read_cb, NULL, client_event_cb, s);
    bufferevent_setwatermark(s->client, EV_READ, 0, 0);
    bufferevent_enable(s->client, EV_READ | EV_WRITE);
    arm_timer(s, cfg_of(s)->startup_timeout_ms);
}

/* Replaces the plain bufferevent on fd by a TLS one, which then owns fd and ssl. NULL when
 * memory runs out (ssl freed; fd still the caller's). */
static struct bufferevent *tls_wrap(struct session *s, struct bufferevent *plain, int fd, SSL *ssl,
                                    enum bufferevent_ssl_state how, bufferevent_data_cb read_cb,
                                    bufferevent_event_cb event_cb)
{
    bufferevent_free(plain);
    struct bufferevent *bev = bufferevent_openssl_socket_new(worker_base(s->w), fd, ssl, how,
                                                             BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    bufferevent_setcb(bev, read_cb, NULL, event_cb, s);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    return bev;
}

static void start_client_tls(struct session *s)
{
    SSL *ssl = SSL_new(s->snap->client_ctx);
    if (!ssl) {
        session_close_after_flush(s, "out of memory");
        return;
    }
    /* 'S' goes out on the raw socket: nothing else is queued before the handshake. */
    char yes = 'S';
    if (send(s->client_fd, &yes, 1, MSG_NOSIGNAL) != 1) {
        SSL_free(ssl);
        session_close_after_flush(s, "client went away");
        return;
    }
    session_set_state(s, S_CLIENT_TLS);
    s->client = tls_wrap(s, s->client, s->client_fd, ssl, BUFFEREVENT_SSL_ACCEPTING, client_read_cb,
                         client_event_cb);
    if (!s->client) {
        session_close_after_flush(s, "out of memory");
        return;
    }
    s->client_fd_owned_by_bev = true;
}

/* The cancel packet has gone out (output drained): this forwarder is done. */
static void cancel_written_cb(struct bufferevent *bev, void *arg)
{
    bufferevent_free(bev);
}

static void cancel_event_cb(struct bufferevent *bev, short what, void *arg)
{
    if (!(what & BEV_EVENT_CONNECTED))
        bufferevent_free(bev);
}

static void forward_cancel(struct session *s, uint32_t pid, uint32_t secret)
{
    struct cancel_target t;
    char id[24];
    id_text(s, id, sizeof id);
    if (!cancel_lookup(pid, secret, &t)) {
        log_event(LOG_INFO, "cancel_ignored", "session", id, "src", s->source, "reason", "unknown key", NULL);
        return;
    }
    int fd = socket(t.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    /* The cancel packet is 16 bytes and fits any socket buffer: a non-blocking connect to a
     * local-network upstream, then one write when it completes. */
    struct bufferevent *bev = bufferevent_socket_new(worker_base(s->w), fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        close(fd);
        return;
    }
    uint8_t pkt[16];
    wire_cancel_request(pkt, t.upstream_pid, t.upstream_secret);
    bufferevent_write(bev, pkt, sizeof pkt);
    bufferevent_setcb(bev, NULL, cancel_written_cb, cancel_event_cb, NULL);
    if (bufferevent_socket_connect(bev, (struct sockaddr *)&t.addr, (int)t.addr_len) != 0) {
        bufferevent_free(bev);
        return;
    }
    bufferevent_enable(bev, EV_WRITE);
    log_event(LOG_INFO, "cancel_forwarded", "session", id, "src", s->source, NULL);
}

static bool encoding_is_utf8(const char *v)
{
    return !strcasecmp(v, "UTF8") || !strcasecmp(v, "UTF-8") || !strcasecmp(v, "unicode");
}

/* Is a startup parameter or `-c` option one the guard's lexer cannot follow? */
static bool unsafe_lexing_setting(const char *name, const char *value)
{
    if (!strcasecmp(name, "client_encoding"))
        return !encoding_is_utf8(value);
    if (!strcasecmp(name, "standard_conforming_strings"))
        return strcasecmp(value, "on") != 0 && strcasecmp(value, "true") != 0 &&
               strcasecmp(value, "1") != 0 && strcasecmp(value, "yes") != 0;
    return false;
}

static void refuse_connection(struct session *s, const char *why_detail)
{
    char id[24], msg[320], hint[320];
    id_text(s, id, sizeof id);
    snprintf(msg, sizeof msg, "pgsov: user \"%s\" from %s may not reach environment \"%s\"",
             s->user, s->source, s->env_name);
    snprintf(hint, sizeof hint, "Connect to an environment this source is allowed, or add an "
             "allow rule for it to %s.", cfg_of(s)->n_rules_files ? cfg_of(s)->rules_files[0] : "the rules file");
    log_event(LOG_WARN, "refused", "session", id, "src", s->source, "user", s->user,
              "env", s->env_name, "reason", why_detail, NULL);
    char tlsbuf[300];
    json_t *a = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "event", "connection_refused",
                          "session", id, "environment", s->env_name, "user", s->user,
                          "source", s->source, "tls", tls_text(s, tlsbuf, sizeof tlsbuf));
    if (a) {
        json_object_set_new(a, "reason", json_string(why_detail));
        audit_write(a);
    }
    session_fatal(s, "28000", msg, why_detail, hint, "refused by rules");
}

/* A key given twice: PostgreSQL uses the last, the proxy would check the first. */
static const char *duplicate_startup_key(const struct startup_packet *sp)
{
    for (int i = 0; i < sp->n_params; i++)
        for (int j = i + 1; j < sp->n_params; j++)
            if (!strcasecmp(sp->keys[i], sp->keys[j]))
                return sp->keys[i];
    return NULL;
}

/* Settings that change who the session is, as SET ROLE / SET SESSION AUTHORIZATION do. */
static bool identity_setting(const char *name)
{
    return !strcasecmp(name, "role") || !strcasecmp(name, "session_authorization");
}

/* Reads every setting the startup packet asks the server to apply, as the server reads it:
 * parameters other than user/database/options/replication, and every switch of options.
 * Sets *lexing to the first one the guard's lexer cannot follow and *identity to the first that
 * changes the session's role. Returns false when options cannot be read. */
static bool startup_settings(const struct startup_packet *sp, const char *options, char *lexing,
                             char *identity, size_t size)
{
    lexing[0] = identity[0] = '\0';
    for (int i = 0; i < sp->n_params; i++) {
        const char *k = sp->keys[i];
        if (!strcmp(k, "user") || !strcmp(k, "database") || !strcmp(k, "options") ||
            !strcmp(k, "replication") || !strncmp(k, "_pq_.", 5))
            continue;
        if (!lexing[0] && unsafe_lexing_setting(k, sp->values[i]))
            snprintf(lexing, size, "%s", k);
        if (!identity[0] && identity_setting(k))
            snprintf(identity, size, "%s", k);
    }
    struct wire_options_iter it = { .options = options };
    char name[128], value[1024];
    int rc;
    while (options && (rc = wire_options_next(&it, name, sizeof name, value, sizeof value)) != 0) {
        if (rc < 0)
            return false;
        if (!lexing[0] && unsafe_lexing_setting(name, value))
            snprintf(lexing, size, "%s", name);
        if (!identity[0] && identity_setting(name))
            snprintf(identity, size, "%s", name);
    }
    return true;
}

/* Builds the StartupMessage for the upstream from the client's: the real database, without
 * pgsov.env and without _pq_ options. Also routes: env, user, rule. Returns false when it
 * has already answered the client. */
static bool route_startup(struct session *s, const struct startup_packet *sp)
{
    const struct config *cfg = cfg_of(s);
    const char *user = startup_get(sp, "user");
    const char *database = startup_get(sp, "database");
    const char *options = startup_get(sp, "options");
    char envs[256];
    config_env_names(cfg, envs, sizeof envs);

    if (!user || !*user) {
        session_fatal(s, "28000", "no PostgreSQL user name specified in startup packet", NULL, NULL,
                      "no user");
        return false;
    }
    if (strlen(user) >= sizeof s->user) {
        session_fatal(s, "28000", "pgsov: user name longer than 63 bytes", NULL, NULL, "long user");
        return false;
    }
    snprintf(s->user, sizeof s->user, "%s", user);
    if (!database || !*database)
        database = user;

    const char *dup = duplicate_startup_key(sp);
    if (dup) {
        char msg[200];
        snprintf(msg, sizeof msg, "pgsov: startup parameter \"%.64s\" given more than once", dup);
        session_fatal(s, "08P01", msg, "The server would use the last value, the proxy checks one.",
                      "Send each startup parameter once.", "duplicate startup parameter");
        return false;
    }
    const char *replication = startup_get(sp, "replication");
    if (replication && strcasecmp(replication, "false") != 0 && strcasecmp(replication, "off") != 0 &&
        strcmp(replication, "0") != 0) {
        session_fatal(s, "28000", "pgsov: replication connections are not relayed",
                      "The statement guard cannot see what a replication connection runs.",
                      "Connect replication clients to the database directly.", "replication");
        return false;
    }

    /* The declared environment: -c pgsov.env=NAME, else the database name. */
    char env_value[128], rest[2048];
    const struct env_config *env = NULL;
    const char *real_db = NULL;
    int took = options ? wire_options_take(options, "pgsov.env", env_value, sizeof env_value,
                                           rest, sizeof rest) : 0;
    if (took < 0) {
        session_fatal(s, "08P01", "pgsov: the options startup parameter is too long or malformed",
                      NULL, NULL, "bad options");
        return false;
    }
    if (took == 1) {
        env = config_find_env(cfg, env_value);
        real_db = database;
        snprintf(s->env_name, sizeof s->env_name, "%.63s", env_value);
    } else {
        env = config_find_env(cfg, database);
        snprintf(s->env_name, sizeof s->env_name, "%.63s", database);
    }
    if (!env) {
        char msg[300], hint[400];
        snprintf(msg, sizeof msg, "pgsov: unknown environment \"%s\"", s->env_name);
        snprintf(hint, sizeof hint, "Declare one of: %s — as the database name "
                 "(postgres://user@proxy/production) or with options=-c pgsov.env=NAME.", envs);
        char id[24];
        id_text(s, id, sizeof id);
        log_event(LOG_WARN, "refused", "session", id, "src", s->source, "user", s->user,
                  "env", s->env_name, "reason", "unknown environment", NULL);
        session_fatal(s, "3D000", msg, NULL, hint, "unknown environment");
        return false;
    }
    snprintf(s->env_name, sizeof s->env_name, "%s", env->name);
    s->env_index = (int)(env - cfg->envs);
    if (!real_db)
        real_db = env->database;

    /* Lexing settings the guard cannot follow are refused before anything reaches the server;
     * a role set at startup waits for the rule (it needs class privileged, as SET ROLE does). */
    char lexing[128], identity[128];
    if (!startup_settings(sp, options, lexing, identity, sizeof lexing)) {
        session_fatal(s, "08P01", "pgsov: the options startup parameter is too long or malformed",
                      NULL, NULL, "bad options");
        return false;
    }
    if (cfg->guard && lexing[0]) {
        char msg[200];
        snprintf(msg, sizeof msg, "pgsov: %s may not be changed through this proxy", lexing);
        session_fatal(s, "0A000", msg,
                      "The statement guard reads SQL as the server would with "
                      "standard_conforming_strings = on and client_encoding = UTF8.",
                      "Connect with the defaults (client_encoding=UTF8).", "lexing setting");
        return false;
    }

    /* Rules: deny by default. */
    s->facts.user = s->user;
    s->facts.env = s->env_name;
    s->facts.tls = s->client_tls;
    s->facts.client_cert = s->tls_id.has_cert;
    s->facts.cert_cn = s->tls_id.has_cert ? s->tls_id.cn : NULL;
    s->facts.cert_sha256 = s->tls_id.has_cert ? s->tls_id.sha256 : NULL;
    const struct rule *r = s->snap->rules ? rules_match(s->snap->rules, &s->facts) : NULL;
    if (!r) {
        refuse_connection(s, "no rule allows this connection (deny by default)");
        return false;
    }
    if (r->action == RULE_DENY) {
        char why[300];
        snprintf(why, sizeof why, "denied by %s:%d", r->file, r->line);
        refuse_connection(s, why);
        return false;
    }
    if (cfg->guard && identity[0] && !(r->classes & CLASS_BIT(CLASS_PRIVILEGED))) {
        char msg[800], detail[400], hint[800], id[24];
        snprintf(msg, sizeof msg, "pgsov: privileged startup setting %s refused for user \"%s\" in "
                 "environment \"%s\" (%s:%d)", identity, s->user, s->env_name, r->file, r->line);
        snprintf(detail, sizeof detail, "Setting %s at startup changes the session's role, as SET ROLE "
                 "does; the rule does not grant privileged.", identity);
        snprintf(hint, sizeof hint, "Connect without -c %s, or grant class privileged in %s:%d.",
                 identity, r->file, r->line);
        id_text(s, id, sizeof id);
        log_event(LOG_WARN, "refused", "session", id, "src", s->source, "user", s->user,
                  "env", s->env_name, "reason", "privileged startup setting", NULL);
        session_fatal(s, "42501", msg, detail, hint, "privileged startup setting");
        return false;
    }
    s->rule = r;
    int mode = r->auth >= 0 ? r->auth : (int)env->auth;
    s->proxy_auth = mode == RULE_AUTH_PROXY;
    if (s->proxy_auth) {
        if (!s->snap->users) {
            session_fatal(s, "28000", "pgsov: this environment needs proxy authentication, but no "
                          "users_file is configured", NULL, "Set users_file in [proxy].", "no users file");
            return false;
        }
        const char *up = r->upstream_user ? r->upstream_user : env_upstream_user(env, s->user);
        if (strlen(up) >= sizeof s->upstream_user) {
            session_fatal(s, "28000", "pgsov: upstream role name too long", NULL, NULL, "long upstream user");
            return false;
        }
        snprintf(s->upstream_user, sizeof s->upstream_user, "%s", up);
        s->upstream_password = env_upstream_password(env, up);
    } else {
        snprintf(s->upstream_user, sizeof s->upstream_user, "%s", s->user);
    }

    /* The upstream's StartupMessage. */
    const char *keys[WIRE_STARTUP_MAX_PARAMS], *values[WIRE_STARTUP_MAX_PARAMS];
    int n = 0;
    bool have_db = false;
    for (int i = 0; i < sp->n_params; i++) {
        const char *k = sp->keys[i];
        if (strncmp(k, "_pq_.", 5) == 0)
            continue;
        if (!strcmp(k, "database")) {
            values[n] = real_db;
            have_db = true;
        } else if (!strcmp(k, "user")) {
            values[n] = s->upstream_user;
        } else if (!strcmp(k, "options") && took == 1) {
            if (!rest[0] || strspn(rest, " \t") == strlen(rest))
                continue;
            values[n] = rest;
        } else {
            values[n] = sp->values[i];
        }
        keys[n++] = k;
    }
    if (!have_db && n < WIRE_STARTUP_MAX_PARAMS) {
        keys[n] = "database";
        values[n++] = real_db;
    }
    s->upstream_startup = evbuffer_new();
    if (!s->upstream_startup) {
        session_close_after_flush(s, "out of memory");
        return false;
    }
    wire_startup_message(s->upstream_startup, WIRE_PROTO_V3, keys, values, n);
    if (s->proxy_auth && cfg_of(s)->upstream_reuse && cfg_of(s)->upstream_max_idle > 0)
        reuse_prepare(s);   /* without memory for it the backend is simply not reused */

    if (!log_enabled(LOG_INFO))
        return true;
    char id[24], rule_at[300], tlsbuf[300], classes[200];
    id_text(s, id, sizeof id);
    snprintf(rule_at, sizeof rule_at, "%s:%d", r->file, r->line);
    class_set_format(r->classes, classes, sizeof classes);
    log_event(LOG_INFO, "route", "session", id, "src", s->source, "user", s->user,
              "upstream_user", s->upstream_user, "env", s->env_name, "db", real_db,
              "auth", s->proxy_auth ? "proxy" : "passthrough", "tls", tls_text(s, tlsbuf, sizeof tlsbuf),
              "rule", rule_at, "classes", classes, NULL);
    return true;
}

static void client_auth_begin(struct session *s);
static void client_auth_message(struct session *s);

static void handle_startup_packet(struct session *s, const uint8_t *pkt, uint32_t len)
{
    struct startup_packet sp;
    struct pgsov_err err;
    if (wire_parse_startup(pkt, len, &sp, &err) != 0) {
        char id[24];
        id_text(s, id, sizeof id);
        log_event(LOG_WARN, "bad_startup", "session", id, "src", s->source, "error", err.msg, NULL);
        session_fatal(s, "08P01", "invalid startup packet layout", err.msg, NULL, "bad startup packet");
        return;
    }
    const struct config *cfg = cfg_of(s);
    switch (sp.kind) {
    case STARTUP_SSL:
        if (s->client_tls) {
            session_close_after_flush(s, "SSLRequest inside TLS");
            return;
        }
        if (evbuffer_get_length(bufferevent_get_input(s->client)) != 0) {
            /* Bytes sent in plaintext after SSLRequest would be read as if protected. */
            session_close_after_flush(s, "plaintext bytes after SSLRequest");
            return;
        }
        if (!s->snap->client_ctx) {
            char no = 'N';
            bufferevent_write(s->client, &no, 1);
            return;
        }
        start_client_tls(s);
        return;
    case STARTUP_GSSENC:
        if (s->gssenc_answered || s->client_tls) {
            session_close_after_flush(s, "repeated GSSENCRequest");
            return;
        }
        s->gssenc_answered = true;
        bufferevent_write(s->client, "N", 1);
        return;
    case STARTUP_CANCEL:
        forward_cancel(s, sp.cancel_pid, sp.cancel_secret);
        s->close_reason = "cancel request";
        session_free(s);
        return;
    case STARTUP_NORMAL:
        break;
    }

    if (sp.version >> 16 != 3) {
        char msg[160];
        snprintf(msg, sizeof msg, "unsupported frontend protocol %u.%u: server supports 3.0 to 3.0",
                 sp.version >> 16, sp.version & 0xffff);
        session_fatal(s, "0A000", msg, NULL, NULL, "protocol version");
        return;
    }
    if (!s->client_tls && (cfg->client_tls == CLIENT_TLS_REQUIRE || cfg->client_tls == CLIENT_TLS_VERIFY_CA)) {
        session_fatal(s, "28000", "pgsov: this proxy accepts TLS connections only",
                      "client_tls in proxy.ini requires TLS.",
                      "Connect with sslmode=require (or verify-full with the proxy's CA).", "TLS required");
        return;
    }
    /* Newer minor versions and _pq_ options are negotiated down, as PostgreSQL does. */
    const char *unknown[WIRE_STARTUP_MAX_PARAMS];
    int n_unknown = 0;
    for (int i = 0; i < sp.n_params; i++)
        if (strncmp(sp.keys[i], "_pq_.", 5) == 0)
            unknown[n_unknown++] = sp.keys[i];
    if ((sp.version & 0xffff) != 0 || n_unknown > 0)
        wire_negotiate_protocol(bufferevent_get_output(s->client), 0, unknown, n_unknown);

    if (!route_startup(s, &sp))
        return;
    if (s->proxy_auth) {
        client_auth_begin(s);
        return;
    }
    s->addr_index = 0;
    session_set_state(s, S_CONNECTING);
    upstream_connect_next(s);
}

/* S_STARTUP: one packet at a time. */
static void read_startup(struct session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->client);
    while (s->state == S_STARTUP) {
        size_t avail = evbuffer_get_length(in);
        if (avail < 4)
            return;
        uint8_t hdr[4];
        evbuffer_copyout(in, hdr, 4);
        uint32_t len;
        struct pgsov_err err;
        if (wire_startup_length(hdr, &len, &err) != 0) {
            char id[24];
            id_text(s, id, sizeof id);
            log_event(LOG_WARN, "bad_startup", "session", id, "src", s->source, "error", err.msg, NULL);
            session_fatal(s, "08P01", "invalid length of startup packet", NULL, NULL, "bad startup length");
            return;
        }
        if (avail < len)
            return;
        uint8_t *pkt = malloc(len);
        if (!pkt) {
            session_close_after_flush(s, "out of memory");
            return;
        }
        evbuffer_remove(in, pkt, len);
        s->bytes_from_client += len;
        handle_startup_packet(s, pkt, len);   /* may free s: return right after */
        free(pkt);
        return;
    }
}

/* ---- upstream --------------------------------------------------------------------------- */

static void upstream_failed(struct session *s, const char *why)
{
    char id[24];
    id_text(s, id, sizeof id);
    log_event(LOG_WARN, "upstream_error", "session", id, "env", s->env_name, "error", why, NULL);
    char detail[400];
    snprintf(detail, sizeof detail, "%s", why);
    session_fatal(s, "08006", "pgsov: could not connect to the upstream of this environment",
                  detail, "The proxy's operator can see the upstream address in its log.",
                  "upstream connect failed");
}

static void upstream_connect_next(struct session *s)
{
    const struct upstream_target *t = &s->snap->upstreams[s->env_index];
    server_drop(s);
    if (s->addr_index >= t->n_addrs) {
        upstream_failed(s, t->n_addrs ? "connection refused or unreachable" : "host did not resolve");
        return;
    }
    const struct sockaddr_storage *a = &t->addrs[s->addr_index];
    socklen_t alen = t->addr_lens[s->addr_index];
    s->addr_index++;
    int fd = socket(a->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        upstream_failed(s, strerror(errno));
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    s->server_fd = fd;
    s->server = bufferevent_socket_new(worker_base(s->w), fd, 0);
    if (!s->server) {
        server_drop(s);
        upstream_failed(s, "out of memory");
        return;
    }
    bufferevent_setcb(s->server, server_read_cb, NULL, server_event_cb, s);
    arm_timer(s, cfg_of(s)->connect_timeout_ms);
    if (bufferevent_socket_connect(s->server, (const struct sockaddr *)a, (int)alen) != 0) {
        upstream_connect_next(s);
        return;
    }
    bufferevent_enable(s->server, EV_READ | EV_WRITE);
}

static void upstream_send_startup(struct session *s)
{
    session_set_state(s, S_AUTH);
    arm_timer(s, cfg_of(s)->startup_timeout_ms);
    evbuffer_add_buffer(bufferevent_get_output(s->server), s->upstream_startup);
    evbuffer_free(s->upstream_startup);
    s->upstream_startup = NULL;
    /* The client may already have sent its first auth response; handle what is there. */
    client_read_cb(s->client, s);
}

static void upstream_connected(struct session *s)
{
    const struct upstream_target *t = &s->snap->upstreams[s->env_index];
    if (!t->ssl_ctx) {
        upstream_send_startup(s);
        return;
    }
    wire_ssl_request(bufferevent_get_output(s->server));
    session_set_state(s, S_UPSTREAM_SSL);
}

static void upstream_ssl_answer(struct session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->server);
    if (evbuffer_get_length(in) < 1)
        return;
    if (evbuffer_get_length(in) > 1) {
        upstream_failed(s, "upstream sent unencrypted data after its answer to SSLRequest");
        return;
    }
    char answer;
    evbuffer_remove(in, &answer, 1);
    const struct env_config *env = &cfg_of(s)->envs[s->env_index];
    if (answer != 'S') {
        char why[200];
        snprintf(why, sizeof why, "the upstream does not accept TLS, but sslmode is %s",
                 sslmode_name(env->sslmode));
        upstream_failed(s, why);
        return;
    }
    SSL *ssl = tls_upstream_ssl(s->snap->upstreams[s->env_index].ssl_ctx, env);
    if (!ssl) {
        upstream_failed(s, "cannot set up TLS for the upstream");
        return;
    }
    session_set_state(s, S_UPSTREAM_TLS);
    s->server = tls_wrap(s, s->server, s->server_fd, ssl, BUFFEREVENT_SSL_CONNECTING, server_read_cb,
                         server_event_cb);
    if (!s->server) {
        upstream_failed(s, "out of memory");
        return;
    }
    s->server_fd_owned_by_bev = true;
}

/* The client gets a key of the proxy's own that maps to this backend's (cancel.h). */
static void register_cancel(struct session *s, struct evbuffer *out)
{
    const struct upstream_target *t = &s->snap->upstreams[s->env_index];
    struct cancel_target ct = { .addr_len = t->addr_lens[s->addr_index - 1],
                                .upstream_pid = s->upstream_pid,
                                .upstream_secret = s->upstream_secret };
    memcpy(&ct.addr, &t->addrs[s->addr_index - 1], sizeof ct.addr);
    if (cancel_register(&ct, &s->proxy_pid, &s->proxy_secret) == 0) {
        s->cancel_registered = true;
        wire_backend_key_data(out, s->proxy_pid, s->proxy_secret);
    }
}

/* The first ReadyForQuery has gone to the client: from here both sides stream. */
static void enter_relay(struct session *s)
{
    session_set_state(s, S_RELAY);
    proxy_auth_free(s);
    arm_timer(s, cfg_of(s)->idle_timeout_ms);
    if (cfg_of(s)->idle_timeout_ms <= 0 && s->timer) {
        event_free(s->timer);   /* idle sessions keep no timer: memory per client */
        s->timer = NULL;
    }
    if (s->params)
        params_compact(s->params);      /* kept for the whole session: no slack */
    bufferevent_setwatermark(s->server, EV_WRITE, LOW_WATER, 0);
    bufferevent_setwatermark(s->client, EV_WRITE, LOW_WATER, 0);
    bufferevent_setcb(s->server, server_read_cb, server_write_cb, server_event_cb, s);
    bufferevent_setcb(s->client, client_read_cb, client_write_cb, client_event_cb, s);
    /* A backend from the pool comes with reading off (pool_take): read through the bufferevent
     * again, until start_raw_reads() moves a plain link to our own event. */
    bufferevent_enable(s->server, EV_READ | EV_WRITE);
    start_raw_reads(s);
    if (evbuffer_get_length(bufferevent_get_input(s->server)))
        server_read_cb(s->server, s);
    if (s->state == S_RELAY && s->client && evbuffer_get_length(bufferevent_get_input(s->client)))
        client_read_cb(s->client, s);
}

/* ---- auth ------------------------------------------------------------------------------- */

static void check_parameter_status(struct session *s, const uint8_t *body, uint32_t len)
{
    const char *name, *value;
    if (wire_parse_parameter_status(body, len, &name, &value) != 0) {
        if (s->params)
            s->params->overflow = true;   /* cannot replay what we could not read */
        return;
    }
    if (s->params)
        params_set(s->params, name, value);
    if (cfg_of(s)->guard && unsafe_lexing_setting(name, value)) {
        s->lexing_unsafe = true;
        snprintf(s->lexing_reason, sizeof s->lexing_reason, "the server reports %s = %.60s", name, value);
    }
}

static bool upstream_login_step(struct session *s, const uint8_t *body, uint32_t len);

/* Server messages before the first ReadyForQuery: authentication, parameters, keys. */
static void auth_from_server(struct session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->server);
    struct evbuffer *out = bufferevent_get_output(s->client);
    while (s->state == S_AUTH) {
        char type;
        uint32_t len;
        struct pgsov_err err;
        enum next_message got = next_message(in, 1024 * 1024, &type, &len, &err);
        if (got == MSG_BAD) {
            upstream_failed(s, err.msg);
            return;
        }
        if (got != MSG_WHOLE)
            return;
        const uint8_t *msg = evbuffer_pullup(in, 1 + len);
        const uint8_t *body = msg + 5;
        uint32_t body_len = len - 4;
        s->bytes_from_server += 1 + len;
        switch (type) {
        case 'R':
            if (s->proxy_auth) {
                /* body points into in: use it before draining. On failure the session has
                 * closed and the buffer is gone. */
                if (!upstream_login_step(s, body, body_len))
                    return;
                evbuffer_drain(in, 1 + len);
                continue;
            }
            if (body_len >= 4 && get32(body) == 10) {
                if (wire_sasl_without_plus(body, body_len, out) <= 0) {
                    evbuffer_drain(in, 1 + len);
                    session_fatal(s, "28000", "pgsov: the upstream offers only SCRAM with channel binding",
                                  "Channel binding cannot cross a proxy that terminates TLS.",
                                  "Allow SCRAM-SHA-256 without -PLUS on the upstream, or use auth = proxy.",
                                  "no usable SASL mechanism");
                    return;
                }
                evbuffer_drain(in, 1 + len);
                continue;
            }
            break;
        case 'K':
            if (body_len == 8) {
                s->upstream_pid = get32(body);
                s->upstream_secret = get32(body + 4);
                evbuffer_drain(in, 1 + len);
                register_cancel(s, out);
                continue;
            }
            break;
        case 'S':
            check_parameter_status(s, body, body_len);
            break;
        case 'Z':
            if (body_len == 1)
                s->txn_status = (char)body[0];
            evbuffer_remove_buffer(in, out, 1 + len);
            enter_relay(s);
            return;
        case 'E': {
            struct wire_error_fields f;
            if (s->proxy_auth && wire_parse_error(body, body_len, &f) == 0 && f.sqlstate &&
                strncmp(f.sqlstate, "28", 2) == 0) {
                /* The upstream refused the proxy's own credentials: say so without naming them. */
                char id[24];
                id_text(s, id, sizeof id);
                log_event(LOG_ERROR, "upstream_login_failed", "session", id, "env", s->env_name,
                          "upstream_user", s->upstream_user, "error", f.message ? f.message : "", NULL);
                evbuffer_drain(in, 1 + len);
                session_fatal(s, "08004", "pgsov: the upstream refused the proxy's login for this user",
                              NULL, "The proxy's operator should check upstream_user and upstream_password "
                              "for this environment in proxy.ini.", "upstream login refused");
                return;
            }
            evbuffer_remove_buffer(in, out, 1 + len);
            session_close_after_flush(s, "upstream refused authentication");
            return;
        }
        default:
            break;
        }
        evbuffer_remove_buffer(in, out, 1 + len);
    }
}

/* Client messages during authentication: only PasswordMessage / SASL responses. */
static void auth_from_client(struct session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->client);
    struct evbuffer *out = bufferevent_get_output(s->server);
    for (;;) {
        char type;
        uint32_t len;
        struct pgsov_err err;
        enum next_message got = next_message(in, 64 * 1024, &type, &len, &err);
        if (got == MSG_BAD || (got != MSG_NEED_HEADER && type != 'p')) {
            session_fatal(s, "08P01", "pgsov: expected an authentication response",
                          got != MSG_BAD ? "Only password or SASL messages are valid before authentication completes."
                                       : err.msg, NULL, "protocol violation in auth");
            return;
        }
        if (got != MSG_WHOLE)
            return;
        /* libpq on a TLS link says "y" (binding supported, not offered); an upstream on TLS
         * reads that as a downgrade attack. Explain instead of forwarding a doomed exchange. */
        if (s->client_tls && len >= 4 + 16) {
            const uint8_t *m = evbuffer_pullup(in, 1 + len);
            const char *mech = (const char *)m + 5;
            size_t mlen = strnlen(mech, len - 4);
            if (mlen < len - 4 && strcmp(mech, "SCRAM-SHA-256") == 0 && mlen + 1 + 4 < len - 4) {
                const uint8_t *data = m + 5 + mlen + 1 + 4;
                if (data[0] == 'y' && s->snap->upstreams[s->env_index].ssl_ctx) {
                    session_fatal(s, "28000", "pgsov: SCRAM passthrough cannot use channel binding",
                                  "Your client supports channel binding over its TLS link to the proxy, and the "
                                  "upstream (also TLS) would treat the missing binding as a downgrade attack.",
                                  "Connect with channel_binding=disable, or let the proxy authenticate clients "
                                  "(auth = proxy).", "SCRAM channel binding over passthrough");
                    return;
                }
            }
        }
        s->bytes_from_client += 1 + len;
        evbuffer_remove_buffer(in, out, 1 + len);
    }
}

/* ---- auth = proxy ------------------------------------------------------------------------ */

static void proxy_auth_free(struct session *s)
{
    if (!s->auth)
        return;
    scram_server_free(s->auth->server);
    scram_client_free(s->auth->client);
    free(s->auth);
    s->auth = NULL;
}

static void send_auth_request(struct session *s, uint32_t code, const void *data, size_t len)
{
    struct evbuffer *out = bufferevent_get_output(s->client);
    uint8_t hdr[9] = { 'R' };
    uint32_t total = (uint32_t)(8 + len);
    hdr[1] = (uint8_t)(total >> 24); hdr[2] = (uint8_t)(total >> 16);
    hdr[3] = (uint8_t)(total >> 8); hdr[4] = (uint8_t)total;
    hdr[5] = (uint8_t)(code >> 24); hdr[6] = (uint8_t)(code >> 16);
    hdr[7] = (uint8_t)(code >> 8); hdr[8] = (uint8_t)code;
    evbuffer_add(out, hdr, sizeof hdr);
    if (len)
        evbuffer_add(out, data, len);
}

/* A 'p' message to the upstream: SASLInitialResponse when mech is set, else raw data. */
static void send_password_message(struct session *s, const char *mech, const void *data, size_t len)
{
    struct evbuffer *out = bufferevent_get_output(s->server);
    size_t body = mech ? strlen(mech) + 1 + 4 + len : len;
    uint8_t hdr[5] = { 'p' };
    uint32_t total = (uint32_t)(4 + body);
    hdr[1] = (uint8_t)(total >> 24); hdr[2] = (uint8_t)(total >> 16);
    hdr[3] = (uint8_t)(total >> 8); hdr[4] = (uint8_t)total;
    evbuffer_add(out, hdr, 5);
    if (mech) {
        uint8_t n[4] = { (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len };
        evbuffer_add(out, mech, strlen(mech) + 1);
        evbuffer_add(out, n, 4);
    }
    evbuffer_add(out, data, len);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Every failure looks the same to the client (28P01), answered after the source's back-off. */
static void client_auth_failed(struct session *s, const char *why)
{
    char id[24];
    id_text(s, id, sizeof id);
    log_event(LOG_WARN, "auth_failed", "session", id, "src", s->source, "user", s->user,
              "env", s->env_name, "reason", why, NULL);
    char tlsbuf[300];
    json_t *a = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "event", "authentication_failed",
                          "session", id, "environment", s->env_name, "user", s->user,
                          "source", s->source, "tls", tls_text(s, tlsbuf, sizeof tlsbuf));
    audit_write(a);
    unsigned delay = server_login_failed(s->backoff_key, now_ms());
    s->auth->failed = true;
    read_enable(s, true, false);
    if (delay == 0) {
        timer_cb(-1, 0, s);
        return;
    }
    arm_timer(s, (int)delay);
}

static void client_auth_done(struct session *s)
{
    server_login_succeeded(s->backoff_key);
    scram_server_free(s->auth->server);
    s->auth->server = NULL;
    if (reuse_attach(s))
        return;
    s->addr_index = 0;
    session_set_state(s, S_CONNECTING);
    upstream_connect_next(s);
}

static void client_auth_begin(struct session *s)
{
    session_set_state(s, S_CLIENT_AUTH);
    s->auth = calloc(1, sizeof *s->auth);
    if (!s->auth) {
        session_close_after_flush(s, "out of memory");
        return;
    }
    const struct users *users = s->snap->users;
    const struct user_entry *u = users_find(users, s->user);
    s->auth->entry = u;
    if (u && u->method == USER_CERT) {
        if (s->tls_id.has_cert && users_cert_allows(users, s->tls_id.cn, strlen(s->tls_id.cn), s->user))
            client_auth_done(s);
        else
            client_auth_failed(s, "no verified client certificate maps to this user");
        return;
    }
    if (u && u->method == USER_TRUST) {
        client_auth_done(s);
        return;
    }
    /* SCRAM; an unknown user gets a mock exchange that fails only at the end. */
    if (s->client_tls) {
        X509 *cert = SSL_get_certificate(bufferevent_openssl_get_ssl(s->client));
        struct pgsov_err err;
        if (!cert || scram_cert_endpoint_hash(cert, s->auth->cb_data, &s->auth->cb_len, &err) != 0)
            s->auth->cb_len = 0;
    }
    const char *names[2];
    size_t n = scram_server_mechanisms(s->auth->cb_len > 0, names);
    char list[64];
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(names[i]) + 1;
        memcpy(list + used, names[i], l);
        used += l;
    }
    list[used++] = '\0';
    send_auth_request(s, 10, list, used);
}

static void client_auth_message(struct session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->client);
    while (s->state == S_CLIENT_AUTH && !s->auth->failed) {
        char type;
        uint32_t len;
        struct pgsov_err err;
        enum next_message got = next_message(in, SCRAM_MAX_MESSAGE + 128, &type, &len, &err);
        if (got == MSG_BAD || (got != MSG_NEED_HEADER && type != 'p')) {
            session_fatal(s, "08P01", "pgsov: expected a SASL response", NULL, NULL, "protocol violation in auth");
            return;
        }
        if (got != MSG_WHOLE)
            return;
        uint8_t *msg = evbuffer_pullup(in, 1 + len);
        const uint8_t *body = msg + 5;
        uint32_t blen = len - 4;
        const char *out;
        size_t out_len;
        s->bytes_from_client += 1 + len;
        if (!s->auth->server) {
            /* SASLInitialResponse: mechanism, int32 length (-1: none), data */
            size_t mlen = strnlen((const char *)body, blen);
            if (mlen == blen || blen - mlen - 1 < 4) {
                evbuffer_drain(in, 1 + len);
                client_auth_failed(s, "malformed SASLInitialResponse");
                return;
            }
            const uint8_t *p = body + mlen + 1;
            uint32_t dlen = get32(p);
            if (dlen != blen - mlen - 1 - 4) {
                evbuffer_drain(in, 1 + len);
                client_auth_failed(s, "SASLInitialResponse length mismatch");
                return;
            }
            const struct user_entry *u = s->auth->entry;
            struct scram_server_params params = {
                .verifier = u && u->method == USER_SCRAM ? &u->verifier : NULL,
                .user = s->user,
                .mock_secret = server_mock_secret(),
                .cb_data = s->auth->cb_len ? s->auth->cb_data : NULL,
                .cb_len = s->auth->cb_len,
            };
            s->auth->server = scram_server_begin(&params, (const char *)body, &err);
            if (!s->auth->server ||
                scram_server_handle_client_first(s->auth->server, (const char *)p + 4, dlen, &out,
                                                 &out_len, &err) != 0) {
                evbuffer_drain(in, 1 + len);
                client_auth_failed(s, err.msg);
                return;
            }
            evbuffer_drain(in, 1 + len);
            send_auth_request(s, 11, out, out_len);
            continue;
        }
        int rc = scram_server_handle_client_final(s->auth->server, (const char *)body, blen, &out,
                                                  &out_len, &err);
        evbuffer_drain(in, 1 + len);
        if (rc != 0) {
            client_auth_failed(s, err.msg);
            return;
        }
        send_auth_request(s, 12, out, out_len);
        client_auth_done(s);
        return;
    }
}

static bool upstream_login_fail(struct session *s, const char *why)
{
    char id[24];
    id_text(s, id, sizeof id);
    log_event(LOG_ERROR, "upstream_login_failed", "session", id, "env", s->env_name,
              "upstream_user", s->upstream_user, "error", why, NULL);
    session_fatal(s, "08004", "pgsov: the proxy could not log in to the upstream for this user",
                  NULL, "The proxy's operator can see why in its log (event upstream_login_failed).",
                  "upstream login failed");
    return false;
}

/* One upstream Authentication* message while the proxy logs in with its own credentials.
 * Returns false when the session has been closed. */
static bool upstream_login_step(struct session *s, const uint8_t *body, uint32_t len)
{
    if (len < 4)
        return upstream_login_fail(s, "short Authentication message");
    uint32_t code = get32(body);
    const char *pw = s->upstream_password;
    struct pgsov_err err;
    const char *out;
    size_t out_len;
    bool tls = s->snap->upstreams[s->env_index].ssl_ctx != NULL;
    /* Only a verified certificate proves who the upstream is; without one, only a completed
     * SCRAM exchange does (its server signature needs the password's keys). */
    enum sslmode mode = cfg_of(s)->envs[s->env_index].sslmode;
    bool identity_verified = tls_upstream_verified(&cfg_of(s)->envs[s->env_index]);

    if (code == 0) {                     /* AuthenticationOk: now the client may know */
        if (s->auth && s->auth->client)
            return upstream_login_fail(s, "upstream accepted the login before SCRAM completed");
        if (pw && !identity_verified && !(s->auth && s->auth->upstream_proved)) {
            char why[300];
            snprintf(why, sizeof why, "upstream accepted the login without proving it knows the "
                     "password, over a link whose server is not verified (sslmode = %s); use "
                     "sslmode = verify-full, or a SCRAM-SHA-256 role", sslmode_name(mode));
            return upstream_login_fail(s, why);
        }
        send_auth_request(s, 0, NULL, 0);
        return true;
    }
    if (!pw) {
        char why[200];
        snprintf(why, sizeof why, "no upstream_password.%s in [env.%s]", s->upstream_user, s->env_name);
        return upstream_login_fail(s, why);
    }
    switch (code) {
    case 3:                              /* cleartext: only inside TLS */
        if (!tls)
            return upstream_login_fail(s, "upstream asks for a cleartext password over a plaintext link");
        send_password_message(s, NULL, pw, strlen(pw) + 1);
        return true;
    case 5: {                            /* MD5 */
        char md5[36];
        if (!identity_verified) {
            char why[300];
            snprintf(why, sizeof why, "upstream asks for MD5 over a link whose server is not verified "
                     "(sslmode = %s): the answer could be cracked offline by whoever sits there; use "
                     "sslmode = verify-full, or a SCRAM-SHA-256 role", sslmode_name(mode));
            return upstream_login_fail(s, why);
        }
        if (len != 8 || scram_md5_response(s->upstream_user, pw, strlen(pw), body + 4, md5, &err) != 0)
            return upstream_login_fail(s, "bad AuthenticationMD5Password");
        send_password_message(s, NULL, md5, strlen(md5) + 1);
        return true;
    }
    case 10: {                           /* SASL: pick, start */
        unsigned char cb[SCRAM_CB_MAX];
        size_t cb_len = 0;
        if (tls) {
            X509 *cert = SSL_get1_peer_certificate(bufferevent_openssl_get_ssl(s->server));
            if (cert && scram_cert_endpoint_hash(cert, cb, &cb_len, &err) != 0)
                cb_len = 0;
            X509_free(cert);
        }
        enum scram_mechanism mech;
        if (scram_select_mechanism((const char *)body + 4, len - 4, cb_len > 0, false, &mech, &err) != 0)
            return upstream_login_fail(s, err.msg);
        struct scram_client_params params = {
            .password = pw, .password_len = strlen(pw), .user = NULL, .mechanism = mech,
            .cb_data = cb_len ? cb : NULL, .cb_len = cb_len,
            .cache = worker_key_cache(s->w, s->env_name, s->upstream_user, pw),
        };
        if (!s->auth && !(s->auth = calloc(1, sizeof *s->auth)))
            return upstream_login_fail(s, "out of memory");
        if (s->auth->client)             /* a second exchange would orphan the first */
            return upstream_login_fail(s, "upstream started a second SASL exchange");
        s->auth->client = scram_client_begin(&params, &err);
        if (!s->auth->client || scram_client_first(s->auth->client, &out, &out_len, &err) != 0)
            return upstream_login_fail(s, err.msg);
        send_password_message(s, scram_mechanism_name(mech), out, out_len);
        return true;
    }
    case 11:                             /* SASLContinue */
        if (!s->auth || !s->auth->client ||
            scram_client_handle_server_first(s->auth->client, (const char *)body + 4, len - 4, &out,
                                             &out_len, &err) != 0)
            return upstream_login_fail(s, s->auth && s->auth->client ? err.msg : "unexpected SASLContinue");
        send_password_message(s, NULL, out, out_len);
        return true;
    case 12:                             /* SASLFinal: the upstream must prove itself */
        if (!s->auth || !s->auth->client ||
            scram_client_handle_server_final(s->auth->client, (const char *)body + 4, len - 4, &err) != 0)
            return upstream_login_fail(s, s->auth && s->auth->client ? err.msg : "unexpected SASLFinal");
        scram_client_free(s->auth->client);
        s->auth->client = NULL;
        s->auth->upstream_proved = true;
        return true;
    default: {
        char why[80];
        snprintf(why, sizeof why, "unsupported authentication request %u", code);
        return upstream_login_fail(s, why);
    }
    }
}

/* ---- upstream reuse (auth = proxy) -------------------------------------------------------
 * A client that ends cleanly leaves its backend in the state a new login would give it, once
 * DISCARD ALL has run (it resets settings to the startup values, drops prepared statements,
 * cursors, temporary tables, listens and advisory locks, and ends SET ROLE / SESSION
 * AUTHORIZATION). The next client whose upstream startup packet is byte-identical gets that
 * backend, with the parameters it reported replayed, exactly as after a fresh login. */

#define RESET_TIMEOUT_MS 5000

/* The key is the SHA-256 of the upstream startup packet: equal digests, equal packets (and 32
 * bytes per session instead of the whole packet). */
static void reuse_prepare(struct session *s)
{
    size_t len = evbuffer_get_length(s->upstream_startup);
    const unsigned char *pkt = evbuffer_pullup(s->upstream_startup, -1);
    s->pool_key = malloc(SHA256_DIGEST_LENGTH);
    s->params = calloc(1, sizeof *s->params);
    if (!pkt || !s->pool_key || !s->params ||
        EVP_Digest(pkt, len, s->pool_key, NULL, EVP_sha256(), NULL) != 1) {
        free(s->pool_key);
        free(s->params);
        s->pool_key = NULL;
        s->params = NULL;
        return;
    }
    s->pool_key_len = SHA256_DIGEST_LENGTH;
}

/* auth = proxy, the client has authenticated: take a parked backend when one matches. */
static bool reuse_attach(struct session *s)
{
    if (!s->pool_key)
        return false;
    struct pooled_upstream *u = pool_take(worker_pool(s->w), s->snap, s->env_index, s->pool_key,
                                          s->pool_key_len);
    if (!u)
        return false;
    s->server = u->bev;
    s->server_fd = u->fd;
    s->server_fd_owned_by_bev = u->fd_owned_by_bev;
    s->addr_index = u->addr_index;
    s->upstream_pid = u->upstream_pid;
    s->upstream_secret = u->upstream_secret;
    s->upstream_uses = u->uses + 1;
    params_clear(s->params);
    *s->params = u->params;             /* moved: u's strings now belong to the session */
    memset(&u->params, 0, sizeof u->params);
    u->bev = NULL;
    u->fd = -1;
    pooled_upstream_release(u);
    evbuffer_free(s->upstream_startup);
    s->upstream_startup = NULL;

    /* What a fresh login would have sent: AuthenticationOk, the parameters, a key, ready. */
    struct evbuffer *out = bufferevent_get_output(s->client);
    send_auth_request(s, 0, NULL, 0);
    params_write(s->params, out);
    const char *name, *value;                   /* the guard reads them as from the server */
    for (size_t off = 0; params_next(s->params, &off, &name, &value);)
        if (cfg_of(s)->guard && unsafe_lexing_setting(name, value)) {
            s->lexing_unsafe = true;
            snprintf(s->lexing_reason, sizeof s->lexing_reason, "the server reports %s = %.60s", name, value);
        }
    register_cancel(s, out);
    s->txn_status = 'I';
    wire_ready_for_query(out, 'I');
    if (log_enabled(LOG_DEBUG)) {
        char id[24], pid[16], uses[24];
        id_text(s, id, sizeof id);
        snprintf(pid, sizeof pid, "%u", s->upstream_pid);
        snprintf(uses, sizeof uses, "%llu", (unsigned long long)s->upstream_uses);
        log_event(LOG_DEBUG, "upstream_reused", "session", id, "env", s->env_name, "upstream_user",
                  s->upstream_user, "upstream_pid", pid, "uses", uses, NULL);
    }
    enter_relay(s);
    return true;
}

/* True when the backend is idle with nothing of this client's left in it or on the way. */
static bool reusable(const struct session *s)
{
    return s->pool_key && s->params && !s->params->overflow && worker_pool(s->w) &&
           s->state == S_RELAY && s->server && !s->draining && !worker_draining(s->w) &&
           s->txn_status == 'I' && s->pending_ready == 0 &&
           !s->batch_open && s->client_left == 0 && s->server_left == 0 && !s->refusals &&
           !s->lexing_unsafe && evbuffer_get_length(bufferevent_get_input(s->server)) == 0 &&
           evbuffer_get_length(bufferevent_get_output(s->server)) == 0;
}

/* The client has ended: drop its side and reset the backend for the next one. */
static void reset_begin(struct session *s)
{
    session_set_state(s, S_RESET);
    if (s->client_rev) {
        event_free(s->client_rev);
        s->client_rev = NULL;
    }
    bufferevent_free(s->client);        /* the client said Terminate: what it did not read is moot */
    s->client = NULL;
    if (!s->client_fd_owned_by_bev && s->client_fd >= 0)
        close(s->client_fd);
    s->client_fd = -1;
    if (s->cancel_registered) {         /* a late cancel of this client must not hit the next */
        bool cancelled = cancel_unregister(s->proxy_pid);
        s->cancel_registered = false;
        if (cancelled) {
            /* A cancel forwarded to this backend may land after the next client's query has
             * started (the forwarder does not wait for it): the backend ends here instead. */
            s->close_reason = "client terminated (not reused: a cancel was sent to its backend)";
            session_free(s);
            return;
        }
    }
    bufferevent_setwatermark(s->server, EV_WRITE, 0, 0);
    wire_query(bufferevent_get_output(s->server), "DISCARD ALL");
    arm_timer(s, RESET_TIMEOUT_MS);
}

/* DISCARD ALL's answer: CommandComplete, the parameters it reset, ReadyForQuery. Anything
 * else (an error, a notification, a COPY) and the backend is closed instead. */
static void reset_from_server(struct session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->server);
    for (;;) {
        char type;
        uint32_t len;
        struct pgsov_err err;
        enum next_message got = next_message(in, 64 * 1024, &type, &len, &err);
        if (got == MSG_BAD) {
            s->close_reason = "upstream reset failed";
            session_free(s);
            return;
        }
        if (got != MSG_WHOLE)
            return;
        const uint8_t *body = evbuffer_pullup(in, 1 + len) + 5;
        if (type == 'S') {
            check_parameter_status(s, body, len - 4);
        } else if (type == 'Z') {
            if (len == 5 && body[0] == 'I' && evbuffer_get_length(in) == 1 + len && !s->params->overflow &&
                !s->lexing_unsafe)
                break;
            s->close_reason = "upstream not idle after reset";
            session_free(s);
            return;
        } else if (type != 'C' && type != 'N') {
            s->close_reason = "upstream reset failed";
            session_free(s);
            return;
        }
        evbuffer_drain(in, 1 + len);
    }
    evbuffer_drain(in, evbuffer_get_length(in));

    struct pooled_upstream *u = calloc(1, sizeof *u);
    if (!u) {
        s->close_reason = "out of memory";
        session_free(s);
        return;
    }
    if (s->server_rev) {                /* the pool watches through the bufferevent */
        event_free(s->server_rev);
        s->server_rev = NULL;
    }
    snapshot_ref(s->snap);
    u->snap = s->snap;
    u->env_index = s->env_index;
    u->addr_index = s->addr_index;
    u->key = s->pool_key;
    u->key_len = s->pool_key_len;
    s->pool_key = NULL;
    u->bev = s->server;
    u->fd = s->server_fd;
    u->fd_owned_by_bev = s->server_fd_owned_by_bev;
    s->server = NULL;
    s->server_fd = -1;
    u->upstream_pid = s->upstream_pid;
    u->upstream_secret = s->upstream_secret;
    u->uses = s->upstream_uses;
    u->params = *s->params;
    memset(s->params, 0, sizeof *s->params);
    const struct config *cfg = cfg_of(s);
    pool_put(worker_pool(s->w), u, (size_t)cfg->upstream_max_idle, cfg->upstream_idle_timeout_ms);
    s->close_reason = "client terminated; upstream kept for reuse";
    session_free(s);
}

/* ---- relay ------------------------------------------------------------------------------ */

/* Moves n bytes from in toward the peer. On a plain TCP link with nothing queued, they are
 * written straight to the peer's socket (one writev, as PgBouncer's sbuf sends from its read
 * callback); only what the socket does not take goes to the bufferevent, which then waits for
 * EV_WRITE. That saves the two epoll_ctl calls per message of enabling and disabling the
 * write event. TLS links always go through their bufferevent. */
/* Writes up to n bytes from the front of in to a socket and drains what it took; the count, or
 * 0 when the socket took nothing (full, or broken: the bufferevent's own write then reports
 * that). send() for one chunk, sendmsg() for several: both go straight to the socket layer,
 * where writev() would pass through the VFS first (measurably more kernel time per message). */
static size_t socket_write(int fd, struct evbuffer *in, size_t n)
{
    struct evbuffer_iovec v[8];
    int nv = evbuffer_peek(in, (ev_ssize_t)n, NULL, v, 8);
    struct iovec iov[8];
    size_t total = 0;
    int used = 0;
    for (int i = 0; i < nv && i < 8 && total < n; i++, used++) {
        iov[i].iov_base = v[i].iov_base;
        iov[i].iov_len = v[i].iov_len < n - total ? v[i].iov_len : n - total;
        total += iov[i].iov_len;
    }
    if (used == 0)
        return 0;
    ssize_t w;
    if (used == 1) {
        w = send(fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL | MSG_DONTWAIT);
    } else {
        struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)used };
        w = sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    if (w <= 0)
        return 0;
    evbuffer_drain(in, (size_t)w);
    return (size_t)w;
}

static void forward(struct evbuffer *in, struct bufferevent *to, int direct_fd, size_t n)
{
    struct evbuffer *out = bufferevent_get_output(to);
    if (direct_fd >= 0 && evbuffer_get_length(out) == 0)
        n -= socket_write(direct_fd, in, n);
    if (n)
        evbuffer_remove_buffer(in, out, n);
}

static int server_direct_fd(const struct session *s)
{
    return s->server_fd_owned_by_bev ? -1 : s->server_fd;
}

static int client_direct_fd(const struct session *s)
{
    return s->client_fd_owned_by_bev ? -1 : s->client_fd;
}

/* n bytes at offset off of in: a pointer into the buffer when they lie in one chain, else a
 * copy in *copy (the caller frees it). NULL when memory runs out. */
static const uint8_t *message_at(struct evbuffer *in, size_t off, size_t n, uint8_t **copy)
{
    struct evbuffer_ptr p;
    struct evbuffer_iovec v;
    *copy = NULL;
    if (evbuffer_ptr_set(in, &p, off, EVBUFFER_PTR_SET) != 0)
        return NULL;
    if (evbuffer_peek(in, (ev_ssize_t)n, &p, &v, 1) >= 1 && v.iov_len >= n)
        return v.iov_base;
    if (!(*copy = malloc(n)))
        return NULL;
    evbuffer_copyout_from(in, &p, *copy, n);
    return *copy;
}

/* Stops reading one side while the other side's output is above the high-water mark. */
static void apply_backpressure(struct session *s, bool from_client)
{
    struct bufferevent *to = from_client ? s->server : s->client;
    if (to && evbuffer_get_length(bufferevent_get_output(to)) > HIGH_WATER)
        read_enable(s, from_client, false);
}

/* Extends the span [0, *off) of bytes to forward over what has arrived of the message being
 * streamed (*left bytes of it still to come). True when that message ends within what has
 * arrived, so framing continues after it. */
static bool span_take(uint32_t *left, size_t avail, size_t *off)
{
    size_t take = avail - *off < *left ? avail - *off : *left;
    *off += take;
    *left -= (uint32_t)take;
    return *left == 0;
}

/* COPY FROM STDIN in the extended protocol: the server ignores every Sync it reads in copy-in
 * mode, and libpq's Sync right behind the Execute arrives when it is already there; only the
 * Sync after CopyDone/CopyFail gets a ReadyForQuery. Syncs are counted as the client sends
 * them; when copy data shows that the Execute before them started a copy, they are taken back,
 * and Syncs during the copy are not counted. Query and FunctionCall each get one too.
 * This is the one place that counts what the client sent into pending_ready. */
static void count_ready(struct session *s, char type)
{
    switch (type) {
    case 'Q': case 'F':
        s->pending_ready++;
        s->after_execute = false;
        break;
    case 'E':
        s->after_execute = true;
        s->syncs_after_execute = 0;
        break;
    case 'S':
        if (s->copy_in)
            break;
        s->pending_ready++;
        if (s->after_execute)
            s->syncs_after_execute++;
        break;
    case 'H':
        break;
    case 'd': case 'c': case 'f':
        if (!s->copy_in) {
            uint32_t ignored = s->after_execute ? s->syncs_after_execute : 0;
            s->pending_ready -= ignored < s->pending_ready ? ignored : s->pending_ready;
            s->copy_in = true;
        }
        if (type != 'd')
            s->copy_in = false;
        s->after_execute = false;
        s->syncs_after_execute = 0;
        break;
    default:
        s->after_execute = false;
        break;
    }
}

static void relay_from_client(struct session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->client);
    const struct config *cfg = cfg_of(s);
    size_t avail = evbuffer_get_length(in), off = 0;
    bool inspect = cfg->guard;

    for (;;) {
        if (s->client_left) {
            if (!span_take(&s->client_left, avail, &off))
                break;
            continue;
        }
        if (avail - off < WIRE_HEADER_LEN)
            break;
        uint8_t hdr[5];
        peek_at(in, off, hdr, 5);
        char type;
        uint32_t len;
        struct pgsov_err err;
        if (wire_message_header(hdr, cfg->max_message_size, &type, &len, &err) != 0) {
            char id[24];
            id_text(s, id, sizeof id);
            log_event(LOG_WARN, "bad_message", "session", id, "src", s->source, "error", err.msg, NULL);
            if (off)
                forward(in, s->server, server_direct_fd(s), off);
            session_fatal(s, "08P01", "pgsov: invalid message from client", err.msg, NULL, "bad message");
            return;
        }
        if (inspect && (type == 'Q' || type == 'P' || type == 'F') &&
            s->n_refusals >= MAX_PENDING_REFUSALS) {
            /* Refusals are never dropped (their order pairs them with the server's errors):
             * wait until the client reads some answers, as the server itself would. */
            read_enable(s, true, false);
            s->paused_for_refusals = true;
            break;
        }
        count_ready(s, type);
        if (inspect && (type == 'Q' || type == 'P' || type == 'F')) {
            if (avail - off < 1 + (size_t)len) {
                if (type == 'Q' || type == 'F')
                    s->pending_ready--;   /* counted again when it is complete */
                break;
            }
            /* Read the message where it lies (one chain, almost always; copied when split), so
             * that allowed messages stay in the span and a packet still goes out in one write. */
            uint8_t *copy = NULL;
            const uint8_t *msg = message_at(in, off, 1 + len, &copy);
            const char *sql = NULL, *name;
            size_t sql_len = 0;
            uint32_t fn_oid = 0;
            int ok = msg ? 0 : -1;
            if (msg && type == 'Q')
                ok = wire_parse_query(msg + 5, len - 4, &sql, &sql_len);
            else if (msg && type == 'P')
                ok = wire_parse_parse(msg + 5, len - 4, &name, &sql, &sql_len);
            else if (msg)
                ok = wire_parse_function_call(msg + 5, len - 4, &fn_oid);
            if (ok != 0) {
                free(copy);
                if (off)
                    forward(in, s->server, server_direct_fd(s), off);
                session_fatal(s, "08P01", "pgsov: malformed Query, Parse or FunctionCall message", NULL,
                              NULL, "bad message");
                return;
            }
            s->bytes_from_client += 1 + len;
            bool allowed = session_guard_message(s, type, sql, sql_len, fn_oid);
            free(copy);
            if (type == 'P')
                s->batch_open = true;
            if (allowed) {
                off += 1 + len;
                continue;
            }
            if (off)
                forward(in, s->server, server_direct_fd(s), off);
            evbuffer_drain(in, 1 + len);
            avail -= off + 1 + len;
            off = 0;
            session_guard_substitute(s, type);
            continue;
        }
        if (type == 'X') {
            s->close_reason = "client terminated";
            if (reusable(s)) {          /* Terminate is not forwarded: the backend lives on */
                if (off) {
                    forward(in, s->server, server_direct_fd(s), off);
                    avail -= off;
                    off = 0;
                }
                if (reusable(s)) {      /* the span went out whole: nothing is queued */
                    reset_begin(s);
                    return;
                }
            }
        } else if (type == 'S')
            s->batch_open = false;
        else if (type == 'B' || type == 'E' || type == 'D' || type == 'C' || type == 'H' || type == 'P')
            s->batch_open = true;
        s->bytes_from_client += 1 + len;
        s->client_left = 1 + len;
    }
    if (off)
        forward(in, s->server, server_direct_fd(s), off);
    apply_backpressure(s, true);
    if (cfg->idle_timeout_ms > 0)
        arm_timer(s, cfg->idle_timeout_ms);   /* idle means no client traffic for that long */
}

static void maybe_finish_drain(struct session *s)
{
    if (s->draining && s->txn_status == 'I' && s->pending_ready == 0 && s->client_left == 0 &&
        evbuffer_get_length(bufferevent_get_input(s->client)) == 0)
        session_terminate(s);
}

static void relay_from_server(struct session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->server);
    struct evbuffer *out = bufferevent_get_output(s->client);
    size_t avail = evbuffer_get_length(in), off = 0;

    for (;;) {
        if (s->server_left) {
            if (!span_take(&s->server_left, avail, &off))
                break;
            continue;
        }
        if (avail - off < WIRE_HEADER_LEN)
            break;
        uint8_t hdr[5];
        peek_at(in, off, hdr, 5);
        char type;
        uint32_t len;
        struct pgsov_err err;
        if (wire_message_header(hdr, WIRE_MAX_MESSAGE_LEN, &type, &len, &err) != 0) {
            if (off)
                forward(in, s->client, client_direct_fd(s), off);
            session_fatal(s, "08P01", "pgsov: invalid message from the upstream", err.msg, NULL,
                          "bad upstream message");
            return;
        }
        if (type == 'Z' || type == 'S' || (type == 'E' && s->refusals)) {
            if (len > 64 * 1024) {
                /* not a real ParameterStatus/ReadyForQuery, nor a marked error: streamed */
                s->bytes_from_server += 1 + len;
                s->server_left = 1 + len;
                continue;
            }
            if (avail - off < 1 + (size_t)len)
                break;
            if (type == 'Z') {
                uint8_t st = 'I';
                if (len == 5)
                    peek_at(in, off + 5, &st, 1);
                s->txn_status = (char)st;
                if (s->pending_ready)
                    s->pending_ready--;
                s->ready_received++;
                if (s->refusals)
                    session_guard_ready(s);
            } else {
                if (off) {
                    forward(in, s->client, client_direct_fd(s), off);
                    avail -= off;
                    off = 0;
                }
                const uint8_t *msg = evbuffer_pullup(in, 1 + len);
                if (type == 'S') {
                    check_parameter_status(s, msg + 5, len - 4);
                } else if (session_guard_replace_error(s, msg + 5, len - 4, out)) {
                    s->bytes_from_server += 1 + len;
                    evbuffer_drain(in, 1 + len);
                    avail -= 1 + len;
                    continue;
                }
            }
        }
        s->bytes_from_server += 1 + len;
        s->server_left = 1 + len;
    }
    if (off)
        forward(in, s->client, client_direct_fd(s), off);
    apply_backpressure(s, false);
    if (s->paused_for_refusals && s->n_refusals < MAX_PENDING_REFUSALS) {
        s->paused_for_refusals = false;
        read_enable(s, true, true);
        relay_from_client(s);
        if (s->state != S_RELAY)
            return;
    }
    if (s->draining)
        maybe_finish_drain(s);
}

/* ---- reading plain sockets in relay ----------------------------------------------------
 * libevent 2.1's evbuffer_read() asks the kernel how much is readable (ioctl FIONREAD) before
 * every read: one more syscall per message each way. In relay, a plain TCP side is read with
 * our own persistent event instead: recv straight into the bufferevent's input buffer. Writes,
 * and everything on TLS links, stay with the bufferevents. */

#define RAW_READ_SIZE 16384

/* >0: bytes read; 0: end of stream; -1: error (errno); -2: nothing to read now. */
static ssize_t raw_read(int fd, struct evbuffer *in)
{
    struct evbuffer_iovec vec[2];
    /* A bufferevent freezes the end of its input buffer; its own read path thaws it around the
     * read, and so does this one. */
    evbuffer_unfreeze(in, 0);
    int n = evbuffer_reserve_space(in, RAW_READ_SIZE, vec, 2);
    if (n <= 0) {
        evbuffer_freeze(in, 0);
        errno = ENOMEM;
        return -1;
    }
    struct iovec iov[2];
    for (int i = 0; i < n; i++) {
        iov[i].iov_base = vec[i].iov_base;
        iov[i].iov_len = vec[i].iov_len;
    }
    /* recv() / recvmsg() rather than readv(): straight to the socket layer (see socket_write) */
    ssize_t r;
    if (n == 1) {
        r = recv(fd, iov[0].iov_base, iov[0].iov_len, MSG_DONTWAIT);
    } else {
        struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)n };
        r = recvmsg(fd, &m, MSG_DONTWAIT);
    }
    int saved_errno = errno;
    size_t left = r > 0 ? (size_t)r : 0;
    int used = 0;
    for (int i = 0; i < n && left; i++, used++) {
        if (vec[i].iov_len > left)
            vec[i].iov_len = left;
        left -= vec[i].iov_len;
    }
    evbuffer_commit_space(in, vec, used);
    evbuffer_freeze(in, 0);
    if (r < 0 && (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK || saved_errno == EINTR))
        return -2;
    if (r < 0)
        errno = saved_errno;
    return r;
}

static void client_raw_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    ssize_t r = raw_read(fd, bufferevent_get_input(s->client));
    if (r > 0)
        client_read_cb(s->client, s);
    else if (r != -2)
        client_event_cb(s->client, r == 0 ? BEV_EVENT_READING | BEV_EVENT_EOF
                                          : BEV_EVENT_READING | BEV_EVENT_ERROR, s);
}

static void server_raw_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    ssize_t r = raw_read(fd, bufferevent_get_input(s->server));
    if (r > 0)
        server_read_cb(s->server, s);
    else if (r != -2)
        server_event_cb(s->server, r == 0 ? BEV_EVENT_READING | BEV_EVENT_EOF
                                          : BEV_EVENT_READING | BEV_EVENT_ERROR, s);
}

/* Relay begins: plain sides switch to raw reads (a side keeps its bufferevent reads if the
 * event cannot be made). */
static void start_raw_reads(struct session *s)
{
    if (!s->client_fd_owned_by_bev && s->client &&
        (s->client_rev = event_new(worker_base(s->w), s->client_fd, EV_READ | EV_PERSIST,
                                   client_raw_read_cb, s))) {
        bufferevent_disable(s->client, EV_READ);
        event_add(s->client_rev, NULL);
    }
    if (!s->server_fd_owned_by_bev && s->server &&
        (s->server_rev = event_new(worker_base(s->w), s->server_fd, EV_READ | EV_PERSIST,
                                   server_raw_read_cb, s))) {
        bufferevent_disable(s->server, EV_READ);
        event_add(s->server_rev, NULL);
    }
}

/* ---- callbacks -------------------------------------------------------------------------- */

static void client_read_cb(struct bufferevent *bev, void *arg)
{
    struct session *s = arg;
    switch (s->state) {
    case S_STARTUP:
        read_startup(s);
        return;
    case S_CLIENT_AUTH:
        client_auth_message(s);
        return;
    case S_AUTH:
        if (!s->proxy_auth)
            auth_from_client(s);
        return;
    case S_RELAY:
        relay_from_client(s);
        return;
    default:
        /* Connecting upstream: leave the bytes buffered, but do not buffer without bound. */
        if (evbuffer_get_length(bufferevent_get_input(bev)) > 64 * 1024)
            session_fatal(s, "08P01", "pgsov: client sent data before authentication", NULL, NULL,
                          "protocol violation");
        return;
    }
}

static void client_write_cb(struct bufferevent *bev, void *arg)
{
    struct session *s = arg;
    if (s->state == S_CLOSING) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            session_free(s);
        return;
    }
    /* Output drained below the low-water mark: read from the upstream again. */
    read_enable(s, false, true);
}

static void server_write_cb(struct bufferevent *bev, void *arg)
{
    struct session *s = arg;
    if (s->state == S_CLOSING) {        /* the client has gone; its last bytes are out */
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            session_free(s);
        return;
    }
    if (s->client && s->state == S_RELAY && !s->paused_for_refusals)
        read_enable(s, true, true);
}

/* The client closed: what it sent last (usually Terminate) still reaches the upstream, so the
 * server sees an orderly end instead of a broken connection. */
static void session_close_upstream_after_flush(struct session *s, const char *reason)
{
    if (!s->close_reason)
        s->close_reason = reason;
    if (!s->server || evbuffer_get_length(bufferevent_get_output(s->server)) == 0) {
        session_free(s);
        return;
    }
    session_set_state(s, S_CLOSING);
    if (s->client_rev) {
        event_free(s->client_rev);
        s->client_rev = NULL;
    }
    bufferevent_free(s->client);
    s->client = NULL;
    read_enable(s, false, false);
    bufferevent_setwatermark(s->server, EV_WRITE, 0, 0);
    bufferevent_setcb(s->server, NULL, server_write_cb, server_event_cb, s);
    bufferevent_enable(s->server, EV_WRITE);
    arm_timer(s, 5000);
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct session *s = arg;
    if (what & BEV_EVENT_CONNECTED) {
        if (s->state == S_CLIENT_TLS) {
            SSL *ssl = bufferevent_openssl_get_ssl(bev);
            s->client_tls = true;
            tls_peer_identity(ssl, &s->tls_id);
            session_set_state(s, S_STARTUP);
            if (evbuffer_get_length(bufferevent_get_input(bev)))
                read_startup(s);
        }
        return;
    }
    if (s->state == S_CLIENT_TLS && (what & BEV_EVENT_ERROR)) {
        char why[256];
        tls_error_text(bufferevent_openssl_get_ssl(bev), why, sizeof why);
        char id[24];
        id_text(s, id, sizeof id);
        log_event(LOG_WARN, "client_tls_failed", "session", id, "src", s->source, "error", why, NULL);
        s->close_reason = "client TLS handshake failed";
        session_free(s);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        if (!s->close_reason)
            s->close_reason = (what & BEV_EVENT_EOF) ? "client closed" : "client error";
        /* Whatever the client sent before closing (a Terminate) still goes upstream. */
        if (s->server && s->state == S_RELAY) {
            if (evbuffer_get_length(bufferevent_get_input(bev)))
                relay_from_client(s);
            if (s->state == S_RELAY && reusable(s)) {   /* closed without Terminate, idle */
                reset_begin(s);
                return;
            }
            if (s->state == S_RELAY) {
                session_close_upstream_after_flush(s, s->close_reason);
                return;
            }
            if (s->state == S_CLOSING || s->state == S_RESET)
                return;
        }
        session_free(s);
    }
}

static void server_read_cb(struct bufferevent *bev, void *arg)
{
    struct session *s = arg;
    switch (s->state) {
    case S_UPSTREAM_SSL:
        upstream_ssl_answer(s);
        return;
    case S_AUTH:
        auth_from_server(s);
        return;
    case S_RELAY:
        relay_from_server(s);
        return;
    case S_RESET:
        reset_from_server(s);
        return;
    default:
        return;
    }
}

static void server_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct session *s = arg;
    if (what & BEV_EVENT_CONNECTED) {
        if (s->state == S_CONNECTING)
            upstream_connected(s);
        else if (s->state == S_UPSTREAM_TLS)
            upstream_send_startup(s);
        return;
    }
    if (s->state == S_CONNECTING && (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF))) {
        char id[24];
        id_text(s, id, sizeof id);
        log_event(LOG_DEBUG, "upstream_connect_retry", "session", id, "error",
                  strerror(EVUTIL_SOCKET_ERROR()), NULL);
        upstream_connect_next(s);
        return;
    }
    if (s->state == S_UPSTREAM_TLS && (what & BEV_EVENT_ERROR)) {
        char why[300];
        tls_error_text(bufferevent_openssl_get_ssl(bev), why, sizeof why);
        upstream_failed(s, why);
        return;
    }
    if ((s->state == S_CLOSING && !s->client) || s->state == S_RESET) {
        session_free(s);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        /* Relay what the server said last (often a FATAL), then close. */
        if (s->state == S_RELAY && evbuffer_get_length(bufferevent_get_input(bev)))
            relay_from_server(s);
        else if (s->state == S_AUTH && evbuffer_get_length(bufferevent_get_input(bev)))
            auth_from_server(s);
        if (s->state == S_CLOSING)
            return;
        session_close_after_flush(s, "upstream closed");
    }
}

/* ---- lifecycle from the worker ----------------------------------------------------------- */

void session_drain(struct session *s)
{
    s->draining = true;
    if (s->state != S_RELAY) {
        if (s->state != S_CLOSING)
            session_terminate(s);
        return;
    }
    maybe_finish_drain(s);
}

void session_terminate(struct session *s)
{
    if (s->state == S_CLOSING)
        return;
    session_fatal(s, "57P01", "terminating connection due to administrator command", NULL, NULL,
                  "proxy shutdown");
}

struct session *session_next(struct session *s)
{
    return s->next;
}

void session_link(struct session **head, struct session *s)
{
    s->prev = NULL;
    s->next = *head;
    if (*head)
        (*head)->prev = s;
    *head = s;
}

void session_unlink(struct session **head, struct session *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        *head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
}
