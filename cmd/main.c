/*
 * main.c - the tlsshim command: dispatches to the subcommand named by its first
 * word (cmd.h); what they share is in util.c.
 *
 *   tlsshim run [-p RULES]... [-f FILE] [--log LEVEL] -- PROGRAM [ARG...]
 *   tlsshim check [-p RULES]... [-f FILE]
 *   tlsshim explain [-p RULES]... [-f FILE] connect|accept HOST:PORT
 *   tlsshim stats [PID] [--prometheus [--output FILE]]
 *   tlsshim system enable|disable|status
 *   tlsshim version | help
 */
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "util.h"

static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
} subcommands[] = {
    {"run", cmd_run},       {"check", cmd_check}, {"explain", cmd_explain},
    {"system", cmd_system}, {"stats", cmd_stats},
};

int main(int argc, char **argv)
{
	const char *sub;

	if (argc < 2)
		return cmd_usage_error(
		    "a command is needed: run, check, explain, stats, system, version or help");
	sub = argv[1];
	argc -= 2;
	argv += 2;
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++) {
		if (strcmp(sub, subcommands[i].name) == 0)
			return subcommands[i].run(argc, argv);
	}
	if (strcmp(sub, "version") == 0 || strcmp(sub, "--version") == 0 ||
	    strcmp(sub, "-V") == 0) {
		if (argc > 0)
			return cmd_usage_error("'version' takes no arguments");
		printf("tlsshim %s\n", TLSSHIM_VERSION);
		return CMD_EXIT_OK;
	}
	if (strcmp(sub, "help") == 0 || strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
		cmd_usage_print(stdout, 1, "\n");
		return CMD_EXIT_OK;
	}
	if (sub[0] == '-')
		return cmd_usage_error("'%s' before the command: options follow it, as in "
				       "'tlsshim check -p RULES'",
				       sub);
	return cmd_usage_error("unknown command '%s'", sub);
}
