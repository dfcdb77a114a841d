/*
 * accept.c - hooks: accept()/accept4() choose a rule by the listening
 * socket's local address and wrap the accepted connection. The handshake is
 * lazy: it runs on the connection's first I/O, so one slow client never holds
 * up accept() or an event loop's other clients. listen() notes the port, so
 * that a connect() to this process's own listener does not wait for a
 * handshake only a later accept() could answer.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "conn.h"
#include "fdtab.h"
#include "hook.h"
#include "listeners.h"
#include "log.h"
#include "names.h"
#include "shim.h"
#include "stats.h"

/*
 * The rule for connections accepted on LFD. The target is the listening
 * socket's address; for a wildcard listener (0.0.0.0, ::), the address the
 * connection arrived on, so that `accept 127.0.0.1:6379 ...` works for a
 * server bound to every interface. *NODELAY: the connection's TCP_NODELAY,
 * learnt with the check that it is TCP (one system call for both).
 */
static const struct policy_rule *accept_rule(int lfd, int fd, struct ep *local, int *nodelay)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct policy_query q = {.dir = POLICY_ACCEPT};
	static const unsigned char zero[16];
	const char *alt[8];

	if (real.getsockname(lfd, (struct sockaddr *)&ss, &len) != 0 ||
	    ep_from_sockaddr(local, (struct sockaddr *)&ss, len) != 0)
		return NULL;
	if (memcmp(local->addr, zero, local->family == AF_INET ? 4 : 16) == 0) {
		len = sizeof(ss);
		if (real.getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
		    ep_from_sockaddr(local, (struct sockaddr *)&ss, len) != 0)
			return NULL;
	}
	*nodelay = fd_tcp_nodelay(fd);
	if (*nodelay < 0)
		return NULL;
	q.family = local->family;
	memcpy(q.addr, local->addr, sizeof(q.addr));
	q.port = local->port;
	q.alt_names = alt;
	q.n_alt = names_self(shim.policy, POLICY_ACCEPT, local->family, local->addr, alt, 8);
	return policy_match(shim.policy, &q, NULL);
}

/* CAP: the size of the program's address buffer (the kernel reports the full length). */
static void describe_peer(int fd, const struct sockaddr *sa, const socklen_t *salen, socklen_t cap,
			  const struct ep *local, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct ep peer;
	char l[80], p[80] = "?";

	ep_describe(local, NULL, l, sizeof(l));
	if (sa != NULL && salen != NULL && *salen <= cap &&
	    ep_from_sockaddr(&peer, sa, *salen) == 0)
		ep_describe(&peer, NULL, p, sizeof(p));
	else if (real.getpeername(fd, (struct sockaddr *)&ss, &sl) == 0 &&
		 ep_from_sockaddr(&peer, (struct sockaddr *)&ss, sl) == 0)
		ep_describe(&peer, NULL, p, sizeof(p));
	snprintf(buf, len, "accept %s from %s", l, p);
}

static int shim_accept(int lfd, struct sockaddr *sa, socklen_t *salen, int flags)
{
	real_init(); /* wrapped work ahead: the whole table */
	for (;;) {
		const struct policy_rule *r;
		struct conn *c;
		struct ep local;
		char desc[200];
		int fd, err = 0, saved, nodelay;
		socklen_t cap = salen != NULL ? *salen : 0;

		fd = real.accept4(lfd, sa, salen, flags);
		if (fd < 0)
			return fd;
		fd_new(fd);
		saved = errno;
		r = accept_rule(lfd, fd, &local, &nodelay);
		if (r == NULL || r->action == POLICY_PLAIN) {
			stats_decided(r, POLICY_PLAIN);
			errno = saved;
			return fd;
		}
		describe_peer(fd, sa, salen, cap, &local, desc, sizeof(desc));
		if (r->action == POLICY_DENY) {
			log_warn("%s: denied by policy (%s:%u)", desc, r->source, r->line);
			stats_decided(r, POLICY_DENY);
			real.close(fd);
			continue; /* the program never sees it; a non-blocking accept says EAGAIN */
		}
		c = conn_new_server(fd, r, desc, (flags & SOCK_NONBLOCK) != 0, nodelay, &err);
		if (c == NULL || fdtab_set(fd, c) != 0) {
			/* Never hand over a connection we could not protect. */
			log_error("%s: cannot wrap the connection: %s", desc,
				  strerror(err ? err : ENOMEM));
			if (c != NULL)
				conn_put(c);
			real.close(fd);
			continue;
		}
		conn_put(c);
		errno = saved;
		return fd;
	}
}

HOOK int accept(int fd, struct sockaddr *sa, socklen_t *len)
{
	int nfd;

	NEED_REAL(accept);
	if (shim.has_accept)
		return shim_accept(fd, sa, len, 0);
	nfd = real.accept(fd, sa, len);
	fd_new(nfd);
	return nfd;
}
HOOK_INTERNAL(accept)

HOOK int accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
	int nfd;

	NEED_REAL(accept4);
	if (shim.has_accept)
		return shim_accept(fd, sa, len, flags);
	nfd = real.accept4(fd, sa, len, flags);
	fd_new(nfd);
	return nfd;
}
HOOK_INTERNAL(accept4)

HOOK int listen(int fd, int backlog)
{
	int rc;

	NEED_REAL(listen);
	rc = real.listen(fd, backlog);
	if (rc == 0 && shim.has_connect) {
		real_init(); /* fd_is_tcp() and friends */
		listeners_note(fd);
	}
	return rc;
}
HOOK_INTERNAL(listen)
