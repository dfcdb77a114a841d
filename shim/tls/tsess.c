/*
 * tsess.c - the engine's sessions and the one table libtlsshim-tls.so exports.
 *
 * Each operation runs OpenSSL until it needs the socket and says which way
 * (TS_WANT_READ / TS_WANT_WRITE); the caller waits. OpenSSL's outcome is
 * mapped to TS_* and a short reason in one function, tsess_result()
 * (tsess_result.c); reads and writes are in tsess_io.c. Every operation runs
 * on an empty ERR queue and leaves the thread's queue as it found it: the
 * program may use OpenSSL itself, even around our call (errq.c).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "real.h"
#include "tls_int.h"

struct engine_host tls_host;
static char *keylog_path_copy;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rc = -1;
static char init_err[256];

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
	free(s->tickets);
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
	size_t kept = tls_bio_kept(s);
	int ret, rc, f;

	if (s->failed)
		return TS_FATAL;
	tls_err_clear();
	s->sys_errno = 0;
	s->gather = 1;
	ret = SSL_do_handshake(s->ssl);
	s->gather = 0;
	if (ret == 1) {
		/*
		 * A TLS 1.3 server's last step writes only its tickets (RFC 8446
		 * section 4.6.1; the client's Finished came before): they wait for
		 * the program's first write (tlsctx.c, ctx_server). Kept as the
		 * records OpenSSL wrote, not written again then: writing a ticket
		 * after the handshake makes OpenSSL allocate and clear its 16 KB
		 * handshake buffer a second time (about 30 K instructions).
		 */
		if (s->role == TLS_ROLE_SERVER && SSL_version(s->ssl) == TLS1_3_VERSION)
			tls_bio_hold_tickets(s, kept);
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
