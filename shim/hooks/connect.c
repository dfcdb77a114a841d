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
#include "fdtab.h"
#include "hook.h"
#include "log.h"
#include "names.h"
#include "shim.h"

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

static int shim_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	struct policy_query q = {.dir = POLICY_CONNECT};
	struct policy_match m;
	const struct policy_rule *r;
	const char *alt[8];
	char name[NAMES_MAX_NAME];
	char desc[NAMES_MAX_NAME + 80];
	const char *peer;
	struct conn *c;
	struct ep ep;
	int rc, err = 0, afresh;

	real_init(); /* wrapped work ahead: the whole table */
	c = fdtab_get(fd);
	if (c != NULL) {
		rc = conn_connect_again(c, &afresh);
		/* After a TCP failure a socket may connect again: start afresh. */
		if (afresh) {
			conn_put(c);
			unwrap(fd);
		} else {
			conn_put(c);
			return (int)hook_ret(rc);
		}
	}
	if (ep_from_sockaddr(&ep, sa, len) != 0 || !fd_is_tcp(fd))
		return real.connect(fd, sa, len);
	q.family = ep.family;
	memcpy(q.addr, ep.addr, sizeof(q.addr));
	q.port = ep.port;
	if (names_lookup(ep.family, ep.addr, name))
		q.name = name;
	q.alt_names = alt;
	q.n_alt = names_self(shim.policy, POLICY_CONNECT, ep.family, ep.addr, alt, 8);
	r = policy_match(shim.policy, &q, &m);
	if (r == NULL || r->action == POLICY_PLAIN) {
		if (r != NULL)
			log_debug("connect %s:%u: plain by %s:%u", ep.text, ep.port, r->source,
				  r->line);
		return real.connect(fd, sa, len);
	}
	/* The name the rule is about: SNI and the name the certificate must carry. */
	peer = (m.host_kind == POLICY_HOST_NAME && m.name != NULL) ? m.name : q.name;
	memcpy(desc, "connect ", 8);
	ep_describe(&ep, peer, desc + 8, sizeof(desc) - 8);
	if (r->action == POLICY_DENY) {
		log_warn("%s: denied by policy (%s:%u)", desc, r->source, r->line);
		errno = EACCES;
		return -1;
	}
	c = conn_new_client(fd, r, peer, ep.text, ep.port, desc, &err);
	if (c == NULL)
		return (int)hook_ret(-err);
	rc = fdtab_set(fd, c);
	if (rc != 0) {
		conn_put(c);
		return (int)hook_ret(rc);
	}
	epreg_adopt(fd, c);
	rc = conn_connect(c, sa, len);
	/* A TCP-level failure leaves the socket as it was (it may be connected again). */
	if (rc < 0 && rc != -EINPROGRESS && !c->tls_failed)
		unwrap(fd);
	conn_put(c);
	return (int)hook_ret(rc);
}

HOOK int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	NEED_REAL(connect);
	if (shim.has_connect && sa != NULL &&
	    (sa->sa_family == AF_INET || sa->sa_family == AF_INET6))
		return shim_connect(fd, sa, len);
	return real.connect(fd, sa, len);
}
HOOK_ALIAS(connect, __connect)
HOOK_INTERNAL(connect)

/* TCP_NODELAY as the program set it (the wrapped socket always has it on). */
static int nodelay_get(struct conn *c, void *val, socklen_t *len)
{
	if (val == NULL || len == NULL || *len < (socklen_t)sizeof(int))
		return -EINVAL;
	*(int *)val = conn_nodelay(c);
	*len = sizeof(int);
	return 0;
}

HOOK int setsockopt(int fd, int level, int opt, const void *val, socklen_t len)
{
	struct conn *c;
	int rc;

	NEED_REAL(setsockopt);
	if (likely(level != IPPROTO_TCP || opt != TCP_NODELAY || !fdtab_maybe(fd)))
		return real.setsockopt(fd, level, opt, val, len);
	c = fdtab_get(fd);
	if (c == NULL)
		return real.setsockopt(fd, level, opt, val, len);
	rc = 0;
	if (val == NULL || len < (socklen_t)sizeof(int))
		rc = -EINVAL;
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
	if (likely(!fdtab_maybe(fd)) || !((level == SOL_SOCKET && opt == SO_ERROR) ||
					  (level == IPPROTO_TCP && opt == TCP_NODELAY)))
		return real.getsockopt(fd, level, opt, val, len);
	c = fdtab_get(fd);
	if (c == NULL)
		return real.getsockopt(fd, level, opt, val, len);
	if (level == IPPROTO_TCP) {
		e = nodelay_get(c, val, len);
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
