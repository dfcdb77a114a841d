/*
 * util.c - what the subcommands share (util.h): messages and usage, the
 * command line of check/explain/run, and where the preload library is.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

/* LIBDIR from the Makefile (-DTLSSHIM_LIBDIR): the package's private directory. */
#ifndef TLSSHIM_LIBDIR
#define TLSSHIM_LIBDIR "/usr/local/lib"
#endif
#define TLSCMD_SHIM_LIBDIR TLSSHIM_LIBDIR

const char *cmd_name = "tlsshim";

static const char usage_short[] =
    "usage: tlsshim run [-p RULES]... [-f FILE] [--log LEVEL] -- PROGRAM [ARG...]\n"
    "       tlsshim check [-p RULES]... [-f FILE]\n"
    "       tlsshim explain [-p RULES]... [-f FILE] connect|accept HOST:PORT\n"
    "       tlsshim stats [PID] [--prometheus [--output FILE]]\n"
    "       tlsshim system enable|disable|status\n"
    "       tlsshim version | help\n";

static const char usage_long[] =
    "Run unmodified programs with their TCP connections wrapped in TLS.\n"
    "\n"
    "commands:\n"
    "  run      check the policy, then run PROGRAM with the tlsshim library preloaded\n"
    "  check    print the policy as a normalized rule table, or its errors\n"
    "  explain  show which rule a connection would match, why, and its options\n"
    "  stats    the counters of wrapped processes: a table, one PID by rule, or the\n"
    "           Prometheus text format (--output FILE: written atomically)\n"
    "  system   enable|disable|status: the system policy " TLSSHIM_SYSCONFDIR "/tlsshim/policy\n"
    "           in every program (through /etc/ld.so.preload), or not\n"
    "  version  print the version\n"
    "  help     print this help\n"
    "\n"
    "options:\n"
    "  -p, --policy RULES  rules, separated by newlines or ';' (repeatable; joined\n"
    "                      into one text named TLSSHIM_POLICY in messages)\n"
    "  -f, --file FILE     a policy file, one rule a line, '#' starts a comment\n"
    "      --log LEVEL     run: error, warn (default), info or debug (sets TLSSHIM_LOG)\n"
    "\n"
    "With no -p and no -f, the policy is TLSSHIM_POLICY and TLSSHIM_POLICY_FILE from\n"
    "the environment. Exit status: 0 ok, 1 system could not do it, 2 policy errors\n"
    "(check, explain, system), 64 usage, 70 library not found, 78 policy errors (run),\n"
    "126 PROGRAM refused or not executable, 127 PROGRAM not found. See tlsshim(1) and\n"
    "tlsshim-policy(7).\n";

void cmd_usage_print(FILE *f, int long_form, const char *sep)
{
	fputs(usage_short, f);
	if (!long_form)
		return;
	fputs(sep, f);
	fputs(usage_long, f);
}

static void vmsg(const char *fmt, va_list ap)
{
	fprintf(stderr, "%s: ", cmd_name);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void cmd_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg(fmt, ap);
	va_end(ap);
}

int cmd_usage_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg(fmt, ap);
	va_end(ap);
	fputs(usage_short, stderr);
	return CMD_EXIT_USAGE;
}

/* Appends -p VALUE to the joined text. Returns 0, or -1 on allocation failure. */
static int add_rules(struct cmd_policy_src *s, const char *v)
{
	size_t old = s->text ? strlen(s->text) : 0;
	size_t add = strlen(v);
	char *t = realloc(s->text, old + add + 2);

	if (!t)
		return -1;
	if (s->text)
		t[old++] = '\n';
	memcpy(t + old, v, add + 1);
	s->text = t;
	s->given = 1;
	return 0;
}

/*
 * Matches ARGV[*I] against an option with a value: SHORT ("-p", "-pVAL"),
 * LONG ("--policy VAL", "--policy=VAL"; NULL: none). Returns 1 and sets *VAL
 * (advancing *I past a separate value), 0 if it is not this option, or -1 if
 * the value is missing.
 */
static int opt_value(int argc, char **argv, int *i, const char *shrt, const char *lng,
		     const char **val)
{
	const char *a = argv[*i];
	size_t n;

	if (shrt && strncmp(a, shrt, 2) == 0) {
		if (a[2]) {
			*val = a + 2;
			return 1;
		}
	} else if (lng) {
		n = strlen(lng);
		if (strncmp(a, lng, n) != 0)
			return 0;
		if (a[n] == '=') {
			*val = a + n + 1;
			return 1;
		}
		if (a[n])
			return 0;
	} else {
		return 0;
	}
	if (*i + 1 >= argc)
		return -1;
	*val = argv[++*i];
	return 1;
}

static int valid_log_level(const char *l)
{
	static const char *const levels[] = {"error", "warn", "info", "debug"};
	size_t i;

	for (i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		if (strcmp(l, levels[i]) == 0)
			return 1;
	}
	return 0;
}

/*
 * Handles the option ARGV[*I] (advancing *I past a separate value). Returns
 * 0, -1 after printing the help, or an exit status after printing why.
 */
static int parse_option(struct cmd_args *a, int argc, char **argv, int *i, int run)
{
	const char *arg = argv[*i], *v;
	int r;

	if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
		cmd_usage_print(stdout, 1, "");
		return -1;
	}
	r = opt_value(argc, argv, i, "-p", "--policy", &v);
	if (r < 0)
		return cmd_usage_error("option %s needs a value (rules)", arg);
	if (r > 0) {
		if (add_rules(&a->src, v) != 0) {
			cmd_err("out of memory");
			return CMD_EXIT_SOFTWARE;
		}
		return 0;
	}
	r = opt_value(argc, argv, i, "-f", "--file", &v);
	if (r < 0)
		return cmd_usage_error("option %s needs a value (a policy file)", arg);
	if (r > 0) {
		if (a->src.file)
			return cmd_usage_error("-f can be given once (put all rules of a "
					       "file in one file, or add more with -p)");
		if (!*v)
			return cmd_usage_error("-f needs a file name, not an empty one");
		a->src.file = v;
		a->src.given = 1;
		return 0;
	}
	r = opt_value(argc, argv, i, NULL, "--log", &v);
	if (r < 0)
		return cmd_usage_error("option %s needs a value: error, warn, info or debug", arg);
	if (r == 0)
		return cmd_usage_error("unknown option '%s'", arg);
	if (!run)
		return cmd_usage_error("--log is an option of 'run' only");
	if (!valid_log_level(v))
		return cmd_usage_error("--log '%s': the level is one of error, warn, "
				       "info, debug",
				       v);
	a->log = v;
	return 0;
}

int cmd_args_parse(struct cmd_args *a, int argc, char **argv, int run)
{
	int i, rc, opts = 1;

	memset(a, 0, sizeof(*a));
	a->pos = calloc((size_t)argc + 1, sizeof(*a->pos));
	if (!a->pos) {
		cmd_err("out of memory");
		return CMD_EXIT_SOFTWARE;
	}
	for (i = 0; i < argc; i++) {
		const char *arg = argv[i];

		if (!opts || arg[0] != '-' || arg[1] == '\0') {
			a->pos[a->n_pos++] = argv[i];
			/* PROGRAM's own options are not ours. */
			if (run)
				opts = 0;
			continue;
		}
		if (strcmp(arg, "--") == 0) {
			opts = 0;
			continue;
		}
		rc = parse_option(a, argc, argv, &i, run);
		if (rc != 0)
			return rc;
	}
	return 0;
}

void cmd_args_free(struct cmd_args *a)
{
	free(a->src.text);
	free(a->pos);
	memset(a, 0, sizeof(*a));
}

/*
 * Finds the preload library next to this executable (build tree), in the
 * LIBDIR it was built for (`make LIBDIR=...`: the Debian package's private
 * /usr/lib/MULTIARCH/tlsshim), or in ../lib (a relocated install). LIBDIR goes
 * before ../lib so that an installed command never picks up another copy left
 * in PREFIX/lib. Returns a malloc()ed absolute path, or NULL after printing why.
 */
char *cmd_find_library(void)
{
	static const char *const rel[] = {CMD_SHIM_LIB, NULL, "../lib/" CMD_SHIM_LIB};
	char self[PATH_MAX], cand[PATH_MAX + 32];
	char *dir, *abs;
	ssize_t n;
	size_t i;

	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0) {
		cmd_err("cannot find the tlsshim executable (/proc/self/exe: %s), so not the "
			"library next to it either; is /proc mounted?",
			strerror(errno));
		return NULL;
	}
	self[n] = '\0';
	dir = dirname(self);
	for (i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
		if (rel[i] != NULL)
			snprintf(cand, sizeof(cand), "%s/%s", dir, rel[i]);
		else
			snprintf(cand, sizeof(cand), "%s/%s", TLSCMD_SHIM_LIBDIR, CMD_SHIM_LIB);
		if (access(cand, R_OK) != 0)
			continue;
		/* realpath() drops the "..", so LD_PRELOAD names one canonical file. */
		abs = realpath(cand, NULL);
		if (abs)
			return abs;
	}
	cmd_err("the preload library is missing: none of %s/%s, %s/%s, %s/../lib/%s exists; "
		"reinstall tlsshim (or run 'make')",
		dir, CMD_SHIM_LIB, TLSCMD_SHIM_LIBDIR, CMD_SHIM_LIB, dir, CMD_SHIM_LIB);
	return NULL;
}
