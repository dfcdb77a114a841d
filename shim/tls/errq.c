/*
 * errq.c - the program's OpenSSL error queue, kept out of the engine's way.
 *
 * A program may use the same libcrypto as the engine, on the same thread:
 * its own TLS over a wrapped socket calls read()/write() from inside its BIO,
 * and the engine then runs OpenSSL within the program's SSL_connect(). OpenSSL
 * keeps one error queue per thread, and both sides decide with it:
 * SSL_get_error() looks at the oldest queued error. So the engine must run on
 * an empty queue (the program's errors would turn its WANT_READ into
 * SSL_ERROR_SSL) and give the program back its queue exactly as it was
 * (clearing it turned the program's "certificate verify failed" into an EOF
 * with no reason, and a test suite's error path into a crash later).
 *
 * An empty queue, nearly always the case, needs nothing. Otherwise the whole
 * per-thread state (entries, their data strings, marks) is moved aside for
 * the operation and moved back after. OpenSSL 3.0 has no call to save a queue
 * (OSSL_ERR_STATE_save() came in 3.2), so this uses ERR_get_state() and the
 * ERR_STATE layout of the OpenSSL headers the engine is built with.
 */
#define OPENSSL_SUPPRESS_DEPRECATED /* ERR_get_state(): see above */

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "tls_int.h"

/*
 * This thread's ERR_STATE while an engine operation runs on it, else NULL.
 * OpenSSL frees it only at thread exit or in OPENSSL_thread_stop(), never
 * inside an operation, so during one its queue can be read without asking.
 */
static __thread ERR_STATE *op_state;

int tls_err_pending(void)
{
	ERR_STATE *es = op_state;

	/* Slots marked cleared but not yet reclaimed count: clearing them is harmless. */
	if (es != NULL)
		return es->top != es->bottom;
	return ERR_peek_error() != 0;
}

void tls_errq_enter(struct tls_errq *q)
{
	ERR_STATE *es = ERR_get_state();

	q->held = 0;
	q->outer = op_state;
	op_state = es;
	if (es == NULL || es->top == es->bottom)
		return;
	q->saved = *es;
	/* A zeroed state is what OpenSSL gives a new thread: an empty queue owning nothing. */
	memset(es, 0, sizeof(*es));
	q->held = 1;
}

void tls_errq_leave(struct tls_errq *q)
{
	ERR_STATE *es;

	op_state = q->outer;
	if (!q->held)
		return;
	es = ERR_get_state();
	if (es == NULL)
		return;
	/* Strings of the engine's own errors; the program's come back with their slots. */
	for (int i = 0; i < ERR_NUM_ERRORS; i++) {
		if (es->err_data_flags[i] & ERR_TXT_MALLOCED)
			OPENSSL_free(es->err_data[i]);
	}
	*es = q->saved;
	q->held = 0;
}
