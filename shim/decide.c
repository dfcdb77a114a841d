/*
 * decide.c - the rule for a connection and its outcome (see decide.h).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
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

/* One candidate name or none: the policy's match, and the name the rule is about. */
static const struct policy_rule *match_one(const struct policy *p, const struct policy_query *q,
					   struct policy_match *m, const char **peer)
{
	const struct policy_rule *r = policy_match(p, q, m);

	/*
	 * The name the rule is about: SNI and the name the certificate must carry.
	 * A name rule matched by the name as the resolver completed it is about
	 * that name ("*.svc.cluster.local" matched by "redis" found as
	 * "redis.default.svc.cluster.local").
	 */
	if (r != NULL)
		*peer = ((m->host_kind == POLICY_HOST_NAME || m->host_kind == POLICY_HOST_SUFFIX) &&
			 m->name != NULL)
			    ? m->name
			    : q->name;
	return r;
}

/* Why several names cannot decide (AGREE: they all chose R), the names cut to fit WHYLEN. */
static void why_several(char *why, size_t whylen, char (*cand)[NAMES_MAX_NAME], size_t n,
			const struct policy_rule *r, int agree)
{
	char tail[200];
	size_t used, room;

	/* The advice always fits: the list of names is what gets cut. */
	if (agree)
		snprintf(tail, sizeof(tail),
			 ") and the rule (%s:%u) has no name=: the name to verify would be a "
			 "guess; add name=NAME to the rule",
			 r->source, r->line);
	else
		snprintf(tail, sizeof(tail),
			 ") and they match different rules: which applies would be a guess; add "
			 "a rule with name=NAME for this address");
	room = whylen > strlen(tail) ? whylen - strlen(tail) : 1;
	used = (size_t)snprintf(why, room, "several names were resolved to this address (");
	for (size_t i = 0; i < n && used < room; i++)
		used += (size_t)snprintf(why + used, room - used, "%s%s", i ? ", " : "", cand[i]);
	if (used >= room)
		used = room - 1;
	snprintf(why + used, whylen - used, "%s", tail);
}

/*
 * Several threads resolved different names CAND[0..N) to this address and this
 * one resolved none: whichever the program meant, it is not known. Decides
 * only what every candidate decides alike, and never verifies a guess.
 */
static const struct policy_rule *match_several(const struct policy *p, struct policy_query *q,
					       struct policy_match *m, const char **peer,
					       char (*cand)[NAMES_MAX_NAME], size_t n, char *why,
					       size_t whylen)
{
	const struct policy_rule *r = NULL, *ri;
	struct policy_match mi;
	int agree = 1, wraps = 0;

	for (size_t i = 0; i < n; i++) {
		char name[NAMES_MAX_NAME], fqdn[NAMES_MAX_NAME];

		names_split(cand[i], name, fqdn);
		q->name = name;
		q->fqdn = fqdn[0] != '\0' ? fqdn : NULL;
		ri = policy_match(p, q, &mi);
		/* Named as the program wrote it, in the reason below. */
		memcpy(cand[i], name, sizeof(name));
		if (i == 0) {
			r = ri;
			*m = mi;
		} else if (ri != r) {
			agree = 0;
		}
		wraps |= ri != NULL && ri->action != POLICY_PLAIN;
	}
	q->name = NULL;
	q->fqdn = NULL;
	/* Left alone whichever name was meant: nothing to verify, nothing to refuse. */
	if (!wraps && agree)
		return r;
	if (agree && (r == NULL || r->action == POLICY_PLAIN || r->action == POLICY_DENY))
		return r;
	if (agree && r->host_kind == POLICY_HOST_NAME) {
		/* Every candidate chose this exact-name rule: its name is the one. */
		*peer = r->host;
		m->name = r->host;
		return r;
	}
	if (agree && (r->opt.name != NULL || r->opt.sni != NULL)) {
		*peer = r->opt.name != NULL ? r->opt.name : r->opt.sni;
		m->name = NULL;
		return r;
	}
	if (wraps)
		why_several(why, whylen, cand, n, r, agree);
	*m = (struct policy_match){0};
	return NULL;
}

const struct policy_rule *decide_connect_rule(const struct policy *p, struct policy_query *q,
					      struct policy_match *m, const char **peer,
					      char *namebuf, char *why, size_t whylen)
{
	char cand[NAMES_MAX_CANDIDATES][NAMES_MAX_NAME], fqdn[NAMES_MAX_NAME];
	const struct policy_rule *r;
	size_t n;
	int own;

	why[0] = '\0';
	*peer = NULL;
	n = names_candidates(q->family, q->addr, cand, NAMES_MAX_CANDIDATES, &own);
	if (n > 1)
		return match_several(p, q, m, peer, cand, n, why, whylen);
	if (n == 0)
		return match_one(p, q, m, peer);
	names_split(cand[0], namebuf, fqdn);
	q->name = namebuf;
	q->fqdn = fqdn[0] != '\0' ? fqdn : NULL;
	r = match_one(p, q, m, peer);
	if (q->fqdn != NULL && *peer == q->fqdn) {
		/* The name that decided is the complete one: it outlives this frame. */
		memcpy(namebuf, fqdn, NAMES_MAX_NAME);
		*peer = namebuf;
		m->name = namebuf;
	}
	q->fqdn = NULL;
	return r;
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
	r = decide_connect_rule(p, &q, &m, &d->peer, d->name, d->why, sizeof(d->why));
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

/* Whether a non-plain accept rule of P (or its floor) may cover PORT on some address. */
static int any_accept_rule(const struct policy *p, uint16_t port)
{
	for (const struct policy *t = p; t != NULL; t = t == p ? policy_floor(p) : NULL)
		for (size_t i = 0; i < policy_count(t); i++) {
			const struct policy_rule *r = policy_rule_at(t, i);

			if (r->dir == POLICY_ACCEPT && r->action != POLICY_PLAIN &&
			    port >= r->port_lo && port <= r->port_hi)
				return 1;
		}
	return 0;
}

int decide_listener(const struct policy *p, int lfd, struct ep *ep)
{
	static const unsigned char zero[16];
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct policy_query q;
	const struct policy_rule *r;
	const char *alt[MAX_ALT];
	socklen_t ol = sizeof(int);
	int saved = errno, on = 0;

	if (fd_is_tcp(lfd) != 1 || real.getsockopt(lfd, SOL_SOCKET, SO_ACCEPTCONN, &on, &ol) != 0 ||
	    !on || real.getsockname(lfd, (struct sockaddr *)&ss, &len) != 0 ||
	    ep_from_sockaddr(ep, (struct sockaddr *)&ss, len) != 0) {
		errno = saved;
		return 0;
	}
	errno = saved;
	/* A wildcard listener: the rule depends on the address each connection arrives on. */
	if (memcmp(ep->addr, zero, ep->family == AF_INET ? 4 : 16) == 0)
		return any_accept_rule(p, ep->port);
	query_init(&q, POLICY_ACCEPT, ep);
	q.alt_names = alt;
	q.n_alt = names_self(p, POLICY_ACCEPT, ep->family, ep->addr, alt, MAX_ALT);
	r = policy_match(p, &q, NULL);
	errno = saved;
	return r != NULL && r->action != POLICY_PLAIN;
}
