/*
 * names_match.c - the connect rule for an address, given the names the
 * program resolved to it (names_match_connect in names.h): one name is
 * matched as usual; several, none of them this thread's, are never guessed
 * between.
 */
#include <stdio.h>
#include <string.h>

#include "names.h"

/* At most one candidate (N): the ordinary look-up, with its name if there is one. */
static const struct policy_rule *match_single(const struct policy *p, struct policy_query *q,
					      struct policy_match *m, const char **peer,
					      char (*cand)[NAMES_MAX_NAME], size_t n, char *namebuf)
{
	const struct policy_rule *r;

	if (n == 1) {
		memcpy(namebuf, cand[0], NAMES_MAX_NAME);
		q->name = namebuf;
	}
	r = policy_match(p, q, m);
	/* The name the rule is about: SNI and the name the certificate must carry. */
	if (r != NULL)
		*peer = (m->host_kind == POLICY_HOST_NAME && m->name != NULL) ? m->name : q->name;
	return r;
}

/*
 * Matches Q under every candidate name: returns the first one's rule (its
 * match in *M); *AGREE says whether all chose that rule, *WRAPS whether any
 * rule would wrap. Q->name is NULL again on return.
 */
static const struct policy_rule *match_each(const struct policy *p, struct policy_query *q,
					    struct policy_match *m, char (*cand)[NAMES_MAX_NAME],
					    size_t n, int *agree, int *wraps)
{
	const struct policy_rule *r = NULL, *ri;
	struct policy_match mi;

	*agree = 1;
	*wraps = 0;
	for (size_t i = 0; i < n; i++) {
		q->name = cand[i];
		ri = policy_match(p, q, &mi);
		if (i == 0) {
			r = ri;
			*m = mi;
		} else if (ri != r) {
			*agree = 0;
		}
		*wraps |= ri != NULL && ri->action != POLICY_PLAIN;
	}
	q->name = NULL;
	return r;
}

/*
 * WHY for a refusal: the candidates' names and the advice (the rule R when
 * they AGREE). The advice always fits: the list of names is what gets cut.
 */
static void why_several(char *why, size_t whylen, char (*cand)[NAMES_MAX_NAME], size_t n,
			const struct policy_rule *r, int agree)
{
	char tail[200];
	size_t used, room;

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

/* Contract in names.h. */
const struct policy_rule *names_match_connect(const struct policy *p, struct policy_query *q,
					      struct policy_match *m, const char **peer,
					      char *namebuf, char *why, size_t whylen)
{
	char cand[NAMES_MAX_CANDIDATES][NAMES_MAX_NAME];
	const struct policy_rule *r;
	size_t n;
	int own, agree, wraps;

	why[0] = '\0';
	*peer = NULL;
	n = names_candidates(q->family, q->addr, cand, NAMES_MAX_CANDIDATES, &own);
	if (n <= 1)
		return match_single(p, q, m, peer, cand, n, namebuf);
	/*
	 * Several threads resolved different names to this address and this one
	 * resolved none: whichever the program meant, it is not known. Decide
	 * only what every candidate decides alike, and never verify a guess.
	 */
	r = match_each(p, q, m, cand, n, &agree, &wraps);
	/* Left alone whichever name was meant: nothing to verify, nothing to refuse. */
	if (!wraps) {
		if (agree)
			return r;
		*m = (struct policy_match){0};
		return NULL;
	}
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
	why_several(why, whylen, cand, n, r, agree);
	*m = (struct policy_match){0};
	return NULL;
}
