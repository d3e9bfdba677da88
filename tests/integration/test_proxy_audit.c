/* test_proxy_audit.c — what the proxy's audit log keeps of statements: refused and allowed DDL
 * are logged with their normalized text, and no literal value survives normalization, also
 * inside utility statements (DEFAULT, COMMENT, CREATE TABLE AS). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static struct it_proxy proxy;

static int setup(void **state)
{
    (void)state;
    it_proxy_start(&proxy, NULL,
                   "allow development all migrator any default,ddl\n"
                   "allow development all app any default\n");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    it_proxy_stop(&proxy, SIGTERM, 5000);
    return 0;
}

static PGconn *as(const char *user, const char *password)
{
    PGconn *c = it_proxy_connect(&proxy, "dbname=dev user=%s password=%s", user, password);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("%s: %s", user, PQerrorMessage(c));
    return c;
}

static void test_audit_has_no_literals_from_ddl(void **state)
{
    (void)state;
    PGconn *app = as("app", "app-secret");
    PQclear(PQexec(app, "ALTER TABLE pg_temp.nothing ADD COLUMN s text DEFAULT 'hunter2-default'"));
    PQclear(PQexec(app, "COMMENT ON TABLE pg_class IS 'hunter2-comment'"));
    PQclear(PQexec(app, "CREATE TABLE t_secret AS SELECT 'hunter2-ctas' AS s"));
    PQfinish(app);
    PGconn *mig = as("migrator", "migrator-secret");
    it_exec(mig, "CREATE TEMP TABLE t_secret AS SELECT 'hunter2-allowed' AS s");
    PQfinish(mig);
    char *audit = NULL;
    it_sh(&audit, "cat '%s'", proxy.audit);
    assert_true(it_contains(audit, "refused"));
    assert_true(it_contains(audit, "allowed"));
    /* The shape of each statement is still there for the reader. */
    assert_true(it_contains(audit, "ALTER TABLE pg_temp.nothing ADD COLUMN s text DEFAULT"));
    assert_true(it_contains(audit, "COMMENT ON TABLE pg_class IS"));
    assert_true(it_contains(audit, "CREATE TEMP TABLE t_secret AS SELECT"));
    if (it_contains(audit, "hunter2"))
        fail_msg("literal values in the audit log:\n%s", audit);
    free(audit);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_audit_has_no_literals_from_ddl),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
