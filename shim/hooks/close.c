/*
 * close.c - hooks: close, shutdown, close_range, closefrom.
 *
 * Closing the last fd of a wrapped connection sends close_notify before the
 * socket goes; closing one of several (dup) keeps the session on the others.
 */
#include <errno.h>
#include <limits.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "conn.h"
#include "epreg.h"
#include "fdstate.h"
#include "fdtab.h"
#include "hook.h"
#include "inherit.h"
#include "log.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

HOOK int close(int fd)
{
	if (unlikely(real.close == NULL)) {
		NEED_REAL(close);
		if (real.close == NULL)
			return (int)real_sys(SYS_close, fd, 0, 0, 0);
	}
	if (likely(fd != log_fd() && !fdtab_maybe(fd) && !epreg_fd_maybe(fd)))
		return real.close(fd);
	/* A vfork()ed child closes its own copy: the tables (shared memory) stay the parent's. */
	if (inherit_vforked())
		return real.close(fd);
	if (fd == log_fd())
		log_forget_fd(fd);
	if (fdtab_maybe(fd) || epreg_fd_maybe(fd))
		fdclose_release(fd);
	return real.close(fd);
}
HOOK_ALIAS(close, __close)
HOOK_INTERNAL(close)

HOOK int shutdown(int fd, int how)
{
	struct conn *c;
	int rc;

	NEED_REAL(shutdown);
	if (likely(!fdtab_maybe(fd)))
		return real.shutdown(fd, how);
	c = fdtab_get(fd);
	if (c == NULL)
		return real.shutdown(fd, how);
	rc = how == SHUT_RD || how == SHUT_WR || how == SHUT_RDWR ? conn_shutdown(c, how) : -EINVAL;
	conn_put(c);
	return (int)hook_ret(rc);
}
HOOK_INTERNAL(shutdown)

HOOK int close_range(unsigned int first, unsigned int last, int flags)
{
	int rc;

	NEED_REAL_OPT(close_range);
	if (real.close_range == NULL) {
		errno = ENOSYS;
		return -1;
	}
	if (first > last || (flags & CLOSE_RANGE_CLOEXEC))
		return real.close_range(first, last, flags);
	/* python's subprocess closes the fds it does not pass in its vfork()ed child. */
	if (!inherit_vforked())
		fdstate_release_range(first, last);
	rc = real.close_range(first, last, flags);
	return rc;
}
HOOK_INTERNAL(close_range)

HOOK void closefrom(int lowfd)
{
	NEED_REAL_OPT(closefrom);
	if (lowfd < 0)
		lowfd = 0;
	if (!inherit_vforked())
		fdstate_release_range((unsigned int)lowfd, UINT_MAX);
	if (real.closefrom != NULL)
		real.closefrom(lowfd);
}
