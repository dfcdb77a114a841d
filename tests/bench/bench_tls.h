/*
 * bench_tls.h - the OpenSSL transport of the benchmark programs (native_server,
 * native_client): TLS 1.3 only, TLS_AES_128_GCM_SHA256 only, SSL_MODE_RELEASE_BUFFERS
 * on, so every side of every comparison runs the same protocol and cipher.
 */
#ifndef TLSSHIM_BENCH_TLS_H
#define TLSSHIM_BENCH_TLS_H

#include <limits.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "bench.h"

#define BENCH_SUITE "TLS_AES_128_GCM_SHA256"

static SSL_CTX *tls_ctx;
static const char *tls_name;   /* client: the name the server certificate must carry */
static SSL_SESSION *tls_saved; /* client: the newest session, when resuming */
static int tls_reuse;
static unsigned long tls_errors_shown;

/* Prints (a few of) OpenSSL's queued errors under WHAT, then empties the queue. */
static inline void tls_report(const char *what)
{
	char buf[256];
	unsigned long e;

	while ((e = ERR_get_error()) != 0) {
		if (tls_errors_shown++ >= 10)
			continue;
		ERR_error_string_n(e, buf, sizeof(buf));
		fprintf(stderr, "%s: %s: %s\n", bench_prog, what, buf);
	}
}

static inline void __attribute__((noreturn)) tls_die(const char *what)
{
	tls_errors_shown = 0;
	tls_report(what);
	die("%s failed", what);
}

static inline SSL_CTX *tls_ctx_new(const SSL_METHOD *method)
{
	SSL_CTX *ctx = SSL_CTX_new(method);

	if (!ctx)
		tls_die("SSL_CTX_new");
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION))
		tls_die("SSL_CTX_set_min_proto_version");
	if (!SSL_CTX_set_ciphersuites(ctx, BENCH_SUITE))
		tls_die("SSL_CTX_set_ciphersuites");
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	/* A peer that closes without close_notify reads as end of stream, as in TCP. */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	return ctx;
}

static inline int tls_new_session(SSL *ssl, SSL_SESSION *sess)
{
	(void)ssl;
	if (tls_saved)
		SSL_SESSION_free(tls_saved);
	tls_saved = sess;
	return 1; /* we keep the reference */
}

/* Client: trust CA, require NAME in the server certificate, resume sessions if REUSE. */
static inline void tls_client_init(const char *ca, const char *name, int reuse)
{
	tls_ctx = tls_ctx_new(TLS_client_method());
	if (SSL_CTX_load_verify_locations(tls_ctx, ca, NULL) != 1)
		tls_die(ca);
	SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_PEER, NULL);
	tls_name = name;
	tls_reuse = reuse;
	if (reuse) {
		SSL_CTX_set_session_cache_mode(tls_ctx, SSL_SESS_CACHE_CLIENT |
							    SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(tls_ctx, tls_new_session);
	} else {
		SSL_CTX_set_session_cache_mode(tls_ctx, SSL_SESS_CACHE_OFF);
	}
}

/*
 * Server: CERT (chain) and KEY. Stateless session tickets unless NO_TICKETS, in
 * which case no ticket is sent and nothing is cached: every handshake is full.
 * The server-side cache is off either way (tickets need none), so idle memory
 * per connection is the connection's own.
 */
static inline void tls_server_init(const char *cert, const char *key, int no_tickets)
{
	tls_ctx = tls_ctx_new(TLS_server_method());
	if (SSL_CTX_use_certificate_chain_file(tls_ctx, cert) != 1)
		tls_die(cert);
	if (SSL_CTX_use_PrivateKey_file(tls_ctx, key, SSL_FILETYPE_PEM) != 1)
		tls_die(key);
	if (SSL_CTX_check_private_key(tls_ctx) != 1)
		tls_die("SSL_CTX_check_private_key");
	/* Non-blocking server: a write may finish part of the buffer, then resume from a copy. */
	SSL_CTX_set_mode(tls_ctx,
			 SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_session_cache_mode(tls_ctx, SSL_SESS_CACHE_OFF);
	if (no_tickets) {
		SSL_CTX_set_options(tls_ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_num_tickets(tls_ctx, 0);
	}
}

static inline int tls_srv_wrap(struct xconn *c, int fd)
{
	SSL *ssl = SSL_new(tls_ctx);

	if (!ssl || !SSL_set_fd(ssl, fd)) {
		tls_report("SSL_new");
		SSL_free(ssl);
		close(fd);
		return -1;
	}
	SSL_set_accept_state(ssl); /* the handshake runs inside the first SSL_read */
	c->fd = fd;
	c->tls = ssl;
	return 0;
}

static inline int tls_cli_wrap(struct xconn *c, int fd)
{
	SSL *ssl = SSL_new(tls_ctx);

	if (!ssl || !SSL_set_fd(ssl, fd) || !SSL_set1_host(ssl, tls_name))
		goto fail;
	if (tls_reuse && tls_saved && !SSL_set_session(ssl, tls_saved))
		goto fail;
	if (SSL_connect(ssl) != 1)
		goto fail;
	c->fd = fd;
	c->tls = ssl;
	return 0;
fail:
	tls_report("handshake");
	SSL_free(ssl);
	close(fd);
	return -1;
}

/* Maps an SSL_read/SSL_write result to the XIO_* codes, the one place that does. */
static inline ssize_t tls_result(SSL *ssl, int n, const char *what)
{
	if (n > 0)
		return n;
	switch (SSL_get_error(ssl, n)) {
	case SSL_ERROR_WANT_READ:
		return XIO_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return XIO_WANT_WRITE;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	default:
		tls_report(what);
		return XIO_ERR;
	}
}

static inline ssize_t tls_read(struct xconn *c, void *buf, size_t len)
{
	int n = SSL_read(c->tls, buf, len > INT_MAX ? INT_MAX : (int)len);

	return tls_result(c->tls, n, "SSL_read");
}

static inline ssize_t tls_write(struct xconn *c, const void *buf, size_t len)
{
	int n = SSL_write(c->tls, buf, len > INT_MAX ? INT_MAX : (int)len);

	return tls_result(c->tls, n, "SSL_write");
}

static inline void tls_close(struct xconn *c)
{
	if (SSL_is_init_finished(c->tls))
		SSL_shutdown(c->tls); /* sends close_notify; never waits for the peer's */
	ERR_clear_error();
	SSL_free(c->tls);
	close(c->fd);
	c->tls = NULL;
	c->fd = -1;
}

static inline int tls_resumed(const struct xconn *c)
{
	return SSL_session_reused(c->tls);
}

static inline const struct xport *tls_transport(void)
{
	static const struct xport x = {
	    .name = "tls",
	    .srv_wrap = tls_srv_wrap,
	    .cli_wrap = tls_cli_wrap,
	    .read = tls_read,
	    .write = tls_write,
	    .close = tls_close,
	    .resumed = tls_resumed,
	};

	return &x;
}

#endif
