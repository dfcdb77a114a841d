/*
 * options.c - the options of a rule (NAME or NAME=VALUE words after the action):
 * which exist and on which direction, each value's grammar, the files they
 * name (made absolute and checked readable), and the checks across options
 * (cert needs key, ...).
 *
 * Values are checked here, at load, so that a wrong policy fails `check` and
 * the program's start rather than its first connection. Base64 (pin=) is
 * decoded by hand: this library links no OpenSSL (it is in the preload
 * library, which loads OpenSSL only with its first wrapped connection).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "parse.h"

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
	parse_report(c, t->vcol, "starttls: expected 'postgres', 'smtp' or 'imap', got '%s'",
		     policy_shown(v, n, shown, sizeof(shown)));
	return -1;
}

const char *policy_opt_str(enum policy_opt o)
{
	if ((unsigned)o >= POLICY_OPT_COUNT)
		return "?";
	return opt_defs[o].name;
}

static int find_opt(const char *name, size_t n)
{
	int i;

	for (i = 0; i < POLICY_OPT_COUNT; i++)
		if (strlen(opt_defs[i].name) == n && memcmp(opt_defs[i].name, name, n) == 0)
			return i;
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
		parse_report(c, t->vcol, "pin must be 'sha256/' followed by the base64 SPKI hash");
		return -1;
	}
	len = b64_decode(v + 7, n - 7, h, sizeof(h));
	if (len < 0) {
		parse_report(c, t->vcol, "pin: invalid base64 after 'sha256/'");
		return -1;
	}
	if (len != 32) {
		parse_report(c, t->vcol, "pin: a SHA-256 hash is 32 bytes, this decodes to %s%ld",
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
			parse_report(c, t->vcol,
				     "alpn: each protocol name is 1-255 bytes (comma-separated)");
			return -1;
		}
		wire[w++] = (char)plen;
		memcpy(wire + w, v + i, plen);
		w += plen;
		i = e + 1;
	}
	if (w > 65535) {
		parse_report(c, t->vcol, "alpn: the list is longer than 65535 bytes");
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
			parse_report(
			    c, t->vcol,
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
		parse_report(c, t->vcol,
			     "expiry-warn: expected a number of days such as '14', got '%s'",
			     policy_shown(v, n, shown, sizeof(shown)));
		return -1;
	}
	if (days > (long)POLICY_MAX_EXPIRY_WARN_DAYS) {
		parse_report(c, t->vcol, "expiry-warn must be at most %u days",
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
				parse_report(
				    c, t->vcol,
				    "handshake-timeout: at most 3 decimals (milliseconds)");
				return -1;
			}
		}
		for (i = flen; i < 3; i++)
			ms *= 10;
	}
	ms += secs * 1000;
	if (ms <= 0 || ms > 3600 * 1000L) {
		parse_report(c, t->vcol,
			     "handshake-timeout must be more than 0 and at most 3600 seconds");
		return -1;
	}
	o->handshake_timeout_ms = (unsigned)ms;
	return 0;
bad:
	parse_report(c, t->vcol,
		     "handshake-timeout: expected seconds such as '10' or '0.5', got '%s'",
		     policy_shown(v, n, shown, sizeof(shown)));
	return -1;
}

static int opt_sni(struct pctx *c, char **dst, const struct tok *t, const char *v, size_t n)
{
	char out[POLICY_NAME_MAX + 1];
	unsigned char a[16];
	const char *why;
	size_t at;

	if (policy_ipv4_parse(v, n, a) == 0 || hosts_ipv6_parse(v, a) == 0) {
		/* RFC 6066 section 3: "Literal IPv4 and IPv6 addresses are not permitted". */
		parse_report(c, t->vcol, "sni must be a DNS name, not an address (RFC 6066)");
		return -1;
	}
	if (policy_name_norm(v, n, out, &why, &at) < 0) {
		parse_report(c, t->vcol, "sni: invalid DNS name: %s", why);
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
			parse_report(c, t->vcol, "name: invalid IPv6 address in brackets");
			return -1;
		}
		memcpy(buf, v + 1, n - 2);
		buf[n - 2] = '\0';
		if (hosts_ipv6_parse(buf, a) != 0) {
			parse_report(c, t->vcol, "name: invalid IPv6 address in brackets");
			return -1;
		}
		v = buf;
		n -= 2;
	}
	if (policy_ipv4_parse(v, n, a) == 0) {
		policy_ipv4_text(a, out);
	} else if (hosts_ipv6_parse(v, a) == 0) {
		inet_ntop(AF_INET6, a, out, sizeof(out));
	} else if (policy_name_norm(v, n, out, &why, &at) < 0) {
		parse_report(c, t->vcol, "name: expected a DNS name or an IP address (%s)", why);
		return -1;
	}
	*dst = mem_strdup(&c->p->mem, out);
	return *dst ? 0 : -1;
}

/* min-version=1.2|1.3: older versions are refused by name, not just as unknown. */
static int opt_min_version(struct pctx *c, struct policy_opts *o, const struct tok *t,
			   const char *v, size_t n)
{
	char shown[96];

	if (strcmp(v, "1.2") == 0) {
		o->min_version = POLICY_TLS1_2;
	} else if (strcmp(v, "1.3") == 0) {
		o->min_version = POLICY_TLS1_3;
	} else if (strcmp(v, "1.0") == 0 || strcmp(v, "1.1") == 0) {
		parse_report(c, t->vcol,
			     "TLS %s is not supported (insecure); use min-version=1.2 or 1.3", v);
		return -1;
	} else {
		parse_report(c, t->vcol, "min-version: expected '1.2' or '1.3', got '%s'",
			     policy_shown(v, n, shown, sizeof(shown)));
		return -1;
	}
	return 0;
}

static int opt_string(struct pctx *c, char **dst, const char *v)
{
	*dst = mem_strdup(&c->p->mem, v);
	return *dst ? 0 : -1;
}

/*
 * Applies option token T (already known to be option ID with a value if it needs one).
 * Returns 0, or -1: an error reported, or (none reported) out of memory.
 */
static int apply_opt(struct pctx *c, struct policy_opts *o, int id, const struct tok *t)
{
	int has = t->eq != NO_EQ; /* only flags have none; options_parse() checked */
	const char *v = has ? t->val + t->eq + 1 : "";
	size_t n = has ? t->len - t->eq - 1 : 0;

	switch (id) {
	case POLICY_OPT_CA:
		return files_option(c, &o->ca, t, v, 1);
	case POLICY_OPT_CERT:
		return files_option(c, &o->cert, t, v, 0);
	case POLICY_OPT_KEY:
		return files_option(c, &o->key, t, v, 0);
	case POLICY_OPT_CLIENT_CA:
		return files_option(c, &o->client_ca, t, v, 1);
	case POLICY_OPT_CIPHERS:
		return opt_string(c, &o->ciphers, v);
	case POLICY_OPT_CIPHERSUITES:
		return opt_string(c, &o->ciphersuites, v);
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
		return opt_min_version(c, o, t, v, n);
	case POLICY_OPT_HANDSHAKE_TIMEOUT:
		return opt_timeout(c, o, t, v, n);
	case POLICY_OPT_STARTTLS:
		return opt_starttls(c, o, t, v, n);
	case POLICY_OPT_EXPIRY_WARN:
		return opt_expiry_warn(c, o, t, v, n);
	default:
		return -1;
	}
}

/*
 * Checks the option word TK on its own: known, not repeated unless it may be,
 * allowed on R's direction (if DIR_OK), a value if and only if it takes one.
 * Records it in AT and *SEEN. Returns the option's id, or -1 (reported).
 */
static int check_word(struct pctx *c, const struct policy_rule *r, const struct tok *tk,
		      const struct tok **at, int dir_ok, unsigned *seen)
{
	size_t nlen = tk->eq == NO_EQ ? tk->len : tk->eq;
	int id = find_opt(tk->val, nlen);
	char shown[96];

	if (id < 0) {
		const char *hint = suggest_option(tk->val, nlen);

		policy_shown(tk->val, nlen, shown, sizeof(shown));
		if (hint)
			parse_report(c, tk->col, "unknown option '%s'; did you mean '%s'?", shown,
				     hint);
		else
			parse_report(c, tk->col, "unknown option '%s'", shown);
		return -1;
	}
	if (at[id] && !opt_defs[id].repeat) {
		parse_report(c, tk->col, "duplicate option '%s' (first given at column %u)",
			     opt_defs[id].name, at[id]->col);
		return -1;
	}
	if (!at[id])
		at[id] = tk;
	*seen |= 1u << id;
	if (dir_ok && id == POLICY_OPT_CA && r->dir == POLICY_ACCEPT) {
		/* Trusting it for clients too would widen client-ca behind the user's back. */
		parse_report(c, tk->col,
			     "'ca' applies to connect rules only: client certificates verify only "
			     "against client-ca; did you mean 'client-ca='?");
		return -1;
	}
	if (dir_ok && !(opt_defs[id].dirs & (r->dir == POLICY_CONNECT ? ON_CONNECT : ON_ACCEPT))) {
		parse_report(c, tk->col, "'%s' applies to %s rules only", opt_defs[id].name,
			     r->dir == POLICY_CONNECT ? "accept" : "connect");
		return -1;
	}
	if (opt_defs[id].flag) {
		if (tk->eq != NO_EQ) {
			parse_report(c, tk->col, "'%s' is a flag and takes no value",
				     opt_defs[id].name);
			return -1;
		}
	} else if (tk->eq == NO_EQ) {
		parse_report(c, tk->col, "option '%s' needs a value: %s=...", opt_defs[id].name,
			     opt_defs[id].name);
		return -1;
	} else if (tk->eq + 1 == tk->len) {
		parse_report(c, tk->vcol, "empty value for '%s'", opt_defs[id].name);
		return -1;
	}
	return id;
}

/* The checks across the options of R (AT: where each was first given, or NULL). */
static void check_together(struct pctx *c, const struct policy_rule *r, const struct tok **at)
{
	if (at[POLICY_OPT_CERT] && !at[POLICY_OPT_KEY])
		parse_report(c, at[POLICY_OPT_CERT]->col,
			     "'cert' needs 'key' (the certificate's private key)");
	if (at[POLICY_OPT_KEY] && !at[POLICY_OPT_CERT])
		parse_report(c, at[POLICY_OPT_KEY]->col,
			     "'key' needs 'cert' (the certificate it belongs to)");
	if (r->dir == POLICY_ACCEPT && at[POLICY_OPT_ALLOW] && !at[POLICY_OPT_CLIENT_CA])
		parse_report(
		    c, at[POLICY_OPT_ALLOW]->col,
		    "'allow' needs 'client-ca' (client certificates are checked only with it)");
	/* IMAP's server side is not built: say so rather than fail every connection. */
	if (r->dir == POLICY_ACCEPT && r->opt.starttls == POLICY_STARTTLS_IMAP)
		parse_report(c, at[POLICY_OPT_STARTTLS]->vcol,
			     "starttls=imap applies to connect rules only (accept rules support "
			     "postgres and smtp)");
	/* A cleartext client has no certificate: auto would serve it unauthenticated. */
	for (size_t i = POLICY_OPT_CLIENT_CA; i <= POLICY_OPT_ALLOW; i++) {
		if (r->action == POLICY_AUTO && at[i])
			parse_report(
			    c, at[i]->col,
			    "'%s' cannot be used with 'auto' (a cleartext client cannot be "
			    "authenticated); use 'tls' to require client certificates",
			    opt_defs[i].name);
	}
}

int options_parse(struct pctx *c, struct policy_rule *r, const struct tok *t, size_t n, int dir_ok,
		  unsigned *seen)
{
	const struct tok *at[POLICY_OPT_COUNT] = {0};
	unsigned before = c->errors;

	for (size_t i = 0; i < n; i++) {
		int id = check_word(c, r, &t[i], at, dir_ok, seen);

		if (id < 0)
			continue;
		r->opt.given |= 1u << id;
		if (apply_opt(c, &r->opt, id, &t[i]) < 0 && c->errors == before)
			parse_report(c, t[i].col, "out of memory");
	}
	if (dir_ok)
		check_together(c, r, at);
	return c->errors == before ? 0 : -1;
}
