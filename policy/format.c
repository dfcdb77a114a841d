/*
 * format.c - rules back to text (the normalized form `check` prints, which
 * parses back to the same rule) and the words for enums.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

const char *policy_dir_str(enum policy_dir d)
{
	switch (d) {
	case POLICY_CONNECT:
		return "connect";
	case POLICY_ACCEPT:
		return "accept";
	default:
		return "?";
	}
}

const char *policy_action_str(enum policy_action a)
{
	switch (a) {
	case POLICY_TLS:
		return "tls";
	case POLICY_PLAIN:
		return "plain";
	case POLICY_DENY:
		return "deny";
	case POLICY_AUTO:
		return "auto";
	default:
		return "?";
	}
}

const char *policy_host_kind_str(enum policy_host_kind k)
{
	switch (k) {
	case POLICY_HOST_NAME:
		return "exact name";
	case POLICY_HOST_SUFFIX:
		return "name suffix";
	case POLICY_HOST_ADDR:
		return "exact address";
	case POLICY_HOST_CIDR:
		return "address prefix";
	case POLICY_HOST_ANY:
		return "any host";
	default:
		return "?";
	}
}

const char *policy_port_kind_str(enum policy_port_kind k)
{
	switch (k) {
	case POLICY_PORT_ONE:
		return "one port";
	case POLICY_PORT_RANGE:
		return "port range";
	case POLICY_PORT_ANY:
		return "any port";
	default:
		return "?";
	}
}

const char *policy_shown(const char *s, size_t n, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0;

	if (outlen < 8) {
		if (outlen > 0)
			out[0] = '\0';
		return out;
	}
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		/* Room for one escaped byte and "...". */
		if (o + 8 > outlen) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		if (ch >= 0x20 && ch < 0x7f) {
			out[o++] = (char)ch;
			continue;
		}
		out[o++] = '\\';
		out[o++] = 'x';
		out[o++] = hex[ch >> 4];
		out[o++] = hex[ch & 15];
	}
	out[o] = '\0';
	return out;
}

/* ---- rules -------------------------------------------------------------------------- */

/* An snprintf-like writer: counts what it needed, keeps what fits. */
struct out {
	char *buf;
	size_t len, pos;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->pos < o->len) {
		size_t room = o->len - o->pos - 1;

		memcpy(o->buf + o->pos, s, n < room ? n : room);
		o->buf[o->pos + (n < room ? n : room)] = '\0';
	}
	o->pos += n;
}

static void puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void putf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void putf(struct out *o, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		put(o, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Whether V must be quoted to read back the same: separators, quotes, control bytes. */
static int needs_quotes(const char *v)
{
	for (; *v; v++)
		if (strchr(" \t;#\"\\", *v) || (unsigned char)*v < 0x20 || *v == 0x7f)
			return 1;
	return 0;
}

/* Writes " NAME=VALUE", quoting VALUE when the lexer would otherwise split or change it. */
static void put_opt(struct out *o, enum policy_opt id, const char *v)
{
	const char *p;

	putf(o, " %s=", policy_opt_str(id));
	if (!needs_quotes(v)) {
		puts_(o, v);
		return;
	}
	put(o, "\"", 1);
	for (p = v; *p; p++) {
		if (*p == '"' || *p == '\\')
			put(o, "\\", 1);
		put(o, p, 1);
	}
	put(o, "\"", 1);
}

/* One allow= with the whole list, as it would usually be written. */
static void put_allow(struct out *o, const struct policy_opts *op)
{
	size_t i, len = 0;
	char *list;

	for (i = 0; i < op->n_allow; i++)
		len += strlen(op->allow[i]) + 1;
	list = malloc(len);
	if (!list) {
		puts_(o, " allow=?");
		return;
	}
	list[0] = '\0';
	for (i = 0; i < op->n_allow; i++) {
		if (i > 0)
			strcat(list, ",");
		strcat(list, op->allow[i]);
	}
	put_opt(o, POLICY_OPT_ALLOW, list);
	free(list);
}

static void put_b64(struct out *o, const unsigned char *d, size_t n)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i;

	for (i = 0; i < n; i += 3) {
		unsigned long v = (unsigned long)d[i] << 16;
		char q[4];

		if (i + 1 < n)
			v |= (unsigned long)d[i + 1] << 8;
		if (i + 2 < n)
			v |= d[i + 2];
		q[0] = tab[(v >> 18) & 63];
		q[1] = tab[(v >> 12) & 63];
		q[2] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		q[3] = i + 2 < n ? tab[v & 63] : '=';
		put(o, q, 4);
	}
}

static void put_host(struct out *o, const struct policy_rule *r)
{
	int v6 = r->family == AF_INET6;

	switch (r->host_kind) {
	case POLICY_HOST_NAME:
	case POLICY_HOST_ANY:
		puts_(o, r->host);
		break;
	case POLICY_HOST_SUFFIX:
		putf(o, "*.");
		puts_(o, r->host);
		break;
	case POLICY_HOST_ADDR:
		putf(o, v6 ? "[%s]" : "%s", r->host);
		break;
	case POLICY_HOST_CIDR:
		putf(o, v6 ? "[%s/%u]" : "%s/%u", r->host, r->prefix);
		break;
	default:
		puts_(o, "?");
		break;
	}
}

static int given(const struct policy_opts *op, enum policy_opt id)
{
	return (op->given >> id) & 1;
}

static void put_opts(struct out *o, const struct policy_opts *op)
{
	size_t i;

	if (op->ca)
		put_opt(o, POLICY_OPT_CA, op->ca);
	if (op->cert)
		put_opt(o, POLICY_OPT_CERT, op->cert);
	if (op->key)
		put_opt(o, POLICY_OPT_KEY, op->key);
	if (op->sni)
		put_opt(o, POLICY_OPT_SNI, op->sni);
	if (op->name)
		put_opt(o, POLICY_OPT_NAME, op->name);
	if (op->insecure)
		puts_(o, " insecure");
	if (op->client_ca)
		put_opt(o, POLICY_OPT_CLIENT_CA, op->client_ca);
	if (op->n_allow > 0)
		put_allow(o, op);
	for (i = 0; i < op->n_pins; i++) {
		puts_(o, " pin=sha256/");
		put_b64(o, op->pins[i].sha256, sizeof(op->pins[i].sha256));
	}
	if (op->alpn)
		put_opt(o, POLICY_OPT_ALPN, op->alpn);
	if (given(op, POLICY_OPT_MIN_VERSION))
		puts_(o,
		      op->min_version == POLICY_TLS1_3 ? " min-version=1.3" : " min-version=1.2");
	if (op->ciphers)
		put_opt(o, POLICY_OPT_CIPHERS, op->ciphers);
	if (op->ciphersuites)
		put_opt(o, POLICY_OPT_CIPHERSUITES, op->ciphersuites);
	if (given(op, POLICY_OPT_HANDSHAKE_TIMEOUT)) {
		unsigned ms = op->handshake_timeout_ms;
		char frac[8];
		size_t n;

		/* Shortest decimal that parses back to the same milliseconds. */
		snprintf(frac, sizeof(frac), "%03u", ms % 1000);
		n = strlen(frac);
		while (n > 0 && frac[n - 1] == '0')
			frac[--n] = '\0';
		putf(o, " handshake-timeout=%u%s%s", ms / 1000, n ? "." : "", frac);
	}
	if (op->starttls != POLICY_STARTTLS_NONE)
		putf(o, " starttls=%s", policy_starttls_str(op->starttls));
	if (given(op, POLICY_OPT_EXPIRY_WARN))
		putf(o, " expiry-warn=%u", op->expiry_warn_days);
}

int policy_format_rule(const struct policy_rule *r, char *buf, size_t len)
{
	struct out o = {.buf = buf, .len = len};

	if (len > 0)
		buf[0] = '\0';
	putf(&o, "%s ", policy_dir_str(r->dir));
	put_host(&o, r);
	switch (r->port_kind) {
	case POLICY_PORT_ONE:
		putf(&o, ":%u", r->port_lo);
		break;
	case POLICY_PORT_RANGE:
		putf(&o, ":%u-%u", r->port_lo, r->port_hi);
		break;
	default:
		puts_(&o, ":*");
		break;
	}
	putf(&o, " %s", policy_action_str(r->action));
	put_opts(&o, &r->opt);
	return (int)o.pos;
}
