/*
 * tsess_result.c - the one place OpenSSL's outcomes are interpreted: the
 * result of an SSL_* call on a session mapped to TS_* and a short reason
 * (tsess_result()), so every log line names failures the same way.
 */
#include <stdarg.h>
#include <stdio.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls_int.h"

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
	/* The name or address checked, when the certificate did not carry it: the log line
	 * names the destination as the program named it, which may be an address. */
	if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(s->ssl);
		const char *host = X509_VERIFY_PARAM_get0_host(vp, 0);
		char *ip = host == NULL ? X509_VERIFY_PARAM_get1_ip_asc(vp) : NULL;

		if (host != NULL || ip != NULL) {
			tsess_set_reason(s, "%s verify failed: %s (wanted %s)", who,
					 X509_verify_cert_error_string(v),
					 host != NULL ? host : ip);
			OPENSSL_free(ip);
			return;
		}
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
int tsess_result(struct tsess *s, int ret)
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

const char *tsess_reason(const struct tsess *s)
{
	return s->reason[0] != '\0' ? s->reason : "unknown TLS error";
}

int tsess_errno(const struct tsess *s)
{
	return s->sys_errno;
}
