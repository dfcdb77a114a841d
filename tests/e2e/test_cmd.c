/*
 * test_cmd.c - the tlsshim command as users meet it: check's table and its
 * errors at the right SOURCE:LINE:COL, where the policy comes from, explain,
 * version and usage, and run (refusals, exit statuses, the environment it
 * builds). The command is spawned with an explicit environment every time.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "e2e/harness.h"

#define T_MS 20000

/* ---- helpers ------------------------------------------------------------------------ */

/* Runs BUILD/tlsshim with the NULL-terminated words after ENV. Returns the exit code. */
static int run_cmd(struct h_proc *p, const struct h_env *env, ...)
{
	char *argv[64];
	va_list ap;
	int n = 0;

	argv[n++] = (char *)h_cmd();
	va_start(ap, env);
	while (n < 63 && (argv[n] = va_arg(ap, char *)) != NULL)
		n++;
	va_end(ap);
	argv[n] = NULL;
	return h_run(p, argv, env, T_MS);
}

/* As run_cmd() with ARGV (NULL-terminated) after the command's path. */
static int run_cmdv(struct h_proc *p, const struct h_env *env, const char *const *args)
{
	char *argv[64];
	int n = 0;

	argv[n++] = (char *)h_cmd();
	while (n < 63 && args[n - 1])
		argv[n] = (char *)args[n - 1], n++;
	argv[n] = NULL;
	return h_run(p, argv, env, T_MS);
}

/* Creates DIR/NAME (DIR NULL: a new temp dir) with CONTENT and MODE; returns its path. */
static char *tmp_in(const char *dir, const char *name, const char *content, mode_t mode)
{
	char *path;
	FILE *f;

	cr_assert(asprintf(&path, "%s/%s", dir ? dir : h_tmpdir(), name) > 0);
	f = fopen(path, "w");
	cr_assert(f, "cannot create %s: %s", path, strerror(errno));
	fputs(content, f);
	fclose(f);
	cr_assert(chmod(path, mode) == 0);
	return path;
}

static char *tmp_file(const char *name, const char *content, mode_t mode)
{
	return tmp_in(NULL, name, content, mode);
}

/* LINE and COL (1-based) of the first occurrence of AT in TEXT ("$": just past its end). */
static void locate(const char *text, const char *at, unsigned *line, unsigned *col)
{
	const char *hit = strcmp(at, "$") == 0 ? text + strlen(text) : strstr(text, at), *s;

	cr_assert(hit, "test table error: '%s' is not in '%s'", at, text);
	*line = 1;
	*col = 1;
	for (s = text; s < hit; s++) {
		if (*s == '\n') {
			(*line)++;
			*col = 1;
		} else {
			(*col)++;
		}
	}
}

/* Collapses runs of blanks, so table lines compare regardless of alignment. */
static void squeeze(const char *in, char *out, size_t len)
{
	size_t o = 0;
	int blank = 0;

	for (; *in && o + 1 < len; in++) {
		if (*in == ' ' || *in == '\t') {
			blank = 1;
			continue;
		}
		if (blank && o > 0)
			out[o++] = ' ';
		blank = 0;
		out[o++] = *in;
	}
	out[o] = '\0';
}

/* Line I (0-based) of S, blanks squeezed, into OUT; 0 if there is no such line. */
static int nth_line(const char *s, int i, char *out, size_t len)
{
	char buf[4096];
	const char *e;
	size_t n;

	for (; i > 0 && s; i--) {
		s = strchr(s, '\n');
		s = s ? s + 1 : NULL;
	}
	if (!s || !*s)
		return 0;
	e = strchr(s, '\n');
	n = e ? (size_t)(e - s) : strlen(s);
	if (n >= sizeof(buf))
		n = sizeof(buf) - 1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	squeeze(buf, out, len);
	return 1;
}

/* A file the policy may name as ca=/cert=/key= (only readability is checked at load). */
static const char *pem(const char *name)
{
	return tmp_file(name, "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n", 0644);
}

/* ---- check: valid policies ---------------------------------------------------------- */

struct valid_case {
	const char *policy;
	const char *rules[4]; /* expected lines: normalized rule, then "# SOURCE:LINE:COL" */
};

static const struct valid_case valid_cases[] = {
    {"connect *.example.com:443 tls; connect 10.0.0.0/8 plain",
     {"connect *.example.com:443 tls # TLSSHIM_POLICY:1:1",
      "connect 10.0.0.0/8:* plain # TLSSHIM_POLICY:1:32"}},
    {"connect API.Example.COM.:443 tls", {"connect api.example.com:443 tls # TLSSHIM_POLICY:1:1"}},
    {"  connect\t[2001:DB8::1]:443   tls  ",
     {"connect [2001:db8::1]:443 tls # TLSSHIM_POLICY:1:3"}},
    {"# a comment line\n\nconnect a.internal tls # trailing comment\n",
     {"connect a.internal:* tls # TLSSHIM_POLICY:3:1"}},
    {"connect *:8000-8080 plain\nconnect *:25 deny",
     {"connect *:8000-8080 plain # TLSSHIM_POLICY:1:1", "connect *:25 deny # TLSSHIM_POLICY:2:1"}},
    {"connect [fd00::/8]:6379 tls min-version=1.3 alpn=h2,http/1.1",
     {"connect [fd00::/8]:6379 tls alpn=h2,http/1.1 min-version=1.3 # TLSSHIM_POLICY:1:1"}},
    {"connect api.internal:443 tls insecure sni=api name=api.internal",
     {"connect api.internal:443 tls sni=api name=api.internal insecure # TLSSHIM_POLICY:1:1"}},
    {"accept 127.0.0.1:8080 deny; accept *:* plain",
     {"accept 127.0.0.1:8080 deny # TLSSHIM_POLICY:1:1", "accept *:* plain # TLSSHIM_POLICY:1:29"}},
};

static void check_valid(const struct valid_case *c)
{
	struct h_env env;
	struct h_proc p;
	char got[4096];
	int rc, i, n = 0;

	h_env_init(&env);
	rc = run_cmd(&p, &env, "check", "-p", c->policy, NULL);
	cr_assert_eq(rc, 0, "check -p '%s': exit %d, stderr: %s", c->policy, rc, p.err);
	cr_expect_eq(p.err_len, 0, "check -p '%s': stderr should be empty: %s", c->policy, p.err);
	for (i = 0; i < 4 && c->rules[i]; i++, n++) {
		cr_assert(nth_line(p.out, i, got, sizeof(got)), "check -p '%s': no line %d in:\n%s",
			  c->policy, i + 1, p.out);
		cr_expect_str_eq(got, c->rules[i], "check -p '%s': line %d", c->policy, i + 1);
	}
	cr_expect_eq(h_count(p.out, "\n"), n, "check -p '%s': %d lines expected:\n%s", c->policy, n,
		     p.out);
	h_proc_free(&p);
	h_env_free(&env);
}

Test(check, prints_normalized_table, .timeout = 60)
{
	for (size_t i = 0; i < sizeof(valid_cases) / sizeof(valid_cases[0]); i++)
		check_valid(&valid_cases[i]);
}

Test(check, table_is_itself_a_valid_policy, .timeout = 30)
{
	const char *pol = "connect *.example.com:443 tls; connect 10.0.0.0/8 plain\n"
			  "connect *:25 deny\naccept *:8443 plain";
	struct h_env env;
	struct h_proc p, q;
	char *again;
	int rc;

	h_env_init(&env);
	rc = run_cmd(&p, &env, "check", "-p", pol, NULL);
	cr_assert_eq(rc, 0, "%s", p.err);
	again = strdup(p.out);
	rc = run_cmd(&q, &env, "check", "-p", again, NULL);
	cr_assert_eq(rc, 0, "the table of '%s' does not parse back:\n%s\n%s", pol, again, q.err);
	cr_expect_eq(h_count(q.out, "\n"), 4, "%s", q.out);
	free(again);
	h_proc_free(&p);
	h_proc_free(&q);
	h_env_free(&env);
}

Test(check, empty_policy_says_so, .timeout = 30)
{
	struct h_env env;
	struct h_proc p;
	int rc;

	h_env_init(&env);
	rc = run_cmd(&p, &env, "check", NULL);
	cr_expect_eq(rc, 0, "exit %d: %s", rc, p.err);
	cr_expect(strstr(p.out, "no rules: every connection is left alone"), "got: %s", p.out);
	h_proc_free(&p);
	rc = run_cmd(&p, &env, "check", "-p", "# only a comment\n\n ; ;", NULL);
	cr_expect_eq(rc, 0, "exit %d: %s", rc, p.err);
	cr_expect(strstr(p.out, "no rules"), "got: %s", p.out);
	h_proc_free(&p);
	h_env_free(&env);
}

Test(check, accept_tls_with_readable_files, .timeout = 30)
{
	char *pol, want[1024], got[4096];
	struct h_env env;
	struct h_proc p;
	int rc;

	h_env_init(&env);
	cr_assert(asprintf(&pol,
			   "accept *:8443 tls cert=%s key=%s client-ca=%s allow=dns:*.internal",
			   pem("srv.pem"), pem("srv.key"), pem("ca.pem")) > 0);
	rc = run_cmd(&p, &env, "check", "-p", pol, NULL);
	cr_assert_eq(rc, 0, "check -p '%s': %s", pol, p.err);
	snprintf(want, sizeof(want), "%s # TLSSHIM_POLICY:1:1", pol);
	nth_line(p.out, 0, got, sizeof(got));
	cr_expect_str_eq(got, want, "check -p '%s'", pol);
	free(pol);
	h_proc_free(&p);
	h_env_free(&env);
}

/* ---- check: malformed policies, as a new user writes them ---------------------------- */

struct bad_case {
	const char *policy;
	const char *at;   /* the text the error must point at (first occurrence; "$": the end) */
	const char *word; /* a word the message must contain (case-insensitive) */
};

static const struct bad_case bad_cases[] = {
    /* typos in the words */
    {"conect api.internal:443 tls", "conect", "'conect'"},
    {"Connect api.internal:443 tls", "Connect", "'connect' or 'accept'"},
    {"connect api.internal:443 tsl", "tsl", "'tsl'"},
    {"connect api.internal:443 TLS", "TLS", "'tls', 'plain'"},
    {"connect api.internal:443 tls cafile=/etc/ssl/ca.pem", "cafile", "option"},
    {"connect api.internal:443 tls verify=no", "verify", "option"},
    {"connect api.internal:443 tls min_version=1.3", "min_version", "option"},
    /* missing pieces */
    {"connect api.internal:443", "$", "action"},
    {"connect", "$", "host"},
    {"connect api.internal:443 tls ca=", "$", "ca"},
    {"connect api.internal:443 tls ca", "ca", "ca"},
    {"connect api.internal:443 tls sni", "sni", "sni"},
    {"connect api.internal: tls", " tls", "port"},
    /* bad addresses */
    {"connect 10.0.0.256:443 tls", "10.0.0.256", "IPv4"},
    {"connect 10.0.0.0/33 tls", "33", "prefix"},
    {"connect 10.1.2.3/8 tls", "10.1.2.3/8", "10.0.0.0/8"},
    {"connect 2001:db8::1 tls", "2001:db8::1", "bracket"},
    {"connect [2001:db8::1 tls", "[2001:db8::1", "]"},
    {"connect [2001:db8::g]:443 tls", "[2001:db8::g]", ""},
    {"connect api..internal:443 tls", ".internal", "label"},
    {"connect *.:443 tls", ":443", ""},
    {"connect api.*.internal:443 tls", "*", "*.example.com"},
    /* bad ports */
    {"connect api.internal:0 tls", "0 tls", "port"},
    {"connect api.internal:65536 tls", "65536", "port"},
    {"connect api.internal:https tls", "https", "port"},
    {"connect api.internal:8080-80 tls", "8080-80", "port"},
    {"connect api.internal:-1 tls", "-1", "port"},
    /* options */
    {"connect api.internal:443 tls min-version=1.1", "1.1", "1.1"},
    {"connect api.internal:443 tls handshake-timeout=ten", "ten", "timeout"},
    {"connect api.internal:443 tls handshake-timeout=-5", "-5", "timeout"},
    {"connect api.internal:443 tls pin=md5/abc", "md5", "sha256"},
    {"connect api.internal:443 tls pin=sha256/notbase64!", "sha256/", "pin"},
    {"connect api.internal:443 tls client-ca=/etc/ssl/ca.pem", "client-ca", "accept"},
    {"accept *:8443 plain sni=x", "sni", "plain"},
    {"connect api.internal:443 tls ca=/nonexistent/ca.pem", "/nonexistent", "/nonexistent/ca.pem"},
    {"connect api.internal:443 tls insecure=yes", "insecure", "insecure"},
    /* whole-table errors */
    {"connect api.internal:443 tls\nconnect api.internal:443 plain",
     "connect api.internal:443 plain", "TLSSHIM_POLICY:1:1"},
    {"connect *:443 auto", "auto", "accept"},
    {"accept *:8443 tls", "tls", "cert"},
    {"accept *:8443 auto cert=/nonexistent/c.pem", "cert", "key"},
    /* where the error is: later lines and after ';' */
    {"connect a.internal:443 tls\n\nconnect b.internal:443 tsl", "tsl", "tsl"},
    {"connect a.internal:443 tls; connect b.internal:443 tsl", "tsl", "tsl"},
    {"connect a.internal:443 tls # fine\n  accpet *:80 plain", "accpet", "accpet"},
};

static void check_bad(const struct bad_case *c)
{
	struct h_env env;
	struct h_proc p;
	char want[64], *msg;
	unsigned line, col;
	int rc;

	locate(c->policy, c->at, &line, &col);
	snprintf(want, sizeof(want), "TLSSHIM_POLICY:%u:%u: ", line, col);
	h_env_init(&env);
	rc = run_cmd(&p, &env, "check", "-p", c->policy, NULL);
	cr_expect_eq(rc, 2, "check -p '%s': exit %d, want 2; stderr: %s", c->policy, rc, p.err);
	cr_expect_eq(p.out_len, 0, "check -p '%s': nothing on stdout, got: %s", c->policy, p.out);
	msg = strstr(p.err, want);
	cr_expect(msg, "check -p '%s': want an error at %s(at '%s'), got:\n%s", c->policy, want,
		  c->at, p.err);
	if (msg && c->word[0])
		cr_expect(strcasestr(msg, c->word),
			  "check -p '%s': the message should say '%s':\n%s", c->policy, c->word,
			  p.err);
	h_proc_free(&p);
	h_env_free(&env);
}

Test(check, rejects_malformed_policy, .timeout = 120)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++)
		check_bad(&bad_cases[i]);
}

Test(check, reports_every_error, .timeout = 30)
{
	const char *pol =
	    "conect a.internal tls\nconnect b.internal tsl\nconnect c.internal:99999 tls";
	struct h_env env;
	struct h_proc p;
	int rc;

	h_env_init(&env);
	rc = run_cmd(&p, &env, "check", "-p", pol, NULL);
	cr_expect_eq(rc, 2);
	cr_expect(strstr(p.err, "TLSSHIM_POLICY:1:1: "), "%s", p.err);
	cr_expect(strstr(p.err, "TLSSHIM_POLICY:2:20: "), "%s", p.err);
	cr_expect(strstr(p.err, "TLSSHIM_POLICY:3:"), "%s", p.err);
	h_proc_free(&p);
	h_env_free(&env);
}

Test(check, file_errors_name_the_file_and_line, .timeout = 30)
{
	const char *text = "# tlsshim policy\n"
			   "connect a.internal:443 tls   # first\n"
			   "\n"
			   "connect b.internal:443 tls ca\n";
	char *file = tmp_file("bad.policy", text, 0644), want[PATH_MAX + 32];
	struct h_env env;
	struct h_proc p;
	int rc;

	h_env_init(&env);
	rc = run_cmd(&p, &env, "check", "-f", file, NULL);
	cr_expect_eq(rc, 2, "stderr: %s", p.err);
	snprintf(want, sizeof(want), "%s:4:28: ", file);
	cr_expect(strstr(p.err, want), "want '%s' in:\n%s", want, p.err);
	h_proc_free(&p);
	free(file);
	h_env_free(&env);
}

Test(check, unreadable_file_is_an_error, .timeout = 30)
{
	char missing[PATH_MAX], want[PATH_MAX + 16];
	struct h_env env;
	struct h_proc p;
	int rc;

	snprintf(missing, sizeof(missing), "%s/no-such.policy", h_tmpdir());
	h_env_init(&env);
	rc = run_cmd(&p, &env, "check", "-f", missing, NULL);
	cr_expect_eq(rc, 2, "stderr: %s", p.err);
	snprintf(want, sizeof(want), "%s:0:0: ", missing);
	cr_expect(strstr(p.err, want), "want '%s' in:\n%s", want, p.err);
	h_proc_free(&p);
	/* A directory is not a policy file either. */
	rc = run_cmd(&p, &env, "check", "-f", h_tmpdir(), NULL);
	cr_expect_eq(rc, 2, "-f DIR: exit %d; stderr: %s", rc, p.err);
	h_proc_free(&p);
	h_env_free(&env);
}

/* ---- where the policy comes from ---------------------------------------------------- */

Test(source, environment_when_no_options, .timeout = 30)
{
	char *file = tmp_file("env.policy", "connect file.internal tls\n", 0644);
	struct h_env env;
	struct h_proc p;
	int rc;

	h_env_init(&env);
	h_env_set(&env, "TLSSHIM_POLICY", "connect env.internal tls");
	h_env_set(&env, "TLSSHIM_POLICY_FILE", "%s", file);
	rc = run_cmd(&p, &env, "check", NULL);
	cr_assert_eq(rc, 0, "%s", p.err);
	cr_expect(strstr(p.out, "env.internal") && strstr(p.out, "TLSSHIM_POLICY:1:1"), "%s",
		  p.out);
	cr_expect(strstr(p.out, "file.internal") && strstr(p.out, file), "%s", p.out);
	h_proc_free(&p);
	free(file);
	h_env_free(&env);
}

Test(source, options_replace_the_environment, .timeout = 30)
{
	char *file = tmp_file("env2.policy", "connect file.internal tls\n", 0644);
	struct h_env env;
	struct h_proc p;
	int rc;

	h_env_init(&env);
	/* A broken environment policy must not matter once -p/-f are given. */
	h_env_set(&env, "TLSSHIM_POLICY", "conect env.internal tls");
	h_env_set(&env, "TLSSHIM_POLICY_FILE", "%s", file);
	rc = run_cmd(&p, &env, "check", "-p", "connect opt.internal tls", NULL);
	cr_assert_eq(rc, 0, "%s", p.err);
	cr_expect(strstr(p.out, "opt.internal"), "%s", p.out);
	cr_expect(!strstr(p.out, "env.internal") && !strstr(p.out, "file.internal"), "%s", p.out);
	h_proc_free(&p);
	/* And the environment's broken policy is reported when checked. */
	rc = run_cmd(&p, &env, "check", NULL);
	cr_expect_eq(rc, 2, "%s", p.out);
	cr_expect(strstr(p.err, "TLSSHIM_POLICY:1:1: "), "%s", p.err);
	h_proc_free(&p);
	free(file);
	h_env_free(&env);
}

Test(source, several_p_are_one_text, .timeout = 30)
{
	struct h_env env;
	struct h_proc p;
	int rc;

	h_env_init(&env);
	rc = run_cmd(&p, &env, "check", "-p", "connect a.internal tls", "--policy",
		     "connect b.internal tls; connect c.internal tls", "-pconnect d.internal tls",
		     "--policy=connect e.internal tsl", NULL);
	cr_expect_eq(rc, 2, "%s", p.out);
	cr_expect(strstr(p.err, "TLSSHIM_POLICY:4:20: "), "the 4th -p is line 4:\n%s", p.err);
	h_proc_free(&p);
	rc = run_cmd(&p, &env, "check", "-p", "connect a.internal tls", "-p",
		     "connect b.internal tls; connect c.internal tls", NULL);
	cr_assert_eq(rc, 0, "%s", p.err);
	cr_expect(strstr(p.out, "TLSSHIM_POLICY:2:1\n") && strstr(p.out, "TLSSHIM_POLICY:2:25\n"),
		  "%s", p.out);
	h_proc_free(&p);
	h_env_free(&env);
}

Test(source, file_with_comments_and_p_together, .timeout = 30)
{
	const char *text = "# the cluster\n"
			   "connect *.svc.cluster.local tls   # everything in it\n"
			   "\n"
			   "   connect *.svc.cluster.local:9090 plain\n";
	char *file = tmp_file("good.policy", text, 0644), want[PATH_MAX + 64];
	struct h_env env;
	struct h_proc p;
	int rc;

	h_env_init(&env);
	rc = run_cmd(&p, &env, "check", "-f", file, "-p", "connect *:25 deny", NULL);
	cr_assert_eq(rc, 0, "%s", p.err);
	cr_expect_eq(h_count(p.out, "\n"), 3, "%s", p.out);
	snprintf(want, sizeof(want), "# %s:2:1\n", file);
	cr_expect(strstr(p.out, want), "want '%s' in:\n%s", want, p.out);
	snprintf(want, sizeof(want), "# %s:4:4\n", file);
	cr_expect(strstr(p.out, want), "want '%s' in:\n%s", want, p.out);
	cr_expect(strstr(p.out, "# TLSSHIM_POLICY:1:1\n"), "%s", p.out);
	h_proc_free(&p);
	free(file);
	h_env_free(&env);
}

/* ---- explain ------------------------------------------------------------------------ */

/* Runs explain with POLICY for DIR ENDPOINT; the exit code must be WANT. */
static void explain(struct h_proc *p, const char *policy, const char *dir, const char *endpoint,
		    int want)
{
	struct h_env env;
	int rc;

	h_env_init(&env);
	rc = run_cmd(p, &env, "explain", "-p", policy, dir, endpoint, NULL);
	cr_assert_eq(rc, want, "explain -p '%s' %s %s: exit %d, want %d\nout: %s\nerr: %s", policy,
		     dir, endpoint, rc, want, p->out, p->err);
	h_env_free(&env);
}

#define expect_out(p, s) cr_expect(strstr((p)->out, (s)), "want '%s' in:\n%s", (s), (p)->out)

Test(explain, exact_name_beats_the_rest_with_reasons, .timeout = 30)
{
	const char *pol = "connect *:443 plain\n"
			  "connect localhost:443 tls\n"
			  "connect 127.0.0.0/8 deny\n"
			  "connect 127.0.0.1 plain\n"
			  "connect *.example.com tls\n";
	struct h_proc p;

	explain(&p, pol, "connect", "localhost:443", 0);
	expect_out(&p, "rule:              connect localhost:443 tls\n");
	expect_out(&p, "from:              TLSSHIM_POLICY:2:1\n");
	expect_out(&p, "`connect *:443 plain` (TLSSHIM_POLICY:1:1): an exact name is more specific "
		       "than any host (*)");
	expect_out(&p, "(TLSSHIM_POLICY:3:1): an exact name is more specific than a CIDR block");
	expect_out(&p,
		   "(TLSSHIM_POLICY:4:1): an exact name is more specific than an exact address");
	cr_expect(!strstr(p.out, "example.com"), "a rule that does not match is not shown:\n%s",
		  p.out);
	expect_out(&p, "action:            tls: ");
	expect_out(&p, "verification:      on\n");
	expect_out(&p, "ca:                the system store\n");
	expect_out(&p, "sni:               localhost");
	expect_out(&p, "name:              localhost");
	expect_out(&p, "min-version:       1.2\n");
	expect_out(&p, "handshake-timeout: 10s\n");
	h_proc_free(&p);
}

Test(explain, longest_prefix_and_ip_literal_defaults, .timeout = 30)
{
	struct h_proc p;

	explain(&p, "connect 10.0.0.0/8 tls; connect 10.1.0.0/16:443 tls min-version=1.3",
		"connect", "10.1.2.3:443", 0);
	expect_out(&p, "rule:              connect 10.1.0.0/16:443 tls min-version=1.3\n");
	expect_out(&p, "/16 is a longer prefix than /8");
	expect_out(&p, "sni:               the name the program resolved for 10.1.2.3 (see "
		       "'verifies name'), else none (IP literal");
	expect_out(&p, "name:              the SNI name, else 10.1.2.3 (the IP address)");
	expect_out(&p, "min-version:       1.3\n");
	h_proc_free(&p);
}

Test(explain, port_decides_between_equal_hosts, .timeout = 30)
{
	struct h_proc p;

	explain(&p,
		"connect 10.1.2.3 plain; connect 10.1.2.3:400-500 deny; connect 10.1.2.3:443 tls",
		"connect", "10.1.2.3:443", 0);
	expect_out(&p, "rule:              connect 10.1.2.3:443 tls\n");
	expect_out(&p, "port 443 is narrower than any port");
	expect_out(&p, "port 443 is narrower than ports 400-500");
	h_proc_free(&p);
	explain(&p, "connect *.example.com tls; connect *.api.example.com plain", "connect",
		"v1.api.example.com:80", 0);
	expect_out(&p, "*.api.example.com is a longer suffix than *.example.com");
	expect_out(&p, "action:            plain: ");
	h_proc_free(&p);
}

Test(explain, accept_and_deny, .timeout = 30)
{
	char *pol;
	struct h_proc p;

	cr_assert(asprintf(&pol, "accept *:8443 tls cert=%s key=%s; accept 127.0.0.1:9 deny",
			   pem("a.pem"), pem("a.key")) > 0);
	explain(&p, pol, "accept", "127.0.0.1:8443", 0);
	expect_out(&p, "rule:              accept *:8443 tls");
	expect_out(&p, "client-ca:         none");
	expect_out(&p, "tlsshim is the server");
	h_proc_free(&p);
	explain(&p, pol, "accept", "127.0.0.1:9", 0);
	expect_out(&p, "action:            deny: ");
	h_proc_free(&p);
	free(pol);
}

Test(explain, no_rule_matches, .timeout = 30)
{
	struct h_proc p;

	explain(&p, "connect 10.0.0.0/8 tls", "connect", "192.0.2.1:443", 0);
	expect_out(&p, "no rule matches: the connection is left alone");
	h_proc_free(&p);
	explain(&p, "connect 10.0.0.0/8 tls", "accept", "10.0.0.1:443", 0);
	expect_out(&p, "no rule matches");
	h_proc_free(&p);
}

Test(explain, bad_endpoint_or_policy, .timeout = 30)
{
	static const char *const endpoints[] = {
	    "api.example.com", "api.example.com:0", "api.example.com:http", "[::1", "::1:443", ""};
	struct h_proc p;
	size_t i;

	for (i = 0; i < sizeof(endpoints) / sizeof(endpoints[0]); i++) {
		explain(&p, "connect *:443 tls", "connect", endpoints[i], 64);
		cr_expect(p.err_len > 0, "endpoint '%s': a message is expected", endpoints[i]);
		h_proc_free(&p);
	}
	explain(&p, "connect *:443 tls", "connet", "a.example.com:443", 64);
	h_proc_free(&p);
	explain(&p, "connect *:443 tsl", "connect", "a.example.com:443", 2);
	cr_expect(strstr(p.err, "TLSSHIM_POLICY:1:15: "), "%s", p.err);
	h_proc_free(&p);
}

/* ---- version and usage -------------------------------------------------------------- */

Test(cmd, version, .timeout = 30)
{
	static const char *const words[] = {"version", "--version", "-V"};
	char path[PATH_MAX], want[64], *v;
	struct h_env env;
	struct h_proc p;
	size_t i;
	int rc;

	snprintf(path, sizeof(path), "%s/VERSION", h_src());
	v = h_read_file(path, NULL);
	cr_assert(v, "cannot read %s", path);
	v[strcspn(v, "\n")] = '\0';
	snprintf(want, sizeof(want), "tlsshim %s\n", v);
	h_env_init(&env);
	for (i = 0; i < 3; i++) {
		rc = run_cmd(&p, &env, words[i], NULL);
		cr_expect_eq(rc, 0, "tlsshim %s", words[i]);
		cr_expect_str_eq(p.out, want, "tlsshim %s", words[i]);
		h_proc_free(&p);
	}
	free(v);
	h_env_free(&env);
}

Test(cmd, help_goes_to_stdout, .timeout = 30)
{
	static const char *const words[] = {"help", "--help", "-h"};
	struct h_env env;
	struct h_proc p;
	size_t i;
	int rc;

	h_env_init(&env);
	for (i = 0; i < 3; i++) {
		rc = run_cmd(&p, &env, words[i], NULL);
		cr_expect_eq(rc, 0, "tlsshim %s", words[i]);
		cr_expect(strstr(p.out, "usage: tlsshim run"), "tlsshim %s: %s", words[i], p.out);
		h_proc_free(&p);
	}
	rc = run_cmd(&p, &env, "check", "--help", NULL);
	cr_expect_eq(rc, 0);
	cr_expect(strstr(p.out, "usage:"), "%s", p.out);
	h_proc_free(&p);
	h_env_free(&env);
}

struct usage_case {
	const char *args[8];
};

static const struct usage_case usage_cases[] = {
    {{NULL}},
    {{"frobnicate", NULL}},
    {{"-p", "connect a tls", "check", NULL}},
    {{"check", "--bogus", NULL}},
    {{"check", "-p", NULL}},
    {{"check", "-f", NULL}},
    {{"check", "-f", "/a", "-f", "/b", NULL}},
    {{"check", "extra", NULL}},
    {{"check", "--log", "debug", NULL}},
    {{"explain", NULL}},
    {{"explain", "connect", NULL}},
    {{"explain", "sideways", "a.example.com:443", NULL}},
    {{"explain", "connect", "a.example.com:443", "more", NULL}},
    {{"run", NULL}},
    {{"run", "--", NULL}},
    {{"run", "--log", "verbose", "--", "/bin/true", NULL}},
    {{"run", "--log", NULL}},
    {{"run", "-x", "--", "/bin/true", NULL}},
    {{"version", "extra", NULL}},
};

static void check_usage(const struct usage_case *c)
{
	struct h_env env;
	struct h_proc p;
	char line[256] = "";
	int rc, i;

	for (i = 0; c->args[i]; i++) {
		strncat(line, " ", sizeof(line) - strlen(line) - 1);
		strncat(line, c->args[i], sizeof(line) - strlen(line) - 1);
	}
	h_env_init(&env);
	rc = run_cmdv(&p, &env, c->args);
	cr_expect_eq(rc, 64, "tlsshim%s: exit %d, want 64; err: %s", line, rc, p.err);
	cr_expect(strstr(p.err, "tlsshim: "), "tlsshim%s: want a message: %s", line, p.err);
	cr_expect(strstr(p.err, "usage:"), "tlsshim%s: want the usage: %s", line, p.err);
	cr_expect_eq(p.out_len, 0, "tlsshim%s: nothing on stdout: %s", line, p.out);
	h_proc_free(&p);
	h_env_free(&env);
}

Test(cmd, usage_errors_exit_64, .timeout = 60)
{
	for (size_t i = 0; i < sizeof(usage_cases) / sizeof(usage_cases[0]); i++)
		check_usage(&usage_cases[i]);
}

/* ---- run ---------------------------------------------------------------------------- */

/* An environment for `run`; under a sanitizer its runtime must go first in LD_PRELOAD. */
static void run_env(struct h_env *env)
{
	h_env_init(env);
	if (getenv("SAN") && getenv("SAN")[0]) {
		h_env_preload(env); /* "runtime shim": run must not add the shim twice */
	}
}

Test(run, bad_policy_runs_nothing, .timeout = 30)
{
	char marker[PATH_MAX];
	struct h_env env;
	struct h_proc p;
	struct stat st;
	int rc;

	snprintf(marker, sizeof(marker), "%s/ran", h_tmpdir());
	run_env(&env);
	rc = run_cmd(&p, &env, "run", "-p", "connect api.internal:443 tsl", "--", "/usr/bin/touch",
		     marker, NULL);
	cr_expect_eq(rc, 78, "exit %d; err: %s", rc, p.err);
	cr_expect(strstr(p.err, "TLSSHIM_POLICY:1:26: "), "same message as check: %s", p.err);
	cr_expect(stat(marker, &st) != 0, "the program ran although the policy is bad");
	h_proc_free(&p);
	/* The same from the environment, as in a container. */
	h_env_set(&env, "TLSSHIM_POLICY", "connect api.internal:443 tsl");
	rc = run_cmd(&p, &env, "run", "--", "/usr/bin/touch", marker, NULL);
	cr_expect_eq(rc, 78, "exit %d; err: %s", rc, p.err);
	cr_expect(stat(marker, &st) != 0, "the program ran although the policy is bad");
	h_proc_free(&p);
	h_env_free(&env);
}

/* Builds a static program in the temp dir, once. */
static const char *static_prog(void)
{
	static char path[PATH_MAX];
	char cmd[3 * PATH_MAX];
	const char *dir;
	char *src;

	if (path[0])
		return path;
	dir = h_tmpdir();
	src = tmp_in(dir, "static.c", "int main(void) { return 0; }\n", 0644);
	snprintf(path, sizeof(path), "%s/static-prog", dir);
	snprintf(cmd, sizeof(cmd), "cc -static -o '%s' '%s' 2>&1", path, src);
	cr_assert_eq(system(cmd), 0, "cannot build a static program (%s); libc6-dev has libc.a",
		     cmd);
	free(src);
	return path;
}

static void expect_refused(const char *prog, const char *why)
{
	struct h_env env;
	struct h_proc p;
	int rc;

	run_env(&env);
	rc = run_cmd(&p, &env, "run", "-p", "connect *:443 tls", "--", prog, NULL);
	cr_expect_eq(rc, 126, "run %s: exit %d, want 126; err: %s", prog, rc, p.err);
	cr_expect(strstr(p.err, why), "run %s: want '%s' in: %s", prog, why, p.err);
	cr_expect(strstr(p.err, "cleartext"), "run %s: the message says what would happen: %s",
		  prog, p.err);
	h_proc_free(&p);
	h_env_free(&env);
}

Test(run, refuses_static_program, .timeout = 60)
{
	expect_refused(static_prog(), "statically linked");
}

/*
 * Builds a tiny Go program with Debian's go (golang-go) in the temp dir, with
 * cgo (dynamically linked to libc: the loader would preload the library, but
 * Go's net package still makes its own system calls) or without (static).
 * Returns NULL when go is not installed.
 */
static const char *go_prog(int cgo)
{
	static char paths[2][PATH_MAX];
	char *path = paths[cgo != 0], cmd[4 * PATH_MAX];
	const char *dir;
	char *src;

	if (path[0])
		return path;
	if (access("/usr/bin/go", X_OK) != 0)
		return NULL;
	dir = h_tmpdir();
	src = tmp_in(dir, cgo ? "cgo.go" : "nocgo.go",
		     cgo ? "package main\n// #include <stdlib.h>\nimport \"C\"\n"
			   "func main() { C.abs(1) }\n"
			 : "package main\nfunc main() { println(\"hi\") }\n",
		     0644);
	snprintf(path, PATH_MAX, "%s/go-%s", dir, cgo ? "cgo" : "static");
	/* A private cache and no network: the build must not depend on the machine's state. */
	snprintf(cmd, sizeof(cmd),
		 "cd '%s' && HOME='%s' GOCACHE='%s/gocache' GOPATH='%s/gopath' GOPROXY=off "
		 "GOFLAGS= GO111MODULE=off CGO_ENABLED=%d /usr/bin/go build -o '%s' '%s' 2>&1",
		 dir, dir, dir, dir, cgo != 0, path, src);
	cr_assert_eq(system(cmd), 0, "cannot build a Go program: %s", cmd);
	free(src);
	return path;
}

static void expect_go_refused(int cgo)
{
	const char *prog = go_prog(cgo);
	struct h_env env;
	struct h_proc p;
	int rc;

	if (prog == NULL)
		cr_skip_test(
		    "/usr/bin/go is not installed (Debian golang-go): no Go program to run");
	run_env(&env);
	rc = run_cmd(&p, &env, "run", "-p", "connect *:443 tls", "--", prog, NULL);
	cr_expect_eq(rc, 126, "run %s: exit %d, want 126; err: %s", prog, rc, p.err);
	cr_expect(strstr(p.err, "is a Go program") && strstr(p.err, "not through libc"),
		  "run %s: the message says why: %s", prog, p.err);
	cr_expect(p.out == NULL || p.out[0] == '\0', "run %s: the program ran: %s", prog, p.out);
	h_proc_free(&p);
	h_env_free(&env);
}

Test(run, refuses_go_program_with_cgo, .timeout = 180)
{
	expect_go_refused(1);
}

Test(run, refuses_static_go_program, .timeout = 180)
{
	expect_go_refused(0);
}

/* A minimal 32-bit little-endian ELF executable with one PT_LOAD and no PT_INTERP. */
Test(run, refuses_static_elf32, .timeout = 30)
{
	unsigned char elf[52 + 32] = {0x7f, 'E', 'L', 'F', 1 /* 32-bit */, 1 /* LE */, 1};
	char path[PATH_MAX];
	FILE *f;

	elf[16] = 2;  /* ET_EXEC */
	elf[18] = 3;  /* EM_386 */
	elf[20] = 1;  /* EV_CURRENT */
	elf[28] = 52; /* e_phoff */
	elf[40] = 52; /* e_ehsize */
	elf[42] = 32; /* e_phentsize */
	elf[44] = 1;  /* e_phnum */
	elf[52] = 1;  /* p_type PT_LOAD */
	snprintf(path, sizeof(path), "%s/static32", h_tmpdir());
	f = fopen(path, "wb");
	cr_assert(f);
	fwrite(elf, 1, sizeof(elf), f);
	fclose(f);
	chmod(path, 0755);
	expect_refused(path, "statically linked");
}

Test(run, refuses_script_with_static_interpreter, .timeout = 60)
{
	char text[PATH_MAX + 16], *script;

	snprintf(text, sizeof(text), "#!%s\n", static_prog());
	script = tmp_file("static-script", text, 0755);
	expect_refused(script, "statically linked");
	free(script);
}

Test(run, refuses_setuid_and_setgid, .timeout = 30)
{
	char cmd[PATH_MAX * 2], path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/suid-true", h_tmpdir());
	snprintf(cmd, sizeof(cmd), "cp /bin/true '%s'", path);
	cr_assert_eq(system(cmd), 0);
	cr_assert_eq(chmod(path, 04755), 0);
	expect_refused(path, "setuid");
	cr_assert_eq(chmod(path, 02755), 0);
	expect_refused(path, "setgid");
}

Test(run, missing_or_unrunnable_program, .timeout = 30)
{
	char *noexec = tmp_file("noexec", "#!/bin/sh\nexit 0\n", 0644);
	struct h_env env;
	struct h_proc p;
	int rc;

	run_env(&env);
	rc = run_cmd(&p, &env, "run", "--", "no-such-program-tlsshim", NULL);
	cr_expect_eq(rc, 127, "exit %d; err: %s", rc, p.err);
	cr_expect(strstr(p.err, "no-such-program-tlsshim"), "%s", p.err);
	h_proc_free(&p);
	rc = run_cmd(&p, &env, "run", "--", "/nonexistent/prog", NULL);
	cr_expect_eq(rc, 127, "exit %d; err: %s", rc, p.err);
	h_proc_free(&p);
	rc = run_cmd(&p, &env, "run", "--", noexec, NULL);
	cr_expect_eq(rc, 126, "exit %d; err: %s", rc, p.err);
	h_proc_free(&p);
	free(noexec);
	h_env_free(&env);
}

/* Whether the library is there to be preloaded (the lead builds it). */
static void need_shim(void)
{
	struct stat st;

	cr_assert(stat(h_shim(), &st) == 0, "%s is not built: the run tests need it", h_shim());
}

/* Splits LD_PRELOAD's value (as printed) into ELEMS; sanitizer runtimes are skipped. */
static size_t preload_elems(const char *out, char elems[8][PATH_MAX])
{
	char buf[8 * PATH_MAX], *tok, *save;
	size_t n = 0;

	snprintf(buf, sizeof(buf), "%s", out);
	buf[strcspn(buf, "\n")] = '\0';
	for (tok = strtok_r(buf, ": ", &save); tok && n < 8; tok = strtok_r(NULL, ": ", &save)) {
		if (strstr(tok, "libasan") || strstr(tok, "libtsan"))
			continue;
		snprintf(elems[n++], PATH_MAX, "%s", tok);
	}
	return n;
}

Test(run, puts_library_first_in_ld_preload, .timeout = 30)
{
	char shim[PATH_MAX], elems[8][PATH_MAX];
	struct h_env env;
	struct h_proc p;
	size_t n;
	int rc;

	need_shim();
	cr_assert(realpath(h_shim(), shim));
	run_env(&env);
	rc = run_cmd(&p, &env, "run", "-p", "connect never.invalid:1 plain", "--",
		     "/usr/bin/printenv", "LD_PRELOAD", NULL);
	cr_assert_eq(rc, 0, "exit %d; err: %s", rc, p.err);
	n = preload_elems(p.out, elems);
	cr_assert_geq(n, 1, "LD_PRELOAD: %s", p.out);
	cr_expect_str_eq(elems[0], shim, "LD_PRELOAD: %s", p.out);
	cr_expect_eq(n, 1, "the library once, nothing else: %s", p.out);
	h_proc_free(&p);
	/* Without "--", the first word that is not an option is PROGRAM. */
	rc = run_cmd(&p, &env, "run", "-p", "connect never.invalid:1 plain", "/usr/bin/printenv",
		     "LD_PRELOAD", NULL);
	cr_expect_eq(rc, 0, "exit %d; err: %s", rc, p.err);
	n = preload_elems(p.out, elems);
	cr_expect(n >= 1 && strcmp(elems[0], shim) == 0, "LD_PRELOAD: %s", p.out);
	h_proc_free(&p);
	h_env_free(&env);
}

Test(run, keeps_existing_ld_preload, .timeout = 30)
{
	const char *libm = "/lib/x86_64-linux-gnu/libm.so.6";
	char shim[PATH_MAX], elems[8][PATH_MAX];
	struct h_env env;
	struct h_proc p;
	struct stat st;
	size_t n;
	int rc;

	need_shim();
	if (stat(libm, &st) != 0)
		libm = "libm.so.6";
	cr_assert(realpath(h_shim(), shim));
	run_env(&env);
	h_env_set(&env, "LD_PRELOAD", "%s%s%s:%s", h_env_get(&env, "LD_PRELOAD") ?: "",
		  h_env_get(&env, "LD_PRELOAD") ? ":" : "", libm, shim);
	rc = run_cmd(&p, &env, "run", "-p", "connect never.invalid:1 plain", "--",
		     "/usr/bin/printenv", "LD_PRELOAD", NULL);
	cr_assert_eq(rc, 0, "exit %d; err: %s", rc, p.err);
	n = preload_elems(p.out, elems);
	cr_assert_eq(n, 2, "the library and libm, once each: %s", p.out);
	cr_expect_str_eq(elems[0], shim, "LD_PRELOAD: %s", p.out);
	cr_expect_str_eq(elems[1], libm, "LD_PRELOAD: %s", p.out);
	h_proc_free(&p);
	h_env_free(&env);
}

/* Runs `tlsshim run ARGS... -- /usr/bin/env` and returns its output (caller frees). */
static char *run_env_output(struct h_env *env, const char *const *args)
{
	const char *argv[32];
	struct h_proc p;
	char *out;
	int n = 0, rc;

	argv[n++] = "run";
	while (*args && n < 28)
		argv[n++] = *args++;
	argv[n++] = "--";
	argv[n++] = "/usr/bin/env";
	argv[n] = NULL;
	rc = run_cmdv(&p, env, argv);
	cr_assert_eq(rc, 0, "exit %d; err: %s", rc, p.err);
	out = strdup(p.out);
	h_proc_free(&p);
	return out;
}

Test(run, sets_the_policy_environment, .timeout = 30)
{
	char *file = tmp_file("run.policy", "connect file.internal tls\n", 0644);
	char want[PATH_MAX + 64], *out;
	struct h_env env;

	need_shim();
	run_env(&env);
	h_env_set(&env, "TLSSHIM_POLICY", "connect from-env.internal tls");
	h_env_set(&env, "TLSSHIM_POLICY_FILE", "%s", file);

	/* -p only: TLSSHIM_POLICY is the -p rules, normalized; the file variable is removed. */
	out = run_env_output(&env, (const char *const[]){"-p", "connect a.internal tls", "-p",
							 "connect b.internal tls", "--log", "debug",
							 NULL});
	expect_out(&(struct h_proc){.out = out},
		   "\nTLSSHIM_POLICY=connect a.internal:* tls\nconnect b.internal:* tls\n");
	cr_expect(!strstr(out, "TLSSHIM_POLICY_FILE="), "%s", out);
	expect_out(&(struct h_proc){.out = out}, "\nTLSSHIM_LOG=debug\n");
	free(out);

	/* -f only: TLSSHIM_POLICY is removed (relative paths: the next test). */
	out = run_env_output(&env, (const char *const[]){"-f", file, NULL});
	snprintf(want, sizeof(want), "\nTLSSHIM_POLICY_FILE=%s\n", file);
	expect_out(&(struct h_proc){.out = out}, want);
	cr_expect(!strstr(out, "\nTLSSHIM_POLICY="), "%s", out);
	free(out);

	/* Neither: the environment's policy goes through untouched. */
	out = run_env_output(&env, (const char *const[]){NULL});
	expect_out(&(struct h_proc){.out = out},
		   "\nTLSSHIM_POLICY=connect from-env.internal tls\n");
	snprintf(want, sizeof(want), "\nTLSSHIM_POLICY_FILE=%s\n", file);
	expect_out(&(struct h_proc){.out = out}, want);
	free(out);
	free(file);
	h_env_free(&env);
}

Test(run, relative_policy_file_made_absolute, .timeout = 30)
{
	const char *dir = h_tmpdir();
	char *file = tmp_in(dir, "rel.policy", "connect rel.internal tls\n", 0644);
	char want[PATH_MAX + 64], *out;
	struct h_env env;

	need_shim();
	cr_assert(chdir(dir) == 0);
	run_env(&env);
	out = run_env_output(&env, (const char *const[]){"-f", "rel.policy", NULL});
	snprintf(want, sizeof(want), "\nTLSSHIM_POLICY_FILE=%s\n", file);
	expect_out(&(struct h_proc){.out = out}, want);
	free(out);
	free(file);
	h_env_free(&env);
}

/*
 * cert=/key= relative to where `run` started: the program may chdir() before
 * its first connection, and the processes it starts elsewhere inherit the
 * policy. Both must see the files `run` checked (run exports absolute paths).
 */
Test(run, relative_cert_paths_hold_after_chdir_and_in_children, .timeout = 60)
{
	static const char script[] =
	    "import os, subprocess, http.server, socketserver, sys\n"
	    "os.chdir('/')\n"
	    "print('child exit', subprocess.run(['sh', '-c', 'exit 3']).returncode, flush=True)\n"
	    "class H(http.server.BaseHTTPRequestHandler):\n"
	    "    def do_GET(self):\n"
	    "        self.send_response(200); self.end_headers(); self.wfile.write(b'relative "
	    "ok')\n"
	    "socketserver.TCPServer.allow_reuse_address = True\n"
	    "s = socketserver.TCPServer(('127.0.0.1', int(sys.argv[1])), H)\n"
	    "print('listening', flush=True)\n"
	    "s.handle_request()\n";
	int port = h_free_port();
	char *rule = h_fmt("accept 127.0.0.1:%d tls cert=server.pem key=server.key", port);
	struct h_proc srv, cli;
	struct h_env env, plain;
	int rc;

	need_shim();
	run_env(&env);
	cr_assert_eq(h_spawn(&srv,
			     (char *[]){"sh", "-c",
					"cd \"$1\" && exec \"$2\" run -p \"$3\" -- "
					"python3 -c \"$4\" \"$5\"",
					"sh", (char *)h_pki(), (char *)h_cmd(), rule,
					(char *)script, h_fmt("%d", port), NULL},
			     &env, NULL, 0),
		     0);
	cr_assert(h_wait_output(&srv, "listening", 20000) == 0, "the server did not start:\n%s\n%s",
		  srv.out, srv.err);
	cr_expect(strstr(srv.out, "child exit 3") != NULL,
		  "expected the child started from / to exit 3 (not 78: its policy's files "
		  "readable), the server printed:\n%s\n%s",
		  srv.out, srv.err);
	h_env_init(&plain);
	rc = h_run(&cli,
		   (char *[]){"curl", "-sS", "--max-time", "10", "--cacert",
			      (char *)h_pki_file("ca.pem"), h_fmt("https://localhost:%d/", port),
			      NULL},
		   &plain, 15000);
	cr_expect_eq(rc, 0,
		     "expected curl to get the page over TLS after the server's chdir, "
		     "exit %d:\n%s\nserver:\n%s",
		     rc, cli.err, srv.err);
	cr_expect_str_eq(cli.out, "relative ok", "the page over TLS");
	h_proc_free(&cli);
	h_env_free(&plain);
	h_wait(&srv, 10000);
	h_proc_free(&srv);
	h_env_free(&env);
}

Test(run, program_arguments_and_status_pass_through, .timeout = 30)
{
	struct h_env env;
	struct h_proc p;
	int rc;

	need_shim();
	run_env(&env);
	rc = run_cmd(&p, &env, "run", "--", "echo", "-p", "x", "--log", "--", NULL);
	cr_expect_eq(rc, 0, "exit %d; err: %s", rc, p.err);
	cr_expect_str_eq(p.out, "-p x --log --\n", "PROGRAM's options are its own");
	h_proc_free(&p);
	rc = run_cmd(&p, &env, "run", "-p", "connect never.invalid:1 plain", "--", "sh", "-c",
		     "exit 7", NULL);
	cr_expect_eq(rc, 7, "exit %d; err: %s", rc, p.err);
	h_proc_free(&p);
	h_env_free(&env);
}

Test(explain, address_matches_rule_names_that_resolve_to_it, .timeout = 30)
{
	struct h_proc p;

	/* As the shim does for programs that never ask libc for the name. */
	explain(&p, "connect localhost tls; connect *:* plain", "connect", "127.0.0.1:80", 0);
	expect_out(&p, "rule:              connect localhost:* tls\n");
	expect_out(&p, "matched by:        exact name localhost (it resolves to 127.0.0.1)");
	expect_out(&p, "sni:               localhost");
	h_proc_free(&p);
}
