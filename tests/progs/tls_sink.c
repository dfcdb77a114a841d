/*
 * tls_sink - a native OpenSSL TLS server for the end-to-end tests: the peer
 * the shim's client side talks to, independent of the shim's own engine.
 *
 *   tls_sink [-C CA] [-M 1.2|1.3] [-m 1.2|1.3] [-a ALPN] [-e] [-n CONNS] [-x] PORT CERT KEY
 *
 *   -C CA    require a client certificate issued under CA
 *   -M / -m  highest / lowest TLS version offered
 *   -a ALPN  accept this ALPN protocol (and report what was negotiated)
 *   -e       echo what arrives instead of replying with its digest at EOF
 *   -n N     exit after N connections
 *   -x       close the TCP connection without sending close_notify
 *
 * Listens on 127.0.0.1:PORT and serves one connection at a time. For each it
 * prints (line-buffered, on stdout):
 *   conn N: handshake failed: REASON
 *   conn N: handshake ok: version=V sni=NAME|- resumed=yes|no alpn=P|- peer=CN|-
 *   conn N: received BYTES bytes sha256=HEX end=close_notify|eof|error
 * and, unless -e, replies "HEX\n" (the SHA-256 of everything received) once
 * the client has finished sending, then sends close_notify (unless -x).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *alpn_want;
static int no_close_notify;

static int version_of(const char *s)
{
	if (strcmp(s, "1.2") == 0)
		return TLS1_2_VERSION;
	if (strcmp(s, "1.3") == 0)
		return TLS1_3_VERSION;
	fprintf(stderr, "tls_sink: bad version %s\n", s);
	exit(2);
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	size_t wl = strlen(alpn_want);

	(void)ssl;
	(void)arg;
	for (unsigned int i = 0; i < inlen; i += 1u + in[i]) {
		if (in[i] == wl && i + 1 + wl <= inlen && memcmp(in + i + 1, alpn_want, wl) == 0) {
			*out = in + i + 1;
			*outlen = in[i];
			return SSL_TLSEXT_ERR_OK;
		}
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static void reason(char *buf, size_t len)
{
	unsigned long e, last = 0;

	while ((e = ERR_get_error()) != 0)
		last = e;
	if (last)
		ERR_error_string_n(last, buf, len);
	else
		snprintf(buf, len, "%s", errno ? strerror(errno) : "connection closed");
}

static void serve(SSL_CTX *ctx, int c, int id, int echo)
{
	unsigned char md[32], buf[65536];
	char why[256], hex[65], cn[256] = "-";
	const unsigned char *alpn = NULL;
	unsigned int alpn_len = 0;
	unsigned long long total = 0;
	const char *sni, *end = "eof";
	EVP_MD_CTX *mdctx;
	X509 *peer;
	SSL *ssl = SSL_new(ctx);

	SSL_set_fd(ssl, c);
	errno = 0;
	if (SSL_accept(ssl) != 1) {
		reason(why, sizeof(why));
		printf("conn %d: handshake failed: %s\n", id, why);
		SSL_free(ssl);
		return;
	}
	sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
	peer = SSL_get1_peer_certificate(ssl);
	if (peer) {
		X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn,
					  sizeof(cn));
		X509_free(peer);
	}
	printf("conn %d: handshake ok: version=%s sni=%s resumed=%s alpn=%.*s peer=%s\n", id,
	       SSL_get_version(ssl), sni ? sni : "-", SSL_session_reused(ssl) ? "yes" : "no",
	       alpn_len ? (int)alpn_len : 1, alpn_len ? (const char *)alpn : "-", cn);
	mdctx = EVP_MD_CTX_new();
	EVP_DigestInit_ex(mdctx, EVP_sha256(), NULL);
	for (;;) {
		int n = SSL_read(ssl, buf, sizeof(buf));

		if (n <= 0) {
			int err = SSL_get_error(ssl, n);

			end = err == SSL_ERROR_ZERO_RETURN                        ? "close_notify"
			      : err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 ? "eof"
										  : "error";
			if (strcmp(end, "error") == 0) {
				reason(why, sizeof(why));
				printf("conn %d: read failed: %s\n", id, why);
			}
			ERR_clear_error();
			break;
		}
		EVP_DigestUpdate(mdctx, buf, (size_t)n);
		total += (unsigned long long)n;
		if (echo && SSL_write(ssl, buf, n) != n)
			break;
	}
	EVP_DigestFinal_ex(mdctx, md, NULL);
	EVP_MD_CTX_free(mdctx);
	for (int i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", md[i]);
	printf("conn %d: received %llu bytes sha256=%s end=%s\n", id, total, hex, end);
	if (!echo && strcmp(end, "error") != 0) {
		hex[64] = '\n';
		SSL_write(ssl, hex, 65);
	}
	if (!no_close_notify)
		SSL_shutdown(ssl);
	SSL_free(ssl);
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	const char *ca = NULL;
	int opt, lfd, one = 1, echo = 0, max_conns = -1, minv = 0, maxv = 0;
	SSL_CTX *ctx;

	while ((opt = getopt(argc, argv, "C:M:m:a:en:x")) != -1) {
		switch (opt) {
		case 'C':
			ca = optarg;
			break;
		case 'M':
			maxv = version_of(optarg);
			break;
		case 'm':
			minv = version_of(optarg);
			break;
		case 'a':
			alpn_want = optarg;
			break;
		case 'e':
			echo = 1;
			break;
		case 'n':
			max_conns = atoi(optarg);
			break;
		case 'x':
			no_close_notify = 1;
			break;
		default:
			fprintf(stderr, "usage: tls_sink [-C CA] [-M V] [-m V] [-a ALPN] [-e] [-x] "
					"[-n CONNS] [-x] PORT CERT KEY\n");
			return 2;
		}
	}
	if (argc - optind != 3) {
		fprintf(stderr, "usage: tls_sink [options] PORT CERT KEY\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, argv[optind + 1]) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, argv[optind + 2], SSL_FILETYPE_PEM) != 1) {
		ERR_print_errors_fp(stderr);
		return 1;
	}
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"tls_sink", 8);
	if (minv)
		SSL_CTX_set_min_proto_version(ctx, minv);
	if (maxv)
		SSL_CTX_set_max_proto_version(ctx, maxv);
	if (alpn_want)
		SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	if (ca) {
		if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
			ERR_print_errors_fp(stderr);
			return 1;
		}
		SSL_CTX_set_client_CA_list(ctx, SSL_load_client_CA_file(ca));
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	}
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	a.sin_port = htons(atoi(argv[optind]));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(lfd, 16) != 0) {
		perror("bind/listen");
		return 1;
	}
	printf("listening %s\n", argv[optind]);
	for (int id = 1; max_conns < 0 || id <= max_conns; id++) {
		struct timeval tv = {.tv_sec = 20};
		int c = accept(lfd, NULL, NULL);

		if (c < 0) {
			id--;
			continue;
		}
		/* A stuck peer can't hold the sink forever. */
		setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		serve(ctx, c, id, echo);
		close(c);
	}
	SSL_CTX_free(ctx);
	return 0;
}
