/* tools.h — entry points of the pgsov subcommands and what they share.
 * Each cmd_* returns the process exit code. */
#ifndef PGSOV_TOOLS_H
#define PGSOV_TOOLS_H

int cmd_check(int argc, char **argv);
int cmd_passwd(int argc, char **argv);
int cmd_migrate(int argc, char **argv);
int cmd_rollback(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_seed(int argc, char **argv);

#endif
