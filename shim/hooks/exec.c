/*
 * exec.c - hooks: the exec family warns when a TLS connection is inherited.
 *
 * The TLS state of a wrapped connection lives in this process's memory; a
 * program exec()ed with the socket still open (no FD_CLOEXEC) sees raw TLS
 * records and cannot use it (a known limit, README). Nothing can carry the
 * session across, but the user can be told which fd and which connection.
 * glibc's execl*() family reaches execve() internally, past any hook, so
 * those calls go unwarned.
 */
#include <fcntl.h>

#include "conn.h"
#include "fdtab.h"
#include "hook.h"
#include "log.h"
#include "shim.h"

static void warn_one(int fd, struct conn *c, void *arg)
{
	const char *prog = arg;
	int fl = real.fcntl(fd, F_GETFD);

	if (fl >= 0 && !(fl & FD_CLOEXEC))
		log_warn(
		    "%s: exec of %s inherits it as fd %d, but not its TLS session: the new "
		    "program sees raw TLS records (set FD_CLOEXEC, or let the parent serve it)",
		    c->desc, prog, fd);
}

/* Warns about every wrapped fd the exec'ed PROG would inherit. Cheap when none. */
static void check_inherited(const char *prog)
{
	if (!shim.has_connect && !shim.has_accept)
		return;
	real_init();
	fdtab_foreach(warn_one, (void *)(prog != NULL ? prog : "?"));
}

HOOK int execve(const char *path, char *const argv[], char *const envp[])
{
	NEED_REAL(execve);
	check_inherited(path);
	return real.execve(path, argv, envp);
}

HOOK int execv(const char *path, char *const argv[])
{
	NEED_REAL(execv);
	check_inherited(path);
	return real.execv(path, argv);
}

HOOK int execvp(const char *file, char *const argv[])
{
	NEED_REAL(execvp);
	check_inherited(file);
	return real.execvp(file, argv);
}

HOOK int execvpe(const char *file, char *const argv[], char *const envp[])
{
	NEED_REAL_OPT(execvpe);
	check_inherited(file);
	if (real.execvpe == NULL) {
		errno = ENOSYS;
		return -1;
	}
	return real.execvpe(file, argv, envp);
}

HOOK int fexecve(int fd, char *const argv[], char *const envp[])
{
	NEED_REAL_OPT(fexecve);
	check_inherited("a program (fexecve)");
	if (real.fexecve == NULL) {
		errno = ENOSYS;
		return -1;
	}
	return real.fexecve(fd, argv, envp);
}

HOOK int execveat(int dirfd, const char *path, char *const argv[], char *const envp[], int flags)
{
	NEED_REAL_OPT(execveat);
	check_inherited(path);
	if (real.execveat == NULL) {
		errno = ENOSYS;
		return -1;
	}
	return real.execveat(dirfd, path, argv, envp, flags);
}
