/*
 * system.c - the system policy: whether its file can be trusted, and the floor
 * rule that combines it with a process's own policy.
 *
 * The system policy applies to every process that loads the library, setuid
 * ones included, so only root may be able to write it: the file, its
 * directory and every directory above. The floor rule: for a connection, the
 * process's own rule applies only where it is stricter than the system's
 * (deny over tls over auto over plain); otherwise the system rule applies as
 * written, its checks included.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

/* Why ST (of PATH) may be written by someone other than root, in WHY; 0 if it cannot. */
static int writable_by_others(const struct stat *st, const char *path, int sticky_ok, char *why,
			      size_t len)
{
	const char *what = S_ISDIR(st->st_mode) ? "directory" : "file";

	if (st->st_uid != 0) {
		snprintf(why, len, "%s %s is owned by uid %u, not root", what, path,
			 (unsigned)st->st_uid);
		return 1;
	}
	/* A sticky directory (/tmp) lets others add entries, never replace root's. */
	if (sticky_ok && (st->st_mode & S_ISVTX))
		return 0;
	if (st->st_mode & S_IWGRP) {
		snprintf(why, len, "%s %s is group-writable (mode %04o)", what, path,
			 (unsigned)(st->st_mode & 07777));
		return 1;
	}
	if (st->st_mode & S_IWOTH) {
		snprintf(why, len, "%s %s is writable by others (mode %04o)", what, path,
			 (unsigned)(st->st_mode & 07777));
		return 1;
	}
	return 0;
}

int policy_file_trusted(const char *path, char *why, size_t len)
{
	char dir[PATH_MAX];
	struct stat st;
	char *slash;
	int e;

	/*
	 * The common case, no system policy: one system call, and no message (every
	 * process start takes this path; strerror() and snprintf() would fault in
	 * half a dozen pages of libc that /bin/true never touches).
	 */
	if (lstat(path, &st) != 0) {
		e = errno;
		if (e == ENOENT) {
			if (len > 0)
				why[0] = '\0';
			return -e;
		}
		snprintf(why, len, "%s: %s", path, strerror(e));
		return -e;
	}
	if (S_ISLNK(st.st_mode)) {
		snprintf(why, len, "%s is a symbolic link (it must be the file itself)", path);
		return -EPERM;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, len, "%s is not a regular file", path);
		return -EPERM;
	}
	if (writable_by_others(&st, path, 0, why, len))
		return -EPERM;
	if (path[0] != '/' || strlen(path) >= sizeof(dir)) {
		snprintf(why, len, "%s is not an absolute path", path);
		return -EPERM;
	}
	/* The directory holding it, then each one above: whoever can write one can swap
	 * what is below it. Only the directory holding the file may not be a link. */
	strcpy(dir, path);
	for (int first = 1; (slash = strrchr(dir, '/')) != NULL; first = 0) {
		*slash = '\0';
		if (dir[0] == '\0') {
			if (stat("/", &st) != 0 || writable_by_others(&st, "/", 1, why, len))
				return -EPERM;
			break;
		}
		if ((first ? lstat(dir, &st) : stat(dir, &st)) != 0) {
			e = errno;
			snprintf(why, len, "%s: %s", dir, strerror(e));
			return -e;
		}
		if (!S_ISDIR(st.st_mode)) {
			snprintf(why, len, "%s is %s", dir,
				 S_ISLNK(st.st_mode) ? "a symbolic link (it must be the directory "
						       "itself)"
						     : "not a directory");
			return -EPERM;
		}
		if (writable_by_others(&st, dir, !first, why, len))
			return -EPERM;
	}
	return 0;
}

void policy_defer_file_checks(struct policy *p)
{
	if (p)
		p->defer_file_checks = 1;
}

void policy_quick_file_checks(struct policy *p)
{
	if (p)
		p->quick_file_checks = 1;
}

/* Appends the exact names of SRC to the layered list of P. Returns 0, or -1 out of memory. */
static int add_names(struct policy *p, enum policy_dir dir, const struct policy *src)
{
	const struct dir_index *x = &src->idx[dir];
	size_t n = p->n_layered_names[dir];
	const char **v;

	if (x->n_exact == 0)
		return 0;
	v = mem_grow(&p->mem, p->layered_names[dir], n * sizeof(*v), (n + x->n_exact) * sizeof(*v));
	if (!v)
		return -1;
	memcpy(v + n, x->exact_names, x->n_exact * sizeof(*v));
	p->layered_names[dir] = v;
	p->n_layered_names[dir] = n + x->n_exact;
	return 0;
}

/* A system rule (SYS) and a process's rule (OWN) with the same action, and the two combined. */
struct floor_merge {
	const struct policy_rule *sys, *own;
	struct policy_rule rule;
};

/* Whether the host parts of A and B can match one connection. */
static int hosts_may_meet(const struct policy_rule *a, const struct policy_rule *b)
{
	int a_name = a->host_kind == POLICY_HOST_NAME || a->host_kind == POLICY_HOST_SUFFIX;
	int b_name = b->host_kind == POLICY_HOST_NAME || b->host_kind == POLICY_HOST_SUFFIX;
	const struct policy_rule *t;
	size_t la, lb;
	unsigned bits;

	if (a->host_kind == POLICY_HOST_ANY || b->host_kind == POLICY_HOST_ANY)
		return 1;
	/* A name rule also matches the addresses its name resolves to. */
	if (a_name != b_name)
		return 1;
	if (a_name) {
		if (a->host_kind == POLICY_HOST_SUFFIX && b->host_kind == POLICY_HOST_NAME) {
			t = a;
			a = b;
			b = t;
		}
		la = strlen(a->host);
		lb = strlen(b->host);
		if (b->host_kind == POLICY_HOST_NAME)
			return strcmp(a->host, b->host) == 0;
		/* B is "*.suffix": A (a name or a suffix) must end in ".suffix", or be it. */
		/* "*.corp" never matches "corp" itself, only names under it. */
		if (la == lb)
			return a->host_kind == POLICY_HOST_SUFFIX && strcmp(a->host, b->host) == 0;
		if (a->host_kind == POLICY_HOST_SUFFIX && la < lb)
			return b->host[lb - la - 1] == '.' &&
			       strcmp(b->host + lb - la, a->host) == 0;
		return la > lb && a->host[la - lb - 1] == '.' &&
		       strcmp(a->host + la - lb, b->host) == 0;
	}
	if (a->family != b->family)
		return 0;
	bits = a->prefix < b->prefix ? a->prefix : b->prefix;
	for (unsigned k = 0; k < bits; k++) {
		unsigned m = 0x80u >> (k % 8);

		if ((a->addr[k / 8] & m) != (b->addr[k / 8] & m))
			return 0;
	}
	return 1;
}

/*
 * Fills M->rule with SYS plus what OWN (same direction and action) may add
 * without weakening a check: a client certificate (connect) or a client-ca
 * with its allow list (accept) where SYS has none, pins where SYS has none, a
 * higher min-version, ALPN where SYS has none. Returns whether OWN added
 * anything. SYS's verification (ca, name, sni, insecure, ciphers) is kept.
 */
static int merge_rule(struct floor_merge *m, const struct policy_rule *sys,
		      const struct policy_rule *own)
{
	struct policy_opts *o = &m->rule.opt;
	const struct policy_opts *u = &own->opt;
	int added = 0;

	m->sys = sys;
	m->own = own;
	m->rule = *sys;
	if (sys->dir == POLICY_CONNECT && !o->cert && u->cert) {
		o->cert = u->cert;
		o->key = u->key;
		o->given |= (1u << POLICY_OPT_CERT) | (1u << POLICY_OPT_KEY);
		added = 1;
	}
	if (sys->dir == POLICY_ACCEPT && !o->client_ca && u->client_ca) {
		o->client_ca = u->client_ca;
		o->allow = u->allow;
		o->n_allow = u->n_allow;
		o->given |= u->given & ((1u << POLICY_OPT_CLIENT_CA) | (1u << POLICY_OPT_ALLOW));
		added = 1;
	}
	if (o->n_pins == 0 && u->n_pins > 0) {
		o->pins = u->pins;
		o->n_pins = u->n_pins;
		o->given |= 1u << POLICY_OPT_PIN;
		added = 1;
	}
	if (u->min_version > o->min_version) {
		o->min_version = u->min_version;
		o->given |= 1u << POLICY_OPT_MIN_VERSION;
		added = 1;
	}
	if (!o->alpn_wire && u->alpn_wire) {
		o->alpn_wire = u->alpn_wire;
		o->alpn_wire_len = u->alpn_wire_len;
		o->alpn = u->alpn;
		o->given |= 1u << POLICY_OPT_ALPN;
		added = 1;
	}
	return added;
}

static int merge_cmp(const void *a, const void *b)
{
	const struct floor_merge *x = a, *y = b;

	if (x->sys->id != y->sys->id)
		return x->sys->id < y->sys->id ? -1 : 1;
	return x->own->id < y->own->id ? -1 : x->own->id > y->own->id;
}

/*
 * Every pair of a FLOOR rule and a P rule that can meet on one connection with
 * the same wrapping action, where P's rule adds something: their combined
 * rule, made now so that look-ups stay lock-free. Returns 0, or -1 out of memory.
 */
static int build_merges(struct policy *p, const struct policy *floor)
{
	/* The options a process's rule may add: most rules have none, and cost one test. */
	const unsigned adds = (1u << POLICY_OPT_CERT) | (1u << POLICY_OPT_CLIENT_CA) |
			      (1u << POLICY_OPT_PIN) | (1u << POLICY_OPT_MIN_VERSION) |
			      (1u << POLICY_OPT_ALPN);
	struct floor_merge m;
	size_t cap = 0;

	for (size_t i = 0; i < floor->n; i++) {
		const struct policy_rule *s = floor->rules[i];

		if (s->action != POLICY_TLS && s->action != POLICY_AUTO)
			continue;
		for (size_t j = 0; j < p->n; j++) {
			const struct policy_rule *u = p->rules[j];
			struct floor_merge *v;

			if (!(u->opt.given & adds) || u->dir != s->dir || u->action != s->action ||
			    u->port_hi < s->port_lo || u->port_lo > s->port_hi ||
			    !hosts_may_meet(s, u) || !merge_rule(&m, s, u))
				continue;
			if (p->n_merged == cap) {
				size_t ncap = cap ? 2 * cap : 8;

				v = mem_grow(&p->mem, p->merged, cap * sizeof(*v),
					     ncap * sizeof(*v));
				if (!v)
					return -1;
				p->merged = v;
				cap = ncap;
			}
			m.rule.id = (unsigned)(floor->n + p->n + p->n_merged);
			p->merged[p->n_merged++] = m;
		}
	}
	if (p->n_merged > 1)
		qsort(p->merged, p->n_merged, sizeof(*p->merged), merge_cmp);
	return 0;
}

const struct policy_rule *policy_floor_merged(const struct policy *p,
					      const struct policy_rule *floor_rule,
					      const struct policy_rule *own)
{
	struct floor_merge key;
	const struct floor_merge *hit;

	if (!p || !floor_rule || !own || p->n_merged == 0)
		return NULL;
	key.sys = floor_rule;
	key.own = own;
	hit = bsearch(&key, p->merged, p->n_merged, sizeof(*p->merged), merge_cmp);
	return hit && hit->sys == floor_rule && hit->own == own ? &hit->rule : NULL;
}

int policy_set_floor(struct policy *p, const struct policy *floor)
{
	size_t i;

	if (!p || !floor || p->finished != 1 || floor->finished != 1 || p->floor || floor->floor)
		return -1;
	for (int dir = POLICY_CONNECT; dir <= POLICY_ACCEPT; dir++) {
		if (add_names(p, dir, floor) != 0 || add_names(p, dir, p) != 0)
			return -1;
	}
	/* Rule ids key TLS contexts and session caches: one numbering for both tables
	 * (and the combined rules after them). */
	for (i = 0; i < p->n; i++)
		p->rules[i]->id = (unsigned)(floor->n + i);
	if (build_merges(p, floor) != 0)
		return -1;
	p->floor = floor;
	return 0;
}

const struct policy *policy_floor(const struct policy *p)
{
	return p ? p->floor : NULL;
}

/* How strict an action is: a process may only move a connection up this scale. */
static int strictness(enum policy_action a)
{
	switch (a) {
	case POLICY_PLAIN:
		return 0;
	case POLICY_AUTO:
		return 1;
	case POLICY_TLS:
		return 2;
	case POLICY_DENY:
		return 3;
	default:
		return 3;
	}
}

int policy_floor_wins(const struct policy_rule *floor_rule, const struct policy_rule *own)
{
	if (!floor_rule)
		return 0;
	if (!own)
		return 1;
	return strictness(own->action) <= strictness(floor_rule->action);
}

const struct policy_rule *policy_match(const struct policy *p, const struct policy_query *q,
				       struct policy_match *m)
{
	struct policy_match fm;
	const struct policy_rule *own, *fr;

	own = policy_match_own(p, q, m);
	if (!p || !p->floor)
		return own;
	fr = policy_match_own(p->floor, q, &fm);
	if (!policy_floor_wins(fr, own))
		return own;
	if (m)
		*m = fm;
	if (own && own->action == fr->action) {
		const struct policy_rule *c = policy_floor_merged(p, fr, own);

		if (c)
			return c;
	}
	return fr;
}
