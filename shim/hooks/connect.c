/*
 * connect.c - hooks: connect() chooses a rule and wraps; getsockopt(SO_ERROR)
 * reports the wrapped connection's outcome.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "conn.h"
#include "epreg.h"
#include "errmap.h"
#include "fdtab.h"
#include "hook.h"
#include "inherit.h"
#include "log.h"
#include "names.h"
#include "shim.h"
#include "stats.h"

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

int connect_decide(int fd, const struct sockaddr *sa, socklen_t len)
{
	struct policy_query q = {.dir = POLICY_CONNECT};
	struct policy_match m;
	const struct policy_rule *r;
	const char *alt[8];
	char name[NAMES_MAX_NAME], why[LOG_MSG_MAX - 100]; /* the names, cut to a log line */
	char desc[NAMES_MAX_NAME + 80];
	const char *peer;
	struct conn *c;
	struct ep ep;
	int rc, err = 0, off = 0;

	real_init(); /* wrapped work ahead: the whole table */
	if (tcp_destination(fd, sa, len, &ep) != 0)
		return 1;
	q.family = ep.family;
	memcpy(q.addr, ep.addr, sizeof(q.addr));
	q.port = ep.port;
	q.alt_names = alt;
	q.n_alt = names_self(shim.policy, POLICY_CONNECT, ep.family, ep.addr, alt, 8);
	/* The name the rule is about: SNI and the name the certificate must carry. */
	r = names_match_connect(shim.policy, &q, &m, &peer, name, why, sizeof(why));
	if (why[0] != '\0') {
		/* Never a guess between names: refused before a packet leaves. */
		ep_describe(&ep, NULL, desc, sizeof(desc));
		log_error("connect %s: refused: %s", desc, why);
		return -outcome_errno(OUTCOME_REFUSED);
	}
	if (r == NULL || r->action == POLICY_PLAIN) {
		stats_decided(r, POLICY_PLAIN);
		if (r != NULL)
			log_debug("connect %s:%u: plain by %s:%u", ep.text, ep.port, r->source,
				  r->line);
		return 1;
	}
	memcpy(desc, "connect ", 8);
	ep_describe(&ep, peer, desc + 8, sizeof(desc) - 8);
	if (r->action == POLICY_DENY) {
		log_warn("%s: denied by policy (%s:%u)", desc, r->source, r->line);
		stats_decided(r, POLICY_DENY);
		return -outcome_errno(OUTCOME_DENIED);
	}
	/*
	 * TCP Fast Open would put our first flight in the SYN, and with
	 * TCP_FASTOPEN_CONNECT make connect() return before there is a
	 * connection: the shim connects first, then speaks TLS.
	 */
	real.setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &off, sizeof(off));
	c = conn_new_client(fd, r, peer, ep.text, ep.port, desc, &err);
	if (c == NULL)
		return -err;
	rc = fdtab_set(fd, c);
	if (rc != 0) {
		conn_put(c);
		return rc;
	}
	epreg_adopt(fd, c);
	rc = conn_connect(c, sa, len);
	/*
	 * A TCP-level failure leaves the socket unconnected (it may be connected
	 * again). After EINTR the connection goes on, still ours to wrap.
	 */
	if (rc < 0 && rc != -EINPROGRESS && rc != -EINTR && !c->tls_failed)
		unwrap(fd);
	conn_put(c);
	return rc;
}

int connect_again(int fd, int *decide)
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

static int shim_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	int rc, decide;

	rc = connect_again(fd, &decide);
	if (!decide)
		return (int)hook_ret(rc);
	rc = connect_decide(fd, sa, len);
	if (rc == 1)
		return real.connect(fd, sa, len);
	return (int)hook_ret(rc);
}

/*
 * connect(AF_UNSPEC) dissolves the association (the kernel resets the
 * connection), and the socket may then connect anywhere: the session ends
 * with it, without close_notify (the plain socket sends a reset), and the
 * next connect() is decided afresh.
 */
static int shim_disconnect(int fd, const struct sockaddr *sa, socklen_t len)
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
 * The address is copied first: a bad pointer gets the kernel's EFAULT instead
 * of a crash, and the connection is decided and made on one value (another
 * thread could otherwise change it between the decision and the connect).
 */
static int shim_connect_copy(int fd, const struct sockaddr *sa, socklen_t len)
{
	struct sockaddr_storage ss;
	const struct sockaddr *a = (const struct sockaddr *)&ss;

	if (sockaddr_copy(&ss, sa, len) != 0)
		return real.connect(fd, sa, len);
	if (len >= (socklen_t)sizeof(sa_family_t) && a->sa_family == AF_UNSPEC && fdtab_maybe(fd))
		return shim_disconnect(fd, a, len);
	if (shim.has_connect && (a->sa_family == AF_INET || a->sa_family == AF_INET6))
		return shim_connect(fd, a, len);
	return real.connect(fd, a, len);
}

HOOK int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	NEED_REAL(connect);
	if (sa != NULL && (shim.has_connect || fdtab_maybe(fd)))
		return shim_connect_copy(fd, sa, len);
	return real.connect(fd, sa, len);
}
HOOK_ALIAS(connect, __connect)
HOOK_INTERNAL(connect)

/*
 * TCP_NODELAY and TCP_CORK as the program set them (the wrapped socket always
 * has TCP_NODELAY; TLS connections gather corked bytes themselves).
 */
static int tcpopt_get(struct conn *c, int opt, void *val, socklen_t *len)
{
	if (val == NULL || len == NULL || *len < (socklen_t)sizeof(int))
		return -EINVAL;
	*(int *)val = opt == TCP_CORK ? conn_cork(c) : conn_nodelay(c);
	*len = sizeof(int);
	return 0;
}

HOOK int setsockopt(int fd, int level, int opt, const void *val, socklen_t len)
{
	struct conn *c;
	int rc;

	NEED_REAL(setsockopt);
	/* An fd standing for a TCP connection whose TLS session is in a relay (inherit.c). */
	if (unlikely(inherit_any_relayed()) && inherit_setsockopt(fd, level, opt, val, len, &rc))
		return (int)hook_ret(rc);
	if (likely(level != IPPROTO_TCP || (opt != TCP_NODELAY && opt != TCP_CORK) ||
		   !fdtab_maybe(fd)))
		return real.setsockopt(fd, level, opt, val, len);
	c = fdtab_get(fd);
	if (c == NULL)
		return real.setsockopt(fd, level, opt, val, len);
	rc = 0;
	if (val == NULL || len < (socklen_t)sizeof(int))
		rc = -EINVAL;
	else if (opt == TCP_CORK)
		rc = conn_set_cork(c, *(const int *)val != 0);
	else
		conn_set_nodelay(c, *(const int *)val != 0);
	conn_put(c);
	return (int)hook_ret(rc);
}

HOOK int getsockopt(int fd, int level, int opt, void *val, socklen_t *len)
{
	struct conn *c;
	short kev;
	int e;

	NEED_REAL(getsockopt);
	if (unlikely(inherit_any_relayed()) && inherit_getsockopt(fd, level, opt, val, len, &e))
		return (int)hook_ret(e);
	if (likely(!fdtab_maybe(fd)) ||
	    !((level == SOL_SOCKET && opt == SO_ERROR) ||
	      (level == IPPROTO_TCP && (opt == TCP_NODELAY || opt == TCP_CORK))))
		return real.getsockopt(fd, level, opt, val, len);
	c = fdtab_get(fd);
	if (c == NULL)
		return real.getsockopt(fd, level, opt, val, len);
	if (level == IPPROTO_TCP) {
		e = tcpopt_get(c, opt, val, len);
		conn_put(c);
		return (int)hook_ret(e);
	}
	/* Let a connect in progress learn its outcome first, as the kernel would. */
	conn_poll_prepare(c, POLLOUT, &kev);
	e = conn_take_so_error(c);
	conn_put(c);
	if (val == NULL || len == NULL || *len < (socklen_t)sizeof(int)) {
		errno = EINVAL;
		return -1;
	}
	*(int *)val = e;
	*len = sizeof(int);
	return 0;
}
HOOK_INTERNAL(setsockopt)
HOOK_INTERNAL(getsockopt)
