/* harness.c — shared fixtures for integration tests (see harness.h). */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct it_env the_env;
static int env_loaded;

static const char *need(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v)
        fail_msg("integration environment variable %s is not set: run through tests/integration/run.sh", name);
    return v;
}

const struct it_env *it_env(void)
{
    if (!env_loaded) {
        the_env.dir = need("PGSOV_IT_DIR");
        the_env.pki = need("PGSOV_IT_PKI");
        the_env.bin = need("PGSOV_BIN");
        the_env.src = need("PGSOV_SRC");
        the_env.superpass = need("PGSOV_IT_SUPERPASS");
        the_env.dev_port = atoi(need("PGSOV_IT_DEV_PORT"));
        the_env.prod_port = atoi(need("PGSOV_IT_PROD_PORT"));
        env_loaded = 1;
    }
    return &the_env;
}

int it_cluster_port(const char *cluster)
{
    const struct it_env *e = it_env();
    if (strcmp(cluster, "dev") == 0)
        return e->dev_port;
    if (strcmp(cluster, "prod") == 0)
        return e->prod_port;
    fail_msg("unknown cluster %s", cluster);
    return -1;
}

static void quiet_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

PGconn *it_connect(const char *fmt, ...)
{
    char conninfo[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(conninfo, sizeof conninfo, fmt, ap);
    va_end(ap);
    PGconn *c = PQconnectdb(conninfo);
    if (!c)
        fail_msg("PQconnectdb returned NULL");
    PQsetNoticeProcessor(c, quiet_notice, NULL);   /* "does not exist, skipping" noise */
    return c;
}

PGconn *it_super(const char *cluster, const char *db)
{
    const struct it_env *e = it_env();
    PGconn *c = it_connect("host=localhost hostaddr=127.0.0.1 port=%d dbname=%s user=postgres password=%s "
                           "sslmode=verify-full sslrootcert=%s/ca.crt",
                           it_cluster_port(cluster), db, e->superpass, e->pki);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("superuser connection to %s/%s failed: %s", cluster, db, PQerrorMessage(c));
    return c;
}

void it_exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(r));
        PQclear(r);
        fail_msg("SQL failed: %s\n  %s", sql, msg);
    }
    PQclear(r);
}

char *it_value(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(r));
        PQclear(r);
        fail_msg("query failed: %s\n  %s", sql, msg);
    }
    char *v = strdup(PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    return v;
}

void it_create_db(const char *cluster, const char *db, const char *owner)
{
    PGconn *c = it_super(cluster, "postgres");
    char sql[512];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", db);
    it_exec(c, sql);
    snprintf(sql, sizeof sql, "CREATE DATABASE \"%s\" OWNER \"%s\"", db, owner ? owner : "postgres");
    it_exec(c, sql);
    PQfinish(c);
}

int it_sh(char **out, const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[8300];
    snprintf(full, sizeof full, "( %s ) 2>&1", cmd);
    FILE *f = popen(full, "r");
    if (!f)
        return -1;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    if (buf)
        buf[len] = '\0';
    int st = pclose(f);
    if (out)
        *out = buf;
    else
        free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void it_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        fail_msg("cannot write %s: %s", path, strerror(errno));
    fputs(text, f);
    if (fclose(f) != 0)
        fail_msg("cannot write %s: %s", path, strerror(errno));
}

char *it_tmpdir(const char *hint)
{
    static int counter;
    char *path = malloc(1024);
    snprintf(path, 1024, "%s/%s-%d-%d", it_env()->dir, hint, (int)getpid(), ++counter);
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        fail_msg("mkdir %s: %s", path, strerror(errno));
    return path;
}

int it_contains(const char *haystack, const char *needle)
{
    return haystack && needle && strstr(haystack, needle) != NULL;
}

/* ---- the proxy ---------------------------------------------------------------------- */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        fail_msg("cannot find a free port: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

static int port_accepts(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

const char it_proxy_default_ini[] =
    "[proxy]\n"
    "listen = 127.0.0.1:@PORT@\n"
    "rules = @RULES@\n"
    "client_tls = allow\n"
    "client_tls_cert = @PKI@/server.crt\n"
    "client_tls_key = @PKI@/server.key\n"
    "client_tls_ca = @PKI@/ca.crt\n"
    "audit_log = @AUDIT@\n"
    "log_level = debug\n"
    "@PROXY_EXTRA@\n"
    "[env.development]\n"
    "aliases = dev\n"
    "host = localhost\n"
    "port = @DEV_PORT@\n"
    "database = postgres\n"
    "sslmode = verify-full\n"
    "sslrootcert = @PKI@/ca.crt\n"
    "host_patterns = localhost:@DEV_PORT@\n"
    "\n"
    "[env.production]\n"
    "aliases = prod\n"
    "host = localhost\n"
    "port = @PROD_PORT@\n"
    "database = postgres\n"
    "sslmode = verify-full\n"
    "sslrootcert = @PKI@/ca.crt\n"
    "host_patterns = localhost:@PROD_PORT@\n";

/* Appends text to a growing malloc'd string. */
static void append(char **buf, size_t *len, size_t *cap, const char *text, size_t n)
{
    if (*len + n + 1 > *cap) {
        while (*len + n + 1 > *cap)
            *cap = *cap ? *cap * 2 : 4096;
        *buf = realloc(*buf, *cap);
        if (!*buf)
            fail_msg("out of memory");
    }
    memcpy(*buf + *len, text, n);
    *len += n;
    (*buf)[*len] = '\0';
}

/* ini with @TOKEN@s replaced (malloc'd). */
static char *expand_ini(const struct it_proxy *p, const char *ini, const char *proxy_extra)
{
    const struct it_env *e = it_env();
    char port[16], dev[16], prod[16];
    snprintf(port, sizeof port, "%d", p->port);
    snprintf(dev, sizeof dev, "%d", e->dev_port);
    snprintf(prod, sizeof prod, "%d", e->prod_port);
    const struct { const char *token, *value; } subst[] = {
        { "@PORT@", port }, { "@RULES@", p->rules }, { "@AUDIT@", p->audit },
        { "@PKI@", e->pki }, { "@DEV_PORT@", dev }, { "@PROD_PORT@", prod },
        { "@PROXY_EXTRA@", proxy_extra ? proxy_extra : "" },
    };
    char *out = NULL;
    size_t len = 0, cap = 0;
    append(&out, &len, &cap, "", 0);
    for (const char *at = ini; *at;) {
        size_t i, n = sizeof subst / sizeof subst[0];
        for (i = 0; i < n; i++)
            if (strncmp(at, subst[i].token, strlen(subst[i].token)) == 0)
                break;
        if (i < n) {
            append(&out, &len, &cap, subst[i].value, strlen(subst[i].value));
            at += strlen(subst[i].token);
        } else {
            append(&out, &len, &cap, at, 1);
            at++;
        }
    }
    return out;
}

static void proxy_launch(struct it_proxy *p, const char *ini, const char *proxy_extra, const char *rules)
{
    const struct it_env *e = it_env();
    char *dir = it_tmpdir("proxy");
    memset(p, 0, sizeof *p);
    snprintf(p->dir, sizeof p->dir, "%s", dir);
    free(dir);
    snprintf(p->ini, sizeof p->ini, "%s/proxy.ini", p->dir);
    snprintf(p->rules, sizeof p->rules, "%s/access.rules", p->dir);
    snprintf(p->log, sizeof p->log, "%s/proxy.log", p->dir);
    snprintf(p->audit, sizeof p->audit, "%s/audit.jsonl", p->dir);
    p->port = free_port();
    it_write_file(p->rules, rules);
    char *text = expand_ini(p, ini, proxy_extra);
    it_write_file(p->ini, text);
    free(text);

    pid_t pid = fork();
    if (pid < 0)
        fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        char exe[1024];
        snprintf(exe, sizeof exe, "%s/pgsov-proxy", e->bin);
        execl(exe, exe, "-c", p->ini, (char *)NULL);
        _exit(127);
    }
    p->pid = pid;
    for (int i = 0; i < 200; i++) {
        if (port_accepts(p->port))
            return;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            p->pid = 0;
            char *log = it_proxy_log(p);
            fail_msg("pgsov-proxy exited at start:\n%s", log);
        }
        usleep(25000);
    }
    fail_msg("pgsov-proxy did not accept on port %d within 5 s", p->port);
}

void it_proxy_start(struct it_proxy *p, const char *proxy_extra, const char *rules)
{
    proxy_launch(p, it_proxy_default_ini, proxy_extra, rules);
}

void it_proxy_start_ini(struct it_proxy *p, const char *ini, const char *rules)
{
    proxy_launch(p, ini, NULL, rules);
}

char *it_proxy_log(const struct it_proxy *p)
{
    FILE *f = fopen(p->log, "r");
    char *out = NULL;
    size_t len = 0, cap = 0;
    append(&out, &len, &cap, "", 0);
    if (!f)
        return out;
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        append(&out, &len, &cap, chunk, n);
    fclose(f);
    return out;
}

int it_proxy_log_count(const struct it_proxy *p, const char *needle)
{
    char *log = it_proxy_log(p);
    int n = 0;
    for (const char *at = log; (at = strstr(at, needle)) != NULL; at += strlen(needle))
        n++;
    free(log);
    return n;
}

int it_proxy_wait_log(const struct it_proxy *p, const char *needle, int count, int timeout_ms)
{
    double until = it_now_ms() + timeout_ms;
    do {
        if (it_proxy_log_count(p, needle) >= count)
            return 1;
        usleep(10000);
    } while (it_now_ms() < until);
    return 0;
}

int it_proxy_reload(struct it_proxy *p)
{
    int ok = it_proxy_log_count(p, "reloaded"), bad = it_proxy_log_count(p, "reload_failed");
    kill(p->pid, SIGHUP);
    double until = it_now_ms() + 5000;
    while (it_now_ms() < until) {
        if (it_proxy_log_count(p, "reload_failed") > bad)
            return 0;
        if (it_proxy_log_count(p, "reloaded") > ok)
            return 1;
        usleep(10000);
    }
    char *log = it_proxy_log(p);
    fail_msg("no reloaded/reload_failed line within 5 s after SIGHUP:\n%s", log);
    return -1;
}

const char *it_sqlstate(const PGresult *r)
{
    const char *s = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    return s ? s : "";
}

char *it_expect_error(PGconn *c, const char *sql, const char *sqlstate, const char *text)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_FATAL_ERROR) {
        ExecStatusType st = PQresultStatus(r);
        PQclear(r);
        fail_msg("expected \"%s\" to fail with %s, got %s", sql, sqlstate, PQresStatus(st));
    }
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    char *copy = strdup(msg ? msg : "");
    if (strcmp(it_sqlstate(r), sqlstate) != 0) {
        char got[8];
        snprintf(got, sizeof got, "%s", it_sqlstate(r));
        PQclear(r);
        fail_msg("\"%s\": SQLSTATE %s, want %s (%s)", sql, got, sqlstate, copy);
    }
    PQclear(r);
    if (text && !strstr(copy, text))
        fail_msg("\"%s\": message \"%s\" lacks \"%s\"", sql, copy, text);
    return copy;
}

double it_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

int it_proxy_stop(struct it_proxy *p, int sig, int timeout_ms)
{
    if (p->pid <= 0)
        return -1;
    kill(p->pid, sig);
    return it_proxy_wait_exit(p, timeout_ms);
}

/* A proxy that did not exit cleanly says why: the end of its log, for the test output. */
static void print_log_tail(const struct it_proxy *p, int rc)
{
    char *log = it_proxy_log(p);
    size_t len = strlen(log);
    const char *tail = len > 3000 ? log + len - 3000 : log;
    print_message("pgsov-proxy (port %d) %s %d; end of its log:\n%s\n", p->port,
                  rc < 0 ? "did not exit, status" : "exited with", rc, tail);
    free(log);
}

int it_proxy_wait_exit(struct it_proxy *p, int timeout_ms)
{
    if (p->pid <= 0)
        return -1;
    for (int waited = 0; waited < timeout_ms; waited += 10) {
        int st;
        if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
            p->pid = 0;
            int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            if (rc != 0)
                print_log_tail(p, rc);
            return rc;
        }
        usleep(10000);
    }
    print_log_tail(p, -1);
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    p->pid = 0;
    return -1;
}

PGconn *it_proxy_connect(const struct it_proxy *p, const char *fmt, ...)
{
    char rest[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rest, sizeof rest, fmt, ap);
    va_end(ap);
    return it_connect("host=127.0.0.1 port=%d sslmode=disable connect_timeout=5 %s", p->port, rest);
}

/* ---- raw protocol client -------------------------------------------------------------- */

int it_raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        fail_msg("raw connect to port %d: %s", port, strerror(errno));
    return fd;
}

int it_raw_send(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

size_t it_raw_startup(uint8_t *buf, size_t cap, uint32_t version, const char *const *kv)
{
    size_t len = 8;
    if (cap < 9)
        fail_msg("startup buffer too small");
    put32(buf + 4, version);
    for (int i = 0; kv && kv[i]; i++) {
        size_t n = strlen(kv[i]) + 1;
        if (len + n + 1 > cap)
            fail_msg("startup buffer too small");
        memcpy(buf + len, kv[i], n);
        len += n;
    }
    buf[len++] = '\0';
    put32(buf, (uint32_t)len);
    return len;
}

/* Waits until fd is readable; 1 readable, 0 timeout. */
static int wait_readable(int fd, int timeout_ms)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    for (;;) {
        int n = poll(&pfd, 1, timeout_ms);
        if (n < 0 && errno == EINTR)
            continue;
        return n > 0;
    }
}

/* Reads exactly len bytes before the deadline: 1 done, 0 EOF/reset, -1 timeout. */
static int read_full(int fd, uint8_t *buf, size_t len, double deadline)
{
    while (len > 0) {
        int left = (int)(deadline - it_now_ms());
        if (left <= 0 || !wait_readable(fd, left))
            return -1;
        ssize_t n = recv(fd, buf, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 0;
        buf += n;
        len -= (size_t)n;
    }
    return 1;
}

int it_raw_read_byte(int fd, int timeout_ms)
{
    uint8_t b;
    int rc = read_full(fd, &b, 1, it_now_ms() + timeout_ms);
    return rc == 1 ? b : rc == 0 ? -1 : -2;
}

int it_raw_read_msg(int fd, char *type, uint8_t *body, size_t cap, uint32_t *len, int timeout_ms)
{
    double deadline = it_now_ms() + timeout_ms;
    uint8_t hdr[5];
    int rc = read_full(fd, hdr, 5, deadline);
    if (rc != 1)
        return rc;
    uint32_t n = (uint32_t)hdr[1] << 24 | (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 8 | hdr[4];
    if (n < 4 || n > 64 * 1024 * 1024)
        return -1;
    *type = (char)hdr[0];
    *len = n - 4;
    size_t left = n - 4, keep = left < cap ? left : cap;
    if (keep && (rc = read_full(fd, body, keep, deadline)) != 1)
        return rc;
    left -= keep;
    uint8_t skip[4096];
    while (left > 0) {
        size_t take = left < sizeof skip ? left : sizeof skip;
        if ((rc = read_full(fd, skip, take, deadline)) != 1)
            return rc;
        left -= take;
    }
    if (cap > keep)
        body[keep] = '\0';
    return 1;
}

int it_raw_wait_closed(int fd, int timeout_ms)
{
    double deadline = it_now_ms() + timeout_ms;
    uint8_t buf[4096];
    for (;;) {
        int left = (int)(deadline - it_now_ms());
        if (left <= 0 || !wait_readable(fd, left))
            return 0;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 1;
    }
}

const char *it_raw_field(const uint8_t *body, uint32_t len, char code)
{
    uint32_t i = 0;
    while (i < len && body[i]) {
        char c = (char)body[i++];
        const char *value = (const char *)body + i;
        size_t n = strnlen(value, len - i);
        if (i + n >= len)
            return NULL;
        if (c == code)
            return value;
        i += (uint32_t)n + 1;
    }
    return NULL;
}

/* ---- a fake upstream ---------------------------------------------------------------------- */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void *fake_upstream_main(void *arg)
{
    struct it_fake_upstream *f = arg;
    if (!wait_readable(f->listen_fd, 10000))
        return NULL;
    int fd = accept(f->listen_fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    double deadline = it_now_ms() + 5000;
    uint8_t hdr[5], body[8192];
    bool ok = read_full(fd, hdr, 4, deadline) == 1;
    uint32_t n = ok ? be32(hdr) : 0;
    ok = ok && n >= 8 && n - 4 <= sizeof body && read_full(fd, body, n - 4, deadline) == 1 &&
         send(fd, f->hello, f->hello_len, MSG_NOSIGNAL) == (ssize_t)f->hello_len;
    if (ok && f->reply) {
        ok = read_full(fd, hdr, 5, deadline) == 1 && (n = be32(hdr + 1)) >= 4 && n - 4 <= sizeof body &&
             read_full(fd, body, n - 4, deadline) == 1;
        if (ok)
            send(fd, f->reply, f->reply_len, MSG_NOSIGNAL);
    }
    while (read_full(fd, body, 1, deadline) == 1)
        ;   /* until the proxy closes */
    close(fd);
    return NULL;
}

void it_fake_upstream_start(struct it_fake_upstream *f)
{
    f->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof a;
    if (f->listen_fd < 0 || bind(f->listen_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(f->listen_fd, 4) != 0 || getsockname(f->listen_fd, (struct sockaddr *)&a, &alen) != 0)
        fail_msg("fake upstream: cannot listen: %s", strerror(errno));
    f->port = ntohs(a.sin_port);
    if (pthread_create(&f->thread, NULL, fake_upstream_main, f) != 0)
        fail_msg("fake upstream: no thread");
}

void it_fake_upstream_stop(struct it_fake_upstream *f)
{
    pthread_join(f->thread, NULL);
    close(f->listen_fd);
}
