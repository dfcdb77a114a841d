/*
 * test_policy_errors.c - every way a policy can be wrong: each error's
 * LINE:COL and message, that all errors of a policy are reported (not just
 * the first), ties between rules, and file sources that cannot be read.
 */
#include <unistd.h>

#include "test_policy_util.h"

static char dir[64], f_pem[128];

static void files_init(void)
{
	FILE *f;

	strcpy(dir, "/tmp/tlsshim-policy-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(f_pem, sizeof(f_pem), "%s/a.pem", dir);
	f = fopen(f_pem, "w");
	cr_assert_not_null(f);
	fputs("pem\n", f);
	fclose(f);
}

static void files_fini(void)
{
	unlink(f_pem);
	rmdir(dir);
}

TestSuite(policy_errors, .init = files_init, .fini = files_fini);

/* A policy with exactly one error, where and what. See expand() for "@F" and "@D". */
struct err_case {
	const char *in;
	unsigned line, col;
	const char *msg; /* substring of the message */
};

/* Replaces each "@F" in IN with the readable file and "@D" with its directory. */
static const char *expand(const char *in)
{
	static char buf[4096];
	size_t o = 0;

	for (; *in && o + 200 < sizeof(buf); in++) {
		if (in[0] == '@' && (in[1] == 'F' || in[1] == 'D')) {
			o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s",
					      in[1] == 'F' ? f_pem : dir);
			in++;
			continue;
		}
		buf[o++] = *in;
	}
	buf[o] = '\0';
	return buf;
}

static void check_cases(const struct err_case *cases, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		struct policy_diags d = {0};
		const char *in = expand(cases[i].in);
		struct policy *p = tp_load(in, &d);

		cr_expect_null(p, "%s: loaded", in);
		policy_free(p);
		cr_expect_eq(d.n, 1, "%s: want 1 diagnostic, got:\n%s", in, tp_diags_str(&d));
		if (d.n == 0)
			continue;
		cr_expect_str_eq(d.v[0].source, "TLSSHIM_POLICY", "%s", in);
		cr_expect_eq(d.v[0].line, cases[i].line, "%s: line, got %s", in, tp_diags_str(&d));
		cr_expect_eq(d.v[0].col, cases[i].col, "%s: col, got %s", in, tp_diags_str(&d));
		cr_expect(strstr(d.v[0].msg, cases[i].msg) != NULL, "%s: want '%s', got '%s'", in,
			  cases[i].msg, d.v[0].msg);
		cr_expect(strchr(d.v[0].msg, '\n') == NULL, "%s: one line", in);
		policy_diags_free(&d);
	}
}

#define CHECK(cases) check_cases(cases, sizeof(cases) / sizeof(cases[0]))

Test(policy_errors, rejects_bad_words_with_what_was_expected)
{
	static const struct err_case cases[] = {
	    {"conect a.com tls", 1, 1, "expected 'connect' or 'accept', got 'conect'"},
	    {"Connect a.com tls", 1, 1, "expected 'connect' or 'accept', got 'Connect'"},
	    {"connect", 1, 8, "expected a host[:ports] after 'connect'"},
	    {"accept  ", 1, 7, "expected a host[:ports] after 'accept'"},
	    {"connect a.com", 1, 14, "expected an action ('tls', 'plain', 'deny' or 'auto')"},
	    {"connect a.com tlz", 1, 15, "expected 'tls', 'plain', 'deny' or 'auto', got 'tlz'"},
	    {"connect a.com TLS", 1, 15, "got 'TLS'"},
	    {"connect a.com \"tls\"", 1, 15, "got '\"tls\"'"},
	    {"connect a.com tls\x01", 1, 15, "got 'tls\\x01'"},
	};

	CHECK(cases);
}

Test(policy_errors, rejects_auto_on_connect)
{
	static const struct err_case cases[] = {
	    {"connect a.com:443 auto", 1, 19, "'auto' applies to accept rules only"},
	    {"connect *:* auto cert=@F key=@F", 1, 13, "'auto' applies to accept rules only"},
	};

	CHECK(cases);
}

Test(policy_errors, rejects_bad_host_names)
{
	static const struct err_case cases[] = {
	    {"connect a..com tls", 1, 11, "invalid host name 'a..com': empty label"},
	    {"connect .a.com tls", 1, 9, "empty label"},
	    {"connect a.com.. tls", 1, 15, "empty label"},
	    {"connect -a.com tls", 1, 9, "label starts or ends with '-'"},
	    {"connect a-.com tls", 1, 9, "label starts or ends with '-'"},
	    {"connect a.b-.com tls", 1, 11, "label starts or ends with '-'"},
	    {"connect a$b.com tls", 1, 10, "invalid character"},
	    {"connect \"a.com\" tls", 1, 9, "invalid character"},
	    {"connect a.*.com tls", 1, 11, "'*' must be a whole leftmost label"},
	    {"connect *a.com tls", 1, 9, "'*' must be a whole leftmost label"},
	    {"connect *.*.com tls", 1, 11, "'*' must be a whole leftmost label"},
	    {"connect a.com* tls", 1, 14, "'*' must be a whole leftmost label"},
	    {"connect *. tls", 1, 11, "empty name"},
	    {"connect :443 tls", 1, 9, "expected a host before ':'"},
	};

	CHECK(cases);
}

Test(policy_errors, rejects_labels_and_names_that_are_too_long)
{
	char label64[65], name254[255], r1[400], r2[400];
	size_t i;

	memset(label64, 'a', 64);
	label64[64] = '\0';
	snprintf(r1, sizeof(r1), "connect x.%s.com tls", label64);
	for (i = 0; i < 254; i++)
		name254[i] = (i + 1) % 50 == 0 ? '.' : 'b';
	name254[254] = '\0';
	snprintf(r2, sizeof(r2), "connect %s tls", name254);
	{
		const struct err_case cases[] = {
		    {r1, 1, 11, "label longer than 63 bytes"},
		    {r2, 1, 9, "name longer than 253 bytes"},
		};

		CHECK(cases);
	}
}

Test(policy_errors, rejects_bad_ipv4_and_cidr)
{
	static const struct err_case cases[] = {
	    {"connect 1.2.3 tls", 1, 9, "invalid IPv4 address '1.2.3'"},
	    {"connect 1.2.3.256 tls", 1, 9, "invalid IPv4 address '1.2.3.256'"},
	    {"connect 01.2.3.4 tls", 1, 9, "invalid IPv4 address"},
	    {"connect 1.2.3.4.5 tls", 1, 9, "invalid IPv4 address"},
	    {"connect 10 tls", 1, 9, "invalid IPv4 address"},
	    {"connect 1..2.3 tls", 1, 9, "invalid IPv4 address"},
	    {"connect 1.2.3.4. tls", 1, 9, "invalid IPv4 address"},
	    {"connect 1.2.3.00 tls", 1, 9, "invalid IPv4 address"},
	    {"connect 1.2.3.1000 tls", 1, 9, "invalid IPv4 address"},
	    {"connect 1.2.3.4/8:1 tls", 1, 9, "has host bits set; did you mean 1.0.0.0/8?"},
	    {"connect 10.0.0.0/33 tls", 1, 18, "expected a prefix length 0-32, got '33'"},
	    {"connect 10.0.0.0/ tls", 1, 18, "expected a prefix length 0-32, got ''"},
	    {"connect 10.0.0.0/-1 tls", 1, 18, "expected a prefix length 0-32"},
	    {"connect 10.0.0.0/8/8 tls", 1, 18, "expected a prefix length 0-32"},
	    {"connect 10.1.2.3/8 tls", 1, 9,
	     "10.1.2.3/8 has host bits set; did you mean 10.0.0.0/8?"},
	    {"connect 10.0.0.1/31:443 tls", 1, 9, "did you mean 10.0.0.0/31?"},
	    {"connect 1.2.3.4/0 tls", 1, 9, "did you mean 0.0.0.0/0?"},
	    {"connect a.com/8 tls", 1, 9, "invalid IPv4 address 'a.com'"},
	};

	CHECK(cases);
}

Test(policy_errors, rejects_bad_ipv6)
{
	static const struct err_case cases[] = {
	    {"connect ::1 tls", 1, 9, "IPv6 addresses must be in brackets"},
	    {"connect 2001:db8::1:443 tls", 1, 9, "IPv6 addresses must be in brackets"},
	    {"connect [::1 tls", 1, 9, "missing ']'"},
	    {"connect [fe80::1%eth0]:22 tls", 1, 17, "zone ids ('%eth0') are not allowed"},
	    {"connect [::1]x tls", 1, 14, "expected ':' and ports after ']'"},
	    {"connect [::1/129] tls", 1, 14, "expected a prefix length 0-128, got '129'"},
	    {"connect [::1]/1000 tls", 1, 15, "expected a prefix length 0-128"},
	    {"connect [::/64]/64 tls", 1, 16, "two prefix lengths"},
	    {"connect [1.2.3.4] tls", 1, 9, "IPv4 addresses are written without brackets"},
	    {"connect [zz::1] tls", 1, 9, "invalid IPv6 address 'zz::1'"},
	    {"connect [] tls", 1, 9, "invalid IPv6 address ''"},
	    {"connect [2001:db8::1/32] tls", 1, 9,
	     "has host bits set; did you mean [2001:db8::/32]?"},
	    {"connect [2001:db8::1]/32:1 tls", 1, 9, "did you mean [2001:db8::/32]?"},
	    {"connect [::ffff:10.1.2.3/104] tls", 1, 9, "did you mean 10.0.0.0/8?"},
	};

	CHECK(cases);
}

Test(policy_errors, rejects_bad_ports_at_the_port_column)
{
	static const struct err_case cases[] = {
	    {"connect a.com: tls", 1, 15, "expected a port 1-65535, '*' or a range LO-HI"},
	    {"connect a.com:0 tls", 1, 15, "got '0'"},
	    {"connect a.com:65536 tls", 1, 15, "got '65536'"},
	    {"connect a.com:99999999 tls", 1, 15, "got '99999999'"},
	    {"connect a.com:http tls", 1, 15, "got 'http'"},
	    {"connect a.com:+1 tls", 1, 15, "got '+1'"},
	    {"connect a.com:-5 tls", 1, 15, "got ''"},
	    {"connect a.com:10-x tls", 1, 18, "got 'x'"},
	    {"connect a.com:10- tls", 1, 18, "got ''"},
	    {"connect a.com:1-2-3 tls", 1, 17, "got '2-3'"},
	    {"connect a.com:500-400 tls", 1, 15, "port range 500-400 is empty"},
	    {"connect *:** tls", 1, 11, "got '**'"},
	    {"connect [::1]:0 tls", 1, 15, "got '0'"},
	    {"connect 10.0.0.0/8:x tls", 1, 20, "got 'x'"},
	};

	CHECK(cases);
}

Test(policy_errors, rejects_unknown_options_suggesting_close_ones)
{
	static const struct err_case cases[] = {
	    {"connect a.com tls sin=x", 1, 19, "unknown option 'sin'; did you mean 'sni'?"},
	    {"connect a.com tls cafile=@F", 1, 19, "unknown option 'cafile'"},
	    {"connect a.com tls insecur", 1, 19, "did you mean 'insecure'?"},
	    {"connect a.com tls min_version=1.2", 1, 19, "did you mean 'min-version'?"},
	    {"connect a.com tls handshake-timout=1", 1, 19, "did you mean 'handshake-timeout'?"},
	    {"connect a.com tls cipher=x", 1, 19, "did you mean 'ciphers'?"},
	    {"connect a.com tls frobnicate=1", 1, 19, "unknown option 'frobnicate'"},
	    {"connect a.com tls x", 1, 19, "unknown option 'x'"},
	    {"connect a.com tls =x", 1, 19, "unknown option ''"},
	};
	struct policy_diags d = {0};

	CHECK(cases);
	/* No suggestion when nothing is close. */
	cr_expect_null(tp_load("connect a.com tls frobnicate=1", &d));
	cr_assert_eq(d.n, 1);
	cr_expect_null(strstr(d.v[0].msg, "did you mean"), "%s", d.v[0].msg);
	policy_diags_free(&d);
}

Test(policy_errors, rejects_malformed_option_words)
{
	static const struct err_case cases[] = {
	    {"connect a.com tls insecure=yes", 1, 19, "'insecure' is a flag and takes no value"},
	    {"connect a.com tls sni", 1, 19, "option 'sni' needs a value"},
	    {"connect a.com tls sni=", 1, 23, "empty value for 'sni'"},
	    {"connect a.com tls sni=\"\"", 1, 23, "empty value for 'sni'"},
	    {"connect a.com tls ca=", 1, 22, "empty value for 'ca'"},
	    {"connect a.com tls ca=\"@F", 1, 22, "unterminated quote"},
	    {"connect a.com tls ciphers=\"a\\\"", 1, 27, "unterminated quote"},
	    {"connect a.com tls sni=a.com sni=b.com", 1, 29, "duplicate option 'sni'"},
	    {"connect a.com tls insecure insecure", 1, 28, "duplicate option 'insecure'"},
	    {"connect a.com tls alpn=h2 alpn=h2", 1, 27, "duplicate option 'alpn'"},
	    {"connect a.com tls min-version=1.2 min-version=1.3", 1, 35, "duplicate option"},
	};
	char buf[512];

	/* The duplicate ca= sits after "ca=" + the path + " ". */
	snprintf(buf, sizeof(buf), "connect a.com tls ca=%s ca=%s", f_pem, f_pem);
	{
		const struct err_case dup[] = {
		    {buf, 1, (unsigned)(19 + 3 + strlen(f_pem) + 1), "duplicate option 'ca'"},
		};

		CHECK(dup);
	}
	CHECK(cases);
}

Test(policy_errors, rejects_options_of_the_other_direction)
{
	static const struct err_case cases[] = {
	    {"connect a.com tls client-ca=@F", 1, 19, "'client-ca' applies to accept rules only"},
	    {"connect a.com tls allow=dns:x", 1, 19, "'allow' applies to accept rules only"},
	};
	static const char *const connect_only[] = {"sni=a.com", "name=a.com", "insecure",
						   "pin=sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
						   "AAAAAAAAAAA="};
	char in[512];
	size_t i;

	CHECK(cases);
	for (i = 0; i < sizeof(connect_only) / sizeof(connect_only[0]); i++) {
		char msg[64];
		size_t n;

		snprintf(in, sizeof(in), "accept *:1 tls cert=%s key=%s ", f_pem, f_pem);
		n = strlen(in);
		snprintf(in + n, sizeof(in) - n, "%s", connect_only[i]);
		snprintf(msg, sizeof(msg), "'%.*s' applies to connect rules only",
			 (int)strcspn(connect_only[i], "="), connect_only[i]);
		{
			const struct err_case c[] = {{in, 1, (unsigned)n + 1, msg}};

			CHECK(c);
		}
	}
}

Test(policy_errors, rejects_options_on_plain_and_deny)
{
	static const struct err_case cases[] = {
	    {"connect a.com plain ca=@F", 1, 21, "options have no effect on a 'plain' rule"},
	    {"connect a.com deny insecure", 1, 20, "options have no effect on a 'deny' rule"},
	    {"accept *:1 plain cert=@F key=@F", 1, 18, "no effect on a 'plain' rule"},
	    {"accept *:1 deny bogus", 1, 17, "no effect on a 'deny' rule"},
	};

	CHECK(cases);
}

Test(policy_errors, requires_cert_and_key_together_and_on_accept_tls)
{
	static const struct err_case cases[] = {
	    {"connect a.com tls cert=@F", 1, 19, "'cert' needs 'key'"},
	    {"connect a.com tls key=@F", 1, 19, "'key' needs 'cert'"},
	    {"accept *:1 tls", 1, 12, "'accept tls' needs cert= and key="},
	    {"accept *:1 auto", 1, 12, "'accept auto' needs cert= and key="},
	    {"accept *:1 tls alpn=h2", 1, 12, "'accept tls' needs cert= and key="},
	    {"accept *:1 tls cert=@F", 1, 16, "'cert' needs 'key'"},
	};
	char in[512];

	CHECK(cases);
	snprintf(in, sizeof(in), "accept *:1 tls cert=%s key=%s allow=dns:x", f_pem, f_pem);
	{
		const struct err_case c[] = {
		    {in, 1, (unsigned)(strstr(in, "allow") - in) + 1, "'allow' needs 'client-ca'"}};

		CHECK(c);
	}
}

Test(policy_errors, rejects_bad_option_values_at_the_value_column)
{
	static const struct err_case cases[] = {
	    /* column 23 is the value after "connect a.com tls sni=" */
	    {"connect a.com tls sni=1.2.3.4", 1, 23, "sni must be a DNS name, not an address"},
	    {"connect a.com tls sni=::1", 1, 23, "not an address"},
	    {"connect a.com tls sni=a..b", 1, 23, "sni: invalid DNS name: empty label"},
	    {"connect a.com tls sni=*.a.com", 1, 23, "sni: invalid DNS name"},
	    {"connect a.com tls name=a..b", 1, 24, "name: expected a DNS name or an IP address"},
	    {"connect a.com tls pin=abc", 1, 23, "pin must be 'sha256/'"},
	    {"connect a.com tls pin=sha1/AAAA", 1, 23, "pin must be 'sha256/'"},
	    {"connect a.com tls pin=sha256/!!!!", 1, 23, "invalid base64"},
	    {"connect a.com tls pin=sha256/AAAA", 1, 23, "this decodes to 3"},
	    {"connect a.com tls pin=sha256/", 1, 23, "this decodes to 0"},
	    {"connect a.com tls pin=sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==", 1, 23,
	     "this decodes to more than 32"},
	    {"connect a.com tls pin=sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=", 1, 23,
	     "invalid base64"},
	    {"connect a.com tls alpn=h2,,x", 1, 24, "alpn: each protocol name is 1-255 bytes"},
	    {"connect a.com tls alpn=,", 1, 24, "alpn: each protocol name is 1-255 bytes"},
	    {"connect a.com tls alpn=h2,", 1, 24, "alpn: each protocol name is 1-255 bytes"},
	    {"connect a.com tls min-version=1.0", 1, 31, "TLS 1.0 is not supported"},
	    {"connect a.com tls min-version=1.1", 1, 31, "TLS 1.1 is not supported"},
	    {"connect a.com tls min-version=1.4", 1, 31, "expected '1.2' or '1.3', got '1.4'"},
	    {"connect a.com tls min-version=tls1.2", 1, 31, "expected '1.2' or '1.3'"},
	    {"connect a.com tls handshake-timeout=0", 1, 37, "more than 0 and at most 3600"},
	    {"connect a.com tls handshake-timeout=0.000", 1, 37, "more than 0"},
	    {"connect a.com tls handshake-timeout=3600.001", 1, 37, "at most 3600"},
	    {"connect a.com tls handshake-timeout=86400", 1, 37, "at most 3600"},
	    {"connect a.com tls handshake-timeout=0.0001", 1, 37, "at most 3 decimals"},
	    {"connect a.com tls handshake-timeout=-1", 1, 37, "expected seconds"},
	    {"connect a.com tls handshake-timeout=1.", 1, 37, "expected seconds"},
	    {"connect a.com tls handshake-timeout=.5", 1, 37, "expected seconds"},
	    {"connect a.com tls handshake-timeout=1e3", 1, 37, "expected seconds"},
	    {"connect a.com tls handshake-timeout=10s", 1, 37, "expected seconds"},
	    {"connect a.com tls expiry-warn=3651", 1, 31, "expiry-warn must be at most 3650 days"},
	    {"connect a.com tls expiry-warn=14d", 1, 31, "expected a number of days such as '14'"},
	    {"connect a.com tls expiry-warn=-1", 1, 31, "expected a number of days"},
	    {"connect a.com tls expiry-warn=", 1, 31, "empty value for 'expiry-warn'"},
	    {"connect a.com tls ca=/nonexistent/ca.pem", 1, 22,
	     "cannot read /nonexistent/ca.pem: No such file or directory"},
	    {"connect a.com tls ca=\"/no such;dir/x\"", 1, 22,
	     "cannot read /no such;dir/x: No such file or directory"},
	    {"connect a.com tls cert=@D key=@F", 1, 24, "is a directory"},
	};
	char alpn[400], in[600];

	CHECK(cases);
	snprintf(in, sizeof(in), "connect a.com tls cert=%s key=/nonexistent", f_pem);
	{
		const struct err_case c[] = {
		    {in, 1, (unsigned)(strstr(in, "key=") - in) + 5, "cannot read /nonexistent"}};

		CHECK(c);
	}
	memset(alpn, 'x', 256);
	alpn[256] = '\0';
	snprintf(in, sizeof(in), "connect a.com tls alpn=h2,%s", alpn);
	{
		const struct err_case c[] = {{in, 1, 24, "1-255 bytes"}};

		CHECK(c);
	}
}

Test(policy_errors, rejects_bad_allow_patterns)
{
	char in[600];
	static const char *const bad[] = {
	    "foo:x", "dns:", "cn:", "uri:", "dns:a,,cn:b", "DNS:a", "dns:a,"};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int n = snprintf(in, sizeof(in),
				 "accept *:1 tls cert=%s key=%s client-ca=%s allow=", f_pem, f_pem,
				 f_pem);

		snprintf(in + n, sizeof(in) - (size_t)n, "%s", bad[i]);
		{
			const struct err_case c[] = {{in, 1, (unsigned)n + 1,
						      "allow: expected 'cn:PATTERN', 'dns:PATTERN' "
						      "or 'uri:PATTERN'"}};

			CHECK(c);
		}
	}
}

Test(policy_errors, reports_every_error_of_a_policy_in_order)
{
	struct policy_diags d = {0};
	const char *in = "connect a.com:443 tls\n"
			 "conect b.com tls\n"
			 "connect c.com:0 tls; connect d.com tlz\n"
			 "# fine\n"
			 "connect e.com:80 plain\n"
			 "connect f.com tls sin=x\n";
	static const struct {
		unsigned line, col;
		const char *msg;
	} want[] = {
	    {2, 1, "expected 'connect' or 'accept'"},
	    {3, 15, "expected a port"},
	    {3, 36, "expected 'tls', 'plain', 'deny' or 'auto'"},
	    {6, 19, "unknown option 'sin'"},
	};
	struct policy *p = policy_new();
	size_t i;

	cr_expect_eq(policy_add_text(p, "TLSSHIM_POLICY", in, &d), -1);
	/* Good rules are kept, bad ones skipped; finish still fails. */
	cr_expect_eq(policy_count(p), 2);
	cr_expect_eq(policy_finish(p, &d), -1);
	cr_assert_eq(d.n, 4, "%s", tp_diags_str(&d));
	for (i = 0; i < 4; i++) {
		cr_expect_eq(d.v[i].line, want[i].line, "diag %zu: %s", i, tp_diags_str(&d));
		cr_expect_eq(d.v[i].col, want[i].col, "diag %zu: %s", i, tp_diags_str(&d));
		cr_expect(strstr(d.v[i].msg, want[i].msg) != NULL, "diag %zu: %s", i, d.v[i].msg);
	}
	policy_diags_free(&d);
	policy_free(p);
}

Test(policy_errors, reports_every_error_of_one_rule_in_column_order)
{
	struct policy_diags d = {0};
	const char *in = "conect a..com tlz sin=x ca=";
	static const unsigned cols[] = {1, 10, 15, 19, 28};

	cr_expect_null(tp_load(in, &d));
	cr_assert_eq(d.n, 5, "%s", tp_diags_str(&d));
	for (size_t i = 0; i < 5; i++)
		cr_expect_eq(d.v[i].col, cols[i], "%s: diag %zu: %s", in, i, tp_diags_str(&d));
	policy_diags_free(&d);
}

Test(policy_errors, rejects_rules_that_tie_and_overlap)
{
	static const struct err_case cases[] = {
	    {"connect a.com:443 tls\nconnect a.com:443 plain", 2, 1,
	     "rule conflicts with TLSSHIM_POLICY:1:1 (same host and port specificity, "
	     "overlapping ports)"},
	    {"connect *:* tls;connect * deny", 1, 17, "rule conflicts with TLSSHIM_POLICY:1:1"},
	    {"connect a.com:1-10 tls\nconnect a.com:5-14 deny", 2, 1, "conflicts with"},
	    {"connect a.com:5-14 tls\nconnect a.com:1-10 deny", 2, 1, "TLSSHIM_POLICY:1:1"},
	    {"connect a.com:1-10 tls\nconnect a.com:10-19 deny", 2, 1, "conflicts with"},
	    {"connect 1.2.3.4 tls\nconnect [::ffff:1.2.3.4] tls", 2, 1, "conflicts with"},
	    {"connect A.com:1 tls\nconnect a.com.:1 tls", 2, 1, "conflicts with"},
	    {"connect *.A.com tls\nconnect *.a.com plain", 2, 1, "conflicts with"},
	    {"connect 10.0.0.0/8 tls\n  connect [::ffff:10.0.0.0/104] deny", 2, 3,
	     "conflicts with TLSSHIM_POLICY:1:1"},
	    {"connect [::1]:1 tls\nconnect [0::1]:1 tls", 2, 1, "conflicts with"},
	    {"connect [2001:db8::/32] tls\nconnect [2001:db8::]/32 tls", 2, 1, "conflicts with"},
	    {"accept *:1 plain\naccept *:1 deny", 2, 1, "conflicts with"},
	};

	CHECK(cases);
}

Test(policy_errors, allows_overlaps_that_do_not_tie)
{
	static const char *const ok[] = {
	    "connect a.com:1-10 tls\nconnect a.com:5-100 deny",
	    "connect a.com:1-10 tls\nconnect a.com:11-20 deny",
	    "connect a.com:443 tls\nconnect a.com:443-443 deny",
	    "connect a.com:443 tls\nconnect a.com:444 deny",
	    "connect a.com:443 tls\naccept a.com:443 plain",
	    "connect a.com tls\nconnect *.a.com deny",
	    "connect 10.0.0.1 tls\nconnect 10.0.0.1/32 deny",
	    "connect 10.0.0.0/8 tls\nconnect 10.0.0.0/9 deny",
	    "connect 10.0.0.0/8 tls\nconnect 11.0.0.0/8 deny",
	    "connect [::a00:1] tls\nconnect 0.0.0.10 deny\nconnect 10.0.0.1 plain",
	    "connect *:1-65535 tls\nconnect *:* deny",
	};
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct policy_diags d = {0};
		struct policy *p = tp_load(ok[i], &d);

		cr_expect_not_null(p, "%s: %s", ok[i], tp_diags_str(&d));
		policy_free(p);
		policy_diags_free(&d);
	}
}

Test(policy_errors, names_the_other_source_in_a_conflict)
{
	char path[128];
	struct policy_diags d = {0};
	struct policy *p = policy_new();
	FILE *f;

	snprintf(path, sizeof(path), "%s/policy", dir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs("# rules\n\n   connect *:25 plain\n", f);
	fclose(f);
	policy_add_text(p, "TLSSHIM_POLICY", "connect *:25 deny", &d);
	policy_add_file(p, path, &d);
	cr_expect_eq(policy_finish(p, &d), -1);
	cr_assert_eq(d.n, 1, "%s", tp_diags_str(&d));
	cr_expect_str_eq(d.v[0].source, path);
	cr_expect_eq(d.v[0].line, 3);
	cr_expect_eq(d.v[0].col, 4);
	cr_expect_str_eq(d.v[0].msg, "rule conflicts with TLSSHIM_POLICY:1:1 (same host and port "
				     "specificity, overlapping ports)");
	policy_diags_free(&d);
	policy_free(p);
	unlink(path);
}

Test(policy_errors, reports_errors_in_files_with_the_path_and_line)
{
	char path[128];
	struct policy_diags d = {0};
	struct policy *p = policy_new();
	FILE *f;

	snprintf(path, sizeof(path), "%s/policy", dir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs("connect a.com tls\n# x\nconnect b.com tlz\n", f);
	fclose(f);
	cr_expect_eq(policy_add_file(p, path, &d), -1);
	cr_assert_eq(d.n, 1, "%s", tp_diags_str(&d));
	cr_expect_str_eq(d.v[0].source, path);
	cr_expect_eq(d.v[0].line, 3);
	cr_expect_eq(d.v[0].col, 15);
	policy_diags_free(&d);
	policy_free(p);
	unlink(path);
}

Test(policy_errors, reports_an_unreadable_policy_file_at_line_zero)
{
	struct policy_diags d = {0};
	struct policy *p = policy_new();

	cr_expect_eq(policy_add_file(p, "/nonexistent/policy", &d), -1);
	cr_assert_eq(d.n, 1);
	cr_expect_str_eq(d.v[0].source, "/nonexistent/policy");
	cr_expect_eq(d.v[0].line, 0);
	cr_expect_eq(d.v[0].col, 0);
	cr_expect(strstr(d.v[0].msg, "No such file or directory") != NULL, "%s", d.v[0].msg);
	cr_expect_eq(policy_finish(p, &d), -1);
	policy_diags_free(&d);
	policy_free(p);

	p = policy_new();
	cr_expect_eq(policy_add_file(p, dir, &d), -1, "a directory is not a policy file");
	policy_diags_free(&d);
	policy_free(p);
}

Test(policy_errors, refuses_rules_after_finish)
{
	struct policy_diags d = {0};
	struct policy *p = policy_new();

	cr_assert_eq(policy_finish(p, &d), 0);
	cr_expect_eq(policy_add_text(p, "TLSSHIM_POLICY", "connect a.com tls", &d), -1);
	cr_expect_eq(d.n, 1);
	cr_expect_eq(policy_count(p), 0);
	policy_diags_free(&d);
	policy_free(p);
}

Test(policy_errors, fails_finish_again_after_a_failed_finish)
{
	struct policy_diags d = {0};
	struct policy *p = policy_new();

	policy_add_text(p, "TLSSHIM_POLICY", "connect *:1 tls;connect *:1 tls", &d);
	cr_expect_eq(policy_finish(p, &d), -1);
	cr_expect_eq(policy_finish(p, &d), -1);
	cr_expect_eq(d.n, 1);
	policy_diags_free(&d);
	policy_free(p);
}

/*
 * Combinations that would skip a check are errors, with the exact message: a
 * cleartext client under auto cannot be authenticated, and a ca= on accept
 * would let its CA's certificates in as clients.
 */
/* The 1-based column of option OPT ("ca" finds " ca=", not "client-ca=") in IN. */
static unsigned opt_col(const char *in, const char *opt)
{
	char pat[32];
	const char *hit;

	snprintf(pat, sizeof(pat), " %s=", opt);
	hit = strstr(in, pat);
	cr_assert_not_null(hit, "%s: no '%s'", in, pat);
	return (unsigned)(hit - in) + 2;
}

Test(policy_errors, refuses_combinations_that_would_skip_a_check)
{
	static const char *const auto_msg =
	    "'%s' cannot be used with 'auto' (a cleartext client cannot be authenticated); use "
	    "'tls' to require client certificates";
	char in[1024], want[256];
	struct {
		const char *fmt; /* cert, key, then the option's file */
		const char *opt, *msg;
	} cases[] = {
	    {"accept *:1 auto cert=%s key=%s client-ca=%s", "client-ca", auto_msg},
	    {"accept *:1 auto cert=%s key=%s client-ca=%s allow=dns:*.internal", "allow", auto_msg},
	    {"accept *:1 tls cert=%s key=%s ca=%s", "ca",
	     "'ca' applies to connect rules only: client certificates verify only against "
	     "client-ca; did you mean 'client-ca='?"},
	    {"accept *:1 auto cert=%s key=%s ca=%s", "ca",
	     "'ca' applies to connect rules only: client certificates verify only against "
	     "client-ca; did you mean 'client-ca='?"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct policy_diags d = {0};
		struct policy *p;
		size_t k;

		/* The formats are the table's own literals. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
		snprintf(in, sizeof(in), cases[i].fmt, f_pem, f_pem, f_pem);
		snprintf(want, sizeof(want), cases[i].msg, cases[i].opt);
#pragma GCC diagnostic pop
		p = tp_load(in, &d);
		cr_expect_null(p, "%s: loaded", in);
		policy_free(p);
		/* The last diagnostic is the check's (client-ca+allow: both are reported). */
		cr_assert_geq(d.n, 1, "%s: no diagnostic", in);
		k = d.n - 1;
		cr_expect_str_eq(d.v[k].msg, want, "%s", in);
		cr_expect_eq(d.v[k].line, 1, "%s", in);
		cr_expect_eq(d.v[k].col, opt_col(in, cases[i].opt), "%s: column, got %s", in,
			     tp_diags_str(&d));
		policy_diags_free(&d);
	}
	/* The safe forms load. */
	{
		struct policy_diags d = {0};
		struct policy *p;

		snprintf(in, sizeof(in),
			 "accept *:1 tls cert=%s key=%s client-ca=%s allow=dns:*.internal\n"
			 "accept *:2 auto cert=%s key=%s",
			 f_pem, f_pem, f_pem, f_pem, f_pem);
		p = tp_load(in, &d);
		cr_expect_not_null(p, "%s: %s", in, tp_diags_str(&d));
		policy_free(p);
		policy_diags_free(&d);
	}
}
