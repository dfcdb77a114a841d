/*
 * fdops.c - hooks: dup/dup2/dup3/fcntl/ioctl.
 *
 * The wrapping follows the fd through dup; O_NONBLOCK and FIONBIO are
 * remembered as the program set them while the socket underneath stays
 * non-blocking; FIONREAD counts plaintext.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "conn.h"
#include "epreg.h"
#include "fdtab.h"
#include "hook.h"
#include "log.h"

/* NEWFD is now a duplicate of OLDFD: share its wrapping. */
static void follow(int oldfd, int newfd)
{
	struct conn *c;

	if (newfd < 0 || !fdtab_maybe(oldfd))
		return;
	c = fdtab_get(oldfd);
	if (c == NULL)
		return;
	if (conn_add_fd(c, newfd) == 0)
		fdtab_set(newfd, c);
	conn_put(c);
}

/* dup2/dup3 close NEWFD first, when OLDFD is valid: so do we, with close_notify. */
static void release_target(int oldfd, int newfd)
{
	/* Our log file's descriptor is about to become something else. */
	if (unlikely(newfd == log_fd()) && oldfd != newfd)
		log_forget_fd(newfd);
	if (oldfd == newfd || (!fdtab_maybe(newfd) && !epreg_fd_maybe(newfd)) ||
	    real.fcntl(oldfd, F_GETFD) < 0)
		return;
	fdclose_release(newfd);
}

HOOK int dup(int fd)
{
	int nfd;

	NEED_REAL(dup);
	nfd = real.dup(fd);
	fd_new(nfd);
	follow(fd, nfd);
	return nfd;
}
HOOK_INTERNAL(dup)

HOOK int dup2(int oldfd, int newfd)
{
	int r;

	NEED_REAL(dup2);
	release_target(oldfd, newfd);
	r = real.dup2(oldfd, newfd);
	if (r >= 0 && oldfd != newfd)
		follow(oldfd, r);
	return r;
}
HOOK_ALIAS(dup2, __dup2)
HOOK_INTERNAL(dup2)

HOOK int dup3(int oldfd, int newfd, int flags)
{
	int r;

	NEED_REAL(dup3);
	if (oldfd != newfd)
		release_target(oldfd, newfd);
	r = real.dup3(oldfd, newfd, flags);
	if (r >= 0)
		follow(oldfd, r);
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
		follow(fd, r);
		return r;
	case F_GETFL:
	case F_SETFL:
		break;
	default:
		return fn(fd, cmd, arg);
	}
	c = fdtab_get(fd);
	if (c == NULL)
		return fn(fd, cmd, arg);
	if (cmd == F_GETFL) {
		r = fn(fd, F_GETFL);
		if (r >= 0)
			r = conn_nonblock(c) ? (r | O_NONBLOCK) : (r & ~O_NONBLOCK);
	} else {
		long fl = (long)arg;

		/* The socket stays non-blocking underneath; the program's wish is emulated. */
		r = fn(fd, F_SETFL, fl | O_NONBLOCK);
		if (r >= 0)
			conn_set_nonblock(c, (fl & O_NONBLOCK) != 0);
	}
	conn_put(c);
	return r;
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
	int r = 0;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	NEED_REAL(ioctl);
	if (likely(!fdtab_maybe(fd)) || (req != FIONBIO && req != FIONREAD))
		return real.ioctl(fd, req, arg);
	c = fdtab_get(fd);
	if (c == NULL)
		return real.ioctl(fd, req, arg);
	if (arg == NULL) {
		r = -EFAULT;
	} else if (req == FIONBIO) {
		conn_set_nonblock(c, *(int *)arg != 0);
	} else {
		r = conn_readable_bytes(c);
		if (r == -ENOTTY)
			r = real.ioctl(fd, req, arg) < 0 ? -errno : 0;
		else if (r >= 0)
			*(int *)arg = r, r = 0;
	}
	conn_put(c);
	return (int)hook_ret(r);
}
HOOK_INTERNAL(ioctl)
