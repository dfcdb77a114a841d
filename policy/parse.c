/*
 * parse.c - the policy language: text -> rules (see the contract's "Policy
 * language"). Each rule is checked on its own; whole-table checks (ties) and
 * indexing are in index.c. Every error becomes a diagnostic and parsing goes
 * on, so that one `check` shows all of them.
 *
 * This library is linked into the preload library, whose hooks are named
 * read/close/...: file access here is stdio, stat() and access() only.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* One parse: where diagnostics go and which line we are on. */
struct pctx {
	struct policy *p;
	struct policy_diags *d;
	const char *source;
	unsigned line;
	const char *lstart; /* start of the current line, for columns */
	unsigned errors;
	/* Relative file paths are relative to this directory (a policy file's), or, if
	 * NULL, to the working directory; relative BASE is itself relative to it. */
	const char *base;
	size_t base_len;
	char *source_copy; /* SOURCE in the table's arena, made with the first rule */
};

/* One word of a rule. */
struct tok {
	const char *raw; /* as written, in the line */
	size_t rawlen;
	unsigned col;
	char *val;     /* unquoted and unescaped (scratch memory of parse_line()) */
	size_t len;    /* strlen(val) (a value cannot hold NUL: the text is a C string) */
	size_t eq;     /* offset in val of the first unquoted '=', or (size_t)-1 */
	unsigned vcol; /* column of the value after '=' */
};

#define NO_EQ ((size_t)-1)

static void report(struct pctx *c, unsigned col, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void report(struct pctx *c, unsigned col, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	policy_diag_add(c->d, c->source, c->line, col, "%s", msg);
	c->errors++;
}

static unsigned col_of(const struct pctx *c, const char *at)
{
	return (unsigned)(at - c->lstart) + 1;
}

/* ---- names and addresses ------------------------------------------------------------ */

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
static int ipv6_parse(const char *z, unsigned char out[16])
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

/* Parses a decimal number of at most MAXDIGITS digits, all of [S, S+N). Returns it or -1. */
static long parse_dec(const char *s, size_t n, size_t maxdigits)
{
	long v = 0;
	size_t i;

	if (n == 0 || n > maxdigits)
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
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
		report(c, col_of(c, pct), "zone ids ('%s') are not allowed in rules",
		       policy_shown(pct, n - (size_t)(pct - s), shown, sizeof(shown)));
		return -1;
	}
	if (n >= sizeof(buf))
		goto bad;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (ipv6_parse(buf, a) != 0) {
		if (policy_ipv4_parse(buf, n, a) == 0) {
			report(c, col, "IPv4 addresses are written without brackets: %s", buf);
			return -1;
		}
		goto bad;
	}
	if (prefix > 128) {
		report(c, pcol, "expected a prefix length 0-128, got '%ld'", prefix);
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
	report(c, col, "invalid IPv6 address '%s'", policy_shown(s, n, shown, sizeof(shown)));
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
		report(c, col_of(c, s), "missing ']' in '%s'",
		       policy_shown(s, n, shown, sizeof(shown)));
		return -1;
	}
	inlen = (size_t)(close - in);
	after = close + 1;
	slash = memchr(in, '/', inlen);
	if (slash) {
		pcol = col_of(c, slash + 1);
		prefix = parse_dec(slash + 1, (size_t)(close - slash - 1), 3);
		if (prefix < 0) {
			report(c, pcol, "expected a prefix length 0-128, got '%s'",
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
			report(c, col_of(c, after), "two prefix lengths in '%s'",
			       policy_shown(s, n, shown, sizeof(shown)));
			return -1;
		}
		pcol = col_of(c, p);
		prefix = parse_dec(p, (size_t)(pe - p), 3);
		if (prefix < 0) {
			report(c, pcol, "expected a prefix length 0-128, got '%s'",
			       policy_shown(p, (size_t)(pe - p), shown, sizeof(shown)));
			return -1;
		}
		after = pe;
	}
	if (after < s + n && *after != ':') {
		report(c, col_of(c, after), "expected ':' and ports after ']', got '%s'",
		       policy_shown(after, (size_t)(s + n - after), shown, sizeof(shown)));
		return -1;
	}
	*end = after;
	return host_ipv6(c, r, in, inlen, prefix, col_of(c, s), pcol);
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
			report(c, col_of(c, slash + 1), "expected a prefix length 0-32, got '%s'",
			       policy_shown(slash + 1, plen, shown, sizeof(shown)));
			return -1;
		}
		r->prefix = (unsigned)prefix;
		r->host_kind = POLICY_HOST_CIDR;
	}
	return 0;
bad:
	report(c, col_of(c, s), "invalid IPv4 address '%s' (expected a dotted quad like 10.0.0.1)",
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
		report(c, col_of(c, star),
		       "'*' must be a whole leftmost label, as in '*.example.com'");
		return -1;
	}
	if (kind == POLICY_HOST_NAME && (memchr(s, '/', n) || policy_looks_numeric(s, n)))
		return host_ipv4(c, r, s, n);
	if (policy_name_norm(s, n, out, &why, &at) < 0) {
		report(c, col_of(c, s + at), "invalid host name '%s': %s",
		       policy_shown(s, n, shown, sizeof(shown)), why);
		return -1;
	}
	r->host_kind = kind;
	r->host = mem_strdup(&c->p->mem, out);
	return r->host ? 0 : -1;
}

/* ---- ports -------------------------------------------------------------------------- */

static long port_num(struct pctx *c, const char *s, size_t n)
{
	long v = parse_dec(s, n, 5);
	char shown[96];

	if (v < 1 || v > 65535) {
		report(c, col_of(c, s), "expected a port 1-65535, '*' or a range LO-HI, got '%s'",
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
		report(c, col_of(c, s), "port range %ld-%ld is empty: the low port comes first", lo,
		       hi);
		return -1;
	}
	r->port_kind = POLICY_PORT_RANGE;
	r->port_lo = (uint16_t)lo;
	r->port_hi = (uint16_t)hi;
	return 0;
}

/* HOST[:PORTS] */
static int parse_target(struct pctx *c, struct policy_rule *r, const struct tok *t)
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
			report(c, t->col, "IPv6 addresses must be in brackets, as in '[%s]'",
			       policy_shown(s, t->rawlen, shown, sizeof(shown)));
			return -1;
		}
		hend = colon ? colon : end;
		if (hend == s) {
			report(c, t->col, "expected a host before ':'");
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
	if (r->host_kind == POLICY_HOST_CIDR &&
	    host_bits_set(r->addr, r->family == AF_INET ? 32 : 128, r->prefix)) {
		char hint[INET6_ADDRSTRLEN + 8];

		network_hint(r, hint, sizeof(hint));
		report(c, t->col, "%s has host bits set; did you mean %s?",
		       policy_shown(s, (size_t)(hend - s), shown, sizeof(shown)), hint);
		return -1;
	}
	if (hend == end)
		return 0;
	if (hend + 1 == end) {
		report(c, col_of(c, end),
		       "expected a port 1-65535, '*' or a range LO-HI after ':'");
		return -1;
	}
	return parse_ports(c, r, hend + 1, (size_t)(end - hend - 1));
}

/* ---- options ------------------------------------------------------------------------ */

enum { ON_CONNECT = 1, ON_ACCEPT = 2 };

static const struct opt_def {
	const char *name;
	unsigned dirs;
	int flag;   /* takes no value */
	int repeat; /* may be given more than once (values accumulate) */
} opt_defs[POLICY_OPT_COUNT] = {
    /* Not on accept: client certificates verify only against client-ca. */
    [POLICY_OPT_CA] = {"ca", ON_CONNECT, 0, 0},
    [POLICY_OPT_CERT] = {"cert", ON_CONNECT | ON_ACCEPT, 0, 0},
    [POLICY_OPT_KEY] = {"key", ON_CONNECT | ON_ACCEPT, 0, 0},
    [POLICY_OPT_SNI] = {"sni", ON_CONNECT, 0, 0},
    [POLICY_OPT_NAME] = {"name", ON_CONNECT, 0, 0},
    [POLICY_OPT_INSECURE] = {"insecure", ON_CONNECT, 1, 0},
    [POLICY_OPT_CLIENT_CA] = {"client-ca", ON_ACCEPT, 0, 0},
    [POLICY_OPT_ALLOW] = {"allow", ON_ACCEPT, 0, 1},
    [POLICY_OPT_PIN] = {"pin", ON_CONNECT, 0, 1},
    [POLICY_OPT_ALPN] = {"alpn", ON_CONNECT | ON_ACCEPT, 0, 0},
    [POLICY_OPT_MIN_VERSION] = {"min-version", ON_CONNECT | ON_ACCEPT, 0, 0},
    [POLICY_OPT_CIPHERS] = {"ciphers", ON_CONNECT | ON_ACCEPT, 0, 0},
    [POLICY_OPT_CIPHERSUITES] = {"ciphersuites", ON_CONNECT | ON_ACCEPT, 0, 0},
    [POLICY_OPT_HANDSHAKE_TIMEOUT] = {"handshake-timeout", ON_CONNECT | ON_ACCEPT, 0, 0},
    [POLICY_OPT_STARTTLS] = {"starttls", ON_CONNECT | ON_ACCEPT, 0, 0},
    [POLICY_OPT_EXPIRY_WARN] = {"expiry-warn", ON_CONNECT | ON_ACCEPT, 0, 0},
};

static const char *const starttls_names[] = {NULL, "postgres", "smtp", "imap"};

const char *policy_starttls_str(enum policy_starttls s)
{
	if ((unsigned)s >= sizeof(starttls_names) / sizeof(starttls_names[0]))
		return NULL;
	return starttls_names[s];
}

/* starttls=PROTO (the direction is checked in parse_opts). */
static int opt_starttls(struct pctx *c, struct policy_opts *o, const struct tok *t, const char *v,
			size_t n)
{
	char shown[96];

	for (size_t i = 1; i < sizeof(starttls_names) / sizeof(starttls_names[0]); i++) {
		if (strcmp(v, starttls_names[i]) == 0) {
			o->starttls = (int)i;
			return 0;
		}
	}
	report(c, t->vcol, "starttls: expected 'postgres', 'smtp' or 'imap', got '%s'",
	       policy_shown(v, n, shown, sizeof(shown)));
	return -1;
}

const char *policy_opt_str(enum policy_opt o)
{
	if ((unsigned)o >= POLICY_OPT_COUNT)
		return "?";
	return opt_defs[o].name;
}

/* Optimal-string-alignment distance (a swap counts as one edit), for "did you mean". */
static size_t edit_distance(const char *a, size_t n, const char *b)
{
	size_t m = strlen(b), i, j;
	size_t d[24][24];

	if (n >= 24 || m >= 24)
		return (size_t)-1;
	for (i = 0; i <= n; i++)
		d[i][0] = i;
	for (j = 0; j <= m; j++)
		d[0][j] = j;
	for (i = 1; i <= n; i++) {
		for (j = 1; j <= m; j++) {
			size_t cost = a[i - 1] != b[j - 1];
			size_t v = d[i - 1][j] + 1;

			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (d[i - 1][j - 1] + cost < v)
				v = d[i - 1][j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	}
	return d[n][m];
}

static const char *suggest_opt(const char *name, size_t n)
{
	const char *best = NULL;
	size_t best_d = 3, i; /* farther than 2 edits is not a typo */

	for (i = 0; i < POLICY_OPT_COUNT; i++) {
		size_t dist = edit_distance(name, n, opt_defs[i].name);

		if (dist < best_d && dist < n) {
			best_d = dist;
			best = opt_defs[i].name;
		}
	}
	return best;
}

static int find_opt(const char *name, size_t n)
{
	int i;

	for (i = 0; i < POLICY_OPT_COUNT; i++)
		if (strlen(opt_defs[i].name) == n && memcmp(opt_defs[i].name, name, n) == 0)
			return i;
	return -1;
}

/*
 * PATH as an absolute path (in the table's arena), so the file checked now is the file
 * opened at the first wrapped connection, whatever directory the program has
 * moved to by then. A relative path in a policy file is relative to the file's
 * directory; in TLSSHIM_POLICY, to the working directory. Not canonicalised
 * ("..", symlinks): that is the kernel's business at open time. An empty
 * value stays empty (and is reported as unreadable). NULL: no memory, or no
 * working directory (reported).
 */
static char *abs_path(struct pctx *c, const struct tok *t, const char *path)
{
	char pre[4096 + 1];
	size_t n = 0;
	char *out;

	if (path[0] == '/' || path[0] == '\0')
		return mem_strdup(&c->p->mem, path);
	if (c->base == NULL || c->base[0] != '/') {
		if (!getcwd(pre, sizeof(pre) - 1)) {
			report(c, t->vcol, "cannot make '%s' absolute: no working directory (%s)",
			       path, strerror(errno));
			return NULL;
		}
		n = strlen(pre);
	}
	if (c->base_len > 0) {
		if (n + 1 + c->base_len >= sizeof(pre)) {
			report(c, t->vcol, "cannot make '%s' absolute: the path is too long", path);
			return NULL;
		}
		if (n > 0 && pre[n - 1] != '/')
			pre[n++] = '/';
		memcpy(pre + n, c->base, c->base_len);
		n += c->base_len;
	}
	out = mem_alloc(&c->p->mem, n + strlen(path) + 2);
	if (out == NULL)
		return NULL;
	memcpy(out, pre, n);
	if (n == 0 || out[n - 1] != '/')
		out[n++] = '/';
	strcpy(out + n, path);
	return out;
}

/* Checks that PATH can be opened for reading (a directory too, for ca=). */
static int check_readable(struct pctx *c, const struct tok *t, const char *path, int dir_ok)
{
	struct stat st;
	char ebuf[128], shown[160];
	const char *why;

	/* The system policy's files may be readable only by some users: checked on use. */
	if (c->p->defer_file_checks)
		return 0;
	policy_shown(path, strlen(path), shown, sizeof(shown));
	/* Before main in every process: one system call (policy_quick_file_checks()). */
	if (c->p->quick_file_checks) {
		if (access(path, R_OK) < 0)
			goto fail;
		return 0;
	}
	if (stat(path, &st) < 0)
		goto fail;
	if (S_ISDIR(st.st_mode)) {
		if (!dir_ok) {
			report(c, t->vcol, "cannot read %s: it is a directory", shown);
			return -1;
		}
		if (access(path, R_OK | X_OK) < 0)
			goto fail;
		return 0;
	}
	/*
	 * access(): one syscall, no allocation. This runs at every start of
	 * every process that inherits the policy, so it must stay cheap.
	 */
	if (access(path, R_OK) < 0)
		goto fail;
	return 0;
fail:
	why = strerror_r(errno, ebuf, sizeof(ebuf));
	report(c, t->vcol, "cannot read %s: %s", shown, why);
	return -1;
}

static int b64_value(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return -1;
}

/* Decodes standard base64 (RFC 4648 section 4; padding optional) into OUT. Returns bytes or -1. */
static long b64_decode(const char *s, size_t n, unsigned char *out, size_t outlen)
{
	unsigned long acc = 0;
	size_t i, bits = 0, len = 0, pad = 0;

	while (pad < 2 && n > 0 && s[n - 1] == '=') {
		n--;
		pad++;
	}
	if (pad && (n + pad) % 4 != 0)
		return -1;
	if (n % 4 == 1)
		return -1;
	for (i = 0; i < n; i++) {
		int v = b64_value((unsigned char)s[i]);

		if (v < 0)
			return -1;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (len == outlen)
				return (long)len + 1; /* too long: the caller only needs to know */
			out[len++] = (unsigned char)(acc >> bits);
		}
	}
	/* Leftover bits must be zero, so that one hash has one spelling. */
	if (acc & ((1ul << bits) - 1))
		return -1;
	return (long)len;
}

static int opt_pin(struct pctx *c, struct policy_opts *o, const struct tok *t, const char *v,
		   size_t n)
{
	static const char pfx[] = "sha256/";
	unsigned char h[32];
	struct policy_pin *pins;
	long len;

	if (n < sizeof(pfx) - 1 || memcmp(v, pfx, sizeof(pfx) - 1) != 0) {
		report(c, t->vcol, "pin must be 'sha256/' followed by the base64 SPKI hash");
		return -1;
	}
	len = b64_decode(v + 7, n - 7, h, sizeof(h));
	if (len < 0) {
		report(c, t->vcol, "pin: invalid base64 after 'sha256/'");
		return -1;
	}
	if (len != 32) {
		report(c, t->vcol, "pin: a SHA-256 hash is 32 bytes, this decodes to %s%ld",
		       len > 32 ? "more than " : "", len > 32 ? 32L : len);
		return -1;
	}
	pins = mem_grow(&c->p->mem, o->pins, o->n_pins * sizeof(*pins),
			(o->n_pins + 1) * sizeof(*pins));
	if (!pins)
		return -1;
	o->pins = pins;
	memcpy(pins[o->n_pins++].sha256, h, 32);
	return 0;
}

/* Comma list -> ALPN wire format (RFC 7301 section 3.1: 8-bit lengths, 16-bit total). */
static int opt_alpn(struct pctx *c, struct policy_opts *o, const struct tok *t, const char *v,
		    size_t n)
{
	char *wire = mem_alloc(&c->p->mem, n + 1);
	size_t w = 0, i = 0;

	if (!wire)
		return -1;
	while (i <= n) {
		const char *comma = memchr(v + i, ',', n - i);
		size_t e = comma ? (size_t)(comma - v) : n;
		size_t plen = e - i;

		if (plen == 0 || plen > 255) {
			report(c, t->vcol,
			       "alpn: each protocol name is 1-255 bytes (comma-separated)");
			return -1;
		}
		wire[w++] = (char)plen;
		memcpy(wire + w, v + i, plen);
		w += plen;
		i = e + 1;
	}
	if (w > 65535) {
		report(c, t->vcol, "alpn: the list is longer than 65535 bytes");
		return -1;
	}
	o->alpn_wire = wire;
	o->alpn_wire_len = w;
	o->alpn = mem_strdup(&c->p->mem, v);
	return o->alpn ? 0 : -1;
}

static int opt_allow(struct pctx *c, struct policy_opts *o, const struct tok *t, const char *v,
		     size_t n)
{
	size_t i = 0;

	while (i <= n) {
		const char *comma = memchr(v + i, ',', n - i);
		size_t e = comma ? (size_t)(comma - v) : n;
		size_t plen = e - i;
		char **allow;
		char shown[96];

		if (!(plen > 3 && memcmp(v + i, "cn:", 3) == 0) &&
		    !(plen > 4 && memcmp(v + i, "dns:", 4) == 0) &&
		    !(plen > 4 && memcmp(v + i, "uri:", 4) == 0)) {
			report(c, t->vcol,
			       "allow: expected 'cn:PATTERN', 'dns:PATTERN' or 'uri:PATTERN', got "
			       "'%s'",
			       policy_shown(v + i, plen, shown, sizeof(shown)));
			return -1;
		}
		allow = mem_grow(&c->p->mem, o->allow, o->n_allow * sizeof(*allow),
				 (o->n_allow + 1) * sizeof(*allow));
		if (!allow)
			return -1;
		o->allow = allow;
		allow[o->n_allow] = mem_strndup(&c->p->mem, v + i, plen);
		if (!allow[o->n_allow])
			return -1;
		o->n_allow++;
		i = e + 1;
	}
	return 0;
}

/* Whole days, 0 (never warn) to POLICY_MAX_EXPIRY_WARN_DAYS: "14", "30". */
static int opt_expiry_warn(struct pctx *c, struct policy_opts *o, const struct tok *t,
			   const char *v, size_t n)
{
	long days = parse_dec(v, n, 6);
	char shown[96];

	if (days < 0) {
		report(c, t->vcol, "expiry-warn: expected a number of days such as '14', got '%s'",
		       policy_shown(v, n, shown, sizeof(shown)));
		return -1;
	}
	if (days > (long)POLICY_MAX_EXPIRY_WARN_DAYS) {
		report(c, t->vcol, "expiry-warn must be at most %u days",
		       POLICY_MAX_EXPIRY_WARN_DAYS);
		return -1;
	}
	o->expiry_warn_days = (unsigned)days;
	return 0;
}

/* Decimal seconds, up to millisecond precision: "10", "0.5", "2.25". */
static int opt_timeout(struct pctx *c, struct policy_opts *o, const struct tok *t, const char *v,
		       size_t n)
{
	const char *dot = memchr(v, '.', n);
	size_t ilen = dot ? (size_t)(dot - v) : n;
	long secs = parse_dec(v, ilen, 6), ms = 0; /* 6 digits: ms fits a 32-bit long */
	char shown[96];
	size_t i;

	if (secs < 0)
		goto bad;
	if (dot) {
		size_t flen = n - ilen - 1;

		if (flen == 0)
			goto bad;
		for (i = 0; i < flen; i++) {
			if (dot[1 + i] < '0' || dot[1 + i] > '9')
				goto bad;
			if (i < 3) {
				ms = ms * 10 + (dot[1 + i] - '0');
			} else if (dot[1 + i] != '0') {
				/* Finer than a millisecond: meaningless for a handshake. */
				report(c, t->vcol,
				       "handshake-timeout: at most 3 decimals (milliseconds)");
				return -1;
			}
		}
		for (i = flen; i < 3; i++)
			ms *= 10;
	}
	ms += secs * 1000;
	if (ms <= 0 || ms > 3600 * 1000) {
		report(c, t->vcol,
		       "handshake-timeout must be more than 0 and at most 3600 seconds");
		return -1;
	}
	o->handshake_timeout_ms = (unsigned)ms;
	return 0;
bad:
	report(c, t->vcol, "handshake-timeout: expected seconds such as '10' or '0.5', got '%s'",
	       policy_shown(v, n, shown, sizeof(shown)));
	return -1;
}

static int opt_sni(struct pctx *c, char **dst, const struct tok *t, const char *v, size_t n)
{
	char out[POLICY_NAME_MAX + 1];
	unsigned char a[16];
	const char *why;
	size_t at;

	if (policy_ipv4_parse(v, n, a) == 0 || ipv6_parse(v, a) == 0) {
		/* RFC 6066 section 3: "Literal IPv4 and IPv6 addresses are not permitted". */
		report(c, t->vcol, "sni must be a DNS name, not an address (RFC 6066)");
		return -1;
	}
	if (policy_name_norm(v, n, out, &why, &at) < 0) {
		report(c, t->vcol, "sni: invalid DNS name: %s", why);
		return -1;
	}
	*dst = mem_strdup(&c->p->mem, out);
	return *dst ? 0 : -1;
}

/* name=: a DNS name, or an address the certificate carries as an IP SAN. */
static int opt_name(struct pctx *c, char **dst, const struct tok *t, const char *v, size_t n)
{
	char out[INET6_ADDRSTRLEN > POLICY_NAME_MAX + 1 ? INET6_ADDRSTRLEN : POLICY_NAME_MAX + 1];
	unsigned char a[16];
	const char *why;
	size_t at;
	char buf[INET6_ADDRSTRLEN + 2];

	if (n >= 2 && v[0] == '[' && v[n - 1] == ']') {
		/* Brackets only around an IPv6 address, as in rules. */
		if (n - 2 >= sizeof(buf)) {
			report(c, t->vcol, "name: invalid IPv6 address in brackets");
			return -1;
		}
		memcpy(buf, v + 1, n - 2);
		buf[n - 2] = '\0';
		if (ipv6_parse(buf, a) != 0) {
			report(c, t->vcol, "name: invalid IPv6 address in brackets");
			return -1;
		}
		v = buf;
		n -= 2;
	}
	if (policy_ipv4_parse(v, n, a) == 0) {
		policy_ipv4_text(a, out);
	} else if (ipv6_parse(v, a) == 0) {
		inet_ntop(AF_INET6, a, out, sizeof(out));
	} else if (policy_name_norm(v, n, out, &why, &at) < 0) {
		report(c, t->vcol, "name: expected a DNS name or an IP address (%s)", why);
		return -1;
	}
	*dst = mem_strdup(&c->p->mem, out);
	return *dst ? 0 : -1;
}

/* Applies option token T (already known to be option ID with a value if it needs one). */
static int apply_opt(struct pctx *c, struct policy_opts *o, int id, const struct tok *t)
{
	int has = t->eq != NO_EQ; /* only flags have none; parse_opts() checked */
	const char *v = has ? t->val + t->eq + 1 : "";
	size_t n = has ? t->len - t->eq - 1 : 0;
	char **dst = NULL;
	int file = 0;

	switch (id) {
	case POLICY_OPT_CA:
		dst = &o->ca;
		file = 2;
		break;
	case POLICY_OPT_CERT:
		dst = &o->cert;
		file = 1;
		break;
	case POLICY_OPT_KEY:
		dst = &o->key;
		file = 1;
		break;
	case POLICY_OPT_CLIENT_CA:
		dst = &o->client_ca;
		file = 2;
		break;
	case POLICY_OPT_CIPHERS:
		dst = &o->ciphers;
		break;
	case POLICY_OPT_CIPHERSUITES:
		dst = &o->ciphersuites;
		break;
	case POLICY_OPT_SNI:
		return opt_sni(c, &o->sni, t, v, n);
	case POLICY_OPT_NAME:
		return opt_name(c, &o->name, t, v, n);
	case POLICY_OPT_INSECURE:
		o->insecure = 1;
		return 0;
	case POLICY_OPT_ALLOW:
		return opt_allow(c, o, t, v, n);
	case POLICY_OPT_PIN:
		return opt_pin(c, o, t, v, n);
	case POLICY_OPT_ALPN:
		return opt_alpn(c, o, t, v, n);
	case POLICY_OPT_MIN_VERSION:
		if (strcmp(v, "1.2") == 0) {
			o->min_version = POLICY_TLS1_2;
		} else if (strcmp(v, "1.3") == 0) {
			o->min_version = POLICY_TLS1_3;
		} else if (strcmp(v, "1.0") == 0 || strcmp(v, "1.1") == 0) {
			report(c, t->vcol,
			       "TLS %s is not supported (insecure); use min-version=1.2 or 1.3", v);
			return -1;
		} else {
			char shown[96];

			report(c, t->vcol, "min-version: expected '1.2' or '1.3', got '%s'",
			       policy_shown(v, n, shown, sizeof(shown)));
			return -1;
		}
		return 0;
	case POLICY_OPT_HANDSHAKE_TIMEOUT:
		return opt_timeout(c, o, t, v, n);
	case POLICY_OPT_STARTTLS:
		return opt_starttls(c, o, t, v, n);
	case POLICY_OPT_EXPIRY_WARN:
		return opt_expiry_warn(c, o, t, v, n);
	default:
		return -1;
	}
	if (!file) {
		*dst = mem_strdup(&c->p->mem, v);
		return *dst ? 0 : -1;
	}
	*dst = abs_path(c, t, v);
	if (*dst == NULL)
		return -1;
	return check_readable(c, t, *dst, file == 2);
}

/*
 * Parses the options T[0..N) into R; *SEEN gets a bit for each option named,
 * valid or not. DIR_OK: R->dir is known. Returns 0, or -1 (errors reported).
 */
static int parse_opts(struct pctx *c, struct policy_rule *r, const struct tok *t, size_t n,
		      int dir_ok, unsigned *seen)
{
	const struct tok *at[POLICY_OPT_COUNT] = {0};
	struct policy_opts *o = &r->opt;
	char shown[96];
	unsigned before = c->errors;
	size_t i;

	for (i = 0; i < n; i++) {
		const struct tok *tk = &t[i];
		size_t nlen = tk->eq == NO_EQ ? tk->len : tk->eq;
		int id = find_opt(tk->val, nlen);

		if (id < 0) {
			const char *hint = suggest_opt(tk->val, nlen);

			policy_shown(tk->val, nlen, shown, sizeof(shown));
			if (hint)
				report(c, tk->col, "unknown option '%s'; did you mean '%s'?", shown,
				       hint);
			else
				report(c, tk->col, "unknown option '%s'", shown);
			continue;
		}
		if (at[id] && !opt_defs[id].repeat) {
			report(c, tk->col, "duplicate option '%s' (first given at column %u)",
			       opt_defs[id].name, at[id]->col);
			continue;
		}
		if (!at[id])
			at[id] = tk;
		*seen |= 1u << id;
		if (dir_ok && id == POLICY_OPT_CA && r->dir == POLICY_ACCEPT) {
			/* Trusting it for clients too would widen client-ca behind the user's back.
			 */
			report(
			    c, tk->col,
			    "'ca' applies to connect rules only: client certificates verify only "
			    "against client-ca; did you mean 'client-ca='?");
			continue;
		}
		if (dir_ok &&
		    !(opt_defs[id].dirs & (r->dir == POLICY_CONNECT ? ON_CONNECT : ON_ACCEPT))) {
			report(c, tk->col, "'%s' applies to %s rules only", opt_defs[id].name,
			       r->dir == POLICY_CONNECT ? "accept" : "connect");
			continue;
		}
		if (opt_defs[id].flag) {
			if (tk->eq != NO_EQ) {
				report(c, tk->col, "'%s' is a flag and takes no value",
				       opt_defs[id].name);
				continue;
			}
		} else if (tk->eq == NO_EQ) {
			report(c, tk->col, "option '%s' needs a value: %s=...", opt_defs[id].name,
			       opt_defs[id].name);
			continue;
		} else if (tk->eq + 1 == tk->len) {
			report(c, tk->vcol, "empty value for '%s'", opt_defs[id].name);
			continue;
		}
		o->given |= 1u << id;
		if (apply_opt(c, o, id, tk) < 0 && c->errors == before)
			report(c, tk->col, "out of memory");
	}
	if (!dir_ok)
		return c->errors == before ? 0 : -1;
	if (at[POLICY_OPT_CERT] && !at[POLICY_OPT_KEY])
		report(c, at[POLICY_OPT_CERT]->col,
		       "'cert' needs 'key' (the certificate's private key)");
	if (at[POLICY_OPT_KEY] && !at[POLICY_OPT_CERT])
		report(c, at[POLICY_OPT_KEY]->col,
		       "'key' needs 'cert' (the certificate it belongs to)");
	if (r->dir == POLICY_ACCEPT && at[POLICY_OPT_ALLOW] && !at[POLICY_OPT_CLIENT_CA])
		report(c, at[POLICY_OPT_ALLOW]->col,
		       "'allow' needs 'client-ca' (client certificates are checked only with it)");
	/* IMAP's server side is not built: say so rather than fail every connection. */
	if (r->dir == POLICY_ACCEPT && o->starttls == POLICY_STARTTLS_IMAP)
		report(c, at[POLICY_OPT_STARTTLS]->vcol,
		       "starttls=imap applies to connect rules only (accept rules support "
		       "postgres and smtp)");
	/* A cleartext client has no certificate: auto would serve it unauthenticated. */
	for (i = POLICY_OPT_CLIENT_CA; i <= POLICY_OPT_ALLOW; i++) {
		if (r->action == POLICY_AUTO && at[i])
			report(c, at[i]->col,
			       "'%s' cannot be used with 'auto' (a cleartext client cannot be "
			       "authenticated); use 'tls' to require client certificates",
			       opt_defs[i].name);
	}
	return c->errors == before ? 0 : -1;
}

/* ---- rules -------------------------------------------------------------------------- */

int policy_append_rule(struct policy *p, struct policy_rule *r)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 16;
		struct policy_rule **v =
		    mem_grow(&p->mem, p->rules, p->cap * sizeof(*v), cap * sizeof(*v));

		if (!v)
			return -1;
		p->rules = v;
		p->cap = cap;
	}
	r->id = (unsigned)p->n;
	p->rules[p->n++] = r;
	return 0;
}

static int parse_word(const struct tok *t, const char *const *words, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strlen(words[i]) == t->rawlen && memcmp(words[i], t->raw, t->rawlen) == 0)
			return (int)i;
	return -1;
}

/* Reads the tokens T[0..N) of one rule into R, reporting every error found. */
static void read_rule(struct pctx *c, struct policy_rule *r, const struct tok *t, size_t n,
		      const char *text, size_t tlen)
{
	static const char *const dirs[] = {"connect", "accept"};
	static const char *const acts[] = {"tls", "plain", "deny", "auto"};
	char shown[96];
	unsigned seen = 0;
	int dir, act;

	dir = parse_word(&t[0], dirs, 2);
	if (dir < 0)
		report(c, t[0].col, "expected 'connect' or 'accept', got '%s'",
		       policy_shown(t[0].raw, t[0].rawlen, shown, sizeof(shown)));
	else
		r->dir = (enum policy_dir)dir;
	if (n < 2) {
		report(c, col_of(c, text + tlen), "expected a host[:ports] after '%s'",
		       policy_shown(t[0].raw, t[0].rawlen, shown, sizeof(shown)));
		return;
	}
	parse_target(c, r, &t[1]);
	if (n < 3) {
		report(c, col_of(c, text + tlen),
		       "expected an action ('tls', 'plain', 'deny' or 'auto') after '%s'",
		       policy_shown(t[1].raw, t[1].rawlen, shown, sizeof(shown)));
		return;
	}
	act = parse_word(&t[2], acts, 4);
	if (act < 0) {
		report(c, t[2].col, "expected 'tls', 'plain', 'deny' or 'auto', got '%s'",
		       policy_shown(t[2].raw, t[2].rawlen, shown, sizeof(shown)));
	} else {
		r->action = (enum policy_action)act;
		if (r->action == POLICY_AUTO && dir == POLICY_CONNECT)
			report(c, t[2].col,
			       "'auto' applies to accept rules only (it detects a client's TLS)");
	}
	if (n > 3 && (act == POLICY_PLAIN || act == POLICY_DENY)) {
		report(c, t[3].col, "options have no effect on a '%s' rule", acts[act]);
		return;
	}
	parse_opts(c, r, t + 3, n - 3, dir >= 0, &seen);
	if (dir == POLICY_ACCEPT && (act == POLICY_TLS || act == POLICY_AUTO) &&
	    !(seen & (1u << POLICY_OPT_CERT | 1u << POLICY_OPT_KEY)))
		report(c, t[2].col, "'accept %s' needs cert= and key= (the server's certificate)",
		       acts[act]);
}

/*
 * Builds a rule from its tokens T[0..N) and adds it if it has no error (a
 * rule with errors leaves its memory in the arena: the table is then only
 * freed).
 */
static void parse_rule(struct pctx *c, struct tok *t, size_t n, const char *text, size_t tlen)
{
	struct policy_rule *r = mem_alloc(&c->p->mem, sizeof(*r));
	unsigned before = c->errors;

	if (!r) {
		report(c, t[0].col, "out of memory");
		return;
	}
	r->opt.min_version = POLICY_TLS1_2;
	r->opt.handshake_timeout_ms = POLICY_DEFAULT_HANDSHAKE_TIMEOUT_MS;
	r->opt.expiry_warn_days = POLICY_DEFAULT_EXPIRY_WARN_DAYS;
	read_rule(c, r, t, n, text, tlen);
	if (c->errors != before)
		return;
	/* One copy of the source name for all the rules of one text. */
	if (!c->source_copy)
		c->source_copy = mem_strdup(&c->p->mem, c->source);
	r->source = c->source_copy;
	r->text = mem_strndup(&c->p->mem, text, tlen);
	r->line = c->line;
	r->col = t[0].col;
	if (!r->source || !r->text || policy_append_rule(c->p, r) < 0)
		report(c, t[0].col, "out of memory");
}

/* ---- lexing ------------------------------------------------------------------------- */

static int is_space(char ch)
{
	return ch == ' ' || ch == '\t';
}

/*
 * Reads one word starting at S (before END) into T: up to a blank, ';' or '#'
 * outside double quotes. Inside quotes \" and \\ are escapes; other bytes are
 * literal. The value goes to V (room for END - S + 1 bytes). Returns the end
 * of the word, or NULL on an unterminated quote.
 */
static const char *lex_word(struct pctx *c, const char *s, const char *end, struct tok *t, char *v)
{
	const char *p = s;
	size_t n = 0;
	int quoted = 0;

	t->raw = s;
	t->col = col_of(c, s);
	t->eq = NO_EQ;
	t->val = v;
	for (; p < end; p++) {
		if (quoted) {
			if (*p == '"') {
				quoted = 0;
			} else if (*p == '\\' && p + 1 < end && (p[1] == '"' || p[1] == '\\')) {
				v[n++] = *++p;
			} else {
				v[n++] = *p;
			}
			continue;
		}
		if (is_space(*p) || *p == ';' || *p == '#')
			break;
		if (*p == '"') {
			quoted = 1;
			continue;
		}
		if (*p == '=' && t->eq == NO_EQ) {
			t->eq = n;
			t->vcol = col_of(c, p + 1);
		}
		v[n++] = *p;
	}
	v[n] = '\0';
	t->len = n;
	t->rawlen = (size_t)(p - s);
	return quoted ? NULL : p;
}

/*
 * Parses one line [S, S+N) (no newline): rules separated by ';', then maybe a
 * comment. The words of a rule live in scratch memory until the rule is
 * built (it copies what it keeps): on the stack for lines of usual length.
 * A word's value is never longer than its text, so the values of one rule
 * fit in 2N + 1 bytes.
 */
static void parse_line(struct pctx *c, const char *s, size_t n)
{
	const char *p = s, *end = s + n, *rstart = NULL, *rend = NULL;
	struct tok tstack[16], *t = tstack;
	char vstack[2048], *vbuf = vstack;
	size_t nt = 0, cap = sizeof(tstack) / sizeof(tstack[0]), voff = 0;

	c->lstart = s;
	if (n > 0 && s[n - 1] == '\r')
		end--; /* CRLF files */
	if (2 * n + 1 > sizeof(vstack)) {
		vbuf = malloc(2 * n + 1);
		if (!vbuf) {
			report(c, 1, "out of memory");
			return;
		}
	}
	for (;;) {
		while (p < end && is_space(*p))
			p++;
		if (p == end || *p == ';' || *p == '#') {
			if (nt > 0)
				parse_rule(c, t, nt, rstart, (size_t)(rend - rstart));
			nt = 0;
			voff = 0;
			if (p == end || *p == '#')
				break;
			p++;
			continue;
		}
		if (nt == cap) {
			struct tok *nv = malloc(2 * cap * sizeof(*nv));

			if (!nv) {
				report(c, col_of(c, p), "out of memory");
				break;
			}
			memcpy(nv, t, nt * sizeof(*nv));
			if (t != tstack)
				free(t);
			t = nv;
			cap *= 2;
		}
		if (nt == 0)
			rstart = p;
		memset(&t[nt], 0, sizeof(t[nt]));
		rend = lex_word(c, p, end, &t[nt], vbuf + voff);
		voff += t[nt].len + 1;
		nt++;
		if (!rend) {
			const char *q = memchr(p, '"', (size_t)(end - p));

			report(c, q ? col_of(c, q) : col_of(c, p),
			       "unterminated quote (a value in \"...\" must end on the same line)");
			break;
		}
		p = rend;
	}
	if (t != tstack)
		free(t);
	if (vbuf != vstack)
		free(vbuf);
}

/* Puts the diagnostics of one line (D->v[FIRST..]) in column order, as a reader scans it. */
static void sort_line_diags(struct policy_diags *d, size_t first)
{
	size_t i, j;

	if (!d)
		return;
	for (i = first + 1; i < d->n; i++) {
		struct policy_diag x = d->v[i];

		for (j = i; j > first && d->v[j - 1].col > x.col; j--)
			d->v[j] = d->v[j - 1];
		d->v[j] = x;
	}
}

static int parse_buf(struct policy *p, const char *source, const char *text, struct policy_diags *d,
		     const char *base, size_t base_len)
{
	struct pctx c = {
	    .p = p, .d = d, .source = source, .line = 0, .base = base, .base_len = base_len};
	const char *s = text;

	if (p->finished) {
		policy_diag_add(d, source, 0, 0, "the policy is already finished");
		p->n_errors++;
		return -1;
	}
	while (s && *s) {
		const char *nl = strchr(s, '\n');
		size_t n = nl ? (size_t)(nl - s) : strlen(s);
		size_t first = d ? d->n : 0;

		c.line++;
		parse_line(&c, s, n);
		sort_line_diags(d, first);
		s = nl ? nl + 1 : NULL;
	}
	p->n_errors += c.errors;
	return c.errors ? -1 : 0;
}

int policy_add_text(struct policy *p, const char *source, const char *text, struct policy_diags *d)
{
	return parse_buf(p, source ? source : "TLSSHIM_POLICY", text, d, NULL, 0);
}

int policy_add_file(struct policy *p, const char *path, struct policy_diags *d)
{
	char ebuf[128];
	char *buf = NULL, *line = NULL;
	const char *slash;
	size_t len = 0, cap = 0, lcap = 0;
	ssize_t n;
	FILE *f;
	int rc = -1;

	/* getenv() of an unset or empty TLSSHIM_POLICY_FILE: no file. */
	if (!path || !*path)
		return 0;
	f = fopen(path, "re");
	if (!f) {
		policy_diag_add(d, path, 0, 0, "cannot read the policy file: %s",
				strerror_r(errno, ebuf, sizeof(ebuf)));
		p->n_errors++;
		return -1;
	}
	while ((n = getline(&line, &lcap, f)) > 0) {
		if (memchr(line, '\0', (size_t)n)) {
			policy_diag_add(d, path, 0, 0, "the policy file holds a NUL byte");
			p->n_errors++;
			goto out;
		}
		if (len + (size_t)n + 1 > cap) {
			size_t ncap = 2 * (len + (size_t)n + 1);
			char *nb = realloc(buf, ncap);

			if (!nb) {
				policy_diag_add(d, path, 0, 0, "out of memory");
				p->n_errors++;
				goto out;
			}
			buf = nb;
			cap = ncap;
		}
		memcpy(buf + len, line, (size_t)n);
		len += (size_t)n;
		buf[len] = '\0';
	}
	if (ferror(f)) {
		policy_diag_add(d, path, 0, 0, "cannot read the policy file: %s",
				strerror_r(errno, ebuf, sizeof(ebuf)));
		p->n_errors++;
		goto out;
	}
	/* The file's directory: "a/b/policy" -> "a/b", "policy" -> "" (the working one). */
	slash = strrchr(path, '/');
	rc = parse_buf(p, path, buf, d, slash ? path : "",
		       slash ? (slash == path ? 1 : (size_t)(slash - path)) : 0);
out:
	free(line);
	free(buf);
	fclose(f);
	return rc;
}
