/*
 * starttls_smtp.c - SMTP's upgrade to TLS (starttls=smtp, RFC 3207), client side.
 *
 * The shim reads the server's greeting (220), says EHLO, needs STARTTLS among
 * the extensions of the 250 answer, sends STARTTLS and needs 220. The server
 * sends no new greeting once TLS is up (RFC 3207 section 4.2: the client then
 * starts with EHLO), but the program, which knows nothing of the upgrade,
 * waits for one: it reads the greeting the server sent before TLS, byte for
 * byte, and its own EHLO then goes inside TLS, where the server answers with
 * the extensions it offers over TLS (RFC 3207 4.2: knowledge from before TLS
 * is discarded). So the program never sees STARTTLS offered, and the server's
 * log shows the shim's EHLO (an address literal) before the program's.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "starttls.h"

enum {
	SMTP_GREETING = 0,
	SMTP_EHLO,     /* EHLO sent: read its answer */
	SMTP_STARTTLS, /* STARTTLS sent: read its answer */
};

/*
 * The length of the first complete reply in s->in (RFC 5321 4.2: lines
 * "CODE-text" then one "CODE text" or "CODE"), 0 if not complete yet, or -1
 * for something that is not a reply. *CODE gets its code.
 */
static long reply_len(const struct stls *s, int *code)
{
	size_t off = 0, n;

	while ((n = stls_line(s, off)) > 0) {
		const unsigned char *l = s->in + off;

		if (n < 4 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '9' || l[2] < '0' ||
		    l[2] > '9')
			return -1;
		*code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
		off += n;
		if (l[3] != '-')
			return (long)off;
	}
	return 0;
}

/* Whether the EHLO answer s->in[0..len) lists the STARTTLS extension (RFC 3207 4). */
static int offers_starttls(const struct stls *s, size_t len)
{
	size_t off = 0, n;

	while (off < len && (n = stls_line(s, off)) > 0) {
		const unsigned char *k = s->in + off + 4;
		size_t klen = n - 4;

		while (klen > 0 && (k[klen - 1] == '\n' || k[klen - 1] == '\r'))
			klen--;
		if (klen >= 8 && strncasecmp((const char *)k, "STARTTLS", 8) == 0 &&
		    (klen == 8 || k[8] == ' '))
			return 1;
		off += n;
	}
	return 0;
}

/* Waits for a whole reply: >0 its length, else the step result (read more, or fail). */
static long need_reply(struct stls *s, int *code, int *rc)
{
	long len = reply_len(s, code);
	char q[200];

	if (len > 0)
		return len;
	stls_quote(s->in, s->in_len, 120, q, sizeof(q));
	if (len < 0) {
		*rc = stls_fail(s, "the server's answer is not SMTP: \"%s\"", q);
		return 0;
	}
	if (s->in_len == sizeof(s->in)) {
		*rc = stls_fail(s, "the server's answer is too long: \"%s\"", q);
		return 0;
	}
	s->read_max = sizeof(s->in) - s->in_len;
	*rc = STLS_WANT_READ;
	return 0;
}

static int client_step(struct stls *s)
{
	char q[200], cmd[96];
	int code = 0, rc = 0;
	long len;

	if (s->phase > SMTP_STARTTLS)
		return stls_fail(s, "smtp: bad client state %d", s->phase);
	len = need_reply(s, &code, &rc);
	if (len == 0)
		return rc;
	stls_quote(s->in, (size_t)len, 160, q, sizeof(q));
	switch (s->phase) {
	case SMTP_GREETING:
		if (code != 220)
			return stls_fail(s, "the server's greeting is not 220: \"%s\"", q);
		/* What the program reads first, as the plain server said it. */
		if (stls_greet_add(s, s->in, (size_t)len) != 0)
			return stls_fail(s, "the server's greeting is too long: \"%s\"", q);
		stls_consume(s, (size_t)len);
		snprintf(cmd, sizeof(cmd), "EHLO %s\r\n", s->helo);
		stls_send(s, cmd, strlen(cmd));
		s->phase = SMTP_EHLO;
		return STLS_WANT_WRITE;
	case SMTP_EHLO:
		if (code != 250)
			return stls_fail(s, "the server refused EHLO: \"%s\"", q);
		if (!offers_starttls(s, (size_t)len))
			return stls_fail(
			    s, "the server does not offer STARTTLS; its EHLO answer: \"%s\"", q);
		stls_consume(s, (size_t)len);
		stls_send(s, "STARTTLS\r\n", 10);
		s->phase = SMTP_STARTTLS;
		return STLS_WANT_WRITE;
	default:
		if (code != 220)
			return stls_fail(s, "the server refused STARTTLS: \"%s\"", q);
		if ((size_t)len != s->in_len) {
			stls_quote(s->in + len, s->in_len - (size_t)len, 120, q, sizeof(q));
			return stls_fail(
			    s,
			    "the server sent data after its STARTTLS answer and before "
			    "the TLS handshake (an injection?): \"%s\"",
			    q);
		}
		stls_consume(s, (size_t)len);
		return STLS_TLS;
	}
}

int stls_smtp_step(struct stls *s)
{
	if (s->role != TLS_ROLE_CLIENT)
		return stls_fail(s, "smtp: the server side is not built");
	return client_step(s);
}
