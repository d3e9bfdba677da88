/* main.c — pgsov-proxy: flags, then server_run(). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgsov/server.h"

#define PGSOV_VERSION "0.1.0"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: pgsov-proxy [-c proxy.ini] [--check]\n"
            "\n"
            "A PostgreSQL wire-protocol guard. Clients declare an environment (the database name,\n"
            "or options=-c pgsov.env=NAME); rules decide which sources may reach which environment\n"
            "and which classes of SQL they may run; the proxy relays to that environment's upstream\n"
            "over verified TLS.\n"
            "\n"
            "  -c, --config FILE   configuration (default: $PGSOV_CONFIG, else ./proxy.ini)\n"
            "      --check         load the config, rules, TLS files and upstream addresses; exit 0\n"
            "                      when all are valid, 1 with file:line and the reason otherwise\n"
            "  -h, --help          this text\n"
            "  -V, --version       print the version\n"
            "\n"
            "signals: SIGHUP reloads config and rules (an invalid file keeps the old ones),\n"
            "         SIGTERM drains (no new clients; open transactions finish, bounded by\n"
            "         shutdown_timeout), SIGINT stops at once.\n");
}

int main(int argc, char **argv)
{
    const char *path = getenv("PGSOV_CONFIG");
    bool check = false;
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "check", no_argument, NULL, 'k' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': path = optarg; break;
        case 'k': check = true; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("pgsov-proxy %s\n", PGSOV_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    if (!path)
        path = "proxy.ini";
    if (check) {
        struct snapshot *s;
        struct pgsov_err err;
        if (snapshot_load(path, &s, &err) != 0) {
            fprintf(stderr, "pgsov-proxy: %s\n", err.msg);
            return 1;
        }
        printf("%s: ok (%zu environments, %zu rules)\n", path, s->cfg->n_envs, rules_count(s->rules));
        snapshot_unref(s);
        return 0;
    }
    return server_run(path);
}
