/*
 * internal.h - what the files of the policy library share and nothing else sees.
 *
 * parse.c and the files parse.h names turn text into rules (hosts.c also
 * parses endpoints), index.c owns the table and its look-up structures,
 * format.c prints rules, diag.c collects diagnostics, system.c layers the
 * system policy. Only policy.h is public (env.h is the environment's names).
 */
#ifndef TLSSHIM_POLICY_INTERNAL_H
#define TLSSHIM_POLICY_INTERNAL_H

#include <stddef.h>

#include "policy.h"

/* Longest DNS name we keep, without the trailing dot (RFC 1035 section 2.3.4). */
#define POLICY_NAME_MAX 253

struct bucket;

/* The CIDR tables of one prefix length of one family. */
struct cidr_level {
	unsigned prefix;
	struct bucket *tab;
};

/* Look-up structures for the rules of one direction; built by policy_finish(). */
struct dir_index {
	struct bucket *names;    /* exact names, keyed by the lower-case name */
	struct bucket *suffixes; /* "*.suffix" rules, keyed by the suffix */
	struct bucket *addrs;    /* keyed by family byte + 16 address bytes */
	/* [0] IPv4, [1] IPv6; only the prefix lengths present (allocated: the table is
	 * built in every process the shim is loaded into), longest first once sealed. */
	struct cidr_level *cidr[2];
	unsigned n_cidr[2];
	struct bucket *any;       /* "*" rules, or NULL */
	const char **exact_names; /* distinct exact names in load order */
	size_t n_exact, cap_exact;
	int present; /* any rule of this direction */
};

/* mem.c: the arena a table lives in (see there). */
struct mem {
	unsigned char *cur, *end; /* free space of the current chunk */
	void *last;               /* the newest allocation (mem_grow() extends it in place) */
	struct mem_chunk *chunks; /* malloc()ed chunks, newest first */
	size_t next_size;
};

/* Starts M in BUF (LEN bytes; NULL: none), then malloc()ed chunks. */
void mem_init(struct mem *m, void *buf, size_t len);
/* N zeroed bytes, 16-aligned; NULL when out of memory. */
void *mem_alloc(struct mem *m, size_t n);
/* OLD (OLD_N bytes, NULL: none) as N bytes, contents kept, the rest zeroed; like realloc, except
 * that OLD stays allocated (until mem_release()). NULL when out of memory: OLD is untouched. */
void *mem_grow(struct mem *m, void *old, size_t old_n, size_t n);
char *mem_strdup(struct mem *m, const char *s);
char *mem_strndup(struct mem *m, const char *s, size_t n);
/* The bytes of the chunks M has malloc()ed so far (for tests and measurements). */
size_t mem_size(const struct mem *m);
/* Frees the chunks M malloc()ed (not the caller's BUF). */
void mem_release(struct mem *m);

struct policy {
	struct mem mem;             /* everything below, and the struct itself, live here */
	struct policy_rule **rules; /* pointers, so rules never move */
	size_t n, cap;
	unsigned n_errors; /* diagnostics added by the parser; finish() fails if any */
	int finished;      /* 0 loading, 1 finished, -1 finish failed */
	struct dir_index idx[2];
	/* system.c: the system policy under this table (policy_set_floor()), not owned;
	 * the exact names of both tables, the floor's first, for policy_exact_names(). */
	const struct policy *floor;
	const char **layered_names[2];
	size_t n_layered_names[2];
	int defer_file_checks; /* cert/key/CA files are checked when used, not at load */
	int quick_file_checks; /* ... with one access(R_OK) each (policy_quick_file_checks()) */
	/* system.c: a floor rule with what this table's rule for the same connection adds
	 * (a client certificate, pins...), for each such pair; sorted by the two ids. */
	struct floor_merge *merged;
	size_t n_merged;
};

/* rules.c: adds R to P's rules (R->id set); 0, or -1 out of memory. */
int policy_append_rule(struct policy *p, struct policy_rule *r);

/* hosts.c */
/*
 * Checks the DNS name [S, S+N) and writes it lower-case, without one trailing
 * dot, to OUT (at least POLICY_NAME_MAX + 1 bytes). Returns its length, or -1
 * with *WHY saying what is wrong and *AT the offset of the problem in S.
 */
int policy_name_norm(const char *s, size_t n, char *out, const char **why, size_t *at);

/* Whether the IPv6 address A is IPv4-mapped (::ffff:a.b.c.d). */
int policy_addr_is_mapped(const unsigned char a[16]);

/* The strict dotted quad [S, S+N) into OUT; 0, or -1 if it is not one. */
int policy_ipv4_parse(const char *s, size_t n, unsigned char out[4]);

/*
 * Whether the last label of [S, S+N) is all digits: such a host is meant as an
 * IPv4 address (rules and `explain` then take only a strict dotted quad, where
 * libc's resolver would read "010.1.2.3" as octal or "10.1" as 10.0.0.1).
 */
int policy_looks_numeric(const char *s, size_t n);

/* A as dotted-quad text, NUL-terminated; returns its length. */
size_t policy_ipv4_text(const unsigned char a[4], char out[16]);

/* index.c: policy_match() on P's own rules, ignoring its floor. */
const struct policy_rule *policy_match_own(const struct policy *p, const struct policy_query *q,
					   struct policy_match *m);

/* format.c */
/* Writes S (N bytes) to OUT for a message: long text cut, control bytes as \xNN. */
const char *policy_shown(const char *s, size_t n, char *out, size_t outlen);

#endif
