/*
 * decide.c - the rule for a connection and its outcome (see decide.h).
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "decide.h"
#include "real.h"

#define MAX_ALT 8 /* the policy's own exact names of one address, looked at per decision */

static enum decide_outcome outcome(struct decision *d, const struct policy_rule *r)
{
	d->rule = r;
	if (r == NULL || r->action == POLICY_PLAIN)
		d->outcome = DECIDE_PASS;
	else if (r->action == POLICY_DENY)
		d->outcome = DECIDE_DENY;
	else
		d->outcome = DECIDE_WRAP;
	return d->outcome;
}

static void query_init(struct policy_query *q, enum policy_dir dir, const struct ep *ep)
{
	memset(q, 0, sizeof(*q));
	q->dir = dir;
	q->family = ep->family;
	memcpy(q->addr, ep->addr, sizeof(q->addr));
	q->port = ep->port;
}

enum decide_outcome decide_connect(const struct policy *p, int fd, const struct sockaddr *sa,
				   socklen_t len, struct decision *d)
{
	struct policy_query q;
	struct policy_match m;
	const struct policy_rule *r;
	const char *alt[MAX_ALT];
	int saved = errno;

	memset(d, 0, offsetof(struct decision, name));
	d->why[0] = '\0';
	if (tcp_destination(fd, sa, len, &d->ep) != 0)
		return outcome(d, NULL);
	d->matched = 1;
	query_init(&q, POLICY_CONNECT, &d->ep);
	q.alt_names = alt;
	q.n_alt = names_self(p, POLICY_CONNECT, d->ep.family, d->ep.addr, alt, MAX_ALT);
	/* The name the rule is about: SNI and the name the certificate must carry. */
	r = names_match_connect(p, &q, &m, &d->peer, d->name, d->why, sizeof(d->why));
	errno = saved;
	if (d->why[0] != '\0') {
		/* Never a guess between names: refused before a packet leaves. */
		d->rule = NULL;
		d->outcome = DECIDE_REFUSE;
		return d->outcome;
	}
	return outcome(d, r);
}

/* The address D's rule is looked up by: SS (LEN) of LFD, or FD's for a wildcard listener. */
static int accept_target(int lfd, int fd, struct ep *local)
{
	static const unsigned char zero[16];
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (real.getsockname(lfd, (struct sockaddr *)&ss, &len) != 0 ||
	    ep_from_sockaddr(local, (struct sockaddr *)&ss, len) != 0)
		return -1;
	if (memcmp(local->addr, zero, local->family == AF_INET ? 4 : 16) != 0)
		return 0;
	len = sizeof(ss);
	if (real.getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
	    ep_from_sockaddr(local, (struct sockaddr *)&ss, len) != 0)
		return -1;
	return 0;
}

enum decide_outcome decide_accept(const struct policy *p, int lfd, int fd, struct decision *d)
{
	struct policy_query q;
	const char *alt[MAX_ALT];
	int saved = errno;

	memset(d, 0, offsetof(struct decision, name));
	d->why[0] = '\0';
	if (accept_target(lfd, fd, &d->ep) != 0) {
		errno = saved;
		return outcome(d, NULL);
	}
	d->nodelay = fd_tcp_nodelay(fd);
	if (d->nodelay < 0) {
		errno = saved;
		return outcome(d, NULL);
	}
	d->matched = 1;
	query_init(&q, POLICY_ACCEPT, &d->ep);
	q.alt_names = alt;
	q.n_alt = names_self(p, POLICY_ACCEPT, d->ep.family, d->ep.addr, alt, MAX_ALT);
	errno = saved;
	return outcome(d, policy_match(p, &q, NULL));
}
