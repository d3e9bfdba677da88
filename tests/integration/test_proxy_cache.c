/* test_proxy_cache.c — the guard's verdict cache through the real proxy: statements that differ
 * only in a literal value must not share a verdict when the literal decides the class. Each
 * pair runs the harmless text first (so any cache holds its verdict), then the dangerous one,
 * which must still be refused, then the harmless one again, which must still work. */
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
                   "allow development all app any default\n"
                   "allow development all app_md5 any read,session,transaction\n");
    PGconn *c = it_super("dev", "postgres");
    it_exec(c, "DROP TABLE IF EXISTS public.it_cache");
    it_exec(c, "CREATE TABLE public.it_cache (id int)");
    it_exec(c, "INSERT INTO public.it_cache VALUES (1), (2), (3)");
    it_exec(c, "GRANT SELECT, DELETE ON public.it_cache TO app, app_md5");
    PQfinish(c);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    PGconn *c = it_super("dev", "postgres");
    it_exec(c, "DROP TABLE IF EXISTS public.it_cache");
    PQfinish(c);
    it_proxy_stop(&proxy, SIGTERM, 5000);
    return 0;
}

static const struct {
    const char *user, *password;
    const char *harmless, *dangerous;
    const char *refusal;         /* text in the dangerous one's message */
} pairs[] = {
    { "app", "app-secret", "SELECT set_config('application_name', 'x', false)",
      "SELECT set_config('role', 'postgres', false)", "privileged" },
    { "app", "app-secret", "SELECT set_config('search_path', 'public', false)",
      "SELECT set_config('standard_conforming_strings', 'off', false)", "how SQL is read" },
    { "app", "app-secret", "SELECT set_config('standard_conforming_strings', 'on', false)",
      "SELECT set_config('standard_conforming_strings', 'off', false)", "how SQL is read" },
    { "app", "app-secret", "SET standard_conforming_strings = 'on'",
      "SET standard_conforming_strings = 'off'", "how SQL is read" },
    { "app", "app-secret", "SET client_encoding = 'UTF8'",
      "SET client_encoding = 'SJIS'", "how SQL is read" },
    { "app", "app-secret", "SELECT set_config('application_name', 'y', true)",
      "SELECT set_config('session_authorization', 'postgres', true)", "privileged" },
    { "app_md5", "md5-secret", "EXPLAIN (ANALYZE 'off') DELETE FROM it_cache",
      "EXPLAIN (ANALYZE 'on') DELETE FROM it_cache", "write refused" },
    { "app_md5", "md5-secret", "EXPLAIN (ANALYZE 0) DELETE FROM it_cache",
      "EXPLAIN (ANALYZE 1) DELETE FROM it_cache", "write refused" },
    { "app_md5", "md5-secret", "EXPLAIN (ANALYZE false) DELETE FROM it_cache",
      "EXPLAIN (ANALYZE true) DELETE FROM it_cache", "write refused" },
};

static void run_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("harmless \"%s\" failed: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
}

static void test_literal_variants_do_not_share_verdicts(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        PGconn *c = it_proxy_connect(&proxy, "dbname=dev user=%s password=%s", pairs[i].user, pairs[i].password);
        if (PQstatus(c) != CONNECTION_OK)
            fail_msg("%s: %s", pairs[i].user, PQerrorMessage(c));
        for (int k = 0; k < 3; k++)
            run_ok(c, pairs[i].harmless);
        char *msg = it_expect_error(c, pairs[i].dangerous, "42501", pairs[i].refusal);
        free(msg);
        run_ok(c, pairs[i].harmless);
        /* Through the extended protocol too. */
        PGresult *r = PQexecParams(c, pairs[i].dangerous, 0, NULL, NULL, NULL, NULL, 0);
        if (strcmp(it_sqlstate(r), "42501") != 0)
            fail_msg("extended \"%s\": %s", pairs[i].dangerous, PQresultErrorMessage(r));
        PQclear(r);
        PQfinish(c);
    }
    /* Nothing was deleted by an EXPLAIN ANALYZE that slipped through. */
    PGconn *s = it_super("dev", "postgres");
    char *n = it_value(s, "SELECT count(*) FROM public.it_cache");
    assert_string_equal(n, "3");
    free(n);
    PQfinish(s);
}

/* Across sessions of different rules: a verdict cached for one rule's session is not a grant
 * for another's. */
static void test_cache_across_rules(void **state)
{
    (void)state;
    PGconn *w = it_proxy_connect(&proxy, "dbname=dev user=app password=app-secret");
    PGconn *ro = it_proxy_connect(&proxy, "dbname=dev user=app_md5 password=md5-secret");
    assert_int_equal(PQstatus(w), CONNECTION_OK);
    assert_int_equal(PQstatus(ro), CONNECTION_OK);
    static const char del[] = "DELETE FROM it_cache WHERE id = 42";
    run_ok(w, del);
    char *msg = it_expect_error(ro, del, "42501", "write refused");
    free(msg);
    msg = it_expect_error(ro, "DELETE FROM it_cache WHERE id = 1", "42501", "write refused");
    free(msg);
    PQfinish(w);
    PQfinish(ro);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literal_variants_do_not_share_verdicts),
        cmocka_unit_test(test_cache_across_rules),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
