/*
 * util.h - what every part of the tlsshim command shares: exit statuses, the
 * fixed paths, messages to stderr, the command line of check/explain/run, and
 * where the preload library is. util.c defines it; it calls no subcommand.
 *
 * The command links the policy library only; it never loads the hooks.
 */
#ifndef TLSSHIM_CMD_UTIL_H
#define TLSSHIM_CMD_UTIL_H

#include <stddef.h>
#include <stdio.h>

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
/* The preload library's file name (util.c finds it, run.c puts it in LD_PRELOAD). */
#define CMD_SHIM_LIB "libtlsshim.so"
/* The dynamic loader's own list of libraries preloaded into every program. */
#define CMD_PRELOAD_FILE "/etc/ld.so.preload"

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

extern const char *cmd_name; /* argv[0]'s base name, for messages */
/* Prints "tlsshim: MSG" and the short usage to stderr; returns CMD_EXIT_USAGE. */
int cmd_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "tlsshim: MSG" to stderr. */
void cmd_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints the usage to F: the short form, then with LONG_FORM the help text (after SEP). */
void cmd_usage_print(FILE *f, int long_form, const char *sep);

/*
 * Parses ARGV (after the subcommand word) into A. With RUN set, the first
 * non-option word or the word after "--" starts PROGRAM and ends parsing.
 * Returns 0; -1 after printing the help (-h); or an exit status after
 * printing why. Free with cmd_args_free() in every case.
 */
int cmd_args_parse(struct cmd_args *a, int argc, char **argv, int run);
void cmd_args_free(struct cmd_args *a);

/*
 * The preload library's absolute path (next to this executable, in LIBDIR,
 * or in ../lib), malloc()ed; NULL after printing why it is missing.
 */
char *cmd_find_library(void);

#endif
