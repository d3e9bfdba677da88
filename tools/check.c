/* check.c — `pgsov check`: validate proxy.ini (keys, hostname guard) and its rules files. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "pgsov/config.h"
#include "tools.h"

static void check_usage(FILE *out)
{
    fprintf(out,
            "usage: pgsov check [-c proxy.ini]\n"
            "\n"
            "Loads proxy.ini exactly as pgsov-proxy does: every key, ${VAR} expansion and the\n"
            "hostname guard (each environment's upstream must match its own host_patterns and no\n"
            "other environment's). Exit 0 when valid, 1 with file:line and the reason otherwise.\n"
            "The proxy's upstream secrets (upstream_password.*) are not expanded here, so CI\n"
            "can run this without them; pgsov-proxy --check -c proxy.ini expands them and also\n"
            "loads the rules, users and TLS files.\n");
}

int cmd_check(int argc, char **argv)
{
    const char *path = getenv("PGSOV_CONFIG");
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': path = optarg; break;
        case 'h': check_usage(stdout); return 0;
        default: check_usage(stderr); return 2;
        }
    }
    if (!path)
        path = "proxy.ini";
    struct config *cfg;
    struct pgsov_err err;
    if (config_load_ex(path, CONFIG_NO_SECRETS, &cfg, &err) != 0) {
        fprintf(stderr, "pgsov check: %s\n", err.msg);
        return 1;
    }
    printf("%s: ok (%zu environments, hostname guard passed)\n", path, cfg->n_envs);
    config_free(cfg);
    return 0;
}
