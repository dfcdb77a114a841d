/*
 * files.c - the files options name (cert=, key=, ca=, client-ca=): made
 * absolute against the policy file's directory and checked readable at load,
 * so that a wrong path fails `check` and the program's start, not its first
 * connection.
 *
 * This library is linked into the preload library, whose hooks are named
 * read/close/...: file access here is stat() and access() only.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "parse.h"

/*
 * PATH as an absolute path (in the table's arena), so the file checked now is the file
 * opened at the first wrapped connection, whatever directory the program has
 * moved to by then. A relative path in a policy file is relative to the file's
 * directory; in TLSSHIM_POLICY, to the working directory. Not canonicalised
 * ("..", symlinks): that is the kernel's business at open time. An empty
 * value stays empty (and is reported as unreadable). NULL: no memory, or no
 * working directory (reported).
 */
static __attribute__((noinline)) char *abs_path_relative(struct pctx *c, const struct tok *t,
							 const char *path)
{
	char pre[4096 + 1];
	size_t n = 0;
	char *out;

	if (c->base == NULL || c->base[0] != '/') {
		if (!getcwd(pre, sizeof(pre) - 1)) {
			parse_report(c, t->vcol,
				     "cannot make '%s' absolute: no working directory (%s)", path,
				     strerror(errno));
			return NULL;
		}
		n = strlen(pre);
	}
	if (c->base_len > 0) {
		if (n + 1 + c->base_len >= sizeof(pre)) {
			parse_report(c, t->vcol, "cannot make '%s' absolute: the path is too long",
				     path);
			return NULL;
		}
		if (n > 0 && pre[n - 1] != '/')
			pre[n++] = '/';
		memcpy(pre + n, c->base, c->base_len);
		n += c->base_len;
	}
	out = mem_alloc(&c->p->mem, n + strlen(path) + 2);
	if (out == NULL)
		return NULL;
	memcpy(out, pre, n);
	if (n == 0 || out[n - 1] != '/')
		out[n++] = '/';
	strcpy(out + n, path);
	return out;
}

/*
 * The common absolute path needs no 4 KB buffer: abs_path_relative() has it in
 * its own frame, so the start-up parse of every process touches fewer stack pages.
 */
static char *abs_path(struct pctx *c, const struct tok *t, const char *path)
{
	if (path[0] == '/' || path[0] == '\0')
		return mem_strdup(&c->p->mem, path);
	return abs_path_relative(c, t, path);
}

/* Checks that PATH can be opened for reading (a directory too, for ca=). */
static int check_readable(struct pctx *c, const struct tok *t, const char *path, int dir_ok)
{
	struct stat st;
	char ebuf[128], shown[160];
	const char *why;

	/* The system policy's files may be readable only by some users: checked on use. */
	if (c->p->defer_file_checks)
		return 0;
	policy_shown(path, strlen(path), shown, sizeof(shown));
	/* Before main in every process: one system call (policy_quick_file_checks()). */
	if (c->p->quick_file_checks) {
		if (access(path, R_OK) < 0)
			goto fail;
		return 0;
	}
	if (stat(path, &st) < 0)
		goto fail;
	if (S_ISDIR(st.st_mode)) {
		if (!dir_ok) {
			parse_report(c, t->vcol, "cannot read %s: it is a directory", shown);
			return -1;
		}
		if (access(path, R_OK | X_OK) < 0)
			goto fail;
		return 0;
	}
	/*
	 * access(): one syscall, no allocation. This runs at every start of
	 * every process that inherits the policy, so it must stay cheap.
	 */
	if (access(path, R_OK) < 0)
		goto fail;
	return 0;
fail:
	why = strerror_r(errno, ebuf, sizeof(ebuf));
	parse_report(c, t->vcol, "cannot read %s: %s", shown, why);
	return -1;
}

int files_option(struct pctx *c, char **dst, const struct tok *t, const char *v, int dir_ok)
{
	*dst = abs_path(c, t, v);
	if (*dst == NULL)
		return -1;
	return check_readable(c, t, *dst, dir_ok);
}
