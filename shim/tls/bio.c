/*
 * bio.c - the BIO under every engine session: socket I/O through the real libc
 * functions (the process's read/write/send/recv are hooked), and a write side
 * that never makes OpenSSL retry.
 *
 * OpenSSL requires a retried SSL_write() to be given the same buffer again;
 * a program writing through a socket expects a partial write instead. So the
 * BIO's write always reports success: it sends what the kernel takes and
 * keeps the rest in the session (allocated only while non-empty) until
 * tls_bio_flush() drains it. tsess_write() flushes before encrypting more,
 * which bounds what is kept to about one record plus a handshake flight;
 * records OpenSSL writes while reading (replies to the peer's key update
 * requests, alerts) are bounded by TLS_OUT_HOLD: past it the BIO reads
 * nothing until the peer has taken our output.
 *
 * In gather mode (S->gather) the BIO only collects: the operation then sends
 * everything with one send(). Used where OpenSSL writes records the program
 * never wrote (handshake flights, tickets with the first data, key-update
 * replies): as separate segments, the first could draw a reset from a peer
 * that has closed and fail the rest, where the plain socket's one write
 * would have succeeded.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include "real.h"
#include "tls_int.h"

static BIO_METHOD *bio_method;

/*
 * Appends LEN bytes to S's kept ciphertext. Returns 0, or -1 if out of memory.
 * O(1) amortised: the buffer doubles, and sent bytes at its front are reclaimed
 * only when that makes room, so a peer whose every record draws a reply (key
 * update requests) never makes us copy everything kept on each append.
 */
static int out_append(struct tsess *s, const void *buf, size_t len)
{
	size_t keep = s->out_len - s->out_off;
	unsigned char *n;

	if (s->out_len + len > s->out_cap && s->out_off > 0) {
		memmove(s->out, s->out + s->out_off, keep);
		s->out_off = 0;
		s->out_len = keep;
	}
	if (s->out_len + len > s->out_cap) {
		size_t cap = s->out_cap > 0 ? s->out_cap : 4096;

		while (cap < s->out_len + len)
			cap *= 2;
		n = realloc(s->out, cap);
		if (n == NULL)
			return -1;
		s->out = n;
		s->out_cap = cap;
	}
	memcpy(s->out + s->out_len, buf, len);
	s->out_len += len;
	return 0;
}

static void out_clear(struct tsess *s)
{
	free(s->out);
	s->out = NULL;
	s->out_len = 0;
	s->out_off = 0;
	s->out_cap = 0;
}

/*
 * The socket calls of the program's own call (S->io, enum ts_io): a seccomp
 * filter that allows the program's read/write must allow ours (sshd's
 * pre-auth child, systemd's SystemCallFilter=). The socket is non-blocking
 * underneath, so read/write/readv/writev need no MSG_DONTWAIT. They cannot say
 * MSG_NOSIGNAL: under them a write to a socket shut for writing raises
 * SIGPIPE as the program's own write would; the engine writes nothing after
 * its close_notify or a reset it has seen, where that could happen.
 */
/*
 * write() or writev() (VEC) of IOV for a write the program did not make: SIGPIPE
 * is blocked around it and, if the call raised it (EPIPE), taken back, unless
 * the program had one pending already. Two rt_sigprocmask calls; rare: the
 * program's own writes and steady-state reads need none.
 */
static ssize_t quiet_write(const struct tsess *s, const struct iovec *iov, int vec)
{
	static const struct timespec now = {0, 0};
	const struct real_fns *r = tls_host.real;
	sigset_t pipe, old, pending;
	int had = 0, e;
	ssize_t n;

	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe, &old);
	if (sigismember(&old, SIGPIPE) && sigpending(&pending) == 0)
		had = sigismember(&pending, SIGPIPE);
	n = vec ? r->writev(s->fd, iov, 1) : r->write(s->fd, iov->iov_base, iov->iov_len);
	e = errno;
	if (n < 0 && e == EPIPE && !had)
		sigtimedwait(&pipe, NULL, &now);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	errno = e;
	return n;
}

static ssize_t io_send(const struct tsess *s, const void *buf, size_t len)
{
	const struct real_fns *r = tls_host.real;
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};

	switch (s->io & ~TS_IO_QUIET) {
	case TS_IO_RW:
		return (s->io & TS_IO_QUIET) ? quiet_write(s, &iov, 0) : r->write(s->fd, buf, len);
	case TS_IO_VEC:
		return (s->io & TS_IO_QUIET) ? quiet_write(s, &iov, 1) : r->writev(s->fd, &iov, 1);
	case TS_IO_MSG:
		return r->sendmsg(s->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
	default:
		return r->send(s->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
}

static ssize_t io_recv(const struct tsess *s, void *buf, size_t len)
{
	const struct real_fns *r = tls_host.real;
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};

	switch (s->io & ~TS_IO_QUIET) {
	case TS_IO_RW:
		return r->read(s->fd, buf, len);
	case TS_IO_VEC:
		return r->readv(s->fd, &iov, 1);
	case TS_IO_MSG:
		return r->recvmsg(s->fd, &m, MSG_DONTWAIT);
	default:
		return r->recv(s->fd, buf, len, MSG_DONTWAIT);
	}
}

/*
 * One send of LEN bytes (io_send()). A dead peer gives EPIPE here; the engine
 * never blocks, whatever the file status flags of the socket say. Returns
 * bytes sent, 0 if the kernel took nothing (EAGAIN), or -errno.
 */
static ssize_t send_some(struct tsess *s, const void *buf, size_t len)
{
	ssize_t n;

	do {
		n = io_send(s, buf, len);
	} while (n < 0 && errno == EINTR);
	if (n >= 0)
		return n;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return 0;
	return -errno;
}

/*
 * Sends S's kept ciphertext. Returns 0 when none is left (the buffer is then
 * freed), TS_WANT_WRITE if the kernel would not take all of it, or TS_SYSERR
 * with S->sys_errno set.
 */
int tls_bio_flush(struct tsess *s)
{
	while (s->out != NULL && s->out_off < s->out_len) {
		ssize_t n = send_some(s, s->out + s->out_off, s->out_len - s->out_off);

		if (n < 0) {
			s->sys_errno = (int)-n;
			return TS_SYSERR;
		}
		if (n == 0)
			return TS_WANT_WRITE;
		s->out_off += (size_t)n;
	}
	out_clear(s);
	return 0;
}

size_t tls_bio_kept(const struct tsess *s)
{
	return s->out != NULL ? s->out_len - s->out_off : 0;
}

int tls_bio_hold_tickets(struct tsess *s, size_t before)
{
	/* The newest bytes are the last written; out_append() may have moved the older ones. */
	size_t now = tls_bio_kept(s), n, from;

	if (now <= before)
		return 0;
	n = now - before;
	from = s->out_len - n;
	s->tickets = malloc(n);
	if (s->tickets == NULL)
		return -1;
	memcpy(s->tickets, s->out + from, n);
	s->tickets_len = n;
	s->out_len = from;
	if (s->out_off == s->out_len)
		out_clear(s);
	return 0;
}

/* Queues the held tickets ahead of what is written now. 0, or -1 (out of memory: still held). */
static int release_tickets(struct tsess *s)
{
	if (out_append(s, s->tickets, s->tickets_len) != 0)
		return -1;
	free(s->tickets);
	s->tickets = NULL;
	s->tickets_len = 0;
	return 0;
}

static int bio_write(BIO *b, const char *buf, size_t len, size_t *written)
{
	struct tsess *s = BIO_get_data(b);
	ssize_t n = 0;

	BIO_clear_retry_flags(b);
	*written = 0;
	/*
	 * Held tickets precede any record of ours (the first data, close_notify,
	 * a key-update reply, an alert): the peer decrypts records in the order
	 * of their sequence numbers, and the tickets took the first ones.
	 */
	if (s->tickets != NULL && release_tickets(s) != 0) {
		s->sys_errno = ENOMEM;
		return 0;
	}
	if (s->in_read)
		s->replies++;
	/* Kept bytes go first: new ones queue behind them to keep the stream in order. */
	if (s->out == NULL && !s->gather) {
		n = send_some(s, buf, len);
		if (n < 0) {
			s->sys_errno = (int)-n;
			return 0;
		}
	}
	if ((size_t)n < len && out_append(s, buf + n, len - (size_t)n) != 0) {
		s->sys_errno = ENOMEM;
		return 0;
	}
	*written = len;
	return 1;
}

static int bio_read(BIO *b, char *buf, size_t len, size_t *readbytes)
{
	struct tsess *s = BIO_get_data(b);
	ssize_t n;

	BIO_clear_retry_flags(b);
	*readbytes = 0;
	/*
	 * Back-pressure: while more than a few records of ours wait for the
	 * peer to take them, read nothing more from it, as the kernel stops
	 * acknowledging a peer that does not drain. Otherwise each record that
	 * draws a reply (KeyUpdate requests) would grow our output without bound.
	 */
	if (tls_bio_held(s) || s->replies > TLS_MAX_REPLIES) {
		BIO_set_retry_read(b);
		return 0;
	}
	do {
		n = io_recv(s, buf, len);
	} while (n < 0 && errno == EINTR);
	/* A short read emptied the kernel's queue: the caller need not ask again (more_input). */
	s->in_more = n > 0 && (size_t)n == len;
	if (n > 0) {
		*readbytes = (size_t)n;
		return 1;
	}
	if (n == 0) {
		/* TCP EOF: OpenSSL 3 reports it as SSL_R_UNEXPECTED_EOF_WHILE_READING. */
		BIO_set_flags(b, BIO_FLAGS_IN_EOF);
		return 0;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK) {
		BIO_set_retry_read(b);
		return 0;
	}
	s->sys_errno = errno;
	return 0;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct tsess *s;

	(void)num;
	(void)ptr;
	/* OpenSSL asks a dozen times per request: the session only when needed. */
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		/* Sending is tls_bio_flush()'s job, driven by the caller's readiness. */
		return 1;
	case BIO_CTRL_WPENDING:
		s = BIO_get_data(b);
		return s != NULL && s->out != NULL ? (long)(s->out_len - s->out_off) : 0;
	case BIO_CTRL_PENDING:
		return 0;
	case BIO_CTRL_EOF:
		return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
	default:
		return 0;
	}
}

static int bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static int bio_destroy(BIO *b)
{
	struct tsess *s = BIO_get_data(b);

	if (s != NULL)
		out_clear(s);
	BIO_set_data(b, NULL);
	return 1;
}

/*
 * Creates the BIO method. Returns 0, or -1 on allocation failure. Called once,
 * under init()'s once-guard.
 */
int tls_bio_init(void)
{
	BIO_METHOD *m;

	m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tlsshim socket");
	if (m == NULL)
		return -1;
	if (!BIO_meth_set_write_ex(m, bio_write) || !BIO_meth_set_read_ex(m, bio_read) ||
	    !BIO_meth_set_ctrl(m, bio_ctrl) || !BIO_meth_set_create(m, bio_create) ||
	    !BIO_meth_set_destroy(m, bio_destroy)) {
		BIO_meth_free(m);
		return -1;
	}
	bio_method = m;
	return 0;
}

/*
 * Returns a new BIO doing S's socket I/O on S->fd (read at each call, so
 * set_fd() needs no BIO change), or NULL on allocation failure. The BIO frees
 * S's kept ciphertext when it is freed.
 */
BIO *tls_bio_new(struct tsess *s)
{
	BIO *b = BIO_new(bio_method);

	if (b == NULL)
		return NULL;
	BIO_set_data(b, s);
	return b;
}
