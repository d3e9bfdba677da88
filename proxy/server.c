/* server.c — snapshots, workers, listeners and signals (see server.h).
 *
 * The main thread owns signals and reload; each worker thread owns one event base, its own
 * listeners (SO_REUSEPORT when workers > 1, so the kernel spreads accepts), its sessions and
 * its statement guard (libpg_query keeps per-thread state, so parsing stays on these
 * long-lived threads, created with an 8 MB stack for deeply nested queries). */
#include "pgsov/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "pgsov/guard.h"
#include "pgsov/scram.h"
#include "pgsov/users.h"
#include "pgsov/log.h"
#include "pgsov/pool.h"
#include "pgsov/session.h"
#include "pgsov/tls.h"

#define MAX_LISTENERS 16
#define WORKER_STACK (8u * 1024 * 1024)

struct key_cache_entry {        /* one upstream credential's SCRAM keys */
    struct key_cache_entry *next;
    unsigned char id[32];       /* SHA-256 over environment, role and password */
    struct scram_key_cache keys;
};

struct worker {
    int index;
    pthread_t thread;
    struct event_base *base;
    struct evconnlistener *listeners[MAX_LISTENERS];
    int n_listeners;
    struct event *control;          /* activated by the main thread: drain / terminate */
    struct event *drain_timer;
    struct session *sessions;
    int n_sessions;
    struct guard *guard;
    struct pool *pool;              /* idle upstream connections for reuse (auth = proxy) */
    struct key_cache_entry *key_cache;
    int n_key_cache;
    atomic_int command;             /* CMD_* */
    atomic_bool flush_pool;         /* set by a reload: parked backends belong to the old config */
    bool draining;
};

enum { CMD_NONE, CMD_DRAIN, CMD_TERMINATE };

static pthread_mutex_t snapshot_lock = PTHREAD_MUTEX_INITIALIZER;
static struct snapshot *current;
static atomic_int n_clients;
static const char *config_path_for_reload;
static struct worker *workers;
static int n_workers;
static unsigned char mock_secret[SCRAM_MOCK_SECRET_LEN];

const unsigned char *server_mock_secret(void)
{
    return mock_secret;
}

/* ---- snapshots ---------------------------------------------------------------------------- */

static void snapshot_destroy(struct snapshot *s)
{
    if (!s)
        return;
    if (s->upstreams) {
        for (size_t i = 0; s->cfg && i < s->cfg->n_envs; i++)
            SSL_CTX_free(s->upstreams[i].ssl_ctx);
        free(s->upstreams);
    }
    SSL_CTX_free(s->client_ctx);
    users_free(s->users);
    rules_free(s->rules);
    config_free(s->cfg);
    free(s);
}

void snapshot_ref(struct snapshot *s)
{
    atomic_fetch_add(&s->refs, 1);
}

void snapshot_unref(struct snapshot *s)
{
    if (s && atomic_fetch_sub(&s->refs, 1) == 1)
        snapshot_destroy(s);
}

static int resolve_upstream(const struct env_config *env, struct upstream_target *t, struct pgsov_err *err)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res, *ai;
    char port[16];
    snprintf(port, sizeof port, "%d", env->port);
    int rc = getaddrinfo(env->host, port, &hints, &res);
    if (rc != 0)
        return pgsov_fail(err, "[env.%s] host %s: %s", env->name, env->host, gai_strerror(rc));
    t->n_addrs = 0;
    /* IPv4 first: loopback databases commonly listen on 127.0.0.1 only. */
    for (int pass = 0; pass < 2; pass++) {
        for (ai = res; ai && t->n_addrs < UPSTREAM_MAX_ADDRS; ai = ai->ai_next) {
            if ((pass == 0) != (ai->ai_family == AF_INET))
                continue;
            memcpy(&t->addrs[t->n_addrs], ai->ai_addr, ai->ai_addrlen);
            t->addr_lens[t->n_addrs++] = ai->ai_addrlen;
        }
    }
    freeaddrinfo(res);
    return 0;
}

int snapshot_load(const char *config_path, struct snapshot **out, struct pgsov_err *err)
{
    struct snapshot *s = calloc(1, sizeof *s);
    if (!s)
        return pgsov_fail(err, "out of memory");
    atomic_init(&s->refs, 1);
    if (config_load(config_path, &s->cfg, err) != 0)
        goto fail;
    if (s->cfg->n_rules_files == 0) {
        pgsov_fail(err, "%s: no rules file: set rules = PATH in [proxy] (deny-by-default would "
                   "refuse every connection)", config_path);
        goto fail;
    }
    if (rules_load(s->cfg, (const char *const *)s->cfg->rules_files, s->cfg->n_rules_files,
                   &s->rules, err) != 0)
        goto fail;
    if (tls_client_side_ctx(s->cfg, &s->client_ctx, err) != 0)
        goto fail;
    if (s->cfg->users_file && users_load(s->cfg->users_file, &s->users, err) != 0)
        goto fail;
    s->upstreams = calloc(s->cfg->n_envs, sizeof *s->upstreams);
    if (!s->upstreams) {
        pgsov_fail(err, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < s->cfg->n_envs; i++) {
        const struct env_config *env = &s->cfg->envs[i];
        if (tls_upstream_ctx(env, &s->upstreams[i].ssl_ctx, err) != 0) {
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%s", err->msg);
            pgsov_fail(err, "[env.%s] %s", env->name, msg);
            goto fail;
        }
        if (resolve_upstream(env, &s->upstreams[i], err) != 0)
            goto fail;
    }
    *out = s;
    return 0;
fail:
    snapshot_destroy(s);
    return -1;
}

struct snapshot *server_snapshot(void)
{
    pthread_mutex_lock(&snapshot_lock);
    struct snapshot *s = current;
    snapshot_ref(s);
    pthread_mutex_unlock(&snapshot_lock);
    return s;
}

static void snapshot_install(struct snapshot *s)
{
    pthread_mutex_lock(&snapshot_lock);
    struct snapshot *old = current;
    current = s;
    pthread_mutex_unlock(&snapshot_lock);
    if (old)
        snapshot_unref(old);
}

/* ---- workers ------------------------------------------------------------------------------ */

struct event_base *worker_base(struct worker *w)
{
    return w->base;
}

int worker_index(const struct worker *w)
{
    return w->index;
}

struct guard *worker_guard(struct worker *w)
{
    return w->guard;
}

struct pool *worker_pool(struct worker *w)
{
    return w->pool;
}

static pthread_mutex_t backoff_lock = PTHREAD_MUTEX_INITIALIZER;
static struct backoff *backoff;     /* failed proxy logins per source, all workers */

unsigned server_login_failed(const unsigned char key[16], uint64_t now_ms)
{
    pthread_mutex_lock(&backoff_lock);
    unsigned delay = backoff ? backoff_failure(backoff, key, now_ms) : 0;
    pthread_mutex_unlock(&backoff_lock);
    return delay;
}

void server_login_succeeded(const unsigned char key[16])
{
    pthread_mutex_lock(&backoff_lock);
    if (backoff)
        backoff_success(backoff, key);
    pthread_mutex_unlock(&backoff_lock);
}

struct scram_key_cache *worker_key_cache(struct worker *w, const char *env, const char *role,
                                         const char *password)
{
    unsigned char id[32];
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int n = sizeof id;
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(md, env, strlen(env) + 1) != 1 || EVP_DigestUpdate(md, role, strlen(role) + 1) != 1 ||
        EVP_DigestUpdate(md, password, strlen(password)) != 1 || EVP_DigestFinal_ex(md, id, &n) != 1) {
        EVP_MD_CTX_free(md);
        return NULL;
    }
    EVP_MD_CTX_free(md);
    for (struct key_cache_entry *e = w->key_cache; e; e = e->next)
        if (CRYPTO_memcmp(e->id, id, sizeof id) == 0)
            return &e->keys;
    if (w->n_key_cache >= 256)     /* credentials are few; a bound keeps a bug from growing it */
        return NULL;
    struct key_cache_entry *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    memcpy(e->id, id, sizeof id);
    e->next = w->key_cache;
    w->key_cache = e;
    w->n_key_cache++;
    return &e->keys;
}

bool worker_draining(const struct worker *w)
{
    return w->draining;
}

void worker_session_added(struct worker *w, struct session *s)
{
    session_link(&w->sessions, s);
    w->n_sessions++;
}

void worker_session_removed(struct worker *w, struct session *s)
{
    session_unlink(&w->sessions, s);
    w->n_sessions--;
    atomic_fetch_sub(&n_clients, 1);
    if (w->draining && w->n_sessions == 0)
        event_base_loopexit(w->base, NULL);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *addr, int len,
                      void *arg)
{
    struct worker *w = arg;
    struct snapshot *snap = server_snapshot();
    int max = snap->cfg->max_clients;
    snapshot_unref(snap);
    if (atomic_fetch_add(&n_clients, 1) >= max) {
        atomic_fetch_sub(&n_clients, 1);
        /* As PostgreSQL does: an ErrorResponse before the startup packet is read. */
        static const char too_many[] =
            "E\0\0\0\x4c" "SFATAL\0" "VFATAL\0" "C53300\0" "Mpgsov: sorry, too many clients already (max_clients)\0";
        ssize_t ignored = send(fd, too_many, sizeof too_many, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)ignored;
        close(fd);
        log_event(LOG_WARN, "refused", "reason", "max_clients reached", NULL);
        return;
    }
    session_accept(w, fd, addr, (socklen_t)len);
}

static void worker_stop_listening(struct worker *w)
{
    for (int i = 0; i < w->n_listeners; i++)
        evconnlistener_free(w->listeners[i]);
    w->n_listeners = 0;
}

static void drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    for (struct session *s = w->sessions, *next; s; s = next) {
        next = session_next(s);
        session_terminate(s);
    }
}

static void control_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    if (atomic_exchange(&w->flush_pool, false))
        pool_flush(w->pool);
    int cmd = atomic_exchange(&w->command, CMD_NONE);
    if (cmd == CMD_NONE)
        return;
    worker_stop_listening(w);
    w->draining = true;
    pool_flush(w->pool);            /* parked backends have no client to wait for */
    if (w->n_sessions == 0) {
        event_base_loopexit(w->base, NULL);
        return;
    }
    if (cmd == CMD_TERMINATE) {
        drain_timeout_cb(-1, 0, w);
        return;
    }
    struct snapshot *snap = server_snapshot();
    int ms = snap->cfg->shutdown_timeout_ms;
    snapshot_unref(snap);
    for (struct session *s = w->sessions, *next; s; s = next) {
        next = session_next(s);
        session_drain(s);
    }
    if (w->n_sessions > 0) {
        struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
        w->drain_timer = evtimer_new(w->base, drain_timeout_cb, w);
        if (w->drain_timer)
            evtimer_add(w->drain_timer, &tv);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    event_base_dispatch(w->base);
    /* Exiting: sessions left (a loopexit raced with a new one) are closed hard. */
    while (w->sessions) {
        struct session *s = w->sessions;
        session_terminate(s);
        if (w->sessions == s)
            break;
    }
    pool_free(w->pool);
    w->pool = NULL;
    return NULL;
}

/* "127.0.0.1:6432", "[::1]:6432", "*:6432", "localhost:6432" */
static int parse_listen(const char *spec, char *host, size_t host_size, char *port, size_t port_size)
{
    const char *colon;
    if (spec[0] == '[') {
        const char *close_br = strchr(spec, ']');
        if (!close_br || close_br[1] != ':')
            return -1;
        snprintf(host, host_size, "%.*s", (int)(close_br - spec - 1), spec + 1);
        colon = close_br + 1;
    } else {
        colon = strrchr(spec, ':');
        if (!colon)
            return -1;
        snprintf(host, host_size, "%.*s", (int)(colon - spec), spec);
    }
    snprintf(port, port_size, "%s", colon + 1);
    return port[0] ? 0 : -1;
}

static int worker_listen(struct worker *w, const struct config *cfg, struct pgsov_err *err)
{
    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE;
    if (n_workers > 1)
        flags |= LEV_OPT_REUSEABLE_PORT;
    for (size_t i = 0; i < cfg->n_listen; i++) {
        char host[256], port[16];
        if (parse_listen(cfg->listen[i], host, sizeof host, port, sizeof port) != 0)
            return pgsov_fail(err, "listen: \"%s\" is not host:port", cfg->listen[i]);
        struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                  .ai_flags = AI_PASSIVE }, *res, *ai;
        const char *h = (!strcmp(host, "*") || !host[0]) ? NULL : host;
        int rc = getaddrinfo(h, port, &hints, &res);
        if (rc != 0)
            return pgsov_fail(err, "listen %s: %s", cfg->listen[i], gai_strerror(rc));
        for (ai = res; ai; ai = ai->ai_next) {
            if (w->n_listeners == MAX_LISTENERS)
                break;
            struct evconnlistener *l = evconnlistener_new_bind(w->base, on_accept, w, flags, 1024,
                                                               ai->ai_addr, (int)ai->ai_addrlen);
            if (!l) {
                int e = errno;
                freeaddrinfo(res);
                return pgsov_fail(err, "listen %s: %s", cfg->listen[i], strerror(e));
            }
            w->listeners[w->n_listeners++] = l;
        }
        freeaddrinfo(res);
    }
    if (cfg->unix_socket_dir && w->index == 0 && w->n_listeners < MAX_LISTENERS) {
        char port[16] = "6432", host[256];
        if (cfg->n_listen)
            parse_listen(cfg->listen[0], host, sizeof host, port, sizeof port);
        struct sockaddr_un sun = { .sun_family = AF_UNIX };
        if ((size_t)snprintf(sun.sun_path, sizeof sun.sun_path, "%s/.s.PGSQL.%s", cfg->unix_socket_dir,
                             port) >= sizeof sun.sun_path)
            return pgsov_fail(err, "unix_socket_dir %s: path too long", cfg->unix_socket_dir);
        unlink(sun.sun_path);
        struct evconnlistener *l = evconnlistener_new_bind(w->base, on_accept, w,
                                                           LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                                           1024, (struct sockaddr *)&sun, sizeof sun);
        if (!l)
            return pgsov_fail(err, "unix socket %s: %s", sun.sun_path, strerror(errno));
        chmod(sun.sun_path, 0777);
        w->listeners[w->n_listeners++] = l;
    }
    return 0;
}

static int worker_init(struct worker *w, int index, const struct config *cfg, struct pgsov_err *err)
{
    memset(w, 0, sizeof *w);
    w->index = index;
    w->base = event_base_new();
    w->control = w->base ? event_new(w->base, -1, 0, control_cb, w) : NULL;
    if (!w->base || !w->control)
        return pgsov_fail(err, "cannot create an event loop");
    w->pool = pool_new(w->base);    /* NULL: no reuse, which is always correct */
    if (cfg->guard) {
        struct guard_options opt;
        guard_options_default(&opt);
        opt.max_statement_length = cfg->guard_max_statement_length;
        opt.cache_entries = cfg->guard_cache_entries;
        if (cfg->n_privileged_functions) {
            opt.privileged_functions = (const char *const *)cfg->privileged_functions;
            opt.n_privileged_functions = cfg->n_privileged_functions;
        }
        w->guard = guard_new(&opt);
        if (!w->guard)
            return pgsov_fail(err, "cannot create the statement guard (check privileged_functions)");
    }
    return worker_listen(w, cfg, err);
}

static void workers_command(int cmd)
{
    for (int i = 0; i < n_workers; i++) {
        atomic_store(&workers[i].command, cmd);
        event_active(workers[i].control, EV_READ, 0);
    }
}

/* After a reload: every worker closes its parked backends (logged in with the old config's
 * credentials, TLS settings and addresses; pool_take would never hand them out again). */
static void workers_flush_pools(void)
{
    for (int i = 0; i < n_workers; i++) {
        atomic_store(&workers[i].flush_pool, true);
        event_active(workers[i].control, EV_READ, 0);
    }
}

/* ---- signals and the main loop ------------------------------------------------------------ */

static bool stopping;

static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
    struct snapshot *s;
    struct pgsov_err err;
    if (snapshot_load(config_path_for_reload, &s, &err) != 0) {
        log_event(LOG_ERROR, "reload_failed", "error", err.msg, "kept", "previous config and rules", NULL);
        return;
    }
    struct pgsov_err lerr;
    if (log_setup(s->cfg->log_format, s->cfg->log_level, s->cfg->log_file, &lerr) != 0 ||
        audit_open(s->cfg->audit_log, &lerr) != 0)
        log_event(LOG_ERROR, "reload_log", "error", lerr.msg, NULL);
    char n[16];
    snprintf(n, sizeof n, "%zu", rules_count(s->rules));
    snapshot_install(s);
    workers_flush_pools();
    log_event(LOG_INFO, "reloaded", "config", config_path_for_reload, "rules", n, NULL);
}

static void on_sigterm(evutil_socket_t sig, short what, void *arg)
{
    if (stopping) {
        workers_command(CMD_TERMINATE);
        return;
    }
    stopping = true;
    log_event(LOG_INFO, "shutdown", "mode", "graceful", NULL);
    workers_command(CMD_DRAIN);
}

static void on_sigint(evutil_socket_t sig, short what, void *arg)
{
    stopping = true;
    log_event(LOG_INFO, "shutdown", "mode", "fast", NULL);
    workers_command(CMD_TERMINATE);
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int server_run(const char *config_path)
{
    struct pgsov_err err;
    struct snapshot *snap;
    signal(SIGPIPE, SIG_IGN);
    evthread_use_pthreads();
    raise_fd_limit();
    config_path_for_reload = config_path;
    if (scram_mock_secret_init(mock_secret, &err) != 0) {
        fprintf(stderr, "pgsov-proxy: %s\n", err.msg);
        return 1;
    }
    if (snapshot_load(config_path, &snap, &err) != 0) {
        fprintf(stderr, "pgsov-proxy: %s\n", err.msg);
        return 1;
    }
    const struct config *cfg = snap->cfg;
    if (log_setup(cfg->log_format, cfg->log_level, cfg->log_file, &err) != 0 ||
        audit_open(cfg->audit_log, &err) != 0) {
        fprintf(stderr, "pgsov-proxy: %s\n", err.msg);
        snapshot_unref(snap);
        return 1;
    }
    snapshot_install(snap);

    struct backoff_policy policy = BACKOFF_POLICY_DEFAULT;
    uint64_t seed;
    memcpy(&seed, mock_secret, sizeof seed);
    if (!(backoff = backoff_new(8192, &policy, seed, &err))) {
        fprintf(stderr, "pgsov-proxy: %s\n", err.msg);
        return 1;
    }
    n_workers = cfg->workers;
    if (n_workers <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n_workers = cpus < 1 ? 1 : cpus > 64 ? 64 : (int)cpus;
    }
    workers = calloc((size_t)n_workers, sizeof *workers);
    if (!workers)
        return 1;
    for (int i = 0; i < n_workers; i++) {
        if (worker_init(&workers[i], i, cfg, &err) != 0) {
            fprintf(stderr, "pgsov-proxy: %s\n", err.msg);
            return 1;
        }
    }
    /* cfg belongs to the first snapshot, which a reload frees: keep what shutdown needs. */
    char *pid_file = cfg->pid_file ? strdup(cfg->pid_file) : NULL;
    if (pid_file) {
        FILE *f = fopen(pid_file, "w");
        if (f) {
            fprintf(f, "%d\n", (int)getpid());
            fclose(f);
        }
    }

    struct event_base *main_base = event_base_new();
    struct event *ev_hup = evsignal_new(main_base, SIGHUP, on_sighup, NULL);
    struct event *ev_term = evsignal_new(main_base, SIGTERM, on_sigterm, NULL);
    struct event *ev_int = evsignal_new(main_base, SIGINT, on_sigint, NULL);
    evsignal_add(ev_hup, NULL);
    evsignal_add(ev_term, NULL);
    evsignal_add(ev_int, NULL);

    /* Signals go to the main thread only: block them in workers. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, WORKER_STACK);
    for (int i = 0; i < n_workers; i++)
        pthread_create(&workers[i].thread, &attr, worker_main, &workers[i]);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    char nw[16], listen[256] = "";
    snprintf(nw, sizeof nw, "%d", n_workers);
    for (size_t i = 0; i < cfg->n_listen; i++)
        snprintf(listen + strlen(listen), sizeof listen - strlen(listen), "%s%s", i ? "," : "", cfg->listen[i]);
    log_event(LOG_INFO, "start", "listen", listen, "workers", nw, "config", config_path, NULL);

    /* The main loop ends when every worker has ended (they exit after draining). */
    bool *joined = calloc((size_t)n_workers, sizeof *joined);
    int n_joined = 0;
    while (n_joined < n_workers) {
        event_base_loop(main_base, EVLOOP_ONCE);
        if (!stopping)
            continue;
        for (int i = 0; i < n_workers; i++) {
            if (!joined[i] && pthread_tryjoin_np(workers[i].thread, NULL) == 0) {
                joined[i] = true;
                n_joined++;
            }
        }
        struct timeval tick = { 0, 20000 };
        event_base_loopexit(main_base, &tick);
    }
    free(joined);
    log_event(LOG_INFO, "stopped", NULL);
    if (pid_file)
        unlink(pid_file);
    free(pid_file);
    return 0;
}
