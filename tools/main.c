/* main.c — `pgsov`, the command line: one subcommand per file in tools/. */
#include <stdio.h>
#include <string.h>

#include "tools.h"

struct command {
    const char *name;
    int (*run)(int argc, char **argv);  /* argv[0] is the subcommand name */
    const char *summary;
};

static const struct command commands[] = {
    /* One line per subcommand, in the order --help shows them. */
    { "check", cmd_check, "validate proxy.ini and its rules files (exit 0/1)" },
    { "passwd", cmd_passwd, "print a users-file line with a SCRAM verifier for USER" },
    { "migrate", cmd_migrate, "apply pending migrations (plan, approve, baseline)" },
    { "rollback", cmd_rollback, "revert applied migrations with their down files" },
    { "status", cmd_status, "applied, pending, drifted and missing migrations" },
    { "audit", cmd_audit, "check a live database against its compliance manifest (exit 0/1/2)" },
    { "seed", cmd_seed, "fill a test environment with deterministic scenario data" },
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: pgsov <command> [options]\n"
            "\n"
            "Governed migrations, compliance audits and test data for the environments that\n"
            "pgsov-proxy guards. Every command reads the environments from proxy.ini\n"
            "(-c FILE, $PGSOV_CONFIG, else ./proxy.ini).\n"
            "\n"
            "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'pgsov <command> --help' describes each command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "pgsov: unknown command \"%s\"\n\n", argv[1]);
    usage(stderr);
    return 2;
}
