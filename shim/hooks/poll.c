/*
 * poll.c - hooks: poll, ppoll, select, pselect.
 *
 * For a wrapped fd, readiness means plaintext: readable when a read would
 * return data or end-of-stream now (including data OpenSSL already holds
 * while the kernel socket is empty), not when only records that decode to
 * nothing arrived; during a handshake the wait is on the direction TLS
 * needs. Calls whose fds are all unwrapped go straight to libc.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>

#include "clock.h"
#include "conn.h"
#include "fdtab.h"
#include "hook.h"

extern void __chk_fail(void) __attribute__((noreturn));
int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen);
int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *t, const sigset_t *mask,
		size_t fdslen);

static int any_wrapped(const struct pollfd *fds, nfds_t n)
{
	for (nfds_t i = 0; i < n; i++)
		if (fds[i].fd >= 0 && fdtab_maybe(fds[i].fd))
			return 1;
	return 0;
}

/*
 * The poll loop over a set with wrapped fds. TIMEOUT_NS < 0 waits forever.
 * Returns the number of fds with events, or -errno.
 */
static int poll_wrapped(struct pollfd *fds, nfds_t n, int64_t timeout_ns, const sigset_t *mask)
{
	struct pollfd kstack[32 + CONN_OWN_DRIVE];
	struct conn *cstack[32], *own[CONN_OWN_DRIVE];
	short rstack[32];
	struct pollfd *k = kstack;
	struct conn **cs = cstack;
	short *ready = rstack;
	int64_t deadline = timeout_ns < 0 ? -1 : clock_ns() + timeout_ns;
	int count = 0;

	if (n > 32) {
		k = malloc((n + CONN_OWN_DRIVE) * sizeof(*k));
		cs = malloc(n * sizeof(*cs));
		ready = malloc(n * sizeof(*ready));
		if (k == NULL || cs == NULL || ready == NULL) {
			count = -ENOMEM;
			goto out_free;
		}
	}
	for (nfds_t i = 0; i < n; i++)
		cs[i] = fds[i].fd >= 0 ? fdtab_get(fds[i].fd) : NULL;
	for (;;) {
		struct timespec ts, *tsp = NULL;
		int nready = 0, kn, no;
		int64_t left;
		uint64_t hs = 0;

		for (nfds_t i = 0; i < n; i++) {
			k[i] = fds[i];
			k[i].revents = 0;
			ready[i] = 0;
			if (cs[i] == NULL)
				continue;
			ready[i] = conn_poll_prepare(cs[i], fds[i].events, &k[i].events);
			if (ready[i])
				nready++;
			/* A pending handshake's deadline caps the wait: the next round fails it. */
			uint64_t d = conn_deadline(cs[i]);
			if (d != 0 && (hs == 0 || d < hs))
				hs = d;
		}
		left = nready > 0 ? 0 : clock_wait_left(clock_ns(), deadline, hs);
		if (left >= 0) {
			ts.tv_sec = left / 1000000000;
			ts.tv_nsec = left % 1000000000;
			tsp = &ts;
		}
		/* This process's own handshakes move on while we wait (conn.h). */
		no = conn_own_collect(cs, n, own, k + n, CONN_OWN_DRIVE);
		kn = real.ppoll(k, n + (nfds_t)no, tsp, mask);
		if (kn < 0)
			count = -errno;
		conn_own_release(own, k + n, no);
		if (kn < 0)
			break;
		count = 0;
		for (nfds_t i = 0; i < n; i++) {
			short rev = k[i].revents;

			if (cs[i] != NULL)
				rev =
				    (short)(ready[i] | conn_poll_result(cs[i], fds[i].events, rev));
			fds[i].revents = rev;
			if (rev)
				count++;
		}
		/* Kernel events TLS consumed (handshake, tickets) are not the program's. */
		if (count > 0 || (deadline >= 0 && clock_ns() >= deadline))
			break;
	}
	for (nfds_t i = 0; i < n; i++)
		if (cs[i] != NULL)
			conn_put(cs[i]);
out_free:
	if (k != kstack) {
		free(k);
		free(cs);
		free(ready);
	}
	return count;
}

static int shim_poll(struct pollfd *fds, nfds_t n, int timeout)
{
	NEED_REAL(poll);
	if (likely(!any_wrapped(fds, n)))
		return real.poll(fds, n, timeout);
	return (int)hook_ret(
	    poll_wrapped(fds, n, timeout < 0 ? -1 : (int64_t)timeout * 1000000, NULL));
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
	NEED_REAL(ppoll);
	if (likely(!any_wrapped(fds, n)))
		return real.ppoll(fds, n, t, mask);
	if (t != NULL && (t->tv_sec < 0 || t->tv_nsec < 0 || t->tv_nsec >= 1000000000)) {
		errno = EINVAL;
		return -1;
	}
	return (int)hook_ret(poll_wrapped(
	    fds, n, t == NULL ? -1 : (int64_t)t->tv_sec * 1000000000 + t->tv_nsec, mask));
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

/* select/pselect over wrapped fds become poll_wrapped over the same fds. */
static int select_wrapped(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, int64_t timeout_ns,
			  const sigset_t *mask, int *handled)
{
	struct pollfd stack[64], *p = stack;
	int n = 0, wrapped = 0, rc, count = 0;

	*handled = 0;
	if (nfds < 0 || nfds > FD_SETSIZE)
		return 0;
	for (int fd = 0; fd < nfds; fd++) {
		if ((rd && FD_ISSET(fd, rd)) || (wr && FD_ISSET(fd, wr)) ||
		    (ex && FD_ISSET(fd, ex))) {
			n++;
			wrapped |= fdtab_maybe(fd);
		}
	}
	if (!wrapped)
		return 0;
	*handled = 1;
	if (n > 64) {
		p = malloc((size_t)n * sizeof(*p));
		if (p == NULL)
			return -ENOMEM;
	}
	n = 0;
	for (int fd = 0; fd < nfds; fd++) {
		short ev = 0;

		if (rd && FD_ISSET(fd, rd))
			ev |= POLLIN;
		if (wr && FD_ISSET(fd, wr))
			ev |= POLLOUT;
		if (ex && FD_ISSET(fd, ex))
			ev |= POLLPRI;
		if (ev)
			p[n++] = (struct pollfd){.fd = fd, .events = ev};
	}
	rc = poll_wrapped(p, (nfds_t)n, timeout_ns, mask);
	if (rc < 0)
		goto out;
	for (int i = 0; i < n; i++)
		if (p[i].revents & POLLNVAL) {
			rc = -EBADF;
			goto out;
		}
	if (rd)
		FD_ZERO(rd);
	if (wr)
		FD_ZERO(wr);
	if (ex)
		FD_ZERO(ex);
	/* select counts each set membership, as the kernel does. */
	for (int i = 0; i < n; i++) {
		short r = p[i].revents, ev = p[i].events;

		if ((ev & POLLIN) && (r & (POLLIN | POLLHUP | POLLERR)))
			FD_SET(p[i].fd, rd), count++;
		if ((ev & POLLOUT) && (r & (POLLOUT | POLLERR)))
			FD_SET(p[i].fd, wr), count++;
		if ((ev & POLLPRI) && (r & POLLPRI))
			FD_SET(p[i].fd, ex), count++;
	}
	rc = count;
out:
	if (p != stack)
		free(p);
	return rc;
}

HOOK int select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv)
{
	int64_t t = -1, start;
	int h, rc;

	NEED_REAL(select);
	if (tv != NULL) {
		if (tv->tv_sec < 0 || tv->tv_usec < 0) {
			errno = EINVAL;
			return -1;
		}
		t = (int64_t)tv->tv_sec * 1000000000 + (int64_t)tv->tv_usec * 1000;
	}
	start = clock_ns();
	rc = select_wrapped(nfds, rd, wr, ex, t, NULL, &h);
	if (!h)
		return real.select(nfds, rd, wr, ex, tv);
	/* Linux select() reports the time left. */
	if (tv != NULL) {
		int64_t left = t - (clock_ns() - start);

		if (left < 0)
			left = 0;
		tv->tv_sec = left / 1000000000;
		tv->tv_usec = (left % 1000000000) / 1000;
	}
	return (int)hook_ret(rc);
}

HOOK int pselect(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, const struct timespec *t,
		 const sigset_t *mask)
{
	int h, rc;

	NEED_REAL(pselect);
	if (t != NULL && (t->tv_sec < 0 || t->tv_nsec < 0 || t->tv_nsec >= 1000000000)) {
		errno = EINVAL;
		return -1;
	}
	rc =
	    select_wrapped(nfds, rd, wr, ex,
			   t == NULL ? -1 : (int64_t)t->tv_sec * 1000000000 + t->tv_nsec, mask, &h);
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
