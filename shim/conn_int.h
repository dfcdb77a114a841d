/*
 * conn_int.h - what the files of one wrapped connection share, and nothing
 * outside them includes (the rest of the shim uses conn.h).
 *
 *   conn.c          life cycle, fds, one owner across fork()
 *   conn_step.c     the engine steps (connect, handshake, auto), failures, connect()
 *   conn_starttls.c starttls=: the protocols' dialogues on the socket
 *   conn_io.c       read and write: the steps, then the operations around them
 *   conn_wait.c     the blocking emulation: waits, deadlines, this process's own handshakes
 *   conn_poll.c     readiness for poll/select/epoll
 *   conn_shut.c     shutdown and the end of a session
 *
 * Unless said otherwise, each function here is called with c->lock held and
 * never waits (a step); it returns 0 or a count, -EAGAIN with *WANT set to
 * the poll events the socket must give first, or -errno.
 */
#ifndef TLSSHIM_CONN_INT_H
#define TLSSHIM_CONN_INT_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "conn.h"
#include "engine.h"

/*
 * The TLS engine, set once by the first wrapped connection (conn.c). Read
 * through engine(): an acquire load (a plain load on x86) that pairs with
 * the single compare-and-swap that sets it, so every thread sees the table
 * it points to.
 */
extern const struct engine_ops *conn_engine_ptr;

static inline const struct engine_ops *engine(void)
{
	return __atomic_load_n(&conn_engine_ptr, __ATOMIC_ACQUIRE);
}

#define E engine()

/* ---- conn.c --------------------------------------------------------------------------- */

/* Makes the conn's TLS session (loading the engine first if need be): 0, or -1 with ERR. */
int conn_session_new(struct conn *c, char *err, size_t errlen) __attribute__((warn_unused_result));
/* Whether the session needs an owner in its state (cleartext and failed ones do not). */
int conn_claim_needed(const struct conn *c);
/*
 * Whether this process may seal and open the session's records: 0, or
 * -ECONNRESET once another process has claimed it since fork() (the conn
 * is then FAILED, as a plain socket whose connection is gone).
 */
int conn_claim(struct conn *c) __attribute__((warn_unused_result));

/* ---- conn_step.c ---------------------------------------------------------------------- */

/* Plaintext kept since connect() returned before the handshake completed. */
size_t conn_early_held(const struct conn *c);
/* Keeps up to LEN of such bytes: the count kept, -EAGAIN when full, or -ENOMEM. */
ssize_t conn_early_put(struct conn *c, const void *buf, size_t len)
    __attribute__((warn_unused_result));
/* Whether anything the program wrote is still to be sent (kept plaintext or ciphertext). */
int conn_out_pending(const struct conn *c);
/*
 * OPEN: sends what conn_out_pending() counts, then a shutdown(SHUT_WR) asked
 * for meanwhile. Returns 0, TS_WANT_WRITE / TS_WANT_READ, TS_SYSERR or TS_FATAL.
 */
int conn_out_flush(struct conn *c);
/*
 * The session is dead for TLS reasons: logs REASON at LEVEL, ends the TCP
 * stream, and every later I/O fails (errmap.h: OUTCOME_RESET). Returns that -errno.
 */
int conn_fail_at(struct conn *c, int level, const char *reason);
/* conn_fail_at() for the engine's result RC of an operation named DURING. */
int conn_fail_rc(struct conn *c, int rc, const char *during);
/* Brings the connection to OPEN or PLAIN: 0 when there, -EAGAIN (with *WANT), -errno. */
int conn_step_on(struct conn *c, short *want);

/*
 * conn_step_on(), inline for the connection already there, which every read,
 * write and readiness call of an open connection asks about first.
 */
static inline int conn_step_ready(struct conn *c, short *want)
{
	if (!c->closed && c->claim == CLAIM_OWNER &&
	    (c->state == CONN_OPEN || c->state == CONN_PLAIN))
		return 0;
	return conn_step_on(c, want);
}

/* ---- conn_starttls.c ------------------------------------------------------------------ */

/* STARTTLS: one step of the protocol's upgrade (as conn_step_ready's steps). */
int conn_step_starttls(struct conn *c, short *want) __attribute__((warn_unused_result));
/* accept starttls=smtp: whether the cleartext before STARTTLS is still filtered. */
int conn_smtp_filtering(const struct conn *c);
/* Bytes the program reads before any of the session's (a synthesised greeting, an 'N'). */
size_t conn_greet_pending(const struct conn *c);
/* Hands them out (recv FLAGS: MSG_PEEK, MSG_TRUNC); frees the dialogue once done. */
ssize_t conn_greet_read(struct conn *c, void *buf, size_t len, int flags)
    __attribute__((warn_unused_result));
/* Sends the shim's own pending answer: 0 when none is left, -EAGAIN, -errno. */
int conn_st_flush(struct conn *c, short *want) __attribute__((warn_unused_result));
/*
 * accept starttls=smtp, before STARTTLS: the program's read and write. Both
 * return -EALREADY when the caller must go on as without the filter.
 */
ssize_t conn_smtp_srv_recv(struct conn *c, void *buf, size_t len, int flags, short *want)
    __attribute__((warn_unused_result));
ssize_t conn_smtp_srv_send(struct conn *c, const void *buf, size_t len, short *want)
    __attribute__((warn_unused_result));

/* ---- conn_io.c ------------------------------------------------------------------------ */

/* One non-blocking read step (recv FLAGS): bytes, 0 at the end, -EAGAIN, -errno. */
ssize_t conn_step_recv(struct conn *c, void *buf, size_t len, int flags, short *want);
/* Seals the bytes held for one record: 0 when none are left, -EAGAIN, -errno. */
int conn_hold_seal(struct conn *c, int kernel_signals, short *want)
    __attribute__((warn_unused_result));
/* Before the program reads or waits: what it held back goes out (KEV |= what that needs). */
void conn_hold_release(struct conn *c, short *kev);

/* ---- conn_wait.c ---------------------------------------------------------------------- */

/* One blocking call's wait state: the program's time-out, read once. */
struct conn_waiter {
	int opt;          /* SO_RCVTIMEO or SO_SNDTIMEO */
	int64_t deadline; /* -1 = none; computed on the first wait */
	int started;
};

/*
 * Waits for WANT on the conn's socket, without c->lock (advancing this
 * process's listed handshakes meanwhile). Returns 0 to try again, -EAGAIN
 * when the program's socket time-out expired, or -errno (EINTR, EBADF).
 */
int conn_wait(struct conn *c, short want, struct conn_waiter *w)
    __attribute__((warn_unused_result));
/* conn_deadline() with c->lock held. */
uint64_t conn_deadline_locked(const struct conn *c);
/* Lists C among the handshakes every waiter moves on; unlists it (both under c->lock). */
void conn_own_add(struct conn *c);
void conn_own_remove(struct conn *c);
/* fork() child: the list's lock is made afresh. */
void conn_own_fork_child(void);

#endif
