/*
 * stats.h - per-process counters in shared memory, for `tlsshim stats`.
 *
 * The file (layout in stats_layout.h) is made at the first connection a rule
 * takes over or denies, never at start-up: a process that wraps nothing pays
 * nothing. Directory: TLSSHIM_STATS_DIR, else /run/tlsshim when this process
 * can write there, else $XDG_RUNTIME_DIR/tlsshim; TLSSHIM_STATS=off: none.
 * Created 0600; no thread, no port, no system call after the file is made
 * (not even at exit: the reader removes the files of processes that are
 * gone). Updates are relaxed atomic adds to the mapped file: a counter costs
 * one locked add.
 *
 * Every function is safe to call whether or not the file exists (they do
 * nothing then) and from any thread.
 */
#ifndef TLSSHIM_STATS_H
#define TLSSHIM_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "policy.h"
#include "stats_layout.h"

/* The mapped rules, or NULL; and their count. Set once per process (stats.c). */
extern struct stats_rule *stats_base;
extern uint32_t stats_n;

static inline struct stats_rule *stats_rule_of(const struct policy_rule *r)
{
	struct stats_rule *b = __atomic_load_n(&stats_base, __ATOMIC_ACQUIRE);

	return b != NULL && r->id < stats_n ? b + r->id : NULL;
}

/* Plaintext the program read from / wrote to a connection of rule R. */
static inline void stats_bytes_in(const struct policy_rule *r, size_t n)
{
	struct stats_rule *s = stats_rule_of(r);

	if (s != NULL)
		atomic_fetch_add_explicit(&s->bytes_in, n, memory_order_relaxed);
}

static inline void stats_bytes_out(const struct policy_rule *r, size_t n)
{
	struct stats_rule *s = stats_rule_of(r);

	if (s != NULL)
		atomic_fetch_add_explicit(&s->bytes_out, n, memory_order_relaxed);
}

/*
 * The constructor: reads TLSSHIM_STATS, TLSSHIM_STATS_DIR and XDG_RUNTIME_DIR,
 * unless SECURE (a secure-execution process reads no variable: then only
 * /run/tlsshim is used). No system call.
 */
void stats_init(int secure);

/*
 * A connection of rule R is taken over (tls/auto). Makes the file if this is
 * the process's first. Returns the mark to give stats_conn_end() (0: not
 * counted).
 */
unsigned stats_conn_new(const struct policy_rule *r);

/* The connection counted with MARK (stats_conn_new()) is gone. */
void stats_conn_end(const struct policy_rule *r, unsigned mark);

/* A connection of rule R was denied (DENY) or passed in cleartext (PLAIN). */
void stats_decided(const struct policy_rule *r, enum policy_action what);

/* A handshake of rule R completed: VERSION (0x0303...), CIPHER's name, RESUMED. */
void stats_handshake(const struct policy_rule *r, int version, const char *cipher, int resumed);

/* A connection of rule R failed for REASON (the text of its log line). */
void stats_failed(const struct policy_rule *r, const char *reason);

/* Which enum stats_fail REASON belongs to. */
int stats_fail_class(const char *reason);

/*
 * The TLS engine (re)loaded rule R's certificate: SUBJECT and NOT_AFTER (Unix
 * time) of the one in the chain that expires first.
 */
void stats_cert_loaded(const struct policy_rule *r, const char *subject, int64_t not_after);

/*
 * fork(): the child keeps its own counters, in a file of its own: made at
 * once when the parent had connections open (the child may use them), else
 * at the child's first connection.
 */
void stats_fork_child(void);

#endif
