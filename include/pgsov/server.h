/* server.h — what sessions share: the config snapshot (config, rules, TLS contexts, resolved
 * upstream addresses), the workers (one event loop each), and the process-wide counters.
 * A snapshot is immutable and reference-counted: reload builds a new one and swaps the
 * pointer; sessions keep the snapshot they started with until they close. */
#ifndef PGSOV_SERVER_H
#define PGSOV_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <openssl/ssl.h>
#include "pgsov/config.h"
#include "pgsov/rules.h"

#define UPSTREAM_MAX_ADDRS 4

struct upstream_target {
    SSL_CTX *ssl_ctx;                                   /* NULL: sslmode = disable */
    struct sockaddr_storage addrs[UPSTREAM_MAX_ADDRS];  /* resolved at load/reload */
    socklen_t addr_lens[UPSTREAM_MAX_ADDRS];
    int n_addrs;
};

struct snapshot {
    struct config *cfg;
    struct rules *rules;
    SSL_CTX *client_ctx;                    /* NULL: client_tls = disable */
    struct users *users;                    /* users_file, NULL when not configured */
    struct upstream_target *upstreams;      /* one per cfg->envs[i] */
    atomic_int refs;
};

/* Loads config, rules, TLS contexts and upstream addresses; all or nothing. */
int snapshot_load(const char *config_path, struct snapshot **out, struct pgsov_err *err);
void snapshot_ref(struct snapshot *s);
void snapshot_unref(struct snapshot *s);

/* The current snapshot, referenced for the caller (snapshot_unref when done). */
struct snapshot *server_snapshot(void);

struct worker;
struct session;
struct guard;
struct event_base;

struct backoff;

/* Random per process: the salt of mock SCRAM exchanges for unknown users. */
const unsigned char *server_mock_secret(void);

struct event_base *worker_base(struct worker *w);
int worker_index(const struct worker *w);

/* Failed proxy logins per source, shared by all workers (a client's connections land on any
 * of them): record a failure and get the delay before answering it; clear on success. */
unsigned server_login_failed(const unsigned char key[16], uint64_t now_ms);
void server_login_succeeded(const unsigned char key[16]);

struct scram_key_cache;
/* The worker's SCRAM key cache for one upstream credential (environment, role, password), so
 * upstream logins skip PBKDF2 after the first. NULL when memory runs out (then no cache). */
struct scram_key_cache *worker_key_cache(struct worker *w, const char *env, const char *role,
                                         const char *password);
struct guard *worker_guard(struct worker *w);
struct pool;
/* The worker's idle upstream connections (pool.h); NULL when memory ran out (then no reuse). */
struct pool *worker_pool(struct worker *w);
void worker_session_added(struct worker *w, struct session *s);
void worker_session_removed(struct worker *w, struct session *s);
bool worker_draining(const struct worker *w);

/* Runs the proxy until SIGTERM/SIGINT; returns the exit code. */
int server_run(const char *config_path);

#endif
