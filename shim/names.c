/*
 * names.c - address -> the name the program resolved: the cache the
 * resolver hooks fill and connect reads (decide.c decides the rule from the
 * candidates). The shim's own resolution of the policy's exact names is in
 * names_self.c.
 *
 * Two bounded tables, no allocation:
 *
 *  - per thread: NAMES_THREAD_CAP entries in __thread storage, searched
 *    linearly; one entry per address, the least recently used is replaced.
 *    The names live in a small ring (TL_RING bytes) rather than a full-size
 *    buffer per entry: static TLS is carved out of every thread's stack, and
 *    programs do create threads with PTHREAD_STACK_MIN stacks. An entry whose
 *    name the ring has since overwritten is gone. No lock: only its thread
 *    touches it.
 *  - global: NAMES_GLOBAL_CAP entries as a set-associative cache (G_SETS sets
 *    of G_WAYS ways, the set chosen by a seeded hash of the address); one
 *    entry per (address, name), so every name of an address is in one set
 *    (at most G_WAYS of them) and a lookup sees all of them, not only the
 *    latest; the least recently used way of a full set is replaced.
 *    Sets are guarded by G_SHARDS mutexes (set i by shard i % G_SHARDS), each
 *    held only for a short copy, never across a call out.
 *
 * Fork: pthread_atfork handlers take every lock before fork() so the child
 * never inherits one held mid-update, and forget a refresh the child has no
 * thread to finish.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/auxv.h>

#include "names.h"
#include "names_int.h"

#define G_WAYS   8
#define G_SETS   (NAMES_GLOBAL_CAP / G_WAYS)
#define G_SHARDS 16 /* few: fork() takes them all (TSan tracks at most 64 held locks) */

#define TL_RING 2048 /* per thread: at least 8 names of the longest kind */

#define DNS_MAX_NAME 253 /* RFC 1035 section 2.3.4, without the trailing dot */

_Static_assert(NAMES_GLOBAL_CAP % G_WAYS == 0, "global table size");
_Static_assert((G_SETS & (G_SETS - 1)) == 0, "G_SETS must be a power of two");
_Static_assert(NAMES_MAX_NAME > DNS_MAX_NAME, "name buffer");
_Static_assert(TL_RING >= 8 * (DNS_MAX_NAME + 1), "thread ring too small");

struct entry {
	struct nkey key;
	uint64_t stamp; /* last use; larger is more recent; 0 only when empty */
	char name[NAMES_MAX_NAME];
};

struct tl_entry {
	struct nkey key;
	uint64_t stamp; /* as in struct entry */
	uint64_t pos;   /* where the name starts, as a count of ring bytes ever written */
};

struct tl_table {
	uint64_t clock;
	uint64_t head; /* ring bytes ever written; the next name goes at head % TL_RING */
	struct tl_entry e[NAMES_THREAD_CAP];
	char ring[TL_RING];
};

struct shard {
	pthread_mutex_t lock;
	uint64_t clock; /* stamps of the sets this shard guards */
} __attribute__((aligned(64)));

static __thread struct tl_table tl;

static struct entry g_tab[G_SETS][G_WAYS];
static struct shard g_shard[G_SHARDS] = {
    [0 ... G_SHARDS - 1] = {.lock = PTHREAD_MUTEX_INITIALIZER},
};
static uint64_t g_seed; /* hash seed, set once (see names_once) */

static pthread_once_t names_once_ctl = PTHREAD_ONCE_INIT;

/* ---- fork ---------------------------------------------------------------------------- */

static void names_prefork(void)
{
	names_self_prefork();
	for (int i = 0; i < G_SHARDS; i++)
		pthread_mutex_lock(&g_shard[i].lock);
}

static void names_postfork_parent(void)
{
	for (int i = G_SHARDS - 1; i >= 0; i--)
		pthread_mutex_unlock(&g_shard[i].lock);
	names_self_postfork_parent();
}

static void names_postfork_child(void)
{
	for (int i = G_SHARDS - 1; i >= 0; i--)
		pthread_mutex_unlock(&g_shard[i].lock);
	names_self_postfork_child();
}

static void names_once(void)
{
	/* A secret seed, so DNS answers cannot be chosen to collide in one set. */
	const unsigned char *r = (const unsigned char *)getauxval(AT_RANDOM);
	uint64_t s = 0x6a09e667f3bcc909ull;

	if (r)
		memcpy(&s, r + 8, sizeof(s));
	__atomic_store_n(&g_seed, s | 1, __ATOMIC_RELAXED);
	pthread_atfork(names_prefork, names_postfork_parent, names_postfork_child);
}

void names_init(void)
{
	pthread_once(&names_once_ctl, names_once);
}

/* ---- keys and names ------------------------------------------------------------------ */

static uint64_t mix64(uint64_t h)
{
	/* MurmurHash3's fmix64 finalizer. */
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

static size_t key_set(const struct nkey *k)
{
	uint64_t h = __atomic_load_n(&g_seed, __ATOMIC_RELAXED);

	h = mix64(h ^ ((uint64_t)k->a[0] << 32 | k->a[1]));
	h = mix64(h ^ ((uint64_t)k->a[2] << 32 | k->a[3]) ^ k->fam);
	return (size_t)h & (G_SETS - 1);
}

/* Contract in names.h. */
int names_is_address(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];
	char tmp[NAMES_MAX_NAME];
	const char *pct;
	struct in_addr in;

	/* inet_aton: getaddrinfo also takes "127.1", "0x7f000001" as addresses. */
	if (inet_aton(s, &in) || inet_pton(AF_INET6, s, buf) == 1)
		return 1;
	pct = strchr(s, '%'); /* "fe80::1%eth0": a scoped literal */
	if (!pct || (size_t)(pct - s) >= sizeof(tmp))
		return 0;
	memcpy(tmp, s, (size_t)(pct - s));
	tmp[pct - s] = '\0';
	return inet_pton(AF_INET6, tmp, buf) == 1;
}

/*
 * Normalizes NAME into OUT: lower-case (ASCII only), one trailing dot dropped.
 * Returns the length, or -1 for a name not to record (see names_remember).
 */
static int name_norm(const char *name, char out[NAMES_MAX_NAME])
{
	size_t len;

	if (!name)
		return -1;
	len = strnlen(name, DNS_MAX_NAME + 2);
	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > DNS_MAX_NAME)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		/* Never a host name; and the name reaches log lines. */
		if (c <= ' ' || c == 0x7f)
			return -1;
		out[i] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
	}
	out[len] = '\0';
	if (names_is_address(out))
		return -1;
	return (int)len;
}

/*
 * As name_norm() for NAME, which the resolver answered with the canonical name
 * CANON (NULL: not known). A relative NAME the resolver completed with a search
 * domain ("redis" answered as "redis.default.svc.cluster.local") is kept whole,
 * with NAMES_SEARCH_MARK where the completion starts (names_split()). Any
 * other answer (an alias's target) leaves NAME as it is.
 */
static int name_norm_search(const char *name, const char *canon, char out[NAMES_MAX_NAME])
{
	char c[NAMES_MAX_NAME];
	int n = name_norm(name, out), cn;

	/* An absolute name ("redis.") is never completed. */
	if (n < 0 || canon == NULL || name[strlen(name) - 1] == '.')
		return n;
	cn = name_norm(canon, c);
	if (cn <= n + 1 || memcmp(c, out, (size_t)n) != 0 || c[n] != '.')
		return n;
	c[n] = NAMES_SEARCH_MARK;
	memcpy(out, c, (size_t)cn + 1);
	return cn;
}

/* Contract in names.h. */
void names_split(const char *cand, char name[NAMES_MAX_NAME], char fqdn[NAMES_MAX_NAME])
{
	const char *mark = strchr(cand, NAMES_SEARCH_MARK);
	size_t n = strnlen(cand, NAMES_MAX_NAME - 1);

	memcpy(name, cand, n);
	name[n] = '\0';
	fqdn[0] = '\0';
	if (mark == NULL)
		return;
	memcpy(fqdn, name, n + 1);
	fqdn[mark - cand] = '.';
	name[mark - cand] = '\0';
}

/* ---- the tables ---------------------------------------------------------------------- */

/* Whether E holds an address whose name the ring still has. */
static int tl_valid(const struct tl_entry *e)
{
	return e->stamp != 0 && tl.head - e->pos <= TL_RING;
}

/* Puts (K, NAME) in the calling thread's table. */
static void tl_put(const struct nkey *k, const char *name, size_t len)
{
	struct tl_entry *victim = NULL;
	size_t off;

	for (size_t i = 0; i < NAMES_THREAD_CAP; i++) {
		struct tl_entry *e = &tl.e[i];

		if (!tl_valid(e)) {
			if (!victim || tl_valid(victim))
				victim = e;
			continue;
		}
		if (key_eq(&e->key, k)) {
			victim = e;
			break;
		}
		if (!victim || (tl_valid(victim) && e->stamp < victim->stamp))
			victim = e;
	}
	/* A name never wraps around the end of the ring: skip the tail instead. */
	off = tl.head % TL_RING;
	if (off + len + 1 > TL_RING)
		tl.head += TL_RING - off;
	victim->key = *k;
	victim->stamp = ++tl.clock;
	victim->pos = tl.head;
	memcpy(&tl.ring[tl.head % TL_RING], name, len + 1);
	tl.head += len + 1;
}

static int tl_get(const struct nkey *k, char out[NAMES_MAX_NAME])
{
	for (size_t i = 0; i < NAMES_THREAD_CAP; i++) {
		struct tl_entry *e = &tl.e[i];

		if (tl_valid(e) && key_eq(&e->key, k)) {
			e->stamp = ++tl.clock;
			strcpy(out, &tl.ring[e->pos % TL_RING]);
			return 1;
		}
	}
	return 0;
}

/* Records (K, NAME): one entry per address and name (see the top of the file). */
static void g_put(const struct nkey *k, const char *name, size_t len)
{
	size_t set = key_set(k);
	struct shard *sh = &g_shard[set % G_SHARDS];
	struct entry *ways = g_tab[set];
	struct entry *victim = &ways[0];

	pthread_mutex_lock(&sh->lock);
	for (size_t i = 0; i < G_WAYS; i++) {
		if (ways[i].stamp && key_eq(&ways[i].key, k) && strcmp(ways[i].name, name) == 0) {
			victim = &ways[i];
			break;
		}
		if (ways[i].stamp < victim->stamp)
			victim = &ways[i];
	}
	victim->key = *k;
	victim->stamp = ++sh->clock;
	memcpy(victim->name, name, len + 1);
	pthread_mutex_unlock(&sh->lock);
}

/* Every name the table holds for K, most recent first, at most MAX; returns how many. */
static size_t g_get_all(const struct nkey *k, char (*out)[NAMES_MAX_NAME], size_t max)
{
	size_t set = key_set(k);
	struct shard *sh = &g_shard[set % G_SHARDS];
	struct entry *ways = g_tab[set];
	uint64_t stamp[G_WAYS];
	size_t n = 0;

	pthread_mutex_lock(&sh->lock);
	for (size_t i = 0; i < G_WAYS && n < max; i++) {
		size_t j;

		if (!ways[i].stamp || !key_eq(&ways[i].key, k))
			continue;
		/* Insertion by stamp: at most G_WAYS entries. */
		for (j = n; j > 0 && stamp[j - 1] < ways[i].stamp; j--) {
			stamp[j] = stamp[j - 1];
			memcpy(out[j], out[j - 1], NAMES_MAX_NAME);
		}
		stamp[j] = ways[i].stamp;
		strcpy(out[j], ways[i].name);
		n++;
	}
	pthread_mutex_unlock(&sh->lock);
	return n;
}

static void put_both(const struct nkey *k, const char *name, size_t len)
{
	tl_put(k, name, len);
	g_put(k, name, len);
}

/* ---- remember / lookup --------------------------------------------------------------- */

/* Contract in names.h. */
int names_remember(const char *name, const struct sockaddr *addr)
{
	int saved = errno;
	char norm[NAMES_MAX_NAME];
	struct nkey k;
	int len;

	if (key_from_sockaddr(&k, addr) < 0)
		return 0;
	len = name_norm(name, norm);
	if (len < 0) {
		errno = saved;
		return 0;
	}
	names_init();
	put_both(&k, norm, (size_t)len);
	errno = saved;
	return 1;
}

/* Contract in names.h. */
size_t names_remember_addrinfo(const char *name, const char *canon, const struct addrinfo *res)
{
	int saved = errno;
	char norm[NAMES_MAX_NAME];
	struct nkey k, prev = {.fam = 0};
	size_t n = 0;
	int len;

	len = name_norm_search(name, canon, norm);
	if (len < 0 || !res) {
		errno = saved;
		return 0;
	}
	names_init();
	for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		if (key_from_sockaddr(&k, ai->ai_addr) < 0)
			continue;
		/* Without a socket type in the hints, each address comes once per type. */
		if (key_eq(&k, &prev))
			continue;
		put_both(&k, norm, (size_t)len);
		prev = k;
		n++;
	}
	errno = saved;
	return n;
}

/* Contract in names.h. */
size_t names_remember_hostent(const char *name, const char *canon, const struct hostent *he)
{
	int saved = errno;
	char norm[NAMES_MAX_NAME];
	struct nkey k;
	size_t n = 0;
	int len;

	if (!he || !he->h_addr_list)
		return 0;
	if ((he->h_addrtype == AF_INET && he->h_length != 4) ||
	    (he->h_addrtype == AF_INET6 && he->h_length != 16))
		return 0;
	len = name_norm_search(name, canon, norm);
	if (len < 0) {
		errno = saved;
		return 0;
	}
	names_init();
	for (char *const *a = he->h_addr_list; *a; a++) {
		if (key_make(&k, he->h_addrtype, (const unsigned char *)*a) < 0)
			break;
		put_both(&k, norm, (size_t)len);
		n++;
	}
	errno = saved;
	return n;
}

/* Contract in names.h. */
size_t names_candidates(int family, const unsigned char *addr, char (*out)[NAMES_MAX_NAME],
			size_t max, int *own)
{
	int saved = errno;
	struct nkey k;
	size_t n = 0;

	*own = 0;
	if (!addr || max == 0 || key_make(&k, family, addr) < 0)
		return 0;
	if (tl_get(&k, out[0])) {
		*own = 1;
		n = 1;
	} else {
		names_init();
		n = g_get_all(&k, out, max);
	}
	errno = saved;
	return n;
}

/* Contract in names.h. */
int names_lookup(int family, const unsigned char *addr, char out[NAMES_MAX_NAME])
{
	char cand[NAMES_MAX_CANDIDATES][NAMES_MAX_NAME];
	int own;

	if (names_candidates(family, addr, cand, NAMES_MAX_CANDIDATES, &own) != 1)
		return 0;
	memcpy(out, cand[0], NAMES_MAX_NAME);
	return 1;
}

/* ---- reset and statistics ------------------------------------------------------------ */

/* Contract in names.h. */
void names_reset(void)
{
	int saved = errno;

	names_init();
	memset(&tl, 0, sizeof(tl));
	for (size_t s = 0; s < G_SETS; s++) {
		struct shard *sh = &g_shard[s % G_SHARDS];

		pthread_mutex_lock(&sh->lock);
		memset(g_tab[s], 0, sizeof(g_tab[s]));
		pthread_mutex_unlock(&sh->lock);
	}
	names_self_reset();
	errno = saved;
}

/* Contract in names.h. */
void names_stats(struct names_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->thread_cap = NAMES_THREAD_CAP;
	st->global_cap = NAMES_GLOBAL_CAP;
	for (size_t i = 0; i < NAMES_THREAD_CAP; i++)
		st->thread_used += tl_valid(&tl.e[i]);
	names_init();
	for (size_t s = 0; s < G_SETS; s++) {
		struct shard *sh = &g_shard[s % G_SHARDS];

		pthread_mutex_lock(&sh->lock);
		for (size_t w = 0; w < G_WAYS; w++)
			st->global_used += g_tab[s][w].stamp != 0;
		pthread_mutex_unlock(&sh->lock);
	}
}
