/* test_proxy_reuse.c — upstream reuse with auth = proxy (pool.h): a client that ends cleanly
 * leaves its backend, reset with DISCARD ALL, to the next client with the same upstream
 * startup; nothing of the first client's session reaches the second; anything unclean (an
 * open transaction, a backend killed while parked, a reload, passthrough auth, reuse off)
 * gets a fresh backend. The backend's own pid (pg_backend_pid()) tells which one a client got. */
#include "harness.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static struct it_proxy proxy;
static char users_path[700];

static const char ini_template[] =
    "[proxy]\n"
    "listen = 127.0.0.1:@PORT@\n"
    "rules = @RULES@\n"
    "client_tls = allow\n"
    "client_tls_cert = @PKI@/server.crt\n"
    "client_tls_key = @PKI@/server.key\n"
    "client_tls_ca = @PKI@/ca.crt\n"
    "audit_log = @AUDIT@\n"
    "log_level = debug\n"
    "workers = 1\n"                 /* one pool: which backend a client gets is deterministic */
    "users_file = %s\n"
    "%s"
    "[env.development]\n"           /* passthrough: never reused */
    "host = localhost\nport = @DEV_PORT@\ndatabase = postgres\nsslrootcert = @PKI@/ca.crt\n"
    "host_patterns = localhost:@DEV_PORT@\n"
    "[env.production]\n"
    "host = localhost\nport = @PROD_PORT@\ndatabase = postgres\nsslrootcert = @PKI@/ca.crt\n"
    "host_patterns = localhost:@PROD_PORT@\n"
    "auth = proxy\n"
    "upstream_user.other = app\n"
    "upstream_password.app = app-secret\n";

#define KEPT "upstream kept for reuse"

static void start_proxy(struct it_proxy *p, const char *proxy_extra)
{
    char ini[4096];
    snprintf(ini, sizeof ini, ini_template, users_path, proxy_extra);
    it_proxy_start_ini(p, ini, "allow all all all any all\n");   /* temp tables are ddl */
}

static int setup(void **state)
{
    char *out = NULL;
    if (it_sh(&out, "printf 'client-pw\\n' | '%s/pgsov' passwd --stdin app", it_env()->bin) != 0)
        fail_msg("pgsov passwd failed: %s", out ? out : "");
    char *v = strstr(out, "SCRAM-SHA-256$");
    if (!v)
        fail_msg("no verifier in: %s", out);
    v[strcspn(v, " \n")] = '\0';
    char *dir = it_tmpdir("reuse");
    snprintf(users_path, sizeof users_path, "%s/users", dir);
    free(dir);
    char text[1200];
    snprintf(text, sizeof text, "app %s\nother %s\n", v, v);
    free(out);
    it_write_file(users_path, text);
    chmod(users_path, 0600);

    PGconn *prod = it_super("prod", "postgres");
    it_exec(prod, "DROP TABLE IF EXISTS reuse_rows; CREATE TABLE reuse_rows (x int); "
                  "GRANT ALL ON reuse_rows TO app");
    PQfinish(prod);
    start_proxy(&proxy, "");
    return 0;
}

static int teardown(void **state)
{
    it_proxy_stop(&proxy, SIGINT, 5000);
    return 0;
}

static PGconn *client(const char *who, const char *extra)
{
    PGconn *c = it_proxy_connect(&proxy, "user=%s password=client-pw dbname=production %s", who, extra);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("login as %s failed: %s", who, PQerrorMessage(c));
    return c;
}

static long backend_pid(PGconn *c)
{
    char *v = it_value(c, "SELECT pg_backend_pid()");
    long pid = atol(v);
    free(v);
    assert_true(pid > 0);
    return pid;
}

/* sql's single value must be want. */
static void sql_value_is(PGconn *c, const char *sql, const char *want)
{
    char *v = it_value(c, sql);
    if (strcmp(v, want) != 0)
        fail_msg("%s: got \"%s\", want \"%s\"", sql, v, want);
    free(v);
}

/* Backend pid must have exited (within 5 s) on the production cluster. */
static void expect_backend_gone(long pid)
{
    PGconn *direct = it_super("prod", "postgres");
    char sql[120];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_stat_activity WHERE pid = %ld", pid);
    for (int i = 0; i < 50; i++) {
        char *v = it_value(direct, sql);
        bool gone = strcmp(v, "0") == 0;
        free(v);
        if (gone)
            break;
        usleep(100 * 1000);
    }
    sql_value_is(direct, sql, "0");
    PQfinish(direct);
}

/* Closes c with Terminate and waits until the proxy has parked its backend. */
static void finish_and_park(PGconn *c)
{
    int before = it_proxy_log_count(&proxy, KEPT);
    PQfinish(c);
    if (!it_proxy_wait_log(&proxy, KEPT, before + 1, 5000)) {
        char *log = it_proxy_log(&proxy);
        fail_msg("the backend was not parked after a clean Terminate; log:\n%s", log);
    }
}

static void test_clean_end_is_reused(void **state)
{
    PGconn *a = client("app", "");
    long pid = backend_pid(a);
    finish_and_park(a);

    PGconn *b = client("app", "");
    assert_int_equal(backend_pid(b), pid);
    /* What a fresh login reports, replayed. */
    assert_string_equal(PQparameterStatus(b, "standard_conforming_strings"), "on");
    assert_string_equal(PQparameterStatus(b, "session_authorization"), "app");
    assert_non_null(PQparameterStatus(b, "server_version"));
    assert_true(PQbackendPID(b) != (int)pid);     /* the client still sees the proxy's key */
    char *who = it_value(b, "SELECT current_user");
    assert_string_equal(who, "app");
    free(who);
    finish_and_park(b);

    /* Another client user mapped to the same upstream role has the same upstream startup. */
    PGconn *o = client("other", "");
    assert_int_equal(backend_pid(o), pid);
    finish_and_park(o);

    /* Different startup parameters: another key, another backend. */
    PGconn *n = client("app", "application_name=elsewhere");
    assert_true(backend_pid(n) != pid);
    PQfinish(n);
}

/* TLS on both links, SCRAM-SHA-256-PLUS at the proxy: the parked backend's TLS link is handed
 * over like a plain one. */
static void test_reuse_over_tls(void **state)
{
    char extra[700];
    snprintf(extra, sizeof extra, "sslmode=verify-full host=localhost sslrootcert=%s/ca.crt "
             "channel_binding=require", it_env()->pki);
    PGconn *a = client("app", extra);
    assert_non_null(PQsslAttribute(a, "protocol"));
    long pid = backend_pid(a);
    sql_value_is(a, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", "t");
    finish_and_park(a);
    PGconn *b = client("app", extra);
    assert_int_equal(backend_pid(b), pid);
    sql_value_is(b, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", "t");
    finish_and_park(b);
}

static void test_nothing_leaks_to_the_next_client(void **state)
{
    PGconn *a = client("app", "");
    long pid = backend_pid(a);
    it_exec(a, "SET work_mem = '7MB'");
    it_exec(a, "SET application_name = 'leaky'");
    it_exec(a, "PREPARE leaked AS SELECT 1");
    it_exec(a, "CREATE TEMP TABLE leaked_temp (x int)");
    it_exec(a, "LISTEN leaked_channel");
    it_exec(a, "SELECT pg_advisory_lock(4242)");
    it_exec(a, "DECLARE leaked_cursor CURSOR WITH HOLD FOR SELECT 1");
    assert_string_equal(PQparameterStatus(a, "application_name"), "leaky");
    finish_and_park(a);

    PGconn *b = client("app", "");
    assert_int_equal(backend_pid(b), pid);
    sql_value_is(b, "SHOW work_mem", "4MB");
    sql_value_is(b, "SHOW application_name", "");
    assert_string_equal(PQparameterStatus(b, "application_name"), "");
    sql_value_is(b, "SELECT count(*) FROM pg_prepared_statements", "0");
    sql_value_is(b, "SELECT count(*) FROM pg_class WHERE relname = 'leaked_temp'", "0");
    sql_value_is(b, "SELECT count(*) FROM pg_listening_channels()", "0");
    sql_value_is(b, "SELECT count(*) FROM pg_cursors", "0");
    PGconn *direct = it_super("prod", "postgres");
    sql_value_is(direct, "SELECT pg_try_advisory_lock(4242)", "t");             /* the first client's lock went with DISCARD ALL */
    PQfinish(direct);
    finish_and_park(b);
}

/* A client that leaves inside a transaction: Terminate reaches the server, which rolls back;
 * the backend ends with it. */
static void test_open_transaction_is_not_reused(void **state)
{
    PGconn *a = client("app", "");
    long pid = backend_pid(a);
    it_exec(a, "BEGIN");
    it_exec(a, "INSERT INTO reuse_rows VALUES (1)");
    int kept = it_proxy_log_count(&proxy, KEPT);
    PQfinish(a);

    PGconn *b = client("app", "");
    assert_true(backend_pid(b) != pid);
    sql_value_is(b, "SELECT count(*) FROM reuse_rows", "0");
    expect_backend_gone(pid);                 /* it exits once it reads Terminate */
    assert_int_equal(it_proxy_log_count(&proxy, KEPT), kept);
    PQfinish(b);
}

/* A client that sent a cancel: its packet may still be on its way to the backend when the next
 * client's query starts, so that backend is closed, not parked (a direct connection's backend
 * ends with its client too). */
static void test_cancelled_backend_is_not_reused(void **state)
{
    PGconn *a = client("app", "");
    long pid = backend_pid(a);
    assert_int_equal(PQsendQuery(a, "SELECT pg_sleep(30)"), 1);
    usleep(200 * 1000);
    PGcancel *cn = PQgetCancel(a);
    char errbuf[256];
    assert_int_equal(PQcancel(cn, errbuf, sizeof errbuf), 1);
    PQfreeCancel(cn);
    PGresult *r;
    bool cancelled = false;
    while ((r = PQgetResult(a)) != NULL) {
        cancelled |= strcmp(it_sqlstate(r), "57014") == 0;
        PQclear(r);
    }
    assert_true(cancelled);
    sql_value_is(a, "SELECT 1", "1");          /* idle and clean: reusable but for the cancel */
    int kept = it_proxy_log_count(&proxy, KEPT);
    int closed = it_proxy_log_count(&proxy, "a cancel was sent to its backend");
    PQfinish(a);
    if (!it_proxy_wait_log(&proxy, "a cancel was sent to its backend", closed + 1, 5000))
        fail_msg("the cancelled client's backend was not closed for that reason");
    assert_int_equal(it_proxy_log_count(&proxy, KEPT), kept);
    expect_backend_gone(pid);
    PGconn *b = client("app", "");
    assert_true(backend_pid(b) != pid);
    finish_and_park(b);
}

/* Many clients connecting and leaving at once (pgbench -C, 8 clients on one worker's pool):
 * every session first checks that it starts from a fresh login's settings, then changes them.
 * A leak from one client to the next makes the check divide by zero and pgbench fail. */
static void test_concurrent_reuse_never_leaks(void **state)
{
    char *dir = it_tmpdir("reuse-pgbench");
    char script[700];
    snprintf(script, sizeof script, "%s/leak.sql", dir);
    it_write_file(script,
                  "SELECT 1 / (current_setting('work_mem') = '4MB' AND "
                  "current_setting('application_name') = 'pgbench' AND "
                  "(SELECT count(*) FROM pg_prepared_statements) = 0)::int;\n"
                  "SET work_mem = '7MB';\n"
                  "SET application_name = 'leaked';\n"
                  "PREPARE leaked_plan AS SELECT 1;\n");
    int reused = it_proxy_log_count(&proxy, "upstream_reused");
    const char *pgbin = getenv("PGSOV_IT_PGBIN") ? getenv("PGSOV_IT_PGBIN") : "/usr/bin";
    char *out = NULL;
    int rc = it_sh(&out, "PGPASSWORD=client-pw '%s/pgbench' -n -C -c 8 -j 2 -t 40 -f '%s' "
                   "-h 127.0.0.1 -p %d -U app production 2>&1", pgbin, script, proxy.port);
    if (rc != 0 || !it_contains(out, "number of transactions actually processed: 320/320"))
        fail_msg("pgbench through the proxy: exit %d\n%s", rc, out);
    free(out);
    free(dir);
    int now = it_proxy_log_count(&proxy, "upstream_reused");
    if (now - reused < 200)                   /* most of the 320 connections got a parked backend */
        fail_msg("only %d of 320 connections reused a backend", now - reused);
}

/* A client that sends a statement and Terminate without waiting: the statement still runs and
 * commits, as it would directly, and that backend is not reused (it had work in flight). */
static void test_pipelined_terminate_loses_nothing(void **state)
{
    PGconn *a = client("app", "");
    long pid = backend_pid(a);
    int kept = it_proxy_log_count(&proxy, KEPT);
    /* slow enough that its answer cannot come back before the Terminate arrives */
    assert_int_equal(PQsendQuery(a, "INSERT INTO reuse_rows SELECT 7 FROM pg_sleep(0.5)"), 1);
    assert_int_equal(PQflush(a), 0);
    PQfinish(a);                              /* Terminate right behind the Query */
    expect_backend_gone(pid);
    assert_int_equal(it_proxy_log_count(&proxy, KEPT), kept);
    PGconn *direct = it_super("prod", "postgres");
    sql_value_is(direct, "SELECT count(*) FROM reuse_rows WHERE x = 7", "1");
    it_exec(direct, "DELETE FROM reuse_rows");
    PQfinish(direct);
}

/* A client that drops its TCP connection while idle (no Terminate) leaves a clean backend too. */
static void test_idle_close_without_terminate(void **state)
{
    PGconn *a = client("app", "");
    long pid = backend_pid(a);
    int kept = it_proxy_log_count(&proxy, KEPT);
    shutdown(PQsocket(a), SHUT_RDWR);         /* the proxy reads EOF; libpq's Terminate is lost */
    PQfinish(a);
    assert_true(it_proxy_wait_log(&proxy, KEPT, kept + 1, 5000));
    PGconn *b = client("app", "");
    assert_int_equal(backend_pid(b), pid);
    finish_and_park(b);
}

/* upstream_max_idle bounds what is parked: the oldest goes first. */
static void test_max_idle(void **state)
{
    struct it_proxy small;
    start_proxy(&small, "upstream_max_idle = 1\n");
    PGconn *a = it_proxy_connect(&small, "user=app password=client-pw dbname=production");
    PGconn *b = it_proxy_connect(&small, "user=app password=client-pw dbname=production");
    assert_int_equal(PQstatus(a), CONNECTION_OK);
    assert_int_equal(PQstatus(b), CONNECTION_OK);
    long pid_a = backend_pid(a), pid_b = backend_pid(b);
    PQfinish(a);
    assert_true(it_proxy_wait_log(&small, KEPT, 1, 5000));
    PQfinish(b);
    assert_true(it_proxy_wait_log(&small, KEPT, 2, 5000));
    assert_true(it_proxy_wait_log(&small, "pool full", 1, 5000));
    expect_backend_gone(pid_a);               /* a's backend made room for b's */
    PGconn *c = it_proxy_connect(&small, "user=app password=client-pw dbname=production");
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    assert_int_equal(backend_pid(c), pid_b);
    PQfinish(c);
    it_proxy_stop(&small, SIGINT, 5000);
}

/* A parked backend that the server ends (pg_terminate_backend) is noticed and dropped. */
static void test_killed_while_parked(void **state)
{
    PGconn *a = client("app", "");
    long pid = backend_pid(a);
    finish_and_park(a);
    int closed = it_proxy_log_count(&proxy, "upstream_pool_close");
    PGconn *direct = it_super("prod", "postgres");
    char sql[80];
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%ld)", pid);
    sql_value_is(direct, sql, "t");
    PQfinish(direct);
    assert_true(it_proxy_wait_log(&proxy, "upstream_pool_close", closed + 1, 5000));

    PGconn *b = client("app", "");
    assert_true(backend_pid(b) != pid);
    finish_and_park(b);
}

static void test_passthrough_is_not_reused(void **state)
{
    PGconn *a = it_proxy_connect(&proxy, "user=app password=app-secret dbname=development");
    assert_int_equal(PQstatus(a), CONNECTION_OK);
    long pid = backend_pid(a);
    PQfinish(a);
    PGconn *b = it_proxy_connect(&proxy, "user=app password=app-secret dbname=development");
    assert_int_equal(PQstatus(b), CONNECTION_OK);
    assert_true(backend_pid(b) != pid);
    PQfinish(b);
}

/* A reload may change rules, TLS, credentials or the upstream: what was parked before it is
 * closed at once and never reused. */
static void test_reload_drops_parked(void **state)
{
    PGconn *a = client("app", "");
    long pid = backend_pid(a);
    finish_and_park(a);
    assert_int_equal(it_proxy_reload(&proxy), 1);
    expect_backend_gone(pid);                 /* closed at the reload, not at its idle timeout */
    PGconn *b = client("app", "");
    assert_true(backend_pid(b) != pid);
    finish_and_park(b);
}

static void test_reuse_off(void **state)
{
    struct it_proxy off;
    start_proxy(&off, "upstream_reuse = off\n");
    PGconn *a = it_proxy_connect(&off, "user=app password=client-pw dbname=production");
    assert_int_equal(PQstatus(a), CONNECTION_OK);
    long pid = backend_pid(a);
    PQfinish(a);
    usleep(200 * 1000);
    PGconn *b = it_proxy_connect(&off, "user=app password=client-pw dbname=production");
    assert_int_equal(PQstatus(b), CONNECTION_OK);
    assert_true(backend_pid(b) != pid);
    PQfinish(b);
    assert_int_equal(it_proxy_log_count(&off, KEPT), 0);
    it_proxy_stop(&off, SIGINT, 5000);
}

/* SIGTERM with a parked backend: nothing waits for it, the proxy exits at once. */
static void test_drain_with_parked(void **state)
{
    struct it_proxy p2;
    start_proxy(&p2, "");
    PGconn *a = it_proxy_connect(&p2, "user=app password=client-pw dbname=production");
    assert_int_equal(PQstatus(a), CONNECTION_OK);
    long pid = backend_pid(a);
    PQfinish(a);
    assert_true(it_proxy_wait_log(&p2, KEPT, 1, 5000));
    double t0 = it_now_ms();
    assert_int_equal(it_proxy_stop(&p2, SIGTERM, 5000), 0);
    assert_true(it_now_ms() - t0 < 2000);
    expect_backend_gone(pid);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_end_is_reused),
        cmocka_unit_test(test_reuse_over_tls),
        cmocka_unit_test(test_nothing_leaks_to_the_next_client),
        cmocka_unit_test(test_open_transaction_is_not_reused),
        cmocka_unit_test(test_cancelled_backend_is_not_reused),
        cmocka_unit_test(test_concurrent_reuse_never_leaks),
        cmocka_unit_test(test_pipelined_terminate_loses_nothing),
        cmocka_unit_test(test_idle_close_without_terminate),
        cmocka_unit_test(test_max_idle),
        cmocka_unit_test(test_killed_while_parked),
        cmocka_unit_test(test_passthrough_is_not_reused),
        cmocka_unit_test(test_reload_drops_parked),
        cmocka_unit_test(test_reuse_off),
        cmocka_unit_test(test_drain_with_parked),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
