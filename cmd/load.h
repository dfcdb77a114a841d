/*
 * load.h - the policy as a process would load it (load.c): from -p/-f or the
 * environment, and the system policy under it; errors printed as
 * SOURCE:LINE:COL: message; rules printed back as normalized text.
 */
#ifndef TLSSHIM_CMD_LOAD_H
#define TLSSHIM_CMD_LOAD_H

#include "policy.h"
#include "util.h"

/*
 * Loads the policy SRC names (or the environment's when SRC->given is 0) and
 * finishes it. Returns the table, or NULL after printing every diagnostic to
 * stderr as SOURCE:LINE:COL: message (or a message on allocation failure).
 */
struct policy *cmd_policy_load(const struct cmd_policy_src *src);
/* What the system policy is, as a process would find it. */
enum cmd_system_state {
	CMD_SYSTEM_ABSENT = 0, /* no file: nothing applies */
	CMD_SYSTEM_OK,         /* trusted and without errors */
	CMD_SYSTEM_REFUSED,    /* writable by someone other than root, or not a file */
	CMD_SYSTEM_ERRORS,     /* trusted, but with errors */
};
/*
 * Loads the system policy (CMD_SYSTEM_POLICY) as the library does, with its
 * cert/key/CA files checked too when CHECK_FILES is set. Returns the table
 * when *STATE is CMD_SYSTEM_OK, else NULL; a refusal or each error is printed
 * to stderr (as SOURCE:LINE:COL: message for errors).
 */
struct policy *cmd_system_load(int check_files, enum cmd_system_state *state);
/* Prints P's rules to stdout, one a line, aligned, each with "# SOURCE:LINE:COL". */
void cmd_policy_print(const struct policy *p);
/* The rule's normalized text in a malloc()ed string, or NULL on allocation failure. */
char *cmd_rule_text(const struct policy_rule *r);
/*
 * The rules of policy TEXT, normalized (as `check` prints them, without the
 * source comments) one a line, in a malloc()ed string; NULL if TEXT has an
 * error (printed, as by cmd_policy_load()) or memory ran out. Relative file
 * paths come out absolute (against the working directory), so every process
 * that inherits the text reads the same files wherever it starts.
 */
char *cmd_policy_text_normalized(const char *text);

#endif
