/*
 * poll_emul.h - poll, ppoll, select and pselect over sets that hold wrapped
 * fds (epoll's counterpart is epreg.h).
 *
 * For a wrapped fd, readiness means plaintext: readable when a read would
 * return data or end-of-stream now (including data the session already holds
 * while the kernel socket is empty), not when only records that decode to
 * nothing arrived; during a handshake the wait is on the direction TLS needs.
 * Kernel events TLS consumed restart the wait with the time that is left.
 * Functions return a count or -errno; the hooks (hooks/poll.c) set errno.
 */
#ifndef TLSSHIM_POLL_EMUL_H
#define TLSSHIM_POLL_EMUL_H

#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/select.h>
#include <sys/time.h>
#include <time.h>

/* Whether any of FDS[0..N) is wrapped: one fdtab probe per fd, no lock. */
int poll_emul_any_wrapped(const struct pollfd *fds, nfds_t n);

/*
 * poll over FDS[0..N), at least one of them wrapped: waits at most
 * TIMEOUT_NS (< 0: forever) with MASK (NULL: the thread's own) installed
 * during the wait, as ppoll. Sets every revents; returns the number of fds
 * with events, 0 on time-out, or -errno (-EINTR, -ENOMEM).
 */
int poll_emul(struct pollfd *fds, nfds_t n, int64_t timeout_ns, const sigset_t *mask)
    __attribute__((warn_unused_result));

/*
 * A ppoll/pselect time-out: *NS = -1 for NULL (forever), else its value in
 * ns. Returns 0, or -EINVAL for a negative or unnormalised one, as the kernel.
 */
int poll_emul_timeout(const struct timespec *t, int64_t *ns) __attribute__((warn_unused_result));

/*
 * select/pselect: when a wrapped fd is among the first NFDS of the sets,
 * sets *HANDLED and does the call as poll_emul() over the same fds (each set
 * membership counts once, as the kernel counts); else *HANDLED = 0 and
 * nothing is touched: the caller hands the call to libc. NFDS outside
 * [0, FD_SETSIZE] is always the kernel's (its error, or sets larger than an
 * fd_set, which this emulation does not read). Returns the count or -errno
 * (-EBADF for a closed fd in a set).
 */
int poll_emul_select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, int64_t timeout_ns,
		     const sigset_t *mask, int *handled) __attribute__((warn_unused_result));

/*
 * select() itself: TV as select takes it (NULL: forever), checked as the
 * kernel checks it (-EINVAL, *HANDLED set, for a negative one) and updated
 * with the time left, as Linux does, when the call was handled.
 */
int poll_emul_select_tv(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv,
			int *handled) __attribute__((warn_unused_result));

#endif
