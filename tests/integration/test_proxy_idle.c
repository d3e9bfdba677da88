/* test_proxy_idle.c — idle_timeout: closes clients idle outside a transaction, never busy ones
 * and never one inside a transaction. */
#include "harness.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct it_proxy proxy;

static int setup(void **state)
{
    it_proxy_start(&proxy, "idle_timeout = 1s\n", "allow all all all any all\n");
    return 0;
}

static int teardown(void **state)
{
    it_proxy_stop(&proxy, SIGINT, 5000);
    return 0;
}

static PGconn *app(void)
{
    PGconn *c = it_proxy_connect(&proxy, "user=app password=app-secret dbname=development");
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("connect: %s", PQerrorMessage(c));
    return c;
}

/* Busy for three times the timeout: every gap is shorter than it, so it stays open. */
static void test_busy_client_stays(void **state)
{
    PGconn *c = app();
    for (int i = 0; i < 10; i++) {
        it_exec(c, "SELECT 1");
        usleep(300 * 1000);
    }
    it_exec(c, "SELECT 1");
    PQfinish(c);
}

static void test_idle_client_closed(void **state)
{
    PGconn *c = app();
    it_exec(c, "SELECT 1");
    usleep(1600 * 1000);
    PGresult *r = PQexec(c, "SELECT 1");
    assert_int_not_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_true(it_contains(PQerrorMessage(c), "idle timeout"));
    PQclear(r);
    PQfinish(c);
}

static void test_idle_in_transaction_kept(void **state)
{
    PGconn *c = app();
    it_exec(c, "BEGIN");
    it_exec(c, "SELECT 1");
    usleep(1600 * 1000);
    it_exec(c, "SELECT 2");
    it_exec(c, "COMMIT");
    PQfinish(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_busy_client_stays),
        cmocka_unit_test(test_idle_client_closed),
        cmocka_unit_test(test_idle_in_transaction_kept),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
