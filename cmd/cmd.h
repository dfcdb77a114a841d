/*
 * cmd.h - the subcommands of the tlsshim command, which main.c dispatches to.
 * Each lives in the file of its name (check.c, explain.c, run.c, stats.c,
 * system.c) and returns the exit status (util.h's CMD_EXIT_*).
 */
#ifndef TLSSHIM_CMD_H
#define TLSSHIM_CMD_H

int cmd_check(int argc, char **argv);
int cmd_explain(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_system(int argc, char **argv);
int cmd_stats(int argc, char **argv);

#endif
