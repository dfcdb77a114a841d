/*
 * index.c - the rule table and its look-up structures: which rule applies.
 *
 * Per direction: a hash of exact names, a hash of "*.suffix" suffixes probed
 * at each label boundary of the query name, a hash of exact addresses, one
 * hash per CIDR prefix length present (longest first) and the "*" rules.
 * Each hash entry is a bucket: the rules of one host key, ordered by port
 * specificity. Built once by policy_finish(); read-only afterwards, so
 * look-ups take no lock.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* uthash must not exit() the program on allocation failure: we report it. Its memory
 * is the table's arena (MEM, in scope where a hash grows), released with the table. */
#define HASH_NONFATAL_OOM        1
#define uthash_nonfatal_oom(obj) (oom_hit = 1)
#define uthash_malloc(sz)        mem_alloc(mem, (sz))
#define uthash_free(ptr, sz)     ((void)(ptr), (void)(sz))
#include <uthash.h>

/* The rules of one host key, in port precedence order. */
struct bucket {
	UT_hash_handle hh;
	const char *skey;       /* names/suffixes: the rule's host */
	unsigned char akey[17]; /* addresses: family byte + address */
	struct policy_rule **v; /* single ports by port, ranges narrowest first, then '*' */
	size_t n, cap;
	size_t n_one; /* v[0..n_one) are single ports (binary-searched) */
	int listed;   /* exact name already in exact_names */
};

struct policy *policy_new(void)
{
	return policy_new_in(NULL, 0);
}

struct policy *policy_new_in(void *buf, size_t len)
{
	struct policy *p;
	struct mem m;

	mem_init(&m, buf, len);
	p = mem_alloc(&m, sizeof(*p));
	if (!p) {
		mem_release(&m);
		return NULL;
	}
	p->mem = m;
	return p;
}

void policy_free(struct policy *p)
{
	struct mem m;

	if (!p)
		return;
	/* The table lives in its own arena: copy the arena out before releasing it. */
	m = p->mem;
	mem_release(&m);
}

size_t policy_count(const struct policy *p)
{
	return p ? p->n : 0;
}

const struct policy_rule *policy_rule_at(const struct policy *p, size_t i)
{
	return p && i < p->n ? p->rules[i] : NULL;
}

int policy_has_dir(const struct policy *p, enum policy_dir dir)
{
	if (!p || (unsigned)dir > POLICY_ACCEPT)
		return 0;
	return p->idx[dir].present || (p->floor && p->floor->idx[dir].present);
}

size_t policy_exact_names(const struct policy *p, enum policy_dir dir, const char *const **names)
{
	if (!p || (unsigned)dir > POLICY_ACCEPT || !p->finished) {
		*names = NULL;
		return 0;
	}
	if (p->floor) {
		*names = (const char *const *)p->layered_names[dir];
		return p->n_layered_names[dir];
	}
	*names = (const char *const *)p->idx[dir].exact_names;
	return p->idx[dir].n_exact;
}

/* ---- building ----------------------------------------------------------------------- */

static int bucket_push(struct mem *mem, struct bucket *b, struct policy_rule *r)
{
	if (b->n == b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 2;
		struct policy_rule **v = mem_grow(mem, b->v, b->cap * sizeof(*v), cap * sizeof(*v));

		if (!v)
			return -1;
		b->v = v;
		b->cap = cap;
	}
	b->v[b->n++] = r;
	return 0;
}

/* Finds or adds the bucket of key [KEY, KEY+LEN) in *HEAD; returns it or NULL (no memory). */
static struct bucket *bucket_get(struct mem *mem, struct bucket **head, const void *key, size_t len,
				 int str)
{
	struct bucket *b = NULL;
	int oom_hit = 0;

	HASH_FIND(hh, *head, key, len, b);
	if (b)
		return b;
	b = mem_alloc(mem, sizeof(*b));
	if (!b)
		return NULL;
	if (str) {
		b->skey = key;
		HASH_ADD_KEYPTR(hh, *head, b->skey, len, b);
	} else {
		memcpy(b->akey, key, len);
		HASH_ADD(hh, *head, akey, len, b);
	}
	return oom_hit ? NULL : b;
}

static size_t fam_index(int family)
{
	return family == AF_INET6 ? 1 : 0;
}

static size_t addr_len(int family)
{
	return family == AF_INET6 ? 16 : 4;
}

static void addr_key(unsigned char key[17], int family, const unsigned char *a)
{
	memset(key, 0, 17);
	key[0] = (unsigned char)fam_index(family);
	memcpy(key + 1, a, addr_len(family));
}

static struct bucket *cidr_bucket(struct mem *mem, struct dir_index *x, const struct policy_rule *r)
{
	size_t f = fam_index(r->family);
	unsigned i;

	for (i = 0; i < x->n_cidr[f]; i++)
		if (x->cidr[f][i].prefix == r->prefix)
			break;
	if (i == x->n_cidr[f]) {
		struct cidr_level *v =
		    mem_grow(mem, x->cidr[f], i * sizeof(*v), (i + 1) * sizeof(*v));

		if (!v)
			return NULL;
		x->cidr[f] = v;
		x->cidr[f][i].prefix = r->prefix;
		x->cidr[f][i].tab = NULL;
		x->n_cidr[f]++;
	}
	return bucket_get(mem, &x->cidr[f][i].tab, r->addr, addr_len(r->family), 0);
}

static int index_rule(struct mem *mem, struct dir_index *x, struct policy_rule *r)
{
	unsigned char key[17];
	struct bucket *b = NULL;

	switch (r->host_kind) {
	case POLICY_HOST_NAME:
		b = bucket_get(mem, &x->names, r->host, strlen(r->host), 1);
		if (b && !b->listed) {
			if (x->n_exact == x->cap_exact) {
				size_t cap = x->cap_exact ? 2 * x->cap_exact : 4;
				const char **v =
				    mem_grow(mem, x->exact_names, x->cap_exact * sizeof(*v),
					     cap * sizeof(*v));

				if (!v)
					return -1;
				x->exact_names = v;
				x->cap_exact = cap;
			}
			x->exact_names[x->n_exact++] = r->host;
			b->listed = 1;
		}
		break;
	case POLICY_HOST_SUFFIX:
		b = bucket_get(mem, &x->suffixes, r->host, strlen(r->host), 1);
		break;
	case POLICY_HOST_ADDR:
		addr_key(key, r->family, r->addr);
		b = bucket_get(mem, &x->addrs, key, sizeof(key), 0);
		break;
	case POLICY_HOST_CIDR:
		b = cidr_bucket(mem, x, r);
		break;
	case POLICY_HOST_ANY:
		if (!x->any)
			x->any = mem_alloc(mem, sizeof(*x->any));
		b = x->any;
		break;
	default:
		return -1;
	}
	x->present = 1;
	if (!b)
		return -1;
	return bucket_push(mem, b, r);
}

/* Port precedence: single ports (by port), ranges (narrowest, then lowest), '*'; then id. */
static int rule_port_cmp(const void *a, const void *b)
{
	const struct policy_rule *x = *(const struct policy_rule *const *)a;
	const struct policy_rule *y = *(const struct policy_rule *const *)b;
	unsigned wx = (unsigned)x->port_hi - x->port_lo, wy = (unsigned)y->port_hi - y->port_lo;

	if (x->port_kind != y->port_kind)
		return x->port_kind < y->port_kind ? -1 : 1;
	if (x->port_kind == POLICY_PORT_RANGE && wx != wy)
		return wx < wy ? -1 : 1;
	if (x->port_lo != y->port_lo)
		return x->port_lo < y->port_lo ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static int cidr_level_cmp(const void *a, const void *b)
{
	const struct cidr_level *x = a, *y = b;

	return x->prefix > y->prefix ? -1 : x->prefix < y->prefix;
}

/* Two rules that tie and overlap; reported on the later one, in load order. */
struct clash {
	const struct policy_rule *earlier, *later;
};

struct clashes {
	struct clash *v;
	size_t n, cap;
	int oom;
};

static void clash_add(struct clashes *cl, const struct policy_rule *a, const struct policy_rule *b)
{
	if (cl->n == cl->cap) {
		size_t cap = cl->cap ? 2 * cl->cap : 8;
		struct clash *v = realloc(cl->v, cap * sizeof(*v));

		if (!v) {
			cl->oom = 1;
			return;
		}
		cl->v = v;
		cl->cap = cap;
	}
	cl->v[cl->n].earlier = a->id < b->id ? a : b;
	cl->v[cl->n].later = a->id < b->id ? b : a;
	cl->n++;
}

static int clash_cmp(const void *a, const void *b)
{
	const struct clash *x = a, *y = b;

	return x->later->id < y->later->id ? -1 : x->later->id > y->later->id;
}

/* Whether A and B (neighbours in port precedence order, same port kind) tie and overlap. */
static int ties(const struct policy_rule *a, const struct policy_rule *b)
{
	switch (b->port_kind) {
	case POLICY_PORT_ONE:
		return a->port_lo == b->port_lo;
	case POLICY_PORT_RANGE:
		/* Same width, sorted by start: if any two overlap, neighbours do. */
		return a->port_hi - a->port_lo == b->port_hi - b->port_lo &&
		       b->port_lo <= a->port_hi;
	case POLICY_PORT_ANY:
		return 1;
	default:
		return 0;
	}
}

/* Sorts B by port precedence and records rules that tie and overlap. */
static void bucket_seal(struct bucket *b, struct clashes *cl)
{
	size_t i;

	/* Most buckets hold one rule: no call (a start binds and faults in what it calls). */
	if (b->n > 1)
		qsort(b->v, b->n, sizeof(*b->v), rule_port_cmp);
	b->n_one = 0;
	for (i = 0; i < b->n; i++) {
		const struct policy_rule *r = b->v[i];

		if (r->port_kind == POLICY_PORT_ONE)
			b->n_one++;
		if (i > 0 && b->v[i - 1]->port_kind == r->port_kind && ties(b->v[i - 1], r))
			clash_add(cl, b->v[i - 1], r);
	}
}

static void seal_all(struct bucket *head, struct clashes *cl)
{
	struct bucket *b, *tmp;

	HASH_ITER(hh, head, b, tmp)
	{
		bucket_seal(b, cl);
	}
}

static void seal_index(struct dir_index *x, struct clashes *cl)
{
	size_t f;

	seal_all(x->names, cl);
	seal_all(x->suffixes, cl);
	seal_all(x->addrs, cl);
	for (f = 0; f < 2; f++) {
		unsigned i;

		if (x->n_cidr[f] > 1)
			qsort(x->cidr[f], x->n_cidr[f], sizeof(x->cidr[f][0]), cidr_level_cmp);
		for (i = 0; i < x->n_cidr[f]; i++)
			seal_all(x->cidr[f][i].tab, cl);
	}
	if (x->any)
		bucket_seal(x->any, cl);
}

int policy_finish(struct policy *p, struct policy_diags *d)
{
	struct clashes cl = {0};
	int rc = -1;
	size_t i;

	/* A failed finish left a partial index: it must not be built twice. */
	if (p->finished)
		return p->finished > 0 ? 0 : -1;
	p->finished = -1;
	for (i = 0; i < p->n; i++) {
		const struct policy_rule *r = p->rules[i];

		if (index_rule(&p->mem, &p->idx[r->dir], p->rules[i]) < 0) {
			policy_diag_add(d, r->source, r->line, r->col, "out of memory");
			goto out;
		}
	}
	seal_index(&p->idx[POLICY_CONNECT], &cl);
	seal_index(&p->idx[POLICY_ACCEPT], &cl);
	if (cl.oom) {
		policy_diag_add(d, "policy", 0, 0, "out of memory");
		goto out;
	}
	/* Hash order is arbitrary: report in load order. */
	if (cl.n > 0)
		qsort(cl.v, cl.n, sizeof(*cl.v), clash_cmp);
	for (i = 0; i < cl.n; i++)
		policy_diag_add(d, cl.v[i].later->source, cl.v[i].later->line, cl.v[i].later->col,
				"rule conflicts with %s:%u:%u (same host and port specificity, "
				"overlapping ports)",
				cl.v[i].earlier->source, cl.v[i].earlier->line,
				cl.v[i].earlier->col);
	if (cl.n == 0 && p->n_errors == 0) {
		p->finished = 1;
		rc = 0;
	}
out:
	if (cl.v != NULL)
		free(cl.v);
	return rc;
}

/* ---- look-up ------------------------------------------------------------------------ */

static int covers(const struct policy_rule *r, uint16_t port)
{
	return port >= r->port_lo && port <= r->port_hi;
}

/* The most specific rule of B for PORT, or NULL. */
static const struct policy_rule *bucket_best(const struct bucket *b, uint16_t port)
{
	size_t lo = 0, hi = b->n_one, i;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (b->v[mid]->port_lo < port)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < b->n_one && b->v[lo]->port_lo == port)
		return b->v[lo];
	for (i = b->n_one; i < b->n; i++)
		if (covers(b->v[i], port))
			return b->v[i];
	return NULL;
}

/* Collects the state of one look-up: first match, or all of them. */
struct walk {
	const struct policy_query *q;
	uint16_t port;
	const struct policy_rule **out;
	size_t max, n;
	int all;
	const struct policy_rule *best;
	struct policy_match m;
};

/* Offers bucket B (may be NULL) to W. Returns 1 when the look-up is done. */
static int offer(struct walk *w, const struct bucket *b, enum policy_host_kind kind,
		 const char *name)
{
	size_t i;

	if (!b)
		return 0;
	if (!w->all) {
		const struct policy_rule *r = bucket_best(b, w->port);

		if (!r)
			return 0;
		w->best = r;
		w->m.name = name;
		w->m.host_kind = kind;
		w->m.port_kind = r->port_kind;
		return 1;
	}
	for (i = 0; i < b->n; i++) {
		if (!covers(b->v[i], w->port))
			continue;
		if (w->n < w->max)
			w->out[w->n] = b->v[i];
		w->n++;
	}
	return 0;
}

/* Lower-cases NAME without one trailing dot into OUT; returns 0, or -1 if it cannot match. */
static int query_name(const char *name, char out[POLICY_NAME_MAX + 1])
{
	size_t n, i;

	if (!name)
		return -1;
	n = strlen(name);
	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n == 0 || n > POLICY_NAME_MAX)
		return -1;
	for (i = 0; i < n; i++) {
		char ch = name[i];

		out[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
	}
	out[n] = '\0';
	return 0;
}

/*
 * Query name I: the name the program resolved, then that name as the resolver
 * completed it (a relative name found through a search domain: "redis" as
 * "redis.default.svc.cluster.local" is that name too), then the alt names.
 */
static const char *query_name_at(const struct policy_query *q, size_t i)
{
	if (i == 0)
		return q->name;
	if (i == 1)
		return q->fqdn;
	return q->alt_names[i - 2];
}

/* Whether query name I (see query_name_at) repeats an earlier one. */
static int name_repeats(const struct policy_query *q, size_t i, const char *norm)
{
	char other[POLICY_NAME_MAX + 1];
	size_t j;

	for (j = 0; j < i; j++)
		if (query_name(query_name_at(q, j), other) == 0 && strcmp(other, norm) == 0)
			return 1;
	return 0;
}

static int walk_names(struct walk *w, const struct dir_index *x)
{
	const struct policy_query *q = w->q;
	char buf[POLICY_NAME_MAX + 1];
	struct bucket *b;
	size_t i, n = 2 + (q->alt_names ? q->n_alt : 0);

	if (!x->names)
		return 0;
	for (i = 0; i < n; i++) {
		const char *name = query_name_at(q, i);

		/* The same name twice would list its rules twice in match_all. */
		if (query_name(name, buf) < 0 || name_repeats(q, i, buf))
			continue;
		HASH_FIND(hh, x->names, buf, strlen(buf), b);
		if (offer(w, b, POLICY_HOST_NAME, name))
			return 1;
	}
	return 0;
}

static int walk_suffixes(struct walk *w, const struct dir_index *x)
{
	char buf[POLICY_NAME_MAX + 1];
	struct bucket *b;
	const char *s;

	if (!x->suffixes)
		return 0;
	/* The name as resolved, then as completed (see query_name_at). */
	for (size_t i = 0; i < 2; i++) {
		const char *name = query_name_at(w->q, i);

		if (query_name(name, buf) < 0)
			continue;
		/* Longest first: the tail after each dot, never the whole name. */
		for (s = strchr(buf, '.'); s; s = strchr(s + 1, '.')) {
			HASH_FIND(hh, x->suffixes, s + 1, strlen(s + 1), b);
			if (offer(w, b, POLICY_HOST_SUFFIX, name))
				return 1;
		}
	}
	return 0;
}

static int walk_addrs(struct walk *w, const struct dir_index *x)
{
	const struct policy_query *q = w->q;
	unsigned char a[16], key[17];
	int family = q->family;
	struct bucket *b;
	size_t f;
	unsigned i;

	if (family != AF_INET && family != AF_INET6)
		return 0;
	memset(a, 0, sizeof(a));
	if (family == AF_INET6 && policy_addr_is_mapped(q->addr)) {
		family = AF_INET;
		memcpy(a, q->addr + 12, 4);
	} else {
		memcpy(a, q->addr, addr_len(family));
	}
	if (x->addrs) {
		addr_key(key, family, a);
		HASH_FIND(hh, x->addrs, key, sizeof(key), b);
		if (offer(w, b, POLICY_HOST_ADDR, NULL))
			return 1;
	}
	f = fam_index(family);
	for (i = 0; i < x->n_cidr[f]; i++) {
		unsigned char m[16];
		unsigned prefix = x->cidr[f][i].prefix, k;

		for (k = 0; k < 16; k++) {
			unsigned keep = prefix > 8 * k ? prefix - 8 * k : 0;

			m[k] = keep >= 8 ? a[k] : (unsigned char)(a[k] & (0xff00u >> keep));
		}
		HASH_FIND(hh, x->cidr[f][i].tab, m, addr_len(family), b);
		if (offer(w, b, POLICY_HOST_CIDR, NULL))
			return 1;
	}
	return 0;
}

static void walk(const struct policy *p, struct walk *w)
{
	const struct dir_index *x;

	if (!p || !p->finished || !w->q || (unsigned)w->q->dir > POLICY_ACCEPT)
		return;
	x = &p->idx[w->q->dir];
	if (walk_names(w, x) || walk_suffixes(w, x) || walk_addrs(w, x))
		return;
	offer(w, x->any, POLICY_HOST_ANY, NULL);
}

const struct policy_rule *policy_match_own(const struct policy *p, const struct policy_query *q,
					   struct policy_match *m)
{
	struct walk w = {.q = q, .port = q ? q->port : 0};

	walk(p, &w);
	if (m)
		*m = w.m;
	return w.best;
}

size_t policy_match_all(const struct policy *p, const struct policy_query *q,
			const struct policy_rule **out, size_t max)
{
	struct walk w = {.q = q, .port = q ? q->port : 0, .out = out, .max = max, .all = 1};

	walk(p, &w);
	return w.n;
}
