/*
 * conn_step.c - the connection's state machine (conn.h: TCP_CONNECTING ->
 * [STARTTLS ->] HANDSHAKE -> OPEN, AUTO_DETECT -> PLAIN, any -> FAILED): the
 * steps that run the engine until it needs the socket and never wait, the
 * failures they end in, what a client wrote before its handshake completed,
 * and connect(), which waits for them.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "clock.h"
#include "conn_int.h"
#include "errmap.h"
#include "listeners.h"
#include "log.h"
#include "real.h"
#include "starttls.h"
#include "stats.h"

/* What the handshake negotiated, for the statistics. */
static void stats_handshake_done(struct conn *c)
{
	struct ts_info info;

	if (stats_rule_of(c->rule) == NULL)
		return;
	E->info(c->ts, &info);
	stats_handshake(c->rule, info.version, info.cipher, info.resumed);
}

static void early_free(struct conn *c)
{
	free(c->early);
	c->early = NULL;
	c->early_len = c->early_off = 0;
}

size_t conn_early_held(const struct conn *c)
{
	return c->early_len - c->early_off;
}

/*
 * Keeps up to LEN bytes the program writes while its handshake is still going
 * on (they are encrypted by conn_out_flush() once it completes). Returns the count
 * kept, -EAGAIN when CONN_EARLY_MAX bytes are held already, or -ENOMEM.
 */
ssize_t conn_early_put(struct conn *c, const void *buf, size_t len)
{
	size_t held = conn_early_held(c), n = len;
	unsigned char *b;

	if (held >= CONN_EARLY_MAX)
		return -EAGAIN;
	if (n > CONN_EARLY_MAX - held)
		n = CONN_EARLY_MAX - held;
	if (c->early_off > 0) {
		memmove(c->early, c->early + c->early_off, held);
		c->early_off = 0;
		c->early_len = held;
	}
	b = realloc(c->early, held + n);
	if (b == NULL)
		return -ENOMEM;
	memcpy(b + held, buf, n);
	c->early = b;
	c->early_len = held + n;
	return (ssize_t)n;
}

/* Whether anything the program wrote is still to be sent (kept plaintext or ciphertext). */
int conn_out_pending(const struct conn *c)
{
	return conn_early_held(c) > 0 || (c->ts != NULL && E->output_pending(c->ts));
}

/*
 * OPEN: encrypts and sends what was written before the handshake completed,
 * then the engine's kept ciphertext, then a shutdown(SHUT_WR) the program
 * asked for meanwhile (close_notify, then FIN). Returns 0 when all is out,
 * TS_WANT_WRITE / TS_WANT_READ, or the engine's TS_SYSERR / TS_FATAL.
 */
int conn_out_flush(struct conn *c)
{
	int rc;

	while (conn_early_held(c) > 0) {
		ssize_t r = E->write(c->ts, c->early + c->early_off, conn_early_held(c));

		if (r <= 0)
			return r == 0 ? TS_WANT_WRITE : (int)r;
		stats_bytes_out(c->rule, (size_t)r);
		c->early_off += (size_t)r;
	}
	if (c->early != NULL)
		early_free(c);
	rc = E->flush(c->ts);
	if (rc != 0 || !c->shut_pending)
		return rc;
	rc = E->close_notify(c->ts);
	if (rc != 0)
		return rc;
	c->notify_sent = 1;
	c->shut_pending = 0;
	real.shutdown(c->fd, c->rd_shut ? SHUT_RDWR : SHUT_WR);
	log_debug("%s: sent close_notify", conn_desc(c));
	return 0;
}

/*
 * The connection is dead for TLS reasons: log why, make every later I/O fail
 * with ECONNRESET, and end the TCP stream so that nothing more can be sent.
 */
int conn_fail_at(struct conn *c, int level, const char *reason)
{
	log_at(level, "%s: %s", conn_desc(c), reason);
	stats_failed(c->rule, reason);
	if (c->early_len > c->early_off)
		log_at(level, "%s: %zu bytes written before the handshake failed were discarded",
		       conn_desc(c), c->early_len - c->early_off);
	early_free(c);
	c->shut_pending = 0;
	if (c->ts != NULL)
		E->flush(c->ts); /* best effort: let the alert reach the peer */
	c->state = CONN_FAILED;
	c->tls_failed = 1;
	c->err = outcome_errno(OUTCOME_RESET);
	c->so_error = c->err;
	real.shutdown(c->fd, SHUT_RDWR);
	return -c->err;
}

static int fail(struct conn *c, const char *reason)
{
	return conn_fail_at(c, c->role == TLS_ROLE_CLIENT ? LOG_LVL_ERROR : LOG_LVL_WARN, reason);
}

static int peer_gone(int err)
{
	return err == ECONNRESET || err == EPIPE || err == ECONNABORTED;
}

/*
 * The level of a failed accept handshake (engine result RC; our client failing
 * is always an error). What clients do routinely is not a warning: going away before sending
 * anything (port checks, a load generator stopping) is debug; going away in the middle of a
 * handshake, or sending bytes that are not TLS, is info. A failure once the client's first
 * handshake message arrived (verification, no common version or cipher, an
 * alert) stays a warning, as does any other socket error.
 */
static int handshake_fail_level(struct conn *c, int rc)
{
	int progress = E->peer_progress(c->ts);

	switch (rc) {
	case TS_SYSERR:
		if (!peer_gone(E->sys_errno(c->ts)))
			return LOG_LVL_WARN;
		return progress == TS_PEER_SILENT ? LOG_LVL_DEBUG : LOG_LVL_INFO;
	case TS_EOF:
	case TS_CLOSED:
		return progress == TS_PEER_SILENT ? LOG_LVL_DEBUG : LOG_LVL_INFO;
	case TS_FATAL:
		return progress == TS_PEER_SPOKE ? LOG_LVL_WARN : LOG_LVL_INFO;
	default:
		return LOG_LVL_WARN;
	}
}

/*
 * The level of a failure on an open accepted connection: a client that went
 * away (closed or reset) while the program still writes to it is routine (a
 * load generator stopping, a closed browser tab), info; a protocol failure or
 * any other socket error stays a warning.
 */
static int open_fail_level(struct conn *c, int rc)
{
	if (rc == TS_EOF || rc == TS_CLOSED)
		return LOG_LVL_INFO;
	if (rc == TS_SYSERR && peer_gone(E->sys_errno(c->ts)))
		return LOG_LVL_INFO;
	return LOG_LVL_WARN;
}

int conn_fail_rc(struct conn *c, int rc, const char *during)
{
	int level = c->role == TLS_ROLE_CLIENT   ? LOG_LVL_ERROR
		    : c->state == CONN_HANDSHAKE ? handshake_fail_level(c, rc)
						 : open_fail_level(c, rc);
	char why[320];

	switch (rc) {
	case TS_FATAL:
		return conn_fail_at(c, level, E->reason(c->ts));
	case TS_SYSERR:
		snprintf(why, sizeof(why), "%s: %s", during, strerror(E->sys_errno(c->ts)));
		return conn_fail_at(c, level, why);
	case TS_EOF:
	case TS_CLOSED:
		snprintf(why, sizeof(why), "%s: the peer closed the connection%s", during,
			 level == LOG_LVL_DEBUG ? " before sending anything" : "");
		return conn_fail_at(c, level, why);
	default:
		snprintf(why, sizeof(why), "%s: unexpected engine result %d", during, rc);
		return conn_fail_at(c, level, why);
	}
}

static int step_connect(struct conn *c, short *want)
{
	struct pollfd p = {.fd = c->fd, .events = POLLOUT};
	int err = 0;
	socklen_t len = sizeof(err);

	if (real.poll(&p, 1, 0) == 0) {
		*want = POLLOUT;
		return -EAGAIN;
	}
	if (real.getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err != 0) {
		/* A TCP failure, not a TLS one: the program sees it as it is. */
		log_info("%s: %s", conn_desc(c), strerror(err));
		c->state = CONN_FAILED;
		c->err = err;
		c->so_error = err;
		return -err;
	}
	if (c->st != NULL) {
		/*
		 * starttls=: connect() returns after the dialogue and the handshake,
		 * as before the early return existed: what the program reads and
		 * writes first depends on them (stls_pg_filter, the greeting).
		 */
		c->state = CONN_STARTTLS;
		return 0;
	}
	c->state = CONN_HANDSHAKE;
	/*
	 * A plain connect() is done here. Wait a little for the handshake, so that
	 * a failure can still fail connect(); but not for our own listener, whose
	 * accept() may come only after connect() returns.
	 */
	if (c->own_listener) {
		c->early_open = 1;
		conn_own_add(c);
	} else {
		unsigned ms = c->rule->opt.handshake_timeout_ms;

		if (ms > CONN_CONNECT_WAIT_MS)
			ms = CONN_CONNECT_WAIT_MS;
		c->connect_wait_ns = (uint64_t)clock_ns() + (uint64_t)ms * 1000000u;
	}
	return 0;
}

/* The connect wait is over: the program goes on while the handshake does. */
static void connect_wait_check(struct conn *c, uint64_t now)
{
	if (c->early_open || c->connect_wait_ns == 0 || now < c->connect_wait_ns)
		return;
	c->early_open = 1;
	log_debug("%s: connected; the handshake goes on in the next I/O", conn_desc(c));
}

/*
 * The peer hung up during the handshake, without an alert: a client that
 * connected and closed (port probes, clients whose connect() returned before
 * the handshake), or a server program that closed a connection it accepted
 * without reading, after our connect() had returned. The program reads the
 * end of the stream, as from the plain socket. Its first write "succeeds"
 * (the kernel would take it and the peer's reset would drop it: here it is
 * dropped, never sent), later ones fail with EPIPE.
 */
static int hangup(struct conn *c, int rc)
{
	int level = c->role == TLS_ROLE_SERVER ? handshake_fail_level(c, rc) : LOG_LVL_INFO;
	char why[320];

	if (rc == TS_SYSERR)
		snprintf(why, sizeof(why), "handshake: %s", strerror(E->sys_errno(c->ts)));
	else
		snprintf(why, sizeof(why), "handshake: the peer closed the connection%s",
			 level == LOG_LVL_DEBUG ? " before sending anything" : "");
	conn_fail_at(c, level, why);
	c->hs_hangup = 1;
	c->rd_eof = 1;
	c->err = outcome_errno(OUTCOME_HUNGUP);
	c->so_error = 0;
	return -c->err;
}

static int step_handshake(struct conn *c, short *want)
{
	char why[320];
	uint64_t now = (uint64_t)clock_ns();
	int rc;

	if (c->ts == NULL && conn_session_new(c, why, sizeof(why)) != 0)
		return fail(c, why);
	if (c->hs_deadline_ns == 0) {
		c->hs_deadline_ns = now + (uint64_t)c->rule->opt.handshake_timeout_ms * 1000000u;
	} else if (now >= c->hs_deadline_ns) {
		snprintf(why, sizeof(why), "handshake timed out after %u ms",
			 c->rule->opt.handshake_timeout_ms);
		return fail(c, why);
	}
	rc = E->handshake(c->ts);
	c->hs_peer_turn = rc == TS_WANT_READ; /* our flight, if any, has left (tsess_handshake) */
	if (rc == TS_WANT_READ || rc == TS_WANT_WRITE)
		connect_wait_check(c, now);
	switch (rc) {
	case 0:
		c->state = CONN_OPEN;
		stats_handshake_done(c);
		/* A client says at info which name it verified, on every connection. */
		if (log_enabled(c->role == TLS_ROLE_CLIENT ? LOG_LVL_INFO : LOG_LVL_DEBUG)) {
			E->describe(c->ts, why, sizeof(why));
			log_msg(c->role == TLS_ROLE_CLIENT ? LOG_LVL_INFO : LOG_LVL_DEBUG,
				"%s: TLS established: %s", conn_desc(c), why);
		}
		return 0;
	case TS_WANT_READ:
		*want = POLLIN;
		return -EAGAIN;
	case TS_WANT_WRITE:
		*want = POLLOUT;
		return -EAGAIN;
	case TS_EOF:
	case TS_SYSERR:
		/* Bytes the program wrote and the peer will never see are a reset, as plain. */
		if ((c->role == TLS_ROLE_SERVER || (c->early_open && conn_early_held(c) == 0)) &&
		    (rc == TS_EOF || peer_gone(E->sys_errno(c->ts))))
			return hangup(c, rc);
		return conn_fail_rc(c, rc, "handshake");
	default:
		return conn_fail_rc(c, rc, "handshake");
	}
}

/* accept auto: a TLS ClientHello starts with a handshake record (0x16, 0x03 ...). */
static int step_auto(struct conn *c, short *want)
{
	unsigned char b[2];
	uint64_t now = (uint64_t)clock_ns();
	char why[128];
	ssize_t n;

	/* A client that never speaks is bounded like a handshake. */
	if (c->hs_deadline_ns == 0) {
		c->hs_deadline_ns = now + (uint64_t)c->rule->opt.handshake_timeout_ms * 1000000u;
	} else if (now >= c->hs_deadline_ns) {
		snprintf(why, sizeof(why), "the client sent nothing within %u ms (auto)",
			 c->rule->opt.handshake_timeout_ms);
		return fail(c, why);
	}
	n = real.recv(c->fd, b, sizeof(b), MSG_PEEK | MSG_DONTWAIT);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			*want = POLLIN;
			return -EAGAIN;
		}
		return -errno;
	}
	if (n > 0 && b[0] == 0x16 && (n < 2 || b[1] == 0x03)) {
		c->state = CONN_HANDSHAKE;
		log_debug("%s: client speaks TLS (auto)", conn_desc(c));
		return 0;
	}
	c->state = CONN_PLAIN;
	stats_decided(c->rule, POLICY_PLAIN);
	if (n == 0)
		log_debug("%s: the client closed before sending anything (auto)", conn_desc(c));
	else
		log_info("%s: cleartext client (auto)", conn_desc(c));
	return 0;
}

/* Brings the connection to OPEN or PLAIN. 0 when there, -EAGAIN (with *want), -errno. */
int conn_step_on(struct conn *c, short *want)
{
	int rc;

	for (;;) {
		if (c->closed)
			return -EBADF;
		if (c->claim != CLAIM_OWNER && c->state != CONN_AUTO_DETECT &&
		    conn_claim_needed(c) && conn_claim(c) != 0)
			return -outcome_errno(OUTCOME_RESET);
		switch (c->state) {
		case CONN_OPEN:
		case CONN_PLAIN:
			return 0;
		case CONN_FAILED:
			return -c->err;
		case CONN_TCP_CONNECTING:
			rc = step_connect(c, want);
			break;
		case CONN_STARTTLS:
			rc = conn_step_starttls(c, want);
			break;
		case CONN_AUTO_DETECT:
			rc = step_auto(c, want);
			break;
		case CONN_HANDSHAKE:
			rc = step_handshake(c, want);
			break;
		default:
			return -EINVAL;
		}
		if (rc != 0)
			return rc;
	}
}

/*
 * After a TCP failure, Linux's connect() reports the pending error (or
 * ECONNABORTED if SO_ERROR was read) and leaves the socket unconnected, ready
 * to connect again. The shim read the error itself: disconnect the same way.
 */
static int tcp_reset(struct conn *c)
{
	static const struct sockaddr unspec = {.sa_family = AF_UNSPEC};
	int e = c->so_error ? c->so_error : ECONNABORTED;

	c->so_error = 0;
	real.connect(c->fd, &unspec, sizeof(unspec));
	return -e;
}

int conn_connect(struct conn *c, const struct sockaddr *sa, socklen_t len)
{
	struct conn_waiter w = {.opt = SO_SNDTIMEO};
	struct ep dst;
	short want = 0;
	int rc, open;

	c->own_listener = ep_from_sockaddr(&dst, sa, len) == 0 && listeners_local(&dst);
	if (real.connect(c->fd, sa, len) < 0 && errno != EINPROGRESS)
		return -errno;
	if (conn_nonblock(c)) {
		/* Start the handshake now: the ClientHello goes out with the SYN's answer. */
		pthread_mutex_lock(&c->lock);
		(void)conn_step_ready(c, &want); /* its outcome is the state the next call finds */
		pthread_mutex_unlock(&c->lock);
		return -EINPROGRESS;
	}
	for (;;) {
		pthread_mutex_lock(&c->lock);
		rc = conn_step_ready(c, &want);
		open = c->early_open;
		pthread_mutex_unlock(&c->lock);
		if (rc != -EAGAIN)
			break;
		if (open) {
			rc = 0; /* the handshake finishes in the program's next I/O */
			break;
		}
		/* The TCP part honours SO_SNDTIMEO like connect(2); the TLS part its deadline. */
		if (c->state == CONN_HANDSHAKE)
			w.deadline = -1, w.started = 1;
		rc = conn_wait(c, want, &w);
		if (rc == -EAGAIN)
			return -EINPROGRESS;
		if (rc < 0)
			return rc;
	}
	if (rc == 0 || c->hs_hangup) {
		c->connect_told = 1;
		return 0;
	}
	/* A TCP error is reported as is; a TLS failure as a refused connection. */
	if (c->tls_failed) {
		c->so_error = 0;
		return -outcome_errno(OUTCOME_REFUSED);
	}
	if (rc != -EINTR && rc != -EBADF) {
		pthread_mutex_lock(&c->lock);
		c->so_error = -rc;
		rc = tcp_reset(c);
		pthread_mutex_unlock(&c->lock);
	}
	return rc;
}

int conn_connect_again(struct conn *c, int *afresh)
{
	int rc;

	pthread_mutex_lock(&c->lock);
	*afresh = c->state == CONN_FAILED && !c->tls_failed;
	if (*afresh) {
		rc = tcp_reset(c);
		pthread_mutex_unlock(&c->lock);
		return rc;
	}
	/* Connected for the program, the handshake going on or the peer gone: as connected. */
	switch ((c->early_open && c->state == CONN_HANDSHAKE) || c->hs_hangup ? CONN_OPEN
									      : c->state) {
	case CONN_OPEN:
		/* Linux: the first connect() after completion succeeds, later ones EISCONN. */
		rc = c->connect_told ? -EISCONN : 0;
		c->connect_told = 1;
		break;
	case CONN_FAILED:
		rc = -c->err;
		break;
	default:
		rc = -EALREADY;
		break;
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}
