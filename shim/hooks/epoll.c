/*
 * epoll.c - hooks: epoll_ctl and the epoll_wait family (logic in epreg.c).
 */
#include <errno.h>
#include <sys/epoll.h>

#include "epreg.h"
#include "fdtab.h"
#include "hook.h"
#include "shim.h"

HOOK int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	NEED_REAL(epoll_ctl);
	/* Without a policy nothing is ever wrapped: no bookkeeping at all. */
	if (likely(shim.policy == NULL) ||
	    (!fdtab_maybe(fd) && !shim.has_connect && !epreg_active()))
		return real.epoll_ctl(epfd, op, fd, ev);
	return (int)hook_ret(epreg_ctl(epfd, op, fd, ev));
}

static int wait_common(int epfd, struct epoll_event *ev, int max, int64_t timeout_ns,
		       const sigset_t *mask, int *handled)
{
	*handled = 0;
	if (likely(!epreg_active()))
		return 0;
	return epreg_wait(epfd, ev, max, timeout_ns, mask, handled);
}

HOOK int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
	int h, r;

	NEED_REAL(epoll_wait);
	r = wait_common(epfd, ev, max, timeout < 0 ? -1 : (int64_t)timeout * 1000000, NULL, &h);
	return h ? (int)hook_ret(r) : real.epoll_wait(epfd, ev, max, timeout);
}

HOOK int epoll_pwait(int epfd, struct epoll_event *ev, int max, int timeout, const sigset_t *mask)
{
	int h, r;

	NEED_REAL(epoll_pwait);
	r = wait_common(epfd, ev, max, timeout < 0 ? -1 : (int64_t)timeout * 1000000, mask, &h);
	return h ? (int)hook_ret(r) : real.epoll_pwait(epfd, ev, max, timeout, mask);
}

HOOK int epoll_pwait2(int epfd, struct epoll_event *ev, int max, const struct timespec *t,
		      const sigset_t *mask)
{
	int h, r;

	NEED_REAL_OPT(epoll_pwait2);
	if (real.epoll_pwait2 == NULL) {
		errno = ENOSYS;
		return -1;
	}
	r = wait_common(epfd, ev, max,
			t == NULL ? -1 : (int64_t)t->tv_sec * 1000000000 + t->tv_nsec, mask, &h);
	return h ? (int)hook_ret(r) : real.epoll_pwait2(epfd, ev, max, t, mask);
}

/* syscall()'s way in (hooks/syscall.c). */
HOOK_INTERNAL(epoll_ctl)
HOOK_INTERNAL(epoll_wait)
HOOK_INTERNAL(epoll_pwait)
HOOK_INTERNAL(epoll_pwait2)
