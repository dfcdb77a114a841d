/*
 * explain.c - `tlsshim explain`: which rule a connection would match, why that
 * one beats every other rule that matches too, and the action and options
 * that would apply, with every default filled in.
 *
 * The endpoint is classified as the preload library would: a DNS name on
 * connect is resolved and matched as name + first address; an address on
 * connect also matches exact-name rules whose names resolve to it.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cmd.h"
#include "load.h"
#include "util.h"

#define MAX_MATCHES 256
#define MAX_ALT     64

/* Label column of the output: "handshake-timeout: " is the longest label. */
#define LABEL "%-19s"

static void line(const char *label, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void line(const char *label, const char *fmt, ...)
{
	char l[32];
	va_list ap;

	snprintf(l, sizeof(l), "%s:", label);
	printf(LABEL, l);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static const char *kind_words(enum policy_host_kind k)
{
	switch (k) {
	case POLICY_HOST_NAME:
		return "an exact name";
	case POLICY_HOST_SUFFIX:
		return "a *.suffix";
	case POLICY_HOST_ADDR:
		return "an exact address";
	case POLICY_HOST_CIDR:
		return "a CIDR block";
	case POLICY_HOST_ANY:
		return "any host (*)";
	default:
		return "an unknown host class";
	}
}

static void port_words(const struct policy_rule *r, char *buf, size_t len)
{
	switch (r->port_kind) {
	case POLICY_PORT_ONE:
		snprintf(buf, len, "port %u", r->port_lo);
		break;
	case POLICY_PORT_RANGE:
		snprintf(buf, len, "ports %u-%u", r->port_lo, r->port_hi);
		break;
	case POLICY_PORT_ANY:
	default:
		snprintf(buf, len, "any port");
		break;
	}
}

static void host_words(const struct policy_rule *r, char *buf, size_t len)
{
	switch (r->host_kind) {
	case POLICY_HOST_NAME:
		snprintf(buf, len, "exact name %s", r->host);
		break;
	case POLICY_HOST_SUFFIX:
		snprintf(buf, len, "suffix *.%s", r->host);
		break;
	case POLICY_HOST_ADDR:
		snprintf(buf, len, "exact address %s", r->host);
		break;
	case POLICY_HOST_CIDR:
		snprintf(buf, len, "CIDR block %s/%u", r->host, r->prefix);
		break;
	case POLICY_HOST_ANY:
	default:
		snprintf(buf, len, "any host (*)");
		break;
	}
}

/* Why W (the winner) is preferred to O, both matching: the contract's precedence. */
static void reason(const struct policy_rule *w, const struct policy_rule *o,
		   const struct policy_match *m, char *buf, size_t len)
{
	char wp[48], op[48];

	if (w->host_kind != o->host_kind) {
		snprintf(buf, len, "%s is more specific than %s", kind_words(w->host_kind),
			 kind_words(o->host_kind));
		return;
	}
	if (w->host_kind == POLICY_HOST_SUFFIX && strlen(w->host) != strlen(o->host)) {
		snprintf(buf, len, "*.%s is a longer suffix than *.%s", w->host, o->host);
		return;
	}
	if (w->host_kind == POLICY_HOST_CIDR && w->prefix != o->prefix) {
		snprintf(buf, len, "/%u is a longer prefix than /%u", w->prefix, o->prefix);
		return;
	}
	if (w->host_kind == POLICY_HOST_NAME && strcmp(w->host, o->host) != 0) {
		if (m->name && strcmp(m->name, w->host) == 0)
			snprintf(buf, len,
				 "%s is the name being connected to; %s only resolves to "
				 "the same address",
				 w->host, o->host);
		else
			snprintf(buf, len, "both are exact names of this address; %s was preferred",
				 w->host);
		return;
	}
	/* The hosts are equally specific: the port decides. */
	port_words(w, wp, sizeof(wp));
	port_words(o, op, sizeof(op));
	if (w->port_kind != o->port_kind) {
		snprintf(buf, len, "%s %s narrower than %s", wp,
			 w->port_kind == POLICY_PORT_RANGE ? "are" : "is", op);
		return;
	}
	if (w->port_kind == POLICY_PORT_RANGE &&
	    w->port_hi - w->port_lo != o->port_hi - o->port_lo) {
		snprintf(buf, len, "%s (%u ports) are narrower than %s (%u ports)", wp,
			 w->port_hi - w->port_lo + 1u, op, o->port_hi - o->port_lo + 1u);
		return;
	}
	snprintf(buf, len, "it ties with this rule (the table should have rejected the pair)");
}

/* RFC 4648 base64, for showing pins as they are written (sha256/BASE64). */
static void base64(const unsigned char *in, size_t n, char *out)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, o = 0;

	for (i = 0; i + 2 < n; i += 3) {
		out[o++] = a[in[i] >> 2];
		out[o++] = a[(in[i] & 3) << 4 | in[i + 1] >> 4];
		out[o++] = a[(in[i + 1] & 15) << 2 | in[i + 2] >> 6];
		out[o++] = a[in[i + 2] & 63];
	}
	if (n - i == 1) {
		out[o++] = a[in[i] >> 2];
		out[o++] = a[(in[i] & 3) << 4];
		out[o++] = '=';
		out[o++] = '=';
	} else if (n - i == 2) {
		out[o++] = a[in[i] >> 2];
		out[o++] = a[(in[i] & 3) << 4 | in[i + 1] >> 4];
		out[o++] = a[(in[i + 1] & 15) << 2];
		out[o++] = '=';
	}
	out[o] = '\0';
}

static void addr_text(const struct policy_query *q, char *buf, size_t len)
{
	if (!q->family || !inet_ntop(q->family, q->addr, buf, (socklen_t)len))
		snprintf(buf, len, "?");
}

static const char *or_default(const char *v, const char *dflt)
{
	return v && *v ? v : dflt;
}

/* What the starttls= dialogue does, in words, for DIR. */
static const char *starttls_words(int proto, enum policy_dir dir)
{
	switch (proto) {
	case POLICY_STARTTLS_POSTGRES:
		return dir == POLICY_CONNECT
			   ? "postgres: tlsshim sends SSLRequest and needs 'S' before the "
			     "handshake; the program's own SSLRequest is answered 'N' (it then "
			     "speaks plain inside TLS)"
			   : "postgres: tlsshim answers the client's SSLRequest with 'S' and "
			     "GSSENCRequest with 'N'; the program reads the startup message as "
			     "if it came in plain";
	case POLICY_STARTTLS_SMTP:
		return dir == POLICY_CONNECT
			   ? "smtp: tlsshim reads the greeting, sends EHLO and STARTTLS (RFC "
			     "3207); the program reads the pre-TLS greeting, then its EHLO goes "
			     "inside TLS"
			   : "smtp: tlsshim adds STARTTLS to the program's EHLO answer and "
			     "answers the STARTTLS command itself (RFC 3207); before TLS the "
			     "program sees only EHLO, HELO, NOOP, RSET and QUIT (530 to others)";
	case POLICY_STARTTLS_IMAP:
		return "imap: tlsshim reads the greeting, sends STARTTLS (RFC 3501 6.2.1); "
		       "the program reads the greeting without its capability list, then its "
		       "commands go inside TLS";
	default:
		return "none (the TLS handshake starts at once)";
	}
}

static void print_common_tls(const struct policy_opts *o, enum policy_dir dir)
{
	char t[32];

	line("starttls", "%s", starttls_words(o->starttls, dir));

	line("alpn", "%s", or_default(o->alpn, "none (no ALPN)"));
	line("min-version", "%s", o->min_version == POLICY_TLS1_3 ? "1.3" : "1.2");
	line("ciphers", "%s",
	     or_default(o->ciphers, "ECDHE with AES-GCM or ChaCha20-Poly1305 only (TLS 1.2)"));
	line("ciphersuites", "%s",
	     or_default(o->ciphersuites, "OpenSSL's secure defaults (TLS 1.3)"));
	snprintf(t, sizeof(t), "%gs", o->handshake_timeout_ms / 1000.0);
	line("handshake-timeout", "%s", t);
	if (o->expiry_warn_days == 0)
		line("expiry-warn", "off (an expired certificate is still an error)");
	else
		line("expiry-warn", "%u days before a certificate expires", o->expiry_warn_days);
	line("renegotiation", "off");
}

/*
 * What the handshake of a connect will verify, in words: the name, the trust
 * anchors, the pins and what is skipped. SNI is the name sent (NULL: none),
 * ADDR the destination address as text.
 */
static void print_connect_checks(const struct policy_rule *r, const struct policy_query *q,
				 const char *sni, const char *addr)
{
	const struct policy_opts *o = &r->opt;
	int by_address = r->host_kind != POLICY_HOST_NAME && r->host_kind != POLICY_HOST_SUFFIX;
	char pins[32];

	if (o->insecure)
		line("verifies name", "nothing (insecure)");
	else if (o->name)
		line("verifies name", "%s, the rule's name=", o->name);
	else if (o->sni)
		line("verifies name", "%s, the rule's sni=", o->sni);
	else if (by_address && !q->name)
		line("verifies name",
		     "the name the program resolved for %s: the connecting thread's own latest "
		     "resolution, else the one name any thread resolved; several different names: "
		     "the connection is refused (add name=); none: the address %s itself "
		     "(an iPAddress in the certificate)",
		     addr, addr);
	else if (sni)
		line("verifies name", "%s", sni);
	else
		line("verifies name", "the address %s (an iPAddress in the certificate)", addr);
	if (o->insecure)
		line("trust anchors", "none: the certificate chain is not verified (insecure)");
	else
		line("trust anchors", "%s", or_default(o->ca, "the system store"));
	snprintf(pins, sizeof(pins), o->n_pins == 1 ? "the pin" : "one of the %zu pins", o->n_pins);
	if (o->n_pins == 0)
		line("verifies pins", "none");
	else if (o->insecure)
		line("verifies pins",
		     "%s must be the server's own key (the end-entity certificate); no other "
		     "certificate the server sends counts",
		     pins);
	else
		line("verifies pins",
		     "%s must be a key of the verified chain (server, intermediate or trust "
		     "anchor); certificates the server only sends along never count",
		     pins);
	if (o->insecure)
		line("skipped",
		     "the certificate chain, its dates and the name (insecure: a warning "
		     "is logged on every connection)%s",
		     o->n_pins ? "; only the pin is checked" : "");
	else
		line("skipped", "nothing");
}

/* The same for an accept: the client certificate, or that no client is checked. */
static void print_accept_checks(const struct policy_rule *r)
{
	const struct policy_opts *o = &r->opt;

	if (o->client_ca)
		line("verifies client",
		     "a certificate is required, verified against client-ca "
		     "%s only%s",
		     o->client_ca, o->n_allow ? ", and matching one allow= pattern" : "");
	else
		line("verifies client", "nothing: no client certificate is asked for");
	if (r->action == POLICY_AUTO)
		line("skipped", "everything for a client that does not open with a TLS "
				"ClientHello: it is served in cleartext");
	else if (!o->client_ca)
		line("skipped", "client identity (add client-ca= for mutual TLS)");
	else
		line("skipped", "nothing");
}

static void print_connect_tls(const struct policy_rule *r, const struct policy_query *q,
			      const struct policy_match *m)
{
	const struct policy_opts *o = &r->opt;
	const char *sni = o->sni ? o->sni : m->name ? m->name : q->name;
	char addr[INET6_ADDRSTRLEN], pin[64];
	size_t i;

	addr_text(q, addr, sizeof(addr));
	line("verification", "%s",
	     o->insecure ? "OFF (insecure: the server certificate is "
			   "not checked; a warning is logged each time)"
			 : "on");
	line("ca", "%s", or_default(o->ca, "the system store"));
	line("cert", "%s", or_default(o->cert, "none (no client certificate)"));
	line("key", "%s", or_default(o->key, "none"));
	if (sni && o->sni)
		line("sni", "%s", sni);
	else if (sni && sni == q->fqdn)
		line("sni", "%s (the name the program resolved, as a search domain completed it)",
		     sni);
	else if (sni && q->name)
		line("sni", "%s (the name the program resolved)", sni);
	else if (sni)
		line("sni", "%s (the rule's name, which resolves to %s)", sni, addr);
	else if (r->host_kind != POLICY_HOST_NAME && r->host_kind != POLICY_HOST_SUFFIX)
		line("sni",
		     "the name the program resolved for %s (see 'verifies name'), else none "
		     "(IP literal: RFC 6066 allows no address in SNI)",
		     addr);
	else
		line("sni", "none (IP literal: RFC 6066 allows no address in SNI)");
	if (o->name)
		line("name", "%s", o->name);
	else if (sni)
		line("name", "%s (the SNI name)", sni);
	else if (r->host_kind != POLICY_HOST_NAME && r->host_kind != POLICY_HOST_SUFFIX)
		line("name", "the SNI name, else %s (the IP address)", addr);
	else
		line("name", "%s (the IP address)", addr);
	if (o->n_pins == 0)
		line("pin", "none");
	for (i = 0; i < o->n_pins; i++) {
		base64(o->pins[i].sha256, sizeof(o->pins[i].sha256), pin);
		line("pin", "sha256/%s", pin);
	}
	print_connect_checks(r, q, sni, addr);
	print_common_tls(o, POLICY_CONNECT);
}

static void print_accept_tls(const struct policy_rule *r)
{
	const struct policy_opts *o = &r->opt;
	size_t i;

	line("cert", "%s", or_default(o->cert, "none"));
	line("key", "%s", or_default(o->key, "none"));
	line("client-ca", "%s", or_default(o->client_ca, "none (no client certificate asked for)"));
	if (o->n_allow == 0)
		line("allow", "%s",
		     o->client_ca ? "any client with a certificate under client-ca" : "any client");
	for (i = 0; i < o->n_allow; i++)
		line("allow", "%s", o->allow[i]);
	print_accept_checks(r);
	print_common_tls(o, POLICY_ACCEPT);
}

static const char *action_words(const struct policy_rule *r)
{
	switch (r->action) {
	case POLICY_TLS:
		return r->dir == POLICY_CONNECT
			   ? "wrap the connection in TLS; tlsshim is the client"
			   : "wrap the connection in TLS; tlsshim is the server";
	case POLICY_PLAIN:
		return "leave the connection alone (cleartext)";
	case POLICY_DENY:
		return r->dir == POLICY_CONNECT
			   ? "refuse it: connect() fails with EACCES"
			   : "refuse it: the connection is closed before the program sees it";
	case POLICY_AUTO:
		if (r->opt.starttls == POLICY_STARTTLS_POSTGRES)
			return "TLS when the client's first message is an SSLRequest, cleartext "
			       "otherwise";
		return "TLS when the client's first bytes are a TLS ClientHello, cleartext "
		       "otherwise";
	default:
		return "unknown";
	}
}

/* Whether the DNS name NAME resolves to Q's address. */
static int resolves_to(const char *name, const struct policy_query *q)
{
	struct addrinfo hints = {0}, *res = NULL, *ai;
	int found = 0;

	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(name, NULL, &hints, &res) != 0)
		return 0;
	for (ai = res; ai && !found; ai = ai->ai_next) {
		if (ai->ai_family == AF_INET && q->family == AF_INET)
			found = !memcmp(&((struct sockaddr_in *)ai->ai_addr)->sin_addr, q->addr, 4);
		else if (ai->ai_family == AF_INET6 && q->family == AF_INET6)
			found =
			    !memcmp(&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, q->addr, 16);
	}
	freeaddrinfo(res);
	return found;
}

/*
 * Resolves Q's name (a DNS name) and puts its first address into Q. Returns
 * 0, or -1 with the resolver's message in ERR.
 */
static int resolve(struct policy_query *q, char *err, size_t errlen)
{
	static char fqdn[256];
	struct addrinfo hints = {0}, *res = NULL;
	const char *c;
	int rc;

	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_CANONNAME;
	rc = getaddrinfo(q->name, NULL, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "%s", gai_strerror(rc));
		return -1;
	}
	/* As the shim does: a search domain's completion is that name too. */
	c = policy_search_completion(q->name, res->ai_canonname, (const char *const *)_res.dnsrch,
				     MAXDNSRCH);
	if (c != NULL && q->dir == POLICY_CONNECT && strlen(c) < sizeof(fqdn)) {
		snprintf(fqdn, sizeof(fqdn), "%s", c);
		q->fqdn = fqdn;
		printf("note: %s is %s here (a resolv.conf search domain completed it); rules for "
		       "either name apply\n",
		       q->name, fqdn);
	}
	if (res->ai_family == AF_INET) {
		q->family = AF_INET;
		memcpy(q->addr, &((struct sockaddr_in *)res->ai_addr)->sin_addr, 4);
	} else if (res->ai_family == AF_INET6) {
		q->family = AF_INET6;
		memcpy(q->addr, &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr, 16);
	} else {
		snprintf(err, errlen, "no IPv4 or IPv6 address");
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	return 0;
}

static void print_rule_line(const char *label, const struct policy_rule *r)
{
	char *t = cmd_rule_text(r);

	line(label, "%s", t ? t : "?");
	free(t);
}

/* The names of the options the combined rule W took from the process's rule (over FR's). */
static void added_words(const struct policy_rule *w, const struct policy_rule *fr, char *buf,
			size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (int i = 0; i < POLICY_OPT_COUNT && o < len; i++) {
		if (((w->opt.given & ~fr->opt.given) >> i) & 1)
			o += (size_t)snprintf(buf + o, len - o, "%s%s", o ? ", " : "",
					      policy_opt_str((enum policy_opt)i));
	}
}

/*
 * With a system policy under P: which of the two tables the winning rule W
 * comes from, and why, when both have a rule for Q. Returns W's table, and in
 * *AS the rule of that table W stands for (W, or the system rule W combines).
 */
static const struct policy *floor_lines(const struct policy *p, const struct policy_query *q,
					const struct policy_rule *w, const struct policy_rule **as)
{
	const struct policy *sys = policy_floor(p);
	const struct policy_rule *fr, *own = NULL;
	char *t, added[160];

	*as = w;
	if (!sys)
		return p;
	fr = policy_match(sys, q, NULL);
	/* policy_match(P) applies the floor: P's own best is the first of its match_all. */
	if (policy_match_all(p, q, &own, 1) == 0)
		own = NULL;
	if (!fr) {
		line("floor", "the system policy (%s) has no rule for this connection",
		     CMD_SYSTEM_POLICY);
		return p;
	}
	if (!own)
		return sys;
	if (w != own)
		*as = fr;
	t = cmd_rule_text(w != own ? own : fr);
	if (w != own && w != fr) {
		added_words(w, fr, added, sizeof(added));
		line("floor",
		     "the system policy's rule applies, with what `%s` (%s:%u) adds: %s (a "
		     "process may add a client certificate, a client-ca, pins, a higher "
		     "min-version or ALPN where the system rule has none; never change its "
		     "checks)",
		     t ? t : "?", own->source, own->line, added);
	} else if (w == fr) {
		line("floor",
		     "the system policy's rule applies: `%s` (%s:%u) cannot weaken it; a "
		     "process's own rule applies only where it is stricter (deny over tls "
		     "over auto over plain)",
		     t ? t : "?", own->source, own->line);
	} else {
		line("floor",
		     "stricter than the system policy's `%s` (%s:%u), so it applies (a "
		     "process may tighten the system policy, never weaken it)",
		     t ? t : "?", fr->source, fr->line);
	}
	free(t);
	return w != own ? sys : p;
}

/* NAMED: ENDPOINT was a DNS name, resolved to Q's address. */
static void explain(const struct policy *p, struct policy_query *q, const char *endpoint, int named)
{
	const struct policy_rule *all[MAX_MATCHES], *w, *as, *fr;
	struct policy_match m = {0};
	char addr[INET6_ADDRSTRLEN], hw[300], pw[48], why[600];
	size_t n, i;

	addr_text(q, addr, sizeof(addr));
	if (named && q->family)
		line("connection", "%s %s (%s)", policy_dir_str(q->dir), endpoint, addr);
	else
		line("connection", "%s %s", policy_dir_str(q->dir), endpoint);
	w = policy_match(p, q, &m);
	if (!w) {
		puts("no rule matches: the connection is left alone");
		return;
	}
	print_rule_line("rule", w);
	/* A rule of the system policy, or one combined from it, was written there. */
	fr = policy_floor(p) ? policy_match(policy_floor(p), q, NULL) : NULL;
	line("from", "%s:%u:%u%s", w->source ? w->source : "?", w->line, w->col,
	     fr && w->source == fr->source && w->line == fr->line ? " (the system policy)" : "");
	n = policy_match_all(floor_lines(p, q, w, &as), q, all, MAX_MATCHES);
	host_words(w, hw, sizeof(hw));
	port_words(w, pw, sizeof(pw));
	if (m.name && w->host_kind == POLICY_HOST_NAME &&
	    (!q->name || strcmp(m.name, q->name) != 0))
		line("matched by", "%s (it resolves to %s), %s", hw, addr, pw);
	else
		line("matched by", "%s, %s", hw, pw);
	for (i = 0; i < n && i < MAX_MATCHES; i++) {
		char *t;

		if (all[i] == w || all[i] == as)
			continue;
		reason(w, all[i], &m, why, sizeof(why));
		t = cmd_rule_text(all[i]);
		line("beats", "`%s` (%s:%u:%u): %s", t ? t : "?",
		     all[i]->source ? all[i]->source : "?", all[i]->line, all[i]->col, why);
		free(t);
	}
	line("action", "%s: %s", policy_action_str(w->action), action_words(w));
	if (w->action == POLICY_TLS && w->dir == POLICY_CONNECT)
		print_connect_tls(w, q, &m);
	else if (w->action == POLICY_TLS || w->action == POLICY_AUTO)
		print_accept_tls(w);
}

/* Loads the policy A names over the system policy. 0, or the exit status (printed why). */
static int load_layered(const struct cmd_args *a, struct policy **p, struct policy **sys)
{
	enum cmd_system_state sys_state;

	/* As a process of this user would decide: the system policy is the floor. */
	*sys = cmd_system_load(0, &sys_state);
	*p = cmd_policy_load(&a->src);
	if (!*p)
		return CMD_EXIT_POLICY;
	if (*sys && policy_set_floor(*p, *sys) != 0) {
		cmd_err("out of memory");
		return CMD_EXIT_SOFTWARE;
	}
	return 0;
}

/*
 * Completes Q as the shim would see the connection: an accept names its
 * listening address, never a name; a connect to a name resolves it; a connect
 * to an address gets the policy's names that resolve to it (in ALT, room for
 * MAX_ALT). Returns 0, or the exit status (printed why).
 */
static int complete_query(const struct policy *p, struct policy_query *q, const char **alt)
{
	const char *const *names;
	char err[256];
	size_t n, n_alt = 0;

	if (q->name && q->dir == POLICY_ACCEPT) {
		if (resolve(q, err, sizeof(err)) != 0) {
			cmd_err("explain: cannot resolve %s: %s; accept rules match the listening "
				"address, so give that",
				q->name, err);
			return CMD_EXIT_USAGE;
		}
		q->name = NULL;
	} else if (q->name) {
		/* As the program would: resolve, then connect to the first address. */
		if (resolve(q, err, sizeof(err)) != 0)
			printf("note: %s does not resolve here (%s); matching by the name only\n",
			       q->name, err);
	} else if (q->dir == POLICY_CONNECT) {
		/* As the shim does for programs that never ask libc for a name. */
		n = policy_exact_names(p, POLICY_CONNECT, &names);
		for (size_t i = 0; i < n && n_alt < MAX_ALT; i++) {
			if (resolves_to(names[i], q))
				alt[n_alt++] = names[i];
		}
		q->alt_names = n_alt ? alt : NULL;
		q->n_alt = n_alt;
	}
	return 0;
}

int cmd_explain(int argc, char **argv)
{
	struct cmd_args a;
	struct policy *p = NULL, *sys = NULL;
	struct policy_query q;
	const char *alt[MAX_ALT];
	char namebuf[256], err[256];
	int rc, named;

	rc = cmd_args_parse(&a, argc, argv, 0);
	if (rc != 0)
		goto out;
	if (a.n_pos != 2) {
		rc = cmd_usage_error("'explain' takes a direction and an endpoint, as in "
				     "'explain connect api.example.com:443'");
		goto out;
	}
	memset(&q, 0, sizeof(q));
	if (strcmp(a.pos[0], "connect") != 0 && strcmp(a.pos[0], "accept") != 0) {
		rc = cmd_usage_error("explain: '%s' is not a direction: connect or accept",
				     a.pos[0]);
		goto out;
	}
	rc = load_layered(&a, &p, &sys);
	if (rc != 0)
		goto out;
	if (policy_parse_endpoint(a.pos[1], &q, namebuf, sizeof(namebuf), err, sizeof(err)) != 0) {
		cmd_err("explain: '%s': %s (write HOST:PORT: api.example.com:443, 10.0.0.1:443 "
			"or [2001:db8::1]:443)",
			a.pos[1], err);
		rc = CMD_EXIT_USAGE;
		goto out;
	}
	/* Set after parsing, which may clear the query. */
	q.dir = strcmp(a.pos[0], "connect") == 0 ? POLICY_CONNECT : POLICY_ACCEPT;
	named = q.name != NULL;
	rc = complete_query(p, &q, alt);
	if (rc != 0)
		goto out;
	explain(p, &q, a.pos[1], named);
	rc = CMD_EXIT_OK;
out:
	policy_free(p);
	policy_free(sys);
	cmd_args_free(&a);
	return rc < 0 ? CMD_EXIT_OK : rc;
}
