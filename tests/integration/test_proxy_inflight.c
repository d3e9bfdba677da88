/* test_proxy_inflight.c — what is still in flight when the guard decides, through the real
 * proxy: more refused statements in flight than the proxy keeps texts for at once (each error
 * still arrives in order with its own text, never the substitution's marker), and a text whose
 * meaning depends on standard_conforming_strings pipelined behind a statement that changes it
 * where the guard cannot see (a DO block): refused, and the DROP it hides never runs. */
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
                   "allow development all app_md5 any default,function\n");
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

static void test_refusals_beyond_pending_bound(void **state)
{
    (void)state;
    PGconn *c = as("app", "app-secret");
    enum { BATCHES = 1100 };   /* the proxy keeps at most 1024 refusal texts, then pauses */
    assert_int_equal(PQenterPipelineMode(c), 1);
    for (int i = 0; i < BATCHES; i++) {
        const char *bad = i % 2 ? "GRANT ALL ON pg_class TO PUBLIC" : "DROP TABLE pg_class";
        assert_int_equal(PQsendQueryParams(c, bad, 0, NULL, NULL, NULL, NULL, 0), 1);
        assert_int_equal(PQpipelineSync(c), 1);
    }
    for (int i = 0; i < BATCHES; i++) {
        PGresult *r = PQgetResult(c);
        assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
        const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        if (strcmp(it_sqlstate(r), "42501") != 0)
            fail_msg("batch %d: SQLSTATE %s, want 42501: %s", i, it_sqlstate(r), msg ? msg : "(null)");
        const char *want = i % 2 ? "role or privilege change refused" : "DDL refused";
        if (!msg || !it_contains(msg, want))
            fail_msg("batch %d: expected \"%s\", got \"%s\"", i, want, msg ? msg : "(null)");
        PQclear(r);
        assert_null(PQgetResult(c));
        r = PQgetResult(c);
        assert_int_equal(PQresultStatus(r), PGRES_PIPELINE_SYNC);
        PQclear(r);
    }
    assert_int_equal(PQexitPipelineMode(c), 1);
    PQfinish(c);
}

static void put_query(uint8_t *buf, size_t *len, const char *sql)
{
    size_t n = strlen(sql) + 1;
    uint32_t l = (uint32_t)(4 + n);
    buf[*len] = 'Q';
    buf[*len + 1] = (uint8_t)(l >> 24);
    buf[*len + 2] = (uint8_t)(l >> 16);
    buf[*len + 3] = (uint8_t)(l >> 8);
    buf[*len + 4] = (uint8_t)l;
    memcpy(buf + *len + 5, sql, n);
    *len += 5 + n;
}

/* The ParameterStatus backstop comes too late for a Query already classified: a function that
 * turns standard_conforming_strings off, and a second Query sent before its answer, which the
 * guard read as one string literal and the server reads as a DROP. */
static void test_pipelined_query_after_lexing_change(void **state)
{
    (void)state;
    PGconn *s = it_super("dev", "postgres");
    it_exec(s, "DROP TABLE IF EXISTS public.it_victim");
    it_exec(s, "CREATE TABLE public.it_victim (id int)");
    it_exec(s, "ALTER TABLE public.it_victim OWNER TO app_md5");
    PQfinish(s);
    PGconn *c = as("app_md5", "md5-secret");
    /* Rule 3 below grants app_md5 default,function: no ddl. Check the direct form is refused. */
    char *msg = it_expect_error(c, "DROP TABLE public.it_victim", "42501", "DDL refused");
    free(msg);
    int fd = PQsocket(c);
    uint8_t buf[1024];
    size_t len = 0;
    put_query(buf, &len, "DO $$ BEGIN EXECUTE 'SET standard_conforming_strings = off'; END $$");
    put_query(buf, &len, "SELECT '\\' || ' ; DROP TABLE public.it_victim; -- '");
    assert_int_equal(it_raw_send(fd, buf, len), 0);
    int ready = 0;
    char type;
    uint8_t body[2048];
    uint32_t blen;
    while (ready < 2 && it_raw_read_msg(fd, &type, body, sizeof body - 1, &blen, 3000) == 1)
        if (type == 'Z')
            ready++;
    PQfinish(c);
    s = it_super("dev", "postgres");
    char *n = it_value(s, "SELECT count(*) FROM pg_class WHERE relname = 'it_victim'");
    it_exec(s, "DROP TABLE IF EXISTS public.it_victim");
    PQfinish(s);
    if (strcmp(n, "1") != 0)
        fail_msg("the guard was bypassed: a DROP TABLE ran for a role without ddl");
    free(n);
}

/* The same texts one at a time: the DO runs, the server reports the new setting, and from then
 * on every statement is refused; pipelined texts without a backslash are not held up. */
static void test_lexing_change_then_sequential(void **state)
{
    (void)state;
    PGconn *c = as("app_md5", "md5-secret");
    PGresult *r = PQexec(c, "SELECT 1; SELECT 'no backslash; pipelined fine'");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    it_exec(c, "DO $$ BEGIN EXECUTE 'SET standard_conforming_strings = off'; END $$");
    char *msg = it_expect_error(c, "SELECT 1", "42501", "changes how SQL is read");
    free(msg);
    msg = it_expect_error(c, "SELECT '\\' || ' ; DROP TABLE pg_class; -- '", "42501", "pgsov:");
    free(msg);
    PQfinish(c);

    /* An extended batch: Parse of a backslash text after the DO in the same batch. */
    c = as("app_md5", "md5-secret");
    assert_int_equal(PQenterPipelineMode(c), 1);
    assert_int_equal(PQsendQueryParams(c, "DO $$ BEGIN EXECUTE 'SET standard_conforming_strings = off'; END $$",
                                       0, NULL, NULL, NULL, NULL, 0), 1);
    assert_int_equal(PQsendQueryParams(c, "SELECT '\\' || ' , 1 -- '", 0, NULL, NULL, NULL, NULL, 0), 1);
    assert_int_equal(PQpipelineSync(c), 1);
    r = PQgetResult(c);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    assert_null(PQgetResult(c));
    r = PQgetResult(c);
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
    assert_string_equal(it_sqlstate(r), "42501");
    assert_true(it_contains(PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY), "backslash"));
    PQclear(r);
    assert_null(PQgetResult(c));
    r = PQgetResult(c);
    assert_int_equal(PQresultStatus(r), PGRES_PIPELINE_SYNC);
    PQclear(r);
    assert_int_equal(PQexitPipelineMode(c), 1);
    PQfinish(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusals_beyond_pending_bound),
        cmocka_unit_test(test_pipelined_query_after_lexing_change),
        cmocka_unit_test(test_lexing_change_then_sequential),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
