/*
 * tsess.c - the engine's sessions and the one table libtlsshim-tls.so exports.
 *
 * Each operation runs OpenSSL until it needs the socket and says which way
 * (TS_WANT_READ / TS_WANT_WRITE); the caller waits. OpenSSL's outcome is
 * mapped to TS_* and a short reason in one function, tsess_result(), so every
 * log line names failures the same way. Every operation runs on an empty ERR
 * queue and leaves the thread's queue as it found it: the program may use
 * OpenSSL itself, even around our call (errq.c).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "real.h"
#include "tls_int.h"

#define TS_MAX_RECORD 16384 /* plaintext per write: one record (RFC 8446 section 5.1) */

struct engine_host tls_host;
static char *keylog_path_copy;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rc = -1;
static char init_err[256];

/* Sets S's reason (printf-style, truncated to TS_REASON_MAX). */
void tsess_set_reason(struct tsess *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->reason, sizeof(s->reason), fmt, ap);
	va_end(ap);
}

/* "certificate verify failed: <why>" from the X509 verification result. */
static void verify_reason(struct tsess *s)
{
	long v = SSL_get_verify_result(s->ssl);
	const char *who = s->role == TLS_ROLE_SERVER ? "client certificate" : "certificate";

	if (v == X509_V_OK) {
		tsess_set_reason(s, "%s verify failed", who);
		return;
	}
	/* OpenSSL 3's strings are the short ones users know ("hostname mismatch", ...). */
	tsess_set_reason(s, "%s verify failed: %s", who, X509_verify_cert_error_string(v));
}

/* The reason for an SSL_ERROR_SSL whose first queued error is E. */
static void ssl_reason(struct tsess *s, unsigned long e)
{
	int lib = ERR_GET_LIB(e), r = ERR_GET_REASON(e);
	const char *str;

	if (lib != ERR_LIB_SSL) {
		str = ERR_reason_error_string(e);
		tsess_set_reason(s, "%s", str != NULL ? str : "TLS error");
		return;
	}
	/* Received alerts are reported as SSL_AD_REASON_OFFSET + the alert number. */
	if (r == SSL_R_TLSV1_ALERT_PROTOCOL_VERSION) {
		tsess_set_reason(s, "unsupported protocol version (peer sent alert)");
		return;
	}
	if (r > SSL_AD_REASON_OFFSET && r < SSL_AD_REASON_OFFSET + 256) {
		tsess_set_reason(s, "peer sent alert: %s",
				 SSL_alert_desc_string_long(r - SSL_AD_REASON_OFFSET));
		return;
	}
	switch (r) {
	case SSL_R_CERTIFICATE_VERIFY_FAILED:
		verify_reason(s);
		break;
	case SSL_R_WRONG_VERSION_NUMBER:
	case SSL_R_RECORD_LENGTH_MISMATCH:
		tsess_set_reason(s, "peer is not speaking TLS (wrong version number)");
		break;
	case SSL_R_PACKET_LENGTH_TOO_LONG:
		tsess_set_reason(s, "peer is not speaking TLS (record length too long)");
		break;
	case SSL_R_HTTP_REQUEST:
	case SSL_R_HTTPS_PROXY_REQUEST:
		tsess_set_reason(s, "peer is not speaking TLS (HTTP request)");
		break;
	case SSL_R_NO_SHARED_CIPHER:
		tsess_set_reason(s, "no shared cipher");
		break;
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_NO_PROTOCOLS_AVAILABLE:
	case SSL_R_UNKNOWN_PROTOCOL:
	case SSL_R_VERSION_TOO_LOW:
	case SSL_R_VERSION_TOO_HIGH:
	case SSL_R_WRONG_SSL_VERSION:
	case SSL_R_BAD_LEGACY_VERSION:
		tsess_set_reason(s, "unsupported protocol version");
		break;
	case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
		tsess_set_reason(s, "client did not send a certificate");
		break;
	case SSL_R_NO_APPLICATION_PROTOCOL:
		tsess_set_reason(s, "no common application protocol (ALPN)");
		break;
	case SSL_R_UNEXPECTED_EOF_WHILE_READING:
		tsess_set_reason(s, "connection closed without close_notify");
		break;
	default:
		str = ERR_reason_error_string(e);
		tsess_set_reason(s, "%s", str != NULL ? str : "TLS error");
		break;
	}
}

static void eof_reason(struct tsess *s)
{
	if (SSL_is_init_finished(s->ssl))
		tsess_set_reason(s, "connection closed without close_notify");
	else
		tsess_set_reason(s, "connection closed by peer during handshake");
}

/*
 * Maps the result RET of an SSL_* call on S to TS_WANT_READ, TS_WANT_WRITE,
 * TS_CLOSED, TS_EOF, TS_SYSERR (S->sys_errno set) or TS_FATAL (S->reason
 * set); the one place OpenSSL's errors are interpreted. Empties the ERR queue
 * (SSL_get_error() found it empty for WANT_READ and WANT_WRITE).
 */
static int tsess_result(struct tsess *s, int ret)
{
	int err = SSL_get_error(s->ssl, ret);
	unsigned long e;
	int rc;

	switch (err) {
	case SSL_ERROR_WANT_READ:
		rc = TS_WANT_READ;
		break;
	case SSL_ERROR_WANT_WRITE:
		rc = TS_WANT_WRITE;
		break;
	case SSL_ERROR_ZERO_RETURN:
		/*
		 * After the peer's close_notify OpenSSL reports every failure this
		 * way; a socket error our BIO saw (EPIPE once the peer reset) is the
		 * truth a write must report, as the plain socket would.
		 */
		rc = s->sys_errno != 0 ? TS_SYSERR : TS_CLOSED;
		break;
	case SSL_ERROR_SYSCALL:
		if (s->sys_errno != 0) {
			rc = TS_SYSERR;
			break;
		}
		/* No socket error recorded: the stream ended (OpenSSL 1.1-style EOF). */
		eof_reason(s);
		rc = TS_EOF;
		break;
	case SSL_ERROR_SSL:
		/* The first error is the cause; later ones are its consequences. */
		e = ERR_peek_error();
		if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
		    ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
			eof_reason(s);
			rc = s->sys_errno != 0 ? TS_SYSERR : TS_EOF;
			break;
		}
		if (s->sys_errno != 0) {
			rc = TS_SYSERR;
			break;
		}
		if (!s->cb_reason)
			ssl_reason(s, e);
		s->failed = 1;
		rc = TS_FATAL;
		break;
	default:
		tsess_set_reason(s, "unexpected OpenSSL error %d", err);
		s->failed = 1;
		rc = TS_FATAL;
		break;
	}
	if (rc != TS_WANT_READ && rc != TS_WANT_WRITE)
		tls_err_clear();
	return rc;
}

/* Sets the name the server certificate must carry and the SNI sent (client only). */
static int setup_client_names(struct tsess *s, const struct tsess_params *p, char *err,
			      size_t errlen)
{
	const struct policy_opts *o = &p->rule->opt;
	const char *sni = o->sni != NULL ? o->sni : p->peer_name;
	const char *name = o->name != NULL ? o->name : sni != NULL ? sni : p->peer_addr;

	/* Never an address in server_name (RFC 6066 section 3). */
	if (sni != NULL && !tls_is_ip_literal(sni) && !SSL_set_tlsext_host_name(s->ssl, sni)) {
		snprintf(err, errlen, "cannot set SNI %s", sni);
		return -1;
	}
	if (o->insecure || name == NULL)
		return 0;
	if (tls_is_ip_literal(name)) {
		/* RFC 6125: an address is matched against iPAddress SANs, never against names. */
		if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl), name)) {
			snprintf(err, errlen, "cannot verify address %s", name);
			return -1;
		}
		return 0;
	}
	SSL_set_hostflags(s->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (!SSL_set1_host(s->ssl, name)) {
		snprintf(err, errlen, "cannot verify name %s", name);
		return -1;
	}
	return 0;
}

/* Client: ALPN offer, and a cached session for (rule, peer, port) if there is one. */
static int setup_client(struct tsess *s, const struct tsess_params *p, char *err, size_t errlen)
{
	const struct policy_opts *o = &p->rule->opt;
	const char *peer = p->peer_name != NULL ? p->peer_name : p->peer_addr;
	SSL_SESSION *sess;
	char key[320];

	if (setup_client_names(s, p, err, errlen) != 0)
		return -1;
	/* Unlike most of OpenSSL, SSL_set_alpn_protos() returns 0 on success. */
	if (o->alpn_wire != NULL && SSL_set_alpn_protos(s->ssl, (const unsigned char *)o->alpn_wire,
							(unsigned)o->alpn_wire_len) != 0) {
		snprintf(err, errlen, "cannot set ALPN %s", o->alpn != NULL ? o->alpn : "");
		return -1;
	}
	snprintf(key, sizeof(key), "%u|%s|%u", p->rule->id, peer != NULL ? peer : "", p->port);
	s->cache_key = strdup(key);
	if (s->cache_key == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	sess = tlsctx_session_get(key);
	if (sess != NULL) {
		SSL_set_session(s->ssl, sess);
		SSL_SESSION_free(sess);
	}
	SSL_set_connect_state(s->ssl);
	return 0;
}

static void tsess_free(struct tsess *s)
{
	if (s == NULL)
		return;
	SSL_free(s->ssl); /* frees the BIO, which frees kept ciphertext */
	free(s->out);
	free(s->pt);
	free(s->cache_key);
	free(s);
	tls_err_clear();
}

/*
 * Creates a session for P on the rule's current SSL_CTX. Returns NULL with a
 * message in ERR (the rule's files never loaded, out of memory, ...). Per
 * connection this adds the struct tsess (~330 bytes), a BIO and the cache
 * key to OpenSSL's own state; ciphertext is kept only while unsent.
 */
static struct tsess *tsess_new(const struct tsess_params *p, char *err, size_t errlen)
{
	struct tsess *s;
	SSL_CTX *ctx;
	BIO *bio;

	tls_err_clear();
	if (init_rc != 0) {
		snprintf(err, errlen, "TLS engine not initialised");
		return NULL;
	}
	ctx = tlsctx_get(p->rule, p->role, err, errlen);
	if (ctx == NULL)
		return NULL;
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	s->fd = p->fd;
	s->role = p->role;
	s->rule = p->rule;
	s->ssl = SSL_new(ctx);
	bio = s->ssl != NULL ? tls_bio_new(s) : NULL;
	if (bio == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	SSL_set_bio(s->ssl, bio, bio);
	SSL_set_app_data(s->ssl, s);
	if (p->role == TLS_ROLE_CLIENT) {
		if (setup_client(s, p, err, errlen) != 0)
			goto fail;
	} else {
		SSL_set_accept_state(s->ssl);
	}
	SSL_CTX_free(ctx); /* the SSL holds its own reference */
	tls_err_clear();
	return s;
fail:
	SSL_CTX_free(ctx);
	tsess_free(s);
	return NULL;
}

static void tsess_set_fd(struct tsess *s, int fd)
{
	s->fd = fd;
}

static void tsess_set_io(struct tsess *s, int family)
{
	s->io = family;
}

/*
 * Runs the handshake. Complete (0) only once our last flight has left, so a
 * caller that then waits to read never waits on a peer still waiting for us.
 */
static int tsess_handshake(struct tsess *s)
{
	int ret, rc, f;

	if (s->failed)
		return TS_FATAL;
	tls_err_clear();
	s->sys_errno = 0;
	s->gather = 1;
	ret = SSL_do_handshake(s->ssl);
	s->gather = 0;
	if (ret == 1) {
		tls_err_clear();
		return tls_bio_flush(s);
	}
	rc = tsess_result(s, ret);
	if (rc != TS_WANT_READ && rc != TS_FATAL)
		return rc;
	/* Our flight, or the alert that says why we failed, must reach the peer. */
	f = tls_bio_flush(s);
	if (rc == TS_WANT_READ && f != 0)
		return f;
	return rc;
}

/*
 * One SSL_read_ex() (SSL_peek_ex() if PEEK) of at most LEN bytes into BUF: bytes
 * > 0, or TS_*. Like every engine operation it runs on an empty ERR queue (the
 * ERRQ_OP wrapper), and leaves it empty.
 */
static ssize_t ssl_read_once(struct tsess *s, void *buf, size_t len, int peek)
{
	size_t n = 0;
	int ret, rc;

	/* Best effort: a read may follow output OpenSSL queued (tickets, key updates). */
	if (s->out != NULL && tls_bio_flush(s) == TS_SYSERR)
		return TS_SYSERR;
	/* Plaintext already decrypted is the program's; more from the peer waits (bio.c). */
	if (tls_bio_held(s) && SSL_pending(s->ssl) <= 0)
		return TS_WANT_WRITE;
	s->sys_errno = 0;
	s->gather = 1;
	s->in_read = 1;
	ret = peek ? SSL_peek_ex(s->ssl, buf, len, &n) : SSL_read_ex(s->ssl, buf, len, &n);
	s->in_read = 0;
	s->gather = 0;
	/* Records the read produced (a key-update reply) go out now, in one piece. */
	if (s->out != NULL)
		tls_bio_flush(s);
	if (ret == 1) {
		/* Each record of application data read earns the peer one reply. */
		size_t earned = 1 + n / TS_MAX_RECORD;

		if (!peek)
			s->replies = s->replies > earned ? s->replies - (unsigned)earned : 0;
		tls_err_clear();
		return (ssize_t)n;
	}
	rc = tsess_result(s, ret);
	if (rc == TS_WANT_READ && s->replies > TLS_MAX_REPLIES) {
		tsess_set_reason(s,
				 "the peer sent more than %d records that need a reply beyond "
				 "one per record of data (a key update flood)",
				 TLS_MAX_REPLIES);
		s->failed = 1;
		return TS_FATAL;
	}
	/* Held back by our own unsent output: wait until the socket takes it. */
	if (rc == TS_WANT_READ && tls_bio_held(s))
		return TS_WANT_WRITE;
	return rc;
}

static void pt_clear(struct tsess *s)
{
	free(s->pt);
	s->pt = NULL;
	s->pt_len = 0;
	s->pt_off = 0;
}

/* Copies up to LEN bytes of the plaintext decrypted ahead to BUF (if not NULL); consumes them
 * unless PEEK. Returns the count. */
static size_t pt_take(struct tsess *s, void *buf, size_t len, int peek)
{
	size_t n = s->pt_len - s->pt_off;

	if (n > len)
		n = len;
	if (buf != NULL)
		memcpy(buf, s->pt + s->pt_off, n);
	if (!peek) {
		s->pt_off += n;
		if (s->pt_off == s->pt_len)
			pt_clear(s);
	}
	return n;
}

/*
 * Decrypts ahead every record that is here, until WANT bytes are held. A
 * socket's MSG_PEEK shows all that is queued; SSL_peek() only the current
 * record. Returns the bytes held (> 0), or the TS_* result of the read that
 * found none. The end of the stream met on the way is kept for after them.
 */
static ssize_t pt_fill(struct tsess *s, size_t want)
{
	ssize_t r = TS_WANT_READ;

	while (s->pt_len - s->pt_off < want && s->pt_end == 0) {
		size_t have = s->pt_len - s->pt_off, room = want - have;
		unsigned char *n;

		/* After the first record, go on only while more may be had without waiting. */
		if (have > 0 && SSL_pending(s->ssl) <= 0 && !SSL_has_pending(s->ssl) && !s->in_more)
			break;
		if (room > TS_MAX_RECORD)
			room = TS_MAX_RECORD;
		if (s->pt_off > 0) {
			memmove(s->pt, s->pt + s->pt_off, have);
			s->pt_off = 0;
			s->pt_len = have;
		}
		n = realloc(s->pt, have + room);
		if (n == NULL)
			break;
		s->pt = n;
		r = ssl_read_once(s, s->pt + have, room, 0);
		if (r > 0) {
			s->pt_len = have + (size_t)r;
			continue;
		}
		if (r == TS_CLOSED || r == TS_EOF)
			s->pt_end = (int)r;
		break;
	}
	if (s->pt_len > s->pt_off)
		return (ssize_t)(s->pt_len - s->pt_off);
	pt_clear(s);
	return s->pt_end != 0 ? s->pt_end : r;
}

static ssize_t tsess_read(struct tsess *s, void *buf, size_t len, int peek)
{
	ssize_t r;

	if (len == 0)
		return 0;
	if (s->failed)
		return TS_FATAL;
	if (peek) {
		size_t want = len < TS_PEEK_MAX ? len : TS_PEEK_MAX;

		/*
		 * A peek the first record answers (a readiness check: one byte) needs no
		 * buffer of ours: OpenSSL keeps that record decrypted for the read that
		 * follows, which then takes it whole in one call. A count (FIONREAD, no
		 * BUF) decrypts ahead all there is.
		 */
		if (buf != NULL && s->pt == NULL && s->pt_end == 0) {
			r = ssl_read_once(s, buf, want, 1);
			if (r == TS_CLOSED || r == TS_EOF)
				s->pt_end = (int)r;
			if (r <= 0 || (size_t)r == want)
				return r;
		}
		r = pt_fill(s, want);
		return r > 0 ? (ssize_t)pt_take(s, buf, len, 1) : r;
	}
	/* What a peek decrypted comes first; the caller reads on for the rest. */
	if (s->pt != NULL)
		return (ssize_t)pt_take(s, buf, len, 0);
	if (s->pt_end != 0)
		return s->pt_end;
	return ssl_read_once(s, buf, len, 0);
}

static int tsess_flush(struct tsess *s)
{
	s->sys_errno = 0;
	return tls_bio_flush(s);
}

/*
 * Flushes, then encrypts at most one record of BUF. Returns the bytes
 * accepted (committed: their ciphertext is sent or kept), TS_WANT_WRITE with
 * nothing accepted if earlier ciphertext is still unsent, or an error.
 */
static ssize_t tsess_write(struct tsess *s, const void *buf, size_t len)
{
	size_t n = len < TS_MAX_RECORD ? len : TS_MAX_RECORD, written = 0;
	int ret, rc;

	if (s->failed)
		return TS_FATAL;
	s->sys_errno = 0;
	rc = tls_bio_flush(s);
	if (rc != 0)
		return rc;
	if (len == 0)
		return 0;
	/* The ERR queue is empty here (ERRQ_OP), as SSL_write_ex() needs it. */
	/* The server's resumption tickets ride along with its first data (tlsctx.c). */
	if (s->role == TLS_ROLE_SERVER && !s->tickets_sent) {
		/* As many as OpenSSL sends by itself: two after a full handshake, one to replace
		 * the ticket a resumption used (each costs a session encryption and a record). */
		int tickets = SSL_session_reused(s->ssl) ? 1 : 2, ok;

		s->tickets_sent = 1;
		ok = SSL_version(s->ssl) == TLS1_3_VERSION;
		for (int i = 0; ok && i < tickets; i++)
			ok = SSL_new_session_ticket(s->ssl) == 1;
		if (ok) {
			s->gather = 1;
			ret = SSL_write_ex(s->ssl, buf, n, &written);
			s->gather = 0;
			/* Accepted bytes are committed; what the kernel did not take waits. */
			if (tls_bio_flush(s) == TS_SYSERR && ret == 1)
				s->sys_errno = 0;
			goto done;
		}
	}
	ret = SSL_write_ex(s->ssl, buf, n, &written);
done:
	if (ret == 1) {
		tls_err_clear();
		return (ssize_t)written;
	}
	return tsess_result(s, ret);
}

/* Queues close_notify once (RFC 8446 section 6.1), then flushes. */
static int tsess_close_notify(struct tsess *s)
{
	if (!s->shutdown_sent) {
		s->shutdown_sent = 1;
		tls_err_clear();
		/* Fails harmlessly mid-handshake or after a fatal error: nothing to close then. */
		if (!s->failed && SSL_is_init_finished(s->ssl))
			SSL_shutdown(s->ssl);
		tls_err_clear();
	}
	return tsess_flush(s);
}

static size_t tsess_pending(const struct tsess *s)
{
	int n = SSL_pending(s->ssl);

	return (s->pt_len - s->pt_off) + (n > 0 ? (size_t)n : 0);
}

static int tsess_buffered_input(const struct tsess *s)
{
	return SSL_has_pending(s->ssl);
}

static int tsess_more_input(const struct tsess *s)
{
	return s->pt_len > s->pt_off || SSL_pending(s->ssl) > 0 || SSL_has_pending(s->ssl) ||
	       s->in_more;
}

static int tsess_output_pending(const struct tsess *s)
{
	if (tls_bio_held(s))
		return 2;
	return s->out != NULL && s->out_off < s->out_len;
}

static const char *tsess_reason(const struct tsess *s)
{
	return s->reason[0] != '\0' ? s->reason : "unknown TLS error";
}

static int tsess_errno(const struct tsess *s)
{
	return s->sys_errno;
}

/* Client: what the handshake verified, as "; verified name api.internal, pin". */
static void describe_verified(const struct tsess *s, char *buf, size_t len)
{
	X509_VERIFY_PARAM *vp = SSL_get0_param(s->ssl);
	const struct policy_opts *o = &s->rule->opt;
	const char *host = X509_VERIFY_PARAM_get0_host(vp, 0);
	const char *pins = o->n_pins == 0 ? ""
			   : o->insecure  ? ", pin of the end-entity key"
					  : ", pin";
	char *ip = NULL;

	if (o->insecure) {
		snprintf(buf, len, "; certificate NOT verified (insecure)%s", pins);
		return;
	}
	if (host != NULL) {
		snprintf(buf, len, "; verified name %s%s", host, pins);
		return;
	}
	ip = X509_VERIFY_PARAM_get1_ip_asc(vp);
	if (ip != NULL)
		snprintf(buf, len, "; verified address %s%s", ip, pins);
	else
		snprintf(buf, len, "; verified chain only (no name)%s", pins);
	OPENSSL_free(ip);
}

static void tsess_describe(const struct tsess *s, char *buf, size_t len)
{
	const unsigned char *alpn = NULL;
	unsigned alpn_len = 0;
	const SSL_CIPHER *c = SSL_get_current_cipher(s->ssl);
	int n;

	SSL_get0_alpn_selected(s->ssl, &alpn, &alpn_len);
	n = snprintf(buf, len, "%s %s%s", SSL_get_version(s->ssl),
		     c != NULL ? SSL_CIPHER_get_name(c) : "(none)",
		     SSL_session_reused(s->ssl) ? " resumed" : "");
	if (alpn_len > 0 && n >= 0 && (size_t)n < len)
		n += snprintf(buf + n, len - (size_t)n, " alpn=%.*s", (int)alpn_len, alpn);
	if (s->role == TLS_ROLE_CLIENT && n >= 0 && (size_t)n < len)
		describe_verified(s, buf + n, len - (size_t)n);
}

/*
 * Bytes read through the BIO (BIO_number_read() counts them for any method),
 * and whether OpenSSL's state machine has left TLS_ST_BEFORE, which it does
 * on the header of the first handshake message.
 */
static int tsess_peer_progress(const struct tsess *s)
{
	if (BIO_number_read(SSL_get_rbio(s->ssl)) == 0)
		return TS_PEER_SILENT;
	if (SSL_get_state(s->ssl) == TLS_ST_BEFORE)
		return TS_PEER_PARTIAL;
	return TS_PEER_SPOKE;
}

static void tsess_info(const struct tsess *s, struct ts_info *out)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(s->ssl);

	out->version = SSL_version(s->ssl);
	out->resumed = SSL_session_reused(s->ssl);
	snprintf(out->cipher, sizeof(out->cipher), "%s", c != NULL ? SSL_CIPHER_get_name(c) : "");
}

static void init_once_fn(void)
{
	uint64_t opts = OPENSSL_INIT_NO_ATEXIT | OPENSSL_INIT_LOAD_SSL_STRINGS |
			OPENSSL_INIT_LOAD_CRYPTO_STRINGS;

	/* NO_ATEXIT: the program may use OpenSSL too and may still need it in its own atexit. */
	if (!OPENSSL_init_ssl(opts, NULL)) {
		snprintf(init_err, sizeof(init_err), "cannot initialise OpenSSL");
		goto out;
	}
	if (tls_bio_init() != 0) {
		snprintf(init_err, sizeof(init_err), "cannot create the socket BIO");
		goto out;
	}
	if (keylog_init(init_err, sizeof(init_err)) != 0)
		goto out;
	init_rc = 0;
out:
	tls_err_clear();
}

/* Initialises OpenSSL and the engine once; later calls return the first result. */
static int engine_init(const struct engine_host *host, char *err, size_t errlen)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

	if (host == NULL || host->real == NULL || host->log == NULL) {
		snprintf(err, errlen, "TLS engine: incomplete host");
		return -1;
	}
	pthread_mutex_lock(&lock);
	if (tls_host.real == NULL) {
		tls_host = *host;
		if (host->keylog_path != NULL) {
			keylog_path_copy = strdup(host->keylog_path);
			tls_host.keylog_path = keylog_path_copy;
		}
	}
	pthread_mutex_unlock(&lock);
	pthread_once(&init_once, init_once_fn);
	if (init_rc != 0)
		snprintf(err, errlen, "%s", init_err);
	return init_rc;
}

/*
 * The operations that run OpenSSL, each on an empty ERR queue with the
 * program's own queue set aside and given back (errq.c): the program may be
 * inside its own OpenSSL call on this thread.
 */
#define ERRQ_OP(type, name, inner, params, args) \
	static type name params                  \
	{                                        \
		struct tls_errq q;               \
		type r;                          \
                                                 \
		tls_errq_enter(&q);              \
		r = inner args;                  \
		tls_errq_leave(&q);              \
		return r;                        \
	}

ERRQ_OP(int, op_init, engine_init, (const struct engine_host *h, char *err, size_t errlen),
	(h, err, errlen))
ERRQ_OP(struct tsess *, op_sess_new, tsess_new,
	(const struct tsess_params *p, char *err, size_t errlen), (p, err, errlen))
ERRQ_OP(int, op_handshake, tsess_handshake, (struct tsess * s), (s))
ERRQ_OP(ssize_t, op_read_ssl, tsess_read, (struct tsess * s, void *buf, size_t len, int peek),
	(s, buf, len, peek))

/*
 * Plaintext a peek decrypted ahead (or the end of the stream it met) is handed
 * out without OpenSSL, so without setting the error queue aside: an event
 * loop's read after the readiness check that peeked costs no ERR_get_state().
 */
static ssize_t op_read(struct tsess *s, void *buf, size_t len, int peek)
{
	size_t want = len < TS_PEEK_MAX ? len : TS_PEEK_MAX;

	if (len > 0 && !s->failed &&
	    (s->pt_end != 0 || (peek ? s->pt_len - s->pt_off >= want : s->pt != NULL)))
		return tsess_read(s, buf, len, peek);
	return op_read_ssl(s, buf, len, peek);
}
ERRQ_OP(ssize_t, op_write, tsess_write, (struct tsess * s, const void *buf, size_t len),
	(s, buf, len))
ERRQ_OP(int, op_close_notify, tsess_close_notify, (struct tsess * s), (s))

static void op_sess_free(struct tsess *s)
{
	struct tls_errq q;

	tls_errq_enter(&q);
	tsess_free(s);
	tls_errq_leave(&q);
}

__attribute__((visibility("default"))) const struct engine_ops tlsshim_engine_ops = {
    .abi = ENGINE_ABI,
    .init = op_init,
    .sess_new = op_sess_new,
    .sess_free = op_sess_free,
    .set_fd = tsess_set_fd,
    .set_io = tsess_set_io,
    .handshake = op_handshake,
    .read = op_read,
    .write = op_write,
    .flush = tsess_flush,
    .close_notify = op_close_notify,
    .pending = tsess_pending,
    .buffered_input = tsess_buffered_input,
    .more_input = tsess_more_input,
    .output_pending = tsess_output_pending,
    .reason = tsess_reason,
    .sys_errno = tsess_errno,
    .describe = tsess_describe,
    .peer_progress = tsess_peer_progress,
    .info = tsess_info,
};
