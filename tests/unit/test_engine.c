/*
 * test_engine.c - unit tests of the TLS engine (shim/tls/) through its ops table.
 *
 * Each test drives one engine session over a loopback TCP pair, non-blocking
 * with poll, against plain OpenSSL running blocking in a thread ("the peer").
 * Rules are built by hand (no parser). The PKI comes from scripts/mkpki, made
 * once per binary by the runner before the tests fork.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "engine.h"
#include "real.h"
#include "tcp_still.h"

#define ops           tlsshim_engine_ops
#define IO_TIMEOUT_MS 5000

/* ---- the PKI, once per binary ---- */

static char pki_dir[PATH_MAX];

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
	char cmd[PATH_MAX * 2];
	const char *src = __FILE__;
	size_t srclen = strlen(src) - strlen("tests/unit/test_engine.c");

	(void)set;
	snprintf(pki_dir, sizeof(pki_dir), "/tmp/tlsshim-engine-pki.XXXXXX");
	if (mkdtemp(pki_dir) == NULL)
		abort();
	snprintf(cmd, sizeof(cmd), "%.*s%sscripts/mkpki %s", (int)srclen, src,
		 srclen == 0 ? "./" : "", pki_dir);
	if (system(cmd) != 0)
		abort();
	setenv("TLSSHIM_TEST_PKI", pki_dir, 1);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	char cmd[PATH_MAX + 16];

	(void)stats;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", pki_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", pki_dir);
}

/* Test allocations that live as long as the process (reachable, so not leaks). */
static void *kept[1024];
static size_t n_kept;

static void *keep(void *p)
{
	cr_assert(p != NULL && n_kept < sizeof(kept) / sizeof(kept[0]));
	kept[n_kept++] = p;
	return p;
}

static char *keep_str(const char *s)
{
	return keep(strdup(s));
}

/* "PKI/NAME", kept for the process. */
static char *pki(const char *name)
{
	const char *dir = getenv("TLSSHIM_TEST_PKI");
	char *p;

	cr_assert(dir != NULL, "no PKI");
	cr_assert(asprintf(&p, "%s/%s", dir, name) > 0);
	return keep(p);
}

/* ---- the host the engine sees ---- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_buf[16384];

__attribute__((format(printf, 2, 3))) static void test_log(int level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&log_lock);
	snprintf(log_buf + strlen(log_buf), sizeof(log_buf) - strlen(log_buf), "%d: %s\n", level,
		 line);
	pthread_mutex_unlock(&log_lock);
}

static int count_logged(const char *needle)
{
	const char *p;
	int n = 0;

	pthread_mutex_lock(&log_lock);
	for (p = strstr(log_buf, needle); p != NULL; p = strstr(p + 1, needle))
		n++;
	pthread_mutex_unlock(&log_lock);
	return n;
}

static int logged(const char *needle)
{
	int r;

	pthread_mutex_lock(&log_lock);
	r = strstr(log_buf, needle) != NULL;
	pthread_mutex_unlock(&log_lock);
	return r;
}

static struct real_fns fns;

static void engine_up(const char *keylog)
{
	static struct engine_host host;
	char err[256] = "";

	/* The peer writes to sockets the engine side may have closed. */
	signal(SIGPIPE, SIG_IGN);
	fns.read = read;
	fns.write = write;
	fns.send = send;
	fns.recv = recv;
	fns.openat = openat; /* the key log opens and closes its file per line */
	fns.close = close;
	host.real = &fns;
	host.log = test_log;
	host.keylog_path = keylog;
	cr_assert_eq(ops.abi, ENGINE_ABI);
	cr_assert_eq(ops.init(&host, err, sizeof(err)), 0, "init: %s", err);
}

/* A rule built by hand; the caller fills in options. */
static struct policy_rule *rule_new(unsigned id, enum policy_dir dir)
{
	struct policy_rule *r = keep(calloc(1, sizeof(*r)));

	r->id = id;
	r->dir = dir;
	r->action = POLICY_TLS;
	r->text = keep_str(dir == POLICY_CONNECT ? "connect test" : "accept test");
	r->opt.min_version = POLICY_TLS1_2;
	r->opt.handshake_timeout_ms = POLICY_DEFAULT_HANDSHAKE_TIMEOUT_MS;
	return r;
}

static void rule_alpn(struct policy_rule *r, const char *wire, size_t len)
{
	r->opt.alpn_wire = keep(malloc(len));
	memcpy(r->opt.alpn_wire, wire, len);
	r->opt.alpn_wire_len = len;
	r->opt.alpn = keep_str("test");
}

static void rule_allow(struct policy_rule *r, const char *pat)
{
	if (r->opt.allow == NULL)
		r->opt.allow = keep(calloc(8, sizeof(char *)));
	cr_assert(r->opt.n_allow < 8);
	r->opt.allow[r->opt.n_allow++] = keep_str(pat);
}

/* SHA-256 of the SPKI of the first certificate in FILE. */
static void spki_sha256(const char *file, unsigned char out[32])
{
	FILE *f = fopen(file, "r");
	X509 *x;
	unsigned char *der = NULL;
	unsigned len = 0;
	int n;

	cr_assert(f != NULL, "%s", file);
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	cr_assert(x != NULL);
	n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);
	cr_assert(n > 0);
	cr_assert(EVP_Digest(der, (size_t)n, out, &len, EVP_sha256(), NULL));
	OPENSSL_free(der);
	X509_free(x);
}

/* ---- sockets ---- */

/* When >= 0, tcp_pair() connects here (the same port every time) and keeps it. */
static int shared_listener = -1;

static int tcp_listener(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(l >= 0);
	cr_assert_eq(bind(l, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(listen(l, 4), 0);
	return l;
}

/* A connected loopback TCP pair: *A is the connecting end. Returns the listener's port. */
static uint16_t tcp_pair(int *a, int *b)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	int l = shared_listener >= 0 ? shared_listener : tcp_listener();

	cr_assert_eq(getsockname(l, (struct sockaddr *)&sin, &sl), 0);
	*a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_eq(connect(*a, (struct sockaddr *)&sin, sizeof(sin)), 0);
	*b = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	cr_assert(*b >= 0);
	if (l != shared_listener)
		close(l);
	return ntohs(sin.sin_port);
}

static void set_nonblock(int fd)
{
	cr_assert_eq(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
}

static void wait_fd(int fd, short ev)
{
	struct pollfd p = {.fd = fd, .events = ev};

	cr_assert_eq(poll(&p, 1, IO_TIMEOUT_MS), 1, "timed out waiting for fd %d", fd);
}

/* ---- the peer: plain OpenSSL, blocking, in a thread ---- */

enum peer_action {
	PEER_ECHO,       /* echo until close_notify, then answer it */
	PEER_SEND_CLOSE, /* send "hello" then close_notify, then wait for EOF */
	PEER_SEND_ABORT, /* send "hello" then close TCP without close_notify */
	PEER_SEND_RESET, /* send "hello" then reset the connection */
	PEER_SINK_LATER, /* wait for the gate, then read and check the pattern to close_notify */
	PEER_PLAIN_TEXT, /* not TLS at all: answer with an HTTP error */
};

struct peer {
	int fd;
	int server; /* the peer is the TLS server */
	const char *cert, *key, *ca;
	int verify; /* server: require a client cert; client: verify the server */
	int max_version;
	const unsigned char *alpn; /* wire format */
	unsigned alpn_len;
	const char *sni; /* client peer: SNI to send */
	SSL_CTX *ctx;    /* shared SSL_CTX to use (resumption), else one is made */
	enum peer_action action;
	int gate[2];
	pthread_t thr;
	/* results */
	int hs_ok;
	char err[256];
	char sni_seen[256];
	char alpn_seen[64];
	unsigned char leaf_md[32];
	int resumed;
	unsigned long received;
	int pattern_ok;
	int zero_return;
};

static int peer_alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
			const unsigned char *in, unsigned inlen, void *arg)
{
	struct peer *p = arg;
	unsigned char *o;

	(void)ssl;
	if (SSL_select_next_proto(&o, outlen, p->alpn, p->alpn_len, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	*out = o;
	return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *peer_ctx(struct peer *p)
{
	SSL_CTX *ctx = SSL_CTX_new(p->server ? TLS_server_method() : TLS_client_method());

	if (p->cert != NULL) {
		SSL_CTX_use_certificate_chain_file(ctx, p->cert);
		SSL_CTX_use_PrivateKey_file(ctx, p->key, SSL_FILETYPE_PEM);
	}
	if (p->ca != NULL) {
		SSL_CTX_load_verify_locations(ctx, p->ca, NULL);
		if (p->server)
			SSL_CTX_set_client_CA_list(ctx, SSL_load_client_CA_file(p->ca));
	}
	if (p->verify)
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	if (p->max_version)
		SSL_CTX_set_max_proto_version(ctx, p->max_version);
	if (p->server && p->alpn != NULL)
		SSL_CTX_set_alpn_select_cb(ctx, peer_alpn_cb, p);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"peer", 4);
	return ctx;
}

static void peer_err(struct peer *p, SSL *ssl, int ret)
{
	unsigned long e = ERR_peek_error();

	snprintf(p->err, sizeof(p->err), "ssl error %d: %s", SSL_get_error(ssl, ret),
		 e != 0 ? ERR_reason_error_string(e) : "-");
	ERR_clear_error();
}

static void *peer_main(void *arg)
{
	struct peer *p = arg;
	SSL_CTX *ctx = p->ctx != NULL ? p->ctx : peer_ctx(p);
	SSL *ssl = SSL_new(ctx);
	const unsigned char *alpn;
	unsigned alpn_len;
	char buf[16384];
	int ret;

	if (p->action == PEER_PLAIN_TEXT) {
		ssize_t n = read(p->fd, buf, sizeof(buf));
		const char *resp = "HTTP/1.1 400 Bad Request\r\n\r\n";

		(void)n;
		if (write(p->fd, resp, strlen(resp)) < 0)
			p->err[0] = 'w';
		shutdown(p->fd, SHUT_WR);
		while (read(p->fd, buf, sizeof(buf)) > 0)
			;
		goto out;
	}
	SSL_set_fd(ssl, p->fd);
	if (!p->server) {
		if (p->sni != NULL)
			SSL_set_tlsext_host_name(ssl, p->sni);
		if (p->alpn != NULL)
			SSL_set_alpn_protos(ssl, p->alpn, p->alpn_len);
	}
	ret = p->server ? SSL_accept(ssl) : SSL_connect(ssl);
	if (ret != 1) {
		peer_err(p, ssl, ret);
		goto out;
	}
	p->hs_ok = 1;
	p->resumed = SSL_session_reused(ssl);
	if (SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) != NULL)
		snprintf(p->sni_seen, sizeof(p->sni_seen), "%s",
			 SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
	SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
	snprintf(p->alpn_seen, sizeof(p->alpn_seen), "%.*s", (int)alpn_len, alpn);
	if (SSL_get0_peer_certificate(ssl) != NULL) {
		unsigned l = 0;

		X509_digest(SSL_get0_peer_certificate(ssl), EVP_sha256(), p->leaf_md, &l);
	}
	switch (p->action) {
	case PEER_ECHO:
		for (;;) {
			size_t n;

			ret = SSL_read_ex(ssl, buf, sizeof(buf), &n);
			if (ret != 1)
				break;
			p->received += n;
			SSL_write_ex(ssl, buf, n, &n);
		}
		p->zero_return = SSL_get_error(ssl, ret) == SSL_ERROR_ZERO_RETURN;
		SSL_shutdown(ssl);
		break;
	case PEER_SEND_CLOSE:
		SSL_write(ssl, "hello", 5);
		SSL_shutdown(ssl);
		while (read(p->fd, buf, sizeof(buf)) > 0)
			;
		break;
	case PEER_SEND_ABORT:
		SSL_write(ssl, "hello", 5);
		shutdown(p->fd, SHUT_WR);
		while (read(p->fd, buf, sizeof(buf)) > 0)
			;
		break;
	case PEER_SEND_RESET: {
		struct linger lg = {.l_onoff = 1, .l_linger = 0};

		SSL_write(ssl, "hello", 5);
		usleep(100000);
		setsockopt(p->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(p->fd);
		p->fd = -1;
		break;
	}
	case PEER_SINK_LATER: {
		char c;

		if (read(p->gate[0], &c, 1) != 1)
			break;
		p->pattern_ok = 1;
		for (;;) {
			size_t n, i;

			ret = SSL_read_ex(ssl, buf, sizeof(buf), &n);
			if (ret != 1)
				break;
			for (i = 0; i < n; i++) {
				if ((unsigned char)buf[i] !=
				    (unsigned char)((p->received + i) % 251))
					p->pattern_ok = 0;
			}
			p->received += n;
		}
		p->zero_return = SSL_get_error(ssl, ret) == SSL_ERROR_ZERO_RETURN;
		SSL_shutdown(ssl);
		break;
	}
	default:
		break;
	}
out:
	ERR_clear_error();
	SSL_free(ssl);
	if (p->ctx == NULL)
		SSL_CTX_free(ctx);
	if (p->fd >= 0)
		close(p->fd);
	return NULL;
}

static void peer_start(struct peer *p, int fd)
{
	p->fd = fd;
	cr_assert_eq(pipe(p->gate), 0);
	cr_assert_eq(pthread_create(&p->thr, NULL, peer_main, p), 0);
}

static void peer_join(struct peer *p)
{
	pthread_join(p->thr, NULL);
	close(p->gate[0]);
	close(p->gate[1]);
}

/* ---- the engine side ---- */

struct side {
	struct tsess *s;
	int fd;
	int rc; /* handshake result */
	char err[256];
	uint16_t port;
};

/* Advances the handshake until it completes or fails. */
static int drive_handshake(struct tsess *s, int fd)
{
	for (;;) {
		int r = ops.handshake(s);

		if (r == TS_WANT_READ)
			wait_fd(fd, POLLIN);
		else if (r == TS_WANT_WRITE)
			wait_fd(fd, POLLOUT);
		else
			return r;
	}
}

/*
 * Starts PEER on one end of a new pair and an engine session (ROLE, RULE) on
 * the other, then runs the handshake. PEER_NAME / PEER_ADDR as the caller
 * would pass them.
 */
static void connect_pair(struct side *e, struct peer *peer, enum tls_role role,
			 const struct policy_rule *rule, const char *peer_name)
{
	struct tsess_params p = {
	    .role = role, .rule = rule, .peer_name = peer_name, .peer_addr = "127.0.0.1"};
	int a, b;

	e->port = tcp_pair(&a, &b);
	e->fd = role == TLS_ROLE_CLIENT ? a : b;
	peer->server = role == TLS_ROLE_CLIENT;
	peer_start(peer, role == TLS_ROLE_CLIENT ? b : a);
	set_nonblock(e->fd);
	p.fd = e->fd;
	p.port = e->port;
	e->s = ops.sess_new(&p, e->err, sizeof(e->err));
	cr_assert(e->s != NULL, "sess_new: %s", e->err);
	e->rc = drive_handshake(e->s, e->fd);
}

/* Writes all of BUF. */
static void e_write_all(struct side *e, const void *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = ops.write(e->s, (const char *)buf + off, len - off);

		if (n == TS_WANT_WRITE) {
			wait_fd(e->fd, POLLOUT);
			continue;
		}
		cr_assert(n > 0, "write: %zd (%s)", n, ops.reason(e->s));
		off += (size_t)n;
	}
	while (ops.flush(e->s) == TS_WANT_WRITE)
		wait_fd(e->fd, POLLOUT);
}

/* Reads once (waiting as needed): bytes, or a TS_* code other than WANT_*. */
static ssize_t e_read(struct side *e, void *buf, size_t len)
{
	for (;;) {
		ssize_t n = ops.read(e->s, buf, len, 0);

		if (n == TS_WANT_READ)
			wait_fd(e->fd, POLLIN);
		else if (n == TS_WANT_WRITE)
			wait_fd(e->fd, POLLOUT);
		else
			return n;
	}
}

/*
 * Closes the engine side: close_notify, then the fd and the session. What the
 * peer sent unasked (session tickets) is read first, as the shim's close does
 * (close_like_plain): closing over unread bytes sends a reset, and the reset
 * throws away what the kernel has not sent yet, close_notify included.
 */
static void e_close(struct side *e)
{
	char buf[4096];

	for (int i = 0; i < 64 && ops.read(e->s, buf, sizeof(buf), 0) > 0; i++)
		;
	while (ops.close_notify(e->s) == TS_WANT_WRITE)
		wait_fd(e->fd, POLLOUT);
	ops.sess_free(e->s);
	close(e->fd);
}

static void e_abort(struct side *e)
{
	ops.sess_free(e->s);
	close(e->fd);
}

/* One echo exchange: write MSG, read it back. */
static void echo_once(struct side *e, const char *msg)
{
	char buf[256];
	size_t got = 0, len = strlen(msg);

	e_write_all(e, msg, len);
	while (got < len) {
		ssize_t n = e_read(e, buf + got, sizeof(buf) - got);

		cr_assert(n > 0, "read: %zd (%s)", n, ops.reason(e->s));
		got += (size_t)n;
	}
	cr_assert_eq(got, len);
	cr_assert(memcmp(buf, msg, len) == 0);
}

static struct policy_rule *client_rule(unsigned id)
{
	struct policy_rule *r = rule_new(id, POLICY_CONNECT);

	r->opt.ca = pki("ca.pem");
	return r;
}

static struct policy_rule *server_rule(unsigned id)
{
	struct policy_rule *r = rule_new(id, POLICY_ACCEPT);

	r->opt.cert = pki("server.pem");
	r->opt.key = pki("server.key");
	return r;
}

/* ---- client role ---- */

Test(engine_client, handshake_and_echo)
{
	struct policy_rule *r = client_rule(1);
	struct peer peer = {.cert = pki("server.pem"), .key = pki("server.key")};
	struct side e = {0};
	char d[128];

	engine_up(NULL);
	connect_pair(&e, &peer, TLS_ROLE_CLIENT, r, "localhost");
	cr_assert_eq(e.rc, 0, "handshake: %d (%s)", e.rc, ops.reason(e.s));
	echo_once(&e, "ping");
	ops.describe(e.s, d, sizeof(d));
	cr_assert(strncmp(d, "TLSv1.3 TLS_", 12) == 0, "describe: %s", d);
	cr_assert_null(strstr(d, "resumed"), "describe: %s", d);
	cr_assert_eq(ops.output_pending(e.s), 0);
	e_close(&e);
	peer_join(&peer);
	cr_assert(peer.hs_ok, "peer: %s", peer.err);
	cr_assert_str_eq(peer.sni_seen, "localhost");
	cr_assert(peer.zero_return, "peer did not see close_notify");
}

Test(engine_client, verifies_an_intermediate_chain)
{
	struct policy_rule *r = client_rule(1);
	struct peer peer = {.cert = pki("server-chain.pem"), .key = pki("server.key")};
	struct side e = {0};

	engine_up(NULL);
	connect_pair(&e, &peer, TLS_ROLE_CLIENT, r, "server.test");
	cr_assert_eq(e.rc, 0, "handshake: %d (%s)", e.rc, ops.reason(e.s));
	e_close(&e);
	peer_join(&peer);
}

struct verify_case {
	const char *cert, *key, *name, *reason;
};

Test(engine_client, verification_failures)
{
	static const struct verify_case cases[] = {
	    {"expired.pem", "expired.key", "localhost",
	     "certificate verify failed: certificate has expired"},
	    {"wrongname.pem", "wrongname.key", "localhost",
	     "certificate verify failed: hostname mismatch (wanted localhost)"},
	    {"selfsigned.pem", "selfsigned.key", "localhost",
	     "certificate verify failed: self-signed certificate"},
	    {"other-server.pem", "other-server.key", "localhost",
	     "certificate verify failed: unable to get local issuer certificate"},
	    {"server.pem", "server.key", "nothere.test",
	     "certificate verify failed: hostname mismatch (wanted nothere.test)"},
	};
	size_t i;

	engine_up(NULL);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct verify_case *c = &cases[i];
		struct policy_rule *r = client_rule((unsigned)i + 1);
		struct peer peer = {.cert = pki(c->cert), .key = pki(c->key)};
		struct side e = {0};

		connect_pair(&e, &peer, TLS_ROLE_CLIENT, r, c->name);
		cr_expect_eq(e.rc, TS_FATAL, "%s: handshake %d", c->cert, e.rc);
		cr_expect_str_eq(ops.reason(e.s), c->reason, "%s", c->cert);
		/* A failed session stays failed. */
		cr_expect_eq(ops.write(e.s, "x", 1), TS_FATAL, "%s", c->cert);
		e_close(&e);
		peer_join(&peer);
		cr_expect_eq(peer.hs_ok, 0, "%s: the peer completed", c->cert);
	}
}

Test(engine_client, name_option_overrides_the_verified_name)
{
	struct policy_rule *r = client_rule(1);
	struct peer peer = {.cert = pki("wrongname.pem"), .key = pki("wrongname.key")};
	struct side e = {0};

	engine_up(NULL);
	r->opt.name = keep_str("wrong.test");
	connect_pair(&e, &peer, TLS_ROLE_CLIENT, r, "localhost");
	cr_assert_eq(e.rc, 0, "handshake: %d (%s)", e.rc, ops.reason(e.s));
	e_close(&e);
	peer_join(&peer);
	/* SNI is still the program's name: name= changes only what is verified. */
	cr_assert_str_eq(peer.sni_seen, "localhost");
}

Test(engine_client, sni_option_is_sent_and_verified)
{
	struct policy_rule *r = client_rule(1);
	struct peer peer = {.cert = pki("server.pem"), .key = pki("server.key")};
	struct side e = {0};

	engine_up(NULL);
	r->opt.sni = keep_str("server.test");
	connect_pair(&e, &peer, TLS_ROLE_CLIENT, r, "somewhere.else");
	cr_assert_eq(e.rc, 0, "handshake: %d (%s)", e.rc, ops.reason(e.s));
	e_close(&e);
	peer_join(&peer);
	cr_assert_str_eq(peer.sni_seen, "server.test");
}

Test(engine_client, ip_literal_sends_no_sni_and_verifies_the_address)
{
	struct policy_rule *r = client_rule(1);
	struct peer peer = {.cert = pki("server.pem"), .key = pki("server.key")};
	struct side e = {0};

	engine_up(NULL);
	connect_pair(&e, &peer, TLS_ROLE_CLIENT, r, NULL);
	cr_assert_eq(e.rc, 0, "handshake: %d (%s)", e.rc, ops.reason(e.s));
	e_close(&e);
	peer_join(&peer);
	cr_assert_str_eq(peer.sni_seen, "", "SNI sent for an IP literal: %s", peer.sni_seen);
}

Test(engine_client, ip_literal_mismatch_fails)
{
	struct policy_rule *r = client_rule(1);
	struct peer peer = {.cert = pki("wrongname.pem"), .key = pki("wrongname.key")};
	struct side e = {0};

	engine_up(NULL);
	connect_pair(&e, &peer, TLS_ROLE_CLIENT, r, NULL);
	cr_assert_eq(e.rc, TS_FATAL);
	cr_assert_str_eq(ops.reason(e.s),
			 "certificate verify failed: IP address mismatch (wanted 127.0.0.1)");
	e_abort(&e);
	peer_join(&peer);
}

Test(engine_client, insecure_accepts_a_self_signed_server)
{
	struct policy_rule *r = client_rule(1);
	struct peer peer = {.cert = pki("selfsigned.pem"), .key = pki("selfsigned.key")};
	struct side e = {0};

	engine_up(NULL);
	r->opt.insecure = 1;
	connect_pair(&e, &peer, TLS_ROLE_CLIENT, r, "elsewhere.test");
	cr_assert_eq(e.rc, 0, "handshake: %d (%s)", e.rc, ops.reason(e.s));
	echo_once(&e, "insecure");
	e_close(&e);
	peer_join(&peer);
}

static void pin_case(const char *pin_file, int insecure, const char *cert, const char *key,
		     int want_ok)
{
	struct policy_rule *r = client_rule(1);
	struct peer peer = {.cert = pki(cert), .key = pki(key)};
	struct side e = {0};

	r->opt.pins = keep(calloc(2, sizeof(*r->opt.pins)));
	r->opt.n_pins = 2;
	spki_sha256(pki("client2.pem"), r->opt.pins[0].sha256); /* never in the chain */
	spki_sha256(pki(pin_file), r->opt.pins[1].sha256);
	r->opt.insecure = insecure;
	connect_pair(&e, &peer, TLS_ROLE_CLIENT, r, "localhost");
	if (want_ok) {
		cr_assert_eq(e.rc, 0, "pin %s: %d (%s)", pin_file, e.rc, ops.reason(e.s));
	} else {
		cr_assert_eq(e.rc, TS_FATAL, "pin %s: %d", pin_file, e.rc);
		cr_assert_str_eq(ops.reason(e.s), "certificate pin mismatch");
	}
	e_close(&e);
	peer_join(&peer);
	if (!want_ok)
		cr_assert_eq(peer.hs_ok, 0, "the server finished a handshake the pin refused");
}

Test(engine_client, pin_of_the_leaf_matches)
{
	engine_up(NULL);
	pin_case("server.pem", 0, "server.pem", "server.key", 1);
}

Test(engine_client, pin_of_the_root_matches)
{
	engine_up(NULL);
	pin_case("ca.pem", 0, "server.pem", "server.key", 1);
}

Test(engine_client, pin_mismatch_fails)
{
	engine_up(NULL);
	pin_case("other-ca.pem", 0, "server.pem", "server.key", 0);
}

Test(engine_client, pin_applies_when_insecure)
{
	engine_up(NULL);
	pin_case("selfsigned.pem", 1, "selfsigned.pem", "selfsigned.key", 1);
	pin_case("other-ca.pem", 1, "selfsigned.pem", "selfsigned.key", 0);
}

Test(engine_client, alpn_agrees)
{
	static const char ours[] = "\x02h2\x08http/1.1";
	static const unsigned char theirs[] = "\x08http/1.1";
	struct policy_rule *r = client_rule(1);
	struct peer peer = {.cert = pki("server.pem"),
			    .key = pki("server.key"),
			    .alpn = theirs,
			    .alpn_len = sizeof(theirs) - 1};
	struct side e = {0};
	char d[128];

	engine_up(NULL);
	rule_alpn(r, ours, sizeof(ours) - 1);
	connect_pair(&e, &peer, TLS_ROLE_CLIENT, r, "localhost");
	cr_assert_eq(e.rc, 0, "handshake: %d (%s)", e.rc, ops.reason(e.s));
	ops.describe(e.s, d, sizeof(d));
	cr_assert(strstr(d, " alpn=http/1.1") != NULL, "describe: %s", d);
	e_close(&e);
	peer_join(&peer);
}

Test(engine_client, alpn_mismatch_fails)
{
	static const char ours[] = "\x02h2";
	static const unsigned char theirs[] = "\x08http/1.1";
	struct policy_rule *r = client_rule(1);
	struct peer peer = {.cert = pki("server.pem"),
			    .key = pki("server.key"),
			    .alpn = theirs,
			    .alpn_len = sizeof(theirs) - 1};
	struct side e = {0};

	engine_up(NULL);
	rule_alpn(r, ours, sizeof(ours) - 1);
	connect_pair(&e, &peer, TLS_ROLE_CLIENT, r, "localhost");
	cr_assert_eq(e.rc, TS_FATAL);
	cr_assert_str_eq(ops.reason(e.s), "peer sent alert: no application protocol");
	e_abort(&e);
	peer_join(&peer);
}

Test(engine_client, min_version_1_3_refuses_a_1_2_server)
{
	struct policy_rule *r = client_rule(1);
	struct peer peer = {
	    .cert = pki("server.pem"), .key = pki("server.key"), .max_version = TLS1_2_VERSION};
	struct side e = {0};

	engine_up(NULL);
	r->opt.min_version = POLICY_TLS1_3;
	connect_pair(&e, &peer, TLS_ROLE_CLIENT, r, "localhost");
	cr_assert_eq(e.rc, TS_FATAL);
	cr_assert(strstr(ops.reason(e.s), "unsupported protocol version") != NULL, "reason: %s",
		  ops.reason(e.s));
	e_abort(&e);
	peer_join(&peer);
}

Test(engine_client, tls_1_2_by_default_when_the_server_allows_no_more)
{
	struct policy_rule *r = client_rule(1);
	struct peer peer = {
	    .cert = pki("server.pem"), .key = pki("server.key"), .max_version = TLS1_2_VERSION};
	struct side e = {0};
	char d[128];

	engine_up(NULL);
	connect_pair(&e, &peer, TLS_ROLE_CLIENT, r, "localhost");
	cr_assert_eq(e.rc, 0, "handshake: %d (%s)", e.rc, ops.reason(e.s));
	echo_once(&e, "twelve");
	ops.describe(e.s, d, sizeof(d));
	cr_assert(strncmp(d, "TLSv1.2 ", 8) == 0, "describe: %s", d);
	e_close(&e);
	peer_join(&peer);
}

Test(engine_client, client_certificate_for_a_server_that_requires_one)
{
	struct policy_rule *r = client_rule(1);
	struct peer peer = {
	    .cert = pki("server.pem"), .key = pki("server.key"), .ca = pki("ca.pem"), .verify = 1};
	struct side e = {0};

	engine_up(NULL);
	r->opt.cert = pki("client.pem");
	r->opt.key = pki("client.key");
	connect_pair(&e, &peer, TLS_ROLE_CLIENT, r, "localhost");
	cr_assert_eq(e.rc, 0, "handshake: %d (%s)", e.rc, ops.reason(e.s));
	echo_once(&e, "mtls");
	e_close(&e);
	peer_join(&peer);
	cr_assert(peer.hs_ok, "peer: %s", peer.err);
}

Test(engine_client, peer_not_speaking_tls)
{
	struct policy_rule *r = client_rule(1);
	struct peer peer = {.action = PEER_PLAIN_TEXT};
	struct side e = {0};

	engine_up(NULL);
	connect_pair(&e, &peer, TLS_ROLE_CLIENT, r, "localhost");
	cr_assert_eq(e.rc, TS_FATAL);
	cr_assert_str_eq(ops.reason(e.s), "peer is not speaking TLS (wrong version number)");
	e_abort(&e);
	peer_join(&peer);
}

Test(engine_client, unloadable_rule_fails_sess_new_with_a_reason)
{
	struct policy_rule *r = client_rule(1);
	struct tsess_params p = {.fd = 0,
				 .role = TLS_ROLE_CLIENT,
				 .rule = r,
				 .peer_name = "localhost",
				 .peer_addr = "127.0.0.1",
				 .port = 443};
	char err[256] = "";

	engine_up(NULL);
	r->opt.cert = pki("nonexistent.pem");
	r->opt.key = pki("client.key");
	cr_assert_null(ops.sess_new(&p, err, sizeof(err)));
	cr_assert(strstr(err, "cannot load cert") != NULL, "err: %s", err);
	cr_assert(strstr(err, "nonexistent.pem") != NULL, "err: %s", err);
	cr_assert_eq(ERR_peek_error(), 0ul, "the ERR queue was left non-empty");
}

Test(engine_client, key_that_does_not_match_the_cert)
{
	struct policy_rule *r = server_rule(1);
	struct tsess_params p = {
	    .fd = 0, .role = TLS_ROLE_SERVER, .rule = r, .peer_addr = "127.0.0.1"};
	char err[256] = "";

	engine_up(NULL);
	r->opt.key = pki("client.key");
	cr_assert_null(ops.sess_new(&p, err, sizeof(err)));
	cr_assert(strstr(err, "client.key") != NULL, "err: %s", err);
}

/* ---- reading: how the stream ends ---- */

Test(engine_read, close_notify_is_ts_closed)
{
	struct policy_rule *r = client_rule(1);
	struct peer peer = {
	    .cert = pki("server.pem"), .key = pki("server.key"), .action = PEER_SEND_CLOSE};
	struct side e = {0};
	char buf[16];

	engine_up(NULL);
	connect_pair(&e, &peer, TLS_ROLE_CLIENT, r, "localhost");
	cr_assert_eq(e.rc, 0, "handshake: %s", ops.reason(e.s));
	cr_assert_eq(e_read(&e, buf, 2), 2);
	cr_assert_eq(ops.pending(e.s), 3u);
	cr_assert(ops.buffered_input(e.s));
	cr_assert_eq(ops.read(e.s, buf, sizeof(buf), 1), 3, "peek");
	cr_assert_eq(ops.read(e.s, buf, sizeof(buf), 0), 3);
	cr_assert(memcmp(buf, "llo", 3) == 0);
	cr_assert_eq(e_read(&e, buf, sizeof(buf)), TS_CLOSED);
	cr_assert_eq(ops.read(e.s, buf, sizeof(buf), 0), TS_CLOSED, "stays closed");
	e_close(&e);
	peer_join(&peer);
}

Test(engine_read, tcp_eof_without_close_notify_is_ts_eof)
{
	struct policy_rule *r = client_rule(1);
	struct peer peer = {
	    .cert = pki("server.pem"), .key = pki("server.key"), .action = PEER_SEND_ABORT};
	struct side e = {0};
	char buf[16];

	engine_up(NULL);
	connect_pair(&e, &peer, TLS_ROLE_CLIENT, r, "localhost");
	cr_assert_eq(e.rc, 0, "handshake: %s", ops.reason(e.s));
	cr_assert_eq(e_read(&e, buf, sizeof(buf)), 5);
	cr_assert_eq(e_read(&e, buf, sizeof(buf)), TS_EOF);
	e_abort(&e);
	peer_join(&peer);
}

Test(engine_read, reset_is_syserr_econnreset)
{
	struct policy_rule *r = client_rule(1);
	struct peer peer = {
	    .cert = pki("server.pem"), .key = pki("server.key"), .action = PEER_SEND_RESET};
	struct side e = {0};
	char buf[16];
	ssize_t n;

	engine_up(NULL);
	connect_pair(&e, &peer, TLS_ROLE_CLIENT, r, "localhost");
	cr_assert_eq(e.rc, 0, "handshake: %s", ops.reason(e.s));
	peer_join(&peer); /* the reset has happened */
	n = e_read(&e, buf, sizeof(buf));
	if (n == 5)
		n = e_read(&e, buf, sizeof(buf));
	cr_assert_eq(n, TS_SYSERR, "read: %zd", n);
	cr_assert_eq(ops.sys_errno(e.s), ECONNRESET);
	cr_assert_eq(ERR_peek_error(), 0ul);
	e_abort(&e);
}

/* ---- writing ---- */

Test(engine_write, partial_writes_are_committed_and_flushed_in_order)
{
	struct policy_rule *r = client_rule(1);
	struct peer peer = {
	    .cert = pki("server.pem"), .key = pki("server.key"), .action = PEER_SINK_LATER};
	struct side e = {0};
	static unsigned char buf[65536];
	unsigned long total = 0;
	int small = 4096, blocked = 0, refused = 0;
	size_t i;
	ssize_t n;

	engine_up(NULL);
	connect_pair(&e, &peer, TLS_ROLE_CLIENT, r, "localhost");
	cr_assert_eq(e.rc, 0, "handshake: %s", ops.reason(e.s));
	setsockopt(e.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	/*
	 * Fill the socket while the peer does not read, until a write is refused
	 * after the connection stood still: then nothing can make room.
	 */
	while (!blocked) {
		int still = tcp_standing_still(e.fd);

		for (i = 0; i < sizeof(buf); i++)
			buf[i] = (unsigned char)((total + i) % 251);
		n = ops.write(e.s, buf, sizeof(buf));
		if (n == TS_WANT_WRITE) {
			blocked = still;
			cr_assert(++refused < 10000, "the connection never stood still");
			if (!blocked)
				poll(&(struct pollfd){.fd = e.fd, .events = POLLOUT}, 1, 10);
			continue;
		}
		cr_assert(n > 0 && n <= 16384, "write: %zd", n);
		total += (unsigned long)n;
		cr_assert(total < 64ul << 20, "the socket never filled");
	}
	cr_assert(total > 0);
	cr_assert(ops.output_pending(e.s), "TS_WANT_WRITE without pending output");
	/* Nothing is accepted while earlier ciphertext is unsent. */
	cr_assert_eq(ops.write(e.s, buf, sizeof(buf)), TS_WANT_WRITE);
	cr_assert_eq(ops.flush(e.s), TS_WANT_WRITE);
	/* Let the peer read, then flush and finish. */
	cr_assert_eq(write(peer.gate[1], "g", 1), 1);
	while ((n = ops.flush(e.s)) == TS_WANT_WRITE)
		wait_fd(e.fd, POLLOUT);
	cr_assert_eq(n, 0);
	cr_assert_eq(ops.output_pending(e.s), 0);
	e_close(&e);
	peer_join(&peer);
	cr_assert_eq(peer.received, total, "peer got %lu of %lu", peer.received, total);
	cr_assert(peer.pattern_ok, "bytes arrived out of order");
	cr_assert(peer.zero_return);
}

Test(engine_write, zero_length_write_is_zero)
{
	struct policy_rule *r = client_rule(1);
	struct peer peer = {.cert = pki("server.pem"), .key = pki("server.key")};
	struct side e = {0};
	char c;

	engine_up(NULL);
	connect_pair(&e, &peer, TLS_ROLE_CLIENT, r, "localhost");
	cr_assert_eq(e.rc, 0);
	cr_assert_eq(ops.write(e.s, "", 0), 0);
	cr_assert_eq(ops.read(e.s, &c, 0, 0), 0);
	e_close(&e);
	peer_join(&peer);
}

/* ---- server role ---- */

Test(engine_server, handshake_and_echo)
{
	struct policy_rule *r = server_rule(1);
	struct peer peer = {
	    .ca = pki("ca.pem"), .verify = 1, .sni = "localhost", .action = PEER_SINK_LATER};
	struct side e = {0};
	static unsigned char buf[1000];
	size_t i;

	engine_up(NULL);
	connect_pair(&e, &peer, TLS_ROLE_SERVER, r, NULL);
	cr_assert_eq(e.rc, 0, "handshake: %d (%s)", e.rc, ops.reason(e.s));
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i % 251);
	e_write_all(&e, buf, sizeof(buf));
	cr_assert_eq(write(peer.gate[1], "g", 1), 1);
	e_close(&e);
	peer_join(&peer);
	cr_assert(peer.hs_ok, "peer: %s", peer.err);
	cr_assert_eq(peer.received, sizeof(buf));
	cr_assert(peer.pattern_ok);
}

Test(engine_server, alpn_picks_the_first_of_ours_the_client_offers)
{
	static const char ours[] = "\x08http/1.1\x02h2";
	static const unsigned char theirs[] = "\x02h2\x08http/1.1";
	struct policy_rule *r = server_rule(1);
	struct peer peer = {.ca = pki("ca.pem"), .alpn = theirs, .alpn_len = sizeof(theirs) - 1};
	struct side e = {0};

	engine_up(NULL);
	rule_alpn(r, ours, sizeof(ours) - 1);
	connect_pair(&e, &peer, TLS_ROLE_SERVER, r, NULL);
	cr_assert_eq(e.rc, 0, "handshake: %d (%s)", e.rc, ops.reason(e.s));
	e_close(&e);
	peer_join(&peer);
	cr_assert_str_eq(peer.alpn_seen, "http/1.1");
}

Test(engine_server, alpn_without_overlap_fails)
{
	static const char ours[] = "\x02h2";
	static const unsigned char theirs[] = "\x08http/1.1";
	struct policy_rule *r = server_rule(1);
	struct peer peer = {.ca = pki("ca.pem"), .alpn = theirs, .alpn_len = sizeof(theirs) - 1};
	struct side e = {0};

	engine_up(NULL);
	rule_alpn(r, ours, sizeof(ours) - 1);
	connect_pair(&e, &peer, TLS_ROLE_SERVER, r, NULL);
	cr_assert_eq(e.rc, TS_FATAL);
	cr_assert_str_eq(ops.reason(e.s), "no common application protocol (ALPN)");
	cr_assert_eq(ops.peer_progress(e.s), TS_PEER_SPOKE,
		     "a client whose ClientHello arrived has spoken");
	e_abort(&e);
	peer_join(&peer);
	cr_assert_eq(peer.hs_ok, 0);
	cr_assert(strstr(peer.err, "no application protocol") != NULL, "peer: %s", peer.err);
}

/*
 * How far a client got before the handshake failed: the shim logs a client
 * that sent nothing at debug, one that sent part of a handshake or bytes that
 * are not TLS at info, and a failure after its ClientHello at warn.
 */
Test(engine_server, peer_progress_says_how_far_the_client_got)
{
	static const struct {
		const char *what;
		const char *bytes;
		size_t len;
		int rc, progress;
	} cases[] = {
	    {"nothing, then close", "", 0, TS_EOF, TS_PEER_SILENT},
	    {"half a record header, then close", "\x16\x03", 2, TS_EOF, TS_PEER_PARTIAL},
	    {"a record header, then close", "\x16\x03\x01\x00\x80", 5, TS_EOF, TS_PEER_PARTIAL},
	    {"an HTTP request", "GET / HTTP/1.0\r\n\r\n", 18, TS_FATAL, TS_PEER_PARTIAL},
	};
	struct policy_rule *r = server_rule(1);

	engine_up(NULL);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tsess_params p = {
		    .role = TLS_ROLE_SERVER, .rule = r, .peer_addr = "127.0.0.1"};
		char err[256];
		struct tsess *s;
		int a, b, rc;

		p.port = tcp_pair(&a, &b);
		set_nonblock(b);
		p.fd = b;
		s = ops.sess_new(&p, err, sizeof(err));
		cr_assert(s != NULL, "sess_new: %s", err);
		cr_assert_eq(ops.peer_progress(s), TS_PEER_SILENT, "%s: before any I/O",
			     cases[i].what);
		if (cases[i].len > 0)
			cr_assert_eq(write(a, cases[i].bytes, cases[i].len), (ssize_t)cases[i].len);
		close(a);
		rc = drive_handshake(s, b);
		cr_assert_eq(rc, cases[i].rc, "%s: handshake gave %d (%s), expected %d",
			     cases[i].what, rc, ops.reason(s), cases[i].rc);
		cr_assert_eq(ops.peer_progress(s), cases[i].progress,
			     "%s: peer_progress %d, expected %d", cases[i].what,
			     ops.peer_progress(s), cases[i].progress);
		ops.sess_free(s);
		close(b);
	}
}

Test(engine_server, client_without_alpn_is_fine)
{
	static const char ours[] = "\x02h2";
	struct policy_rule *r = server_rule(1);
	struct peer peer = {.ca = pki("ca.pem")};
	struct side e = {0};

	engine_up(NULL);
	rule_alpn(r, ours, sizeof(ours) - 1);
	connect_pair(&e, &peer, TLS_ROLE_SERVER, r, NULL);
	cr_assert_eq(e.rc, 0, "handshake: %d (%s)", e.rc, ops.reason(e.s));
	e_close(&e);
	peer_join(&peer);
}

struct mtls_case {
	const char *allow;      /* NULL: no allow= */
	const char *cert, *key; /* client's; NULL: none */
	const char *reason;     /* NULL: accepted */
};

Test(engine_server, mutual_tls_and_allow_patterns)
{
	static const struct mtls_case cases[] = {
	    {NULL, "client.pem", "client.key", NULL},
	    {"cn:client.test", "client.pem", "client.key", NULL},
	    {"cn:*.test", "client2.pem", "client2.key", NULL},
	    {"dns:*.test", "client.pem", "client.key", NULL},
	    {"dns:CLIENT.TEST", "client.pem", "client.key", NULL},
	    {"uri:spiffe://example.org/ns/*/sa/web", "client.pem", "client.key", NULL},
	    {"uri:spiffe://example.org/ns/*/sa/web", "client2.pem", "client2.key",
	     "client certificate not allowed: cn:other.test dns:other.test "
	     "uri:spiffe://example.org/ns/default/sa/db"},
	    {"uri:spiffe://example.org/*/web", "client.pem", "client.key",
	     "client certificate not allowed: "},
	    {"dns:*.client.test", "client.pem", "client.key", "client certificate not allowed: "},
	    {"cn:client.test", NULL, NULL, "client did not send a certificate"},
	    {NULL, "other-client.pem", "other-client.key",
	     "client certificate verify failed: unable to get local issuer certificate"},
	};
	size_t i;

	engine_up(NULL);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct mtls_case *c = &cases[i];
		struct policy_rule *r = server_rule((unsigned)i + 1);
		struct peer peer = {.ca = pki("ca.pem")};
		struct side e = {0};

		r->opt.client_ca = pki("ca.pem");
		if (c->allow != NULL)
			rule_allow(r, c->allow);
		if (c->cert != NULL) {
			peer.cert = pki(c->cert);
			peer.key = pki(c->key);
		}
		connect_pair(&e, &peer, TLS_ROLE_SERVER, r, NULL);
		if (c->reason == NULL) {
			cr_expect_eq(e.rc, 0, "%s %s: %d (%s)", c->allow, c->cert, e.rc,
				     ops.reason(e.s));
		} else {
			cr_expect_eq(e.rc, TS_FATAL, "%s %s: %d", c->allow, c->cert, e.rc);
			cr_expect(strncmp(ops.reason(e.s), c->reason, strlen(c->reason)) == 0,
				  "%s %s: reason %s", c->allow, c->cert, ops.reason(e.s));
		}
		if (e.rc == 0)
			e_close(&e);
		else
			e_abort(&e);
		peer_join(&peer);
	}
}

/* ---- session resumption ---- */

Test(engine_client, second_session_is_resumed)
{
	struct policy_rule *r = client_rule(1);
	struct peer proto = {.server = 1, .cert = pki("server.pem"), .key = pki("server.key")};
	SSL_CTX *shared = peer_ctx(&proto);
	int round;

	engine_up(NULL);
	/* The cache key is (rule, peer, port): every round connects to the same port. */
	shared_listener = tcp_listener();
	for (round = 0; round < 3; round++) {
		struct peer peer = {.cert = proto.cert, .key = proto.key, .ctx = shared};
		struct side e = {0};
		char d[128];

		connect_pair(&e, &peer, TLS_ROLE_CLIENT, r, "localhost");
		cr_assert_eq(e.rc, 0, "round %d: %s", round, ops.reason(e.s));
		/* Reading processes the TLS 1.3 tickets the server sent after its handshake. */
		echo_once(&e, "resume");
		ops.describe(e.s, d, sizeof(d));
		if (round == 0)
			cr_assert_null(strstr(d, "resumed"), "round %d: %s", round, d);
		else
			cr_assert(strstr(d, " resumed") != NULL, "round %d: %s", round, d);
		e_close(&e);
		peer_join(&peer);
		cr_assert_eq(peer.resumed, round > 0);
	}
	SSL_CTX_free(shared);
}

static void copy_file(const char *from, const char *to, size_t limit);

Test(engine_server, resumes_with_tickets_across_rotation, .timeout = 20)
{
	char dir[] = "/tmp/tlsshim-rst.XXXXXX", cert[PATH_MAX], key[PATH_MAX];
	struct policy_rule *r = server_rule(1);
	SSL_SESSION *sess = NULL;
	int round;

	engine_up(NULL);
	cr_assert(mkdtemp(dir) != NULL);
	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(key, sizeof(key), "%s/key.pem", dir);
	copy_file(pki("server.pem"), cert, SIZE_MAX);
	copy_file(pki("server.key"), key, SIZE_MAX);
	r->opt.cert = cert;
	r->opt.key = key;
	for (round = 0; round < 3; round++) {
		int a, b, ok;
		struct tsess_params p = {
		    .role = TLS_ROLE_SERVER, .rule = r, .peer_addr = "127.0.0.1"};
		struct side e = {0};
		SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
		SSL *ssl = SSL_new(cctx);
		char buf[8];

		if (round == 2) {
			/* A new certificate and key: tickets issued before still resume. */
			copy_file(pki("server-chain.pem"), cert, SIZE_MAX);
			usleep(1100 * 1000);
		}
		e.port = tcp_pair(&a, &b);
		e.fd = b;
		set_nonblock(b);
		set_nonblock(a);
		p.fd = b;
		e.s = ops.sess_new(&p, e.err, sizeof(e.err));
		cr_assert(e.s != NULL, "%s", e.err);
		SSL_set_fd(ssl, a);
		if (sess != NULL)
			SSL_set_session(ssl, sess);
		/* Both ends non-blocking in this thread: alternate until both finish. */
		for (ok = 0; ok < 2000; ok++) {
			int c = SSL_connect(ssl), s = ops.handshake(e.s);

			if (c == 1 && s == 0)
				break;
			usleep(1000);
		}
		cr_assert_eq(ops.handshake(e.s), 0, "%s", ops.reason(e.s));
		e_write_all(&e, "x", 1);
		for (ok = 0; ok < 2000 && SSL_read(ssl, buf, 1) != 1; ok++)
			usleep(1000);
		cr_assert_eq(SSL_session_reused(ssl), round > 0, "round %d", round);
		if (sess == NULL)
			sess = SSL_get1_session(ssl);
		/* A session not shut down properly is not resumable. */
		SSL_shutdown(ssl);
		ERR_clear_error();
		SSL_free(ssl);
		SSL_CTX_free(cctx);
		e_abort(&e);
		close(a);
	}
	cr_assert(logged("certificates reloaded"), "log: %s", log_buf);
	SSL_SESSION_free(sess);
	unlink(cert);
	unlink(key);
	rmdir(dir);
}

struct many_arg {
	const struct policy_rule *r;
	int failures;
};

static void *many_sessions(void *arg)
{
	struct many_arg *m = arg;
	int i;

	for (i = 0; i < 50; i++) {
		struct tsess_params p = {.fd = 0,
					 .role = TLS_ROLE_CLIENT,
					 .rule = m->r,
					 .peer_name = "localhost",
					 .peer_addr = "127.0.0.1",
					 .port = 443};
		char err[256];
		struct tsess *s = ops.sess_new(&p, err, sizeof(err));

		if (s == NULL)
			m->failures++;
		else
			ops.sess_free(s);
	}
	return NULL;
}

Test(engine_client, sess_new_from_many_threads)
{
	struct policy_rule *r = client_rule(1);
	struct many_arg args[8];
	pthread_t t[8];
	int i;

	engine_up(NULL);
	for (i = 0; i < 8; i++) {
		args[i] = (struct many_arg){.r = r};
		cr_assert_eq(pthread_create(&t[i], NULL, many_sessions, &args[i]), 0);
	}
	for (i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(args[i].failures, 0);
	}
}

/* ---- key log ---- */

Test(engine_client, keylog_gets_nss_lines)
{
	char path[] = "/tmp/tlsshim-keylog.XXXXXX";
	struct policy_rule *r = client_rule(1);
	struct peer peer = {.cert = pki("server.pem"), .key = pki("server.key")};
	struct side e = {0};
	char buf[8192] = "";
	struct stat st;
	int fd = mkstemp(path);

	cr_assert(fd >= 0);
	close(fd);
	unlink(path);
	engine_up(path);
	connect_pair(&e, &peer, TLS_ROLE_CLIENT, r, "localhost");
	cr_assert_eq(e.rc, 0);
	e_close(&e);
	peer_join(&peer);
	fd = open(path, O_RDONLY);
	cr_assert(fd >= 0);
	cr_assert(read(fd, buf, sizeof(buf) - 1) > 0);
	cr_assert_eq(fstat(fd, &st), 0);
	close(fd);
	unlink(path);
	cr_assert_eq(st.st_mode & 0777, 0600);
	cr_assert(strstr(buf, "CLIENT_HANDSHAKE_TRAFFIC_SECRET ") != NULL, "keylog: %s", buf);
	cr_assert(strstr(buf, "CLIENT_TRAFFIC_SECRET_0 ") != NULL, "keylog: %s", buf);
}

/* ---- certificate rotation ---- */

static void copy_file(const char *from, const char *to, size_t limit)
{
	char tmp[PATH_MAX], buf[16384];
	FILE *in = fopen(from, "r"), *out;
	size_t n;

	snprintf(tmp, sizeof(tmp), "%s.tmp", to);
	out = fopen(tmp, "w");
	cr_assert(in != NULL && out != NULL);
	n = fread(buf, 1, sizeof(buf), in);
	fwrite(buf, 1, n < limit ? n : limit, out);
	fclose(in);
	fclose(out);
	/* rename(): a new inode, as editors and cert managers do it. */
	cr_assert_eq(rename(tmp, to), 0);
}

static void leaf_digest(const char *file, unsigned char md[32])
{
	FILE *f = fopen(file, "r");
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	unsigned l = 0;

	fclose(f);
	cr_assert(x != NULL);
	X509_digest(x, EVP_sha256(), md, &l);
	X509_free(x);
}

/* Runs one handshake against RULE's server and returns the leaf the client saw. */
static void serve_once(struct policy_rule *r, unsigned char md[32])
{
	struct peer peer = {0};
	struct side e = {0};

	connect_pair(&e, &peer, TLS_ROLE_SERVER, r, NULL);
	cr_assert_eq(e.rc, 0, "handshake: %d (%s)", e.rc, ops.reason(e.s));
	e_close(&e);
	peer_join(&peer);
	memcpy(md, peer.leaf_md, 32);
}

Test(engine_server, rotation_picks_up_new_files_and_keeps_the_last_good, .timeout = 20)
{
	char dir[] = "/tmp/tlsshim-rot.XXXXXX", cert[PATH_MAX], key[PATH_MAX];
	unsigned char seen[32], want[32];
	struct policy_rule *r = server_rule(1);
	struct side live = {0};
	struct peer live_peer = {.action = PEER_ECHO};

	engine_up(NULL);
	cr_assert(mkdtemp(dir) != NULL);
	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(key, sizeof(key), "%s/key.pem", dir);
	copy_file(pki("server.pem"), cert, SIZE_MAX);
	copy_file(pki("server.key"), key, SIZE_MAX);
	r->opt.cert = cert;
	r->opt.key = key;

	serve_once(r, seen);
	leaf_digest(pki("server.pem"), want);
	cr_assert(memcmp(seen, want, 32) == 0, "first cert");
	/* A session that lives across the rotation keeps working. */
	connect_pair(&live, &live_peer, TLS_ROLE_SERVER, r, NULL);
	cr_assert_eq(live.rc, 0);

	copy_file(pki("wrongname.pem"), cert, SIZE_MAX);
	copy_file(pki("wrongname.key"), key, SIZE_MAX);
	usleep(1100 * 1000);
	serve_once(r, seen);
	leaf_digest(pki("wrongname.pem"), want);
	cr_assert(memcmp(seen, want, 32) == 0, "the new cert was not picked up");
	cr_assert(logged("certificates reloaded"), "log: %s", log_buf);

	/* Half-written: the last good certificate stays, and one warning says why. */
	copy_file(pki("server.pem"), cert, 200);
	usleep(1100 * 1000);
	serve_once(r, seen);
	cr_assert(memcmp(seen, want, 32) == 0, "a broken file replaced the good cert");
	cr_assert(logged("keeping the previous certificates"), "log: %s", log_buf);
	cr_assert(logged(cert), "log: %s", log_buf);

	/* One warning per change, not one per session. */
	usleep(1100 * 1000);
	serve_once(r, seen);
	cr_assert_eq(count_logged("keeping the previous certificates"), 1, "log: %s", log_buf);

	echo_once(&live, "still here");
	e_close(&live);
	peer_join(&live_peer);
	unlink(cert);
	unlink(key);
	rmdir(dir);
}
