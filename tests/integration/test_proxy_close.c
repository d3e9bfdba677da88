/* test_proxy_close.c — a client that closes right after its last bytes, compared with a direct
 * connection: PostgreSQL reads every byte the kernel accepted (a COPY ended with CopyDone and
 * Terminate is committed), so the proxy must deliver what it still holds for the upstream
 * before closing it — also when megabytes are in flight because the server was not reading. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

static struct it_proxy proxy;

static int setup(void **state)
{
    (void)state;
    it_proxy_start(&proxy, NULL, "allow development all app any default\n");
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

/* A client that ends a COPY and closes without waiting (PQputCopyEnd, PQfinish): directly,
 * PostgreSQL reads every byte the kernel accepted and commits; through the proxy the bytes it
 * still holds for the upstream must not be dropped when the client goes. */
static long long fire_and_forget_copy(PGconn *c, const char *table)
{
    char sql[128];
    snprintf(sql, sizeof sql, "COPY %s (id, payload) FROM STDIN", table);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COPY_IN)
        fail_msg("COPY: %s", PQresultErrorMessage(r));
    PQclear(r);
    char line[128];
    long long rows = 0;
    for (size_t sent = 0; sent < 24u * 1024 * 1024;) {
        int n = snprintf(line, sizeof line, "%lld\t%090d\n", ++rows, 1);
        assert_int_equal(PQputCopyData(c, line, n), 1);
        sent += (size_t)n;
    }
    assert_int_equal(PQputCopyEnd(c, NULL), 1);
    PQfinish(c);
    return rows;
}

static long long count_when_settled(const char *table)
{
    PGconn *s = it_super("dev", "postgres");
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
    long long n = -1;
    for (int i = 0; i < 100; i++) {   /* the server may still be loading */
        char *v = it_value(s, sql);
        n = atoll(v);
        free(v);
        char *busy = it_value(s, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY %' AND pid <> pg_backend_pid()");
        int copying = atoi(busy);
        free(busy);
        if (!copying)
            break;
        usleep(50000);
    }
    PQfinish(s);
    return n;
}

static void test_close_right_after_copy_end(void **state)
{
    (void)state;
    PGconn *s = it_super("dev", "postgres");
    it_exec(s, "DROP TABLE IF EXISTS public.it_ff_direct, public.it_ff_proxy");
    it_exec(s, "CREATE TABLE public.it_ff_direct (id bigint, payload text)");
    it_exec(s, "CREATE TABLE public.it_ff_proxy (id bigint, payload text)");
    it_exec(s, "GRANT INSERT, SELECT ON public.it_ff_direct, public.it_ff_proxy TO app");
    PQfinish(s);
    PGconn *d = it_connect("host=localhost hostaddr=127.0.0.1 port=%d dbname=postgres user=app password=app-secret "
                           "sslmode=verify-full sslrootcert=%s/ca.crt", it_cluster_port("dev"), it_env()->pki);
    assert_int_equal(PQstatus(d), CONNECTION_OK);
    long long sent_direct = fire_and_forget_copy(d, "public.it_ff_direct");
    PGconn *p = as("app", "app-secret");
    long long sent_proxy = fire_and_forget_copy(p, "public.it_ff_proxy");
    long long got_direct = count_when_settled("public.it_ff_direct");
    long long got_proxy = count_when_settled("public.it_ff_proxy");
    s = it_super("dev", "postgres");
    it_exec(s, "DROP TABLE IF EXISTS public.it_ff_direct, public.it_ff_proxy");
    PQfinish(s);
    print_message("   direct: sent %lld stored %lld; proxy: sent %lld stored %lld\n", sent_direct, got_direct,
                  sent_proxy, got_proxy);
    assert_true(got_direct == sent_direct);   /* what PostgreSQL does */
    if (got_proxy != sent_proxy)
        fail_msg("through the proxy the COPY was lost: sent %lld rows, stored %lld", sent_proxy, got_proxy);
}

/* Like the above, but the server was not reading while the client sent (COPY behind a lock),
 * so megabytes are still between client and server when the client closes. */
static long long stalled_copy_then_close(PGconn *c, const char *table)
{
    PGconn *holder = it_super("dev", "postgres");
    it_exec(holder, "SET idle_in_transaction_session_timeout = '30s'");
    it_exec(holder, "BEGIN");
    char sql[160];
    snprintf(sql, sizeof sql, "LOCK TABLE %s IN ACCESS EXCLUSIVE MODE", table);
    it_exec(holder, sql);
    snprintf(sql, sizeof sql, "COPY %s (id, payload) FROM STDIN", table);
    assert_int_equal(PQsendQuery(c, sql), 1);
    char chunk[65536];
    size_t used = 0;
    int rows = 0;
    while (used + 128 < sizeof chunk)
        used += (size_t)snprintf(chunk + used, sizeof chunk - used, "%d\t%090d\n", ++rows, 3);
    uint8_t *msg = malloc(5 + used);
    uint32_t l = (uint32_t)(4 + used);
    msg[0] = 'd';
    msg[1] = (uint8_t)(l >> 24); msg[2] = (uint8_t)(l >> 16); msg[3] = (uint8_t)(l >> 8); msg[4] = (uint8_t)l;
    memcpy(msg + 5, chunk, used);
    int fd = PQsocket(c);
    size_t msgs = 0, off = 0;
    double idle_since = it_now_ms();
    while (it_now_ms() - idle_since < 500) {
        ssize_t n = send(fd, msg + off, 5 + used - off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n <= 0) {
            struct pollfd pfd = { .fd = fd, .events = POLLOUT };
            poll(&pfd, 1, 50);
            continue;
        }
        off += (size_t)n;
        if (off == 5 + used) {
            off = 0;
            msgs++;
        }
        idle_since = it_now_ms();
    }
    it_exec(holder, "COMMIT");
    PQfinish(holder);
    while (off) {   /* the server reads again: finish the message we were in */
        struct pollfd pfd = { .fd = fd, .events = POLLOUT };
        poll(&pfd, 1, 1000);
        ssize_t n = send(fd, msg + off, 5 + used - off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0)
            off += (size_t)n;
        if (off == 5 + used) {
            off = 0;
            msgs++;
        }
    }
    free(msg);
    /* CopyDone and Terminate, then close: the client is done. */
    static const uint8_t tail[10] = { 'c', 0, 0, 0, 4, 'X', 0, 0, 0, 4 };
    for (size_t t = 0; t < sizeof tail;) {
        struct pollfd pfd = { .fd = fd, .events = POLLOUT };
        poll(&pfd, 1, 1000);
        ssize_t n = send(fd, tail + t, sizeof tail - t, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0)
            t += (size_t)n;
    }
    shutdown(fd, SHUT_WR);   /* a FIN after the last byte, as close() would send */
    usleep(200 * 1000);
    PQfinish(c);
    return (long long)msgs * rows;
}

static void test_close_after_stalled_copy(void **state)
{
    (void)state;
    PGconn *s = it_super("dev", "postgres");
    it_exec(s, "DROP TABLE IF EXISTS public.it_st_direct, public.it_st_proxy");
    it_exec(s, "CREATE TABLE public.it_st_direct (id bigint, payload text)");
    it_exec(s, "CREATE TABLE public.it_st_proxy (id bigint, payload text)");
    it_exec(s, "GRANT INSERT, SELECT ON public.it_st_direct, public.it_st_proxy TO app");
    PQfinish(s);
    PGconn *d = it_connect("host=localhost hostaddr=127.0.0.1 port=%d dbname=postgres user=app password=app-secret "
                           "sslmode=disable", it_cluster_port("dev"));
    assert_int_equal(PQstatus(d), CONNECTION_OK);
    long long sent_direct = stalled_copy_then_close(d, "public.it_st_direct");
    PGconn *p = as("app", "app-secret");
    long long sent_proxy = stalled_copy_then_close(p, "public.it_st_proxy");
    long long got_direct = count_when_settled("public.it_st_direct");
    long long got_proxy = count_when_settled("public.it_st_proxy");
    s = it_super("dev", "postgres");
    it_exec(s, "DROP TABLE IF EXISTS public.it_st_direct, public.it_st_proxy");
    PQfinish(s);
    print_message("   stalled: direct sent %lld stored %lld; proxy sent %lld stored %lld\n", sent_direct,
                  got_direct, sent_proxy, got_proxy);
    assert_true(got_direct == sent_direct);
    if (got_proxy != sent_proxy)
        fail_msg("through the proxy the COPY was lost: sent %lld rows, stored %lld", sent_proxy, got_proxy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_close_right_after_copy_end),
        cmocka_unit_test(test_close_after_stalled_copy),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
