/*
 * names.h - which name the program resolved to reach an address.
 *
 * The resolver hooks record name -> addresses; connect asks address -> name.
 * The most recent resolution by the calling thread wins, else the one name
 * any thread resolved to the address (event loops resolve on one thread and
 * connect on another); several different names there are never guessed
 * between (decide_connect_rule(), decide.c).
 * Memory is bounded; all functions are thread-safe and fork-safe (names.c
 * registers its own pthread_atfork handlers; callers need do nothing in the
 * child).
 *
 * The shim also resolves the exact names of connect rules itself (for programs
 * that never ask libc), once, when a connection to an address with no known
 * name is first decided, and caches the answers for a short time.
 */
#ifndef TLSSHIM_NAMES_H
#define TLSSHIM_NAMES_H

#include <netdb.h>
#include <stddef.h>
#include <sys/socket.h>

#include "policy.h"

#define NAMES_MAX_NAME 256 /* DNS names are at most 253 bytes */

/* Table sizes: remembered addresses per thread, and for the whole process. */
#define NAMES_THREAD_CAP 32
#define NAMES_GLOBAL_CAP 4096

/*
 * Records that NAME resolved to ADDR (AF_INET/AF_INET6 sockaddr; other
 * families are ignored). NAME is lower-cased and one trailing dot dropped;
 * names that are numeric addresses, empty, longer than 253 bytes or that
 * contain spaces or control characters are ignored. Returns 1 if recorded,
 * else 0. Never allocates; preserves errno.
 */
int names_remember(const char *name, const struct sockaddr *addr);

/*
 * As names_remember() for every AF_INET/AF_INET6 address of a getaddrinfo()
 * result list RES (NULL allowed), which the resolver found under the canonical
 * name CANON (ai_canonname when hooks/resolve.c found it to be a search-domain
 * completion of NAME, else NULL). A relative NAME so completed (CANON is NAME
 * "." DOMAIN) is recorded as
 * NAME NAMES_SEARCH_MARK DOMAIN: the name the program wrote and the name
 * resolved, in one (see names_split()). Returns the number of addresses
 * recorded (an address repeated in consecutive entries, one per socket type,
 * counts once). Preserves errno.
 */
size_t names_remember_addrinfo(const char *name, const char *canon, const struct addrinfo *res);

/*
 * As names_remember_addrinfo() for every address of a gethostbyname*() result
 * HE (NULL allowed), CANON as there (its h_name, or NULL). Returns the number
 * of addresses recorded. Preserves errno.
 */
size_t names_remember_hostent(const char *name, const char *canon, const struct hostent *he);

/* Whether S is an address literal getaddrinfo() takes ("10.1.2.3", "127.1", "fe80::1%lo"). */
int names_is_address(const char *s);

/* Marks, in a recorded name, where a search domain completed it (never in a DNS name). */
#define NAMES_SEARCH_MARK '\x01'

/*
 * Splits a name of names_candidates() into the name the program resolved
 * (NAME) and, when the resolver completed it with a search domain, the
 * complete name (FQDN; else FQDN is empty).
 */
void names_split(const char *cand, char name[NAMES_MAX_NAME], char fqdn[NAMES_MAX_NAME]);

/* At most this many candidate names per address (the global table's ways). */
#define NAMES_MAX_CANDIDATES 8

/*
 * The names the program may have meant for (FAMILY, ADDR) (4 or 16 bytes,
 * network order; IPv4-mapped IPv6 is looked up as IPv4): the calling thread's
 * own most recent resolution of it (returns 1, *OWN = 1); else every name any
 * thread resolved to it that the bounded global table still holds, most
 * recent first (at most MAX; *OWN = 0). Returns 0 when none is known. A name
 * a search domain completed carries NAMES_SEARCH_MARK (names_split()). Never
 * allocates; preserves errno.
 */
size_t names_candidates(int family, const unsigned char *addr, char (*out)[NAMES_MAX_NAME],
			size_t max, int *own);

/*
 * As names_candidates() when it finds exactly one name: copies it to OUT and
 * returns 1; returns 0 when there is none or several.
 */
int names_lookup(int family, const unsigned char *addr, char out[NAMES_MAX_NAME]);

/*
 * The exact names of P's DIR rules that resolve (by the shim's own look-up,
 * cached for NAMES_SELF_TTL_S seconds) to (FAMILY, ADDR). Writes at most MAX
 * names, pointing into P (valid while P lives), to OUT, in rule order;
 * returns how many. May block on DNS the first time (and after the TTL): one
 * thread resolves while others wait (or, after the TTL, use the old answers).
 * At most NAMES_SELF_MAX_NAMES names are resolved. "localhost" and
 * "*.localhost" names always include 127.0.0.1 and ::1 (RFC 6761 section
 * 6.3). Returns 0 when called from inside the shim's own resolution (an NSS
 * module that connects). Preserves errno and h_errno.
 */
#define NAMES_SELF_TTL_S     30
#define NAMES_SELF_MAX_NAMES 64
size_t names_self(const struct policy *p, enum policy_dir dir, int family,
		  const unsigned char *addr, const char **out, size_t max);

/* Forgets everything: the global tables and the calling thread's table (tests). */
void names_reset(void);

/* Occupancy, for tests: entries in use in the calling thread's table and globally. */
struct names_stats {
	size_t thread_used, thread_cap;
	size_t global_used, global_cap;
};
void names_stats(struct names_stats *st);

#endif
