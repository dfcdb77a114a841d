/*
 * poll.c - hooks: poll, ppoll, select, pselect. Calls whose fds are all
 * unwrapped go straight to libc; the others to the emulation (poll_emul.c).
 */
#include <poll.h>
#include <stddef.h>
#include <sys/select.h>
#include <time.h>

#include "hook.h"
#include "poll_emul.h"

extern void __chk_fail(void) __attribute__((noreturn));
int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen);
int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *t, const sigset_t *mask,
		size_t fdslen);

static int shim_poll(struct pollfd *fds, nfds_t n, int timeout)
{
	NEED_REAL(poll);
	if (likely(!poll_emul_any_wrapped(fds, n)))
		return real.poll(fds, n, timeout);
	return (int)hook_ret(
	    poll_emul(fds, n, timeout < 0 ? -1 : (int64_t)timeout * 1000000, NULL));
}

HOOK int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	return shim_poll(fds, n, timeout);
}

HOOK int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen)
{
	if (fdslen / sizeof(*fds) < n)
		__chk_fail();
	return shim_poll(fds, n, timeout);
}

static int shim_ppoll(struct pollfd *fds, nfds_t n, const struct timespec *t, const sigset_t *mask)
{
	int64_t ns;
	int rc;

	NEED_REAL(ppoll);
	if (likely(!poll_emul_any_wrapped(fds, n)))
		return real.ppoll(fds, n, t, mask);
	rc = poll_emul_timeout(t, &ns);
	if (rc == 0)
		rc = poll_emul(fds, n, ns, mask);
	return (int)hook_ret(rc);
}

HOOK int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *t, const sigset_t *mask)
{
	return shim_ppoll(fds, n, t, mask);
}

HOOK int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *t, const sigset_t *mask,
		     size_t fdslen)
{
	if (fdslen / sizeof(*fds) < n)
		__chk_fail();
	return shim_ppoll(fds, n, t, mask);
}

HOOK int select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv)
{
	int h, rc;

	NEED_REAL(select);
	rc = poll_emul_select_tv(nfds, rd, wr, ex, tv, &h);
	if (!h)
		return real.select(nfds, rd, wr, ex, tv);
	return (int)hook_ret(rc);
}

HOOK int pselect(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, const struct timespec *t,
		 const sigset_t *mask)
{
	int64_t ns;
	int h = 1, rc;

	NEED_REAL(pselect);
	rc = poll_emul_timeout(t, &ns);
	if (rc == 0)
		rc = poll_emul_select(nfds, rd, wr, ex, ns, mask, &h);
	if (!h)
		return real.pselect(nfds, rd, wr, ex, t, mask);
	return (int)hook_ret(rc);
}

/* glibc's exported aliases, and syscall()'s way in (hooks/syscall.c). */
HOOK_ALIAS(poll, __poll)
HOOK_ALIAS(select, __select)
HOOK_INTERNAL(poll)
HOOK_INTERNAL(ppoll)
HOOK_INTERNAL(select)
HOOK_INTERNAL(pselect)
