/*
 * exec.c - hooks: the exec family hands wrapped connections to the new
 * program (inherit_exec.c): before the handshake for its shim to adopt, after it
 * through a relay process, and refuses (logged) what cannot follow.
 *
 * glibc's execl*() reach execve() internally, past any hook, so they are
 * hooked here too and call the same path. execvp() tries each PATH entry
 * inside libc: the hand-over happens once, before the first try.
 * posix_spawn(), system() and popen() exec inside glibc too, and the caller
 * goes on: what the child would inherit moves into a relay first.
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "hook.h"
#include "inherit.h"
#include "shim.h"

extern char **environ;

/* exec with X's environment; on return (failure) undoes what only the new program needed. */
#define EXEC_WITH(x, call)               \
	do {                             \
		int rc_ = (call);        \
		int err_ = errno;        \
		inherit_exec_done(&(x)); \
		errno = err_;            \
		return rc_;              \
	} while (0)

static int shim_execve(const char *path, char *const argv[], char *const envp[])
{
	struct inherit_exec x;

	NEED_REAL(execve);
	if (shim.policy == NULL)
		return real.execve(path, argv, envp);
	inherit_exec_prepare(&x, path, 0, argv, envp);
	EXEC_WITH(x, real.execve(path, argv, x.envp));
}

HOOK int execve(const char *path, char *const argv[], char *const envp[])
{
	return shim_execve(path, argv, envp);
}

HOOK int execv(const char *path, char *const argv[])
{
	return shim_execve(path, argv, environ);
}

static int shim_execvpe(const char *file, char *const argv[], char *const envp[])
{
	struct inherit_exec x;

	NEED_REAL_OPT(execvpe);
	if (real.execvpe == NULL) {
		errno = ENOSYS;
		return -1;
	}
	if (shim.policy == NULL)
		return real.execvpe(file, argv, envp);
	inherit_exec_prepare(&x, file, 1, argv, envp);
	EXEC_WITH(x, real.execvpe(file, argv, x.envp));
}

HOOK int execvpe(const char *file, char *const argv[], char *const envp[])
{
	return shim_execvpe(file, argv, envp);
}

HOOK int execvp(const char *file, char *const argv[])
{
	return shim_execvpe(file, argv, environ);
}

HOOK int fexecve(int fd, char *const argv[], char *const envp[])
{
	struct inherit_exec x;

	NEED_REAL_OPT(fexecve);
	if (real.fexecve == NULL) {
		errno = ENOSYS;
		return -1;
	}
	if (shim.policy == NULL)
		return real.fexecve(fd, argv, envp);
	inherit_exec_prepare(&x, NULL, 0, argv, envp);
	EXEC_WITH(x, real.fexecve(fd, argv, x.envp));
}

/* The execl* argument list as an argv array (malloc: exec replaces the image anyway). */
static char **list_argv(const char *arg0, va_list ap, char ***envp)
{
	va_list cp;
	size_t n = 1;
	char **v;

	if (arg0 == NULL) {
		/* No arguments at all: argv is just the terminator. */
		v = calloc(1, sizeof(*v));
		if (v != NULL && envp != NULL)
			*envp = va_arg(ap, char **);
		return v;
	}
	va_copy(cp, ap);
	while (va_arg(cp, char *) != NULL)
		n++;
	va_end(cp);
	v = malloc((n + 1) * sizeof(*v));
	if (v == NULL)
		return NULL;
	v[0] = (char *)arg0;
	for (size_t i = 1; i <= n; i++)
		v[i] = i < n ? va_arg(ap, char *) : NULL;
	if (envp != NULL) {
		(void)va_arg(ap, char *); /* the NULL ending the list */
		*envp = va_arg(ap, char **);
	}
	return v;
}

HOOK int execl(const char *path, const char *arg, ...)
{
	va_list ap;
	char **v;
	int rc;

	va_start(ap, arg);
	v = list_argv(arg, ap, NULL);
	va_end(ap);
	if (v == NULL) {
		errno = ENOMEM;
		return -1;
	}
	rc = shim_execve(path, v, environ);
	free(v);
	return rc;
}

HOOK int execle(const char *path, const char *arg, ...)
{
	va_list ap;
	char **v, **envp = NULL;
	int rc;

	va_start(ap, arg);
	v = list_argv(arg, ap, &envp);
	va_end(ap);
	if (v == NULL) {
		errno = ENOMEM;
		return -1;
	}
	rc = shim_execve(path, v, envp);
	free(v);
	return rc;
}

HOOK int execlp(const char *file, const char *arg, ...)
{
	va_list ap;
	char **v;
	int rc;

	va_start(ap, arg);
	v = list_argv(arg, ap, NULL);
	va_end(ap);
	if (v == NULL) {
		errno = ENOMEM;
		return -1;
	}
	rc = shim_execvpe(file, v, environ);
	free(v);
	return rc;
}

HOOK int execveat(int dirfd, const char *path, char *const argv[], char *const envp[], int flags)
{
	struct inherit_exec x;

	NEED_REAL_OPT(execveat);
	if (real.execveat == NULL) {
		errno = ENOSYS;
		return -1;
	}
	if (shim.policy == NULL)
		return real.execveat(dirfd, path, argv, envp, flags);
	/* The file for the setuid check: known only when PATH names it by itself. */
	inherit_exec_prepare(&x, path[0] == '/' || dirfd == AT_FDCWD ? path : NULL, 0, argv, envp);
	EXEC_WITH(x, real.execveat(dirfd, path, argv, x.envp, flags));
}

HOOK int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
		     const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	struct inherit_exec x;
	int rc;

	NEED_REAL(posix_spawn);
	if (shim.policy == NULL)
		return real.posix_spawn(pid, path, fa, attr, argv, envp);
	inherit_spawn_prepare(&x, path, argv, envp);
	rc = x.refuse ? x.refuse : real.posix_spawn(pid, path, fa, attr, argv, x.envp);
	inherit_exec_done(&x);
	return rc;
}

HOOK int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
		      const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	struct inherit_exec x;
	int rc;

	NEED_REAL(posix_spawnp);
	if (shim.policy == NULL)
		return real.posix_spawnp(pid, file, fa, attr, argv, envp);
	inherit_spawn_prepare(&x, file, argv, envp);
	rc = x.refuse ? x.refuse : real.posix_spawnp(pid, file, fa, attr, argv, x.envp);
	inherit_exec_done(&x);
	return rc;
}

HOOK int system(const char *cmd)
{
	struct inherit_exec x;
	char *argv[] = {(char *)"sh", NULL};

	NEED_REAL(system);
	if (shim.policy != NULL && cmd != NULL) {
		/* The shell gets this environment: the relay's entries cannot go along. */
		inherit_spawn_prepare(&x, "/bin/sh", argv, environ);
		inherit_exec_done(&x);
	}
	return real.system(cmd);
}

HOOK FILE *popen(const char *cmd, const char *type)
{
	struct inherit_exec x;
	char *argv[] = {(char *)"sh", NULL};
	FILE *f;

	NEED_REAL(popen);
	if (shim.policy != NULL) {
		inherit_spawn_prepare(&x, "/bin/sh", argv, environ);
		inherit_exec_done(&x);
	}
	f = real.popen(cmd, type);
	if (f != NULL)
		fd_new(fileno(f)); /* a stale entry under the pipe's number (newfd.c) */
	return f;
}
