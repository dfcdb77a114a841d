/*
 * starttls.c - what the STARTTLS machines share: set-up, dispatch, buffers,
 * and the quoting of peer text for log lines. The protocols are in
 * starttls_pg.c, starttls_smtp.c and starttls_imap.c.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "starttls.h"

void stls_init(struct stls *s, int proto, enum tls_role role, int allow_plain, const char *helo)
{
	memset(s, 0, sizeof(*s));
	s->proto = (unsigned char)proto;
	s->role = (unsigned char)role;
	s->allow_plain = allow_plain != 0;
	s->read_max = STLS_IN_MAX;
	s->pg_filter = proto == POLICY_STARTTLS_POSTGRES && role == TLS_ROLE_CLIENT;
	s->why[0] = '\0';
	snprintf(s->helo, sizeof(s->helo), "%s", helo != NULL && *helo ? helo : "localhost");
}

int stls_step(struct stls *s)
{
	switch (s->proto) {
	case POLICY_STARTTLS_POSTGRES:
		return stls_pg_step(s);
	case POLICY_STARTTLS_SMTP:
		return stls_smtp_step(s);
	case POLICY_STARTTLS_IMAP:
		return stls_imap_step(s);
	default:
		return stls_fail(s, "starttls: unknown protocol %d", s->proto);
	}
}

int stls_greet_add(struct stls *s, const void *p, size_t len)
{
	if (len > sizeof(s->greet) - s->greet_len)
		return -1;
	memcpy(s->greet + s->greet_len, p, len);
	s->greet_len += len;
	return 0;
}

void stls_consume(struct stls *s, size_t n)
{
	if (n > s->in_len)
		n = s->in_len;
	memmove(s->in, s->in + n, s->in_len - n);
	s->in_len -= n;
}

void stls_send(struct stls *s, const void *text, size_t len)
{
	if (len > sizeof(s->out))
		len = sizeof(s->out);
	memcpy(s->out, text, len);
	s->out_len = len;
}

int stls_fail(struct stls *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->why, sizeof(s->why), fmt, ap);
	va_end(ap);
	return STLS_FAIL;
}

void stls_quote(const unsigned char *p, size_t n, size_t limit, char *out, size_t outlen)
{
	size_t o = 0;

	if (outlen == 0)
		return;
	/* The log escapes control bytes and backslashes (log.c); only NUL would cut the line. */
	for (size_t i = 0; i < n && i < limit && o + 4 < outlen; i++)
		out[o++] = p[i] == '\0' ? '.' : (char)p[i];
	if (n > limit || o + 4 >= outlen) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

size_t stls_line(const struct stls *s, size_t off)
{
	for (size_t i = off; i < s->in_len; i++)
		if (s->in[i] == '\n')
			return i + 1 - off;
	return 0;
}
