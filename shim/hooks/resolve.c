/*
 * resolve.c - hooks for the resolver calls: note which name the program
 * resolved to each address (names.c), so connect can match rules by name.
 *
 * Each hook calls libc, then records the answer when the policy has connect
 * rules. What libc returned, errno and h_errno reach the program untouched.
 *
 * Each hook resolves only its own libc function (NEED_REAL), not the whole
 * table: programs resolve names at start (libsasl looks up its host name, and
 * curl loads it even for --version), and a process that wraps nothing must not
 * pay ~120 dlsym() calls for it. Recording a name needs no real function.
 * real.X is NULL only for a call made while a dlsym() of this thread runs (dlsym
 * re-entering the resolver); such a call fails as libc would without a resolver.
 */
#include <errno.h>
#include <netdb.h>
#include <resolv.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "hook.h"
#include "log.h"
#include "names.h"
#include "shim.h"

/* Logs what was recorded; NAME passed names.c's checks when N > 0. */
static void resolve_log(const char *name, size_t n)
{
	if (n > 0 && log_enabled(LOG_LVL_DEBUG))
		log_debug("resolve %s -> %zu addresses", name, n);
}

/*
 * CANON if it completes NAME with one of the resolver's search domains. The
 * list comes from a private res_ninit() (glibc's cached resolv.conf), not
 * from _res, which every thread shares and a reload may rewrite under us;
 * only an answer that starts with NAME and a dot is worth that.
 */
static const char *search_completion(const char *name, const char *canon)
{
	struct __res_state rs;
	const char *c;

	if (policy_search_domain(name, canon) == NULL)
		return NULL;
	memset(&rs, 0, sizeof(rs));
	if (res_ninit(&rs) != 0)
		return NULL;
	c = policy_search_completion(name, canon, (const char *const *)rs.dnsrch, MAXDNSRCH);
	res_nclose(&rs);
	return c;
}

static void note_addrinfo(const char *name, const char *canon, const struct addrinfo *res)
{
	if (!shim.has_connect || !name)
		return;
	canon = search_completion(name, canon);
	resolve_log(name, names_remember_addrinfo(name, canon, res));
}

/*
 * Whether getaddrinfo(NODE) should also ask libc for the canonical name: a
 * relative name the resolver may complete with a search domain ("redis" found
 * as "redis.default.svc.cluster.local"), which rules name in full. The program
 * gets the result it asked for: the canonical name is taken out again.
 */
static int want_canon(const char *node, const struct addrinfo *hints)
{
	if (!shim.has_connect || node == NULL || node[0] == '\0')
		return 0;
	if (hints != NULL && (hints->ai_flags & (AI_CANONNAME | AI_NUMERICHOST)) != 0)
		return 0;
	return node[strlen(node) - 1] != '.' && !names_is_address(node);
}

static void note_hostent(const char *name, const struct hostent *he)
{
	if (!shim.has_connect || !name)
		return;
	resolve_log(name, names_remember_hostent(name, search_completion(name, he->h_name), he));
}

/* getaddrinfo(3); returns libc's result. */
HOOK int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		     struct addrinfo **res)
{
	int rc;

	NEED_REAL(getaddrinfo);
	if (!real.getaddrinfo) {
		errno = ENOSYS;
		return EAI_SYSTEM;
	}
	if (want_canon(node, hints)) {
		struct addrinfo h = {.ai_family = AF_UNSPEC,
				     .ai_flags = AI_V4MAPPED | AI_ADDRCONFIG};

		if (hints != NULL) /* else glibc's defaults, above */
			h = *hints;
		h.ai_flags |= AI_CANONNAME;
		rc = real.getaddrinfo(node, service, &h, res);
		if (rc == 0) {
			note_addrinfo(node, (*res)->ai_canonname, *res);
			free((*res)->ai_canonname); /* freeaddrinfo() frees it on its own */
			(*res)->ai_canonname = NULL;
		}
		if (rc != EAI_BADFLAGS)
			return rc;
	}
	rc = real.getaddrinfo(node, service, hints, res);
	if (rc == 0) /* the canonical name is there when the program asked for it */
		note_addrinfo(node,
			      hints != NULL && (hints->ai_flags & AI_CANONNAME) != 0
				  ? (*res)->ai_canonname
				  : NULL,
			      *res);
	return rc;
}

/* gethostbyname(3); returns libc's result. */
HOOK struct hostent *gethostbyname(const char *name)
{
	struct hostent *he;

	NEED_REAL(gethostbyname);
	if (!real.gethostbyname) {
		h_errno = NO_RECOVERY;
		return NULL;
	}
	he = real.gethostbyname(name);
	if (he)
		note_hostent(name, he);
	return he;
}

/* gethostbyname2(3); returns libc's result. */
HOOK struct hostent *gethostbyname2(const char *name, int af)
{
	struct hostent *he;

	NEED_REAL(gethostbyname2);
	if (!real.gethostbyname2) {
		h_errno = NO_RECOVERY;
		return NULL;
	}
	he = real.gethostbyname2(name, af);
	if (he)
		note_hostent(name, he);
	return he;
}

/* gethostbyname_r(3); returns libc's result. */
HOOK int gethostbyname_r(const char *name, struct hostent *ret, char *buf, size_t buflen,
			 struct hostent **result, int *h_errnop)
{
	int rc;

	NEED_REAL(gethostbyname_r);
	if (!real.gethostbyname_r) {
		*result = NULL;
		*h_errnop = NO_RECOVERY;
		return ENOSYS;
	}
	rc = real.gethostbyname_r(name, ret, buf, buflen, result, h_errnop);
	if (rc == 0 && result && *result)
		note_hostent(name, *result);
	return rc;
}

/* gethostbyname2_r(3); returns libc's result. */
HOOK int gethostbyname2_r(const char *name, int af, struct hostent *ret, char *buf, size_t buflen,
			  struct hostent **result, int *h_errnop)
{
	int rc;

	NEED_REAL(gethostbyname2_r);
	if (!real.gethostbyname2_r) {
		*result = NULL;
		*h_errnop = NO_RECOVERY;
		return ENOSYS;
	}
	rc = real.gethostbyname2_r(name, af, ret, buf, buflen, result, h_errnop);
	if (rc == 0 && result && *result)
		note_hostent(name, *result);
	return rc;
}
