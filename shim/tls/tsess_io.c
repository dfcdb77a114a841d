/*
 * tsess_io.c - a session's reads and writes: OpenSSL run until it needs the
 * socket, plaintext a peek decrypted ahead, the server's tickets with its
 * first data, close_notify, and what is pending either way. Each runs on an
 * empty ERR queue (tsess.c's ERRQ_OP wrapper) and leaves it empty.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "tls_int.h"

#define TS_MAX_RECORD 16384 /* plaintext per write: one record (RFC 8446 section 5.1) */

/*
 * One SSL_read_ex() (SSL_peek_ex() if PEEK) of at most LEN bytes into BUF: bytes
 * > 0, or TS_*. Like every engine operation it runs on an empty ERR queue (the
 * ERRQ_OP wrapper), and leaves it empty.
 */
static ssize_t ssl_read_once(struct tsess *s, void *buf, size_t len, int peek)
{
	size_t n = 0;
	int ret, rc;

	/* Best effort: a read may follow output OpenSSL queued (tickets, key updates). */
	if (s->out != NULL && tls_bio_flush(s) == TS_SYSERR)
		return TS_SYSERR;
	/* Plaintext already decrypted is the program's; more from the peer waits (bio.c). */
	if (tls_bio_held(s) && SSL_pending(s->ssl) <= 0)
		return TS_WANT_WRITE;
	s->sys_errno = 0;
	s->gather = 1;
	s->in_read = 1;
	ret = peek ? SSL_peek_ex(s->ssl, buf, len, &n) : SSL_read_ex(s->ssl, buf, len, &n);
	s->in_read = 0;
	s->gather = 0;
	/* Records the read produced (a key-update reply) go out now, in one piece. */
	if (s->out != NULL)
		tls_bio_flush(s);
	if (ret == 1) {
		/* Each record of application data read earns the peer one reply. */
		size_t earned = 1 + n / TS_MAX_RECORD;

		if (!peek)
			s->replies = s->replies > earned ? s->replies - (unsigned)earned : 0;
		tls_err_clear();
		return (ssize_t)n;
	}
	rc = tsess_result(s, ret);
	if (rc == TS_WANT_READ && s->replies > TLS_MAX_REPLIES) {
		tsess_set_reason(s,
				 "the peer sent more than %d records that need a reply beyond "
				 "one per record of data (a key update flood)",
				 TLS_MAX_REPLIES);
		s->failed = 1;
		return TS_FATAL;
	}
	/* Held back by our own unsent output: wait until the socket takes it. */
	if (rc == TS_WANT_READ && tls_bio_held(s))
		return TS_WANT_WRITE;
	return rc;
}

static void pt_clear(struct tsess *s)
{
	free(s->pt);
	s->pt = NULL;
	s->pt_len = 0;
	s->pt_off = 0;
}

/* Copies up to LEN bytes of the plaintext decrypted ahead to BUF (if not NULL); consumes them
 * unless PEEK. Returns the count. */
static size_t pt_take(struct tsess *s, void *buf, size_t len, int peek)
{
	size_t n = s->pt_len - s->pt_off;

	if (n > len)
		n = len;
	if (buf != NULL)
		memcpy(buf, s->pt + s->pt_off, n);
	if (!peek) {
		s->pt_off += n;
		if (s->pt_off == s->pt_len)
			pt_clear(s);
	}
	return n;
}

/*
 * Decrypts ahead every record that is here, until WANT bytes are held. A
 * socket's MSG_PEEK shows all that is queued; SSL_peek() only the current
 * record. Returns the bytes held (> 0), or the TS_* result of the read that
 * found none. The end of the stream met on the way is kept for after them.
 */
static ssize_t pt_fill(struct tsess *s, size_t want)
{
	ssize_t r = TS_WANT_READ;

	while (s->pt_len - s->pt_off < want && s->pt_end == 0) {
		size_t have = s->pt_len - s->pt_off, room = want - have;
		unsigned char *n;

		/* After the first record, go on only while more may be had without waiting. */
		if (have > 0 && SSL_pending(s->ssl) <= 0 && !SSL_has_pending(s->ssl) && !s->in_more)
			break;
		if (room > TS_MAX_RECORD)
			room = TS_MAX_RECORD;
		if (s->pt_off > 0) {
			memmove(s->pt, s->pt + s->pt_off, have);
			s->pt_off = 0;
			s->pt_len = have;
		}
		n = realloc(s->pt, have + room);
		if (n == NULL)
			break;
		s->pt = n;
		r = ssl_read_once(s, s->pt + have, room, 0);
		if (r > 0) {
			s->pt_len = have + (size_t)r;
			continue;
		}
		if (r == TS_CLOSED || r == TS_EOF)
			s->pt_end = (int)r;
		break;
	}
	if (s->pt_len > s->pt_off)
		return (ssize_t)(s->pt_len - s->pt_off);
	pt_clear(s);
	return s->pt_end != 0 ? s->pt_end : r;
}

ssize_t tsess_read(struct tsess *s, void *buf, size_t len, int peek)
{
	ssize_t r;

	if (len == 0)
		return 0;
	if (s->failed)
		return TS_FATAL;
	if (peek) {
		size_t want = len < TS_PEEK_MAX ? len : TS_PEEK_MAX;

		/*
		 * A peek the first record answers (a readiness check: one byte) needs no
		 * buffer of ours: OpenSSL keeps that record decrypted for the read that
		 * follows, which then takes it whole in one call. A count (FIONREAD, no
		 * BUF) decrypts ahead all there is.
		 */
		if (buf != NULL && s->pt == NULL && s->pt_end == 0) {
			r = ssl_read_once(s, buf, want, 1);
			if (r == TS_CLOSED || r == TS_EOF)
				s->pt_end = (int)r;
			if (r <= 0 || (size_t)r == want)
				return r;
		}
		r = pt_fill(s, want);
		return r > 0 ? (ssize_t)pt_take(s, buf, len, 1) : r;
	}
	/* What a peek decrypted comes first; the caller reads on for the rest. */
	if (s->pt != NULL)
		return (ssize_t)pt_take(s, buf, len, 0);
	if (s->pt_end != 0)
		return s->pt_end;
	return ssl_read_once(s, buf, len, 0);
}

int tsess_flush(struct tsess *s)
{
	s->sys_errno = 0;
	return tls_bio_flush(s);
}

/*
 * Flushes, then encrypts at most one record of BUF. Returns the bytes
 * accepted (committed: their ciphertext is sent or kept), TS_WANT_WRITE with
 * nothing accepted if earlier ciphertext is still unsent, or an error.
 */
ssize_t tsess_write(struct tsess *s, const void *buf, size_t len)
{
	size_t n = len < TS_MAX_RECORD ? len : TS_MAX_RECORD, written = 0;
	int ret, rc;

	if (s->failed)
		return TS_FATAL;
	s->sys_errno = 0;
	rc = tls_bio_flush(s);
	if (rc != 0)
		return rc;
	if (len == 0)
		return 0;
	/* The ERR queue is empty here (ERRQ_OP), as SSL_write_ex() needs it. */
	/*
	 * The server's resumption tickets (held since the handshake, tsess.c) ride
	 * along with its first data, in one send (tlsctx.c, ctx_server).
	 */
	if (s->tickets != NULL) {
		s->gather = 1;
		ret = SSL_write_ex(s->ssl, buf, n, &written);
		s->gather = 0;
		/* Accepted bytes are committed; what the kernel did not take waits. */
		if (tls_bio_flush(s) == TS_SYSERR && ret == 1)
			s->sys_errno = 0;
		goto done;
	}
	ret = SSL_write_ex(s->ssl, buf, n, &written);
done:
	if (ret == 1) {
		tls_err_clear();
		return (ssize_t)written;
	}
	return tsess_result(s, ret);
}

/* Queues close_notify once (RFC 8446 section 6.1), then flushes. */
int tsess_close_notify(struct tsess *s)
{
	if (!s->shutdown_sent) {
		s->shutdown_sent = 1;
		tls_err_clear();
		/* Fails harmlessly mid-handshake or after a fatal error: nothing to close then. */
		if (!s->failed && SSL_is_init_finished(s->ssl))
			SSL_shutdown(s->ssl);
		tls_err_clear();
	}
	return tsess_flush(s);
}

size_t tsess_pending(const struct tsess *s)
{
	int n = SSL_pending(s->ssl);

	return (s->pt_len - s->pt_off) + (n > 0 ? (size_t)n : 0);
}

int tsess_buffered_input(const struct tsess *s)
{
	return SSL_has_pending(s->ssl);
}

int tsess_more_input(const struct tsess *s)
{
	return s->pt_len > s->pt_off || SSL_pending(s->ssl) > 0 || SSL_has_pending(s->ssl) ||
	       s->in_more;
}

int tsess_output_pending(const struct tsess *s)
{
	if (tls_bio_held(s))
		return 2;
	return s->out != NULL && s->out_off < s->out_len;
}
