/*
 * tls_int.h - what the TLS engine's files share (never included outside shim/tls/).
 *
 * The engine is split by concern: tlsctx.c builds an SSL_CTX (secure
 * defaults), tlsctx_reload.c keeps one per rule and role (file reload,
 * expiry), tlsctx_scache.c is the client session cache; bio.c the BIO
 * that does socket I/O through the real libc functions and keeps unsent
 * ciphertext; verify.c pins, allow patterns and the certificate callback;
 * keylog.c TLSSHIM_KEYLOG; tsess.c the sessions' life cycle and the exported
 * ops table, tsess_io.c their reads and writes, tsess_result.c the one map
 * of OpenSSL's outcomes to TS_* and a reason.
 */
#ifndef TLSSHIM_TLS_INT_H
#define TLSSHIM_TLS_INT_H

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stddef.h>

#include "engine.h"

/*
 * Whether this thread's OpenSSL error queue holds anything. Inside an engine
 * operation (between tls_errq_enter() and tls_errq_leave()) the queue is
 * looked at directly; OpenSSL's own look, ERR_peek_error(), costs about 200
 * instructions in OpenSSL 3.0 (every ERR_* call takes OPENSSL_init_crypto()'s
 * slow path), several times per request/response.
 */
int tls_err_pending(void);

/*
 * Empties this thread's OpenSSL error queue, so that SSL_get_error() after the
 * next call sees only what that call queued. ERR_clear_error() resets all 16
 * slots every time (about 840 instructions in OpenSSL 3.0, four times per
 * request/response: a quarter of the shim's cost per round trip); the queue
 * is nearly always empty, and looking costs a small fraction of that.
 * SSL_get_error() itself decides with ERR_peek_error().
 */
static inline void tls_err_clear(void)
{
	if (tls_err_pending())
		ERR_clear_error();
}

/*
 * The program's OpenSSL error queue, set aside while the engine works on the
 * same thread (errq.c). Every engine operation that calls OpenSSL runs
 * between tls_errq_enter() and tls_errq_leave().
 */
struct tls_errq {
	ERR_STATE saved;
	ERR_STATE *outer; /* the enclosing operation's state (tls_err_pending()), or NULL */
	int held;         /* the program's queue was not empty: SAVED holds it */
};
void tls_errq_enter(struct tls_errq *q);
void tls_errq_leave(struct tls_errq *q);

#define TS_REASON_MAX 256 /* room for "client certificate not allowed: <identities>" */

/* One TLS session: the engine's per-connection state (kept small: see tsess_new()). */
struct tsess {
	SSL *ssl;
	int fd;
	int io; /* enum ts_io: the system calls of the program's own I/O */
	enum tls_role role;
	const struct policy_rule *rule;
	int sys_errno;      /* errno of the last failed socket call in the BIO, or 0 */
	unsigned char *out; /* ciphertext the kernel did not take yet; NULL when empty */
	size_t out_len, out_off, out_cap;
	unsigned char *pt; /* plaintext decrypted ahead by a peek; NULL when empty */
	size_t pt_len, pt_off;
	int pt_end;             /* TS_CLOSED/TS_EOF met while decrypting ahead, else 0 */
	char *cache_key;        /* client: session cache key; NULL when not caching */
	unsigned char *tickets; /* server: TLS 1.3 tickets held for the first write; or NULL */
	size_t tickets_len;
	unsigned shutdown_sent : 1;
	unsigned gather : 1;    /* BIO keeps all output for one send() at the end of an op */
	unsigned failed : 1;    /* a TS_FATAL happened: the session is dead */
	unsigned in_more : 1;   /* the last socket read filled its buffer: more may wait */
	unsigned cb_reason : 1; /* REASON was set by a callback during the handshake */
	unsigned in_read : 1;   /* inside SSL_read: records written now are replies */
	unsigned replies;       /* reply records our reads produced, less data records read */
	char reason[TS_REASON_MAX];
};

/* The host given to init(), copied; valid once init() succeeded. */
extern struct engine_host tls_host;

#define tls_log(level, ...) tls_host.log((level), __VA_ARGS__)

/* Sets S's reason (printf-style). */
void tsess_set_reason(struct tsess *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- tsess_result.c ---- */

/*
 * Maps the result RET of an SSL_* call on S to TS_WANT_READ, TS_WANT_WRITE,
 * TS_CLOSED, TS_EOF, TS_SYSERR (S->sys_errno set) or TS_FATAL (S->reason
 * set). Empties the ERR queue unless the result is a WANT_*.
 */
int tsess_result(struct tsess *s, int ret);
const char *tsess_reason(const struct tsess *s); /* S's reason, never empty */
int tsess_errno(const struct tsess *s);          /* S->sys_errno */

/* ---- tsess_io.c: the engine_ops of the same names (engine.h has their contracts) ---- */

ssize_t tsess_read(struct tsess *s, void *buf, size_t len, int peek);
ssize_t tsess_write(struct tsess *s, const void *buf, size_t len);
int tsess_flush(struct tsess *s);
int tsess_close_notify(struct tsess *s);
size_t tsess_pending(const struct tsess *s);
int tsess_buffered_input(const struct tsess *s);
int tsess_more_input(const struct tsess *s);
int tsess_output_pending(const struct tsess *s);

/* ---- bio.c ---- */

/* Creates the BIO method once. Returns 0 or -1. Called from init() only. */
int tls_bio_init(void);

/* A new BIO doing S's socket I/O; NULL on allocation failure. */
BIO *tls_bio_new(struct tsess *s);

/* Sends S's kept ciphertext: 0 when none is left, TS_WANT_WRITE, TS_SYSERR. */
int tls_bio_flush(struct tsess *s);

/*
 * Bytes of unsent ciphertext kept, and moves what was kept beyond BEFORE such
 * bytes (the newest) aside as S->tickets: the server's TLS 1.3 tickets,
 * written by the call that completed its handshake. They go out just before
 * the next record written (bio_write()), or never if none is. Returns 0, or
 * -1 if out of memory (then they stay to be sent now).
 */
size_t tls_bio_kept(const struct tsess *s);
int tls_bio_hold_tickets(struct tsess *s, size_t before);

/*
 * Unsent ciphertext past which the session reads nothing more from the peer
 * until it drains: a few records (RFC 8446 section 5.2: at most 2^14 + 256
 * bytes of ciphertext each).
 */
#define TLS_OUT_HOLD ((size_t)4 * (16384 + 256 + 5))

/*
 * Records the peer may make us send in reply (KeyUpdate with update_requested,
 * alerts) beyond one per record of application data it sends. A real peer
 * sends one now and then; a flood of them costs a key derivation each and
 * fills the kernel's send buffer (megabytes) before back-pressure can stop
 * it, so past this the session fails, as Go's crypto/tls does after 16 such
 * records in a row. Each data record the program reads earns one back, so a
 * peer cannot make us do more reply work than the data it sends.
 */
#define TLS_MAX_REPLIES 64

/* Whether S holds so much unsent ciphertext that reading from the peer waits. */
static inline int tls_bio_held(const struct tsess *s)
{
	return s->out != NULL && s->out_len - s->out_off > TLS_OUT_HOLD;
}

/* ---- tlsctx.c, tlsctx_reload.c ---- */

/*
 * Returns a new reference to the current SSL_CTX for (RULE, ROLE), building
 * it on first use and rebuilding it when the rule's files changed on disk
 * (checked at most once a second). NULL with a message in ERR if the rule
 * never loaded. Thread-safe. The caller SSL_CTX_free()s the reference.
 */
SSL_CTX *tlsctx_get(const struct policy_rule *rule, enum tls_role role, char *err, size_t errlen);

/*
 * Builds a new SSL_CTX for (R, ROLE) with the secure defaults and R's files;
 * OLD (may be NULL) is the one it replaces (a server's ticket keys carry
 * over). NULL with a message in ERR. Empties the ERR queue.
 */
SSL_CTX *tlsctx_build(const struct policy_rule *r, enum tls_role role, SSL_CTX *old, char *err,
		      size_t errlen);

/* ---- tlsctx_scache.c ---- */

/* The client session cache. Thread-safe; KEY is copied. */
SSL_SESSION *tlsctx_session_get(const char *key);            /* a new reference, or NULL */
void tlsctx_session_put(const char *key, SSL_SESSION *sess); /* takes SESS's reference */
void tlsctx_session_forget(unsigned rule_id);                /* every session of a rule */

/* ---- verify.c ---- */

/* The SSL_CTX_set_cert_verify_callback() function for both roles. */
int tls_verify_cb(X509_STORE_CTX *x, void *arg);

/* Whether TEXT is an IPv4 or IPv6 address literal. */
int tls_is_ip_literal(const char *text);

/* ---- keylog.c ---- */

/* Opens the key-log file if the host named one. Returns 0, or -1 with a message in ERR. */
int keylog_init(char *err, size_t errlen);

/* Whether key logging is on (install keylog_cb then). */
int keylog_enabled(void);

/* The SSL_CTX_set_keylog_callback() function. */
void keylog_cb(const SSL *ssl, const char *line);

#endif
