/*
 * verify.c - certificate checks beyond OpenSSL's chain verification: SPKI pins
 * (client) and allow= patterns on the client certificate (server).
 *
 * Both run inside the handshake, from the certificate-verify callback, so a
 * failure aborts the handshake with an alert and the session's reason names
 * it; a connection is never reported established and then torn down.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "tls_int.h"

/*
 * Returns 1 if TEXT is an IPv4 or IPv6 address literal (such a name is never
 * sent as SNI, RFC 6066 section 3, and is verified as an address), else 0.
 */
int tls_is_ip_literal(const char *text)
{
	unsigned char buf[16];

	if (text == NULL)
		return 0;
	return inet_pton(AF_INET, text, buf) == 1 || inet_pton(AF_INET6, text, buf) == 1;
}

/* Whether the SHA-256 of CERT's DER SubjectPublicKeyInfo is one of RULE's pins. */
static int pin_matches(const struct policy_opts *o, X509 *cert)
{
	unsigned char *der = NULL, md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	int len, ok = 0;
	size_t i;

	len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
	if (len <= 0)
		return 0;
	if (!EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
		goto out;
	for (i = 0; i < o->n_pins; i++) {
		if (memcmp(o->pins[i].sha256, md, 32) == 0) {
			ok = 1;
			break;
		}
	}
out:
	OPENSSL_free(der);
	return ok;
}

/*
 * Whether a pin matches a key the verification vouches for: without insecure,
 * any certificate of the verified chain (leaf up to the trust anchor); under
 * insecure nothing was verified, so only the end-entity key counts. The
 * certificates the peer merely sent are never looked at: a self-signed leaf
 * with the real CA appended must not match the CA's pin.
 */
static int chain_has_pin(const struct policy_opts *o, X509_STORE_CTX *x)
{
	STACK_OF(X509) * chain;
	int i;

	if (o->insecure)
		return pin_matches(o, X509_STORE_CTX_get0_cert(x));
	chain = X509_STORE_CTX_get0_chain(x);
	for (i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
		if (pin_matches(o, sk_X509_value(chain, i)))
			return 1;
	}
	return 0;
}

/*
 * Matches STR against PAT, where '*' stands for any run of characters other
 * than SEP (SEP 0: any characters at all). ICASE compares ASCII letters
 * without case. Returns 1 on a match.
 */
static int glob_match(const char *pat, const char *str, char sep, int icase)
{
	while (*pat != '\0') {
		if (*pat == '*') {
			const char *p = str;

			/* Try every split: '*' takes 0, 1, ... characters, never SEP. */
			for (;;) {
				if (glob_match(pat + 1, p, sep, icase))
					return 1;
				if (*p == '\0' || (sep != '\0' && *p == sep))
					return 0;
				p++;
			}
		}
		if (*str == '\0')
			return 0;
		if (icase ? tolower((unsigned char)*pat) != tolower((unsigned char)*str)
			  : *pat != *str)
			return 0;
		pat++;
		str++;
	}
	return *str == '\0';
}

/* Appends " KIND:VALUE" to BUF (of size LEN, NUL-terminated) as room allows. */
static void ident_append(char *buf, size_t len, const char *kind, const char *value, size_t vlen)
{
	size_t used = strlen(buf);

	if (used + 1 >= len)
		return;
	snprintf(buf + used, len - used, "%s%s:%.*s", used > 0 ? " " : "", kind, (int)vlen, value);
}

/*
 * Whether CERT matches one of RULE's allow= patterns: "cn:PAT" against the
 * subject CN, "dns:PAT" against each SAN dNSName (case-insensitive, '*' stops
 * at '.'), "uri:PAT" against each SAN URI ('*' stops at '/'). IDS receives the
 * certificate's identities for the log line.
 */
static int allow_matches(const struct policy_opts *o, X509 *cert, char *ids, size_t idslen)
{
	X509_NAME *subj = X509_get_subject_name(cert);
	GENERAL_NAMES *sans;
	int i, ok = 0, idx;
	size_t k;

	ids[0] = '\0';
	idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
	if (idx >= 0) {
		ASN1_STRING *a = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
		unsigned char *cn = NULL;
		int n = ASN1_STRING_to_UTF8(&cn, a);

		if (n > 0 && memchr(cn, '\0', (size_t)n) == NULL) {
			ident_append(ids, idslen, "cn", (char *)cn, (size_t)n);
			for (k = 0; k < o->n_allow && !ok; k++) {
				if (strncmp(o->allow[k], "cn:", 3) == 0)
					ok = glob_match(o->allow[k] + 3, (char *)cn, '\0', 0);
			}
		}
		OPENSSL_free(cn);
	}
	sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	for (i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
		const char *kind, *prefix;
		const unsigned char *v;
		int vlen, type;
		char sep;

		type = g->type;
		switch (type) {
		case GEN_DNS:
			kind = "dns", prefix = "dns:", sep = '.';
			break;
		case GEN_URI:
			kind = "uri", prefix = "uri:", sep = '/';
			break;
		default:
			continue;
		}
		v = ASN1_STRING_get0_data(g->d.ia5);
		vlen = ASN1_STRING_length(g->d.ia5);
		/* An embedded NUL would let "a.test\0.evil" pass as "a.test". */
		if (vlen <= 0 || memchr(v, '\0', (size_t)vlen) != NULL)
			continue;
		ident_append(ids, idslen, kind, (const char *)v, (size_t)vlen);
		for (k = 0; k < o->n_allow && !ok; k++) {
			char val[1024];

			if (strncmp(o->allow[k], prefix, 4) != 0 || (size_t)vlen >= sizeof(val))
				continue;
			memcpy(val, v, (size_t)vlen);
			val[vlen] = '\0';
			ok = glob_match(o->allow[k] + 4, val, sep, type == GEN_DNS);
		}
	}
	GENERAL_NAMES_free(sans);
	if (ids[0] == '\0')
		snprintf(ids, idslen, "no cn, dns or uri names");
	return ok;
}

/*
 * The certificate-verify callback of every engine SSL_CTX (ARG unused).
 * Verifies the chain as OpenSSL would, then:
 *  - client with pins: one pin must match a certificate of the verified chain
 *    (only the end-entity certificate when insecure);
 *  - client insecure: chain and name errors are ignored (pins still apply);
 *  - server with allow=: the verified client leaf must match a pattern.
 * Returns 1 to go on, 0 to abort the handshake (the session's reason says
 * why). OpenSSL 3.0 picks the alert from the X509 error, and none maps to
 * access_denied: X509_V_ERR_CERT_REJECTED gives bad_certificate.
 */
int tls_verify_cb(X509_STORE_CTX *x, void *arg)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tsess *s = ssl != NULL ? SSL_get_app_data(ssl) : NULL;
	const struct policy_opts *o;
	char ids[TS_REASON_MAX];
	int ok;

	(void)arg;
	ok = X509_verify_cert(x) > 0;
	if (s == NULL)
		return ok;
	o = &s->rule->opt;
	if (s->role == TLS_ROLE_CLIENT) {
		if (o->insecure)
			ok = 1;
		if (!ok || o->n_pins == 0)
			return ok;
		if (chain_has_pin(o, x))
			return 1;
		tsess_set_reason(s, "certificate pin mismatch");
		s->cb_reason = 1;
		X509_STORE_CTX_set_error(x, X509_V_ERR_APPLICATION_VERIFICATION);
		return 0;
	}
	if (!ok || o->n_allow == 0)
		return ok;
	if (allow_matches(o, X509_STORE_CTX_get0_cert(x), ids, sizeof(ids)))
		return 1;
	tsess_set_reason(s, "client certificate not allowed: %s", ids);
	s->cb_reason = 1;
	X509_STORE_CTX_set_error(x, X509_V_ERR_CERT_REJECTED);
	return 0;
}
