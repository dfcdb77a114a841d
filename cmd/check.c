/*
 * check.c - `tlsshim check`: the policy as a normalized rule table (the system
 * policy first, as a floor), or every error as SOURCE:LINE:COL: message.
 */
#include <stdio.h>
#include <unistd.h>

#include "cmd.h"
#include "load.h"
#include "util.h"

int cmd_check(int argc, char **argv)
{
	enum cmd_system_state sys_state;
	struct policy *sys = NULL, *p;
	struct cmd_args a;
	int rc;

	rc = cmd_args_parse(&a, argc, argv, 0);
	if (rc != 0)
		goto out;
	if (a.n_pos > 0) {
		rc = cmd_usage_error("'check' takes no arguments, only -p and -f (got '%s')",
				     a.pos[0]);
		goto out;
	}
	/*
	 * The system policy, as every process sees it: a problem with it is an error
	 * here. Root also gets its files checked (processes check them on use).
	 */
	sys = cmd_system_load(geteuid() == 0, &sys_state);
	p = cmd_policy_load(&a.src);
	if (!p || sys_state == CMD_SYSTEM_REFUSED || sys_state == CMD_SYSTEM_ERRORS) {
		rc = CMD_EXIT_POLICY;
		policy_free(p);
		goto out;
	}
	if (sys) {
		printf("# the system policy, %s: a floor (the rules after it may tighten it, never "
		       "weaken it)\n",
		       CMD_SYSTEM_POLICY);
		cmd_policy_print(sys);
		if (policy_count(p) > 0)
			puts("# this process's own rules");
	}
	if (!sys || policy_count(p) > 0)
		cmd_policy_print(p);
	policy_free(p);
out:
	policy_free(sys);
	cmd_args_free(&a);
	return rc < 0 ? CMD_EXIT_OK : rc;
}
