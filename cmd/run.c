/*
 * run.c - `tlsshim run`: check the policy, then exec PROGRAM with the preload
 * library first in LD_PRELOAD and the policy in its environment.
 *
 * Everything that can be checked is checked before exec, because afterwards a
 * mistake shows up only as a program talking in cleartext.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "env.h"
#include "exe.h"
#include "load.h"
#include "util.h"

static const char *base_name(const char *p, size_t len, size_t *blen)
{
	size_t i = len;

	while (i > 0 && p[i - 1] != '/')
		i--;
	*blen = len - i;
	return p + i;
}

/* Whether ELEM (LEN bytes) is a sanitizer runtime, which must stay first in LD_PRELOAD. */
static int is_sanitizer(const char *elem, size_t len)
{
	static const char *const rt[] = {"libasan.", "libtsan.", "libubsan.", "liblsan.",
					 "libclang_rt."};
	size_t i, blen;
	const char *b = base_name(elem, len, &blen);

	for (i = 0; i < sizeof(rt) / sizeof(rt[0]); i++) {
		if (blen >= strlen(rt[i]) && strncmp(b, rt[i], strlen(rt[i])) == 0)
			return 1;
	}
	return 0;
}

/* Whether ELEM (LEN bytes) is some copy of the preload library. */
static int is_shim(const char *elem, size_t len)
{
	size_t blen;
	const char *b = base_name(elem, len, &blen);

	return blen == strlen(CMD_SHIM_LIB) && strncmp(b, CMD_SHIM_LIB, blen) == 0;
}

/*
 * The new LD_PRELOAD: LIB first (after a sanitizer runtime, which insists on
 * being first), then the old elements without any other copy of the library
 * (two copies would both set up). ld.so splits on ':' and ' '. Returns a
 * malloc()ed string or NULL.
 */
static char *build_preload(const char *lib, const char *old)
{
	size_t cap = strlen(lib) + (old ? strlen(old) : 0) + 3;
	char *out = malloc(cap);
	const char *p, *e;
	size_t n = 0, len;
	int placed = 0, first = 1;

	if (!out)
		return NULL;
	out[0] = '\0';
	for (p = old ? old : ""; *p; p = *e ? e + 1 : e) {
		e = p + strcspn(p, ": ");
		len = (size_t)(e - p);
		if (len == 0 || is_shim(p, len))
			continue;
		if (!placed && !(first && is_sanitizer(p, len))) {
			n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? ":" : "", lib);
			placed = 1;
		}
		first = 0;
		n += (size_t)snprintf(out + n, cap - n, "%s%.*s", n ? ":" : "", (int)len, p);
	}
	if (!placed)
		snprintf(out + n, cap - n, "%s%s", n ? ":" : "", lib);
	return out;
}

/* FILE made absolute, so the program finds it whatever directory it changes to. */
static char *absolute(const char *file)
{
	char cwd[PATH_MAX];
	char *s;
	size_t n;

	if (file[0] == '/')
		return strdup(file);
	if (!getcwd(cwd, sizeof(cwd)))
		return NULL;
	n = strlen(cwd) + strlen(file) + 2;
	s = malloc(n);
	if (s)
		snprintf(s, n, "%s/%s", cwd, file);
	return s;
}

/* Puts the policy and log level into the environment the program will get. */
static int set_env(const struct cmd_args *a, const char *preload)
{
	char *file;
	int rc = 0;

	if (setenv("LD_PRELOAD", preload, 1) != 0)
		return -1;
	if (a->log && setenv(ENV_LOG, a->log, 1) != 0)
		return -1;
	if (!a->src.given)
		return 0;
	/* -p/-f define the whole policy: nothing from the caller's environment stays. */
	if (a->src.text) {
		char *norm = cmd_policy_text_normalized(a->src.text);

		if (!norm)
			return -1;
		rc |= setenv(ENV_POLICY, norm, 1);
		free(norm);
	} else
		rc |= unsetenv(ENV_POLICY);
	if (!a->src.file)
		return rc | unsetenv(ENV_POLICY_FILE);
	file = absolute(a->src.file);
	if (!file)
		return -1;
	rc |= setenv(ENV_POLICY_FILE, file, 1);
	free(file);
	return rc;
}

/* Runs PATH with /bin/sh (ARGV: PROGRAM and its N - 1 arguments); returns on failure. */
static void run_sh(const char *path, char **argv, int n)
{
	char **v = calloc((size_t)n + 2, sizeof(*v));
	int e;

	if (!v)
		return;
	v[0] = "/bin/sh";
	v[1] = (char *)path;
	memcpy(v + 2, argv + 1, (size_t)(n - 1) * sizeof(*v));
	execv(v[0], v);
	e = errno;
	free(v);
	errno = e;
}

/* Whether the caller asked for errors only (then no warning about an empty policy). */
static int quiet(const struct cmd_args *a)
{
	const char *l = a->log ? a->log : getenv(ENV_LOG);

	return l && strcmp(l, "error") == 0;
}

/*
 * Finds PROG as execvp(3) would, into *PATH (malloc()ed), and checks that the
 * loader will preload the library into it. Returns 0, or the exit status
 * after printing why not.
 */
static int find_program(const char *prog, char **path)
{
	char why[PATH_MAX + 128];
	int r;

	*path = exe_find(prog, getenv("PATH"));
	if (!*path) {
		if (errno == EACCES) {
			cmd_err("%s: permission denied (found, but not executable)", prog);
			return CMD_EXIT_NOEXEC;
		}
		cmd_err("%s: command not found", prog);
		return CMD_EXIT_NOTFOUND;
	}
	r = exe_preloadable(*path, why, sizeof(why));
	if (r == -1) {
		cmd_err("refusing to run %s: %s; the dynamic loader ignores LD_PRELOAD for it, so "
			"its connections would go out in cleartext",
			prog, why);
		return CMD_EXIT_NOEXEC;
	}
	if (r == -3) {
		cmd_err("refusing to run %s: %s", prog, why);
		return CMD_EXIT_NOEXEC;
	}
	if (r < 0) {
		cmd_err("cannot run %s: %s", prog, why);
		return CMD_EXIT_NOEXEC;
	}
	return 0;
}

int cmd_run(int argc, char **argv)
{
	struct cmd_args a;
	struct policy *p = NULL;
	char *lib = NULL, *path = NULL, *preload = NULL;
	const char *prog;
	int rc;

	rc = cmd_args_parse(&a, argc, argv, 1);
	if (rc != 0)
		goto out;
	if (a.n_pos == 0) {
		rc = cmd_usage_error("'run' needs a PROGRAM to run, after '--'");
		goto out;
	}
	prog = a.pos[0];
	p = cmd_policy_load(&a.src);
	if (!p) {
		cmd_err("the policy has errors; %s was not started", prog);
		rc = CMD_EXIT_CONFIG;
		goto out;
	}
	lib = cmd_find_library();
	if (!lib) {
		rc = CMD_EXIT_SOFTWARE;
		goto out;
	}
	rc = find_program(prog, &path);
	if (rc != 0)
		goto out;
	preload = build_preload(lib, getenv("LD_PRELOAD"));
	if (!preload || set_env(&a, preload) != 0) {
		cmd_err("cannot set up the environment: %s", strerror(errno));
		rc = CMD_EXIT_SOFTWARE;
		goto out;
	}
	/* With a system policy, its rules apply: no rules of its own is a normal case. */
	if (policy_count(p) == 0 && !quiet(&a) && access(CMD_SYSTEM_POLICY, F_OK) != 0)
		cmd_err("warning: the policy has no rules: %s runs with every connection left "
			"alone (set -p/-f, or " ENV_POLICY "/" ENV_POLICY_FILE ")",
			prog);
	(void)fflush(NULL); /* what is printed is a warning: the program runs anyway */
	execv(path, a.pos);
	/* Like execvp: a file the kernel cannot run is a shell script without "#!". */
	if (errno == ENOEXEC) {
		run_sh(path, a.pos, a.n_pos);
	}
	rc = errno == ENOENT ? CMD_EXIT_NOTFOUND : CMD_EXIT_NOEXEC;
	cmd_err("%s: %s", prog, strerror(errno));
out:
	free(preload);
	free(path);
	free(lib);
	policy_free(p);
	cmd_args_free(&a);
	return rc < 0 ? CMD_EXIT_OK : rc;
}
