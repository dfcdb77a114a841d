/*
 * starttls_imap.c - IMAP's upgrade to TLS (starttls=imap, RFC 3501 6.2.1), client side.
 *
 * The shim reads the greeting ("* OK"; "* PREAUTH" means the session is
 * already authenticated, where STARTTLS is not allowed; "* BYE" a refusal),
 * needs STARTTLS among the capabilities (from the greeting's CAPABILITY
 * response code, else a CAPABILITY command), sends STARTTLS and needs its
 * tagged OK. The server sends no new greeting in TLS, but the program waits
 * for one: it reads the pre-TLS greeting without its CAPABILITY response
 * code, since the client must discard what it learnt of capabilities before
 * TLS (RFC 3501 6.2.1); it then asks CAPABILITY inside TLS, if it wants them.
 * The shim's own tags are "tlsshim1" and "tlsshim2"; the program never sees
 * those commands or their answers.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "starttls.h"

enum {
	IMAP_GREETING = 0,
	IMAP_CAPABILITY, /* CAPABILITY sent: read until its tagged answer */
	IMAP_STARTTLS,   /* STARTTLS sent: read until its tagged answer */
};

#define TAG_CAP "tlsshim1"
#define TAG_TLS "tlsshim2"

/* Whether the atom list P[0..N) (space-separated) holds STARTTLS. */
static int lists_starttls(const unsigned char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		size_t j = i;

		while (j < n && p[j] != ' ' && p[j] != ']' && p[j] != '\r' && p[j] != '\n')
			j++;
		if (j - i == 8 && strncasecmp((const char *)p + i, "STARTTLS", 8) == 0)
			return 1;
		if (j < n && p[j] != ' ')
			break;
		i = j + 1;
	}
	return 0;
}

/* Whether line L[0..N) starts with WORD (case-insensitive). */
static int starts(const unsigned char *l, size_t n, const char *word)
{
	size_t k = strlen(word);

	return n >= k && strncasecmp((const char *)l, word, k) == 0;
}

/*
 * The greeting "* OK [CAPABILITY ...] text": note STARTTLS, and give the
 * program "* OK text" (other response codes, such as [ALERT], stay).
 */
static int greeting(struct stls *s, size_t n)
{
	const unsigned char *l = s->in;
	size_t at = 5; /* after "* OK " */
	char q[200];

	stls_quote(l, n, 160, q, sizeof(q));
	if (starts(l, n, "* PREAUTH"))
		return stls_fail(s,
				 "the server pre-authenticated the session, where STARTTLS is not "
				 "allowed (RFC 3501 6.2.1): \"%s\"",
				 q);
	if (!starts(l, n, "* OK"))
		return stls_fail(s, "the server's greeting is not OK: \"%s\"", q);
	if (starts(l + at, n - at, "[CAPABILITY ")) {
		const unsigned char *end = memchr(l + at, ']', n - at);

		if (end != NULL) {
			size_t cap = at + 12;

			s->has_cap = lists_starttls(l + cap, (size_t)(end - l) - cap) ? 2 : 1;
			stls_greet_add(s, "* OK ", 5);
			at = (size_t)(end - l) + 1;
			while (at < n && l[at] == ' ')
				at++;
			return stls_greet_add(s, l + at, n - at) == 0
				   ? 0
				   : stls_fail(s, "the greeting is too long: \"%s\"", q);
		}
	}
	return stls_greet_add(s, l, n) == 0 ? 0
					    : stls_fail(s, "the greeting is too long: \"%s\"", q);
}

/*
 * Reads untagged lines until TAG's answer. Returns its length (>0) with
 * s->in holding it first, or 0 with *RC set (read more, or fail).
 */
static size_t tagged(struct stls *s, const char *tag, int *rc)
{
	size_t n, tl = strlen(tag);
	char q[200];

	while ((n = stls_line(s, 0)) > 0) {
		if (n > tl && memcmp(s->in, tag, tl) == 0 && s->in[tl] == ' ')
			return n;
		if (starts(s->in, n, "* CAPABILITY ") && lists_starttls(s->in + 13, n - 13))
			s->has_cap = 2;
		if (starts(s->in, n, "* BYE")) {
			stls_quote(s->in, n, 160, q, sizeof(q));
			*rc = stls_fail(s, "the server said BYE: \"%s\"", q);
			return 0;
		}
		stls_consume(s, n);
	}
	if (s->in_len == sizeof(s->in)) {
		stls_quote(s->in, s->in_len, 120, q, sizeof(q));
		*rc = stls_fail(s, "a line from the server is too long: \"%s\"", q);
		return 0;
	}
	s->read_max = sizeof(s->in) - s->in_len;
	*rc = STLS_WANT_READ;
	return 0;
}

static int send_starttls(struct stls *s)
{
	stls_send(s, TAG_TLS " STARTTLS\r\n", strlen(TAG_TLS " STARTTLS\r\n"));
	s->phase = IMAP_STARTTLS;
	return STLS_WANT_WRITE;
}

static int client_step(struct stls *s)
{
	char q[200];
	size_t n;
	int rc = 0;

	switch (s->phase) {
	case IMAP_GREETING:
		n = stls_line(s, 0);
		if (n == 0) {
			s->read_max = sizeof(s->in) - s->in_len;
			if (s->in_len == sizeof(s->in))
				return stls_fail(s, "the server's greeting is too long");
			return STLS_WANT_READ;
		}
		if (greeting(s, n) != 0)
			return STLS_FAIL;
		stls_consume(s, n);
		if (s->has_cap == 2)
			return send_starttls(s);
		if (s->has_cap == 1)
			return stls_fail(s, "the server does not offer STARTTLS (its greeting's "
					    "capabilities)");
		stls_send(s, TAG_CAP " CAPABILITY\r\n", strlen(TAG_CAP " CAPABILITY\r\n"));
		s->phase = IMAP_CAPABILITY;
		return STLS_WANT_WRITE;
	case IMAP_CAPABILITY:
		n = tagged(s, TAG_CAP, &rc);
		if (n == 0)
			return rc;
		stls_quote(s->in, n, 160, q, sizeof(q));
		if (!starts(s->in + strlen(TAG_CAP) + 1, n - strlen(TAG_CAP) - 1, "OK"))
			return stls_fail(s, "the server refused CAPABILITY: \"%s\"", q);
		if (s->has_cap != 2)
			return stls_fail(s, "the server does not offer STARTTLS (CAPABILITY)");
		stls_consume(s, n);
		return send_starttls(s);
	case IMAP_STARTTLS:
		n = tagged(s, TAG_TLS, &rc);
		if (n == 0)
			return rc;
		stls_quote(s->in, n, 160, q, sizeof(q));
		if (!starts(s->in + strlen(TAG_TLS) + 1, n - strlen(TAG_TLS) - 1, "OK"))
			return stls_fail(s, "the server refused STARTTLS: \"%s\"", q);
		if (n != s->in_len) {
			stls_quote(s->in + n, s->in_len - n, 120, q, sizeof(q));
			return stls_fail(
			    s,
			    "the server sent data after its STARTTLS answer and before "
			    "the TLS handshake (an injection?): \"%s\"",
			    q);
		}
		stls_consume(s, n);
		return STLS_TLS;
	default:
		return stls_fail(s, "imap: bad client state %d", s->phase);
	}
}

int stls_imap_step(struct stls *s)
{
	if (s->role != TLS_ROLE_CLIENT)
		return stls_fail(s, "imap: the server side is not built");
	return client_step(s);
}
