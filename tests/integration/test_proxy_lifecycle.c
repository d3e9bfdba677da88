/* test_proxy_lifecycle.c — pgsov-proxy's life: SIGHUP reloads rules for new connections (and
 * an invalid rules file keeps the old ones, logging reload_failed); SIGTERM drains: a client
 * in a transaction may still COMMIT, then is closed, new connections are refused, and the
 * proxy exits 0; a transaction that outlives shutdown_timeout is ended and rolled back;
 * SIGINT stops at once. Also idle_timeout, max_clients and the unix socket with `local`. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

static PGconn *app_to(const struct it_proxy *p, const char *env)
{
    return it_proxy_connect(p, "dbname=%s user=app password=app-secret", env);
}

static int reaches(const struct it_proxy *p, const char *env)
{
    PGconn *c = app_to(p, env);
    int ok = PQstatus(c) == CONNECTION_OK;
    if (!ok && !it_contains(PQerrorMessage(c), "may not reach environment"))
        fail_msg("connection to %s failed for another reason: %s", env, PQerrorMessage(c));
    PQfinish(c);
    return ok;
}

static void test_reload_rules(void **state)
{
    (void)state;
    struct it_proxy p;
    it_proxy_start(&p, NULL, "allow development all app any default\n");
    assert_true(reaches(&p, "development"));
    assert_false(reaches(&p, "production"));
    PGconn *before = app_to(&p, "development");
    assert_int_equal(PQstatus(before), CONNECTION_OK);

    it_write_file(p.rules, "allow development,production all app any default\n");
    assert_int_equal(it_proxy_reload(&p), 1);
    assert_true(reaches(&p, "production"));
    assert_true(reaches(&p, "development"));

    /* A broken file: the reload fails, the previous rules stay. */
    it_write_file(p.rules, "allow development all app any default\nallow staging all app any default\n");
    assert_int_equal(it_proxy_reload(&p), 0);
    char *log = it_proxy_log(&p);
    if (!it_contains(log, "reload_failed") || !it_contains(log, "access.rules:2"))
        fail_msg("reload_failed should name the file and line:\n%s", log);
    free(log);
    assert_true(reaches(&p, "production"));
    assert_true(reaches(&p, "development"));

    /* A connection opened before both reloads still works. */
    char *one = it_value(before, "SELECT 1");
    assert_string_equal(one, "1");
    free(one);
    PQfinish(before);

    /* A valid narrowing reload applies to new connections. */
    it_write_file(p.rules, "allow production all app any default\n");
    assert_int_equal(it_proxy_reload(&p), 1);
    assert_false(reaches(&p, "development"));
    assert_true(reaches(&p, "production"));
    assert_int_equal(it_proxy_stop(&p, SIGTERM, 5000), 0);
}

static int connect_refused(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    int e = errno;
    close(fd);
    return rc != 0 && e == ECONNREFUSED;
}

static void setup_table(void)
{
    PGconn *c = it_super("dev", "postgres");
    it_exec(c, "DROP TABLE IF EXISTS public.it_drain");
    it_exec(c, "CREATE TABLE public.it_drain (note text)");
    it_exec(c, "GRANT SELECT, INSERT ON public.it_drain TO app");
    PQfinish(c);
}

static char *direct_count(const char *note)
{
    PGconn *c = it_super("dev", "postgres");
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM public.it_drain WHERE note = '%s'", note);
    char *v = it_value(c, sql);
    PQfinish(c);
    return v;
}

static void test_graceful_shutdown(void **state)
{
    (void)state;
    setup_table();
    struct it_proxy p;
    it_proxy_start(&p, "shutdown_timeout = 5s\n", "allow development all app any default\n");
    PGconn *txn = app_to(&p, "dev"), *idle = app_to(&p, "dev");
    assert_int_equal(PQstatus(txn), CONNECTION_OK);
    assert_int_equal(PQstatus(idle), CONNECTION_OK);
    it_exec(txn, "BEGIN");
    it_exec(txn, "INSERT INTO public.it_drain VALUES ('drained-commit')");

    double t0 = it_now_ms();
    kill(p.pid, SIGTERM);
    assert_true(it_proxy_wait_log(&p, "shutdown", 1, 3000));
    usleep(100 * 1000);
    assert_true(connect_refused(p.port));

    /* The idle session is closed. */
    PGresult *r = PQexec(idle, "SELECT 1");
    assert_int_not_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    PQfinish(idle);

    /* The open transaction may finish... */
    it_exec(txn, "INSERT INTO public.it_drain VALUES ('drained-commit')");
    r = PQexec(txn, "COMMIT");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    assert_string_equal(PQcmdStatus(r), "COMMIT");
    PQclear(r);
    /* ...and then the connection is closed. */
    r = PQexec(txn, "SELECT 1");
    assert_int_not_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    PQfinish(txn);

    int st = it_proxy_wait_exit(&p, 5000);
    double took = it_now_ms() - t0;
    assert_int_equal(st, 0);
    if (took > 4000)
        fail_msg("the drained proxy took %.0f ms to exit (shutdown_timeout 5s, nothing left open)", took);
    char *n = direct_count("drained-commit");
    assert_string_equal(n, "2");
    free(n);
}

static void test_shutdown_timeout_ends_open_transaction(void **state)
{
    (void)state;
    setup_table();
    struct it_proxy p;
    it_proxy_start(&p, "shutdown_timeout = 1s\n", "allow development all app any default\n");
    PGconn *txn = app_to(&p, "dev");
    assert_int_equal(PQstatus(txn), CONNECTION_OK);
    it_exec(txn, "BEGIN");
    it_exec(txn, "INSERT INTO public.it_drain VALUES ('never-committed')");
    double t0 = it_now_ms();
    kill(p.pid, SIGTERM);
    int st = it_proxy_wait_exit(&p, 4000);
    double took = it_now_ms() - t0;
    assert_int_equal(st, 0);
    if (took < 800 || took > 3000)
        fail_msg("shutdown_timeout = 1s, but the proxy exited after %.0f ms", took);
    PGresult *r = PQexec(txn, "COMMIT");
    assert_int_not_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(txn);
    /* The upstream backend goes away and its transaction with it. */
    char *n = NULL;
    for (int i = 0; i < 200; i++) {
        free(n);
        n = direct_count("never-committed");
        PGconn *c = it_super("dev", "postgres");
        char *open = it_value(c, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'");
        PQfinish(c);
        int still = atoi(open);
        free(open);
        if (!still)
            break;
        usleep(10000);
    }
    assert_string_equal(n, "0");
    free(n);
    PGconn *c = it_super("dev", "postgres");
    it_exec(c, "DROP TABLE public.it_drain");
    PQfinish(c);
}

static void test_idle_timeout(void **state)
{
    (void)state;
    struct it_proxy p;
    it_proxy_start(&p, "idle_timeout = 1s\n", "allow development all app any default\n");
    PGconn *idle = app_to(&p, "dev"), *txn = app_to(&p, "dev");
    assert_int_equal(PQstatus(idle), CONNECTION_OK);
    assert_int_equal(PQstatus(txn), CONNECTION_OK);
    it_exec(txn, "BEGIN");
    usleep(1800 * 1000);
    /* The idle one was told why and closed; the one inside a transaction was left alone. */
    PGresult *r = PQexec(idle, "SELECT 1");
    assert_int_not_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    if (!it_contains(PQerrorMessage(idle), "idle timeout"))
        fail_msg("idle session: %s", PQerrorMessage(idle));
    PQclear(r);
    it_exec(txn, "SELECT 1");
    it_exec(txn, "COMMIT");
    PQfinish(idle);
    PQfinish(txn);
    assert_int_equal(it_proxy_stop(&p, SIGTERM, 5000), 0);
}

static void test_max_clients(void **state)
{
    (void)state;
    struct it_proxy p;
    it_proxy_start(&p, "max_clients = 2\n", "allow development all app any default\n");
    PGconn *a = app_to(&p, "dev"), *b = app_to(&p, "dev");
    assert_int_equal(PQstatus(a), CONNECTION_OK);
    assert_int_equal(PQstatus(b), CONNECTION_OK);
    PGconn *c = app_to(&p, "dev");
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    if (!it_contains(PQerrorMessage(c), "too many clients"))
        fail_msg("third client: %s", PQerrorMessage(c));
    PQfinish(c);
    PQfinish(b);
    /* A slot frees when a client leaves. */
    PGconn *d = NULL;
    for (int i = 0; i < 50; i++) {
        d = app_to(&p, "dev");
        if (PQstatus(d) == CONNECTION_OK)
            break;
        PQfinish(d);
        d = NULL;
        usleep(20000);
    }
    assert_non_null(d);
    PQfinish(d);
    PQfinish(a);
    assert_int_equal(it_proxy_stop(&p, SIGTERM, 5000), 0);
}

static void test_sigint_stops_at_once(void **state)
{
    (void)state;
    struct it_proxy p;
    it_proxy_start(&p, "shutdown_timeout = 30s\n", "allow development all app any default\n");
    PGconn *txn = app_to(&p, "dev");
    assert_int_equal(PQstatus(txn), CONNECTION_OK);
    it_exec(txn, "BEGIN");
    double t0 = it_now_ms();
    int st = it_proxy_stop(&p, SIGINT, 3000);
    double took = it_now_ms() - t0;
    assert_int_equal(st, 0);
    if (took > 1000)
        fail_msg("SIGINT took %.0f ms", took);
    PGresult *r = PQexec(txn, "COMMIT");
    assert_int_not_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(txn);
}

static void test_unix_socket_and_local_rule(void **state)
{
    (void)state;
    struct it_proxy p;
    char *sockdir = it_tmpdir("sock");
    char extra[1200];
    snprintf(extra, sizeof extra, "unix_socket_dir = %s\n", sockdir);
    it_proxy_start(&p, extra, "allow development local app any default\n");
    PGconn *c = it_connect("host=%s port=%d dbname=dev user=app password=app-secret connect_timeout=5",
                           sockdir, p.port);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("unix socket: %s", PQerrorMessage(c));
    char *one = it_value(c, "SELECT 1");
    assert_string_equal(one, "1");
    free(one);
    PQfinish(c);
    /* The rule says local: TCP from 127.0.0.1 matches nothing. */
    assert_false(reaches(&p, "development"));
    assert_int_equal(it_proxy_stop(&p, SIGTERM, 5000), 0);
    free(sockdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reload_rules),
        cmocka_unit_test(test_graceful_shutdown),
        cmocka_unit_test(test_shutdown_timeout_ends_open_transaction),
        cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_max_clients),
        cmocka_unit_test(test_sigint_stops_at_once),
        cmocka_unit_test(test_unix_socket_and_local_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
