/*
 * names_int.h - what the files of the names module share, and nothing outside
 * them includes (the rest of the shim uses names.h).
 *
 *   names.c        the cache: the tables of resolved names, remember and look up, fork
 *   names_self.c   the shim's own resolution of the policy's exact names
 */
#ifndef TLSSHIM_NAMES_INT_H
#define TLSSHIM_NAMES_INT_H

#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "names.h"

/* An address as a table key: IPv4 in a[0], the rest zero; fam 4 or 6 (0: empty). */
struct nkey {
	uint32_t a[4];
	uint32_t fam;
};

/* Builds the key of (FAMILY, ADDR); IPv4-mapped IPv6 becomes IPv4. Returns 0 or -1. */
static inline int key_make(struct nkey *k, int family, const unsigned char *addr)
{
	static const unsigned char v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	memset(k, 0, sizeof(*k));
	switch (family) {
	case AF_INET:
		memcpy(&k->a[0], addr, 4);
		k->fam = 4;
		return 0;
	case AF_INET6:
		if (memcmp(addr, v4mapped_prefix, sizeof(v4mapped_prefix)) == 0) {
			memcpy(&k->a[0], addr + 12, 4);
			k->fam = 4;
			return 0;
		}
		memcpy(k->a, addr, 16);
		k->fam = 6;
		return 0;
	default:
		return -1;
	}
}

static inline int key_from_sockaddr(struct nkey *k, const struct sockaddr *sa)
{
	const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

	if (!sa)
		return -1;
	switch (sa->sa_family) {
	case AF_INET:
		return key_make(k, AF_INET, (const unsigned char *)&s4->sin_addr);
	case AF_INET6:
		return key_make(k, AF_INET6, (const unsigned char *)&s6->sin6_addr);
	default:
		return -1;
	}
}

static inline int key_eq(const struct nkey *x, const struct nkey *y)
{
	return x->fam == y->fam && x->a[0] == y->a[0] && x->a[1] == y->a[1] && x->a[2] == y->a[2] &&
	       x->a[3] == y->a[3];
}

/* Sets the hash seed and the fork handlers, once (names.c). */
void names_init(void);

/*
 * The self cache's share of the fork handlers and of names_reset()
 * (names_self.c): prefork takes its lock, which the postfork handlers
 * release; the child also forgets a refresh it has no thread to finish.
 */
void names_self_prefork(void);
void names_self_postfork_parent(void);
void names_self_postfork_child(void);
void names_self_reset(void);

#endif
