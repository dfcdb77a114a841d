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
 *
 * Server side: the session starts in cleartext between the client and the
 * program. The shim adds STARTTLS to the program's EHLO answer, answers the
 * client's STARTTLS itself (220), and runs the handshake; the client's next
 * EHLO reaches the program inside TLS. Under `tls` the program never sees a
 * command other than EHLO, HELO, NOOP, RSET and QUIT before TLS: the shim
 * answers 530 to them (RFC 3207 4); under `auto` a client that starts a mail
 * transaction in cleartext is passed through, unfiltered, from then on.
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
		return stls_smtp_srv_input(s);
	return client_step(s);
}

/* ---- server side ---------------------------------------------------------------- */

/* The command verb of line L[0..N): its length (letters up to a space or the line's end). */
static size_t verb_len(const unsigned char *l, size_t n)
{
	size_t i = 0;

	while (i < n && ((l[i] >= 'A' && l[i] <= 'Z') || (l[i] >= 'a' && l[i] <= 'z')))
		i++;
	return i;
}

static int verb_is(const unsigned char *l, size_t vlen, const char *v)
{
	return vlen == strlen(v) && strncasecmp((const char *)l, v, vlen) == 0;
}

#define SMTP_LINE_MAX 1000 /* RFC 5321 4.5.3.1.4 (command lines are at most 512) */

int stls_smtp_srv_input(struct stls *s)
{
	static const char need_tls[] = "530 5.7.0 Must issue a STARTTLS command first\r\n";
	static const char ready[] = "220 2.0.0 Ready to start TLS\r\n";
	size_t n, v;
	const unsigned char *l = s->in;
	char q[200];

	if (s->phase == 1)
		return STLS_TLS; /* the 220 is out */
	if (s->srv_done)
		return STLS_PLAIN;
	n = stls_line(s, 0);
	if (n == 0) {
		if (s->in_len >= SMTP_LINE_MAX) {
			stls_quote(s->in, s->in_len, 120, q, sizeof(q));
			return stls_fail(s, "a command line from the client is too long: \"%s\"",
					 q);
		}
		s->read_max = SMTP_LINE_MAX - s->in_len;
		return STLS_WANT_READ;
	}
	v = verb_len(l, n);
	if (verb_is(l, v, "STARTTLS")) {
		/* RFC 3207 4.2 (and CVE-2011-0411): nothing may follow it in cleartext. */
		if (n != s->in_len) {
			stls_quote(s->in + n, s->in_len - n, 120, q, sizeof(q));
			return stls_fail(s,
					 "the client sent data after STARTTLS and before the TLS "
					 "handshake (an injection?): \"%s\"",
					 q);
		}
		stls_consume(s, n);
		stls_send(s, ready, strlen(ready));
		s->phase = 1;
		s->srv_done = 1;
		return STLS_WANT_WRITE;
	}
	if (verb_is(l, v, "EHLO"))
		s->srv_ehlo = 1;
	if (!verb_is(l, v, "EHLO") && !verb_is(l, v, "HELO") && !verb_is(l, v, "NOOP") &&
	    !verb_is(l, v, "RSET") && !verb_is(l, v, "QUIT")) {
		if (!s->allow_plain) {
			/* Under tls, no mail moves in cleartext: the program never sees it. */
			stls_consume(s, n);
			stls_send(s, need_tls, strlen(need_tls));
			return STLS_WANT_WRITE;
		}
		/* auto: a mail transaction in cleartext; STARTTLS is no longer allowed. */
		stls_greet_add(s, s->in, s->in_len);
		stls_consume(s, s->in_len);
		s->srv_done = 1;
		return STLS_PLAIN;
	}
	stls_greet_add(s, l, n);
	stls_consume(s, n);
	s->read_max = SMTP_LINE_MAX;
	return STLS_WANT_READ;
}

/* Rewrites the whole 250 reply in s->reply into s->out with STARTTLS as its last line. */
static void add_starttls(struct stls *s)
{
	size_t off = 0, last = 0, n;
	int has = 0;

	while (off < s->rlen) {
		const unsigned char *l = s->reply + off;
		const unsigned char *e = memchr(l, '\n', s->rlen - off);

		n = e ? (size_t)(e - l) + 1 : s->rlen - off;
		if (n >= 12 && strncasecmp((const char *)l + 4, "STARTTLS", 8) == 0)
			has = 1;
		last = off;
		off += n;
	}
	if (has || s->rlen + 16 > sizeof(s->out)) {
		stls_send(s, s->reply, s->rlen);
		return;
	}
	memcpy(s->out, s->reply, s->rlen);
	s->out[last + 3] = '-'; /* "250 last" -> "250-last" */
	memcpy(s->out + s->rlen, "250 STARTTLS\r\n", 14);
	s->out_len = s->rlen + 14;
}

size_t stls_smtp_srv_output(struct stls *s, const void *buf, size_t len, int *send_direct)
{
	const unsigned char *b = buf;
	size_t take = 0;

	*send_direct = !s->srv_ehlo;
	if (!s->srv_ehlo)
		return len;
	/* Keep the EHLO answer until its last line ("250 ..."), then add STARTTLS to it. */
	while (take < len && s->rlen < sizeof(s->reply)) {
		unsigned char ch = b[take++];

		s->reply[s->rlen++] = ch;
		if (ch != '\n')
			continue;
		{
			size_t start = s->rlen - 1;

			while (start > 0 && s->reply[start - 1] != '\n')
				start--;
			if (s->rlen - start >= 4 && s->reply[start + 3] == '-')
				continue;
			/* The last line. */
			if (s->reply[0] == '2' && s->reply[1] == '5' && s->reply[2] == '0')
				add_starttls(s);
			else
				stls_send(s, s->reply, s->rlen);
			s->rlen = 0;
			s->srv_ehlo = 0;
			return take;
		}
	}
	if (s->rlen == sizeof(s->reply)) {
		/* Too long to rewrite: it goes as it is (without STARTTLS). */
		stls_send(s, s->reply, s->rlen);
		s->rlen = 0;
		s->srv_ehlo = 0;
	}
	return take;
}
