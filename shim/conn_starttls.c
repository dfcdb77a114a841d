/*
 * conn_starttls.c - starttls=: the protocols' own upgrades, done on the
 * socket as steps like the handshake's. The dialogues themselves do no I/O
 * (starttls*.c); this file sends what they say and reads what they ask for.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "clock.h"
#include "conn_int.h"
#include "log.h"
#include "real.h"
#include "starttls.h"
#include "stats.h"

/* SMTP's EHLO argument: our address as a literal (RFC 5321 4.1.3), as a client without a name. */
static void starttls_helo(struct conn *c)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char a[INET6_ADDRSTRLEN] = "127.0.0.1";

	if (c->st->proto != POLICY_STARTTLS_SMTP || c->st->phase != 0 || c->st->in_len != 0)
		return;
	if (real.getsockname(c->fd, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, a, sizeof(a));
		else if (ss.ss_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, a, sizeof(a));
	}
	snprintf(c->st->helo, sizeof(c->st->helo), "[%s%s]",
		 ss.ss_family == AF_INET6 ? "IPv6:" : "", a);
}

static int starttls_fail(struct conn *c, int level, const char *what)
{
	char why[STLS_WHY_MAX + 64];

	snprintf(why, sizeof(why), "starttls=%s: %s", policy_starttls_str(c->st->proto), what);
	return conn_fail_at(c, c->role == TLS_ROLE_CLIENT ? LOG_LVL_ERROR : level, why);
}

/*
 * The protocol's upgrade, on the raw socket: send what the machine says, read
 * what it asks for (a server never past the request), until it says TLS
 * (CONN_HANDSHAKE), cleartext (accept auto: CONN_PLAIN) or fail. The
 * handshake-timeout bounds the dialogue and the handshake together.
 */
int conn_step_starttls(struct conn *c, short *want)
{
	struct stls *s = c->st;
	uint64_t now = (uint64_t)clock_ns();
	char why[128];
	ssize_t n;

	if (c->hs_deadline_ns == 0) {
		c->hs_deadline_ns = now + (uint64_t)c->rule->opt.handshake_timeout_ms * 1000000u;
		starttls_helo(c);
	} else if (now >= c->hs_deadline_ns) {
		snprintf(why, sizeof(why), "the dialogue took longer than %u ms",
			 c->rule->opt.handshake_timeout_ms);
		return starttls_fail(c, LOG_LVL_INFO, why);
	}
	for (;;) {
		if (c->st_out_off < s->out_len) {
			n = real.send(c->fd, s->out + c->st_out_off, s->out_len - c->st_out_off,
				      MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				*want = POLLOUT;
				return -EAGAIN;
			}
			if (n < 0)
				return starttls_fail(c, LOG_LVL_INFO, strerror(errno));
			c->st_out_off += (size_t)n;
			continue;
		}
		s->out_len = 0;
		c->st_out_off = 0;
		switch (stls_step(s)) {
		case STLS_WANT_WRITE:
			continue;
		case STLS_WANT_READ: {
			size_t room = sizeof(s->in) - s->in_len;

			n = real.recv(c->fd, s->in + s->in_len,
				      s->read_max < room ? s->read_max : room, MSG_DONTWAIT);
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				*want = POLLIN;
				return -EAGAIN;
			}
			if (n < 0)
				return starttls_fail(c, LOG_LVL_INFO, strerror(errno));
			if (n == 0)
				return starttls_fail(c,
						     s->in_len == 0 ? LOG_LVL_DEBUG : LOG_LVL_INFO,
						     "the peer closed the connection");
			s->in_len += (size_t)n;
			continue;
		}
		case STLS_TLS:
			log_debug("%s: starttls=%s: upgraded; TLS handshake next", conn_desc(c),
				  policy_starttls_str(s->proto));
			c->state = CONN_HANDSHAKE;
			return 0;
		case STLS_PLAIN:
			log_info("%s: cleartext client (auto, starttls=%s)", conn_desc(c),
				 policy_starttls_str(s->proto));
			c->state = CONN_PLAIN;
			stats_decided(c->rule, POLICY_PLAIN);
			return 0;
		default:
			return starttls_fail(c, LOG_LVL_WARN, s->why);
		}
	}
}

/* accept starttls=smtp: the cleartext before STARTTLS is still filtered. */
int conn_smtp_filtering(const struct conn *c)
{
	return c->st != NULL && c->role == TLS_ROLE_SERVER &&
	       c->st->proto == POLICY_STARTTLS_SMTP && !c->st->srv_done;
}

/* Bytes the program reads before any of the session's: a synthesised greeting, an 'N'. */
size_t conn_greet_pending(const struct conn *c)
{
	return c->st != NULL ? c->st->greet_len - c->st->greet_off : 0;
}

/* Hands out what conn_greet_pending() counts (c->lock held); frees the dialogue's state when done.
 */
ssize_t conn_greet_read(struct conn *c, void *buf, size_t len, int flags)
{
	struct stls *s = c->st;
	size_t n = conn_greet_pending(c);

	if (n > len)
		n = len;
	if (buf != NULL && !(flags & MSG_TRUNC))
		memcpy(buf, s->greet + s->greet_off, n);
	if (flags & MSG_PEEK)
		return (ssize_t)n;
	s->greet_off += n;
	if (s->greet_off == s->greet_len && conn_smtp_filtering(c)) {
		s->greet_off = s->greet_len = 0; /* the next line the client sends goes here */
	} else if (s->greet_off == s->greet_len && !s->pg_filter) {
		free(c->st);
		c->st = NULL;
	}
	return (ssize_t)n;
}

/* Sends the shim's own pending answer (st->out): 0 when none is left, -EAGAIN, -errno. */
int conn_st_flush(struct conn *c, short *want)
{
	struct stls *s = c->st;
	ssize_t n;

	while (c->st_out_off < s->out_len) {
		n = real.send(c->fd, s->out + c->st_out_off, s->out_len - c->st_out_off,
			      MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			*want = POLLOUT;
			return -EAGAIN;
		}
		if (n < 0)
			return -errno;
		c->st_out_off += (size_t)n;
	}
	s->out_len = 0;
	c->st_out_off = 0;
	return 0;
}

/*
 * accept starttls=smtp, before STARTTLS: the program's read of the client's
 * cleartext, a line at a time through stls_smtp_srv_input(). Returns bytes,
 * 0 at the end of the stream, -EAGAIN, -errno, or -EALREADY when the state
 * changed (to HANDSHAKE, or to an unfiltered PLAIN): the caller starts over.
 */
ssize_t conn_smtp_srv_recv(struct conn *c, void *buf, size_t len, int flags, short *want)
{
	struct stls *s = c->st;
	ssize_t n;
	int rc;

	for (;;) {
		rc = conn_st_flush(c, want);
		if (rc != 0)
			return rc;
		if (conn_greet_pending(c) > 0)
			return conn_greet_read(c, buf, len, flags);
		switch (stls_smtp_srv_input(s)) {
		case STLS_WANT_READ: {
			size_t room = sizeof(s->in) - s->in_len;

			if (conn_greet_pending(c) > 0)
				continue; /* a line for the program first */
			n = real.recv(c->fd, s->in + s->in_len,
				      s->read_max < room ? s->read_max : room, MSG_DONTWAIT);
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				*want = POLLIN;
				return -EAGAIN;
			}
			if (n < 0)
				return -errno;
			if (n == 0) {
				/* The end of the stream: a partial line is the program's, then 0.
				 */
				if (s->in_len == 0)
					return 0;
				stls_greet_add(s, s->in, s->in_len);
				stls_consume(s, s->in_len);
				continue;
			}
			s->in_len += (size_t)n;
			continue;
		}
		case STLS_WANT_WRITE:
			continue;
		case STLS_PLAIN:
			if (conn_greet_pending(c) > 0)
				continue;
			/* auto: the client went on in cleartext, unfiltered from now on. */
			free(c->st);
			c->st = NULL;
			stats_decided(c->rule, POLICY_PLAIN);
			log_info("%s: cleartext client (auto, starttls=smtp)", conn_desc(c));
			return -EALREADY;
		case STLS_TLS:
			log_debug("%s: starttls=smtp: the client sent STARTTLS; TLS handshake next",
				  conn_desc(c));
			c->state = CONN_HANDSHAKE;
			free(c->st); /* nothing is left in it: lines are taken one at a time */
			c->st = NULL;
			return -EALREADY;
		default:
			return starttls_fail(c, LOG_LVL_WARN, s->why);
		}
	}
}

/* The program's write before STARTTLS: -EALREADY when it goes to the client as it is. */
ssize_t conn_smtp_srv_send(struct conn *c, const void *buf, size_t len, short *want)
{
	size_t take;
	int direct, rc = conn_st_flush(c, want);

	if (rc != 0)
		return rc;
	take = stls_smtp_srv_output(c->st, buf, len, &direct);
	if (direct)
		return -EALREADY;
	/* Kept bytes count as written; what could not go yet goes before the next I/O. */
	rc = conn_st_flush(c, want);
	return rc == 0 || rc == -EAGAIN ? (ssize_t)take : rc;
}
