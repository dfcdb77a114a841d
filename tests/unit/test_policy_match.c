/*
 * test_policy_match.c - which rule applies: host classes against each other,
 * port classes, falling through to a less specific host when a host has no
 * rule for the port, suffixes at label boundaries, IPv6/CIDR edges, alt
 * names, policy_match_all's order, and concurrent look-ups.
 */
#include <pthread.h>

#include "test_policy_util.h"

/* One look-up and the rule (as `check` prints it) it must find, or NULL. */
struct match_case {
	const char *name; /* the resolved name, or NULL */
	const char *addr; /* address text, or NULL */
	uint16_t port;
	const char *want; /* normalized rule text, or NULL for "no rule" */
	enum policy_host_kind kind;
};

static void check_matches(const char *policy, enum policy_dir dir, const struct match_case *c,
			  size_t n)
{
	struct policy *p = tp_must(policy);
	size_t i;

	for (i = 0; i < n; i++) {
		struct policy_query q = tp_query(dir, c[i].name, c[i].addr, c[i].port);
		struct policy_match m;
		const struct policy_rule *r = policy_match(p, &q, &m);
		const struct policy_rule *all[16];
		size_t n_all = policy_match_all(p, &q, all, 16);

		if (!c[i].want) {
			cr_expect_null(r, "%s %s:%u -> %s, want none", c[i].name ? c[i].name : "-",
				       c[i].addr ? c[i].addr : "-", c[i].port, tp_fmt(r));
			cr_expect_eq(n_all, 0, "%s %s:%u: match_all", c[i].name, c[i].addr,
				     c[i].port);
			continue;
		}
		cr_expect_str_eq(tp_fmt(r), c[i].want, "%s %s:%u", c[i].name ? c[i].name : "-",
				 c[i].addr ? c[i].addr : "-", c[i].port);
		if (!r)
			continue;
		cr_expect_eq(m.host_kind, c[i].kind, "%s %s:%u: host kind", c[i].name, c[i].addr,
			     c[i].port);
		cr_expect_eq(m.port_kind, r->port_kind, "%s %s:%u: port kind", c[i].name, c[i].addr,
			     c[i].port);
		cr_expect_geq(n_all, 1, "%s %s:%u: match_all", c[i].name, c[i].addr, c[i].port);
		cr_expect_eq(all[0], r, "%s %s:%u: match_all starts with match", c[i].name,
			     c[i].addr, c[i].port);
	}
	policy_free(p);
}

#define CHECK(policy, dir, cases) \
	check_matches(policy, dir, cases, sizeof(cases) / sizeof(cases[0]))

static const char *const classes = "connect a.example.com:* tls\n"
				   "connect *.example.com:* plain\n"
				   "connect 10.0.0.1:* deny\n"
				   "connect 10.0.0.0/8:* tls alpn=cidr\n"
				   "connect *:* tls alpn=any\n";

Test(policy_match, prefers_name_then_suffix_then_address_then_cidr_then_any)
{
	static const struct match_case cases[] = {
	    {"a.example.com", "10.0.0.1", 443, "connect a.example.com:* tls", POLICY_HOST_NAME},
	    {"b.example.com", "10.0.0.1", 443, "connect *.example.com:* plain", POLICY_HOST_SUFFIX},
	    {"other.org", "10.0.0.1", 443, "connect 10.0.0.1:* deny", POLICY_HOST_ADDR},
	    {NULL, "10.0.0.1", 443, "connect 10.0.0.1:* deny", POLICY_HOST_ADDR},
	    {"other.org", "10.0.0.2", 443, "connect 10.0.0.0/8:* tls alpn=cidr", POLICY_HOST_CIDR},
	    {NULL, "11.0.0.1", 443, "connect *:* tls alpn=any", POLICY_HOST_ANY},
	    {NULL, "::1", 443, "connect *:* tls alpn=any", POLICY_HOST_ANY},
	    {"a.example.com", NULL, 1, "connect a.example.com:* tls", POLICY_HOST_NAME},
	    {NULL, NULL, 1, "connect *:* tls alpn=any", POLICY_HOST_ANY},
	};

	CHECK(classes, POLICY_CONNECT, cases);
}

Test(policy_match, matches_names_case_insensitively_ignoring_a_trailing_dot)
{
	static const struct match_case cases[] = {
	    {"A.Example.COM", "1.1.1.1", 1, "connect a.example.com:* tls", POLICY_HOST_NAME},
	    {"a.example.com.", "1.1.1.1", 1, "connect a.example.com:* tls", POLICY_HOST_NAME},
	    {"B.EXAMPLE.COM.", "1.1.1.1", 1, "connect *.example.com:* plain", POLICY_HOST_SUFFIX},
	    {"a.example.com..", "1.1.1.1", 1, "connect *:* tls alpn=any", POLICY_HOST_ANY},
	    {"", "1.1.1.1", 1, "connect *:* tls alpn=any", POLICY_HOST_ANY},
	};

	CHECK(classes, POLICY_CONNECT, cases);
}

Test(policy_match, matches_suffixes_only_at_label_boundaries_longest_first)
{
	static const char *const policy = "connect *.example.com:* tls\n"
					  "connect *.b.example.com:* plain\n"
					  "connect *.com:* deny\n";
	static const struct match_case cases[] = {
	    {"a.example.com", NULL, 1, "connect *.example.com:* tls", POLICY_HOST_SUFFIX},
	    {"x.y.z.example.com", NULL, 1, "connect *.example.com:* tls", POLICY_HOST_SUFFIX},
	    {"a.b.example.com", NULL, 1, "connect *.b.example.com:* plain", POLICY_HOST_SUFFIX},
	    {"a.c.b.example.com", NULL, 1, "connect *.b.example.com:* plain", POLICY_HOST_SUFFIX},
	    /* the name itself is never a suffix match: b.example.com is under *.example.com */
	    {"b.example.com", NULL, 1, "connect *.example.com:* tls", POLICY_HOST_SUFFIX},
	    {"example.com", NULL, 1, "connect *.com:* deny", POLICY_HOST_SUFFIX},
	    {"badexample.com", NULL, 1, "connect *.com:* deny", POLICY_HOST_SUFFIX},
	    {"a.badexample.com", NULL, 1, "connect *.com:* deny", POLICY_HOST_SUFFIX},
	    {"com", NULL, 1, NULL, POLICY_HOST_ANY},
	    {"example.com.evil", NULL, 1, NULL, POLICY_HOST_ANY},
	    {"a.example.org", NULL, 1, NULL, POLICY_HOST_ANY},
	};

	CHECK(policy, POLICY_CONNECT, cases);
}

Test(policy_match, prefers_one_port_then_narrowest_range_then_any_port)
{
	static const char *const policy = "connect a.com:443 tls\n"
					  "connect a.com:400-500 plain\n"
					  "connect a.com:1-1000 deny\n"
					  "connect a.com:440-449 tls alpn=narrow\n"
					  "connect a.com:* tls alpn=any\n";
	static const struct match_case cases[] = {
	    {"a.com", NULL, 443, "connect a.com:443 tls", POLICY_HOST_NAME},
	    {"a.com", NULL, 444, "connect a.com:440-449 tls alpn=narrow", POLICY_HOST_NAME},
	    {"a.com", NULL, 450, "connect a.com:400-500 plain", POLICY_HOST_NAME},
	    {"a.com", NULL, 400, "connect a.com:400-500 plain", POLICY_HOST_NAME},
	    {"a.com", NULL, 500, "connect a.com:400-500 plain", POLICY_HOST_NAME},
	    {"a.com", NULL, 501, "connect a.com:1-1000 deny", POLICY_HOST_NAME},
	    {"a.com", NULL, 1, "connect a.com:1-1000 deny", POLICY_HOST_NAME},
	    {"a.com", NULL, 1001, "connect a.com:* tls alpn=any", POLICY_HOST_NAME},
	    {"a.com", NULL, 65535, "connect a.com:* tls alpn=any", POLICY_HOST_NAME},
	};

	CHECK(policy, POLICY_CONNECT, cases);
}

Test(policy_match, finds_single_ports_among_many)
{
	char policy[8192];
	size_t o = 0;
	unsigned port;

	for (port = 1000; port < 1200; port += 2)
		o += (size_t)snprintf(policy + o, sizeof(policy) - o, "connect a.com:%u tls\n",
				      port);
	snprintf(policy + o, sizeof(policy) - o, "connect a.com:* plain\n");
	{
		static const struct match_case cases[] = {
		    {"a.com", NULL, 1000, "connect a.com:1000 tls", POLICY_HOST_NAME},
		    {"a.com", NULL, 1100, "connect a.com:1100 tls", POLICY_HOST_NAME},
		    {"a.com", NULL, 1198, "connect a.com:1198 tls", POLICY_HOST_NAME},
		    {"a.com", NULL, 1101, "connect a.com:* plain", POLICY_HOST_NAME},
		    {"a.com", NULL, 999, "connect a.com:* plain", POLICY_HOST_NAME},
		    {"a.com", NULL, 1200, "connect a.com:* plain", POLICY_HOST_NAME},
		};

		CHECK(policy, POLICY_CONNECT, cases);
	}
}

Test(policy_match, falls_through_to_a_less_specific_host_when_the_port_is_not_covered)
{
	static const char *const policy = "connect a.b.example.com:443 tls\n"
					  "connect *.b.example.com:8443 tls alpn=s1\n"
					  "connect *.example.com:80 plain\n"
					  "connect 10.0.0.1:25 deny\n"
					  "connect 10.0.0.0/24:5432 tls alpn=c24\n"
					  "connect 10.0.0.0/8:6379 tls alpn=c8\n"
					  "connect *:1-1024 tls alpn=low\n";
	static const struct match_case cases[] = {
	    {"a.b.example.com", "10.0.0.1", 443, "connect a.b.example.com:443 tls",
	     POLICY_HOST_NAME},
	    {"a.b.example.com", "10.0.0.1", 8443, "connect *.b.example.com:8443 tls alpn=s1",
	     POLICY_HOST_SUFFIX},
	    {"a.b.example.com", "10.0.0.1", 80, "connect *.example.com:80 plain",
	     POLICY_HOST_SUFFIX},
	    {"a.b.example.com", "10.0.0.1", 25, "connect 10.0.0.1:25 deny", POLICY_HOST_ADDR},
	    {"a.b.example.com", "10.0.0.1", 5432, "connect 10.0.0.0/24:5432 tls alpn=c24",
	     POLICY_HOST_CIDR},
	    {"a.b.example.com", "10.0.0.1", 6379, "connect 10.0.0.0/8:6379 tls alpn=c8",
	     POLICY_HOST_CIDR},
	    {"a.b.example.com", "10.0.0.1", 22, "connect *:1-1024 tls alpn=low", POLICY_HOST_ANY},
	    {"a.b.example.com", "10.0.0.1", 9999, NULL, POLICY_HOST_ANY},
	};

	CHECK(policy, POLICY_CONNECT, cases);
}

Test(policy_match, falls_through_from_a_name_to_the_catch_all)
{
	static const struct match_case cases[] = {
	    {"a.com", "1.2.3.4", 443, "connect a.com:443 tls", POLICY_HOST_NAME},
	    {"a.com", "1.2.3.4", 80, "connect *:* plain", POLICY_HOST_ANY},
	    {NULL, "1.2.3.4", 443, "connect *:* plain", POLICY_HOST_ANY},
	};

	CHECK("connect a.com:443 tls\nconnect *:* plain", POLICY_CONNECT, cases);
}

Test(policy_match, picks_the_longest_cidr_prefix)
{
	static const char *const policy = "connect 0.0.0.0/0 tls alpn=v4all\n"
					  "connect 10.0.0.0/8 tls alpn=c8\n"
					  "connect 10.1.0.0/16 tls alpn=c16\n"
					  "connect 10.1.2.0/24 tls alpn=c24\n"
					  "connect 10.1.2.3/32 tls alpn=c32\n"
					  "connect 10.128.0.0/9 tls alpn=c9\n"
					  "connect [::/0] tls alpn=v6all\n"
					  "connect [2001:db8::/32] tls alpn=d32\n"
					  "connect [2001:db8::1/128] tls alpn=d128\n";
	static const struct match_case cases[] = {
	    {NULL, "10.1.2.3", 1, "connect 10.1.2.3/32:* tls alpn=c32", POLICY_HOST_CIDR},
	    {NULL, "10.1.2.4", 1, "connect 10.1.2.0/24:* tls alpn=c24", POLICY_HOST_CIDR},
	    {NULL, "10.1.3.4", 1, "connect 10.1.0.0/16:* tls alpn=c16", POLICY_HOST_CIDR},
	    {NULL, "10.2.3.4", 1, "connect 10.0.0.0/8:* tls alpn=c8", POLICY_HOST_CIDR},
	    {NULL, "10.127.255.255", 1, "connect 10.0.0.0/8:* tls alpn=c8", POLICY_HOST_CIDR},
	    {NULL, "10.128.0.0", 1, "connect 10.128.0.0/9:* tls alpn=c9", POLICY_HOST_CIDR},
	    {NULL, "10.255.255.255", 1, "connect 10.128.0.0/9:* tls alpn=c9", POLICY_HOST_CIDR},
	    {NULL, "11.0.0.0", 1, "connect 0.0.0.0/0:* tls alpn=v4all", POLICY_HOST_CIDR},
	    {NULL, "255.255.255.255", 1, "connect 0.0.0.0/0:* tls alpn=v4all", POLICY_HOST_CIDR},
	    {NULL, "::ffff:10.1.2.3", 1, "connect 10.1.2.3/32:* tls alpn=c32", POLICY_HOST_CIDR},
	    {NULL, "::ffff:9.9.9.9", 1, "connect 0.0.0.0/0:* tls alpn=v4all", POLICY_HOST_CIDR},
	    {NULL, "2001:db8::1", 1, "connect [2001:db8::1/128]:* tls alpn=d128", POLICY_HOST_CIDR},
	    {NULL, "2001:db8::2", 1, "connect [2001:db8::/32]:* tls alpn=d32", POLICY_HOST_CIDR},
	    {NULL, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 1,
	     "connect [2001:db8::/32]:* tls alpn=d32", POLICY_HOST_CIDR},
	    {NULL, "2001:db9::", 1, "connect [::/0]:* tls alpn=v6all", POLICY_HOST_CIDR},
	    {NULL, "::a01:203", 1, "connect [::/0]:* tls alpn=v6all", POLICY_HOST_CIDR},
	};

	CHECK(policy, POLICY_CONNECT, cases);
}

Test(policy_match, matches_exact_addresses_of_both_families_and_mapped_queries_as_ipv4)
{
	static const char *const policy = "connect 127.0.0.1:6379 tls\n"
					  "connect [::1]:6379 plain\n"
					  "connect [::ffff:192.0.2.1]:1 deny\n";
	static const struct match_case cases[] = {
	    {NULL, "127.0.0.1", 6379, "connect 127.0.0.1:6379 tls", POLICY_HOST_ADDR},
	    {NULL, "::ffff:127.0.0.1", 6379, "connect 127.0.0.1:6379 tls", POLICY_HOST_ADDR},
	    {NULL, "::1", 6379, "connect [::1]:6379 plain", POLICY_HOST_ADDR},
	    {NULL, "0.0.0.1", 6379, NULL, POLICY_HOST_ANY},
	    {NULL, "::7f00:1", 6379, NULL, POLICY_HOST_ANY},
	    {NULL, "192.0.2.1", 1, "connect 192.0.2.1:1 deny", POLICY_HOST_ADDR},
	    {NULL, "127.0.0.1", 6380, NULL, POLICY_HOST_ANY},
	};

	CHECK(policy, POLICY_CONNECT, cases);
}

Test(policy_match, keeps_connect_and_accept_rules_apart)
{
	static const char *const policy = "connect *:8443 deny\naccept *:8443 plain\n";
	static const struct match_case c_cases[] = {
	    {NULL, "127.0.0.1", 8443, "connect *:8443 deny", POLICY_HOST_ANY},
	};
	static const struct match_case a_cases[] = {
	    {NULL, "127.0.0.1", 8443, "accept *:8443 plain", POLICY_HOST_ANY},
	    {NULL, "127.0.0.1", 8444, NULL, POLICY_HOST_ANY},
	};

	static const struct match_case none[] = {
	    {NULL, "127.0.0.1", 8443, NULL, POLICY_HOST_ANY},
	};

	CHECK(policy, POLICY_CONNECT, c_cases);
	CHECK(policy, POLICY_ACCEPT, a_cases);
	CHECK("accept *:8443 plain", POLICY_CONNECT, none);
	CHECK("connect *:8443 plain", POLICY_ACCEPT, none);
}

/*
 * In an accept rule 0.0.0.0 and [::] name the wildcard listener, which takes
 * connections on every local address: both read as "*" (a [::] listener takes
 * IPv4 clients too; a program told to listen on 0.0.0.0 often listens on [::]
 * as well). Read as exact addresses they would match no connection and leave
 * the port in cleartext. 0.0.0.0/0 and [::/0] keep to one family.
 */
Test(policy_match, accept_on_the_unspecified_address_covers_every_local_address)
{
	static const char *const policy = "accept 0.0.0.0:8443 deny\n"
					  "accept 127.0.0.2:8443 plain\n"
					  "accept [::]:9443 deny\n"
					  "accept [::1]:9443 plain\n"
					  "accept 0.0.0.0/0:7443 deny\n"
					  "connect 0.0.0.0:8443 deny\n";
	static const struct match_case a_cases[] = {
	    {NULL, "127.0.0.1", 8443, "accept *:8443 deny", POLICY_HOST_ANY},
	    {NULL, "10.9.8.7", 8443, "accept *:8443 deny", POLICY_HOST_ANY},
	    {NULL, "::ffff:10.9.8.7", 8443, "accept *:8443 deny", POLICY_HOST_ANY},
	    {NULL, "::1", 8443, "accept *:8443 deny", POLICY_HOST_ANY},
	    {NULL, "127.0.0.2", 8443, "accept 127.0.0.2:8443 plain", POLICY_HOST_ADDR},
	    {NULL, "127.0.0.1", 9443, "accept *:9443 deny", POLICY_HOST_ANY},
	    {NULL, "::ffff:127.0.0.1", 9443, "accept *:9443 deny", POLICY_HOST_ANY},
	    {NULL, "fd00::5", 9443, "accept *:9443 deny", POLICY_HOST_ANY},
	    {NULL, "::1", 9443, "accept [::1]:9443 plain", POLICY_HOST_ADDR},
	    {NULL, "10.1.1.1", 7443, "accept 0.0.0.0/0:7443 deny", POLICY_HOST_CIDR},
	    {NULL, "::1", 7443, NULL, POLICY_HOST_ANY},
	};
	/* connect 0.0.0.0 is the address itself (it reaches this host). */
	static const struct match_case c_cases[] = {
	    {NULL, "0.0.0.0", 8443, "connect 0.0.0.0:8443 deny", POLICY_HOST_ADDR},
	    {NULL, "127.0.0.1", 8443, NULL, POLICY_HOST_ANY},
	};
	static const char *const ties[] = {
	    "accept *:1 plain\naccept [::]:1 deny\n",
	    "accept *:1 plain\naccept 0.0.0.0:1 deny\n",
	    "accept 0.0.0.0:1 plain\naccept [::]:1 deny\n",
	};

	CHECK(policy, POLICY_ACCEPT, a_cases);
	CHECK(policy, POLICY_CONNECT, c_cases);
	/* The same listener named twice is the tie it is. */
	for (size_t i = 0; i < sizeof(ties) / sizeof(ties[0]); i++) {
		struct policy_diags d = {0};

		cr_expect_null(tp_load(ties[i], &d), "%s", ties[i]);
		cr_expect_eq(d.n, 1, "expected a conflict in %s: %s", ties[i], tp_diags_str(&d));
		policy_diags_free(&d);
	}
}

Test(policy_match, matches_exact_names_through_alt_names)
{
	struct policy *p = tp_must("connect db.internal:5432 tls\n"
				   "connect cache.internal:6379 tls\n"
				   "connect *.internal:* plain\n"
				   "connect 10.0.0.0/8 deny\n"
				   "accept api.local:8443 plain\n");
	static const char *const alts[] = {"other.example", "DB.internal."};
	static const char *const local[] = {"api.local"};
	struct policy_query q = tp_query(POLICY_CONNECT, NULL, "10.0.0.5", 5432);
	struct policy_match m;
	const struct policy_rule *r;

	q.alt_names = alts;
	q.n_alt = 2;
	r = policy_match(p, &q, &m);
	cr_expect_str_eq(tp_fmt(r), "connect db.internal:5432 tls");
	cr_expect_eq(m.host_kind, POLICY_HOST_NAME);
	cr_expect_eq(m.name, alts[1], "the alt name that matched");

	/* The resolved name comes first; alt names are exact only (no suffix match). */
	q.name = "cache.internal";
	q.port = 6379;
	r = policy_match(p, &q, &m);
	cr_expect_str_eq(tp_fmt(r), "connect cache.internal:6379 tls");
	cr_expect_eq(m.name, q.name);
	q.name = NULL;
	r = policy_match(p, &q, &m);
	cr_expect_str_eq(tp_fmt(r), "connect 10.0.0.0/8:* deny");
	cr_expect_null(m.name);

	/* Accept: the shim passes names only as alt names. */
	q = tp_query(POLICY_ACCEPT, NULL, "127.0.0.1", 8443);
	q.alt_names = local;
	q.n_alt = 1;
	cr_expect_str_eq(tp_fmt(policy_match(p, &q, NULL)), "accept api.local:8443 plain");
	q.n_alt = 0;
	cr_expect_null(policy_match(p, &q, NULL));
	policy_free(p);
}

Test(policy_match, lists_all_matches_most_specific_first)
{
	struct policy *p = tp_must("connect *:* tls alpn=any\n"
				   "connect 10.0.0.0/8:443 tls alpn=c8\n"
				   "connect 10.0.0.0/16:* tls alpn=c16\n"
				   "connect 10.0.0.1:400-500 deny\n"
				   "connect *.example.com:443 plain\n"
				   "connect a.example.com:* tls\n"
				   "connect a.example.com:443 tls alpn=one\n"
				   "connect a.example.com:1-1000 tls alpn=wide\n"
				   "connect a.example.com:80 tls alpn=other-port\n"
				   "connect 10.0.0.1:1-100 deny\n");
	static const char *const want[] = {
	    "connect a.example.com:443 tls alpn=one",
	    "connect a.example.com:1-1000 tls alpn=wide",
	    "connect a.example.com:* tls",
	    "connect *.example.com:443 plain",
	    "connect 10.0.0.1:400-500 deny",
	    "connect 10.0.0.0/16:* tls alpn=c16",
	    "connect 10.0.0.0/8:443 tls alpn=c8",
	    "connect *:* tls alpn=any",
	};
	static const char *const alts[] = {"a.example.com", "A.EXAMPLE.COM."};
	struct policy_query q = tp_query(POLICY_CONNECT, "a.example.com", "10.0.0.1", 443);
	const struct policy_rule *out[16];
	size_t n, i;

	/* Alt names repeating the resolved name must not list its rules twice. */
	q.alt_names = alts;
	q.n_alt = 2;
	n = policy_match_all(p, &q, out, 16);
	cr_assert_eq(n, 8);
	for (i = 0; i < n; i++)
		cr_expect_str_eq(tp_fmt(out[i]), want[i], "match %zu", i);
	cr_expect_eq(out[0], policy_match(p, &q, NULL));

	/* MAX only limits what is written; the count is the total. */
	memset(out, 0, sizeof(out));
	cr_expect_eq(policy_match_all(p, &q, out, 2), 8);
	cr_expect_str_eq(tp_fmt(out[1]), want[1]);
	cr_expect_null(out[2]);
	cr_expect_eq(policy_match_all(p, &q, NULL, 0), 8);
	policy_free(p);
}

Test(policy_match, answers_nothing_for_an_empty_or_unfinished_table)
{
	struct policy_query q = tp_query(POLICY_CONNECT, "a.com", "1.2.3.4", 1);
	struct policy_diags d = {0};
	struct policy *p = policy_new();

	policy_add_text(p, "TLSSHIM_POLICY", "connect *:* tls", &d);
	cr_expect_null(policy_match(p, &q, NULL), "not finished");
	cr_expect_eq(policy_finish(p, &d), 0);
	cr_expect_not_null(policy_match(p, &q, NULL));
	policy_free(p);

	p = tp_must("");
	cr_expect_null(policy_match(p, &q, NULL));
	cr_expect_eq(policy_match_all(p, &q, NULL, 0), 0);
	policy_free(p);
}

Test(policy_match, matches_in_a_table_of_ten_thousand_rules)
{
	size_t cap = 10000 * 48, o = 0;
	char *text = malloc(cap);
	struct policy *p;
	unsigned i;

	cr_assert_not_null(text);
	for (i = 0; i < 2500; i++) {
		o += (size_t)snprintf(text + o, cap - o, "connect host%u.example.com:443 tls\n", i);
		o += (size_t)snprintf(text + o, cap - o, "connect *.zone%u.example.net plain\n", i);
		o += (size_t)snprintf(text + o, cap - o, "connect 10.%u.%u.1:80 deny\n", i / 256,
				      i % 256);
		o += (size_t)snprintf(text + o, cap - o, "connect 172.%u.%u.0/24 tls\n",
				      16 + i / 256, i % 256);
	}
	p = tp_must(text);
	cr_assert_eq(policy_count(p), 10000);
	{
		struct policy_query q = tp_query(POLICY_CONNECT, "HOST1234.example.com", NULL, 443);

		cr_expect_str_eq(tp_fmt(policy_match(p, &q, NULL)),
				 "connect host1234.example.com:443 tls");
		q = tp_query(POLICY_CONNECT, "a.b.zone77.example.net", NULL, 1);
		cr_expect_str_eq(tp_fmt(policy_match(p, &q, NULL)),
				 "connect *.zone77.example.net:* plain");
		q = tp_query(POLICY_CONNECT, NULL, "10.9.195.1", 80);
		cr_expect_str_eq(tp_fmt(policy_match(p, &q, NULL)), "connect 10.9.195.1:80 deny");
		q = tp_query(POLICY_CONNECT, NULL, "172.25.195.77", 80);
		cr_expect_str_eq(tp_fmt(policy_match(p, &q, NULL)),
				 "connect 172.25.195.0/24:* tls");
		q = tp_query(POLICY_CONNECT, "host2500.example.com", "9.9.9.9", 443);
		cr_expect_null(policy_match(p, &q, NULL));
	}
	policy_free(p);
	free(text);
}

struct thread_arg {
	const struct policy *p;
	int bad;
};

/* Rule 0 of the policy below is the suffix rule, rule 1 the CIDR rule. */

static void *lookups(void *arg)
{
	struct thread_arg *a = arg;
	int i;

	for (i = 0; i < 20000; i++) {
		struct policy_query q = tp_query(POLICY_CONNECT, i % 2 ? "x.example.com" : NULL,
						 "10.1.2.3", (uint16_t)(1 + i % 1000));
		const struct policy_rule *r = policy_match(a->p, &q, NULL);

		/* No tp_fmt() here: its buffer is shared. */
		if (r != policy_rule_at(a->p, i % 2 ? 0 : 1))
			a->bad++;
	}
	return NULL;
}

Test(policy_match, answers_from_many_threads_at_once)
{
	struct policy *p = tp_must("connect *.example.com plain\nconnect 10.0.0.0/8 tls\n");
	struct thread_arg args[4];
	pthread_t t[4];
	int i;

	for (i = 0; i < 4; i++) {
		args[i].p = p;
		args[i].bad = 0;
		cr_assert_eq(pthread_create(&t[i], NULL, lookups, &args[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		cr_expect_eq(args[i].bad, 0, "thread %d", i);
	}
	policy_free(p);
}
