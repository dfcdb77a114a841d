/*
 * test_policy_hosts.c - host names, addresses and networks on their own: the
 * HOST[:PORTS] word of a rule (hosts_target(): each error's exact
 * SOURCE:LINE:COL and message, then what a valid word becomes), the endpoint
 * `explain` takes (policy_parse_endpoint()), and the name and IPv4 checks.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "parse.h"

/* Reads WORD as the target of a rule on line 4 of "f.policy", the word at column 9. */
static int target(const char *word, struct policy_rule *r, struct policy_diags *d, struct policy *p)
{
	static char line[512];
	struct pctx c = {.p = p, .d = d, .source = "f.policy", .line = 4, .lstart = line};
	struct tok t = {0};
	int rc;

	snprintf(line, sizeof(line), "connect %s tls", word);
	t.raw = line + 8;
	t.rawlen = strlen(word);
	t.col = 9;
	memset(r, 0, sizeof(*r));
	rc = hosts_target(&c, r, &t);
	cr_assert_eq(c.errors, d->n, "%s: errors counted as reported", word);
	cr_assert_eq(rc<0, d->n> 0, "%s: rc %d with %zu errors", word, rc, d->n);
	return rc;
}

Test(policy_hosts, rejects_bad_targets_at_the_exact_column)
{
	static const struct {
		const char *in;
		unsigned col;
		const char *msg; /* the whole message */
	} cases[] = {
	    {"a..b", 11, "invalid host name 'a..b': empty label"},
	    {"a_b$", 12, "invalid host name 'a_b$': invalid character"},
	    {"*.", 11, "invalid host name '': empty name"},
	    {"a.*.b", 11, "'*' must be a whole leftmost label, as in '*.example.com'"},
	    {":443", 9, "expected a host before ':'"},
	    {"a:", 11, "expected a port 1-65535, '*' or a range LO-HI after ':'"},
	    {"a:0", 11, "expected a port 1-65535, '*' or a range LO-HI, got '0'"},
	    {"a:65536", 11, "expected a port 1-65535, '*' or a range LO-HI, got '65536'"},
	    {"a:1-", 13, "expected a port 1-65535, '*' or a range LO-HI, got ''"},
	    {"a:9-8", 11, "port range 9-8 is empty: the low port comes first"},
	    {"010.0.0.1", 9,
	     "invalid IPv4 address '010.0.0.1' (expected a dotted quad like 10.0.0.1)"},
	    {"10.1", 9, "invalid IPv4 address '10.1' (expected a dotted quad like 10.0.0.1)"},
	    {"10.0.0.0/33", 18, "expected a prefix length 0-32, got '33'"},
	    {"10.0.0.1/8", 9, "10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?"},
	    {"1::2", 9, "IPv6 addresses must be in brackets, as in '[1::2]'"},
	    {"[1::2", 9, "missing ']' in '[1::2'"},
	    {"[1::x]", 9, "invalid IPv6 address '1::x'"},
	    {"[1.2.3.4]", 9, "IPv4 addresses are written without brackets: 1.2.3.4"},
	    {"[fe80::1%eth0]", 17, "zone ids ('%eth0') are not allowed in rules"},
	    {"[1::/129]", 14, "expected a prefix length 0-128, got '129'"},
	    {"[1::/x]", 14, "expected a prefix length 0-128, got 'x'"},
	    {"[1::/64]/64", 17, "two prefix lengths in '[1::/64]/64'"},
	    {"[1::]x", 14, "expected ':' and ports after ']', got 'x'"},
	    {"[1::1]/64", 9, "[1::1]/64 has host bits set; did you mean [1::/64]?"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct policy *p = policy_new();
		struct policy_diags d = {0};
		struct policy_rule r;

		target(cases[i].in, &r, &d, p);
		cr_expect_eq(d.n, 1, "%s: one error, got %zu", cases[i].in, d.n);
		if (d.n >= 1) {
			cr_expect_str_eq(d.v[0].source, "f.policy", "%s", cases[i].in);
			cr_expect_eq(d.v[0].line, 4, "%s", cases[i].in);
			cr_expect_eq(d.v[0].col, cases[i].col, "%s: col %u (%s)", cases[i].in,
				     d.v[0].col, d.v[0].msg);
			cr_expect_str_eq(d.v[0].msg, cases[i].msg, "%s", cases[i].in);
		}
		policy_diags_free(&d);
		policy_free(p);
	}
}

Test(policy_hosts, reads_names_addresses_networks_and_ports)
{
	static const struct {
		const char *in;
		enum policy_host_kind kind;
		const char *host;
		int family;
		unsigned prefix;
		unsigned lo, hi;
	} cases[] = {
	    {"Example.COM.", POLICY_HOST_NAME, "example.com", 0, 0, 1, 65535},
	    {"*.Example.com:443", POLICY_HOST_SUFFIX, "example.com", 0, 0, 443, 443},
	    {"*:*", POLICY_HOST_ANY, "*", 0, 0, 1, 65535},
	    {"10.1.2.3:1-1024", POLICY_HOST_ADDR, "10.1.2.3", AF_INET, 32, 1, 1024},
	    {"10.0.0.0/8", POLICY_HOST_CIDR, "10.0.0.0", AF_INET, 8, 1, 65535},
	    {"0.0.0.0/0:5", POLICY_HOST_CIDR, "0.0.0.0", AF_INET, 0, 5, 5},
	    {"[2001:DB8::1]:443", POLICY_HOST_ADDR, "2001:db8::1", AF_INET6, 128, 443, 443},
	    {"[2001:db8::/32]", POLICY_HOST_CIDR, "2001:db8::", AF_INET6, 32, 1, 65535},
	    {"[2001:db8::]/32:1", POLICY_HOST_CIDR, "2001:db8::", AF_INET6, 32, 1, 1},
	    /* IPv4-mapped: the IPv4 address, so that rule and query agree. */
	    {"[::ffff:10.0.0.1]", POLICY_HOST_ADDR, "10.0.0.1", AF_INET, 32, 1, 65535},
	    {"[::ffff:10.0.0.0/104]", POLICY_HOST_CIDR, "10.0.0.0", AF_INET, 8, 1, 65535},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct policy *p = policy_new();
		struct policy_diags d = {0};
		struct policy_rule r;

		cr_expect_eq(target(cases[i].in, &r, &d, p), 0, "%s: %s", cases[i].in,
			     d.n ? d.v[0].msg : "");
		cr_expect_eq(r.host_kind, cases[i].kind, "%s: kind", cases[i].in);
		cr_expect_str_eq(r.host ? r.host : "(null)", cases[i].host, "%s", cases[i].in);
		if (cases[i].family) {
			cr_expect_eq(r.family, cases[i].family, "%s: family", cases[i].in);
			cr_expect_eq(r.prefix, cases[i].prefix, "%s: prefix %u", cases[i].in,
				     r.prefix);
		}
		cr_expect_eq(r.port_lo, cases[i].lo, "%s: low port", cases[i].in);
		cr_expect_eq(r.port_hi, cases[i].hi, "%s: high port", cases[i].in);
		policy_diags_free(&d);
		policy_free(p);
	}
}

Test(policy_hosts, rejects_bad_endpoints_with_a_reason)
{
	static const struct {
		const char *in, *err;
	} cases[] = {
	    {"a.com", "expected HOST:PORT, got 'a.com'"},
	    {"[::1", "expected [IPv6]:PORT, got '[::1'"},
	    {"[::1]443", "expected [IPv6]:PORT, got '[::1]443'"},
	    {"::1:443", "IPv6 addresses must be in brackets: [ADDRESS]:PORT"},
	    {"a.com:0", "expected a port 1-65535, got '0'"},
	    {"a.com:", "expected a port 1-65535, got ''"},
	    {":443", "expected a host name or address before ':'"},
	    {"[fe80::1%eth0]:1", "invalid IPv6 address 'fe80::1%eth0'"},
	    {"10.1:80", "invalid IPv4 address '10.1' (expected a dotted quad like 10.0.0.1)"},
	    {"a..b:80", "invalid host name 'a..b': empty label"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct policy_query q = {0};
		char name[300], err[256] = "";

		cr_expect_eq(
		    policy_parse_endpoint(cases[i].in, &q, name, sizeof(name), err, sizeof(err)),
		    -1, "%s: rejected", cases[i].in);
		cr_expect_str_eq(err, cases[i].err, "%s", cases[i].in);
	}
}

Test(policy_hosts, reads_endpoints)
{
	struct policy_query q = {0};
	char name[300], err[256] = "";
	unsigned char a[16];

	cr_assert_eq(
	    policy_parse_endpoint("Db.Example.:5432", &q, name, sizeof(name), err, sizeof(err)), 0,
	    "%s", err);
	cr_expect_str_eq(q.name, "db.example");
	cr_expect_eq(q.family, 0);
	cr_expect_eq(q.port, 5432);
	cr_assert_eq(policy_parse_endpoint("[::1]:443", &q, name, sizeof(name), err, sizeof(err)),
		     0, "%s", err);
	inet_pton(AF_INET6, "::1", a);
	cr_expect_null(q.name);
	cr_expect_eq(q.family, AF_INET6);
	cr_expect_eq(memcmp(q.addr, a, 16), 0);
	cr_expect_eq(q.port, 443);
	cr_assert_eq(policy_parse_endpoint("127.0.0.1:1", &q, name, sizeof(name), err, sizeof(err)),
		     0, "%s", err);
	cr_expect_eq(q.family, AF_INET);
	cr_expect_eq(memcmp(q.addr, "\x7f\0\0\x01", 4), 0);
	/* A name too long for the caller's buffer. */
	cr_expect_eq(policy_parse_endpoint("abcdef.example:1", &q, name, 8, err, sizeof(err)), -1);
	cr_expect_str_eq(err, "host name too long");
}

Test(policy_hosts, takes_only_the_strict_dotted_quad)
{
	static const char *const bad[] = {"",          "1.2.3",     "1.2.3.4.5", "01.2.3.4",
					  "1.2.3.256", "1..2.3",    "1.2.3.4.",  " 1.2.3.4",
					  "1.2.3.-4",  "0x1.2.3.4", "1.2.3.4/"};
	unsigned char a[4];
	char text[16];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(policy_ipv4_parse(bad[i], strlen(bad[i]), a), -1, "'%s'", bad[i]);
	cr_assert_eq(policy_ipv4_parse("0.10.200.255", 12, a), 0);
	cr_expect_eq(policy_ipv4_text(a, text), 12);
	cr_expect_str_eq(text, "0.10.200.255");
	/* Meant as an address (the last label is all digits), so only a dotted quad will do. */
	cr_expect(policy_looks_numeric("10.1", 4));
	cr_expect(policy_looks_numeric("a.10.", 5));
	cr_expect(policy_looks_numeric("10.0.0.0/8", 10));
	cr_expect(!policy_looks_numeric("10.1.a", 6));
	cr_expect(!policy_looks_numeric("1a", 2));
	cr_expect(!policy_looks_numeric("", 0));
}

Test(policy_hosts, normalises_names_and_says_what_is_wrong_where)
{
	static const struct {
		const char *in;
		const char *why; /* NULL: valid */
		size_t at;
		const char *out;
	} cases[] = {
	    {"", "empty name", 0, NULL},
	    {".", "empty name", 0, NULL},
	    {"a..b", "empty label", 2, NULL},
	    {"a.-b", "label starts or ends with '-'", 2, NULL},
	    {"a.b c", "invalid character", 3, NULL},
	    {"\xc3\xa9.fr", "invalid character", 0, NULL}, /* ASCII only */
	    {"A_b.Example.", NULL, 0, "a_b.example"},
	};
	char out[POLICY_NAME_MAX + 1], label[70], name[300];
	const char *why;
	size_t at;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = policy_name_norm(cases[i].in, strlen(cases[i].in), out, &why, &at);

		if (cases[i].why == NULL) {
			cr_expect_eq(rc, (int)strlen(cases[i].out), "'%s'", cases[i].in);
			cr_expect_str_eq(out, cases[i].out, "'%s'", cases[i].in);
			continue;
		}
		cr_expect_eq(rc, -1, "'%s'", cases[i].in);
		cr_expect_str_eq(why, cases[i].why, "'%s'", cases[i].in);
		cr_expect_eq(at, cases[i].at, "'%s': at %zu", cases[i].in, at);
	}
	memset(label, 'a', 64);
	label[64] = '\0';
	cr_expect_eq(policy_name_norm(label, 64, out, &why, &at), -1);
	cr_expect_str_eq(why, "label longer than 63 bytes");
	memset(name, 'a', sizeof(name));
	for (size_t i = 50; i < 254; i += 50)
		name[i] = '.';
	cr_expect_eq(policy_name_norm(name, 254, out, &why, &at), -1);
	cr_expect_str_eq(why, "name longer than 253 bytes");
	cr_expect_eq(policy_name_norm(name, 253, out, &why, &at), 253);
}

Test(policy_hosts, a_search_completion_is_the_name_plus_a_search_domain)
{
	static const char *const search[] = {"default.svc.cluster.local.", "svc.cluster.local",
					     "Cluster.Local", NULL};
	static const struct {
		const char *name, *canon;
		int completes;
	} cases[] = {
	    {"redis", "redis.default.svc.cluster.local", 1},
	    {"redis", "REDIS.default.svc.cluster.local.", 1},
	    {"redis.default", "redis.default.svc.cluster.local", 1},
	    {"redis", "redis.cluster.local", 1},
	    {"redis", "redis.local", 0},        /* not a search domain */
	    {"db", "db.elsewhere.example", 0},  /* an alias's target */
	    {"db", "dbx.svc.cluster.local", 0}, /* not NAME plus a domain */
	    {"db.", "db.svc.cluster.local", 0}, /* an absolute name */
	    {"redis", "redis", 0},              /* no completion */
	    {"redis", NULL, 0},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *c = policy_search_completion(cases[i].name, cases[i].canon, search, 6);

		cr_expect_eq(c != NULL, cases[i].completes, "%s answered as %s", cases[i].name,
			     cases[i].canon ? cases[i].canon : "(none)");
	}
	cr_expect_null(policy_search_completion("redis", "redis.svc.cluster.local", search, 1),
		       "only the first MAX domains count");
}
