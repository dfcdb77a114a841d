/*
 * starttls_pg.c - PostgreSQL's upgrade to TLS (starttls=postgres).
 *
 * The frontend/backend protocol (PostgreSQL docs, "Message Flow: SSL Session
 * Encryption"): the client's first message may be SSLRequest (Int32 8,
 * Int32 80877103); the server answers one byte, 'S' (go ahead with the TLS
 * handshake) or 'N' (no); GSSENCRequest (Int32 8, Int32 80877104) asks the
 * same for GSSAPI. Anything sent after 'S' and before the handshake is an
 * injection (CVE-2021-23222, CVE-2021-23214): the client fails on it, and
 * the server side never reads past the 8-byte request, so such bytes reach
 * OpenSSL as a broken handshake, never the program.
 */
#include <stdint.h>
#include <string.h>

#include "starttls.h"

#define PG_SSL_REQUEST    80877103u
#define PG_GSSENC_REQUEST 80877104u

static const unsigned char ssl_request[8] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};

enum {
	PG_START = 0,   /* client: send SSLRequest; server: read the first 8 bytes */
	PG_ANSWER,      /* client: read the server's one-byte answer */
	PG_S_SENT,      /* server: 'S' sent: handshake next */
	PG_REFUSE_SENT, /* server: the ErrorResponse to a cleartext client is sent */
};

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* 1: P[0..8) is an 8-byte request with CODE. */
static int is_request(const unsigned char *p, uint32_t code)
{
	return be32(p) == 8 && be32(p + 4) == code;
}

static int client_step(struct stls *s)
{
	char q[200];

	switch (s->phase) {
	case PG_START:
		stls_send(s, ssl_request, sizeof(ssl_request));
		s->phase = PG_ANSWER;
		return STLS_WANT_WRITE;
	case PG_ANSWER:
		if (s->in_len == 0) {
			s->read_max = sizeof(s->in);
			return STLS_WANT_READ;
		}
		stls_quote(s->in, s->in_len, 120, q, sizeof(q));
		if (s->in[0] == 'S' && s->in_len == 1) {
			stls_consume(s, 1);
			return STLS_TLS;
		}
		if (s->in[0] == 'S')
			return stls_fail(s,
					 "the server sent data after 'S' and before the TLS "
					 "handshake (an injection?): \"%s\"",
					 q);
		if (s->in[0] == 'N')
			return stls_fail(s,
					 "the server refused TLS: it answered 'N' to SSLRequest");
		return stls_fail(s, "the server did not accept SSLRequest; it answered \"%s\"", q);
	default:
		return stls_fail(s, "postgres: bad client state %d", s->phase);
	}
}

/* An ErrorResponse (protocol 3.0) telling a cleartext client why it is refused. */
static void send_refusal(struct stls *s)
{
	static const char fields[] = "SFATAL\0VFATAL\0C28000\0"
				     "Mthis server requires TLS (SSL): connect with "
				     "sslmode=require or stronger (tlsshim)\0";
	size_t body = sizeof(fields); /* the fields and the final '\0' of the message */
	unsigned char m[STLS_OUT_MAX];
	uint32_t len = (uint32_t)(4 + body);

	m[0] = 'E';
	m[1] = (unsigned char)(len >> 24);
	m[2] = (unsigned char)(len >> 16);
	m[3] = (unsigned char)(len >> 8);
	m[4] = (unsigned char)len;
	memcpy(m + 5, fields, body);
	stls_send(s, m, 5 + body);
}

static int server_step(struct stls *s)
{
	switch (s->phase) {
	case PG_START:
		if (s->in_len < 8) {
			s->read_max = 8 - s->in_len; /* never past the request */
			return STLS_WANT_READ;
		}
		if (is_request(s->in, PG_SSL_REQUEST)) {
			stls_consume(s, 8);
			stls_send(s, "S", 1);
			s->phase = PG_S_SENT;
			return STLS_WANT_WRITE;
		}
		if (is_request(s->in, PG_GSSENC_REQUEST)) {
			/* The client may then ask for TLS, or go on in cleartext. */
			stls_consume(s, 8);
			stls_send(s, "N", 1);
			return STLS_WANT_WRITE;
		}
		if (s->allow_plain) {
			/* The program reads these 8 bytes first, as if the shim were not there. */
			stls_greet_add(s, s->in, s->in_len);
			stls_consume(s, s->in_len);
			return STLS_PLAIN;
		}
		send_refusal(s);
		s->phase = PG_REFUSE_SENT;
		return STLS_WANT_WRITE;
	case PG_S_SENT:
		return STLS_TLS;
	case PG_REFUSE_SENT:
		return stls_fail(s, "the client did not ask for TLS (no SSLRequest: "
				    "sslmode=disable?); refused");
	default:
		return stls_fail(s, "postgres: bad server state %d", s->phase);
	}
}

int stls_pg_step(struct stls *s)
{
	return s->role == TLS_ROLE_CLIENT ? client_step(s) : server_step(s);
}

size_t stls_pg_filter(struct stls *s, const void *buf, size_t len, size_t *forward)
{
	const unsigned char *b = buf;
	size_t take = 0;

	*forward = 0;
	if (!s->pg_filter)
		return 0;
	/* Gather the program's first bytes while they can still be an 8-byte request. */
	while (take < len && s->pbuf_len < 8) {
		static const unsigned char head[4] = {0, 0, 0, 8};

		if (s->pbuf_len < 4 && b[take] != head[s->pbuf_len])
			break;
		if (s->pbuf_len == 4 && b[take] != 0x04)
			break;
		if (s->pbuf_len == 5 && b[take] != 0xd2)
			break;
		if (s->pbuf_len == 6 && b[take] != 0x16)
			break;
		s->pbuf[s->pbuf_len++] = b[take++];
	}
	if (s->pbuf_len == 8 &&
	    (is_request(s->pbuf, PG_SSL_REQUEST) || is_request(s->pbuf, PG_GSSENC_REQUEST))) {
		/* What a server without TLS or GSSAPI answers; the program goes on in plain. */
		stls_greet_add(s, "N", 1);
		s->pbuf_len = 0;
		return take;
	}
	if (take == len && s->pbuf_len < 8)
		return take; /* still a request's beginning: wait for more */
	/* Not a request: these bytes and everything after go to the server as they are. */
	s->pg_filter = 0;
	*forward = s->pbuf_len;
	return take;
}
