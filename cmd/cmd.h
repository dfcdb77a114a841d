/*
 * cmd.h - internals of the tlsshim command, shared by its subcommands.
 *
 * The command links the policy library only; it never loads the hooks.
 */
#ifndef TLSSHIM_CMD_H
#define TLSSHIM_CMD_H

#include <stddef.h>

#include "policy.h"

/* Exit statuses (sysexits.h values where one fits; the contract fixes 2 and 78). */
#define CMD_EXIT_OK       0
#define CMD_EXIT_FAILED   1   /* system: not root, untrusted library, preload file I/O */
#define CMD_EXIT_POLICY   2   /* check/explain: the policy has errors */
#define CMD_EXIT_USAGE    64  /* EX_USAGE: bad command line or endpoint */
#define CMD_EXIT_SOFTWARE 70  /* EX_SOFTWARE: the preload library is missing */
#define CMD_EXIT_CONFIG   78  /* EX_CONFIG: run: the policy has errors */
#define CMD_EXIT_NOEXEC   126 /* run: PROGRAM found but would not be wrapped / runnable */
#define CMD_EXIT_NOTFOUND 127 /* run: PROGRAM not found */

#ifndef TLSSHIM_SYSCONFDIR
#define TLSSHIM_SYSCONFDIR "/etc"
#endif
/* The system policy (the library reads the same path, fixed at build time). */
#define CMD_SYSTEM_POLICY TLSSHIM_SYSCONFDIR "/tlsshim/policy"
/* The dynamic loader's own list of libraries preloaded into every program. */
#define CMD_PRELOAD_FILE "/etc/ld.so.preload"

/* The SOURCE of -p text in diagnostics: what `run` puts into the environment. */
#define CMD_POLICY_SOURCE "TLSSHIM_POLICY"

/* Where the policy comes from: -p/-f, or the environment when neither is given. */
struct cmd_policy_src {
	char *text;       /* -p values joined with '\n' (owned), or NULL */
	const char *file; /* -f FILE, or NULL */
	int given;        /* any -p or -f was given: they define the whole policy */
};

/* The parsed command line of check/explain/run. */
struct cmd_args {
	struct cmd_policy_src src;
	const char *log; /* run: --log LEVEL, or NULL */
	char **pos;      /* positional words (for run: PROGRAM [ARG...]) */
	int n_pos;
};

/* main.c */
extern const char *cmd_name; /* argv[0]'s base name, for messages */
/* Prints "tlsshim: MSG" and the short usage to stderr; returns CMD_EXIT_USAGE. */
int cmd_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "tlsshim: MSG" to stderr. */
void cmd_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Parses ARGV (after the subcommand word) into A. With RUN set, the first
 * non-option word or the word after "--" starts PROGRAM and ends parsing.
 * Returns 0, or CMD_EXIT_USAGE after printing why. Free with cmd_args_free().
 */
int cmd_args_parse(struct cmd_args *a, int argc, char **argv, int run);
void cmd_args_free(struct cmd_args *a);

/* load.c */
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

/* exe.c */
/*
 * Finds PROGRAM like execvp(3) does, searching PATH_ENV (NULL: the default
 * path) when PROGRAM has no '/'. Returns a malloc()ed path, or NULL with
 * errno ENOENT (not found) or EACCES (found, but none executable).
 */
char *exe_find(const char *program, const char *path_env);

/*
 * Decides whether the dynamic loader would honour LD_PRELOAD for PATH: not
 * statically linked, not setuid/setgid, no file capabilities; for a "#!"
 * script, the same for its interpreter. Returns 0 if it would, else -1 with a
 * reason in WHY ("statically linked", ...); -3 if the loader would, but the
 * program makes its socket calls without libc (Go; WHY says so); -2 if PATH
 * cannot be read or is not a program (WHY says why; exec would fail anyway).
 */
int exe_preloadable(const char *path, char *why, size_t whylen);

/* run.c */
/*
 * The preload library's absolute path (next to this executable, in LIBDIR,
 * or in ../lib), malloc()ed; NULL after printing why it is missing.
 */
char *cmd_find_library(void);

/* The subcommands; each returns the exit status. */
int cmd_check(int argc, char **argv);
int cmd_explain(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_system(int argc, char **argv);
int cmd_stats(int argc, char **argv);

#endif
