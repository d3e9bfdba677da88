/* harness.c — shared fixtures for integration tests (see harness.h). */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
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

void it_proxy_start(struct it_proxy *p, const char *proxy_extra, const char *rules)
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

    char ini[8192];
    snprintf(ini, sizeof ini,
             "[proxy]\n"
             "listen = 127.0.0.1:%d\n"
             "rules = %s\n"
             "client_tls = allow\n"
             "client_tls_cert = %s/server.crt\n"
             "client_tls_key = %s/server.key\n"
             "client_tls_ca = %s/ca.crt\n"
             "audit_log = %s\n"
             "log_level = debug\n"
             "%s\n"
             "[env.development]\n"
             "aliases = dev\n"
             "host = localhost\n"
             "port = %d\n"
             "database = postgres\n"
             "sslmode = verify-full\n"
             "sslrootcert = %s/ca.crt\n"
             "host_patterns = localhost:%d\n"
             "\n"
             "[env.production]\n"
             "aliases = prod\n"
             "host = localhost\n"
             "port = %d\n"
             "database = postgres\n"
             "sslmode = verify-full\n"
             "sslrootcert = %s/ca.crt\n"
             "host_patterns = localhost:%d\n",
             p->port, p->rules, e->pki, e->pki, e->pki, p->audit,
             proxy_extra ? proxy_extra : "",
             e->dev_port, e->pki, e->dev_port, e->prod_port, e->pki, e->prod_port);
    it_write_file(p->ini, ini);

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
            char *log = NULL;
            it_sh(&log, "cat '%s'", p->log);
            fail_msg("pgsov-proxy exited at start:\n%s", log ? log : "");
        }
        usleep(25000);
    }
    fail_msg("pgsov-proxy did not accept on port %d within 5 s", p->port);
}

int it_proxy_stop(struct it_proxy *p, int sig, int timeout_ms)
{
    if (p->pid <= 0)
        return -1;
    kill(p->pid, sig);
    for (int waited = 0; waited < timeout_ms; waited += 10) {
        int st;
        if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
            p->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        usleep(10000);
    }
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
