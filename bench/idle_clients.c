/* idle_clients.c — bench helper: opens N libpq connections, holds them idle, closes them.
 *
 *   idle_clients N CONNINFO
 *
 * Connects N clients with non-blocking libpq (at most WINDOW handshakes in flight, so 1000
 * SCRAM exchanges take seconds, not minutes), prints "ready N" on stdout once every client has
 * received ReadyForQuery, then holds all of them open without sending anything until SIGTERM
 * or SIGINT, and closes them (Terminate) before exiting 0. Any failed connection ends the run
 * with exit 1 and libpq's message (which never contains the password).
 *
 * It deliberately sends no query: an idle client in PgBouncer's session mode then holds no
 * server connection, while pgsov-proxy opens its upstream during startup — the two costs the
 * idle-memory benchmark (bench/idle_memory.sh) compares. Not a load generator. */
#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW 32
#define MAX_CLIENTS 100000
#define POLL_TIMEOUT_MS 15000

struct handshake {
    int index;                       /* into conns[]                            */
    PostgresPollingStatusType want;  /* what PQconnectPoll last asked to wait on */
};

static void finish_all(PGconn **conns, int n)
{
    for (int i = 0; i < n; i++)
        if (conns[i])
            PQfinish(conns[i]);
}

/* Starts connection i; 0 on success, -1 with the reason on stderr. */
static int connect_start(PGconn **conns, int i, const char *conninfo)
{
    conns[i] = PQconnectStart(conninfo);
    if (!conns[i]) {
        fprintf(stderr, "idle_clients: out of memory starting connection %d\n", i + 1);
        return -1;
    }
    if (PQstatus(conns[i]) == CONNECTION_BAD) {
        fprintf(stderr, "idle_clients: connection %d: %s", i + 1, PQerrorMessage(conns[i]));
        return -1;
    }
    return 0;
}

/* Runs every handshake to completion; 0 when all N are established. */
static int connect_all(PGconn **conns, int n, const char *conninfo)
{
    struct handshake active[WINDOW];
    struct pollfd pfds[WINDOW];
    int n_active = 0, started = 0, done = 0;

    while (done < n) {
        while (n_active < WINDOW && started < n) {
            if (connect_start(conns, started, conninfo) != 0)
                return -1;
            active[n_active++] = (struct handshake){ started, PGRES_POLLING_WRITING };
            started++;
        }
        for (int k = 0; k < n_active; k++) {
            pfds[k].fd = PQsocket(conns[active[k].index]);
            pfds[k].events = active[k].want == PGRES_POLLING_READING ? POLLIN : POLLOUT;
            pfds[k].revents = 0;
        }
        int rc = poll(pfds, (nfds_t)n_active, POLL_TIMEOUT_MS);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0) {
            fprintf(stderr, "idle_clients: poll: %s\n", strerror(errno));
            return -1;
        }
        if (rc == 0) {
            fprintf(stderr, "idle_clients: %d handshakes made no progress in %d ms (%d of %d done)\n",
                    n_active, POLL_TIMEOUT_MS, done, n);
            return -1;
        }
        /* Walk backwards so removing entry k (swap with the last) keeps pfds[] aligned. */
        for (int k = n_active - 1; k >= 0; k--) {
            if (!pfds[k].revents)
                continue;
            PGconn *c = conns[active[k].index];
            PostgresPollingStatusType st = PQconnectPoll(c);
            if (st == PGRES_POLLING_FAILED) {
                fprintf(stderr, "idle_clients: connection %d: %s", active[k].index + 1, PQerrorMessage(c));
                return -1;
            }
            if (st == PGRES_POLLING_OK) {
                done++;
                active[k] = active[--n_active];
                pfds[k] = pfds[n_active];
                continue;
            }
            active[k].want = st;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: idle_clients N CONNINFO\n");
        return 2;
    }
    char *end;
    long n = strtol(argv[1], &end, 10);
    if (*end || n < 0 || n > MAX_CLIENTS) {
        fprintf(stderr, "idle_clients: N must be a number from 0 to %d\n", MAX_CLIENTS);
        return 2;
    }

    /* Block the stop signals before connecting so one that arrives early is not lost. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigprocmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    PGconn **conns = calloc(n ? (size_t)n : 1, sizeof *conns);
    if (!conns) {
        fprintf(stderr, "idle_clients: out of memory for %ld connections\n", n);
        return 1;
    }
    if (connect_all(conns, (int)n, argv[2]) != 0) {
        finish_all(conns, (int)n);
        free(conns);
        return 1;
    }
    printf("ready %ld\n", n);
    fflush(stdout);

    int sig;
    sigwait(&stop, &sig);
    finish_all(conns, (int)n);
    free(conns);
    return 0;
}
