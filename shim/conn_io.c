/*
 * conn_io.c - the program's reads and writes on a wrapped connection: the
 * steps (under c->lock, never waiting), then the operations that loop over a
 * step and a wait (conn_wait.c) to behave as the plain socket would.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "conn_int.h"
#include "epreg.h"
#include "errmap.h"
#include "log.h"
#include "real.h"
#include "sigpipe.h"
#include "starttls.h"
#include "stats.h"

/* The peer ended the stream: reads give 0 from now on. */
static void note_eof(struct conn *c, ssize_t how)
{
	if (c->rd_eof)
		return;
	c->rd_eof = 1;
	if (how == TS_CLOSED)
		log_debug("%s: peer closed the connection (close_notify)", conn_desc(c));
	else
		log_info("%s: peer closed the connection without close_notify", conn_desc(c));
}

/*
 * The program's latest call family (conn_set_io), for the session's socket
 * calls; unless WRITING (the program's own write), writes the session makes
 * must not raise SIGPIPE (TS_IO_QUIET: write()/writev() cannot say
 * MSG_NOSIGNAL), which they cannot while the program ignores it (sigpipe.h).
 * Returns the family.
 */
static int use_io_family(struct conn *c, int writing)
{
	int io = atomic_load_explicit(&c->io_family, memory_order_relaxed);
	int quiet = !writing && (io == TS_IO_RW || io == TS_IO_VEC) && !sigpipe_ignored();

	if (c->ts != NULL)
		E->set_io(c->ts, io | (quiet ? TS_IO_QUIET : 0));
	return io;
}

/* CONN_PLAIN: the program's read on the cleartext socket (non-blocking underneath). */
static ssize_t recv_plain(struct conn *c, int io, void *buf, size_t len, int flags, short *want)
{
	ssize_t r;

	/* read() is recv(MSG_DONTWAIT) on a non-blocking socket. */
	if (io == TS_IO_RW && flags == 0)
		r = real.read(c->fd, buf, len);
	else
		r = real.recv(c->fd, buf, len, flags | MSG_DONTWAIT);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		*want = POLLIN;
		return -EAGAIN;
	}
	return r < 0 ? -errno : r;
}

/*
 * A socket returns everything queued, up to LEN; TLS hands out one record at
 * a time. After DONE bytes, take more records while they can be had without
 * waiting: decrypted, buffered by OpenSSL's read-ahead, or still in the
 * kernel (the last socket read filled its buffer). Event loops take a short
 * read beside a hang-up for the end of the stream. Returns the new total.
 */
static size_t recv_more(struct conn *c, void *buf, size_t done, size_t len)
{
	while (done < len && E->more_input(c->ts)) {
		ssize_t r = E->read(c->ts, (char *)buf + done, len - done, 0);

		if (r <= 0) {
			/* The end of the stream found on the way is the next read's 0. */
			if (r == TS_CLOSED || r == TS_EOF)
				note_eof(c, r);
			break;
		}
		done += (size_t)r;
	}
	return done;
}

ssize_t conn_step_recv(struct conn *c, void *buf, size_t len, int flags, short *want)
{
	int io = use_io_family(c, 0), rc = conn_step_ready(c, want);
	ssize_t r;

	if (rc != 0)
		return c->hs_hangup ? 0 : rc;
	if (conn_greet_pending(c) > 0 && !c->rd_shut)
		return len == 0 ? 0 : conn_greet_read(c, buf, len, flags);
	if (c->state == CONN_PLAIN && c->st != NULL && c->role == TLS_ROLE_SERVER &&
	    c->st->proto == POLICY_STARTTLS_SMTP) {
		r = conn_smtp_srv_recv(c, buf, len, flags, want);
		return r == -EALREADY ? conn_step_recv(c, buf, len, flags, want) : r;
	}
	if (c->state == CONN_PLAIN)
		return recv_plain(c, io, buf, len, flags, want);
	if (c->rd_eof || c->rd_shut || len == 0)
		return 0;
	conn_hold_release(c, NULL); /* a request held back must go before waiting for its answer */
	if (conn_out_pending(c))
		(void)conn_out_flush(c); /* best effort: a fatal error fails the read too */
	r = E->read(c->ts, buf, len, (flags & MSG_PEEK) != 0);
	if (r > 0) {
		size_t done = (size_t)r;

		if (!(flags & MSG_PEEK))
			done = recv_more(c, buf, done, len);
		if (!(flags & MSG_PEEK))
			stats_bytes_in(c->rule, done);
		return (ssize_t)done;
	}
	switch (r) {
	case TS_WANT_READ:
		/* Bytes the socket could not take yet must reach the peer to be answered. */
		*want = c->hold_len > 0 || conn_out_pending(c) ? POLLIN | POLLOUT : POLLIN;
		return -EAGAIN;
	case TS_WANT_WRITE:
		*want = POLLOUT;
		return -EAGAIN;
	case TS_CLOSED:
	case TS_EOF:
		note_eof(c, r);
		return 0;
	case TS_SYSERR:
		rc = E->sys_errno(c->ts);
		c->rd_eof = 1;
		return -engine_errno(TS_SYSERR, rc);
	default:
		return conn_fail_rc(c, (int)r, "read");
	}
}

/*
 * Seals LEN bytes into records: bytes taken, -EAGAIN (with *want) or -errno.
 * KERNEL_SIGNALS: the session writes with write()/writev(), which raise SIGPIPE.
 */
static ssize_t engine_write(struct conn *c, const void *buf, size_t len, int kernel_signals,
			    short *want)
{
	ssize_t r = E->write(c->ts, buf, len);
	int rc;

	if (r > 0) {
		stats_bytes_out(c->rule, (size_t)r);
		return r;
	}
	switch (r) {
	case TS_WANT_WRITE:
		*want = POLLOUT;
		return -EAGAIN;
	case TS_WANT_READ:
		*want = POLLIN;
		return -EAGAIN;
	case TS_SYSERR:
		rc = E->sys_errno(c->ts);
		/* write()/writev() raised SIGPIPE already, as on the plain socket. */
		if (rc == EPIPE && kernel_signals)
			c->epipe_signalled = 1;
		return -engine_errno(TS_SYSERR, rc);
	default:
		return conn_fail_rc(c, (int)r, "write");
	}
}

#define HOLD_MAX 16384 /* the plaintext of one record (RFC 8446 section 5.1) */

/*
 * One spare record buffer per process: gathering a response takes it and
 * sealing gives it back, instead of a 16 KB malloc and free per response
 * (large-bin work, about 400 instructions). An idle connection holds none.
 */
static _Atomic(unsigned char *) hold_spare;

static unsigned char *hold_alloc(void)
{
	unsigned char *b = atomic_exchange_explicit(&hold_spare, NULL, memory_order_acq_rel);

	return b != NULL ? b : malloc(HOLD_MAX);
}

static void hold_free(unsigned char *b)
{
	free(atomic_exchange_explicit(&hold_spare, b, memory_order_acq_rel));
}

/*
 * Seals the held bytes (an OPEN connection, c->lock held): 0 when none are
 * left, -EAGAIN (with *want) while the socket cannot take them, or -errno.
 */
int conn_hold_seal(struct conn *c, int kernel_signals, short *want)
{
	ssize_t r;

	while (c->hold_len > 0) {
		r = engine_write(c, c->hold, c->hold_len, kernel_signals, want);
		if (r < 0)
			return (int)r;
		c->hold_len -= (size_t)r;
		memmove(c->hold, c->hold + r, c->hold_len);
	}
	hold_free(c->hold);
	c->hold = NULL;
	return 0;
}

/*
 * The program said more is coming (MORE: TCP_CORK or MSG_MORE), or bytes are
 * held from when it did: gather into one record up to the record size instead
 * of one record per write (nginx writes the headers, then sendfile()s the body,
 * under TCP_CORK). Held bytes count as sent, as in a corked socket's buffer.
 * Returns bytes taken, -EAGAIN (with *want) or -errno.
 */
static ssize_t send_gathered(struct conn *c, const char *buf, size_t len, int more,
			     int kernel_signals, short *want)
{
	size_t n;
	int rc;

	if (c->hold_len == HOLD_MAX) {
		rc = conn_hold_seal(c, kernel_signals, want);
		if (rc != 0)
			return rc;
	}
	/* Whole records need no copy. */
	if (c->hold_len == 0 && len >= HOLD_MAX)
		return engine_write(c, buf, more ? len - len % HOLD_MAX : len, kernel_signals,
				    want);
	if (c->hold == NULL) {
		c->hold = hold_alloc();
		if (c->hold == NULL)
			return engine_write(c, buf, len, kernel_signals, want);
	}
	n = len < HOLD_MAX - c->hold_len ? len : HOLD_MAX - c->hold_len;
	memcpy(c->hold + c->hold_len, buf, n);
	c->hold_len += n;
	if (more && c->hold_len < HOLD_MAX)
		return (ssize_t)n;
	rc = conn_hold_seal(c, kernel_signals, want);
	return rc == 0 || rc == -EAGAIN ? (ssize_t)n : rc;
}

/*
 * starttls=postgres, client: the program's first message (c->lock held, OPEN).
 * Its SSLRequest/GSSENCRequest is answered 'N' by the shim (stls_pg_filter);
 * other bytes go into the session as they are. Returns as send_gathered().
 */
static ssize_t send_pg_filtered(struct conn *c, const char *buf, size_t len, int more,
				int kernel_signals, short *want)
{
	size_t fwd, take;
	ssize_t r;

	/* Room first: bytes the filter gives back must not be lost to a failed malloc. */
	if (c->hold == NULL) {
		c->hold = hold_alloc();
		if (c->hold == NULL)
			return -ENOMEM;
	}
	take = stls_pg_filter(c->st, buf, len, &fwd);
	if (fwd > 0) {
		memcpy(c->hold + c->hold_len, c->st->pbuf, fwd); /* hold_len <= 8 until now */
		c->hold_len += fwd;
		c->st->pbuf_len = 0;
	}
	if (!c->st->pg_filter && conn_greet_pending(c) == 0) {
		free(c->st);
		c->st = NULL;
	}
	if (take == len) {
		if (fwd > 0 && !more) {
			r = conn_hold_seal(c, kernel_signals, want);
			if (r < 0 && r != -EAGAIN)
				return r;
		}
		return (ssize_t)take;
	}
	r = send_gathered(c, buf + take, len - take, more, kernel_signals, want);
	if (r < 0)
		return take > 0 ? (ssize_t)take : r;
	return r + (ssize_t)take;
}

static ssize_t step_send_io(struct conn *c, const void *buf, size_t len, int flags, short *want)
{
	int io = use_io_family(c, 1), rc = conn_step_ready(c, want);
	int kernel_signals = io == TS_IO_RW || io == TS_IO_VEC; /* no MSG_NOSIGNAL there */
	int more = c->corked || (flags & MSG_MORE);
	ssize_t r;

	c->epipe_signalled = 0;
	if (c->hs_hangup && !c->hangup_wrote && !c->wr_shut) {
		c->hangup_wrote = len > 0; /* see hangup() */
		return (ssize_t)len;
	}
	/* Connected for the program before the handshake: keep the bytes until the keys exist. */
	if (rc == -EAGAIN && c->early_open && c->state == CONN_HANDSHAKE)
		return c->wr_shut ? -outcome_errno(OUTCOME_HUNGUP) : conn_early_put(c, buf, len);
	if (rc != 0)
		return rc;
	if (c->state == CONN_PLAIN && conn_smtp_filtering(c)) {
		r = conn_smtp_srv_send(c, buf, len, want);
		if (r != -EALREADY)
			return r;
	}
	if (c->state == CONN_PLAIN) {
		if (io == TS_IO_RW && flags == 0)
			r = real.write(c->fd, buf, len);
		else
			r = real.send(c->fd, buf, len, flags | MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r < 0 && errno == EPIPE && io == TS_IO_RW && flags == 0)
			c->epipe_signalled = 1;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			*want = POLLOUT;
			return -EAGAIN;
		}
		return r < 0 ? -errno : r;
	}
	if (c->wr_shut)
		return -outcome_errno(OUTCOME_HUNGUP);
	if (len == 0)
		return 0;
	/* In order: what was written before the handshake goes first. */
	if (conn_early_held(c) > 0) {
		rc = conn_out_flush(c);
		if (rc == TS_WANT_WRITE || rc == TS_WANT_READ) {
			*want = rc == TS_WANT_WRITE ? POLLOUT : POLLIN;
			return -EAGAIN;
		}
		if (rc == TS_SYSERR) {
			rc = E->sys_errno(c->ts);
			return -engine_errno(TS_SYSERR, rc);
		}
		if (rc != 0)
			return conn_fail_rc(c, rc, "write");
	}
	if (c->st != NULL && c->st->pg_filter)
		return send_pg_filtered(c, buf, len, more, kernel_signals, want);
	if (more || c->hold_len > 0)
		return send_gathered(c, buf, len, more, kernel_signals, want);
	return engine_write(c, buf, len, kernel_signals, want);
}

/* The program's write: only its own writes may raise SIGPIPE (use_io_family). */
static ssize_t step_send(struct conn *c, const void *buf, size_t len, int flags, short *want)
{
	ssize_t r = step_send_io(c, buf, len, flags, want);

	use_io_family(c, 0);
	return r;
}

/* Before the program reads or waits: what it held back goes out (c->lock held). */
void conn_hold_release(struct conn *c, short *kev)
{
	short want = 0;

	if (c->hold_len > 0 && c->state == CONN_OPEN && conn_hold_seal(c, 0, &want) == -EAGAIN &&
	    kev != NULL)
		*kev |= want;
}

int conn_cork(const struct conn *c)
{
	return c->corked;
}

int conn_set_cork(struct conn *c, int on)
{
	int rc = 0;

	pthread_mutex_lock(&c->lock);
	c->corked = on != 0;
	/* Cleartext (auto) goes to the kernel as it is; so does undoing that. */
	if (c->state == CONN_PLAIN || c->state == CONN_AUTO_DETECT || c->kcorked) {
		if (real.setsockopt(c->fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on)) != 0)
			rc = -errno;
		else
			c->kcorked = on != 0;
	}
	if (!on && rc == 0 && c->state == CONN_OPEN && conn_claim(c) == 0) {
		conn_hold_release(c, NULL);
		E->flush(c->ts);
	}
	pthread_mutex_unlock(&c->lock);
	epreg_touch(c);
	return rc;
}

static void raise_sigpipe(int flags)
{
	if (!(flags & MSG_NOSIGNAL))
		pthread_kill(pthread_self(), SIGPIPE);
}

static ssize_t recv_blocking(struct conn *c, void *buf, size_t len, int flags)
{
	struct conn_waiter w = {.opt = SO_RCVTIMEO};
	int nonblock = (flags & MSG_DONTWAIT) || conn_nonblock(c);
	char scratch[4096];
	size_t done = 0;
	ssize_t r;
	int rc;

	for (;;) {
		short want = 0;
		void *dst = (char *)buf + done;
		size_t n = len - done;

		/* MSG_TRUNC on TCP discards the bytes instead of copying them. */
		if (flags & MSG_TRUNC) {
			dst = scratch;
			if (n > sizeof(scratch))
				n = sizeof(scratch);
		}
		pthread_mutex_lock(&c->lock);
		r = conn_step_recv(c, dst, n, flags, &want);
		pthread_mutex_unlock(&c->lock);
		if (r > 0) {
			done += (size_t)r;
			if (!(flags & MSG_WAITALL) || (flags & MSG_PEEK) || done == len)
				return (ssize_t)done;
			continue;
		}
		if (r == 0)
			return (ssize_t)done;
		if (r != -EAGAIN || nonblock)
			return done > 0 ? (ssize_t)done : r;
		rc = conn_wait(c, want, &w);
		if (rc < 0)
			return done > 0 ? (ssize_t)done : rc;
	}
}

/*
 * ALL: the bytes are already consumed from somewhere else (sendfile, splice):
 * wait until the engine has taken all of them even when the program's socket
 * is non-blocking or its SO_SNDTIMEO expires.
 */
static ssize_t send_blocking(struct conn *c, const void *buf, size_t len, int flags, int all)
{
	struct conn_waiter w = {.opt = SO_SNDTIMEO};
	int nonblock = (flags & MSG_DONTWAIT) || conn_nonblock(c);
	size_t done = 0;
	ssize_t r;
	int rc, signalled;

	for (;;) {
		short want = 0;

		pthread_mutex_lock(&c->lock);
		r = step_send(c, (const char *)buf + done, len - done, flags, &want);
		if (r > 0) {
			done += (size_t)r;
			/* A socket accepts what fits: keep going while the engine takes data. */
			while (done < len) {
				r = step_send(c, (const char *)buf + done, len - done, flags,
					      &want);
				if (r <= 0)
					break;
				done += (size_t)r;
			}
		}
		signalled = c->epipe_signalled;
		pthread_mutex_unlock(&c->lock);
		if (done == len && len > 0)
			break;
		if (r == -EPIPE && !signalled)
			raise_sigpipe(flags);
		if (r != -EAGAIN && r < 0)
			return done > 0 ? (ssize_t)done : r;
		if (r == 0 && len == 0)
			return 0;
		if (nonblock && !all)
			return done > 0 ? (ssize_t)done : -EAGAIN;
		rc = conn_wait(c, want, &w);
		if (rc == -EAGAIN && all) {
			w.deadline = -1; /* the program's time-out cannot give the bytes back */
			continue;
		}
		if (rc < 0)
			return done > 0 ? (ssize_t)done : rc;
	}
	/* Blocking: like a socket, return once the kernel has it (flush our record). */
	while (!nonblock) {
		short want = 0;

		pthread_mutex_lock(&c->lock);
		rc = 0;
		if (c->state == CONN_OPEN && c->ts != NULL && conn_claim(c) == 0) {
			/* Bytes held back on purpose stay; the ones the socket refused go. */
			if (!c->corked && !(flags & MSG_MORE))
				rc = conn_hold_seal(c, 0, &want) == -EAGAIN ? TS_WANT_WRITE : 0;
			if (rc == 0)
				rc = conn_out_flush(c);
		}
		pthread_mutex_unlock(&c->lock);
		if (rc != TS_WANT_WRITE)
			break;
		if (conn_wait(c, POLLOUT, &w) < 0)
			break;
	}
	return (ssize_t)done;
}

ssize_t conn_recv(struct conn *c, void *buf, size_t len, int flags)
{
	ssize_t r = recv_blocking(c, buf, len, flags);

	/*
	 * A short read says "drained" to an edge-triggered program as EAGAIN
	 * does: over TCP it returns less only when the socket holds no more, and
	 * nginx waits for the next edge there. The shim returns one record at a
	 * time, so it may still hold the next: that is then news to report.
	 */
	if (r == -EAGAIN || (r > 0 && (size_t)r < len && !(flags & MSG_PEEK)))
		atomic_fetch_add_explicit(&c->rd_eagain, 1, memory_order_relaxed);
	epreg_touch(c); /* what it read or left behind changes readiness */
	return r;
}

static ssize_t send_counted(struct conn *c, const void *buf, size_t len, int flags, int all)
{
	ssize_t r = send_blocking(c, buf, len, flags, all);

	if (r == -EAGAIN || (r >= 0 && (size_t)r < len))
		atomic_fetch_add_explicit(&c->wr_eagain, 1, memory_order_relaxed);
	epreg_touch(c);
	return r;
}

ssize_t conn_send(struct conn *c, const void *buf, size_t len, int flags)
{
	return send_counted(c, buf, len, flags, 0);
}

ssize_t conn_send_all(struct conn *c, const void *buf, size_t len, int flags)
{
	return send_counted(c, buf, len, flags, 1);
}

/*
 * A peek into several buffers: one peek of their total (at most TS_PEEK_MAX),
 * scattered. Peeking each buffer in turn would show every one the same bytes.
 */
static ssize_t recvv_peek(struct conn *c, const struct iovec *iov, int iovcnt, int flags)
{
	size_t want = 0, off = 0;
	unsigned char *tmp;
	ssize_t r;

	for (int i = 0; i < iovcnt && want < TS_PEEK_MAX; i++)
		want += iov[i].iov_len;
	if (want > TS_PEEK_MAX)
		want = TS_PEEK_MAX;
	if (want == 0)
		return conn_recv(c, NULL, 0, flags);
	tmp = malloc(want);
	if (tmp == NULL)
		return -ENOMEM;
	r = conn_recv(c, tmp, want, flags);
	for (int i = 0; i < iovcnt && r > 0 && off < (size_t)r; i++) {
		size_t n = (size_t)r - off < iov[i].iov_len ? (size_t)r - off : iov[i].iov_len;

		memcpy(iov[i].iov_base, tmp + off, n);
		off += n;
	}
	free(tmp);
	return r;
}

ssize_t conn_recvv(struct conn *c, const struct iovec *iov, int iovcnt, int flags)
{
	ssize_t total = 0;

	if ((flags & MSG_PEEK) && iovcnt > 1)
		return recvv_peek(c, iov, iovcnt, flags);
	for (int i = 0; i < iovcnt; i++) {
		ssize_t r;

		if (iov[i].iov_len == 0)
			continue;
		/* After the first bytes, take only what is already decrypted. */
		r = conn_recv(c, iov[i].iov_base, iov[i].iov_len,
			      total > 0 ? (flags | MSG_DONTWAIT) & ~MSG_WAITALL : flags);
		if (r < 0)
			return total > 0 ? total : r;
		total += r;
		if ((size_t)r < iov[i].iov_len || r == 0)
			break;
	}
	return total;
}

ssize_t conn_sendv(struct conn *c, const struct iovec *iov, int iovcnt, int flags)
{
	char small[4096];
	size_t sum = 0;
	ssize_t total = 0;

	/* Bounded as it goes: lengths may add up past SIZE_MAX (the hooks checked each). */
	for (int i = 0; i < iovcnt && sum <= sizeof(small); i++)
		sum += iov[i].iov_len <= sizeof(small) ? iov[i].iov_len : sizeof(small) + 1;
	/* Small gathers (headers + body) go out as one record, not one per piece. */
	if (sum <= sizeof(small) && iovcnt > 1) {
		size_t off = 0;

		for (int i = 0; i < iovcnt; i++) {
			memcpy(small + off, iov[i].iov_base, iov[i].iov_len);
			off += iov[i].iov_len;
		}
		return conn_send(c, small, sum, flags);
	}
	/* Larger ones: the pieces but the last say more is coming (one record up to 16 KB). */
	while (iovcnt > 0 && iov[iovcnt - 1].iov_len == 0)
		iovcnt--;
	for (int i = 0; i < iovcnt; i++) {
		int f = flags | (i < iovcnt - 1 ? MSG_MORE : 0);
		ssize_t r;

		if (iov[i].iov_len == 0)
			continue;
		r = conn_send(c, iov[i].iov_base, iov[i].iov_len,
			      total > 0 ? f | MSG_DONTWAIT | MSG_NOSIGNAL : f);
		if (r < 0)
			return total > 0 ? total : r;
		total += r;
		if ((size_t)r < iov[i].iov_len)
			break;
	}
	return total;
}

int conn_readable_bytes(struct conn *c)
{
	short want;
	int n = 0;

	pthread_mutex_lock(&c->lock);
	if (conn_greet_pending(c) > 0 && (c->state == CONN_OPEN || c->state == CONN_PLAIN)) {
		/* Only those: the session's bytes come after them. */
		n = (int)conn_greet_pending(c);
		pthread_mutex_unlock(&c->lock);
		return n;
	}
	if (c->state == CONN_PLAIN) {
		pthread_mutex_unlock(&c->lock);
		return -ENOTTY; /* caller asks the kernel */
	}
	if (c->state == CONN_OPEN && !c->rd_eof) {
		/* Decrypt what has arrived, so the count is what a read would return. */
		(void)conn_step_recv(c, NULL, TS_PEEK_MAX, MSG_PEEK, &want); /* errors: the state */
		n = c->state == CONN_OPEN ? (int)E->pending(c->ts) : 0;
		/*
		 * At most TS_PEEK_MAX is decrypted to count: the kernel may hold
		 * more, whose edge epoll gave already. Its entry is re-armed at the
		 * next wait, so that the program that read N hears of the rest.
		 */
		if (c->state == CONN_OPEN && E->more_input(c->ts))
			atomic_store_explicit(&c->et_rearm, 1, memory_order_relaxed);
	}
	pthread_mutex_unlock(&c->lock);
	/*
	 * The program now knows how much there is: nginx (epoll, edge-triggered)
	 * reads exactly this many bytes, then waits for the next edge without a
	 * read that ends short or in EAGAIN. What the shim holds beyond the count
	 * then (it arrived meanwhile) is news to report, as it would be over TCP.
	 */
	atomic_fetch_add_explicit(&c->rd_eagain, 1, memory_order_relaxed);
	epreg_touch(c); /* the peek moved bytes from the kernel into the engine */
	return n;
}
