/* harness.h — what integration tests share: the clusters run.sh started, libpq helpers,
 * running the pgsov binaries, and starting a pgsov-proxy with a generated config.
 * Every helper that fails calls cmocka's fail_msg(), so a broken fixture fails the test. */
#ifndef PGSOV_IT_HARNESS_H
#define PGSOV_IT_HARNESS_H

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <sys/types.h>
#include <cmocka.h>
#include <libpq-fe.h>

struct it_env {
    const char *dir;        /* scratch directory of this run (removed afterwards)        */
    const char *pki;        /* test PKI: ca.crt, server.crt/key, client-app.crt/key, ...   */
    const char *bin;        /* directory with pgsov-proxy and pgsov                         */
    const char *src;        /* repository root                                             */
    const char *superpass;  /* password of the 'postgres' superuser in both clusters       */
    int dev_port, prod_port;
};

/* The environment run.sh exported; fails the test when it is missing. */
const struct it_env *it_env(void);

/* Port of cluster "dev" or "prod". */
int it_cluster_port(const char *cluster);

/* libpq connection from a printf-style conninfo; never NULL (check PQstatus). */
PGconn *it_connect(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Superuser connection straight to a cluster ("dev"/"prod") and database; fails the test
 * if it cannot connect. */
PGconn *it_super(const char *cluster, const char *db);

/* Runs sql and fails the test unless it succeeds. */
void it_exec(PGconn *c, const char *sql);

/* First column of the first row, malloc'd ("" for NULL); fails the test on error. */
char *it_value(PGconn *c, const char *sql);

/* Drops (if present) and creates database db on cluster, owned by owner (NULL: postgres). */
void it_create_db(const char *cluster, const char *db, const char *owner);

/* Runs a shell command (printf-style), captures stdout+stderr (malloc'd, into *out if
 * non-NULL) and returns the exit status (or -1). */
int it_sh(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes text to path, failing the test on error. */
void it_write_file(const char *path, const char *text);

/* A scratch directory under it_env()->dir, unique per call (malloc'd). */
char *it_tmpdir(const char *hint);

/* Is needle in haystack? (for readable asserts) */
int it_contains(const char *haystack, const char *needle);

/* ---- the proxy -------------------------------------------------------------------- */

struct it_proxy {
    pid_t pid;
    int port;
    char dir[512];          /* its config, rules, logs                                    */
    char ini[600];          /* path of proxy.ini                                          */
    char rules[600];        /* path of the rules file                                     */
    char log[600];          /* stderr of the proxy                                        */
    char audit[600];        /* audit log path                                             */
};

/* Starts bin/pgsov-proxy on a free port with a config that routes "development" (aliases
 * dev) to cluster dev and "production" (alias prod) to cluster prod over verify-full TLS.
 * proxy_extra: extra lines for [proxy] (may be NULL); rules: the rules file's text.
 * Waits until the port accepts; fails the test otherwise. */
void it_proxy_start(struct it_proxy *p, const char *proxy_extra, const char *rules);

/* Sends sig (SIGTERM/SIGINT) and waits up to timeout_ms; returns the exit status, or -1
 * if it had to be killed. */
int it_proxy_stop(struct it_proxy *p, int sig, int timeout_ms);

/* Waits up to timeout_ms for the proxy to exit by itself; returns its exit status, or -1
 * when it did not (it is then killed, so the test leaves nothing behind). */
int it_proxy_wait_exit(struct it_proxy *p, int timeout_ms);

/* Connects through the proxy: "host=127.0.0.1 port=<proxy> sslmode=disable " + rest. */
PGconn *it_proxy_connect(const struct it_proxy *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Like it_proxy_start, with the whole proxy.ini given. These tokens in ini are replaced:
 * @PORT@ (the proxy's port), @RULES@, @AUDIT@ (paths in p), @PKI@, @DEV_PORT@, @PROD_PORT@. */
void it_proxy_start_ini(struct it_proxy *p, const char *ini, const char *rules);

/* The default proxy.ini template of it_proxy_start (with @PROXY_EXTRA@ for proxy_extra). */
extern const char it_proxy_default_ini[];

/* The proxy's log so far (malloc'd, "" when empty). */
char *it_proxy_log(const struct it_proxy *p);

/* Occurrences of needle in the proxy's log. */
int it_proxy_log_count(const struct it_proxy *p, const char *needle);

/* Waits until needle occurs at least count times in the log; returns 1, or 0 on timeout. */
int it_proxy_wait_log(const struct it_proxy *p, const char *needle, int count, int timeout_ms);

/* Sends SIGHUP and waits for the next "reloaded" or "reload_failed" log line; returns 1
 * when it reloaded, 0 when the reload failed (fails the test when neither appears). */
int it_proxy_reload(struct it_proxy *p);

/* SQLSTATE of a result ("" when none). */
const char *it_sqlstate(const PGresult *r);

/* Runs sql, which must fail with sqlstate and (if text) a primary message containing text.
 * Returns the message (malloc'd) for further checks. */
char *it_expect_error(PGconn *c, const char *sql, const char *sqlstate, const char *text);

/* Milliseconds on a monotonic clock. */
double it_now_ms(void);

/* ---- a raw protocol client, for what libpq will not send ---------------------------- */

/* Blocking TCP connection to 127.0.0.1:port; fails the test if it cannot connect. */
int it_raw_connect(int port);

/* Writes all of buf; returns 0, or -1 when the peer has gone (EPIPE/ECONNRESET). */
int it_raw_send(int fd, const void *buf, size_t len);

/* Builds a StartupMessage: version (e.g. 196608 for 3.0), then NULL-terminated key, value
 * pairs. Returns its length (fails the test when cap is too small). */
size_t it_raw_startup(uint8_t *buf, size_t cap, uint32_t version, const char *const *kv);

/* Reads one byte (startup-phase answers 'S'/'N'). Returns it, -1 on EOF/reset, -2 on timeout. */
int it_raw_read_byte(int fd, int timeout_ms);

/* Reads one regular message into body (truncated to cap; *len is the body's full length).
 * Returns 1, 0 on EOF/reset, -1 on timeout or a malformed header. */
int it_raw_read_msg(int fd, char *type, uint8_t *body, size_t cap, uint32_t *len, int timeout_ms);

/* Reads and discards until the peer closes. Returns 1 when it closed within timeout_ms. */
int it_raw_wait_closed(int fd, int timeout_ms);

/* Field code (e.g. 'C' SQLSTATE, 'M' message) of an ErrorResponse/NoticeResponse body, or NULL. */
const char *it_raw_field(const uint8_t *body, uint32_t len, char code);

/* ---- a fake upstream, for what a real server will not send ------------------------- */

/* A scripted PostgreSQL server on 127.0.0.1 (no TLS), for one connection: it reads the startup
 * packet and sends hello; when reply is set, it reads one message and sends reply; then it
 * reads until the peer closes (at most 5 s). Point an [env] at port with sslmode = disable. */
struct it_fake_upstream {
    const uint8_t *hello, *reply;
    size_t hello_len, reply_len;
    int listen_fd, port;
    pthread_t thread;
};
void it_fake_upstream_start(struct it_fake_upstream *f);
void it_fake_upstream_stop(struct it_fake_upstream *f);

#endif
