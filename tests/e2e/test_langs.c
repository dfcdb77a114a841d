/*
 * test_langs.c - ordinary programs of other runtimes under the shim: Java
 * (openjdk 17, single-file source launch), Ruby, Perl and node, each
 *   - as an HTTP/1.1 client (its standard one, keep-alive) under a `connect`
 *     rule, against a real TLS server (python's ssl, tests/progs/langs_https.py):
 *     a 200 KB response, a 200 KB body echoed back, another response, every
 *     body checked by its SHA-256, and how many connections carried them;
 *     and with a name the certificate does not carry: nothing reaches the server;
 *   - as a server under an `accept` rule, in its usual model (Java's HttpServer
 *     on its dispatcher thread and with a thread pool, a java.nio selector echo,
 *     a Ruby thread per client, a Perl fork per client, node's http server and
 *     its cluster workers), served to curl (verified, keep-alive, parallel,
 *     200 KB both ways) or python's ssl; a cleartext client is refused and the
 *     program never reads its bytes.
 * The programs are tests/progs/langs_*. Every program gets an explicit
 * environment; the shim is never loaded into this binary.
 */
#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "e2e/harness.h"

#define PY        "/usr/bin/python3"
#define JAVA      "/usr/bin/java"
#define RUBY      "/usr/bin/ruby"
#define PERL      "/usr/bin/perl"
#define NODE      "/usr/bin/node"
#define BODY_LEN  204800 /* 13 full TLS records and more, each way */
#define START_MS  60000  /* a JVM compiling its source on a busy machine */
#define CLIENT_MS 60000  /* every client run is bounded by this */

TestSuite(langs, .fini = h_teardown, .timeout = 240);

/* ---- helpers ----------------------------------------------------------------------- */

static const char *body_path;
static char *body;
static char body_sha[2 * EVP_MAX_MD_SIZE + 1];

/* The body every program sends and serves: BODY_LEN pseudo-random bytes, and its SHA-256. */
static void make_body(void)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	unsigned int x = 2463534242u;

	if (body_path)
		return;
	body = malloc(BODY_LEN);
	cr_assert(body, "out of memory");
	for (size_t i = 0; i < BODY_LEN; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		body[i] = (char)(x >> 24);
	}
	body_path = h_fmt("%s/body", h_tmpdir());
	cr_assert_eq(h_write_file(body_path, body, BODY_LEN), 0, "expected to write %s", body_path);
	EVP_Digest(body, BODY_LEN, md, &mdlen, EVP_sha256(), NULL);
	for (unsigned int i = 0; i < mdlen; i++)
		snprintf(body_sha + 2 * i, 3, "%02x", md[i]);
}

static void need(const char *bin, const char *package)
{
	if (access(bin, X_OK) != 0)
		cr_skip_test("%s is not installed (Debian %s)", bin, package);
}

static char *prog(const char *name)
{
	return h_fmt("%s/tests/progs/%s", h_src(), name);
}

static const char *out_of(const struct h_proc *p)
{
	return p->out ? p->out : "";
}

static const char *err_of(const struct h_proc *p)
{
	return p->err ? p->err : "";
}

/* The environment of a program under the shim with POLICY. */
static void shim_env(struct h_env *e, const char *policy)
{
	h_env_shim(e, policy);
	h_env_set(e, "TLSSHIM_LOG", "warn");
}

/*
 * Starts ARGV (under the shim with POLICY, or plain when POLICY is NULL) and
 * waits up to START_MS until it prints READY. Stopped by h_teardown().
 */
static struct h_proc *start(char *const argv[], const char *policy)
{
	struct h_proc *p = h_proc_slot();
	struct h_env env;

	if (policy)
		shim_env(&env, policy);
	else
		h_env_init(&env);
	cr_assert_eq(h_spawn(p, argv, &env, NULL, 0), 0, "expected %s to start", argv[0]);
	h_env_free(&env);
	if (h_wait_output(p, "READY", START_MS) != 0) {
		h_kill(p);
		cr_assert_fail("expected %s %s to print READY%s%s; it exited %d saying:\n%s%s",
			       argv[0], argv[1], policy ? " under " : "", policy ? policy : "",
			       WEXITSTATUS(p->status), out_of(p), err_of(p));
	}
	return p;
}

static const char *accept_rule(int port)
{
	return h_fmt("accept 127.0.0.1:%d tls cert=%s key=%s", port, pki("server.pem"),
		     pki("server.key"));
}

static const char *connect_rule(int port, const char *name)
{
	return h_fmt("connect 127.0.0.1:%d tls ca=%s name=%s", port, pki("ca.pem"), name);
}

/* ---- clients under a connect rule -------------------------------------------------- */

/* The real TLS server (python's ssl, not under the shim) on PORT. */
static struct h_proc *start_https(int port)
{
	make_body();
	return start(ARGV(PY, prog("langs_https.py"), h_fmt("%d", port), (char *)body_path,
			  pki("server.pem"), pki("server.key")),
		     NULL);
}

/*
 * Runs a client program (ARGV, then PORT and the body file are appended by the
 * caller) under a connect rule for PORT. Each of LABELS ("" or "CLIENT ") did
 * GET /big, POST /echo, GET /big and must print for each "RESP LABEL N 200
 * BODY_LEN SHA", every body being BODY_LEN bytes with the body's hash; the
 * server (SRV) must have seen CONNS more connections (keep-alive: one per
 * client) and three more requests per client.
 */
static void expect_client(const char *what, char *const argv[], int port, struct h_proc *srv,
			  const char *const labels[], int nlabels, int conns)
{
	const char *post = h_fmt("REQ POST /echo %d\n", BODY_LEN);
	const char *get = h_fmt("REQ GET /big %d\n", BODY_LEN);
	int conns0, posts0, gets0;
	struct h_env env;
	struct h_proc p;
	int rc;

	h_collect(srv, 0);
	conns0 = h_count(out_of(srv), "CONN\n");
	posts0 = h_count(out_of(srv), post);
	gets0 = h_count(out_of(srv), get);
	shim_env(&env, connect_rule(port, "localhost"));
	rc = h_run(&p, argv, &env, CLIENT_MS);
	cr_expect(rc == 0 && strstr(out_of(&p), "DONE\n"),
		  "%s under \"%s\": want exit 0 and DONE, got exit %d\nstdout:\n%s\nstderr:\n%s",
		  what, connect_rule(port, "localhost"), rc, out_of(&p), err_of(&p));
	for (int l = 0; l < nlabels; l++) {
		for (int i = 1; i <= 3; i++) {
			const char *want =
			    h_fmt("RESP %s%d 200 %d %s\n", labels[l], i, BODY_LEN, body_sha);

			cr_expect(strstr(out_of(&p), want),
				  "%s: want the line \"%.*s\" (the body, byte for byte), got:\n%s\n"
				  "stderr:\n%s",
				  what, (int)strlen(want) - 1, want, out_of(&p), err_of(&p));
		}
	}
	h_collect(srv, 200);
	cr_expect_eq(h_count(out_of(srv), "CONN\n") - conns0, conns,
		     "%s: want %d keep-alive connection(s) at the server, it saw %d:\n%s", what,
		     conns, h_count(out_of(srv), "CONN\n") - conns0, out_of(srv));
	cr_expect_eq(h_count(out_of(srv), post) - posts0, nlabels,
		     "%s: want %d whole POST bodies at the server, it saw:\n%s", what, nlabels,
		     out_of(srv));
	cr_expect_eq(h_count(out_of(srv), get) - gets0, 2 * nlabels,
		     "%s: want %d GETs at the server, it saw:\n%s", what, 2 * nlabels, out_of(srv));
	h_proc_free(&p);
	h_env_free(&env);
}

/*
 * The same client with name=wrong.test (the certificate says localhost): it
 * must fail, with no response, and not one request may reach the server.
 */
static void expect_client_refused(const char *what, char *const argv[], int port,
				  struct h_proc *srv)
{
	struct h_env env;
	struct h_proc p;
	int rc, before;

	h_collect(srv, 0);
	before = h_count(out_of(srv), "REQ ");
	shim_env(&env, connect_rule(port, "wrong.test"));
	rc = h_run(&p, argv, &env, CLIENT_MS);
	cr_expect(rc >= 0 && !strstr(out_of(&p), " 200 "),
		  "%s with the wrong name: want no response (and no hang), got exit %d\n"
		  "stdout:\n%s\nstderr:\n%s",
		  what, rc, out_of(&p), err_of(&p));
	cr_expect(strstr(err_of(&p), "tlsshim[") && strstr(err_of(&p), "hostname mismatch"),
		  "%s with the wrong name: want the shim's error (hostname mismatch), got:\n%s",
		  what, err_of(&p));
	h_collect(srv, 200);
	cr_expect_eq(h_count(out_of(srv), "REQ "), before,
		     "%s with the wrong name: no request may reach the server, it saw:\n%s", what,
		     out_of(srv));
	h_proc_free(&p);
	h_env_free(&env);
}

Test(langs, java_http_clients)
{
	static const char *const labels[] = {"httpclient ", "urlconnection "};
	int port = h_free_port();
	struct h_proc *srv;
	char **argv;

	need(JAVA, "default-jre-headless");
	srv = start_https(port);
	argv = ARGV(JAVA, prog("langs_client.java"), h_fmt("%d", port), (char *)body_path);
	/* HttpClient (NIO, its selector thread) and HttpURLConnection: one connection each. */
	expect_client("java HttpClient + HttpURLConnection", argv, port, srv, labels, 2, 2);
	expect_client_refused("java HttpClient", argv, port, srv);
}

Test(langs, ruby_net_http_client)
{
	static const char *const labels[] = {""};
	int port = h_free_port();
	struct h_proc *srv;
	char **argv;

	need(RUBY, "ruby");
	srv = start_https(port);
	argv = ARGV(RUBY, prog("langs_client.rb"), h_fmt("%d", port), (char *)body_path);
	expect_client("ruby Net::HTTP", argv, port, srv, labels, 1, 1);
	expect_client_refused("ruby Net::HTTP", argv, port, srv);
}

Test(langs, perl_http_tiny_client)
{
	static const char *const labels[] = {""};
	int port = h_free_port();
	struct h_proc *srv;
	char **argv;

	need(PERL, "perl");
	srv = start_https(port);
	argv = ARGV(PERL, prog("langs_client.pl"), h_fmt("%d", port), (char *)body_path);
	expect_client("perl HTTP::Tiny", argv, port, srv, labels, 1, 1);
	expect_client_refused("perl HTTP::Tiny", argv, port, srv);
}

Test(langs, node_http_keepalive_client)
{
	static const char *const labels[] = {""};
	int port = h_free_port();
	struct h_proc *srv;
	char **argv;

	need(NODE, "nodejs");
	srv = start_https(port);
	argv = ARGV(NODE, prog("langs_client.js"), h_fmt("%d", port), (char *)body_path);
	expect_client("node http.request with a keep-alive agent", argv, port, srv, labels, 1, 1);
	expect_client_refused("node http.request", argv, port, srv);
}

/* ---- servers under an accept rule ---------------------------------------------------- */

/* Runs curl (no shim: the real TLS client) with ARGV; returns its exit code. */
static int curl(struct h_proc *p, char *const argv[])
{
	return h_run_plain(p, argv, CLIENT_MS);
}

/* Whether file PATH holds exactly the body. */
static int is_body(const char *path)
{
	size_t len = 0;
	char *got = h_read_file(path, &len);
	int same = got && len == BODY_LEN && memcmp(got, body, BODY_LEN) == 0;

	free(got);
	return same;
}

/* curl's options for a verified TLS request to localhost:PORT (again after each --next). */
#define CURL_TLS(port)                                                     \
	"-sS", "--max-time", "30", "--cacert", pki("ca.pem"), "--resolve", \
	    h_fmt("localhost:%d:127.0.0.1", port), "-H", "Expect:", "-w",  \
	    "STATUS %{http_code} CONNECTS %{num_connects}\n"

/*
 * curl with keep-alive, one connection: GET /big, POST /echo (the body), GET
 * /big; every body exactly the body file.
 */
static void expect_keepalive(const char *what, int port)
{
	const char *dir = h_tmpdir(), *url = h_fmt("https://localhost:%d", port);
	const char *o[3] = {h_fmt("%s/1", dir), h_fmt("%s/2", dir), h_fmt("%s/3", dir)};
	struct h_proc p;
	int rc;

	rc = curl(&p, ARGV("curl", CURL_TLS(port), h_fmt("%s/big", url), "-o", (char *)o[0],
			   "--next", CURL_TLS(port), "--data-binary", h_fmt("@%s", body_path), "-H",
			   "Content-Type: application/octet-stream", h_fmt("%s/echo", url), "-o",
			   (char *)o[1], "--next", CURL_TLS(port), h_fmt("%s/big", url), "-o",
			   (char *)o[2]));
	cr_expect(rc == 0 && h_count(out_of(&p), "STATUS 200 ") == 3,
		  "%s: want curl exit 0 and three 200s, got exit %d\nstdout:\n%s\nstderr:\n%s",
		  what, rc, out_of(&p), err_of(&p));
	/* Keep-alive: the first transfer connects, the next two reuse its connection. */
	cr_expect(strstr(out_of(&p), "STATUS 200 CONNECTS 1\nSTATUS 200 CONNECTS 0\n"
				     "STATUS 200 CONNECTS 0\n"),
		  "%s: want all three requests on one kept-alive connection, curl said:\n%s", what,
		  out_of(&p));
	for (int i = 0; i < 3; i++)
		cr_expect(is_body(o[i]), "%s: response %d is not the %d-byte body byte for byte",
			  what, i + 1, BODY_LEN);
	h_proc_free(&p);
}

/* curl --parallel: three GET /big at once, on three connections. */
static void expect_parallel(const char *what, int port)
{
	const char *dir = h_tmpdir(), *url = h_fmt("https://localhost:%d/big", port);
	const char *o[3] = {h_fmt("%s/1", dir), h_fmt("%s/2", dir), h_fmt("%s/3", dir)};
	struct h_proc p;
	int rc;

	rc = curl(&p, ARGV("curl", CURL_TLS(port), "--parallel", "--parallel-immediate",
			   (char *)url, "-o", (char *)o[0], (char *)url, "-o", (char *)o[1],
			   (char *)url, "-o", (char *)o[2]));
	cr_expect(rc == 0 && h_count(out_of(&p), "STATUS 200 CONNECTS 1\n") == 3,
		  "%s: want three 200s on three connections at once, got exit %d\nstdout:\n%s\n"
		  "stderr:\n%s",
		  what, rc, out_of(&p), err_of(&p));
	for (int i = 0; i < 3; i++)
		cr_expect(is_body(o[i]), "%s: parallel response %d is not the body byte for byte",
			  what, i + 1);
	h_proc_free(&p);
}

/*
 * A cleartext HTTP client: curl must fail with no response, the server must
 * never see the request; with ERR_LINE the program reports a failed read
 * ("ERR ..."). Then a TLS client is still served.
 */
static void expect_cleartext_refused(const char *what, int port, struct h_proc *srv, int err_line)
{
	struct h_proc p;
	int rc;

	rc = curl(&p, ARGV("curl", "-sS", "--max-time", "10", "-w", "STATUS %{http_code}\n",
			   h_fmt("http://127.0.0.1:%d/cleartext-probe", port)));
	cr_expect(rc != 0 && strstr(out_of(&p), "STATUS 000"),
		  "%s: a cleartext client must get no response, got exit %d\nstdout:\n%s\n"
		  "stderr:\n%s",
		  what, rc, out_of(&p), err_of(&p));
	h_proc_free(&p);
	if (err_line)
		cr_expect_eq(
		    h_wait_output(srv, "ERR ", 10000), 0,
		    "%s: want the program to see its read fail (\"ERR ...\"), it said:\n%s", what,
		    out_of(srv));
	h_collect(srv, 200);
	cr_expect(!strstr(out_of(srv), "cleartext-probe"),
		  "%s: the cleartext request reached the program:\n%s", what, out_of(srv));

	rc = curl(&p, ARGV("curl", CURL_TLS(port), "-o", "/dev/null",
			   h_fmt("https://localhost:%d/big", port)));
	cr_expect(rc == 0 && strstr(out_of(&p), "STATUS 200 "),
		  "%s: want a TLS client served after the cleartext one, got exit %d\n%s%s", what,
		  rc, out_of(&p), err_of(&p));
	h_proc_free(&p);
}

/*
 * The whole server check: keep-alive, parallel, cleartext refused; the
 * program saw each request whole (7 GETs, 1 POST of the body).
 */
static void expect_server(const char *what, int port, struct h_proc *srv, int err_line)
{
	expect_keepalive(what, port);
	expect_parallel(what, port);
	expect_cleartext_refused(what, port, srv, err_line);
	h_collect(srv, 200);
	cr_expect_eq(h_count(out_of(srv), h_fmt("REQ GET /big %d\n", BODY_LEN)), 6,
		     "%s: want 6 GETs at the program, it said:\n%s\nstderr:\n%s", what, out_of(srv),
		     err_of(srv));
	cr_expect_eq(h_count(out_of(srv), h_fmt("REQ POST /echo %d\n", BODY_LEN)), 1,
		     "%s: want the whole POST body at the program, it said:\n%s", what,
		     out_of(srv));
}

static void java_httpserver(const char *model)
{
	int port = h_free_port();
	struct h_proc *srv;

	need(JAVA, "default-jre-headless");
	make_body();
	srv = start(ARGV(JAVA, prog("langs_httpserver.java"), h_fmt("%d", port), (char *)body_path,
			 (char *)model),
		    accept_rule(port));
	/* HttpServer handles a failed exchange itself: nothing to print. */
	expect_server(h_fmt("java HttpServer (%s)", model), port, srv, 0);
}

Test(langs, java_httpserver_dispatcher_thread)
{
	java_httpserver("default");
}

Test(langs, java_httpserver_thread_pool)
{
	java_httpserver("threads");
}

Test(langs, ruby_thread_per_client_server)
{
	int port = h_free_port();
	struct h_proc *srv;

	need(RUBY, "ruby");
	make_body();
	srv = start(ARGV(RUBY, prog("langs_server.rb"), h_fmt("%d", port), (char *)body_path),
		    accept_rule(port));
	expect_server("ruby TCPServer, a thread per client", port, srv, 1);
	cr_expect(strstr(out_of(srv), "ERR Errno::ECONNRESET"),
		  "ruby: want the cleartext client's read to fail with ECONNRESET, it said:\n%s",
		  out_of(srv));
}

Test(langs, perl_fork_per_client_server)
{
	int port = h_free_port();
	struct h_proc *srv;

	need(PERL, "perl");
	make_body();
	srv = start(ARGV(PERL, prog("langs_server.pl"), h_fmt("%d", port), (char *)body_path),
		    accept_rule(port));
	expect_server("perl IO::Socket::INET, a fork per client", port, srv, 1);
	cr_expect(strstr(out_of(srv), "ERR read: Connection reset by peer"),
		  "perl: want the cleartext client's read to fail with ECONNRESET, it said:\n%s",
		  out_of(srv));
}

Test(langs, node_http_server)
{
	int port = h_free_port();
	struct h_proc *srv;

	need(NODE, "nodejs");
	make_body();
	srv = start(ARGV(NODE, prog("langs_server.js"), h_fmt("%d", port), (char *)body_path),
		    accept_rule(port));
	expect_server("node http.createServer", port, srv, 1);
	cr_expect(strstr(out_of(srv), "ERR ECONNRESET"),
		  "node: want the cleartext client's read to fail with ECONNRESET, it said:\n%s",
		  out_of(srv));
}

/* ---- a java.nio selector echo, with python's ssl as the client ------------------------- */

Test(langs, java_nio_selector_echo)
{
	int port = h_free_port();
	struct h_env env;
	struct h_proc *srv, p;
	int rc;

	need(JAVA, "default-jre-headless");
	make_body();
	srv = start(ARGV(JAVA, prog("langs_nioecho.java"), h_fmt("%d", port)), accept_rule(port));
	h_env_init(&env);

	/* Three connections at once, their chunks interleaved on the one selector thread. */
	rc = h_run(&p,
		   ARGV(PY, prog("langs_echo_client.py"), h_fmt("%d", port), pki("ca.pem"), "3",
			(char *)body_path),
		   &env, CLIENT_MS);
	cr_expect(rc == 0 && strstr(out_of(&p), "DONE\n"),
		  "nio echo: want exit 0 and DONE, got exit %d\nstdout:\n%s\nstderr:\n%s", rc,
		  out_of(&p), err_of(&p));
	for (int i = 1; i <= 3; i++)
		cr_expect(strstr(out_of(&p), h_fmt("ECHO %d %d %s\n", i, BODY_LEN, body_sha)),
			  "nio echo: connection %d did not get the body back byte for byte:\n%s", i,
			  out_of(&p));
	h_proc_free(&p);
	cr_expect_eq(
	    h_wait_output(srv,
			  h_fmt("CLOSED %d\nCLOSED %d\nCLOSED %d\n", BODY_LEN, BODY_LEN, BODY_LEN),
			  10000),
	    0, "nio echo: want three clean ends after the whole body each, it said:\n%s",
	    out_of(srv));

	/* Cleartext: the read fails, nothing is echoed to the client. */
	rc = h_run(&p, ARGV(PY, prog("langs_echo_client.py"), h_fmt("%d", port), "plain"), &env,
		   CLIENT_MS);
	cr_expect(rc == 0 &&
		      (strstr(out_of(&p), "PLAIN-REPLY 0 ") || strstr(out_of(&p), "PLAIN-ERROR ")),
		  "nio echo: a cleartext client must get nothing back, got exit %d\n%s%s", rc,
		  out_of(&p), err_of(&p));
	cr_expect_eq(h_wait_output(srv, "ERR ", 10000), 0,
		     "nio echo: want the program's read of the cleartext client to fail, it "
		     "said:\n%s",
		     out_of(srv));
	h_proc_free(&p);
	h_env_free(&env);
}

/* ---- node's cluster: workers that accept on a shared listener ------------------------ */

/*
 * node's cluster module in its two models. With NODE_CLUSTER_SCHED_POLICY=none
 * every worker accepts on the listener it shares: each connection is wrapped in
 * the worker that serves it. With round-robin (the default on Linux) the
 * primary accepts and passes each connection to a worker over SCM_RIGHTS, which
 * the shim refuses (a known limit): the client gets no response at all, never
 * a cleartext one, and the refusal is logged.
 */
static struct h_proc *start_cluster(int port, const char *sched)
{
	struct h_proc *p = h_proc_slot();
	struct h_env env;

	shim_env(&env, accept_rule(port));
	h_env_set(&env, "NODE_CLUSTER_SCHED_POLICY", "%s", sched);
	cr_assert_eq(
	    h_spawn(p, ARGV(NODE, prog("langs_cluster.js"), h_fmt("%d", port)), &env, NULL, 0), 0,
	    "expected node to start");
	h_env_free(&env);
	cr_assert_eq(h_wait_output(p, "READY", START_MS), 0,
		     "node cluster (%s) did not start:\n%s%s", sched, out_of(p), err_of(p));
	return p;
}

Test(langs, node_cluster_workers_accept)
{
	int port = h_free_port();
	const char *url = h_fmt("https://localhost:%d/hello", port);
	struct h_proc *srv, p;
	int rc;

	need(NODE, "nodejs");
	srv = start_cluster(port, "none");
	rc = curl(&p, ARGV("curl", CURL_TLS(port), "--parallel", "--parallel-immediate",
			   (char *)url, (char *)url, (char *)url, (char *)url));
	cr_expect(rc == 0 && h_count(out_of(&p), "hello from worker ") == 4,
		  "node cluster (none): want four answers, got exit %d\nstdout:\n%s\nstderr:\n%s",
		  rc, out_of(&p), err_of(&p));
	h_proc_free(&p);
	expect_cleartext_refused("node cluster (none)", port, srv, 1);
}

Test(langs, node_cluster_round_robin_refused)
{
	int port = h_free_port();
	struct h_proc *srv, p;
	int rc;

	need(NODE, "nodejs");
	srv = start_cluster(port, "rr");
	rc = curl(&p, ARGV("curl", "-sS", "--max-time", "5", "--cacert", pki("ca.pem"), "--resolve",
			   h_fmt("localhost:%d:127.0.0.1", port),
			   h_fmt("https://localhost:%d/hello", port)));
	cr_expect(rc != 0 && !strstr(out_of(&p), "hello"),
		  "node cluster (rr): want no answer, got exit %d\nstdout:\n%s\nstderr:\n%s", rc,
		  out_of(&p), err_of(&p));
	h_proc_free(&p);
	cr_expect_eq(h_wait_output(srv, "over SCM_RIGHTS", 10000), 0,
		     "node cluster (rr): want the refusal logged, it said:\n%s%s", out_of(srv),
		     err_of(srv));
	cr_expect(!strstr(out_of(srv), "REQ "),
		  "node cluster (rr): no request may reach a worker:\n%s", out_of(srv));
}

/* ---- a blocked read, interrupted the runtime's way ----------------------------------- */

/*
 * Each program connects under a connect rule to a TLS server that completes the
 * handshake and never answers, blocks in a read, and gets out of it the way its
 * runtime does (a signal whose handler dies, a timer thread raising into the
 * reader, a close or an interrupt from another thread): each must see what it
 * sees on a plain socket, never hang. Without the shim the server would reset
 * the cleartext connection and every reader would see that instead.
 */
static void expect_interrupted(const char *what, char *const argv[], int port, struct h_proc *srv,
			       const char *const want[], int nwant, int handshakes)
{
	struct h_env env;
	struct h_proc p;
	int rc;

	shim_env(&env, connect_rule(port, "localhost"));
	rc = h_run(&p, argv, &env, CLIENT_MS);
	cr_expect_eq(rc, 0, "%s: want exit 0, got %d\nstdout:\n%s\nstderr:\n%s", what, rc,
		     out_of(&p), err_of(&p));
	for (int i = 0; i < nwant; i++)
		cr_expect(strstr(out_of(&p), want[i]),
			  "%s: want \"%s\" (as on a plain socket), got:\nstdout:\n%s\nstderr:\n%s",
			  what, want[i], out_of(&p), err_of(&p));
	h_collect(srv, 200);
	cr_expect_eq(h_count(out_of(srv), "HANDSHAKE\n"), handshakes,
		     "%s: want %d TLS handshakes at the server, it saw:\n%s", what, handshakes,
		     out_of(srv));
	h_proc_free(&p);
	h_env_free(&env);
}

static struct h_proc *start_silent(int port)
{
	return start(ARGV(PY, prog("langs_silent_tls.py"), h_fmt("%d", port), pki("server.pem"),
			  pki("server.key")),
		     NULL);
}

Test(langs, perl_alarm_interrupts_blocked_read)
{
	static const char *const want[] = {"CAUGHT timeout AFTER "};
	int port = h_free_port();

	need(PERL, "perl");
	expect_interrupted("perl alarm + die in $SIG{ALRM}",
			   ARGV(PERL, prog("langs_interrupt.pl"), h_fmt("%d", port)), port,
			   start_silent(port), want, 1, 1);
}

Test(langs, ruby_interrupts_blocked_read)
{
	static const char *const want[] = {"TIMEOUT Timeout::Error\n", "CLOSE IOError\n",
					   "RAISE RuntimeError\n"};
	int port = h_free_port();

	need(RUBY, "ruby");
	expect_interrupted("ruby Timeout, IO#close, Thread#raise",
			   ARGV(RUBY, prog("langs_interrupt.rb"), h_fmt("%d", port)), port,
			   start_silent(port), want, 3, 3);
}

Test(langs, java_async_close_and_interrupt)
{
	static const char *const want[] = {
	    "SOCKET java.net.SocketException\n",
	    "CHANNEL java.nio.channels.AsynchronousCloseException\n",
	    "INTERRUPT java.nio.channels.ClosedByInterruptException\n"};
	int port = h_free_port();

	need(JAVA, "default-jre-headless");
	expect_interrupted("java async close, Thread.interrupt",
			   ARGV(JAVA, prog("langs_interrupt.java"), h_fmt("%d", port)), port,
			   start_silent(port), want, 3, 3);
}

Test(langs, node_request_timeout_destroys)
{
	static const char *const want[] = {"TIMEOUT\nERROR ECONNRESET socket hang up\nCLOSE\n"};
	int port = h_free_port();

	need(NODE, "nodejs");
	expect_interrupted("node http.get timeout + destroy",
			   ARGV(NODE, prog("langs_interrupt.js"), h_fmt("%d", port)), port,
			   start_silent(port), want, 1, 1);
}

/* ---- both ends wrapped: every client against a server under the shim ------------------ */

Test(langs, clients_against_wrapped_node_server)
{
	static const char *const one[] = {""};
	static const char *const java[] = {"httpclient ", "urlconnection "};
	int port = h_free_port();
	struct h_proc *srv;
	char *sport = h_fmt("%d", port);

	need(NODE, "nodejs");
	need(RUBY, "ruby");
	need(PERL, "perl");
	need(JAVA, "default-jre-headless");
	make_body();
	srv =
	    start(ARGV(NODE, prog("langs_server.js"), sport, (char *)body_path), accept_rule(port));
	expect_client("ruby Net::HTTP to a wrapped node server",
		      ARGV(RUBY, prog("langs_client.rb"), sport, (char *)body_path), port, srv, one,
		      1, 1);
	expect_client("perl HTTP::Tiny to a wrapped node server",
		      ARGV(PERL, prog("langs_client.pl"), sport, (char *)body_path), port, srv, one,
		      1, 1);
	expect_client("node http.request to a wrapped node server",
		      ARGV(NODE, prog("langs_client.js"), sport, (char *)body_path), port, srv, one,
		      1, 1);
	expect_client("java clients to a wrapped node server",
		      ARGV(JAVA, prog("langs_client.java"), sport, (char *)body_path), port, srv,
		      java, 2, 2);
}

/* ---- servers that run children while they hold connections --------------------------- */

/*
 * A server runs a child for every request while the client's connection is
 * open, then answers on it. The JDK launches children with posix_spawn (the
 * connections go into a relay) or, with launchMechanism=VFORK, with vfork():
 * the child closes every fd above 2 before exec. python's subprocess vfork()s
 * and closes them with close_range(). A vfork()ed child shares the parent's
 * memory: before, its closes unmapped the parent's wrapped fds from the shim's
 * tables, and the parent then wrote its answer in cleartext (the client saw
 * "wrong version number"; curl: "Empty reply from server").
 */
static void expect_server_with_children(const char *what, int port, struct h_proc *srv)
{
	expect_keepalive(what, port);
	expect_cleartext_refused(what, port, srv, 0);
	h_collect(srv, 200);
	cr_expect_eq(h_count(out_of(srv), "CHILD spawned 0\n"), 4,
		     "%s: want four children run, it said:\n%s\nstderr:\n%s", what, out_of(srv),
		     err_of(srv));
}

static void java_spawning_server(const char *mechanism)
{
	int port = h_free_port();
	struct h_proc *srv;

	need(JAVA, "default-jre-headless");
	make_body();
	srv = start(ARGV(JAVA, h_fmt("-Djdk.lang.Process.launchMechanism=%s", mechanism),
			 prog("langs_httpserver.java"), h_fmt("%d", port), (char *)body_path,
			 "default", "spawn"),
		    accept_rule(port));
	expect_server_with_children(h_fmt("java HttpServer running children (%s)", mechanism), port,
				    srv);
}

Test(langs, java_server_runs_children_posix_spawn)
{
	java_spawning_server("POSIX_SPAWN");
}

Test(langs, java_server_runs_children_vfork)
{
	java_spawning_server("VFORK");
}

Test(langs, python_server_runs_subprocess)
{
	int port = h_free_port();
	struct h_proc *srv;

	make_body();
	srv = start(ARGV(PY, prog("langs_subprocess.py"), h_fmt("%d", port), (char *)body_path),
		    accept_rule(port));
	expect_server_with_children("python http.server running subprocess.run", port, srv);
}

/*
 * The children get the connection itself (stdin=conn, then stdout=conn): they
 * are refused the session (a vfork()ed child cannot take it), and the server
 * then answers on it. Before, the stale-entry check in the child (its
 * refusal's socketpair took the number it had closed) dropped the parent's
 * entry, and the parent's answer went out in cleartext (the client: "wrong
 * version number"); and the child's dup2 onto fd 1 was recorded in the
 * parent's table, so the parent's own stdout went into the TLS session.
 */
Test(langs, python_subprocess_given_the_connection)
{
	int port = h_free_port();
	struct h_proc *srv, p;
	struct h_env env;
	int rc;

	srv = start(ARGV(PY, prog("langs_subprocess_stdin.py"), h_fmt("%d", port)),
		    accept_rule(port));
	h_env_init(&env);
	rc = h_run(&p, ARGV(PY, prog("langs_tls_lines.py"), h_fmt("%d", port), pki("ca.pem"), "hi"),
		   &env, CLIENT_MS);
	cr_expect(rc == 0 && strstr(out_of(&p), "LINE got hi\nLINE parent still here\nEOF\n"),
		  "want the server's two lines over TLS and nothing else, got exit %d\n"
		  "stdout:\n%s\nstderr:\n%s",
		  rc, out_of(&p), err_of(&p));
	h_proc_free(&p);
	h_env_free(&env);
	h_wait(srv, 10000);
	cr_expect_eq(h_count(out_of(srv), "CHILD 0\n"), 0,
		     "the children must not use the connection (it was refused), it said:\n%s%s",
		     out_of(srv), err_of(srv));
	cr_expect(strstr(out_of(srv), "STDIN b''\nPARENT-STDOUT\nPARENT-STDOUT after close\n"),
		  "the server's own stdin and stdout must stay its own, it said:\n%s%s",
		  out_of(srv), err_of(srv));
}

/*
 * inetd done with subprocess: the server hands each connection to a handler
 * (vfork(), dup2 onto 0 and 1, exec) before reading a byte and closes its
 * copy; the handler, under the shim, runs the handshake. Before, the server's
 * close read the client's handshake away (it still took itself for the owner),
 * or, earlier, the child's dup2s turned the server's own stdout into the
 * connection and it died at its next print.
 */
Test(langs, python_superserver_hands_connections_to_subprocess)
{
	int port = h_free_port();
	struct h_proc *srv;
	struct h_env env;

	srv = start(ARGV(PY, prog("langs_superserver.py"), h_fmt("%d", port)), accept_rule(port));
	h_env_init(&env);
	for (int i = 0; i < 2; i++) {
		struct h_proc p;
		const char *line = i == 0 ? "first" : "second";
		int rc = h_run(&p,
			       ARGV(PY, prog("langs_tls_lines.py"), h_fmt("%d", port),
				    pki("ca.pem"), (char *)line),
			       &env, CLIENT_MS);

		cr_expect(rc == 0 && strstr(out_of(&p), h_fmt("LINE echo %s\nEOF\n", line)),
			  "client %d: want the handler's echo over TLS, got exit %d\nstdout:\n%s\n"
			  "stderr:\n%s\nserver:\n%s%s",
			  i + 1, rc, out_of(&p), err_of(&p), out_of(srv), err_of(srv));
		h_proc_free(&p);
	}
	h_env_free(&env);
	cr_expect_eq(h_wait_output(srv, "HANDLER 0\nHANDLER 0\n", 10000), 0,
		     "want both handlers to succeed, the server said:\n%s%s", out_of(srv),
		     err_of(srv));
}
