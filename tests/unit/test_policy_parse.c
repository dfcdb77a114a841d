/*
 * test_policy_parse.c - the policy language's valid forms: every production,
 * every option, separators, comments, quoting, file sources, the normalized
 * form `check` prints (and that it parses back to the same table), endpoints.
 * Errors are in test_policy_errors.c, look-ups in test_policy_match.c.
 */
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h" /* policy_ipv4_parse/_text */
#include "test_policy_util.h"

/* Readable files for the options that name files, made fresh for each test. */
static char dir[64], f_cert[128], f_key[128], f_ca[128], f_space[160];

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f, "create %s", path);
	fputs(text, f);
	fclose(f);
}

static void files_init(void)
{
	strcpy(dir, "/tmp/tlsshim-policy-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(f_cert, sizeof(f_cert), "%s/cert.pem", dir);
	snprintf(f_key, sizeof(f_key), "%s/key.pem", dir);
	snprintf(f_ca, sizeof(f_ca), "%s/ca.pem", dir);
	snprintf(f_space, sizeof(f_space), "%s/my ca;x#1.pem", dir);
	write_file(f_cert, "cert\n");
	write_file(f_key, "key\n");
	write_file(f_ca, "ca\n");
	write_file(f_space, "ca\n");
}

static void files_fini(void)
{
	unlink(f_cert);
	unlink(f_key);
	unlink(f_ca);
	unlink(f_space);
	rmdir(dir);
}

TestSuite(policy_parse, .init = files_init, .fini = files_fini);

/* Parses TEXT, which must hold exactly one valid rule; returns it (P to free). */
static const struct policy_rule *one_rule(const char *text, struct policy **p)
{
	*p = tp_must(text);
	cr_assert_eq(policy_count(*p), 1, "%s: %zu rules", text, policy_count(*p));
	return policy_rule_at(*p, 0);
}

Test(policy_parse, normalizes_every_host_and_port_form)
{
	static const struct {
		const char *in, *out;
		enum policy_host_kind host;
		enum policy_port_kind port;
	} cases[] = {
	    {"connect api.internal:443 tls", "connect api.internal:443 tls", POLICY_HOST_NAME,
	     POLICY_PORT_ONE},
	    {"connect API.Internal.:443 tls", "connect api.internal:443 tls", POLICY_HOST_NAME,
	     POLICY_PORT_ONE},
	    {"connect a_b.example-1.com:65535 plain", "connect a_b.example-1.com:65535 plain",
	     POLICY_HOST_NAME, POLICY_PORT_ONE},
	    {"connect 123.example.com:1 deny", "connect 123.example.com:1 deny", POLICY_HOST_NAME,
	     POLICY_PORT_ONE},
	    {"connect localhost tls", "connect localhost:* tls", POLICY_HOST_NAME, POLICY_PORT_ANY},
	    {"connect *.Example.com tls", "connect *.example.com:* tls", POLICY_HOST_SUFFIX,
	     POLICY_PORT_ANY},
	    {"connect *.internal:1-1024 tls", "connect *.internal:1-1024 tls", POLICY_HOST_SUFFIX,
	     POLICY_PORT_RANGE},
	    {"connect 10.0.0.1 plain", "connect 10.0.0.1:* plain", POLICY_HOST_ADDR,
	     POLICY_PORT_ANY},
	    {"connect 10.0.0.0/8:6379 tls", "connect 10.0.0.0/8:6379 tls", POLICY_HOST_CIDR,
	     POLICY_PORT_ONE},
	    {"connect 0.0.0.0/0:* deny", "connect 0.0.0.0/0:* deny", POLICY_HOST_CIDR,
	     POLICY_PORT_ANY},
	    {"connect 10.0.0.1/32:1 tls", "connect 10.0.0.1/32:1 tls", POLICY_HOST_CIDR,
	     POLICY_PORT_ONE},
	    {"connect [::1]:8443 tls", "connect [::1]:8443 tls", POLICY_HOST_ADDR, POLICY_PORT_ONE},
	    {"connect [2001:DB8:0:0::1] tls", "connect [2001:db8::1]:* tls", POLICY_HOST_ADDR,
	     POLICY_PORT_ANY},
	    {"connect [2001:db8::/32]:443 tls", "connect [2001:db8::/32]:443 tls", POLICY_HOST_CIDR,
	     POLICY_PORT_ONE},
	    {"connect [2001:db8::]/32:443 tls", "connect [2001:db8::/32]:443 tls", POLICY_HOST_CIDR,
	     POLICY_PORT_ONE},
	    {"connect [2001:db8::]/32 tls", "connect [2001:db8::/32]:* tls", POLICY_HOST_CIDR,
	     POLICY_PORT_ANY},
	    {"connect [::/0]:* tls", "connect [::/0]:* tls", POLICY_HOST_CIDR, POLICY_PORT_ANY},
	    {"connect [::1/128]:1 tls", "connect [::1/128]:1 tls", POLICY_HOST_CIDR,
	     POLICY_PORT_ONE},
	    {"connect [::ffff:1.2.3.4]:80 tls", "connect 1.2.3.4:80 tls", POLICY_HOST_ADDR,
	     POLICY_PORT_ONE},
	    {"connect [::ffff:10.0.0.0/104]:80 tls", "connect 10.0.0.0/8:80 tls", POLICY_HOST_CIDR,
	     POLICY_PORT_ONE},
	    {"connect [::ffff:0:0]/96 tls", "connect 0.0.0.0/0:* tls", POLICY_HOST_CIDR,
	     POLICY_PORT_ANY},
	    {"connect * tls", "connect *:* tls", POLICY_HOST_ANY, POLICY_PORT_ANY},
	    {"connect *:* tls", "connect *:* tls", POLICY_HOST_ANY, POLICY_PORT_ANY},
	    {"connect *:25 deny", "connect *:25 deny", POLICY_HOST_ANY, POLICY_PORT_ONE},
	    {"connect a.com:1-65535 tls", "connect a.com:1-65535 tls", POLICY_HOST_NAME,
	     POLICY_PORT_RANGE},
	    {"connect a.com:443-443 tls", "connect a.com:443-443 tls", POLICY_HOST_NAME,
	     POLICY_PORT_RANGE},
	    {"\t connect\ta.com:1\t  tls  ", "connect a.com:1 tls", POLICY_HOST_NAME,
	     POLICY_PORT_ONE},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct policy *p;
		const struct policy_rule *r = one_rule(cases[i].in, &p);

		cr_expect_str_eq(tp_fmt(r), cases[i].out, "%s", cases[i].in);
		cr_expect_eq(r->host_kind, cases[i].host, "%s: host kind", cases[i].in);
		cr_expect_eq(r->port_kind, cases[i].port, "%s: port kind", cases[i].in);
		cr_expect_eq(r->dir, POLICY_CONNECT, "%s", cases[i].in);
		policy_free(p);
	}
}

Test(policy_parse, stores_addresses_in_network_order_with_family_and_prefix)
{
	static const struct {
		const char *in;
		int family;
		unsigned prefix;
		unsigned char addr[4];
		const char *host;
		uint16_t lo, hi;
	} cases[] = {
	    {"connect 10.1.2.3:1-2 tls", AF_INET, 32, {10, 1, 2, 3}, "10.1.2.3", 1, 2},
	    {"connect 192.168.0.0/16 tls", AF_INET, 16, {192, 168, 0, 0}, "192.168.0.0", 1, 65535},
	    {"connect 0.0.0.0:5 tls", AF_INET, 32, {0, 0, 0, 0}, "0.0.0.0", 5, 5},
	    {"connect 255.255.255.255:5 tls",
	     AF_INET,
	     32,
	     {255, 255, 255, 255},
	     "255.255.255.255",
	     5,
	     5},
	    {"connect 100.20.3.0/24 tls", AF_INET, 24, {100, 20, 3, 0}, "100.20.3.0", 1, 65535},
	    {"connect [::ffff:10.0.0.0/104]:7 tls", AF_INET, 8, {10, 0, 0, 0}, "10.0.0.0", 7, 7},
	    {"connect [::1]:9 tls", AF_INET6, 128, {0, 0, 0, 0}, "::1", 9, 9},
	    {"connect [fe80::/10] tls", AF_INET6, 10, {0xfe, 0x80, 0, 0}, "fe80::", 1, 65535},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct policy *p;
		const struct policy_rule *r = one_rule(cases[i].in, &p);

		cr_expect_eq(r->family, cases[i].family, "%s", cases[i].in);
		cr_expect_eq(r->prefix, cases[i].prefix, "%s", cases[i].in);
		cr_expect_eq(memcmp(r->addr, cases[i].addr, 4), 0, "%s", cases[i].in);
		cr_expect_str_eq(r->host, cases[i].host, "%s", cases[i].in);
		cr_expect_eq(r->port_lo, cases[i].lo, "%s", cases[i].in);
		cr_expect_eq(r->port_hi, cases[i].hi, "%s", cases[i].in);
		policy_free(p);
	}
}

Test(policy_parse, accepts_longest_label_and_name)
{
	char label63[64], name253[254], rule[400];
	struct policy *p;
	size_t i;

	memset(label63, 'a', 63);
	label63[63] = '\0';
	snprintf(rule, sizeof(rule), "connect %s.com tls", label63);
	one_rule(rule, &p);
	policy_free(p);

	/* 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253 */
	for (i = 0; i < 253; i++)
		name253[i] = (i + 1) % 64 == 0 ? '.' : 'b';
	name253[253] = '\0';
	snprintf(rule, sizeof(rule), "connect %s. tls", name253);
	cr_expect_str_eq(one_rule(rule, &p)->host, name253, "%s", rule);
	policy_free(p);
}

Test(policy_parse, reads_every_action_and_direction)
{
	char buf[512];
	static const struct {
		const char *in;
		int with_cert;
		enum policy_dir dir;
		enum policy_action act;
	} cases[] = {
	    {"connect a.com tls", 0, POLICY_CONNECT, POLICY_TLS},
	    {"connect a.com plain", 0, POLICY_CONNECT, POLICY_PLAIN},
	    {"connect a.com deny", 0, POLICY_CONNECT, POLICY_DENY},
	    {"accept *:1 tls", 1, POLICY_ACCEPT, POLICY_TLS},
	    {"accept *:1 auto", 1, POLICY_ACCEPT, POLICY_AUTO},
	    {"accept *:1 plain", 0, POLICY_ACCEPT, POLICY_PLAIN},
	    {"accept *:1 deny", 0, POLICY_ACCEPT, POLICY_DENY},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct policy *p;
		const struct policy_rule *r;

		if (cases[i].with_cert)
			snprintf(buf, sizeof(buf), "%s cert=%s key=%s", cases[i].in, f_cert, f_key);
		else
			snprintf(buf, sizeof(buf), "%s", cases[i].in);
		r = one_rule(buf, &p);
		cr_expect_eq(r->dir, cases[i].dir, "%s", buf);
		cr_expect_eq(r->action, cases[i].act, "%s", buf);
		cr_expect(policy_has_dir(p, cases[i].dir), "%s", buf);
		cr_expect_not(policy_has_dir(p, !cases[i].dir), "%s", buf);
		policy_free(p);
	}
}

Test(policy_parse, fills_defaults_when_no_option_is_given)
{
	struct policy *p;
	const struct policy_rule *r = one_rule("connect a.com:443 tls", &p);

	cr_expect_eq(r->opt.min_version, POLICY_TLS1_2);
	cr_expect_eq(r->opt.handshake_timeout_ms, POLICY_DEFAULT_HANDSHAKE_TIMEOUT_MS);
	cr_expect_eq(r->opt.given, 0);
	cr_expect_null(r->opt.ca);
	cr_expect_null(r->opt.alpn_wire);
	cr_expect_eq(r->opt.n_pins, 0);
	cr_expect_eq(r->opt.insecure, 0);
	cr_expect_str_eq(r->source, "TLSSHIM_POLICY");
	cr_expect_str_eq(r->text, "connect a.com:443 tls");
	cr_expect_eq(r->line, 1);
	cr_expect_eq(r->col, 1);
	policy_free(p);
}

Test(policy_parse, reads_file_options_of_both_directions)
{
	char buf[1024];
	struct policy *p;
	const struct policy_rule *r;

	snprintf(buf, sizeof(buf), "connect a.com tls ca=%s cert=%s key=%s", f_ca, f_cert, f_key);
	r = one_rule(buf, &p);
	cr_expect_str_eq(r->opt.ca, f_ca, "%s", buf);
	cr_expect_str_eq(r->opt.cert, f_cert, "%s", buf);
	cr_expect_str_eq(r->opt.key, f_key, "%s", buf);
	cr_expect_eq(r->opt.given,
		     1u << POLICY_OPT_CA | 1u << POLICY_OPT_CERT | 1u << POLICY_OPT_KEY, "%s", buf);
	policy_free(p);

	/* A CA directory (c_rehash layout) is fine for ca= and client-ca=. */
	snprintf(buf, sizeof(buf), "connect a.com tls ca=%s", dir);
	r = one_rule(buf, &p);
	cr_expect_str_eq(r->opt.ca, dir, "%s", buf);
	policy_free(p);
	snprintf(buf, sizeof(buf), "accept *:1 tls cert=%s key=%s client-ca=%s", f_cert, f_key,
		 dir);
	r = one_rule(buf, &p);
	cr_expect_str_eq(r->opt.client_ca, dir, "%s", buf);
	policy_free(p);
}

Test(policy_parse, reads_connect_only_options)
{
	static const unsigned char zero_pin[32] = {0};
	struct policy *p;
	const struct policy_rule *r;
	const char *in = "connect a.com tls sni=API.Example.com. name=[2001:DB8::1] insecure "
			 "pin=sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= "
			 "pin=sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";

	r = one_rule(in, &p);
	cr_expect_str_eq(r->opt.sni, "api.example.com", "%s", in);
	cr_expect_str_eq(r->opt.name, "2001:db8::1", "%s", in);
	cr_expect_eq(r->opt.insecure, 1, "%s", in);
	cr_assert_eq(r->opt.n_pins, 2, "%s", in);
	cr_expect_eq(memcmp(r->opt.pins[0].sha256, zero_pin, 32), 0, "%s", in);
	cr_expect_eq(r->opt.pins[1].sha256[0], 0xe3, "%s", in);
	cr_expect_eq(r->opt.pins[1].sha256[31], 0x55, "%s", in);
	policy_free(p);

	r = one_rule("connect a.com tls name=10.0.0.1", &p);
	cr_expect_str_eq(r->opt.name, "10.0.0.1");
	policy_free(p);
	r = one_rule("connect a.com tls name=Redis.Internal", &p);
	cr_expect_str_eq(r->opt.name, "redis.internal");
	policy_free(p);
}

Test(policy_parse, reads_accept_only_options)
{
	char buf[1024];
	struct policy *p;
	const struct policy_rule *r;

	snprintf(buf, sizeof(buf),
		 "accept 127.0.0.1:6379 tls cert=%s key=%s client-ca=%s "
		 "allow=dns:*.internal,cn:admin allow=uri:spiffe://x/*",
		 f_cert, f_key, f_ca);
	r = one_rule(buf, &p);
	cr_expect_str_eq(r->opt.client_ca, f_ca, "%s", buf);
	cr_assert_eq(r->opt.n_allow, 3, "%s", buf);
	cr_expect_str_eq(r->opt.allow[0], "dns:*.internal", "%s", buf);
	cr_expect_str_eq(r->opt.allow[1], "cn:admin", "%s", buf);
	cr_expect_str_eq(r->opt.allow[2], "uri:spiffe://x/*", "%s", buf);
	policy_free(p);
}

Test(policy_parse, builds_alpn_wire_format)
{
	static const struct {
		const char *in;
		const char *wire;
		size_t len;
	} cases[] = {
	    {"connect a.com tls alpn=h2", "\x02h2", 3},
	    {"connect a.com tls alpn=h2,http/1.1", "\x02h2\x08http/1.1", 12},
	    {"connect a.com tls alpn=x", "\x01x", 2},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct policy *p;
		const struct policy_rule *r = one_rule(cases[i].in, &p);

		cr_expect_eq(r->opt.alpn_wire_len, cases[i].len, "%s", cases[i].in);
		cr_expect_eq(memcmp(r->opt.alpn_wire, cases[i].wire, cases[i].len), 0, "%s",
			     cases[i].in);
		cr_expect_str_eq(r->opt.alpn, strchr(cases[i].in, '=') + 1, "%s", cases[i].in);
		policy_free(p);
	}
}

Test(policy_parse, reads_version_ciphers_and_timeouts)
{
	static const struct {
		const char *in;
		int min_version;
		unsigned ms;
	} cases[] = {
	    {"connect a.com tls min-version=1.2", POLICY_TLS1_2, 10000},
	    {"connect a.com tls min-version=1.3", POLICY_TLS1_3, 10000},
	    {"connect a.com tls handshake-timeout=10", POLICY_TLS1_2, 10000},
	    {"connect a.com tls handshake-timeout=0.5", POLICY_TLS1_2, 500},
	    {"connect a.com tls handshake-timeout=2.25", POLICY_TLS1_2, 2250},
	    {"connect a.com tls handshake-timeout=0.001", POLICY_TLS1_2, 1},
	    {"connect a.com tls handshake-timeout=1.5000", POLICY_TLS1_2, 1500},
	    {"connect a.com tls handshake-timeout=3600", POLICY_TLS1_2, 3600000},
	    {"connect a.com tls handshake-timeout=3600.000", POLICY_TLS1_2, 3600000},
	};
	struct policy *p;
	const struct policy_rule *r;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		r = one_rule(cases[i].in, &p);
		cr_expect_eq(r->opt.min_version, cases[i].min_version, "%s", cases[i].in);
		cr_expect_eq(r->opt.handshake_timeout_ms, cases[i].ms, "%s", cases[i].in);
		policy_free(p);
	}
	r = one_rule("accept *:1 tls cert=/dev/null key=/dev/null", &p);
	cr_expect_eq(r->opt.expiry_warn_days, 14, "expiry-warn defaults to 14 days");
	policy_free(p);
	r = one_rule("connect a.com tls expiry-warn=30", &p);
	cr_expect_eq(r->opt.expiry_warn_days, 30, "expiry-warn=30");
	policy_free(p);
	r = one_rule("accept *:1 tls cert=/dev/null key=/dev/null expiry-warn=0", &p);
	cr_expect_eq(r->opt.expiry_warn_days, 0, "expiry-warn=0");
	policy_free(p);
	r = one_rule("connect a.com tls ciphers=ECDHE+AESGCM:!aNULL "
		     "ciphersuites=TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256",
		     &p);
	cr_expect_str_eq(r->opt.ciphers, "ECDHE+AESGCM:!aNULL");
	cr_expect_str_eq(r->opt.ciphersuites,
			 "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
	policy_free(p);
}

Test(policy_parse, separates_rules_by_newline_or_semicolon_keeping_line_and_column)
{
	static const struct {
		const char *in;
		unsigned line[3], col[3];
	} cases[] = {
	    {"connect a.com tls\nconnect b.com tls\nconnect c.com tls", {1, 2, 3}, {1, 1, 1}},
	    {"connect a.com tls;connect b.com tls; connect c.com tls", {1, 1, 1}, {1, 19, 38}},
	    {"connect a.com tls;\n\n  connect b.com tls;;;\nconnect c.com tls;",
	     {1, 3, 4},
	     {1, 3, 1}},
	    {"connect a.com tls\r\nconnect b.com tls\r\n connect c.com tls\r\n",
	     {1, 2, 3},
	     {1, 1, 2}},
	};
	size_t i, k;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct policy *p = tp_must(cases[i].in);

		cr_assert_eq(policy_count(p), 3, "%s", cases[i].in);
		for (k = 0; k < 3; k++) {
			const struct policy_rule *r = policy_rule_at(p, k);

			cr_expect_eq(r->id, k, "%s: rule %zu", cases[i].in, k);
			cr_expect_eq(r->line, cases[i].line[k], "%s: rule %zu", cases[i].in, k);
			cr_expect_eq(r->col, cases[i].col[k], "%s: rule %zu", cases[i].in, k);
			cr_expect_eq(r->text[0], 'c', "%s: rule %zu text", cases[i].in, k);
			cr_expect_eq(r->text[strlen(r->text) - 1], 's', "%s: rule %zu text trimmed",
				     cases[i].in, k);
		}
		cr_expect_null(policy_rule_at(p, 3));
		policy_free(p);
	}
}

Test(policy_parse, ignores_comments_and_blank_lines)
{
	static const struct {
		const char *in;
		size_t n;
	} cases[] = {
	    {"", 0},
	    {"   \t ", 0},
	    {"# only a comment", 0},
	    {"\n\n# a\n   # b\n\n", 0},
	    {";;; ;", 0},
	    {"connect a.com tls # why: the API", 1},
	    {"connect a.com tls# no space needed", 1},
	    {"connect a.com tls; # the rest; connect b.com tls", 1},
	    {"# connect a.com tls\nconnect b.com tls", 1},
	    {"connect a.com tls\n#connect b.com tls\nconnect c.com tls", 2},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct policy *p = tp_must(cases[i].in);

		cr_expect_eq(policy_count(p), cases[i].n, "%s", cases[i].in);
		policy_free(p);
	}
}

Test(policy_parse, treats_null_text_as_empty)
{
	struct policy_diags d = {0};
	struct policy *p = policy_new();

	cr_expect_eq(policy_add_text(p, "TLSSHIM_POLICY", NULL, &d), 0);
	cr_expect_eq(policy_add_file(p, NULL, &d), 0);
	cr_expect_eq(policy_add_file(p, "", &d), 0);
	cr_expect_eq(policy_finish(p, &d), 0);
	cr_expect_eq(policy_count(p), 0);
	cr_expect_not(policy_has_dir(p, POLICY_CONNECT));
	cr_expect_eq(d.n, 0);
	policy_free(p);
	policy_free(NULL);
}

Test(policy_parse, unquotes_values_with_spaces_semicolons_and_escapes)
{
	char buf[1024];
	struct policy *p;
	const struct policy_rule *r;

	snprintf(buf, sizeof(buf), "connect a.com tls ca=\"%s\"; connect b.com tls", f_space);
	p = tp_must(buf);
	cr_assert_eq(policy_count(p), 2, "%s", buf);
	cr_expect_str_eq(policy_rule_at(p, 0)->opt.ca, f_space, "%s", buf);
	policy_free(p);

	r = one_rule("connect a.com tls ciphers=\"a \\\"b\\\" \\\\c \\d\"", &p);
	cr_expect_str_eq(r->opt.ciphers, "a \"b\" \\c \\d");
	policy_free(p);

	/* Quotes may cover part of a word, as in a shell. */
	r = one_rule("connect a.com tls ciphers=AB\"C D\"E", &p);
	cr_expect_str_eq(r->opt.ciphers, "ABC DE");
	policy_free(p);

	/* An '=' in a value is part of it. */
	r = one_rule("connect a.com tls ciphers=a=b", &p);
	cr_expect_str_eq(r->opt.ciphers, "a=b");
	policy_free(p);
}

Test(policy_parse, reads_policy_files_with_their_path_as_source)
{
	char path[160], buf[1024];
	struct policy_diags d = {0};
	struct policy *p = policy_new();
	const struct policy_rule *r;

	snprintf(path, sizeof(path), "%s/policy", dir);
	snprintf(buf, sizeof(buf),
		 "# tlsshim policy\n"
		 "connect api.internal:443 tls ca=\"%s\"\n"
		 "\n"
		 "connect *:25 deny   # no mail; connect x tls\n"
		 "  accept *:8443 tls cert=%s key=%s; accept *:80 plain\n",
		 f_space, f_cert, f_key);
	write_file(path, buf);
	cr_expect_eq(policy_add_text(p, "TLSSHIM_POLICY", "connect *:443 tls", &d), 0);
	cr_expect_eq(policy_add_file(p, path, &d), 0, "%s", tp_diags_str(&d));
	cr_assert_eq(policy_finish(p, &d), 0, "%s", tp_diags_str(&d));
	cr_assert_eq(policy_count(p), 5);
	r = policy_rule_at(p, 0);
	cr_expect_str_eq(r->source, "TLSSHIM_POLICY");
	r = policy_rule_at(p, 1);
	cr_expect_str_eq(r->source, path);
	cr_expect_eq(r->line, 2);
	cr_expect_str_eq(r->opt.ca, f_space);
	r = policy_rule_at(p, 2);
	cr_expect_eq(r->line, 4);
	cr_expect_str_eq(r->text, "connect *:25 deny");
	r = policy_rule_at(p, 4);
	cr_expect_eq(r->line, 5);
	cr_expect_eq(r->col, 3 + strlen(policy_rule_at(p, 3)->text) + 2);
	cr_expect_eq(r->dir, POLICY_ACCEPT);
	policy_free(p);
	unlink(path);
}

Test(policy_parse, lists_exact_names_once_per_direction)
{
	struct policy *p =
	    tp_must("connect a.com:1 tls\nconnect b.com tls\nconnect a.com:2 tls\n"
		    "connect *.c.com tls\nconnect 1.2.3.4 tls\naccept d.com:1 plain");
	const char *const *names;
	size_t n = policy_exact_names(p, POLICY_CONNECT, &names);

	cr_assert_eq(n, 2);
	cr_expect_str_eq(names[0], "a.com");
	cr_expect_str_eq(names[1], "b.com");
	n = policy_exact_names(p, POLICY_ACCEPT, &names);
	cr_assert_eq(n, 1);
	cr_expect_str_eq(names[0], "d.com");
	policy_free(p);
}

/* The normalized text of every rule, one a line. */
static char *format_all(const struct policy *p)
{
	size_t i, len = 0;
	char *out = calloc(1, 1);

	for (i = 0; i < policy_count(p); i++) {
		int n = policy_format_rule(policy_rule_at(p, i), NULL, 0);
		char *nout = realloc(out, len + (size_t)n + 2);

		cr_assert_not_null(nout);
		out = nout;
		policy_format_rule(policy_rule_at(p, i), out + len, (size_t)n + 1);
		len += (size_t)n;
		out[len++] = '\n';
		out[len] = '\0';
	}
	return out;
}

Test(policy_parse, formats_rules_that_parse_back_to_the_same_table)
{
	char buf[4096];
	struct policy *p, *q;
	char *once, *twice;
	size_t i;

	snprintf(buf, sizeof(buf),
		 "connect API.internal.:443 tls ca=\"%s\" name=x.internal sni=Y.internal\n"
		 "connect 10.0.0.0/8:6379 tls ca=%s cert=%s key=%s;connect *:25 deny\n"
		 "connect [::ffff:10.1.0.0/112]:1-100 tls insecure pin=sha256/"
		 "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU= alpn=h2,http/1.1\n"
		 "connect [2001:db8::]/32 tls min-version=1.3 ciphers=\"A B\" ciphersuites=\\x\n"
		 "connect *.svc.local:* tls handshake-timeout=0.250 min-version=1.2\n"
		 "accept [::1]:8443 tls cert=%s key=%s client-ca=%s allow=dns:*.a,cn:b "
		 "allow=uri:u handshake-timeout=7\n"
		 "accept *:1 plain\n",
		 f_space, f_ca, f_cert, f_key, f_cert, f_key, dir);
	p = tp_must(buf);
	once = format_all(p);
	q = tp_must(once);
	twice = format_all(q);
	cr_expect_str_eq(twice, once);
	cr_assert_eq(policy_count(q), policy_count(p));
	for (i = 0; i < policy_count(p); i++) {
		const struct policy_rule *a = policy_rule_at(p, i), *b = policy_rule_at(q, i);

		cr_expect_eq(a->host_kind, b->host_kind, "rule %zu", i);
		cr_expect_eq(a->family, b->family, "rule %zu", i);
		cr_expect_eq(memcmp(a->addr, b->addr, 16), 0, "rule %zu", i);
		cr_expect_eq(a->prefix, b->prefix, "rule %zu", i);
		cr_expect_eq(a->port_lo, b->port_lo, "rule %zu", i);
		cr_expect_eq(a->port_hi, b->port_hi, "rule %zu", i);
		cr_expect_eq(a->opt.given, b->opt.given, "rule %zu", i);
		cr_expect_eq(a->opt.handshake_timeout_ms, b->opt.handshake_timeout_ms, "rule %zu",
			     i);
		cr_expect_eq(a->opt.alpn_wire_len, b->opt.alpn_wire_len, "rule %zu", i);
		cr_expect_eq(a->opt.n_pins, b->opt.n_pins, "rule %zu", i);
	}
	cr_expect(strstr(once, "connect api.internal:443 tls ca=\"") != NULL, "%s", once);
	cr_expect(strstr(once, "sni=y.internal name=x.internal\n") != NULL, "%s", once);
	cr_expect(strstr(once, "connect 10.1.0.0/16:1-100 tls insecure pin=sha256/") != NULL, "%s",
		  once);
	cr_expect(strstr(once, "ciphers=\"A B\" ciphersuites=\"\\\\x\"") != NULL, "%s", once);
	cr_expect(strstr(once, "handshake-timeout=0.25\n") != NULL, "%s", once);
	cr_expect(strstr(once, "allow=dns:*.a,cn:b,uri:u handshake-timeout=7") != NULL, "%s", once);
	free(once);
	free(twice);
	policy_free(p);
	policy_free(q);
}

Test(policy_parse, prints_options_in_contract_order)
{
	char buf[2048], want[2048];
	struct policy *p;

	snprintf(
	    buf, sizeof(buf),
	    "connect a.com:443 tls expiry-warn=30 handshake-timeout=1 ciphersuites=S ciphers=C "
	    "min-version=1.3 alpn=h2 pin=sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU= "
	    "insecure name=n.com sni=s.com key=%s cert=%s ca=%s",
	    f_key, f_cert, f_ca);
	snprintf(want, sizeof(want),
		 "connect a.com:443 tls ca=%s cert=%s key=%s sni=s.com name=n.com insecure "
		 "pin=sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU= alpn=h2 min-version=1.3 "
		 "ciphers=C ciphersuites=S handshake-timeout=1 expiry-warn=30",
		 f_ca, f_cert, f_key);
	cr_expect_str_eq(tp_fmt(one_rule(buf, &p)), want, "%s", buf);
	policy_free(p);
}

Test(policy_parse, formats_like_snprintf_when_the_buffer_is_short)
{
	struct policy *p;
	const struct policy_rule *r = one_rule("connect api.internal:443 tls", &p);
	char small[8];

	cr_expect_eq(policy_format_rule(r, small, sizeof(small)), 28);
	cr_expect_str_eq(small, "connect");
	cr_expect_eq(policy_format_rule(r, NULL, 0), 28);
	policy_free(p);
}

Test(policy_parse, names_enums_in_short_words)
{
	cr_expect_str_eq(policy_dir_str(POLICY_CONNECT), "connect");
	cr_expect_str_eq(policy_dir_str(POLICY_ACCEPT), "accept");
	cr_expect_str_eq(policy_action_str(POLICY_TLS), "tls");
	cr_expect_str_eq(policy_action_str(POLICY_PLAIN), "plain");
	cr_expect_str_eq(policy_action_str(POLICY_DENY), "deny");
	cr_expect_str_eq(policy_action_str(POLICY_AUTO), "auto");
	cr_expect_str_eq(policy_host_kind_str(POLICY_HOST_NAME), "exact name");
	cr_expect_str_eq(policy_host_kind_str(POLICY_HOST_SUFFIX), "name suffix");
	cr_expect_str_eq(policy_host_kind_str(POLICY_HOST_ADDR), "exact address");
	cr_expect_str_eq(policy_host_kind_str(POLICY_HOST_CIDR), "address prefix");
	cr_expect_str_eq(policy_host_kind_str(POLICY_HOST_ANY), "any host");
	cr_expect_str_eq(policy_port_kind_str(POLICY_PORT_ONE), "one port");
	cr_expect_str_eq(policy_port_kind_str(POLICY_PORT_RANGE), "port range");
	cr_expect_str_eq(policy_port_kind_str(POLICY_PORT_ANY), "any port");
	cr_expect_str_eq(policy_opt_str(POLICY_OPT_CLIENT_CA), "client-ca");
	cr_expect_str_eq(policy_opt_str(POLICY_OPT_HANDSHAKE_TIMEOUT), "handshake-timeout");
	cr_expect_str_eq(policy_opt_str(POLICY_OPT_EXPIRY_WARN), "expiry-warn");
	cr_expect_str_eq(policy_dir_str((enum policy_dir)7), "?");
	cr_expect_str_eq(policy_opt_str(POLICY_OPT_COUNT), "?");
}

Test(policy_parse, parses_explain_endpoints)
{
	static const struct {
		const char *in;
		const char *name; /* NULL: an address */
		int family;
		uint16_t port;
	} good[] = {
	    {"api.internal:443", "api.internal", 0, 443}, {"API.Internal.:1", "api.internal", 0, 1},
	    {"10.1.2.3:65535", NULL, AF_INET, 65535},     {"[::1]:8443", NULL, AF_INET6, 8443},
	    {"[::ffff:1.2.3.4]:80", NULL, AF_INET6, 80},
	};
	static const char *const bad[] = {
	    "api.internal", "api.internal:", "api.internal:0",   "api.internal:65536",
	    ":443",         "::1:443",       "[::1]443",         "[::1",
	    "[zz::1]:1",    "a..b:1",        "[fe80::1%eth0]:1", "a.com:x",
	    "010.1.2.3:1",  "10.1:1",        "1.2.3.256:1",
	};
	char name[256], err[256];
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct policy_query q = {0};

		cr_assert_eq(
		    policy_parse_endpoint(good[i].in, &q, name, sizeof(name), err, sizeof(err)), 0,
		    "%s: %s", good[i].in, err);
		if (good[i].name)
			cr_expect_str_eq(q.name, good[i].name, "%s", good[i].in);
		else
			cr_expect_null(q.name, "%s", good[i].in);
		cr_expect_eq(q.family, good[i].family, "%s", good[i].in);
		cr_expect_eq(q.port, good[i].port, "%s", good[i].in);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct policy_query q = {0};

		err[0] = '\0';
		cr_expect_eq(
		    policy_parse_endpoint(bad[i], &q, name, sizeof(name), err, sizeof(err)), -1,
		    "%s", bad[i]);
		cr_expect_neq(err[0], '\0', "%s: a message", bad[i]);
	}
}

/*
 * The parser's own IPv4 conversions (no inet_pton/inet_ntop at start-up) must agree
 * with glibc's: the same strings accepted, the same bytes, the same text.
 */
Test(policy_parse, ipv4_conversions_agree_with_inet_pton_and_inet_ntop)
{
	static const char *const fixed[] = {
	    "0.0.0.0",   "255.255.255.255",
	    "1.2.3.4",   "01.2.3.4",
	    "1.2.3.04",  "1.2.3",
	    "1.2.3.4.5", "1..2.3",
	    ".1.2.3",    "1.2.3.",
	    "256.1.1.1", "1.2.3.1000",
	    "",          ".",
	    "1",         "00.0.0.0",
	    "0.0.0.00",  "9.99.199.255",
	    "1.2.3.4 ",  "1.2.3.-4",
	};
	static const char alphabet[] = "0123456789.";
	unsigned seed = 12345;
	char s[24], want_text[INET_ADDRSTRLEN], got_text[16];
	unsigned char want[4], got[4];
	size_t i;

	for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]) + 50000; i++) {
		const char *in = s;

		if (i < sizeof(fixed) / sizeof(fixed[0])) {
			in = fixed[i];
		} else {
			size_t n = 1 + (size_t)(rand_r(&seed) % 16), k;

			for (k = 0; k < n; k++)
				s[k] = alphabet[rand_r(&seed) % (sizeof(alphabet) - 1)];
			s[n] = '\0';
		}
		int ok = inet_pton(AF_INET, in, want) == 1;

		cr_assert_eq(policy_ipv4_parse(in, strlen(in), got) == 0, ok, "'%s': accepted", in);
		if (!ok)
			continue;
		cr_assert_eq(memcmp(got, want, 4), 0, "'%s': bytes", in);
		inet_ntop(AF_INET, want, want_text, sizeof(want_text));
		cr_assert_eq(policy_ipv4_text(got, got_text), strlen(want_text), "'%s': length",
			     in);
		cr_assert_str_eq(got_text, want_text, "'%s': text", in);
	}
	for (i = 0; i < 20000; i++) {
		unsigned v = (unsigned)rand_r(&seed) ^ ((unsigned)rand_r(&seed) << 16);

		memcpy(want, &v, 4);
		inet_ntop(AF_INET, want, want_text, sizeof(want_text));
		policy_ipv4_text(want, got_text);
		cr_assert_str_eq(got_text, want_text, "address %08x: text", v);
	}
}

/*
 * Relative file paths are stored absolute, so the file checked at load is the one
 * opened later whatever the program's working directory is by then: in text,
 * against the working directory; in a policy file, against the file's directory.
 */
Test(policy_parse, relative_file_paths_are_made_absolute)
{
	char cwd[4096], sub[160], pol[192], want[256], polrel[192];
	struct policy_diags d = {0};
	const struct policy_rule *r;
	struct policy *p;

	cr_assert_not_null(getcwd(cwd, sizeof(cwd)));
	/* Text: the working directory. */
	cr_assert_eq(chdir(dir), 0);
	r = one_rule("accept *:1 tls cert=cert.pem key=./key.pem client-ca=ca.pem", &p);
	snprintf(want, sizeof(want), "%s/cert.pem", dir);
	cr_expect_str_eq(r->opt.cert, want, "cert= in text");
	snprintf(want, sizeof(want), "%s/./key.pem", dir);
	cr_expect_str_eq(r->opt.key, want, "key= in text");
	policy_free(p);
	/* A file: its own directory, even when named by a relative path from elsewhere. */
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	cr_assert_eq(mkdir(sub, 0755), 0);
	snprintf(pol, sizeof(pol), "%s/policy", sub);
	write_file(pol, "accept *:1 tls cert=../cert.pem key=../key.pem\n");
	cr_assert_eq(chdir("/"), 0);
	snprintf(polrel, sizeof(polrel), "%s", pol + 1); /* "tmp/…/sub/policy" from "/" */
	p = policy_new();
	cr_assert_eq(policy_add_file(p, polrel, &d), 0, "%s: %s", polrel, d.n ? d.v[0].msg : "");
	cr_assert_eq(policy_finish(p, &d), 0);
	snprintf(want, sizeof(want), "%s/../cert.pem", sub);
	cr_expect_str_eq(policy_rule_at(p, 0)->opt.cert, want, "cert= in a relative file");
	policy_free(p);
	/* A missing relative file is reported by the absolute path looked at. */
	cr_assert_eq(chdir(dir), 0);
	p = policy_new();
	cr_expect_eq(policy_add_text(p, "T", "accept *:1 tls cert=nothere.pem key=key.pem", &d),
		     -1);
	snprintf(want, sizeof(want), "cannot read %s/nothere.pem: No such file", dir);
	cr_expect(d.n == 1 && strstr(d.v[0].msg, want), "expected '%s', got '%s'", want,
		  d.n ? d.v[0].msg : "(none)");
	policy_diags_free(&d);
	policy_free(p);
	unlink(pol);
	rmdir(sub);
	cr_assert_eq(chdir(cwd), 0);
}

/*
 * The library's check before main (policy_quick_file_checks): one access(R_OK)
 * a file. A missing or unreadable file still fails the load; a directory where
 * a file belongs is left to the full check (tlsshim check/run) and fails closed
 * at the first connection.
 */
Test(policy_parse, quick_file_checks_still_refuse_a_missing_file)
{
	static const struct {
		const char *cert, *key; /* in the test directory */
		int quick_ok, full_ok;
	} cases[] = {
	    {"/cert.pem", "/key.pem", 1, 1},
	    {"/missing.pem", "/key.pem", 0, 0},
	    {"/cert.pem", "/nothere/key.pem", 0, 0},
	    {"", "/key.pem", 1, 0}, /* the directory itself as cert= */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (int quick = 0; quick < 2; quick++) {
			struct policy_diags d = {0};
			struct policy *p = policy_new();
			char text[512];
			int ok;

			snprintf(text, sizeof(text), "accept *:1 tls cert=%s%s key=%s%s", dir,
				 cases[i].cert, dir, cases[i].key);
			if (quick)
				policy_quick_file_checks(p);
			ok = policy_add_text(p, "T", text, &d) == 0 && policy_finish(p, &d) == 0;
			cr_expect_eq(ok, quick ? cases[i].quick_ok : cases[i].full_ok,
				     "%s checks of \"%s\": loaded %d (%s)",
				     quick ? "quick" : "full", text, ok,
				     d.n ? d.v[0].msg : "no message");
			if (!ok)
				cr_expect(d.n >= 1 && strstr(d.v[0].msg, "cannot read"),
					  "expected 'cannot read', got '%s'",
					  d.n ? d.v[0].msg : "(none)");
			policy_diags_free(&d);
			policy_free(p);
		}
	}
}
