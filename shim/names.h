/*
 * names.h - which name the program resolved to reach an address.
 *
 * The resolver hooks record name -> addresses; connect asks address -> name.
 * The most recent resolution by the calling thread wins, else the most recent
 * by any thread (event loops resolve on one thread and connect on another).
 * Memory is bounded; all functions are thread-safe.
 *
 * The shim also resolves the exact names of connect rules itself (for programs
 * that never ask libc), once, when a connection to an address with no known
 * name is first decided, and caches the answers for a short time.
 */
#ifndef TLSSHIM_NAMES_H
#define TLSSHIM_NAMES_H

#include <stddef.h>
#include <sys/socket.h>

#include "policy.h"

#define NAMES_MAX_NAME 256 /* DNS names are at most 253 bytes */

/* Records that NAME resolved to ADDR (AF_INET/AF_INET6 sockaddr). Names that
 * are numeric addresses are ignored. Preserves errno. */
void names_remember(const char *name, const struct sockaddr *addr);

/*
 * Copies to OUT the name the program most recently resolved to (FAMILY, ADDR)
 * (ADDR: 4 or 16 bytes, network order; IPv4-mapped IPv6 is looked up as IPv4).
 * Returns 1 if found, 0 if not. Preserves errno.
 */
int names_lookup(int family, const unsigned char *addr, char out[NAMES_MAX_NAME]);

/*
 * The exact names of P's DIR rules that resolve (by the shim's own look-up,
 * cached for NAMES_SELF_TTL_S seconds) to (FAMILY, ADDR). Writes at most MAX
 * names, pointing into P (valid while P lives), to OUT; returns how many.
 * May block on DNS the first time (and after the TTL). Preserves errno.
 */
#define NAMES_SELF_TTL_S 30
size_t names_self(const struct policy *p, enum policy_dir dir, int family,
		  const unsigned char *addr, const char **out, size_t max);

/* Forgets everything (tests; and after fork in the child, the thread-local part). */
void names_reset(void);

#endif
