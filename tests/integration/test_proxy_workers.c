/* test_proxy_workers.c — workers = 2: the kernel spreads clients over two event loops
 * (SO_REUSEPORT); sessions, the guard and cancel requests work whichever loop takes them. */
#include "harness.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct it_proxy proxy;

static int setup(void **state)
{
    it_proxy_start(&proxy, "workers = 2\n", "allow development all app any default\n");
    return 0;
}

static int teardown(void **state)
{
    it_proxy_stop(&proxy, SIGTERM, 10000);
    return 0;
}

static PGconn *app(void)
{
    PGconn *c = it_proxy_connect(&proxy, "user=app password=app-secret dbname=development");
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("connect: %s", PQerrorMessage(c));
    return c;
}

static void test_many_sessions(void **state)
{
    enum { N = 24 };
    PGconn *c[N];
    for (int i = 0; i < N; i++)
        c[i] = app();
    for (int i = 0; i < N; i++) {
        char *v = it_value(c[i], "SELECT 40 + 2");
        assert_string_equal(v, "42");
        free(v);
        char *msg = it_expect_error(c[i], "CREATE TABLE nope (x int)", "42501", "DDL refused");
        free(msg);
    }
    for (int i = 0; i < N; i++)
        PQfinish(c[i]);
    /* both event loops took clients (24 connections: all on one would be 1 in 2^23) */
    assert_true(it_proxy_log_count(&proxy, "worker=0") > 0);
    assert_true(it_proxy_log_count(&proxy, "worker=1") > 0);
}

/* Cancel requests arrive on new connections, which may land on the other worker. */
static void test_cancel_across_workers(void **state)
{
    for (int round = 0; round < 6; round++) {
        PGconn *c = app();
        assert_int_equal(PQsendQuery(c, "SELECT pg_sleep(30)"), 1);
        usleep(100 * 1000);
        double t0 = it_now_ms();
        PGcancel *cancel = PQgetCancel(c);
        char errbuf[256];
        assert_int_equal(PQcancel(cancel, errbuf, sizeof errbuf), 1);
        PQfreeCancel(cancel);
        PGresult *r = PQgetResult(c);
        assert_string_equal(it_sqlstate(r), "57014");
        PQclear(r);
        while ((r = PQgetResult(c)))
            PQclear(r);
        if (it_now_ms() - t0 > 1000)
            fail_msg("cancel took %.0f ms", it_now_ms() - t0);
        PQfinish(c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_sessions),
        cmocka_unit_test(test_cancel_across_workers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
