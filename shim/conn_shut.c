/*
 * conn_shut.c - shutdown() and the end of a session when the program closes
 * its last fd: close_notify, what was written before the handshake, and
 * closing the way the plain socket would (FIN, or a reset over unread data).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "clock.h"
#include "conn_int.h"
#include "epreg.h"
#include "errmap.h"
#include "log.h"
#include "real.h"

/* Sends close_notify, waiting for the socket at most WAIT_MS if it is full. */
static void send_close_notify(struct conn *c, int wait_ms)
{
	struct pollfd p = {.fd = c->fd, .events = POLLOUT};
	int rc;

	if (c->state != CONN_OPEN || c->notify_sent || c->ts == NULL)
		return;
	c->notify_sent = 1;
	/* What the program held back was written before it closed. */
	while (c->hold_len > 0) {
		short want = 0;

		if (conn_hold_seal(c, 0, &want) != -EAGAIN || wait_ms <= 0)
			break;
		pthread_mutex_unlock(&c->lock);
		if (real.poll(&p, 1, wait_ms) <= 0)
			wait_ms = 0;
		pthread_mutex_lock(&c->lock);
		if (c->ts == NULL || c->closed || c->state != CONN_OPEN)
			return;
	}
	rc = E->close_notify(c->ts);
	while (rc == TS_WANT_WRITE && wait_ms > 0) {
		pthread_mutex_unlock(&c->lock);
		if (real.poll(&p, 1, wait_ms) <= 0)
			wait_ms = 0;
		pthread_mutex_lock(&c->lock);
		if (c->ts == NULL || c->closed)
			return;
		rc = E->flush(c->ts);
	}
	log_debug("%s: sent close_notify", conn_desc(c));
}

int conn_shutdown(struct conn *c, int how)
{
	int rc = 0, later = 0;

	pthread_mutex_lock(&c->lock);
	if ((how == SHUT_WR || how == SHUT_RDWR) && !c->wr_shut) {
		/*
		 * The handshake and what was written before it need the write side:
		 * close_notify and FIN follow them (out_flush), in a later call.
		 */
		if (c->early_open && c->state == CONN_HANDSHAKE)
			later = 1;
		else if (c->state == CONN_OPEN && conn_claim(c) == 0 && conn_out_pending(c) &&
			 conn_out_flush(c) != 0)
			later = 1;
		else if (c->state == CONN_OPEN && c->claim == CLAIM_OWNER)
			send_close_notify(c, conn_nonblock(c) ? 0 : 1000);
		c->shut_pending = later;
	}
	if (how == SHUT_WR || how == SHUT_RDWR)
		c->wr_shut = 1;
	if (how == SHUT_RD || how == SHUT_RDWR)
		c->rd_shut = 1;
	/* Not even SHUT_RD now: Linux then ends reads, and the handshake must read. */
	if (!later && real.shutdown(c->fd, how) < 0)
		rc = -errno;
	pthread_mutex_unlock(&c->lock);
	epreg_touch(c);
	return rc;
}

/*
 * A server program closes a connection whose handshake never ran (or did
 * not finish): the client's handshake records are unread, and closing with
 * unread bytes sends a reset where the plain socket would send FIN (the
 * client would see ECONNRESET instead of the end of the stream). They are
 * not the program's data: read them away first.
 */
static void drain_handshake(struct conn *c)
{
	char scratch[4096];

	if (c->role != TLS_ROLE_SERVER || c->state != CONN_HANDSHAKE)
		return;
	int io = atomic_load_explicit(&c->io_family, memory_order_relaxed);
	struct iovec v = {scratch, sizeof(scratch)};
	struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
	ssize_t r;

	/* The program's call family (a seccomp filter allows those); non-blocking underneath. */
	for (int i = 0; i < 16; i++) {
		if (io == TS_IO_RW)
			r = real.read(c->fd, scratch, sizeof(scratch));
		else if (io == TS_IO_VEC)
			r = real.readv(c->fd, &v, 1);
		else if (io == TS_IO_MSG)
			r = real.recvmsg(c->fd, &m, MSG_DONTWAIT);
		else
			r = real.recv(c->fd, scratch, sizeof(scratch), MSG_DONTWAIT);
		if (r <= 0)
			break;
	}
}

/*
 * The socket is about to close with bytes written before the handshake
 * completed, or a shutdown waiting for it: the plain socket would still send
 * them. Finish the handshake and send them, waiting at most WAIT_MS (the
 * lock is dropped while waiting); what cannot be sent by then is dropped,
 * never sent in cleartext.
 */
static void finish_early(struct conn *c, int wait_ms)
{
	uint64_t end = (uint64_t)clock_ns() + (uint64_t)wait_ms * 1000000u, now;

	while (!c->closed && (conn_early_held(c) > 0 || c->shut_pending)) {
		struct pollfd p = {.fd = c->fd};
		short want = 0;
		int rc = conn_step_ready(c, &want);

		if (rc == 0 && c->state == CONN_OPEN) {
			rc = conn_out_flush(c);
			if (rc != TS_WANT_WRITE && rc != TS_WANT_READ)
				break;
			want = rc == TS_WANT_WRITE ? POLLOUT : POLLIN;
		} else if (rc != -EAGAIN) {
			break;
		}
		now = (uint64_t)clock_ns();
		if (now >= end)
			break;
		p.events = want;
		pthread_mutex_unlock(&c->lock);
		real.poll(&p, 1, (int)((end - now + 999999) / 1000000));
		pthread_mutex_lock(&c->lock);
	}
	if (conn_early_held(c) > 0)
		log_warn(
		    "%s: closed before the handshake completed: %zu bytes written were not sent",
		    conn_desc(c), conn_early_held(c));
}

/*
 * The socket is about to close: read what the peer sent that the program
 * never read. TLS records it did not ask for (session tickets) must not turn
 * the close into a reset, as unread bytes in the kernel would; unread
 * application data must, as it would on the plain socket (RFC 1122 4.2.2.13).
 */
static void close_like_plain(struct conn *c)
{
	static const struct linger rst = {.l_onoff = 1, .l_linger = 0};
	char scratch[4096];
	size_t unread = c->ts != NULL ? E->pending(c->ts) : 0;

	if (c->state != CONN_OPEN || c->ts == NULL)
		return;
	for (int i = 0; i < 64 && !c->rd_eof; i++) {
		ssize_t r = E->read(c->ts, scratch, sizeof(scratch), 0);

		if (r <= 0)
			break;
		unread += (size_t)r;
	}
	if (unread > 0)
		real.setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
}

int conn_close_fd(struct conn *c, int fd)
{
	pthread_mutex_lock(&c->lock);
	for (int i = 0; i < c->nfds; i++) {
		if (c->fds[i] == fd) {
			c->fds[i] = c->fds[--c->nfds];
			break;
		}
	}
	if (c->nfds > 0) {
		/* Another fd of the same socket stays open: the session moves to it. */
		if (c->fd == fd) {
			c->fd = c->fds[0];
			if (c->ts != NULL)
				E->set_fd(c->ts, c->fd);
		}
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	/*
	 * The last fd in this process. After fork(), only the process that has
	 * claimed the session may end it: one that has not used it since must
	 * not end the session its sibling uses (a forking server's parent).
	 */
	if (c->claim == CLAIM_OWNER) {
		drain_handshake(c);
		finish_early(c, 1000);
		close_like_plain(c);
		send_close_notify(c, conn_nonblock(c) ? 0 : 1000);
	}
	c->closed = 1;
	conn_own_remove(c);
	pthread_mutex_unlock(&c->lock);
	return 1;
}

/*
 * Unmaps FD from C without a byte of I/O: its number now names another file.
 * When it was C's last fd the session ends silently (its socket is already
 * gone; close_notify would go into the new file). Returns 1 when it was the last.
 */
int conn_forget_fd(struct conn *c, int fd)
{
	int last;

	pthread_mutex_lock(&c->lock);
	for (int i = 0; i < c->nfds; i++) {
		if (c->fds[i] == fd) {
			c->fds[i] = c->fds[--c->nfds];
			break;
		}
	}
	last = c->nfds == 0;
	if (!last && c->fd == fd) {
		c->fd = c->fds[0];
		if (c->ts != NULL)
			E->set_fd(c->ts, c->fd);
	}
	if (last)
		c->closed = 1;
	pthread_mutex_unlock(&c->lock);
	return last;
}

int conn_disconnect(struct conn *c, int *fds, int max)
{
	int n;

	pthread_mutex_lock(&c->lock);
	/* Threads still inside the conn see the reset a plain socket would report. */
	c->state = CONN_FAILED;
	c->err = outcome_errno(OUTCOME_RESET);
	c->notify_sent = 1;
	n = c->nfds < max ? c->nfds : max;
	memcpy(fds, c->fds, (size_t)n * sizeof(int));
	pthread_mutex_unlock(&c->lock);
	return n;
}

void conn_unwrap_fd(struct conn *c, int fd)
{
	int fl = real.fcntl(fd, F_GETFL), off = 0;

	if (fl >= 0 && !conn_nonblock(c))
		real.fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	if (!conn_nodelay(c))
		real.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &off, sizeof(off));
	if (c->corked && !c->kcorked) {
		int on = 1;

		real.setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on));
	}
}
