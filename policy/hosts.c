/*
 * hosts.c - host names and addresses: the HOST[:PORTS] word of a rule (a name,
 * "*.suffix", "*", an IPv4 or bracketed IPv6 address or network, then a port,
 * a range or '*'), the HOST:PORT endpoint `tlsshim explain` takes, and the
 * name and address checks index.c and format.c share.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "parse.h"

static int is_digit(unsigned char ch)
{
	return ch >= '0' && ch <= '9';
}

static int is_alnum(unsigned char ch)
{
	return is_digit(ch) || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

int policy_name_norm(const char *s, size_t n, char *out, const char **why, size_t *at)
{
	size_t i, label = 0, start = 0;

	if (n > 0 && s[n - 1] == '.')
		n--; /* one trailing dot: the absolute form of the same name */
	*at = 0;
	if (n == 0) {
		*why = "empty name";
		return -1;
	}
	if (n > POLICY_NAME_MAX) {
		*why = "name longer than 253 bytes";
		return -1;
	}
	for (i = 0; i <= n; i++) {
		unsigned char ch = i < n ? (unsigned char)s[i] : '.';

		if (ch == '.') {
			*at = start;
			if (label == 0) {
				*why = "empty label";
				return -1;
			}
			if (label > 63) {
				*why = "label longer than 63 bytes";
				return -1;
			}
			if (s[start] == '-' || s[i - 1] == '-') {
				*why = "label starts or ends with '-'";
				return -1;
			}
			out[i] = '.';
			label = 0;
			start = i + 1;
			continue;
		}
		/* ASCII only, whatever locale the program set: DNS names are ASCII. */
		if (!is_alnum(ch) && ch != '-' && ch != '_') {
			*at = i;
			*why = "invalid character";
			return -1;
		}
		out[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
		label++;
	}
	out[n] = '\0';
	return (int)n;
}

int policy_addr_is_mapped(const unsigned char a[16])
{
	static const unsigned char prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	return memcmp(a, prefix, sizeof(prefix)) == 0;
}

/*
 * IPv4 text <-> bytes without libc's inet_pton/inet_ntop: the policy is parsed
 * at the start of every process the shim is loaded into, and inet_ntop pulls in
 * sprintf (pages /bin/true never touches). The same strict grammar as glibc's
 * inet_pton(AF_INET): exactly four decimal parts 0-255, no leading zeros.
 */
int policy_ipv4_parse(const char *s, size_t n, unsigned char out[4])
{
	unsigned parts = 0, v = 0, digits = 0;
	size_t i;

	for (i = 0; i <= n; i++) {
		if (i < n && s[i] >= '0' && s[i] <= '9') {
			if (digits > 0 && v == 0)
				return -1;
			v = v * 10 + (unsigned)(s[i] - '0');
			if (v > 255)
				return -1;
			digits++;
			continue;
		}
		if (digits == 0 || parts == 4 || (i < n && s[i] != '.'))
			return -1;
		out[parts++] = (unsigned char)v;
		v = 0;
		digits = 0;
	}
	return parts == 4 ? 0 : -1;
}

size_t policy_ipv4_text(const unsigned char a[4], char out[16])
{
	size_t k = 0;
	int i;

	for (i = 0; i < 4; i++) {
		unsigned v = a[i];

		if (i > 0)
			out[k++] = '.';
		if (v >= 100)
			out[k++] = (char)('0' + v / 100);
		if (v >= 10)
			out[k++] = (char)('0' + v / 10 % 10);
		out[k++] = (char)('0' + v % 10);
	}
	out[k] = '\0';
	return k;
}

/* Bytes of IPv6 text: no ':' means it cannot be one (saves calling inet_pton). */
int hosts_ipv6_parse(const char *z, unsigned char out[16])
{
	return strchr(z, ':') && inet_pton(AF_INET6, z, out) == 1 ? 0 : -1;
}

/* The text of address A of FAMILY into OUT (INET6_ADDRSTRLEN bytes); NULL on failure. */
static const char *addr_text(int family, const unsigned char *a, char *out, socklen_t len)
{
	if (family == AF_INET && len >= 16) {
		policy_ipv4_text(a, out);
		return out;
	}
	return inet_ntop(family, a, out, len);
}

static int host_bits_set(const unsigned char *a, unsigned bits, unsigned prefix)
{
	unsigned i;

	for (i = prefix; i < bits; i++)
		if (a[i / 8] & (0x80u >> (i % 8)))
			return 1;
	return 0;
}

static void clear_host_bits(unsigned char *a, unsigned bits, unsigned prefix)
{
	unsigned i;

	for (i = prefix; i < bits; i++)
		a[i / 8] &= (unsigned char)~(0x80u >> (i % 8));
}

/* Stores the address of R as text: "10.0.0.0" or "2001:db8::". */
static int set_addr_text(struct pctx *c, struct policy_rule *r)
{
	char buf[INET6_ADDRSTRLEN];

	if (!addr_text(r->family, r->addr, buf, sizeof(buf)))
		return -1;
	r->host = mem_strdup(&c->p->mem, buf);
	return r->host ? 0 : -1;
}

/* Formats the network R would be without host bits, for the "did you mean" hint. */
static void network_hint(const struct policy_rule *r, char *out, size_t len)
{
	unsigned char a[16];
	char buf[INET6_ADDRSTRLEN] = "?";

	memcpy(a, r->addr, sizeof(a));
	clear_host_bits(a, r->family == AF_INET ? 32 : 128, r->prefix);
	addr_text(r->family, a, buf, sizeof(buf));
	if (r->family == AF_INET)
		snprintf(out, len, "%s/%u", buf, r->prefix);
	else
		snprintf(out, len, "[%s/%u]", buf, r->prefix);
}

/*
 * Sets R's address from the IPv6 text [S, S+N) with PREFIX (-1: none). An
 * IPv4-mapped address becomes the IPv4 address, so that rule and query agree.
 */
static int host_ipv6(struct pctx *c, struct policy_rule *r, const char *s, size_t n, long prefix,
		     unsigned col, unsigned pcol)
{
	char buf[INET6_ADDRSTRLEN + 1], shown[96];
	unsigned char a[16];
	const char *pct = memchr(s, '%', n);

	if (pct) {
		parse_report(c, parse_col(c, pct), "zone ids ('%s') are not allowed in rules",
			     policy_shown(pct, n - (size_t)(pct - s), shown, sizeof(shown)));
		return -1;
	}
	if (n >= sizeof(buf))
		goto bad;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (hosts_ipv6_parse(buf, a) != 0) {
		if (policy_ipv4_parse(buf, n, a) == 0) {
			parse_report(c, col, "IPv4 addresses are written without brackets: %s",
				     buf);
			return -1;
		}
		goto bad;
	}
	if (prefix > 128) {
		parse_report(c, pcol, "expected a prefix length 0-128, got '%ld'", prefix);
		return -1;
	}
	if (policy_addr_is_mapped(a) && (prefix < 0 || prefix >= 96)) {
		r->family = AF_INET;
		memcpy(r->addr, a + 12, 4);
		r->prefix = prefix < 0 ? 32 : (unsigned)prefix - 96;
	} else {
		r->family = AF_INET6;
		memcpy(r->addr, a, 16);
		r->prefix = prefix < 0 ? 128 : (unsigned)prefix;
	}
	r->host_kind = prefix < 0 ? POLICY_HOST_ADDR : POLICY_HOST_CIDR;
	return 0;
bad:
	parse_report(c, col, "invalid IPv6 address '%s'", policy_shown(s, n, shown, sizeof(shown)));
	return -1;
}

/* "[v6]", "[v6/len]" or "[v6]/len", up to (not including) any ":ports". *END is set past it. */
static int host_bracketed(struct pctx *c, struct policy_rule *r, const char *s, size_t n,
			  const char **end)
{
	const char *close = memchr(s, ']', n);
	const char *in = s + 1, *slash, *after;
	size_t inlen;
	long prefix = -1;
	unsigned pcol = 0;
	char shown[96];

	if (!close) {
		parse_report(c, parse_col(c, s), "missing ']' in '%s'",
			     policy_shown(s, n, shown, sizeof(shown)));
		return -1;
	}
	inlen = (size_t)(close - in);
	after = close + 1;
	slash = memchr(in, '/', inlen);
	if (slash) {
		pcol = parse_col(c, slash + 1);
		prefix = parse_dec(slash + 1, (size_t)(close - slash - 1), 3);
		if (prefix < 0) {
			parse_report(c, pcol, "expected a prefix length 0-128, got '%s'",
				     policy_shown(slash + 1, (size_t)(close - slash - 1), shown,
						  sizeof(shown)));
			return -1;
		}
		inlen = (size_t)(slash - in);
	}
	if (after < s + n && *after == '/') {
		const char *p = after + 1;
		const char *colon = memchr(p, ':', (size_t)(s + n - p));
		const char *pe = colon ? colon : s + n;

		if (slash) {
			parse_report(c, parse_col(c, after), "two prefix lengths in '%s'",
				     policy_shown(s, n, shown, sizeof(shown)));
			return -1;
		}
		pcol = parse_col(c, p);
		prefix = parse_dec(p, (size_t)(pe - p), 3);
		if (prefix < 0) {
			parse_report(c, pcol, "expected a prefix length 0-128, got '%s'",
				     policy_shown(p, (size_t)(pe - p), shown, sizeof(shown)));
			return -1;
		}
		after = pe;
	}
	if (after < s + n && *after != ':') {
		parse_report(c, parse_col(c, after), "expected ':' and ports after ']', got '%s'",
			     policy_shown(after, (size_t)(s + n - after), shown, sizeof(shown)));
		return -1;
	}
	*end = after;
	return host_ipv6(c, r, in, inlen, prefix, parse_col(c, s), pcol);
}

static int host_ipv4(struct pctx *c, struct policy_rule *r, const char *s, size_t n)
{
	const char *slash = memchr(s, '/', n);
	size_t alen = slash ? (size_t)(slash - s) : n;
	char shown[96];

	/* Only the strict dotted quad: no "10.1", no octal. */
	if (policy_ipv4_parse(s, alen, r->addr) != 0)
		goto bad;
	r->family = AF_INET;
	r->prefix = 32;
	r->host_kind = POLICY_HOST_ADDR;
	if (slash) {
		size_t plen = n - alen - 1;
		long prefix = parse_dec(slash + 1, plen, 2);

		if (prefix < 0 || prefix > 32) {
			parse_report(c, parse_col(c, slash + 1),
				     "expected a prefix length 0-32, got '%s'",
				     policy_shown(slash + 1, plen, shown, sizeof(shown)));
			return -1;
		}
		r->prefix = (unsigned)prefix;
		r->host_kind = POLICY_HOST_CIDR;
	}
	return 0;
bad:
	parse_report(c, parse_col(c, s),
		     "invalid IPv4 address '%s' (expected a dotted quad like 10.0.0.1)",
		     policy_shown(s, alen, shown, sizeof(shown)));
	return -1;
}

int policy_looks_numeric(const char *s, size_t n)
{
	size_t i = n;

	if (i > 0 && s[i - 1] == '.')
		i--;
	if (i == 0 || !is_digit((unsigned char)s[i - 1]))
		return 0;
	while (i > 0 && s[i - 1] != '.' && s[i - 1] != '/') {
		if (!is_digit((unsigned char)s[i - 1]))
			return 0;
		i--;
	}
	return 1;
}

static int host_name(struct pctx *c, struct policy_rule *r, const char *s, size_t n)
{
	char out[POLICY_NAME_MAX + 1], shown[96];
	const char *why, *star = memchr(s, '*', n);
	size_t at;
	int kind = POLICY_HOST_NAME;

	if (n == 1 && s[0] == '*') {
		r->host_kind = POLICY_HOST_ANY;
		r->host = mem_strdup(&c->p->mem, "*");
		return r->host ? 0 : -1;
	}
	if (n >= 2 && s[0] == '*' && s[1] == '.') {
		kind = POLICY_HOST_SUFFIX;
		s += 2;
		n -= 2;
		star = memchr(s, '*', n);
	}
	if (star) {
		parse_report(c, parse_col(c, star),
			     "'*' must be a whole leftmost label, as in '*.example.com'");
		return -1;
	}
	if (kind == POLICY_HOST_NAME && (memchr(s, '/', n) || policy_looks_numeric(s, n)))
		return host_ipv4(c, r, s, n);
	if (policy_name_norm(s, n, out, &why, &at) < 0) {
		parse_report(c, parse_col(c, s + at), "invalid host name '%s': %s",
			     policy_shown(s, n, shown, sizeof(shown)), why);
		return -1;
	}
	r->host_kind = kind;
	r->host = mem_strdup(&c->p->mem, out);
	return r->host ? 0 : -1;
}

/* ---- ports and the target word ------------------------------------------------------ */

static long port_num(struct pctx *c, const char *s, size_t n)
{
	long v = parse_dec(s, n, 5);
	char shown[96];

	if (v < 1 || v > 65535) {
		parse_report(c, parse_col(c, s),
			     "expected a port 1-65535, '*' or a range LO-HI, got '%s'",
			     policy_shown(s, n, shown, sizeof(shown)));
		return -1;
	}
	return v;
}

static int parse_ports(struct pctx *c, struct policy_rule *r, const char *s, size_t n)
{
	const char *dash = memchr(s, '-', n);
	long lo, hi;

	if (n == 1 && s[0] == '*') {
		r->port_kind = POLICY_PORT_ANY;
		r->port_lo = 1;
		r->port_hi = 65535;
		return 0;
	}
	if (!dash) {
		lo = port_num(c, s, n);
		if (lo < 0)
			return -1;
		r->port_kind = POLICY_PORT_ONE;
		r->port_lo = r->port_hi = (uint16_t)lo;
		return 0;
	}
	lo = port_num(c, s, (size_t)(dash - s));
	hi = port_num(c, dash + 1, (size_t)(s + n - dash - 1));
	if (lo < 0 || hi < 0)
		return -1;
	if (lo > hi) {
		parse_report(c, parse_col(c, s),
			     "port range %ld-%ld is empty: the low port comes first", lo, hi);
		return -1;
	}
	r->port_kind = POLICY_PORT_RANGE;
	r->port_lo = (uint16_t)lo;
	r->port_hi = (uint16_t)hi;
	return 0;
}

/*
 * In an accept rule the target is the listening socket's address, and a
 * program listening on 0.0.0.0 or [::] takes connections on every local
 * address: those addresses name the wildcard listener, never an address a
 * connection arrives on, and are read as "*". Both families: a [::] listener
 * takes IPv4 clients too (as ::ffff:a.b.c.d), and a program told to listen
 * on 0.0.0.0 often listens on [::] as well (redis, nginx); a rule that left
 * one of them in cleartext would be a trap. 0.0.0.0/0 and [::/0] name one
 * family. Read as exact addresses, the rule would match nothing at all.
 */
static int accept_wildcard(struct pctx *c, struct policy_rule *r)
{
	static const unsigned char zero[16];

	if (memcmp(r->addr, zero, r->family == AF_INET ? 4 : 16) != 0)
		return 0;
	r->host_kind = POLICY_HOST_ANY;
	r->family = 0;
	r->prefix = 0;
	r->host = mem_strdup(&c->p->mem, "*");
	return r->host ? 0 : -1;
}

/* HOST[:PORTS] */
int hosts_target(struct pctx *c, struct policy_rule *r, const struct tok *t)
{
	const char *s = t->raw, *end = s + t->rawlen, *hend, *colon;
	char shown[96];
	int rc;

	r->port_kind = POLICY_PORT_ANY;
	r->port_lo = 1;
	r->port_hi = 65535;
	if (s[0] == '[') {
		if (host_bracketed(c, r, s, t->rawlen, &hend) < 0)
			return -1;
		if (set_addr_text(c, r) < 0)
			return -1;
	} else {
		colon = memchr(s, ':', t->rawlen);
		if (colon && memchr(colon + 1, ':', (size_t)(end - colon - 1))) {
			parse_report(c, t->col, "IPv6 addresses must be in brackets, as in '[%s]'",
				     policy_shown(s, t->rawlen, shown, sizeof(shown)));
			return -1;
		}
		hend = colon ? colon : end;
		if (hend == s) {
			parse_report(c, t->col, "expected a host before ':'");
			return -1;
		}
		rc = host_name(c, r, s, (size_t)(hend - s));
		if (rc < 0)
			return -1;
		if (r->host_kind == POLICY_HOST_ADDR || r->host_kind == POLICY_HOST_CIDR) {
			if (set_addr_text(c, r) < 0)
				return -1;
		}
	}
	if (r->dir == POLICY_ACCEPT && r->host_kind == POLICY_HOST_ADDR &&
	    accept_wildcard(c, r) < 0)
		return -1;
	if (r->host_kind == POLICY_HOST_CIDR &&
	    host_bits_set(r->addr, r->family == AF_INET ? 32 : 128, r->prefix)) {
		char hint[INET6_ADDRSTRLEN + 8];

		network_hint(r, hint, sizeof(hint));
		parse_report(c, t->col, "%s has host bits set; did you mean %s?",
			     policy_shown(s, (size_t)(hend - s), shown, sizeof(shown)), hint);
		return -1;
	}
	if (hend == end)
		return 0;
	if (hend + 1 == end) {
		parse_report(c, parse_col(c, end),
			     "expected a port 1-65535, '*' or a range LO-HI after ':'");
		return -1;
	}
	return parse_ports(c, r, hend + 1, (size_t)(end - hend - 1));
}

/* Contract in policy.h. */
const char *policy_search_domain(const char *name, const char *canon)
{
	size_t n;

	if (name == NULL || canon == NULL)
		return NULL;
	n = strlen(name);
	if (n == 0 || name[n - 1] == '.' || strncasecmp(canon, name, n) != 0 || canon[n] != '.')
		return NULL;
	return canon + n + 1;
}

/* Contract in policy.h. */
const char *policy_search_completion(const char *name, const char *canon,
				     const char *const *domains, size_t max)
{
	const char *dom = policy_search_domain(name, canon);
	size_t dl;

	if (dom == NULL || domains == NULL)
		return NULL;
	dl = strlen(dom);
	if (dl > 0 && dom[dl - 1] == '.')
		dl--;
	for (size_t i = 0; i < max && domains[i] != NULL; i++) {
		size_t sl = strlen(domains[i]);

		if (sl > 0 && domains[i][sl - 1] == '.')
			sl--;
		if (sl == dl && dl > 0 && strncasecmp(dom, domains[i], dl) == 0)
			return canon;
	}
	return NULL;
}

/* ---- endpoints ---------------------------------------------------------------------- */

static int endpoint_port(const char *s, uint16_t *port)
{
	long v = parse_dec(s, strlen(s), 5);

	if (v < 1 || v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

/* The host HOST (HN bytes, NUL-terminated; BRACKETED: it was in "[...]") into Q. */
static int endpoint_host(const char *host, size_t hn, int bracketed, struct policy_query *q,
			 char *namebuf, size_t namelen, char *err, size_t errlen)
{
	char shown[96], norm[POLICY_NAME_MAX + 1];
	const char *why;
	size_t at;
	int rc;

	q->name = NULL;
	q->family = 0;
	memset(q->addr, 0, sizeof(q->addr));
	if (bracketed) {
		if (strchr(host, '%') || inet_pton(AF_INET6, host, q->addr) != 1) {
			snprintf(err, errlen, "invalid IPv6 address '%s'",
				 policy_shown(host, hn, shown, sizeof(shown)));
			return -1;
		}
		q->family = AF_INET6;
		return 0;
	}
	if (policy_ipv4_parse(host, hn, q->addr) == 0) {
		q->family = AF_INET;
		return 0;
	}
	if (policy_looks_numeric(host, hn)) {
		snprintf(err, errlen,
			 "invalid IPv4 address '%s' (expected a dotted quad like 10.0.0.1)",
			 policy_shown(host, hn, shown, sizeof(shown)));
		return -1;
	}
	rc = policy_name_norm(host, hn, norm, &why, &at);
	if (rc < 0) {
		snprintf(err, errlen, "invalid host name '%s': %s",
			 policy_shown(host, hn, shown, sizeof(shown)), why);
		return -1;
	}
	if ((size_t)rc >= namelen) {
		snprintf(err, errlen, "host name too long");
		return -1;
	}
	memcpy(namebuf, norm, (size_t)rc + 1);
	q->name = namebuf;
	return 0;
}

int policy_parse_endpoint(const char *s, struct policy_query *q, char *namebuf, size_t namelen,
			  char *err, size_t errlen)
{
	char host[POLICY_NAME_MAX + 2], shown[96];
	const char *colon, *hs;
	size_t hn;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':') {
			snprintf(err, errlen, "expected [IPv6]:PORT, got '%s'",
				 policy_shown(s, strlen(s), shown, sizeof(shown)));
			return -1;
		}
		hs = s + 1;
		hn = (size_t)(close - hs);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon) {
			snprintf(err, errlen, "expected HOST:PORT, got '%s'",
				 policy_shown(s, strlen(s), shown, sizeof(shown)));
			return -1;
		}
		if (memchr(s, ':', (size_t)(colon - s))) {
			snprintf(err, errlen, "IPv6 addresses must be in brackets: [ADDRESS]:PORT");
			return -1;
		}
		hs = s;
		hn = (size_t)(colon - s);
	}
	if (endpoint_port(colon + 1, &q->port) < 0) {
		snprintf(err, errlen, "expected a port 1-65535, got '%s'",
			 policy_shown(colon + 1, strlen(colon + 1), shown, sizeof(shown)));
		return -1;
	}
	if (hn == 0 || hn >= sizeof(host)) {
		snprintf(err, errlen, "expected a host name or address before ':'");
		return -1;
	}
	memcpy(host, hs, hn);
	host[hn] = '\0';
	return endpoint_host(host, hn, s[0] == '[', q, namebuf, namelen, err, errlen);
}
