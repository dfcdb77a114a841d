/*
 * wrap.c - connections taken over as decide.c decides (see wrap.h): the
 * log lines and counters of a decision, the conn made, mapped and connected.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "conn.h"
#include "decide.h"
#include "epreg.h"
#include "errmap.h"
#include "fdclose.h"
#include "fdnew.h"
#include "fdtab.h"
#include "log.h"
#include "real.h"
#include "shim.h"
#include "stats.h"
#include "wrap.h"

/* Drops a wrapping that never became TLS, restoring the program's blocking mode. */
static void unwrap(int fd)
{
	struct conn *c = fdtab_take(fd);
	int fl;

	if (c == NULL)
		return;
	fl = real.fcntl(fd, F_GETFL);
	if (fl >= 0 && !conn_nonblock(c))
		real.fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	conn_put(c);
}

/* A connect the rule leaves alone (PASS): counted and logged. Returns 1: libc's call. */
static int connect_pass(const struct decision *d)
{
	const struct policy_rule *r = d->rule;

	if (!d->matched)
		return 1;
	stats_decided(r, POLICY_PLAIN);
	if (r != NULL && log_enabled(LOG_LVL_DEBUG)) {
		char t[EP_TEXT_MAX];

		log_debug("connect %s:%u: plain by %s:%u", ep_text(&d->ep, t), d->ep.port,
			  r->source, r->line);
	}
	return 1;
}

int wrap_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	struct decision d;
	char desc[NAMES_MAX_NAME + 80], t[EP_TEXT_MAX];
	struct conn *c;
	int rc, err = 0, off = 0;

	real_init(); /* wrapped work ahead: the whole table */
	switch (decide_connect(shim.policy, fd, sa, len, &d)) {
	case DECIDE_REFUSE:
		ep_describe(&d.ep, NULL, desc, sizeof(desc));
		log_error("connect %s: refused: %s", desc, d.why);
		return -outcome_errno(OUTCOME_REFUSED);
	case DECIDE_PASS:
		return connect_pass(&d);
	case DECIDE_DENY:
	case DECIDE_WRAP:
	default:
		break;
	}
	memcpy(desc, "connect ", 9); /* ep_describe writes from the NUL on */
	ep_describe(&d.ep, d.peer, desc + 8, sizeof(desc) - 8);
	if (d.outcome == DECIDE_DENY) {
		log_warn("%s: denied by policy (%s:%u)", desc, d.rule->source, d.rule->line);
		stats_decided(d.rule, POLICY_DENY);
		return -outcome_errno(OUTCOME_DENIED);
	}
	/*
	 * TCP Fast Open would put our first flight in the SYN, and with
	 * TCP_FASTOPEN_CONNECT make connect() return before there is a
	 * connection: the shim connects first, then speaks TLS.
	 */
	real.setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &off, sizeof(off));
	c = conn_new_client(fd, d.rule, d.peer, ep_text(&d.ep, t), d.ep.port, desc, &err);
	if (c == NULL)
		return -err;
	rc = fdtab_set(fd, c);
	if (rc != 0) {
		conn_put(c);
		return rc;
	}
	rc = conn_connect(c, sa, len);
	/*
	 * A TCP-level failure leaves the socket unconnected (it may be connected
	 * again). After EINTR the connection goes on, still ours to wrap.
	 */
	if (rc < 0 && rc != -EINPROGRESS && rc != -EINTR && !c->tls_failed)
		unwrap(fd);
	else
		/*
		 * Registered with epoll before connect() (nginx does): switched to
		 * ours only now, because switching asks the connection for its
		 * readiness, and a socket not yet connecting polls writable (POLLOUT|
		 * POLLHUP) with no error: the handshake would start on it and fail.
		 */
		epreg_adopt(fd, c);
	conn_put(c);
	return rc;
}

int wrap_connect_again(int fd, int *decide)
{
	struct conn *c = fdtab_get(fd);
	int rc, afresh;

	*decide = 1;
	if (c == NULL)
		return 0;
	rc = conn_connect_again(c, &afresh);
	conn_put(c);
	*decide = 0;
	/* After a TCP failure this call reports it, as Linux does; the next one starts afresh. */
	if (afresh)
		unwrap(fd);
	return rc;
}

int wrap_fastopen(int fd, const struct sockaddr **sa, socklen_t salen, struct sockaddr_storage *ss)
{
	int decide, rc;

	if (!shim.has_connect && !fdtab_maybe(fd))
		return 1;
	rc = wrap_connect_again(fd, &decide);
	if (!decide)
		return rc;
	/*
	 * A bad pointer is the kernel's EFAULT to give. A good address is decided
	 * on a copy, which *SA then points to: libc gets what was decided.
	 */
	if (*sa == NULL || !shim.has_connect || sockaddr_copy(ss, *sa, salen) != 0)
		return 1;
	*sa = (const struct sockaddr *)ss;
	return wrap_connect(fd, *sa, salen);
}

int wrap_fastopen_msg(int fd, const struct msghdr *msg, struct msghdr *copy,
		      struct sockaddr_storage *ss)
{
	const struct sockaddr *sa;
	socklen_t len;
	int r;

	if (msg == NULL)
		return 1;
	sa = msg->msg_name;
	len = msg->msg_namelen;
	if ((int)len >= 0 && len > (socklen_t)sizeof(struct sockaddr_storage))
		len = sizeof(struct sockaddr_storage);
	r = wrap_fastopen(fd, &sa, len, ss);
	*copy = *msg;
	copy->msg_name = (void *)sa;
	return r;
}

int wrap_disconnect(int fd, const struct sockaddr *sa, socklen_t len)
{
	struct conn *c = fdtab_get(fd);
	int rc;

	if (c == NULL)
		return real.connect(fd, sa, len);
	rc = real.connect(fd, sa, len);
	if (rc == 0)
		fdclose_disconnect(c);
	conn_put(c);
	return rc;
}

/*
 * The peer of accepted FD into ENDS[1] (family 0 if unknown), from the
 * program's address buffer when it has one (CAP: its size; the kernel
 * reports the full length), else from getpeername().
 */
static void accepted_peer(int fd, const struct sockaddr *sa, const socklen_t *salen, socklen_t cap,
			  struct ep *peer)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (sa != NULL && salen != NULL && *salen <= cap && ep_from_sockaddr(peer, sa, *salen) == 0)
		return;
	if (real.getpeername(fd, (struct sockaddr *)&ss, &sl) == 0 &&
	    ep_from_sockaddr(peer, (struct sockaddr *)&ss, sl) == 0)
		return;
	memset(peer, 0, sizeof(*peer));
}

/*
 * Acts on the decision D for accepted FD (ENDS: its local and peer address).
 * Returns 1 when the program gets FD, 0 when FD was closed (denied, or it
 * could not be protected).
 */
static int accept_wrap(int fd, const struct decision *d, const struct ep ends[2], int flags)
{
	char desc[CONN_ACCEPT_DESC_MAX];
	struct conn *c;
	int err = 0;

	if (d->outcome == DECIDE_DENY) {
		log_warn("%s: denied by policy (%s:%u)", conn_accept_desc(ends, desc),
			 d->rule->source, d->rule->line);
		stats_decided(d->rule, POLICY_DENY);
		real.close(fd);
		return 0; /* the program never sees it; a non-blocking accept says EAGAIN */
	}
	/* Its log prefix is made if a line needs it (conn_desc()): most never print one. */
	c = conn_new_server(fd, d->rule, NULL, ends, (flags & SOCK_NONBLOCK) != 0, d->nodelay,
			    &err);
	if (c == NULL || fdtab_set(fd, c) != 0) {
		/* Never hand over a connection we could not protect. */
		log_error("%s: cannot wrap the connection: %s", conn_accept_desc(ends, desc),
			  strerror(err ? err : ENOMEM));
		if (c != NULL)
			conn_put(c);
		real.close(fd);
		return 0;
	}
	conn_put(c);
	return 1;
}

int wrap_accept(int lfd, struct sockaddr *sa, socklen_t *salen, int flags)
{
	real_init(); /* wrapped work ahead: the whole table */
	for (;;) {
		struct decision d;
		struct ep ends[2];
		socklen_t cap = salen != NULL ? *salen : 0;
		int fd = real.accept4(lfd, sa, salen, flags), saved;

		if (fd < 0)
			return -errno;
		saved = errno;
		fd_new(fd);
		if (decide_accept(shim.policy, lfd, fd, &d) == DECIDE_PASS) {
			stats_decided(d.rule, POLICY_PLAIN);
			errno = saved;
			return fd;
		}
		ends[0] = d.ep;
		accepted_peer(fd, sa, salen, cap, &ends[1]);
		if (accept_wrap(fd, &d, ends, flags)) {
			errno = saved;
			return fd;
		}
	}
}
