/*
 * decide.h - which rule applies to a connection, and what it says: the one
 * decision behind connect() (and the implicit connect of MSG_FASTOPEN) and
 * accept(). It does nothing to the connection and logs nothing: wrap.c acts
 * on the decision. `tlsshim explain` (cmd/explain.c) reaches the same rule by
 * the same policy_match() on the same query; it cannot link this module (it
 * asks the sockets and the names the program resolved, which only the
 * preload library has).
 */
#ifndef TLSSHIM_DECIDE_H
#define TLSSHIM_DECIDE_H

#include <sys/socket.h>

#include "addr.h"
#include "log.h"
#include "names.h"
#include "policy.h"

enum decide_outcome {
	DECIDE_PASS,   /* left alone: not a TCP connection the kernel would try, no rule, plain */
	DECIDE_DENY,   /* the rule denies it */
	DECIDE_REFUSE, /* connect: several names for the address, and the rule would guess */
	DECIDE_WRAP,   /* the shim takes it over: tls, or auto (accept) */
};

struct decision {
	enum decide_outcome outcome;
	const struct policy_rule *rule; /* the rule that applies, or NULL (also for REFUSE) */
	int matched;                    /* the connection was TCP and looked up at all */
	struct ep ep;     /* connect: the destination; accept: the local address matched */
	const char *peer; /* connect: the name sent as SNI and verified, or NULL: the address */
	int nodelay;      /* accept: the connection's TCP_NODELAY */
	char name[NAMES_MAX_NAME];   /* what PEER may point to */
	char why[LOG_MSG_MAX - 100]; /* REFUSE: why (the names, cut to fit a log line) */
};

/*
 * Decides the connect Q (family, address, port and alt names set; Q->name is
 * set here, to NAMEBUF or NULL): finds the candidate names of Q's address,
 * matches the policy P, and sets *PEER to the one name to send as SNI and to
 * verify (NULL: none, verify the address). With several candidates (the
 * calling thread resolved none, other threads resolved different names), the
 * rule is the one every candidate matches, and the name comes from the rule
 * (an exact-name rule, or its name=/sni=); when no candidate's rule would
 * wrap or deny it, returns NULL (left alone); when the candidates disagree
 * otherwise, or a tls rule would have to guess the name, returns NULL with
 * WHY (never empty then) saying so: the caller refuses the connection. Otherwise WHY is
 * "" and the result is policy_match()'s (NULL: no rule). M is filled in.
 */
const struct policy_rule *decide_connect_rule(const struct policy *p, struct policy_query *q,
					      struct policy_match *m, const char **peer,
					      char *namebuf, char *why, size_t whylen);

/*
 * Decides connecting TCP socket FD to (SA, LEN), an address already copied
 * from the program, under policy P. Asks the kernel about FD (type, family)
 * and the names table about the address; may resolve the policy's exact
 * names (names_self). Fills D (D->peer may point into D) and returns
 * D->outcome. errno is preserved.
 */
enum decide_outcome decide_connect(const struct policy *p, int fd, const struct sockaddr *sa,
				   socklen_t len, struct decision *d);

/*
 * Decides connection FD, just accepted on listening socket LFD, under P: the
 * target is LFD's local address, or for a wildcard listener (0.0.0.0, ::)
 * the address FD arrived on. PASS also when FD is not TCP or its addresses
 * cannot be had. Fills D (D->nodelay: FD's TCP_NODELAY, learnt with the
 * check that it is TCP) and returns D->outcome. errno is preserved.
 */
enum decide_outcome decide_accept(const struct policy *p, int lfd, int fd, struct decision *d);

/*
 * Whether LFD is a TCP listening socket whose connections P wraps or denies
 * (for a wildcard listener: may, by the address they arrive on), with its
 * address in *EP. For what a new program inherits across exec. errno is
 * preserved.
 */
int decide_listener(const struct policy *p, int lfd, struct ep *ep);

#endif
