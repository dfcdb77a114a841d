/*
 * names_self.c - the shim's own resolution of the policy's exact names
 * (names_self in names.h): which of them resolve to an address, so a rule
 * written for a name applies to a connection the program made by address.
 *
 * The self cache (names_self) maps address -> index into the policy's exact
 * names. It is double-buffered: one thread fills the spare buffer without a
 * lock while the others read the current one (or wait for the first fill),
 * and the buffers are swapped under self_lock.
 */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "names.h"
#include "names_int.h"
#include "real.h"

#define SELF_MAX_ADDRS 16 /* per name */
#define SELF_MAX_PAIRS ((size_t)NAMES_SELF_MAX_NAMES * SELF_MAX_ADDRS)

struct self_pair {
	struct nkey key;
	uint32_t idx; /* into policy_exact_names() */
};

struct self_cache {
	const struct policy *p; /* the table the answers are for; NULL: none */
	uint64_t when_ms;       /* CLOCK_MONOTONIC of the fill */
	size_t n;
	struct self_pair pair[SELF_MAX_PAIRS];
};

struct self_dir {
	struct self_cache buf[2];
	int cur;        /* buf[cur] is what readers see */
	int refreshing; /* a thread is filling buf[!cur] */
};

static __thread int tl_in_self; /* this thread runs the self resolution */

static pthread_mutex_t self_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t self_cond = PTHREAD_COND_INITIALIZER;
static struct self_dir self_tab[2]; /* by enum policy_dir */

/* ---- fork and reset (names.c's handlers call these) ---------------------------------- */

void names_self_prefork(void)
{
	pthread_mutex_lock(&self_lock);
}

void names_self_postfork_parent(void)
{
	pthread_mutex_unlock(&self_lock);
}

void names_self_postfork_child(void)
{
	/* The refreshing thread and any waiters do not exist in the child. */
	for (size_t d = 0; d < 2; d++)
		self_tab[d].refreshing = 0;
	pthread_cond_init(&self_cond, NULL);
	pthread_mutex_unlock(&self_lock);
}

void names_self_reset(void)
{
	pthread_mutex_lock(&self_lock);
	for (size_t d = 0; d < 2; d++) {
		/* A refresh under way fills the spare buffer: leave that one alone. */
		self_tab[d].buf[self_tab[d].cur].p = NULL;
		self_tab[d].buf[self_tab[d].cur].n = 0;
	}
	pthread_mutex_unlock(&self_lock);
}

/* ---- the shim's own resolution ------------------------------------------------------- */

static void self_add(struct self_cache *c, const struct nkey *k, uint32_t idx)
{
	for (size_t i = 0; i < c->n; i++) {
		if (c->pair[i].idx == idx && key_eq(&c->pair[i].key, k))
			return;
	}
	if (c->n == SELF_MAX_PAIRS)
		return;
	c->pair[c->n].key = *k;
	c->pair[c->n].idx = idx;
	c->n++;
}

/* "localhost" or a name under it: RFC 6761 section 6.3 says both loopbacks. */
static int name_is_localhost(const char *name)
{
	static const char lh[] = "localhost";
	size_t len = strlen(name);

	if (len < sizeof(lh) - 1 || strcmp(name + len - (sizeof(lh) - 1), lh) != 0)
		return 0;
	return len == sizeof(lh) - 1 || name[len - sizeof(lh)] == '.';
}

/* Resolves one exact name (index IDX) into C. */
static void self_resolve_one(struct self_cache *c, const char *name, uint32_t idx)
{
	static const unsigned char lo4[4] = {127, 0, 0, 1};
	static const unsigned char lo6[16] = {[15] = 1};
	struct addrinfo hints, *res = NULL;
	size_t n = 0;
	struct nkey k;

	if (name_is_localhost(name)) {
		key_make(&k, AF_INET, lo4);
		self_add(c, &k, idx);
		key_make(&k, AF_INET6, lo6);
		self_add(c, &k, idx);
	}
	memset(&hints, 0, sizeof(hints));
	/* No AI_ADDRCONFIG: localhost must give ::1 even without a global IPv6 address. */
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if (real.getaddrinfo(name, NULL, &hints, &res) != 0)
		return;
	for (const struct addrinfo *ai = res; ai && n < SELF_MAX_ADDRS; ai = ai->ai_next) {
		if (key_from_sockaddr(&k, ai->ai_addr) < 0)
			continue;
		self_add(c, &k, idx);
		n++;
	}
	freeaddrinfo(res);
}

/* Fills C with P's DIR exact names and their addresses. Called without any lock. */
static void self_fill(struct self_cache *c, const struct policy *p, enum policy_dir dir)
{
	const char *const *names = NULL;
	size_t count = policy_exact_names(p, dir, &names);

	c->n = 0;
	if (count > NAMES_SELF_MAX_NAMES) {
		log_info("resolving only the first %d of %zu exact %s names of the policy",
			 NAMES_SELF_MAX_NAMES, count, policy_dir_str(dir));
		count = NAMES_SELF_MAX_NAMES;
	}
	for (size_t i = 0; i < count; i++)
		self_resolve_one(c, names[i], (uint32_t)i);
	c->p = p;
	c->when_ms = (uint64_t)clock_ms();
}

static int self_usable(const struct self_cache *c, const struct policy *p)
{
	return c->p == p;
}

static int self_fresh(const struct self_cache *c, const struct policy *p, uint64_t now)
{
	return self_usable(c, p) && now - c->when_ms < NAMES_SELF_TTL_S * 1000ULL;
}

/*
 * Makes SD's current buffer usable for P: returns with self_lock held and
 * either fresh answers, or stale ones while another thread refreshes.
 */
static void self_ensure(struct self_dir *sd, const struct policy *p, enum policy_dir dir)
{
	for (;;) {
		struct self_cache *c = &sd->buf[sd->cur];
		struct self_cache *spare;

		if (self_fresh(c, p, (uint64_t)clock_ms()))
			return;
		if (sd->refreshing) {
			if (self_usable(c, p))
				return;
			pthread_cond_wait(&self_cond, &self_lock);
			continue;
		}
		/* This thread resolves; the others read buf[cur] or wait meanwhile. */
		sd->refreshing = 1;
		spare = &sd->buf[!sd->cur];
		pthread_mutex_unlock(&self_lock);
		tl_in_self = 1;
		self_fill(spare, p, dir);
		tl_in_self = 0;
		pthread_mutex_lock(&self_lock);
		sd->cur = !sd->cur;
		sd->refreshing = 0;
		pthread_cond_broadcast(&self_cond);
		return;
	}
}

/* Contract in names.h. */
size_t names_self(const struct policy *p, enum policy_dir dir, int family,
		  const unsigned char *addr, const char **out, size_t max)
{
	int saved = errno, saved_h = h_errno;
	const char *const *names = NULL;
	struct self_dir *sd;
	const struct self_cache *c;
	size_t count, n = 0;
	int cancel_state;
	struct nkey k;

	if (!p || !addr || max == 0 || tl_in_self || !real.getaddrinfo)
		return 0;
	switch (dir) {
	case POLICY_CONNECT:
	case POLICY_ACCEPT:
		break;
	default:
		return 0;
	}
	if (key_make(&k, family, addr) < 0)
		return 0;
	count = policy_exact_names(p, dir, &names);
	if (count == 0)
		return 0;
	names_init();
	sd = &self_tab[dir];

	/* A cancelled resolver would leave the others waiting forever. */
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
	pthread_mutex_lock(&self_lock);
	self_ensure(sd, p, dir);
	c = &sd->buf[sd->cur];
	/* self_add() keeps one pair per (address, name): no duplicates to skip. */
	for (size_t i = 0; i < c->n && n < max; i++) {
		if (key_eq(&c->pair[i].key, &k) && c->pair[i].idx < count)
			out[n++] = names[c->pair[i].idx];
	}
	pthread_mutex_unlock(&self_lock);
	pthread_setcancelstate(cancel_state, NULL);
	h_errno = saved_h;
	errno = saved;
	return n;
}
