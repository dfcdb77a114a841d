/*
 * test_server.c - end-to-end tests of the server side (issue 4): unmodified
 * servers (python3 -m http.server, redis-server) run under the shim with an
 * `accept` policy and serve real TLS clients (curl, openssl s_client,
 * redis-cli, redis-benchmark) and hostile ones (raw bytes from python3).
 *
 * Every program gets an explicit environment; the shim is never loaded into
 * this binary. Servers are registered and killed in each suite's fini (and by
 * the harness's parent-death signal if a test dies). Clients run without the
 * shim: they are the real TLS peers.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "e2e/harness.h"

#define CLIENT_MS   20000 /* every client run is bounded by this */
#define S_CLIENT_MS 10000 /* and each openssl s_client run by this */
#define PY          "/usr/bin/python3"

/* ---- helpers ----------------------------------------------------------------------- */

TestSuite(server_http, .fini = h_teardown, .timeout = 60);
TestSuite(server_redis, .fini = h_teardown, .timeout = 120);
TestSuite(server_mtls, .fini = h_teardown, .timeout = 60);
TestSuite(server_policy, .fini = h_teardown, .timeout = 60);
TestSuite(server_badinput, .fini = h_teardown, .timeout = 60);
TestSuite(server_rotation, .fini = h_teardown, .timeout = 60);
TestSuite(server_options, .fini = h_teardown, .timeout = 60);
TestSuite(server_records, .fini = h_teardown, .timeout = 60);

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Collects P's output until NEEDLE occurs N times in its stderr (1) or TIMEOUT_MS passes (0). */
static int wait_count(struct h_proc *p, const char *needle, int n, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;

	for (;;) {
		h_collect(p, 0);
		if (h_count(p->err, needle) >= n)
			return 1;
		if (now_ms() >= deadline || p->reaped)
			return 0;
		usleep(20000);
	}
}

/*
 * Starts ARGV under the shim with POLICY (LOG: TLSSHIM_LOG, or NULL for the
 * default; LOG_FILE: TLSSHIM_LOG_FILE, or NULL for stderr) and waits until it
 * listens on PORT.
 */
static struct h_proc *start_server_log(char *const argv[], int port, const char *policy,
				       const char *log, const char *log_file)
{
	struct h_proc *p;
	struct h_env env;

	h_env_init(&env);
	h_env_preload(&env);
	h_env_set(&env, "TLSSHIM_POLICY", "%s", policy);
	h_env_set(&env, "PYTHONUNBUFFERED", "1");
	if (log)
		h_env_set(&env, "TLSSHIM_LOG", "%s", log);
	if (log_file)
		h_env_set(&env, "TLSSHIM_LOG_FILE", "%s", log_file);
	p = h_server(argv, &env, port, NULL);
	h_env_free(&env);
	return p;
}

static struct h_proc *start_server(char *const argv[], int port, const char *policy,
				   const char *log)
{
	return start_server_log(argv, port, policy, log, NULL);
}

/* The file every http.server test serves: 20000 bytes, several TLS records. */
static const char *www_dir;
static char *www_body;

static void make_www(void)
{
	size_t len = 20000, off = 0;
	int line = 0;

	if (www_dir)
		return;
	www_dir = h_tmpdir();
	www_body = malloc(len + 1);
	while (off < len) {
		int n = snprintf(www_body + off, len + 1 - off, "tlsshim server e2e line %05d\n",
				 line++);

		off += (size_t)n;
	}
	www_body[len] = '\0';
	cr_assert_eq(h_write_file(h_fmt("%s/file", www_dir), www_body, len), 0,
		     "expected to write the served file");
}

/* python3 -m http.server on 127.0.0.1:PORT under the shim with POLICY. */
static struct h_proc *start_http(int port, const char *policy, const char *log)
{
	make_www();
	return start_server(ARGV(PY, "-m", "http.server", "-b", "127.0.0.1", "--directory",
				 (char *)www_dir, h_fmt("%d", port)),
			    port, policy, log);
}

/* The usual accept rule on 127.0.0.1:PORT with the test server certificate, plus EXTRA. */
static char *tls_rule(int port, const char *action, const char *extra)
{
	return h_fmt("accept 127.0.0.1:%d %s cert=%s key=%s%s", port, action, pki("server.pem"),
		     pki("server.key"), extra ? extra : "");
}

/* Runs ARGV without the shim (a real TLS client); returns its exit code. */
static int run_client(struct h_proc *p, char *const argv[])
{
	return h_run_plain(p, argv, CLIENT_MS);
}

/*
 * Runs ARGV without the shim with STDIN on its standard input for at most
 * TIMEOUT_MS; returns its exit code (-1 when it had to be killed).
 */
static int run_client_in(struct h_proc *p, char *const argv[], const char *in, int timeout_ms)
{
	struct h_env e;
	int rc;

	h_env_init(&e);
	if (h_spawn(p, argv, &e, in, strlen(in)) != 0)
		rc = -1;
	else
		rc = h_wait(p, timeout_ms);
	h_env_free(&e);
	return rc;
}

/* curl https://localhost:PORT/file with the test CA; CERT (a PKI name) as client cert. */
static int curl_https(struct h_proc *p, int port, const char *cert)
{
	if (cert)
		return run_client(p, ARGV("curl", "-sS", "--max-time", "10", "--cacert",
					  pki("ca.pem"), "--cert", pki(h_fmt("%s.pem", cert)),
					  "--key", pki(h_fmt("%s.key", cert)),
					  h_fmt("https://localhost:%d/file", port)));
	return run_client(p, ARGV("curl", "-sS", "--max-time", "10", "--cacert", pki("ca.pem"),
				  h_fmt("https://localhost:%d/file", port)));
}

/* A real client gets the file over TLS (WHAT says after what, for the messages). */
static void expect_served(int port, const char *cert, const char *what)
{
	struct h_proc p;
	int rc = curl_https(&p, port, cert);

	cr_expect_eq(rc, 0, "expected curl%s%s to get the file %s, it exited %d:\n%s",
		     cert ? " --cert " : "", cert ? cert : "", what, rc, p.err);
	cr_expect(p.out_len == strlen(www_body) && strcmp(p.out, www_body) == 0,
		  "expected the %zu-byte file %s, got %zu bytes:\n%.200s", strlen(www_body), what,
		  p.out_len, p.out);
	h_proc_free(&p);
}

/* ---- python3 -m http.server ------------------------------------------------------- */

Test(server_http, python_http_server_serves_https_to_curl)
{
	int port = h_free_port();
	struct h_proc *srv;

	srv = start_http(port, tls_rule(port, "tls", NULL), NULL);
	expect_served(port, NULL, "over TLS");
	cr_expect(wait_count(srv, "\"GET /file HTTP/1.1\" 200", 1, 3000),
		  "expected http.server to log the request, its stderr:\n%s", srv->err);
	cr_expect(!strstr(srv->err, "tlsshim["), "expected no shim log line at warn, got:\n%s",
		  srv->err);
}

Test(server_http, fifty_requests_in_a_row)
{
	int port = h_free_port();
	char *argv[64];
	struct h_proc p, *srv;
	int n = 0, rc;

	srv = start_http(port, tls_rule(port, "tls", NULL), NULL);
	argv[n++] = "curl";
	argv[n++] = "-sS";
	argv[n++] = "--max-time";
	argv[n++] = "30";
	argv[n++] = "--cacert";
	argv[n++] = pki("ca.pem");
	for (int i = 0; i < 50; i++)
		argv[n++] = h_fmt("https://localhost:%d/file", port);
	argv[n] = NULL;
	rc = run_client(&p, argv);
	cr_expect_eq(rc, 0, "expected curl with 50 URLs to exit 0, got %d:\n%s", rc, p.err);
	cr_expect_eq(p.out_len, 50 * strlen(www_body), "expected 50 x %zu bytes, got %zu",
		     strlen(www_body), p.out_len);
	for (int i = 0; i < 50 && p.out_len == 50 * strlen(www_body); i++) {
		size_t len = strlen(www_body);

		cr_expect(memcmp(p.out + (size_t)i * len, www_body, len) == 0,
			  "expected response %d to be the file, got:\n%.200s", i + 1,
			  p.out + (size_t)i * len);
	}
	cr_expect(wait_count(srv, "\"GET /file HTTP/1.1\" 200", 50, 5000),
		  "expected http.server to log 50 requests, it logged %d",
		  h_count(srv->err, "\"GET /file HTTP/1.1\" 200"));
	h_proc_free(&p);
}

/* Bytes that are not TLS are a client's mistake, not the server's problem: info. */
Test(server_http, cleartext_client_is_refused_and_logged_at_info)
{
	int port = h_free_port();
	struct h_proc p, *srv;
	char *line;
	int rc;

	srv = start_http(port, tls_rule(port, "tls", NULL), "info");
	rc = run_client(
	    &p, ARGV("curl", "-sS", "--max-time", "10", h_fmt("http://localhost:%d/file", port)));
	cr_expect_neq(rc, 0, "expected plain http:// to a tls port to fail, got 0 with:\n%.200s",
		      p.out);
	cr_expect(!strstr(p.out, "tlsshim server e2e"),
		  "expected no file in cleartext, got:\n%.200s", p.out);
	h_proc_free(&p);
	cr_expect(wait_count(srv, h_fmt("tlsshim[%d]: info: accept 127.0.0.1:%d", srv->pid, port),
			     1, 3000),
		  "expected an info line for the cleartext client, server stderr:\n%s", srv->err);
	line = h_line_with(srv->err, "info: accept");
	cr_expect(line && strstr(line, " from 127.0.0.1:") && strstr(line, "not speaking TLS"),
		  "expected the info line to name the client address and say \"not speaking "
		  "TLS\", got: %s",
		  line ? line : "");
	free(line);
	cr_expect(!strstr(srv->err, ": warn: "), "expected no warning for a cleartext client:\n%s",
		  srv->err);
	cr_expect(!strstr(srv->err, "\"GET /file"),
		  "expected the server to log no request, got:\n%s", srv->err);
	expect_served(port, NULL, "after a cleartext client");
}

/* ---- redis-server ------------------------------------------------------------------ */

static struct h_proc *start_redis(int port, const char *policy)
{
	return start_server(ARGV("redis-server", "--port", h_fmt("%d", port), "--bind", "127.0.0.1",
				 "--save", "", "--appendonly", "no", "--dir", (char *)h_tmpdir(),
				 "--loglevel", "warning"),
			    port, policy, NULL);
}

static int redis_cli(struct h_proc *p, int port, char *a1, char *a2, char *a3)
{
	return run_client(p, ARGV("redis-cli", "--tls", "--cacert", pki("ca.pem"), "-h",
				  "localhost", "-p", h_fmt("%d", port), a1, a2, a3));
}

Test(server_redis, redis_cli_sets_and_gets_over_tls)
{
	int port = h_free_port();
	struct h_proc p;
	int rc;

	start_redis(port, tls_rule(port, "tls", NULL));
	rc = redis_cli(&p, port, "SET", "tlsshim", "hello-redis");
	cr_expect_eq(rc, 0, "expected redis-cli --tls SET to exit 0, got %d; stderr:\n%s", rc,
		     p.err);
	cr_expect_str_eq(p.out, "OK\n", "expected SET to answer OK, got \"%s\" (stderr: %s)", p.out,
			 p.err);
	h_proc_free(&p);
	rc = redis_cli(&p, port, "GET", "tlsshim", NULL);
	cr_expect_eq(rc, 0, "expected redis-cli --tls GET to exit 0, got %d; stderr:\n%s", rc,
		     p.err);
	cr_expect_str_eq(p.out, "hello-redis\n", "expected GET to return hello-redis, got \"%s\"",
			 p.out);
	h_proc_free(&p);
}

Test(server_redis, redis_benchmark_50_clients_without_errors)
{
	int port = h_free_port();
	struct h_proc p, *srv;
	struct h_env e;
	int rc;

	srv = start_redis(port, tls_rule(port, "tls", NULL));
	h_env_init(&e);
	cr_assert_eq(
	    h_spawn(&p,
		    ARGV("redis-benchmark", "--tls", "--cacert", pki("ca.pem"), "-h", "localhost",
			 "-p", h_fmt("%d", port), "-c", "50", "-n", "20000", "-q", "-t", "set,get"),
		    &e, NULL, 0),
	    0, "expected redis-benchmark to start");
	rc = h_wait(&p, 100000);
	h_env_free(&e);
	cr_expect_eq(rc, 0, "expected redis-benchmark to exit 0, got %d; stdout:\n%s\nstderr:\n%s",
		     rc, p.out, p.err);
	cr_expect(strstr(p.out, "SET: ") && strstr(p.out, "GET: ") &&
		      h_count(p.out, "requests per second") >= 2,
		  "expected SET and GET requests-per-second lines, got:\n%s\nstderr:\n%s", p.out,
		  p.err);
	cr_expect(!strcasestr(p.out, "error") && !strcasestr(p.err, "error"),
		  "expected no error from redis-benchmark, got:\n%s\nstderr:\n%s", p.out, p.err);
	h_collect(srv, 0);
	cr_expect(!strstr(srv->err, "tlsshim["), "expected no shim warning in redis, got:\n%s",
		  srv->err);
	h_proc_free(&p);
}

/* ---- mutual TLS -------------------------------------------------------------------- */

/*
 * CERT (a PKI name, NULL for none) must be turned away: curl fails without
 * the file, the server logs a warn line containing REASON, and the next good
 * client (GOOD, a PKI name; NULL: no client is allowed here, skip that) is served.
 */
static void expect_rejected(struct h_proc *srv, int port, const char *cert, const char *reason,
			    const char *good)
{
	char *warn = h_fmt("tlsshim[%d]: warn: accept 127.0.0.1:%d from ", srv->pid, port);
	int before = h_count(srv->err, warn);
	struct h_proc p;
	char *line;
	int rc;

	rc = curl_https(&p, port, cert);
	cr_expect_neq(rc, 0, "expected curl with %s to be refused, it exited 0 with:\n%.200s",
		      cert ? cert : "no certificate", p.out);
	cr_expect(!strstr(p.out, "tlsshim server e2e"), "expected no file for %s, got:\n%.200s",
		  cert ? cert : "no certificate", p.out);
	h_proc_free(&p);
	cr_expect(wait_count(srv, warn, before + 1, 3000),
		  "expected a warn line \"%s...\" for %s, server stderr:\n%s", warn,
		  cert ? cert : "no certificate", srv->err);
	line = h_line_with(srv->err, reason);
	cr_expect(line && strstr(line, warn),
		  "expected the warn line for %s to give the reason \"%s\", server stderr:\n%s",
		  cert ? cert : "no certificate", reason, srv->err);
	free(line);
	cr_expect(!srv->reaped, "expected the server to keep running after rejecting %s",
		  cert ? cert : "no certificate");
	if (good)
		expect_served(port, good,
			      h_fmt("after rejecting %s", cert ? cert : "no certificate"));
}

Test(server_mtls, client_ca_admits_trusted_client_and_refuses_others)
{
	int port = h_free_port();
	struct h_proc *srv;

	srv = start_http(port, tls_rule(port, "tls", h_fmt(" client-ca=%s", pki("ca.pem"))), NULL);
	expect_served(port, "client", "with a client certificate from the CA");
	expect_served(port, "client2", "with another client certificate from the CA");
	expect_rejected(srv, port, NULL, "did not send a certificate", "client");
	expect_rejected(srv, port, "other-client", "verify failed", "client");
	cr_expect(wait_count(srv, "\"GET /file HTTP/1.1\" 200", 4, 3000),
		  "expected the 4 good clients' requests logged, server stderr:\n%s", srv->err);
	h_collect(srv, 200);
	cr_expect_eq(h_count(srv->err, "\"GET /file HTTP/1.1\" 200"), 4,
		     "expected only the 4 good clients' requests logged, server stderr:\n%s",
		     srv->err);
}

Test(server_mtls, allow_cn_admits_only_the_listed_common_name)
{
	int port = h_free_port();
	struct h_proc *srv;

	srv = start_http(
	    port, tls_rule(port, "tls", h_fmt(" client-ca=%s allow=cn:client.test", pki("ca.pem"))),
	    NULL);
	expect_served(port, "client", "as cn:client.test");
	expect_rejected(srv, port, "client2", "not allowed", "client");
	expect_rejected(srv, port, NULL, "did not send a certificate", "client");
}

Test(server_mtls, allow_dns_wildcard_matches_the_san)
{
	int port = h_free_port(), port2 = h_free_port();
	struct h_proc *srv;

	start_http(port,
		   tls_rule(port, "tls", h_fmt(" client-ca=%s allow=dns:*.test", pki("ca.pem"))),
		   NULL);
	expect_served(port, "client", "as dns:client.test under dns:*.test");
	expect_served(port, "client2", "as dns:other.test under dns:*.test");
	srv = start_http(
	    port2,
	    tls_rule(port2, "tls", h_fmt(" client-ca=%s allow=dns:*.example", pki("ca.pem"))),
	    NULL);
	expect_rejected(srv, port2, "client", "not allowed", NULL);
	cr_expect(strstr(srv->err, "dns:client.test"),
		  "expected the warn line to show the client's names, server stderr:\n%s",
		  srv->err);
}

Test(server_mtls, allow_spiffe_uri_admits_web_and_refuses_db)
{
	int port = h_free_port();
	struct h_proc *srv;

	srv = start_http(port,
			 tls_rule(port, "tls",
				  h_fmt(" client-ca=%s allow=uri:spiffe://example.org/ns/*/sa/web",
					pki("ca.pem"))),
			 NULL);
	expect_served(port, "client", "as spiffe://example.org/ns/default/sa/web");
	expect_rejected(srv, port, "client2", "not allowed", "client");
	cr_expect(strstr(srv->err, "spiffe://example.org/ns/default/sa/db"),
		  "expected the warn line to name the refused SPIFFE id, server stderr:\n%s",
		  srv->err);
	expect_rejected(srv, port, "other-client", "verify failed", "client");
}

Test(server_mtls, allow_list_admits_any_listed_pattern)
{
	int port = h_free_port();
	struct h_proc *srv;

	srv =
	    start_http(port,
		       tls_rule(port, "tls",
				h_fmt(" client-ca=%s allow=cn:nobody.test,uri:spiffe://example.org/"
				      "ns/*/sa/db",
				      pki("ca.pem"))),
		       NULL);
	expect_served(port, "client2", "as the listed .../sa/db");
	expect_rejected(srv, port, "client", "not allowed", "client2");
}

Test(server_mtls, event_loop_server_logs_rejections_to_the_log_file)
{
	int port = h_free_port();
	char *log = h_fmt("%s/shim.log", h_tmpdir());
	char *warn, *text;
	struct h_proc p, *srv;
	int rc;

	srv = start_server_log(
	    ARGV("redis-server", "--port", h_fmt("%d", port), "--bind", "127.0.0.1", "--save", "",
		 "--appendonly", "no", "--dir", (char *)h_tmpdir(), "--loglevel", "warning"),
	    port,
	    tls_rule(
		port, "tls",
		h_fmt(" client-ca=%s allow=uri:spiffe://example.org/ns/*/sa/web", pki("ca.pem"))),
	    NULL, log);
	warn = h_fmt("tlsshim[%d]: warn: accept 127.0.0.1:%d from ", srv->pid, port);
	rc = run_client(&p, ARGV("redis-cli", "--tls", "--cacert", pki("ca.pem"), "--cert",
				 pki("client.pem"), "--key", pki("client.key"), "-h", "localhost",
				 "-p", h_fmt("%d", port), "PING"));
	cr_expect(rc == 0 && strcmp(p.out, "PONG\n") == 0,
		  "expected redis-cli with client.pem (sa/web) to get PONG, got %d \"%s\":\n%s", rc,
		  p.out, p.err);
	h_proc_free(&p);
	for (int i = 0; i < 2; i++) {
		const char *cert = i == 0 ? "client2" : NULL;
		const char *reason = i == 0 ? "not allowed" : "did not send a certificate";

		if (cert)
			rc = run_client(&p, ARGV("redis-cli", "--tls", "--cacert", pki("ca.pem"),
						 "--cert", pki("client2.pem"), "--key",
						 pki("client2.key"), "-h", "localhost", "-p",
						 h_fmt("%d", port), "PING"));
		else
			rc = redis_cli(&p, port, "PING", NULL, NULL);
		cr_expect(!strstr(p.out, "PONG"),
			  "expected redis-cli with %s to be refused, got \"%s\" (exit %d)",
			  cert ? cert : "no certificate", p.out, rc);
		h_proc_free(&p);
		text = NULL;
		for (int t = 0; t < 150; t++) {
			free(text);
			text = h_read_file(log, NULL);
			if (text && h_count(text, warn) >= i + 1)
				break;
			usleep(20000);
		}
		cr_expect(
		    text && h_count(text, warn) >= i + 1 && strstr(text, reason),
		    "expected the log file to get a warn line saying \"%s\" for %s, it has:\n%s",
		    reason, cert ? cert : "no certificate", text ? text : "(no file)");
		free(text);
	}
	h_collect(srv, 0);
	cr_expect(!strstr(srv->err, "tlsshim["),
		  "expected no shim line on redis's stderr with TLSSHIM_LOG_FILE, got:\n%s",
		  srv->err);
	rc = run_client(&p, ARGV("redis-cli", "--tls", "--cacert", pki("ca.pem"), "--cert",
				 pki("client.pem"), "--key", pki("client.key"), "-h", "localhost",
				 "-p", h_fmt("%d", port), "PING"));
	cr_expect(rc == 0 && strcmp(p.out, "PONG\n") == 0,
		  "expected redis to go on serving client.pem after the rejections, got %d "
		  "\"%s\":\n%s",
		  rc, p.out, p.err);
	h_proc_free(&p);
}

/* ---- auto and deny ----------------------------------------------------------------- */

Test(server_policy, auto_serves_http_and_https_on_one_port)
{
	int port = h_free_port();
	struct h_proc p, *srv;
	int rc;

	srv = start_http(port, tls_rule(port, "auto", NULL), NULL);
	for (int round = 0; round < 2; round++) {
		rc = run_client(&p, ARGV("curl", "-sS", "--max-time", "10",
					 h_fmt("http://localhost:%d/file", port)));
		cr_expect_eq(rc, 0,
			     "expected plain curl http:// to exit 0 on an auto port, got %d:\n%s",
			     rc, p.err);
		cr_expect(strcmp(p.out, www_body) == 0,
			  "expected the file in cleartext (round %d), got %zu bytes:\n%.200s",
			  round, p.out_len, p.out);
		h_proc_free(&p);
		expect_served(port, NULL, "over TLS on an auto port");
	}
	cr_expect(wait_count(srv, "\"GET /file HTTP/1.1\" 200", 4, 3000),
		  "expected 4 requests logged, server stderr:\n%s", srv->err);
	cr_expect(!strstr(srv->err, ": warn: "), "expected no warning for auto, got:\n%s",
		  srv->err);
}

Test(server_policy, deny_closes_the_connection_before_the_server_sees_it)
{
	int port = h_free_port();
	struct h_proc p, *srv;
	char *warn;
	int rc;

	srv = start_http(port, h_fmt("accept 127.0.0.1:%d deny", port), NULL);
	rc = run_client(
	    &p, ARGV("curl", "-sS", "--max-time", "10", h_fmt("http://localhost:%d/file", port)));
	cr_expect(rc == 52 || rc == 56 || rc == 7,
		  "expected curl to see the connection closed (exit 52/56/7), got %d:\n%s%.200s",
		  rc, p.err, p.out);
	cr_expect_eq(p.out_len, 0, "expected no reply at all, got:\n%.200s", p.out);
	h_proc_free(&p);
	warn = h_fmt("tlsshim[%d]: warn: accept 127.0.0.1:%d", srv->pid, port);
	cr_expect(wait_count(srv, warn, 1, 3000),
		  "expected a warn line \"%s...\", server stderr:\n%s", warn, srv->err);
	h_collect(srv, 300);
	cr_expect(!strstr(srv->err, "GET /file") && !strstr(srv->err, "Traceback"),
		  "expected the server never to see the connection, its stderr:\n%s", srv->err);
	cr_expect(!srv->reaped, "expected the server to keep running");
}

Test(server_policy, plain_rule_carves_a_port_out_of_a_wildcard)
{
	int port = h_free_port();
	struct h_proc p, *srv;
	int rc;

	srv = start_http(port,
			 h_fmt("accept *:* tls cert=%s key=%s; accept 127.0.0.1:%d plain",
			       pki("server.pem"), pki("server.key"), port),
			 NULL);
	rc = run_client(
	    &p, ARGV("curl", "-sS", "--max-time", "10", h_fmt("http://localhost:%d/file", port)));
	cr_expect_eq(rc, 0, "expected plain curl to a `plain` port to exit 0, got %d:\n%s", rc,
		     p.err);
	cr_expect(strcmp(p.out, www_body) == 0, "expected the file in cleartext, got:\n%.200s",
		  p.out);
	h_proc_free(&p);
	h_collect(srv, 0);
	cr_expect(!strstr(srv->err, "tlsshim["), "expected no shim log line, got:\n%s", srv->err);
}

/*
 * A server listening on the wildcard address (BIND: 0.0.0.0 or ::) under the
 * rule the user writes for it, "accept HOST:PORT tls" with HOST that address:
 * a real client reaches it over TLS on every address FAMILIES lists ("4", "6"
 * or "46"), and a cleartext client gets not one byte of the file.
 */
static void wildcard_listener(const char *bind, const char *host, const char *families)
{
	int port = h_free_port();
	struct h_proc p, *srv;
	int rc;

	make_www();
	srv = start_server(ARGV(PY, "-m", "http.server", "-b", (char *)bind, "--directory",
				(char *)www_dir, h_fmt("%d", port)),
			   port,
			   h_fmt("accept %s:%d tls cert=%s key=%s", host, port, pki("server.pem"),
				 pki("server.key")),
			   NULL);
	for (const char *f = families; *f; f++) {
		rc = run_client(&p, ARGV("curl", "-sS", *f == '4' ? "-4" : "-6", "--max-time", "10",
					 "--cacert", pki("ca.pem"),
					 h_fmt("https://localhost:%d/file", port)));
		cr_expect(rc == 0 && strcmp(p.out, www_body) == 0,
			  "expected curl -%c to get the file over TLS from a server on %s under "
			  "'accept %s:%d tls', it exited %d:\n%s",
			  *f, bind, host, port, rc, p.err);
		h_proc_free(&p);
		rc = run_client(&p, ARGV("curl", "-sS", *f == '4' ? "-4" : "-6", "--max-time", "10",
					 h_fmt("http://localhost:%d/file", port)));
		cr_expect(rc != 0 && strstr(p.out, "tlsshim server e2e line") == NULL,
			  "expected a cleartext request over IPv%c to get nothing of the file, "
			  "curl exited %d with:\n%.200s",
			  *f, rc, p.out);
		h_proc_free(&p);
	}
	h_collect(srv, 0);
	cr_expect(h_count(srv->err, "\"GET /file HTTP/1.1\" 200") == (int)strlen(families),
		  "expected the server to have served the file only to the TLS clients, its "
		  "stderr:\n%s",
		  srv->err);
}

Test(server_policy, accept_on_0_0_0_0_covers_a_server_listening_there)
{
	wildcard_listener("0.0.0.0", "0.0.0.0", "4");
}

/* A server told "0.0.0.0" that listens on [::] (both families): 0.0.0.0 covers it all. */
Test(server_policy, accept_on_0_0_0_0_covers_a_dual_stack_server_too)
{
	wildcard_listener("::", "0.0.0.0", "46");
}

/* A [::] listener takes IPv4 clients too (as ::ffff:a.b.c.d): the rule covers both. */
Test(server_policy, accept_on_brackets_colon_colon_covers_a_dual_stack_server_on_both_families)
{
	wildcard_listener("::", "[::]", "46");
}

/* ---- bad input --------------------------------------------------------------------- */

/*
 * A hostile or broken client without the shim: MODE random | truncated | huge
 * | silent. Sends that, prints "connected", then waits (up to argv[3] s) for
 * the server to end the connection and prints how: "eof|reset|timeout BYTES
 * FIRSTBYTE SECONDS".
 */
static const char *raw_script =
    "import os, random, socket, ssl, sys, time\n"
    "mode, port, wait = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])\n"
    "def hello():\n"
    "    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n"
    "    ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE\n"
    "    i, o = ssl.MemoryBIO(), ssl.MemoryBIO()\n"
    "    t = ctx.wrap_bio(i, o, server_hostname='localhost')\n"
    "    try: t.do_handshake()\n"
    "    except ssl.SSLWantReadError: pass\n"
    "    return o.read()\n"
    "if mode == 'random':\n"
    "    data = bytearray(random.Random(4).randbytes(4096))\n"
    "    if data[0] == 0x16: data[0] = 0x17\n"
    "elif mode == 'truncated':\n"
    "    h = hello(); assert h[0] == 0x16 and len(h) > 100, h[:8]; data = h[:50]\n"
    "elif mode == 'huge':\n"
    "    data = bytes.fromhex('160301ffff') + b'\\x01' * 200\n"
    "elif mode == 'silent':\n"
    "    data = b''\n"
    "s = socket.create_connection(('127.0.0.1', port), timeout=wait)\n"
    "if data: s.sendall(bytes(data))\n"
    "print('connected', flush=True)\n"
    "t0 = time.monotonic(); got = b''; end = 'eof'\n"
    "try:\n"
    "    while True:\n"
    "        d = s.recv(4096)\n"
    "        if not d: break\n"
    "        got += d\n"
    "except ConnectionResetError: end = 'reset'\n"
    "except socket.timeout: end = 'timeout'\n"
    "print('%s %d 0x%02x %.1f' % (end, len(got), got[0] if got else 0, time.monotonic() - t0),\n"
    "      flush=True)\n";

static int raw_start(struct h_proc *p, const char *mode, int port, int wait_s)
{
	struct h_env e;
	int rc;

	h_env_init(&e);
	rc = h_spawn(p,
		     ARGV(PY, "-c", (char *)raw_script, (char *)mode, h_fmt("%d", port),
			  h_fmt("%d", wait_s)),
		     &e, NULL, 0);
	h_env_free(&e);
	cr_assert_eq(rc, 0, "expected the %s client to start", mode);
	return rc;
}

/* How the raw client's connection ended ("eof", "reset", "timeout") and after how long. */
static void raw_result(const struct h_proc *p, char *end, size_t endlen, double *secs,
		       unsigned *first, size_t *bytes)
{
	const char *l = strstr(p->out, "connected\n");

	end[0] = '\0';
	*secs = -1;
	*first = 0;
	*bytes = 0;
	if (l && sscanf(l + 10, "%15s %zu %x %lf", end, bytes, first, secs) != 4)
		end[0] = '\0';
	(void)endlen;
}

/*
 * MODE costs the server only that connection: it is ended (not left to the
 * client's own time-out) within LIMIT_S seconds, with at most a TLS alert
 * sent back; a line at LEVEL ("warn", "info") names REASON; the next real
 * client is served.
 */
static void check_bad_input(const char *mode, const char *level, const char *reason, double limit_s)
{
	int port = h_free_port();
	char end[16];
	char *warn;
	double secs;
	unsigned first;
	size_t bytes;
	struct h_proc p, *srv;
	int rc;

	srv = start_http(port, tls_rule(port, "tls", " handshake-timeout=2"), level);
	warn = h_fmt("tlsshim[%d]: %s: accept 127.0.0.1:%d from ", srv->pid, level, port);
	raw_start(&p, mode, port, 10);
	rc = h_wait(&p, CLIENT_MS);
	cr_expect_eq(rc, 0, "expected the %s client to exit 0, got %d:\n%s%s", mode, rc, p.out,
		     p.err);
	raw_result(&p, end, sizeof(end), &secs, &first, &bytes);
	cr_expect(strcmp(end, "eof") == 0 || strcmp(end, "reset") == 0,
		  "expected the server to end the %s connection (eof/reset), the client said:\n%s",
		  mode, p.out);
	cr_expect(secs >= 0 && secs <= limit_s,
		  "expected the %s connection ended within %.1f s, it took %.1f s", mode, limit_s,
		  secs);
	cr_expect(
	    bytes == 0 || first == 0x15,
	    "expected at most a TLS alert (0x15...) back for %s, got %zu bytes starting 0x%02x",
	    mode, bytes, first);
	h_proc_free(&p);
	cr_expect(wait_count(srv, warn, 1, 3000), "expected a %s line for %s, server stderr:\n%s",
		  level, mode, srv->err);
	{
		char *line = h_line_with(srv->err, warn);

		cr_expect(line && strstr(line, reason),
			  "expected the %s line for %s to say \"%s\", got: %s", level, mode, reason,
			  line ? line : "(none)");
		free(line);
	}
	cr_expect(!srv->reaped, "expected the server to survive %s, it exited:\n%s", mode,
		  srv->err);
	expect_served(port, NULL, h_fmt("after a %s client", mode));
	cr_expect(!strstr(srv->err, "\"GET /file HTTP/1.1\" 400"),
		  "expected no garbage to reach the server as a request, its stderr:\n%s",
		  srv->err);
}

Test(server_badinput, random_bytes_cost_only_that_connection)
{
	check_bad_input("random", "info", "not speaking TLS", 1.5);
}

Test(server_badinput, truncated_client_hello_is_timed_out)
{
	check_bad_input("truncated", "warn", "timed out", 5.0);
}

Test(server_badinput, huge_record_length_is_refused)
{
	check_bad_input("huge", "info", "not speaking TLS", 1.5);
}

/*
 * Clients that go away during the handshake: QUIET closes and QUIET resets
 * (SO_LINGER 0) without sending a byte, then PARTIAL that send half a
 * ClientHello and close. Prints "done".
 */
static const char *goaway_script =
    "import socket, ssl, struct, sys\n"
    "port, quiet, partial = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])\n"
    "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n"
    "ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE\n"
    "i, o = ssl.MemoryBIO(), ssl.MemoryBIO()\n"
    "t = ctx.wrap_bio(i, o, server_hostname='localhost')\n"
    "try: t.do_handshake()\n"
    "except ssl.SSLWantReadError: pass\n"
    "hello = o.read()\n"
    "for _ in range(quiet):\n"
    "    socket.create_connection(('127.0.0.1', port)).close()\n"
    "    s = socket.create_connection(('127.0.0.1', port))\n"
    "    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))\n"
    "    s.close()\n"
    "for _ in range(partial):\n"
    "    s = socket.create_connection(('127.0.0.1', port))\n"
    "    s.sendall(hello[:len(hello) // 2]); s.close()\n"
    "print('done', flush=True)\n";

static void goaway(int port, int quiet, int partial)
{
	struct h_proc p;
	int rc = run_client(&p, ARGV(PY, "-c", (char *)goaway_script, h_fmt("%d", port),
				     h_fmt("%d", quiet), h_fmt("%d", partial)));

	cr_assert(rc == 0 && strstr(p.out, "done"),
		  "expected the go-away client to finish, it exited %d:\n%s%s", rc, p.out, p.err);
	h_proc_free(&p);
}

/*
 * Load generators stopping, health checks and port scanners connect and go
 * away: at the default level that is not worth a line, and nothing else is.
 */
Test(server_badinput, clients_going_away_during_the_handshake_log_nothing_by_default)
{
	int port = h_free_port();
	struct h_proc *srv = start_http(port, tls_rule(port, "tls", NULL), NULL);

	goaway(port, 10, 5);
	/* served after the others: the threaded server has read (and failed) them all */
	expect_served(port, NULL, "after clients that went away");
	h_collect(srv, 500);
	cr_expect(!strstr(srv->err, "tlsshim["),
		  "expected no shim line at the default level for clients that went away, got:\n%s",
		  srv->err);
	cr_expect(!srv->reaped, "expected the server to keep running");
}

/* The same clients, at debug: each is accounted for, at its level. */
Test(server_badinput, clients_going_away_are_logged_at_debug_or_info)
{
	int port = h_free_port();
	struct h_proc *srv = start_http(port, tls_rule(port, "tls", NULL), "debug");
	char *from = h_fmt("tlsshim[%d]: debug: accept 127.0.0.1:%d from ", srv->pid, port);
	char *info = h_fmt("tlsshim[%d]: info: accept 127.0.0.1:%d from ", srv->pid, port);
	int silent, partial;

	goaway(port, 4, 3);
	expect_served(port, NULL, "after clients that went away");
	wait_count(srv, info, 3, 3000);
	silent = h_count(srv->err, "before sending anything") + h_count(srv->err, "reset by peer");
	partial = h_count(srv->err, info);
	cr_expect(silent >= 8 && strstr(srv->err, from),
		  "expected 8 debug lines for clients that closed or reset without a byte, got "
		  "%d:\n%s",
		  silent, srv->err);
	cr_expect_eq(partial, 3,
		     "expected 3 info lines for clients that sent half a ClientHello, got "
		     "%d:\n%s",
		     partial, srv->err);
	cr_expect(!strstr(srv->err, ": warn: "), "expected no warning, got:\n%s", srv->err);
}

/* Reads a request, waits for the client to go away, then writes (to stderr: how it went). */
static const char *write_after_eof_server =
    "import socket, sys\n"
    "l = socket.socket()\n"
    "l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "l.bind(('127.0.0.1', int(sys.argv[1]))); l.listen(8)\n"
    "for _ in range(3):\n"
    "    c, _a = l.accept()\n"
    "    while c.recv(1024): pass\n"
    "    try:\n"
    "        for _ in range(100): c.sendall(b'x' * 65536)\n"
    "        print('wrote everything', file=sys.stderr, flush=True)\n"
    "    except OSError as e:\n"
    "        print('write failed', e.errno, file=sys.stderr, flush=True)\n"
    "    c.close()\n";

static const char *hello_and_go_client =
    "import socket, ssl, sys\n"
    "ctx = ssl.create_default_context(cafile=sys.argv[2])\n"
    "for _ in range(3):\n"
    "    s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', int(sys.argv[1]))),\n"
    "                        server_hostname='localhost')\n"
    "    s.sendall(b'hello\\n')\n"
    "    s.close()\n"
    "print('done', flush=True)\n";

/*
 * A client that went away (FIN, no close_notify) while the program still
 * writes to it is routine (a load generator stopping, a closed browser tab):
 * the write fails as on the plain socket and the shim says so at info, not as
 * a warning.
 */
Test(server_badinput, writing_to_a_client_that_went_away_is_info_not_a_warning)
{
	int port = h_free_port();
	struct h_proc *srv =
	    start_server(ARGV(PY, "-c", (char *)write_after_eof_server, h_fmt("%d", port)), port,
			 tls_rule(port, "tls", NULL), "info");
	char *info = h_fmt("tlsshim[%d]: info: accept 127.0.0.1:%d from ", srv->pid, port);
	struct h_proc p;
	int rc = run_client(
	    &p, ARGV(PY, "-c", (char *)hello_and_go_client, h_fmt("%d", port), pki("ca.pem")));

	cr_assert(rc == 0 && strstr(p.out, "done"),
		  "expected the client to finish, it exited %d:\n%s%s", rc, p.out, p.err);
	h_proc_free(&p);
	cr_assert(wait_count(srv, "write failed", 3, 10000),
		  "expected the server's writes to fail 3 times, it said:\n%s", srv->err);
	h_collect(srv, 300);
	cr_expect(!strstr(srv->err, ": warn: "), "expected no warning, got:\n%s", srv->err);
	/* At info and not at warn: each failed write is said once, at info. */
	cr_expect_geq(h_count(srv->err, info), 3, "expected info lines, got:\n%s", srv->err);
	cr_expect_eq(h_count(srv->err, "write: the peer closed the connection"), 3,
		     "expected a line for each write to a client that went away, got:\n%s",
		     srv->err);
}

/*
 * Silent clients must not hold up others: with SILENT of them connected and
 * saying nothing, real clients (CHECK) are served at once; then each silent
 * one is freed by handshake-timeout.
 */
static void check_silent(struct h_proc *srv, int port, int timeout_s, void (*check)(int port))
{
	enum { SILENT = 3 };
	struct h_proc quiet[SILENT];
	long long t0;
	char *warn = h_fmt("tlsshim[%d]: warn: accept 127.0.0.1:%d from ", srv->pid, port);

	for (int i = 0; i < SILENT; i++) {
		raw_start(&quiet[i], "silent", port, timeout_s + 8);
		cr_assert_eq(h_wait_output(&quiet[i], "connected", 5000), 0,
			     "expected silent client %d to connect, it said:\n%s%s", i,
			     quiet[i].out, quiet[i].err);
	}
	t0 = now_ms();
	check(port);
	for (int i = 0; i < SILENT; i++) {
		h_collect(&quiet[i], 0);
		cr_expect(!strstr(quiet[i].out, "eof") && !strstr(quiet[i].out, "reset"),
			  "expected silent client %d still connected while the real client was "
			  "served (%lld ms) - was it freed early? it said:\n%s",
			  i, now_ms() - t0, quiet[i].out);
	}
	for (int i = 0; i < SILENT; i++) {
		char end[16];
		double secs;
		unsigned first;
		size_t bytes;
		int rc = h_wait(&quiet[i], (timeout_s + 10) * 1000);

		raw_result(&quiet[i], end, sizeof(end), &secs, &first, &bytes);
		cr_expect(rc == 0 && (strcmp(end, "eof") == 0 || strcmp(end, "reset") == 0),
			  "expected silent client %d freed by handshake-timeout=%d, it exited %d "
			  "saying:\n%s%s",
			  i, timeout_s, rc, quiet[i].out, quiet[i].err);
		cr_expect(secs <= timeout_s + 4.0,
			  "expected silent client %d freed within %d+4 s, it took %.1f s", i,
			  timeout_s, secs);
		h_proc_free(&quiet[i]);
	}
	cr_expect(wait_count(srv, warn, SILENT, 3000),
		  "expected %d warn lines (one per silent client), server stderr:\n%s", SILENT,
		  srv->err);
	{
		char *line = h_line_with(srv->err, warn);

		cr_expect(line && strstr(line, "timed out"),
			  "expected the warn line to say the handshake timed out, got: %s",
			  line ? line : "(none)");
		free(line);
	}
	cr_expect(!srv->reaped, "expected the server to keep running");
	check(port);
}

static void http_check(int port)
{
	expect_served(port, NULL, "while silent clients are connected");
}

static void redis_check(int port)
{
	struct h_proc p;
	int rc = redis_cli(&p, port, "PING", NULL, NULL);

	cr_expect_eq(rc, 0,
		     "expected redis-cli --tls PING to exit 0 while silent clients are "
		     "connected, got %d:\n%s",
		     rc, p.err);
	cr_expect_str_eq(p.out, "PONG\n", "expected PONG, got \"%s\"", p.out);
	h_proc_free(&p);
}

Test(server_badinput, silent_clients_do_not_hold_up_a_threaded_server)
{
	int port = h_free_port();
	struct h_proc *srv = start_http(port, tls_rule(port, "tls", " handshake-timeout=3"), NULL);

	check_silent(srv, port, 3, http_check);
}

Test(server_badinput, silent_clients_do_not_hold_up_an_event_loop_server)
{
	int port = h_free_port();
	struct h_proc *srv = start_redis(port, tls_rule(port, "tls", " handshake-timeout=3"));

	check_silent(srv, port, 3, redis_check);
}

Test(server_badinput, garbage_to_redis_costs_only_that_connection)
{
	int port = h_free_port();
	struct h_proc p, *srv;

	srv = start_redis(port, tls_rule(port, "tls", " handshake-timeout=2"));
	raw_start(&p, "random", port, 10);
	h_wait(&p, CLIENT_MS);
	cr_expect(strstr(p.out, "connected\neof") || strstr(p.out, "connected\nreset"),
		  "expected redis under the shim to end a garbage connection, client said:\n%s%s",
		  p.out, p.err);
	h_proc_free(&p);
	raw_start(&p, "huge", port, 10);
	h_wait(&p, CLIENT_MS);
	cr_expect(
	    strstr(p.out, "connected\neof") || strstr(p.out, "connected\nreset"),
	    "expected redis under the shim to end a huge-record connection, client said:\n%s%s",
	    p.out, p.err);
	h_proc_free(&p);
	cr_expect(!srv->reaped, "expected redis to keep running, it said:\n%s", srv->err);
	redis_check(port);
}

/* ---- certificate rotation ---------------------------------------------------------- */

static char *hex(const unsigned char *md, unsigned len)
{
	char *s = malloc(2 * len + 1);

	for (unsigned i = 0; i < len; i++)
		sprintf(s + 2 * i, "%02x", md[i]);
	return s;
}

static char *x509_fp(X509 *x)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned len = 0;

	X509_digest(x, EVP_sha256(), md, &len);
	return hex(md, len);
}

/* SHA-256 fingerprint of the first certificate in the PEM file PATH, or NULL. */
static char *file_fp(const char *path)
{
	FILE *f = fopen(path, "r");
	X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	char *fp;

	if (f)
		fclose(f);
	if (!x)
		return NULL;
	fp = x509_fp(x);
	X509_free(x);
	return fp;
}

/* The server certificate openssl s_client sees on PORT (its fingerprint), or NULL. */
static char *served_fp(int port)
{
	struct h_proc p;
	char *fp = NULL;
	const char *b;

	run_client(&p, ARGV("openssl", "s_client", "-connect", h_fmt("127.0.0.1:%d", port),
			    "-servername", "localhost", "-CAfile", pki("ca.pem")));
	b = strstr(p.out, "-----BEGIN CERTIFICATE-----");
	if (b) {
		BIO *bio = BIO_new_mem_buf(b, -1);
		X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);

		if (x)
			fp = x509_fp(x);
		X509_free(x);
		BIO_free(bio);
	}
	h_proc_free(&p);
	return fp;
}

/* Makes DIR/NAME.pem + DIR/NAME.key: a new key, a new serial, signed by the test CA. */
static void make_cert(const char *dir, const char *name)
{
	char *script =
	    h_fmt("set -e; cd '%s'\n"
		  "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out %s.key\n"
		  "openssl req -new -key %s.key -subj /CN=localhost -out %s.csr\n"
		  "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > %s.ext\n"
		  "openssl x509 -req -in %s.csr -CA '%s' -CAkey '%s' -set_serial 0x$(openssl rand "
		  "-hex 8) -days 30 -extfile %s.ext -out %s.pem\n",
		  dir, name, name, name, name, name, pki("ca.pem"), pki("ca.key"), name, name);
	struct h_proc p;
	int rc = run_client(&p, ARGV("/bin/sh", "-c", script));

	cr_assert_eq(rc, 0, "expected to make certificate %s, openssl said:\n%s%s", name, p.out,
		     p.err);
	h_proc_free(&p);
}

static void copy_file(const char *from, const char *to)
{
	size_t len;
	char *data = h_read_file(from, &len);

	cr_assert_not_null(data, "expected to read %s", from);
	cr_assert_eq(h_write_file(to, data, len), 0, "expected to write %s", to);
	free(data);
}

/* The shim looks at the files at most once a second. */
#define RECHECK_US 1300000

Test(server_rotation, next_client_sees_the_renamed_in_certificate)
{
	int port = h_free_port();
	const char *dir = h_tmpdir();
	char *cert = h_fmt("%s/cert.pem", dir), *key = h_fmt("%s/cert.key", dir);
	char *old_fp, *new_fp, *got;
	struct h_proc *srv;

	copy_file(pki("server.pem"), cert);
	copy_file(pki("server.key"), key);
	make_cert(dir, "new");
	old_fp = file_fp(cert);
	new_fp = file_fp(h_fmt("%s/new.pem", dir));
	cr_assert(old_fp && new_fp && strcmp(old_fp, new_fp) != 0,
		  "expected two different certificates");
	srv = start_http(port, h_fmt("accept 127.0.0.1:%d tls cert=%s key=%s", port, cert, key),
			 "info");
	got = served_fp(port);
	cr_expect(got && strcmp(got, old_fp) == 0,
		  "expected the original certificate %s before rotation, got %s", old_fp,
		  got ? got : "(none)");
	expect_served(port, NULL, "before rotation");

	/* The way rotation tools do it: write to temporary names, rename over. */
	copy_file(h_fmt("%s/new.key", dir), h_fmt("%s/.cert.key.tmp", dir));
	copy_file(h_fmt("%s/new.pem", dir), h_fmt("%s/.cert.pem.tmp", dir));
	cr_assert_eq(rename(h_fmt("%s/.cert.key.tmp", dir), key), 0, "rename key");
	cr_assert_eq(rename(h_fmt("%s/.cert.pem.tmp", dir), cert), 0, "rename cert");
	usleep(RECHECK_US);

	got = served_fp(port);
	cr_expect(got && strcmp(got, new_fp) == 0,
		  "expected the new certificate %s after rotation, got %s (old %s); server "
		  "stderr:\n%s",
		  new_fp, got ? got : "(none)", old_fp, srv->err);
	expect_served(port, NULL, "after rotation");
	h_collect(srv, 0);
	cr_expect(strstr(srv->err, "certificates reloaded"),
		  "expected an info line saying the certificates were reloaded, stderr:\n%s",
		  srv->err);
	cr_expect(!srv->reaped, "expected the server to keep running");
}

Test(server_rotation, half_written_certificate_keeps_the_old_one)
{
	int port = h_free_port();
	const char *dir = h_tmpdir();
	char *cert = h_fmt("%s/cert.pem", dir), *key = h_fmt("%s/cert.key", dir);
	char *old_fp, *got, *pem, *warn;
	size_t len;
	struct h_proc *srv;

	copy_file(pki("server.pem"), cert);
	copy_file(pki("server.key"), key);
	make_cert(dir, "new");
	old_fp = file_fp(cert);
	srv = start_http(port, h_fmt("accept 127.0.0.1:%d tls cert=%s key=%s", port, cert, key),
			 NULL);
	expect_served(port, NULL, "before the bad write");

	/* A writer caught half way: the new certificate's first half, in place. */
	pem = h_read_file(h_fmt("%s/new.pem", dir), &len);
	cr_assert_not_null(pem, "expected new.pem");
	cr_assert_eq(h_write_file(cert, pem, len / 2), 0, "expected to truncate %s", cert);
	free(pem);
	usleep(RECHECK_US);

	got = served_fp(port);
	cr_expect(got && strcmp(got, old_fp) == 0,
		  "expected the old certificate %s while the file is half written, got %s", old_fp,
		  got ? got : "(none)");
	expect_served(port, NULL, "with a half-written certificate file");
	warn = h_fmt("tlsshim[%d]: warn: ", srv->pid);
	cr_expect(wait_count(srv, warn, 1, 2000),
		  "expected a warn line about the half-written file, stderr:\n%s", srv->err);
	{
		char *line = h_line_with(srv->err, warn);

		cr_expect(line && strstr(line, "keeping the previous certificates"),
			  "expected the warning to say the old certificates are kept, got: %s",
			  line ? line : "(none)");
		free(line);
	}
	cr_expect(!srv->reaped, "expected the server to keep running");
}

/* ---- options: min-version, alpn, resumption ---------------------------------------- */

static int s_client(struct h_proc *p, int port, const char *o1, const char *o2, const char *o3,
		    const char *o4)
{
	char *argv[16];
	int n = 0;

	argv[n++] = "openssl";
	argv[n++] = "s_client";
	argv[n++] = "-connect";
	argv[n++] = h_fmt("127.0.0.1:%d", port);
	argv[n++] = "-servername";
	argv[n++] = "localhost";
	argv[n++] = "-CAfile";
	argv[n++] = pki("ca.pem");
	argv[n++] = "-verify_return_error";
	/* Send a request and read until the server closes: the ticket arrives on the way. */
	argv[n++] = "-ign_eof";
	if (o1)
		argv[n++] = (char *)o1;
	if (o2)
		argv[n++] = (char *)o2;
	if (o3)
		argv[n++] = (char *)o3;
	if (o4)
		argv[n++] = (char *)o4;
	argv[n] = NULL;
	return run_client_in(p, argv, "GET /file HTTP/1.0\r\n\r\n", S_CLIENT_MS);
}

/*
 * What s_client said that matters here (a new string): its session lines, the
 * HTTP status line, the exit code, and its stderr. Its stdout also holds the
 * certificate and the 20000-byte file, too long for a message.
 */
static char *s_summary(const struct h_proc *p)
{
	static const char *const keep[] = {"CONNECTED",          "New,", "Reused,",
					   "Verify return code", "ALPN", "    Protocol",
					   "HTTP/1.0 ",          "DONE", NULL};
	size_t cap = 4096, len = 0;
	char *out = malloc(cap);
	const char *l = p->out;

	out[0] = '\0';
	while (l && *l) {
		const char *end = strchr(l, '\n');
		size_t n = end ? (size_t)(end - l) : strlen(l);

		for (int i = 0; keep[i]; i++) {
			if (strncmp(l, keep[i], strlen(keep[i])) == 0 && len + n + 2 < cap) {
				memcpy(out + len, l, n);
				len += n;
				out[len++] = '\n';
				out[len] = '\0';
				break;
			}
		}
		l = end ? end + 1 : NULL;
	}
	snprintf(out + len, cap - len, "(%zu bytes of stdout, exit status %d)\nstderr:\n%.2000s",
		 p->out_len, p->reaped ? p->status : -1, p->err);
	return out;
}

Test(server_options, min_version_1_3_refuses_a_tls_1_2_client)
{
	int port = h_free_port();
	struct h_proc p, *srv;
	int rc;

	srv = start_http(port, tls_rule(port, "tls", " min-version=1.3"), NULL);
	rc = s_client(&p, port, "-tls1_2", NULL, NULL, NULL);
	cr_expect_neq(rc, 0, "expected a TLS 1.2-only s_client to be refused, it exited 0:\n%s",
		      s_summary(&p));
	cr_expect(!strstr(p.out, "tlsshim server e2e"), "expected no file over TLS 1.2");
	h_proc_free(&p);
	cr_expect(wait_count(srv, h_fmt("tlsshim[%d]: warn: accept 127.0.0.1:%d", srv->pid, port),
			     1, 3000),
		  "expected a warn line for the TLS 1.2 client, server stderr:\n%s", srv->err);
	cr_expect(strstr(srv->err, "unsupported protocol version"),
		  "expected the warn line to say \"unsupported protocol version\", server "
		  "stderr:\n%s",
		  srv->err);
	rc = s_client(&p, port, "-tls1_3", NULL, NULL, NULL);
	cr_expect_eq(rc, 0, "expected a TLS 1.3 s_client to get in, it exited %d:\n%s", rc, p.err);
	cr_expect(strstr(p.out, "TLSv1.3") && strstr(p.out, "tlsshim server e2e line 00000"),
		  "expected a TLS 1.3 session and the file, got:\n%s", s_summary(&p));
	h_proc_free(&p);
}

Test(server_options, default_min_version_refuses_tls_1_1)
{
	int port = h_free_port();
	struct h_proc p;
	int rc;

	start_http(port, tls_rule(port, "tls", NULL), NULL);
	rc = s_client(&p, port, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0", NULL);
	cr_expect_neq(rc, 0, "expected a TLS 1.1 s_client to be refused, it exited 0:\n%s",
		      s_summary(&p));
	cr_expect(!strstr(p.out, "tlsshim server e2e"), "expected no file over TLS 1.1");
	h_proc_free(&p);
	rc = s_client(&p, port, "-tls1_2", NULL, NULL, NULL);
	cr_expect_eq(rc, 0, "expected a TLS 1.2 s_client to get in by default, it exited %d:\n%s",
		     rc, p.err);
	cr_expect(strstr(p.out, "TLSv1.2"), "expected a TLS 1.2 session, got:\n%s", s_summary(&p));
	h_proc_free(&p);
}

Test(server_options, alpn_negotiates_the_clients_choice_from_the_list)
{
	int port = h_free_port();
	struct h_proc p;
	int rc;

	start_http(port, tls_rule(port, "tls", " alpn=h2,http/1.1"), NULL);
	rc = s_client(&p, port, "-alpn", "http/1.1", NULL, NULL);
	cr_expect_eq(rc, 0, "expected s_client -alpn http/1.1 to exit 0, got %d:\n%s", rc, p.err);
	cr_expect(strstr(p.out, "ALPN protocol: http/1.1"),
		  "expected \"ALPN protocol: http/1.1\", got:\n%s", s_summary(&p));
	h_proc_free(&p);
	rc = s_client(&p, port, "-alpn", "h2,http/1.1", NULL, NULL);
	cr_expect_eq(rc, 0, "expected s_client -alpn h2,http/1.1 to exit 0, got %d:\n%s", rc,
		     p.err);
	cr_expect(strstr(p.out, "ALPN protocol: h2"),
		  "expected the server's first choice \"ALPN protocol: h2\", got:\n%s",
		  s_summary(&p));
	h_proc_free(&p);
}

static void check_resumption(const char *version)
{
	int port = h_free_port();
	char *sess = h_fmt("%s/session.pem", h_tmpdir());
	struct h_proc p;
	int rc;

	start_http(port, tls_rule(port, "tls", NULL), NULL);
	rc = s_client(&p, port, version, "-sess_out", sess, NULL);
	cr_expect_eq(rc, 0, "expected the first s_client %s to exit 0, got %d:\n%s", version, rc,
		     p.err);
	cr_expect(strstr(p.out, "New, TLSv1"), "expected a new session first, got:\n%s",
		  s_summary(&p));
	/* As a server with its own TLS (OpenSSL's default): two tickets, then one a resumption. */
	if (strcmp(version, "-tls1_3") == 0)
		cr_expect_eq(h_count(p.out, "New Session Ticket arrived"), 2,
			     "expected two tickets after a full handshake, got %d",
			     h_count(p.out, "New Session Ticket arrived"));
	h_proc_free(&p);
	cr_assert_eq(access(sess, R_OK), 0, "expected s_client to save a session in %s", sess);
	rc = s_client(&p, port, version, "-sess_in", sess, NULL);
	cr_expect_eq(rc, 0, "expected the second s_client %s to exit 0, got %d:\n%s", version, rc,
		     p.err);
	cr_expect(strstr(p.out, "Reused, TLSv1"),
		  "expected the second connection (%s) to resume (\"Reused\"), got:\n%s", version,
		  s_summary(&p));
	cr_expect(strstr(p.out, "tlsshim server e2e line 00000"),
		  "expected the file on the resumed connection, got:\n%s", s_summary(&p));
	if (strcmp(version, "-tls1_3") == 0)
		cr_expect_eq(h_count(p.out, "New Session Ticket arrived"), 1,
			     "expected one ticket (a replacement) after a resumption, got %d",
			     h_count(p.out, "New Session Ticket arrived"));
	h_proc_free(&p);
}

Test(server_options, resumes_tls_1_3_sessions_with_tickets)
{
	check_resumption("-tls1_3");
}

Test(server_options, resumes_tls_1_2_sessions_with_tickets)
{
	check_resumption("-tls1_2");
}

Test(server_options, serves_a_chain_through_an_intermediate)
{
	int port = h_free_port();
	struct h_proc p;
	int rc;

	start_http(port,
		   h_fmt("accept 127.0.0.1:%d tls cert=%s key=%s", port, pki("server-chain.pem"),
			 pki("server.key")),
		   NULL);
	rc = s_client(&p, port, "-showcerts", NULL, NULL, NULL);
	cr_expect_eq(rc, 0,
		     "expected s_client to verify leaf+intermediate against the CA, got "
		     "%d:\n%s",
		     rc, p.err);
	cr_expect(h_count(p.out, "-----BEGIN CERTIFICATE-----") == 2,
		  "expected 2 certificates (leaf and intermediate) sent, got:\n%.3000s", p.out);
	cr_expect(strstr(p.out, "Verify return code: 0 (ok)"), "expected verification ok");
	h_proc_free(&p);
}

/* ---- a peer whose every record needs a reply ------------------------------------- */

/* CPU seconds (user + system) and resident KB of process PID, from /proc. */
static void proc_usage(pid_t pid, double *cpu_s, long *rss_kb)
{
	char *stat = h_read_file(h_fmt("/proc/%d/stat", (int)pid), NULL);
	char *status = h_read_file(h_fmt("/proc/%d/status", (int)pid), NULL);
	unsigned long ut = 0, st = 0;
	const char *p;

	cr_assert(stat && status, "expected to read /proc/%d", (int)pid);
	/* Fields after the command name "(...)": state is field 3, utime 14, stime 15. */
	p = strrchr(stat, ')');
	cr_assert(p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
			      &st) == 2,
		  "expected to parse /proc/%d/stat: %s", (int)pid, stat);
	*cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
	p = strstr(status, "VmRSS:");
	*rss_kb = p ? atol(p + 6) : 0;
	free(stat);
	free(status);
}

/*
 * A TLS 1.3 client that floods KeyUpdate requests for 10 s and never reads
 * (tests/progs/keyupdate_flood) costs the server bounded CPU and memory: the
 * shim stops reading from it once a few records of replies wait to be sent,
 * as the kernel stops acknowledging a peer that does not drain. Meanwhile
 * another client (CHECK) is served each second.
 */
static void check_keyupdate_flood(struct h_proc *srv, int port, void (*check)(int port),
				  const char *data_every)
{
	struct h_proc flood;
	struct h_env e;
	double cpu0, cpu1;
	long rss0, rss1;
	int rc;

	check(port); /* the engine loaded, first handshake done: the baseline */
	proc_usage(srv->pid, &cpu0, &rss0);
	h_env_init(&e);
	cr_assert_eq(h_spawn(&flood,
			     ARGV((char *)h_prog("keyupdate_flood"), "10", h_fmt("%d", port),
				  pki("ca.pem"), (char *)data_every),
			     &e, NULL, 0),
		     0, "expected keyupdate_flood to start");
	h_env_free(&e);
	cr_assert_eq(h_wait_output(&flood, "handshake ok", 10000), 0,
		     "expected the flooding client to complete its handshake, it said:\n%s%s",
		     flood.out, flood.err);
	for (int i = 0; i < 8; i++) {
		sleep(1);
		check(port);
	}
	rc = h_wait(&flood, 30000);
	cr_expect_eq(rc, 0, "expected keyupdate_flood to finish, it exited %d:\n%s%s", rc,
		     flood.out, flood.err);
	proc_usage(srv->pid, &cpu1, &rss1);
	cr_expect(cpu1 - cpu0 < 2.0,
		  "expected the server to spend under 2 s of CPU on a 10 s KeyUpdate flood, it "
		  "spent %.2f s (flooder: %s)",
		  cpu1 - cpu0, flood.out);
	cr_expect(rss1 - rss0 < 64 * 1024,
		  "expected the server's RSS to grow by under 64 MB, it grew %ld KB (flooder: %s)",
		  rss1 - rss0, flood.out);
	cr_expect(!srv->reaped, "expected the server to keep running, it said:\n%s", srv->err);
	cr_expect(wait_count(srv, "(a key update flood)", 1, 3000),
		  "expected a log line ending the flooding connection, server stderr:\n%s",
		  srv->err);
	h_proc_free(&flood);
}

static void http_check_flood(int port)
{
	expect_served(port, NULL, "during a KeyUpdate flood");
}

static void redis_check_flood(int port)
{
	struct h_proc p;
	int rc = redis_cli(&p, port, "PING", NULL, NULL);

	cr_expect_eq(rc, 0,
		     "expected redis-cli --tls PING to exit 0 during a KeyUpdate flood, "
		     "got %d:\n%s",
		     rc, p.err);
	cr_expect_str_eq(p.out, "PONG\n", "expected PONG, got \"%s\"", p.out);
	h_proc_free(&p);
}

/* A shimmed client of the recorder (started with -r pong) gets its reply. */
static void recorder_check_flood(int port)
{
	struct h_proc p;
	struct h_env e;
	int rc;

	h_env_init(&e);
	h_env_preload(&e);
	h_env_set(&e, "TLSSHIM_POLICY", "connect 127.0.0.1:%d tls ca=%s", port, pki("ca.pem"));
	rc = h_run(&p, ARGV((char *)h_prog("tcpcat"), "-h", "127.0.0.1", h_fmt("%d", port), "ping"),
		   &e, CLIENT_MS);
	h_env_free(&e);
	cr_expect(rc == 0 && strcmp(p.out, "pong\n") == 0,
		  "expected a TLS client to get \"pong\" during a KeyUpdate flood, it exited %d "
		  "with \"%s\":\n%s",
		  rc, p.out, p.err);
	h_proc_free(&p);
}

Test(server_badinput, keyupdate_flood_is_bounded_in_a_threaded_server, .timeout = 90)
{
	int port = h_free_port();
	struct h_proc *srv = start_http(port, tls_rule(port, "tls", NULL), NULL);

	check_keyupdate_flood(srv, port, http_check_flood, NULL);
}

Test(server_badinput, keyupdate_flood_is_bounded_in_an_event_loop_server, .timeout = 90)
{
	int port = h_free_port();
	struct h_proc *srv = start_redis(port, tls_rule(port, "tls", NULL));

	check_keyupdate_flood(srv, port, redis_check_flood, NULL);
}

/* The flood with a byte of data after every 8 key updates, to a server that reads it all. */
Test(server_badinput, keyupdate_flood_with_some_data_is_bounded, .timeout = 90)
{
	int port = h_free_port();
	const char *file = h_fmt("%s/recorded", h_tmpdir());
	struct h_proc *srv;

	srv = start_server(
	    ARGV((char *)h_prog("recorder"), "-r", "pong\\n", h_fmt("%d", port), (char *)file),
	    port, tls_rule(port, "tls", NULL), NULL);
	check_keyupdate_flood(srv, port, recorder_check_flood, "8");
}

/* ---- one record where the program meant one message ----------------------------- */

/*
 * A TLS client (python3, ssl.MemoryBIO, so it sees the ciphertext) that sends
 * "go\n" twice and reads TOTAL bytes back each time; for the second answer
 * (the first carries the session tickets) it prints how many application-data
 * records it took: "records N bytes M".
 */
static const char *records_script =
    "import socket, ssl, sys\n"
    "port, ca, total = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])\n"
    "ctx = ssl.create_default_context(cafile=ca)\n"
    "s = socket.create_connection(('127.0.0.1', port), timeout=10)\n"
    "inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()\n"
    "t = ctx.wrap_bio(inc, out, server_hostname='localhost')\n"
    "raw = bytearray()\n"
    "def push():\n"
    "    d = out.read()\n"
    "    if d: s.sendall(d)\n"
    "def feed():\n"
    "    d = s.recv(65536)\n"
    "    if not d: sys.exit('eof after %d raw bytes' % len(raw))\n"
    "    raw.extend(d); inc.write(d)\n"
    "while True:\n"
    "    try: t.do_handshake(); break\n"
    "    except ssl.SSLWantReadError: push(); feed()\n"
    "push()\n"
    "def exchange():\n"
    "    t.write(b'go\\n'); push(); del raw[:]\n"
    "    got = b''\n"
    "    while len(got) < total:\n"
    "        try: got += t.read(65536)\n"
    "        except ssl.SSLWantReadError: feed()\n"
    "    n, i = 0, 0\n"
    "    while i + 5 <= len(raw):\n"
    "        n += raw[i] == 0x17; i += 5 + int.from_bytes(raw[i + 3:i + 5], 'big')\n"
    "    return n, len(got)\n"
    "exchange()\n"
    "print('records %d bytes %d' % exchange(), flush=True)\n";

/* corkserve MODE under the shim with a BODY-byte body: the records of one answer. */
static int answer_records(const char *mode, int body, char **server_out)
{
	int port = h_free_port(), rc, n = -1, got = -1;
	struct h_proc p, *srv;

	srv = start_server(
	    ARGV((char *)h_prog("corkserve"), h_fmt("%d", port), (char *)mode, h_fmt("%d", body)),
	    port, tls_rule(port, "tls", NULL), NULL);
	rc = run_client(&p, ARGV(PY, "-c", (char *)records_script, h_fmt("%d", port), pki("ca.pem"),
				 h_fmt("%d", 100 + body)));
	cr_assert(rc == 0 && sscanf(p.out, "records %d bytes %d", &n, &got) == 2,
		  "expected the %s answers to arrive, the client exited %d:\n%s%s", mode, rc, p.out,
		  p.err);
	cr_assert_eq(got, 100 + body, "expected %d bytes from %s, got %d", 100 + body, mode, got);
	h_proc_free(&p);
	h_wait(srv, 5000);
	if (server_out)
		*server_out = strdup(srv->out);
	cr_expect(!strstr(srv->err, "tlsshim["), "expected no shim line, got:\n%s", srv->err);
	return n;
}

Test(server_records, cork_header_then_sendfile_is_one_record)
{
	char *out = NULL;
	int n = answer_records("cork", 1000, &out);

	cr_expect_eq(n, 1, "expected header + sendfile() under TCP_CORK in one record, got %d", n);
	cr_expect(out && strstr(out, "cork=1"),
		  "expected getsockopt(TCP_CORK) to read back 1 as set, the server said: %s",
		  out ? out : "");
	free(out);
}

Test(server_records, msg_more_then_write_is_one_record)
{
	int n = answer_records("more", 1000, NULL);

	cr_expect_eq(n, 1, "expected send(MSG_MORE) + write in one record, got %d", n);
}

Test(server_records, writev_up_to_a_record_is_one_record)
{
	int n = answer_records("writev", 6000, NULL);

	cr_expect_eq(n, 1, "expected a 6100-byte writev in one record, got %d", n);
}

Test(server_records, separate_writes_stay_separate_records)
{
	int n = answer_records("plain", 1000, NULL);

	cr_expect_eq(n, 2, "expected two writes without a hint as two records, got %d", n);
}

Test(server_records, corked_answer_larger_than_a_record_fills_records)
{
	int n = answer_records("cork", 40000, NULL);

	cr_expect_eq(n, 3, "expected 40100 bytes under TCP_CORK as 3 records (16 KB each), got %d",
		     n);
}

/* A program that corks, writes and waits for the next request without uncorking. */
Test(server_records, cork_left_on_is_sent_when_the_program_waits)
{
	int n = answer_records("corkwait", 1000, NULL);

	cr_expect_eq(n, 1, "expected the corked answer in one record, got %d", n);
}
