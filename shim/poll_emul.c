/*
 * poll_emul.c - poll/ppoll/select/pselect over sets with wrapped fds (see
 * poll_emul.h). The hooks in hooks/poll.c only check arguments and call here.
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
#include "poll_emul.h"
#include "real.h"

#define STACK_FDS        32 /* poll sets up to this size need no malloc */
#define STACK_SELECT_FDS 64

int poll_emul_any_wrapped(const struct pollfd *fds, nfds_t n)
{
	for (nfds_t i = 0; i < n; i++)
		if (fds[i].fd >= 0 && fdtab_maybe(fds[i].fd))
			return 1;
	return 0;
}

int poll_emul_timeout(const struct timespec *t, int64_t *ns)
{
	*ns = -1;
	if (t == NULL)
		return 0;
	if (t->tv_sec < 0 || t->tv_nsec < 0 || t->tv_nsec >= 1000000000)
		return -EINVAL;
	*ns = (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
	return 0;
}

/* The per-call arrays: the kernel's set (with room for our own handshakes), conns, readiness. */
struct round {
	struct pollfd *k;
	struct conn **cs;
	short *ready;
	struct pollfd kstack[STACK_FDS + CONN_OWN_DRIVE];
	struct conn *cstack[STACK_FDS];
	short rstack[STACK_FDS];
};

static int round_init(struct round *w, const struct pollfd *fds, nfds_t n)
{
	w->k = w->kstack;
	w->cs = w->cstack;
	w->ready = w->rstack;
	if (n > STACK_FDS) {
		w->k = malloc((n + CONN_OWN_DRIVE) * sizeof(*w->k));
		w->cs = malloc(n * sizeof(*w->cs));
		w->ready = malloc(n * sizeof(*w->ready));
		if (w->k == NULL || w->cs == NULL || w->ready == NULL)
			return -ENOMEM;
	}
	for (nfds_t i = 0; i < n; i++)
		w->cs[i] = fds[i].fd >= 0 ? fdtab_get(fds[i].fd) : NULL;
	return 0;
}

static void round_free(struct round *w, nfds_t n, int pinned)
{
	for (nfds_t i = 0; pinned && i < n; i++)
		if (w->cs[i] != NULL)
			conn_put(w->cs[i]);
	if (w->k != w->kstack) {
		free(w->k);
		free(w->cs);
		free(w->ready);
	}
}

/*
 * Fills the kernel's set from FDS and what each wrapped fd needs; returns how
 * many are ready without the kernel, and in *HS the earliest pending
 * handshake deadline (0: none), which caps the wait: the next round fails it.
 */
static int round_prepare(struct round *w, const struct pollfd *fds, nfds_t n, uint64_t *hs)
{
	int nready = 0;

	*hs = 0;
	for (nfds_t i = 0; i < n; i++) {
		uint64_t d;

		w->k[i] = fds[i];
		w->k[i].revents = 0;
		w->ready[i] = 0;
		if (w->cs[i] == NULL)
			continue;
		w->ready[i] = conn_poll_prepare(w->cs[i], fds[i].events, &w->k[i].events);
		if (w->ready[i])
			nready++;
		d = conn_deadline(w->cs[i]);
		if (d != 0 && (*hs == 0 || d < *hs))
			*hs = d;
	}
	return nready;
}

/* The wait of this round, ns (-1: forever): 0 when something is ready. */
static int64_t round_left(int64_t deadline, int nready, uint64_t hs)
{
	return nready > 0 ? 0 : clock_wait_left(clock_ns(), deadline, hs);
}

/* Turns the kernel's answer into the program's revents; returns how many fds have events. */
static int round_result(struct round *w, struct pollfd *fds, nfds_t n)
{
	int count = 0;

	for (nfds_t i = 0; i < n; i++) {
		short rev = w->k[i].revents;

		if (w->cs[i] != NULL)
			rev = (short)(w->ready[i] | conn_poll_result(w->cs[i], fds[i].events, rev));
		fds[i].revents = rev;
		if (rev)
			count++;
	}
	return count;
}

int poll_emul(struct pollfd *fds, nfds_t n, int64_t timeout_ns, const sigset_t *mask)
{
	struct round w;
	struct conn *own[CONN_OWN_DRIVE];
	int64_t deadline = timeout_ns < 0 ? -1 : clock_ns() + timeout_ns;
	int count = round_init(&w, fds, n);

	if (count != 0) {
		round_free(&w, n, 0);
		return count;
	}
	for (;;) {
		struct timespec ts, *tsp = NULL;
		int64_t left;
		uint64_t hs;
		int nready = round_prepare(&w, fds, n, &hs), kn, no;

		left = round_left(deadline, nready, hs);
		if (left >= 0) {
			ts.tv_sec = left / 1000000000;
			ts.tv_nsec = left % 1000000000;
			tsp = &ts;
		}
		/* This process's own handshakes move on while we wait (conn.h). */
		no = conn_own_collect(w.cs, n, own, w.k + n, CONN_OWN_DRIVE);
		kn = real.ppoll(w.k, n + (nfds_t)no, tsp, mask);
		if (kn < 0)
			count = -errno;
		conn_own_release(own, w.k + n, no);
		if (kn < 0)
			break;
		count = round_result(&w, fds, n);
		/* Kernel events TLS consumed (handshake, tickets) are not the program's. */
		if (count > 0 || (deadline >= 0 && clock_ns() >= deadline))
			break;
	}
	round_free(&w, n, 1);
	return count;
}

/* Whether a wrapped fd is in the sets; *N: how many fds are. */
static int select_scan(int nfds, const fd_set *rd, const fd_set *wr, const fd_set *ex, int *n)
{
	int wrapped = 0;

	*n = 0;
	for (int fd = 0; fd < nfds; fd++) {
		if ((rd && FD_ISSET(fd, rd)) || (wr && FD_ISSET(fd, wr)) ||
		    (ex && FD_ISSET(fd, ex))) {
			(*n)++;
			wrapped |= fdtab_maybe(fd);
		}
	}
	return wrapped;
}

/* The sets as a poll set: read POLLIN, write POLLOUT, except POLLPRI. Returns its size. */
static int select_to_poll(int nfds, const fd_set *rd, const fd_set *wr, const fd_set *ex,
			  struct pollfd *p)
{
	int n = 0;

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
	return n;
}

/* The poll answer back into the sets; select counts each set membership, as the kernel. */
static int poll_to_select(const struct pollfd *p, int n, fd_set *rd, fd_set *wr, fd_set *ex)
{
	int count = 0;

	for (int i = 0; i < n; i++)
		if (p[i].revents & POLLNVAL)
			return -EBADF;
	if (rd)
		FD_ZERO(rd);
	if (wr)
		FD_ZERO(wr);
	if (ex)
		FD_ZERO(ex);
	for (int i = 0; i < n; i++) {
		short r = p[i].revents, ev = p[i].events;

		if ((ev & POLLIN) && (r & (POLLIN | POLLHUP | POLLERR)))
			FD_SET(p[i].fd, rd), count++;
		if ((ev & POLLOUT) && (r & (POLLOUT | POLLERR)))
			FD_SET(p[i].fd, wr), count++;
		if ((ev & POLLPRI) && (r & POLLPRI))
			FD_SET(p[i].fd, ex), count++;
	}
	return count;
}

int poll_emul_select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, int64_t timeout_ns,
		     const sigset_t *mask, int *handled)
{
	struct pollfd stack[STACK_SELECT_FDS], *p = stack;
	int n, rc;

	*handled = 0;
	if (nfds < 0 || nfds > FD_SETSIZE || !select_scan(nfds, rd, wr, ex, &n))
		return 0;
	*handled = 1;
	if (n > STACK_SELECT_FDS) {
		p = malloc((size_t)n * sizeof(*p));
		if (p == NULL)
			return -ENOMEM;
	}
	n = select_to_poll(nfds, rd, wr, ex, p);
	rc = poll_emul(p, (nfds_t)n, timeout_ns, mask);
	if (rc >= 0)
		rc = poll_to_select(p, n, rd, wr, ex);
	if (p != stack)
		free(p);
	return rc;
}

int poll_emul_select_tv(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv,
			int *handled)
{
	int64_t t = -1, start, left;
	int rc;

	if (tv != NULL) {
		if (tv->tv_sec < 0 || tv->tv_usec < 0) {
			*handled = 1;
			return -EINVAL;
		}
		t = (int64_t)tv->tv_sec * 1000000000 + (int64_t)tv->tv_usec * 1000;
	}
	start = clock_ns();
	rc = poll_emul_select(nfds, rd, wr, ex, t, NULL, handled);
	if (!*handled || tv == NULL)
		return rc;
	/* Linux select() reports the time left. */
	left = t - (clock_ns() - start);
	if (left < 0)
		left = 0;
	tv->tv_sec = left / 1000000000;
	tv->tv_usec = (left % 1000000000) / 1000;
	return rc;
}
