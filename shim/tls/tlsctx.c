/*
 * tlsctx.c - building one SSL_CTX for a rule and role with tlsshim's secure
 * defaults: the trust anchors, our certificate and key, the client's session
 * callback, the server's session cache, tickets and ALPN. Which SSL_CTX a
 * session gets, and its rebuild when the files change, is tlsctx_reload.c;
 * the client session cache is tlsctx_scache.c.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>

#include "tls_int.h"

#define SERVER_CACHE_SIZE 256 /* TLS 1.2 session-id resumption; tickets need no state */
#define TICKET_KEYS_LEN   80  /* OpenSSL 3: 16 name + 32 HMAC + 32 AES key bytes */

/*
 * TLS 1.2 suites unless the rule says ciphers=: forward secrecy (ECDHE) and
 * AEAD only, Mozilla's "intermediate" list without DHE. OpenSSL's own default
 * still offers static-RSA key exchange and CBC with SHA-1. TLS 1.3 keeps
 * OpenSSL's suites (all AEAD, all forward-secret).
 */
#define TLS12_DEFAULT_CIPHERS                                        \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* Formats "WHAT PATH: <OpenSSL's reason>" into ERR and empties the ERR queue. */
static void ssl_fail(char *err, size_t errlen, const char *what, const char *path)
{
	unsigned long e = ERR_peek_last_error();
	const char *why = ERR_reason_error_string(e);

	if (ERR_GET_LIB(e) == ERR_LIB_SYS && ERR_GET_REASON(e) > 0)
		why = strerror(ERR_GET_REASON(e));
	snprintf(err, errlen, "%s%s%s: %s", what, path != NULL ? " " : "", path != NULL ? path : "",
		 why != NULL ? why : "unknown error");
	ERR_clear_error();
}

/*
 * The secure defaults, all in one place: TLS 1.2 or later (min-version=1.3
 * raises it), no renegotiation, no compression (CRIME), peer verification on
 * the client, buffers released while idle, ECDHE+AEAD suites for TLS 1.2
 * and OpenSSL's TLS 1.3 suites unless the rule names its own. Unexpected EOF stays an error so that
 * a truncation attack is seen (RFC 8446 section 6.1). Returns 0 or -1 with ERR.
 */
static int ctx_defaults(SSL_CTX *ctx, const struct policy_rule *r, enum tls_role role, char *err,
			size_t errlen)
{
	const struct policy_opts *o = &r->opt;
	int minv = o->min_version == POLICY_TLS1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;

	if (!SSL_CTX_set_min_proto_version(ctx, minv)) {
		ssl_fail(err, errlen, "cannot set min-version", NULL);
		return -1;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	/* A server picks from its own (strong-first) list, not the client's order. */
	if (role == TLS_ROLE_SERVER)
		SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_clear_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/*
	 * Read-ahead: one recv() takes every record the kernel has, instead of two
	 * syscalls (header, body) per record. The caller's readiness checks look at
	 * SSL_has_pending() for the bytes this leaves buffered.
	 */
	SSL_CTX_set_read_ahead(ctx, 1);
	if (!SSL_CTX_set_cipher_list(ctx,
				     o->ciphers != NULL ? o->ciphers : TLS12_DEFAULT_CIPHERS)) {
		ssl_fail(err, errlen, "invalid ciphers", o->ciphers);
		return -1;
	}
	if (o->ciphersuites != NULL && !SSL_CTX_set_ciphersuites(ctx, o->ciphersuites)) {
		ssl_fail(err, errlen, "invalid ciphersuites", o->ciphersuites);
		return -1;
	}
	/* Pins and allow= are checked in the verify callback: failure aborts the handshake. */
	SSL_CTX_set_cert_verify_callback(ctx, tls_verify_cb, NULL);
	if (role == TLS_ROLE_CLIENT)
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	else if (o->client_ca != NULL || o->n_allow > 0)
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	else
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (keylog_enabled())
		SSL_CTX_set_keylog_callback(ctx, keylog_cb);
	return 0;
}

/* Adds the file or directory PATH to CTX's trust anchors. Returns 0 or -1 with ERR. */
static int load_trust(SSL_CTX *ctx, const char *what, const char *path, char *err, size_t errlen)
{
	struct stat st;
	int ok;

	if (stat(path, &st) != 0) {
		snprintf(err, errlen, "cannot load %s %s: %s", what, path, strerror(errno));
		return -1;
	}
	if (S_ISDIR(st.st_mode))
		ok = SSL_CTX_load_verify_dir(ctx, path);
	else
		ok = SSL_CTX_load_verify_file(ctx, path);
	if (!ok) {
		char buf[32];

		snprintf(buf, sizeof(buf), "cannot load %s", what);
		ssl_fail(err, errlen, buf, path);
		return -1;
	}
	return 0;
}

/* Loads our certificate chain and key, and checks that they belong together. */
static int load_cert_key(SSL_CTX *ctx, const struct policy_opts *o, char *err, size_t errlen)
{
	if (o->cert == NULL && o->key == NULL)
		return 0;
	if (o->cert == NULL || o->key == NULL) {
		snprintf(err, errlen, "cert= and key= must be given together");
		return -1;
	}
	if (!SSL_CTX_use_certificate_chain_file(ctx, o->cert)) {
		ssl_fail(err, errlen, "cannot load cert", o->cert);
		return -1;
	}
	if (!SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM)) {
		ssl_fail(err, errlen, "cannot load key", o->key);
		return -1;
	}
	if (!SSL_CTX_check_private_key(ctx)) {
		ERR_clear_error();
		snprintf(err, errlen, "key %s does not match cert %s", o->key, o->cert);
		return -1;
	}
	return 0;
}

/* Stores every new resumable client session under the session's cache key. */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct tsess *s = SSL_get_app_data(ssl);

	/* TLS 1.3 tickets arrive after the handshake (RFC 8446 section 4.6.1): this runs late. */
	if (s == NULL || s->cache_key == NULL || !SSL_SESSION_is_resumable(sess))
		return 0;
	tlsctx_session_put(s->cache_key, sess);
	return 1;
}

/*
 * Server ALPN: the first of the rule's protocols that the client offered.
 * With no overlap the handshake fails with no_application_protocol
 * (RFC 7301 section 3.2).
 */
static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
			  const unsigned char *in, unsigned inlen, void *arg)
{
	struct tsess *s = SSL_get_app_data(ssl);
	const unsigned char *ours;
	size_t ourlen, i, j;

	(void)arg;
	if (s == NULL)
		return SSL_TLSEXT_ERR_NOACK;
	ours = (const unsigned char *)s->rule->opt.alpn_wire;
	ourlen = s->rule->opt.alpn_wire_len;
	for (i = 0; i < ourlen; i += 1 + (size_t)ours[i]) {
		for (j = 0; j < inlen; j += 1 + (size_t)in[j]) {
			if (in[j] == ours[i] && j + 1 + in[j] <= inlen &&
			    memcmp(in + j + 1, ours + i + 1, in[j]) == 0) {
				*out = in + j + 1;
				*outlen = in[j];
				return SSL_TLSEXT_ERR_OK;
			}
		}
	}
	tsess_set_reason(s, "no common application protocol (ALPN)");
	s->cb_reason = 1;
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static int ctx_client(SSL_CTX *ctx, const struct policy_rule *r, char *err, size_t errlen)
{
	const struct policy_opts *o = &r->opt;

	if (o->ca != NULL) {
		if (load_trust(ctx, "ca", o->ca, err, errlen) != 0)
			return -1;
	} else if (!SSL_CTX_set_default_verify_paths(ctx)) {
		ssl_fail(err, errlen, "cannot load the system CA store", NULL);
		return -1;
	}
	if (load_cert_key(ctx, o, err, errlen) != 0)
		return -1;
	/* Sessions live in our cache (keyed per rule and peer), not in the SSL_CTX. */
	SSL_CTX_set_session_cache_mode(ctx,
				       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
	return 0;
}

static int ctx_server(SSL_CTX *ctx, const struct policy_rule *r, SSL_CTX *old, char *err,
		      size_t errlen)
{
	const struct policy_opts *o = &r->opt;
	unsigned char keys[TICKET_KEYS_LEN];
	char sid[32];

	if (o->cert == NULL || o->key == NULL) {
		snprintf(err, errlen, "accept tls needs cert= and key=");
		return -1;
	}
	if (load_cert_key(ctx, o, err, errlen) != 0)
		return -1;
	/*
	 * The trust store holds client-ca and nothing else (the parser refuses
	 * ca= on accept): a client certificate verifies only against it.
	 */
	if (o->client_ca != NULL) {
		STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
		struct stat st;
		int ok;

		if (load_trust(ctx, "client-ca", o->client_ca, err, errlen) != 0) {
			sk_X509_NAME_free(names);
			return -1;
		}
		/* The CA names go in CertificateRequest so clients pick the right cert. */
		ok = names != NULL && stat(o->client_ca, &st) == 0 &&
		     (S_ISDIR(st.st_mode)
			  ? SSL_add_dir_cert_subjects_to_stack(names, o->client_ca)
			  : SSL_add_file_cert_subjects_to_stack(names, o->client_ca));
		if (!ok) {
			sk_X509_NAME_pop_free(names, X509_NAME_free);
			ssl_fail(err, errlen, "cannot load client-ca", o->client_ca);
			return -1;
		}
		SSL_CTX_set_client_CA_list(ctx, names);
	}
	/* Same context across rebuilds: sessions from before a rotation stay valid. */
	snprintf(sid, sizeof(sid), "tlsshim:%u", r->id);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)sid, (unsigned)strlen(sid));
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	SSL_CTX_sess_set_cache_size(ctx, SERVER_CACHE_SIZE);
	/*
	 * TLS 1.3 tickets (RFC 8446 section 4.6.1; OpenSSL's two after a full
	 * handshake, one after a resumption) go out with the program's first
	 * write (tsess.c holds them), not right after the handshake: bytes the
	 * program never sent, arriving at a client that has already closed,
	 * would turn its FIN into a reset the plain connection never has.
	 */
	if (old != NULL && SSL_CTX_get_tlsext_ticket_keys(old, keys, sizeof(keys)) > 0)
		SSL_CTX_set_tlsext_ticket_keys(ctx, keys, sizeof(keys));
	OPENSSL_cleanse(keys, sizeof(keys));
	if (o->alpn_wire != NULL)
		SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, NULL);
	return 0;
}

/* Contract in tls_int.h. */
SSL_CTX *tlsctx_build(const struct policy_rule *r, enum tls_role role, SSL_CTX *old, char *err,
		      size_t errlen)
{
	SSL_CTX *ctx;
	int rc;

	ERR_clear_error();
	ctx = SSL_CTX_new(role == TLS_ROLE_CLIENT ? TLS_client_method() : TLS_server_method());
	if (ctx == NULL) {
		ssl_fail(err, errlen, "cannot create SSL_CTX", NULL);
		return NULL;
	}
	rc = ctx_defaults(ctx, r, role, err, errlen);
	if (rc == 0)
		rc = role == TLS_ROLE_CLIENT ? ctx_client(ctx, r, err, errlen)
					     : ctx_server(ctx, r, old, err, errlen);
	ERR_clear_error();
	if (rc != 0) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}
