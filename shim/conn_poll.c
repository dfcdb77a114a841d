/*
 * conn_poll.c - readiness of a wrapped connection for poll, select and
 * epoll: what the program could read or write in plaintext, and which
 * direction the kernel must be asked about for the TLS work in between.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>

#include "clock.h"
#include "conn_int.h"
#include "starttls.h"

static short failed_events(short uev)
{
	return (short)(POLLERR | POLLHUP | (uev & (POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM)));
}

/* During the handshake, a connected client can write while there is room to keep it. */
static short early_writable(const struct conn *c, short uev)
{
	if (!c->early_open || c->state != CONN_HANDSHAKE || conn_early_held(c) >= CONN_EARLY_MAX)
		return 0;
	return uev & (POLLOUT | POLLWRNORM);
}

/*
 * A server handshake that can only go on with bytes from the client: not yet
 * started, or OpenSSL said so at the last step and nothing of ours is
 * pending. Readiness then asks the kernel for POLLIN without running the
 * engine (its read would only say EAGAIN; the kernel's answer steps it in
 * conn_poll_result). Starts the handshake's deadline, as a step would.
 */
static int hs_peer_turn(struct conn *c)
{
	int64_t now;

	if (c->state != CONN_HANDSHAKE || c->role != TLS_ROLE_SERVER || c->claim != CLAIM_OWNER ||
	    c->closed || (c->ts != NULL && (!c->hs_peer_turn || conn_out_pending(c))))
		return 0;
	now = clock_ns();
	if (c->hs_deadline_ns == 0)
		c->hs_deadline_ns =
		    (uint64_t)now + (uint64_t)c->rule->opt.handshake_timeout_ms * 1000000u;
	return (uint64_t)now < c->hs_deadline_ns;
}

short conn_poll_prepare(struct conn *c, short uev, short *kev)
{
	short ready = 0, want = 0;
	int rc;

	pthread_mutex_lock(&c->lock);
	if (hs_peer_turn(c)) {
		*kev = POLLIN;
		goto out;
	}
	if (c->state == CONN_PLAIN) {
		*kev = uev;
		/* accept starttls=smtp: an answer of the shim's own still to send. */
		if (conn_smtp_filtering(c) && c->st->out_len > 0 &&
		    conn_st_flush(c, &want) == -EAGAIN)
			*kev |= POLLOUT;
		goto out;
	}
	rc = conn_step_ready(c, &want);
	if (rc == -EAGAIN) {
		*kev = want; /* the direction TLS needs, not the one asked for */
		ready = early_writable(c, uev);
		goto out;
	}
	if (rc < 0 || c->state == CONN_FAILED) {
		*kev = 0;
		ready = failed_events(uev);
		goto out;
	}
	if (c->state == CONN_PLAIN) {
		*kev = uev;
		goto out;
	}
	*kev = uev & (short)~(POLLIN | POLLRDNORM);
	conn_hold_release(c, kev); /* the program is about to wait */
	if (conn_out_pending(c) && conn_out_flush(c) == TS_WANT_WRITE)
		*kev |= POLLOUT; /* our own pending record: not writable for the program yet */
	if (uev & (POLLIN | POLLRDNORM)) {
		size_t pend = E->pending(c->ts);
		char b;

		/* Records OpenSSL read ahead may hold data the kernel no longer shows. */
		if (pend == 0 && E->buffered_input(c->ts) && !c->rd_eof) {
			(void)conn_step_recv(c, &b, 1, MSG_PEEK, &want); /* errors: the state */
			if (c->state != CONN_FAILED)
				pend = E->pending(c->ts);
		}
		if (c->rd_eof || c->rd_shut || c->state == CONN_FAILED || pend > 0)
			ready |= uev & (POLLIN | POLLRDNORM);
		else if (E->output_pending(c->ts) > 1)
			*kev |= POLLOUT; /* reading waits until the peer takes our output */
		else
			*kev |= POLLIN;
	}
	if (c->rd_eof)
		ready |= uev & POLLRDHUP;
out:
	/* What the shim holds for the program to read first (starttls=). */
	if (conn_greet_pending(c) > 0 && (c->state == CONN_OPEN || c->state == CONN_PLAIN))
		ready |= uev & (POLLIN | POLLRDNORM);
	pthread_mutex_unlock(&c->lock);
	return ready;
}

short conn_poll_result(struct conn *c, short uev, short krev)
{
	short rev = 0, want = 0;
	char b;
	ssize_t r;
	int rc;

	if (krev == 0)
		return 0;
	pthread_mutex_lock(&c->lock);
	if (c->state == CONN_PLAIN) {
		rev = krev;
		goto out;
	}
	rc = conn_step_ready(c, &want);
	if (rc == -EAGAIN) {
		rev = early_writable(c, uev); /* the handshake went on */
		goto out;
	}
	if (rc < 0 || c->state == CONN_FAILED) {
		rev = failed_events(uev);
		goto out;
	}
	if (c->state == CONN_PLAIN) {
		rev = krev & (short)(uev | POLLERR | POLLHUP);
		goto out;
	}
	if (conn_out_pending(c))
		(void)conn_out_flush(c); /* best effort: what is left keeps POLLOUT asked */
	if ((uev & (POLLIN | POLLRDNORM)) && (krev & (POLLIN | POLLHUP | POLLERR))) {
		/* Readable only if a record decodes to data (or to the end of it). */
		r = conn_step_recv(c, &b, 1, MSG_PEEK, &want);
		if (r != -EAGAIN)
			rev |= uev & (POLLIN | POLLRDNORM);
		if (c->state == CONN_FAILED)
			rev |= POLLERR;
	}
	if ((uev & (POLLOUT | POLLWRNORM)) && (krev & POLLOUT) && !conn_out_pending(c))
		rev |= uev & (POLLOUT | POLLWRNORM);
	/* The peer's FIN: the kernel knows it (after close_notify, or without one). */
	if (c->rd_eof || (krev & POLLRDHUP))
		rev |= uev & POLLRDHUP;
	rev |= krev & (POLLERR | POLLHUP | POLLNVAL);
out:
	pthread_mutex_unlock(&c->lock);
	return rev;
}
