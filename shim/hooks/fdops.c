/*
 * fdops.c - hooks: dup/dup2/dup3/fcntl/ioctl; what a wrapped fd's duplicates
 * and flags look like to the program is fdstate.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "conn.h"
#include "epreg.h"
#include "fdstate.h"
#include "fdtab.h"
#include "hook.h"
#include "log.h"

HOOK int dup(int fd)
{
	int nfd;

	NEED_REAL(dup);
	nfd = real.dup(fd);
	fd_new(nfd);
	return (int)hook_ret(fdstate_dup(fd, nfd));
}
HOOK_INTERNAL(dup)

HOOK int dup2(int oldfd, int newfd)
{
	int r;

	NEED_REAL(dup2);
	fdstate_dup_target(oldfd, newfd);
	r = real.dup2(oldfd, newfd);
	if (r >= 0 && oldfd != newfd)
		r = (int)hook_ret(fdstate_dup(oldfd, r));
	return r;
}
HOOK_ALIAS(dup2, __dup2)
HOOK_INTERNAL(dup2)

HOOK int dup3(int oldfd, int newfd, int flags)
{
	int r;

	NEED_REAL(dup3);
	if (oldfd != newfd)
		fdstate_dup_target(oldfd, newfd);
	r = real.dup3(oldfd, newfd, flags);
	if (r >= 0)
		r = (int)hook_ret(fdstate_dup(oldfd, r));
	return r;
}
HOOK_INTERNAL(dup3)

static int do_fcntl(int (*fn)(int, int, ...), int fd, int cmd, void *arg)
{
	struct conn *c;
	int r;

	if (likely(!fdtab_maybe(fd)) && cmd != F_DUPFD && cmd != F_DUPFD_CLOEXEC)
		return fn(fd, cmd, arg);
	switch (cmd) {
	case F_DUPFD:
	case F_DUPFD_CLOEXEC:
		r = fn(fd, cmd, arg);
		fd_new(r);
		return (int)hook_ret(fdstate_dup(fd, r));
	case F_GETFL:
	case F_SETFL:
		break;
	default:
		return fn(fd, cmd, arg);
	}
	c = fdtab_get(fd);
	if (c == NULL)
		return fn(fd, cmd, arg);
	r = fdstate_fl(c, fn, fd, cmd, arg);
	conn_put(c);
	return (int)hook_ret(r);
}

HOOK int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	NEED_REAL(fcntl);
	return do_fcntl(real.fcntl, fd, cmd, arg);
}
HOOK_ALIAS(fcntl, __fcntl)
HOOK_INTERNAL(fcntl)

HOOK int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	NEED_REAL(fcntl);
	NEED_REAL_OPT(fcntl64);
	return do_fcntl(real.fcntl64 ? real.fcntl64 : real.fcntl, fd, cmd, arg);
}

HOOK int ioctl(int fd, unsigned long req, ...)
{
	struct conn *c;
	va_list ap;
	void *arg;
	int r;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	NEED_REAL(ioctl);
	if (likely(!fdtab_maybe(fd)) || (req != FIONBIO && req != FIONREAD))
		return real.ioctl(fd, req, arg);
	c = fdtab_get(fd);
	if (c == NULL)
		return real.ioctl(fd, req, arg);
	r = fdstate_ioctl(c, fd, req, arg);
	conn_put(c);
	return (int)hook_ret(r);
}
HOOK_INTERNAL(ioctl)
