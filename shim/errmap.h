/*
 * errmap.h - the one map from what happened to a connection to the errno the
 * program gets: the contract's outcomes (interface.md, "What the program sees") and the
 * engine's results. Every place that chooses one of these errnos asks here,
 * so the contract is kept in one table (as libtls maps SSL_get_error in one
 * function).
 */
#ifndef TLSSHIM_ERRMAP_H
#define TLSSHIM_ERRMAP_H

#include <errno.h>

#include "engine.h"

enum outcome {
	/* A deny rule; a wrapped fd passed over SCM_RIGHTS: the call is refused. */
	OUTCOME_DENIED,
	/*
	 * connect: the handshake failed before it returned, or the name the rule
	 * needs is ambiguous; not one byte of the program's data was sent.
	 */
	OUTCOME_REFUSED,
	/*
	 * The session is dead for the program: a TLS failure after connect
	 * returned or on accept, a session another process took after fork(),
	 * a deny on an inherited connection, connect(AF_UNSPEC).
	 */
	OUTCOME_RESET,
	/* Writing where the stream has ended: the peer left, or shutdown(SHUT_WR). */
	OUTCOME_HUNGUP,
};

/* The errno of outcome O. */
static inline int outcome_errno(enum outcome o)
{
	switch (o) {
	case OUTCOME_DENIED:
		return EACCES;
	case OUTCOME_REFUSED:
		return ECONNREFUSED;
	case OUTCOME_RESET:
		return ECONNRESET;
	case OUTCOME_HUNGUP:
		return EPIPE;
	default:
		return EIO;
	}
}

/*
 * The errno of an engine result RC (TS_*) that the program sees as the
 * socket's error; SYSERR is the engine's errno for TS_SYSERR (0 when it kept
 * none: EIO, never a success).
 */
static inline int engine_errno(int rc, int syserr)
{
	switch (rc) {
	case TS_WANT_READ:
	case TS_WANT_WRITE:
		return EAGAIN;
	case TS_SYSERR:
		return syserr != 0 ? syserr : EIO;
	case TS_CLOSED:
	case TS_EOF:
		return outcome_errno(OUTCOME_HUNGUP);
	case TS_FATAL:
		return outcome_errno(OUTCOME_RESET);
	default:
		return EIO;
	}
}

#endif
