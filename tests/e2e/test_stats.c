/*
 * test_stats.c - end-to-end tests of `tlsshim stats` (issue 15): the counters
 * an unmodified server and client under the shim keep in shared memory, read
 * by the command as a table, by rule, and in the Prometheus text format
 * (checked with promtool); the file's life (0600, made at the first wrapped
 * connection only, removed at exit, pruned when its process died).
 *
 * Every program gets an explicit environment with TLSSHIM_STATS_DIR set to a
 * fresh directory of the test, so tests never see each other's processes.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "e2e/harness.h"

#define ARGV(...) ((char *[]){__VA_ARGS__, NULL})
#define CLIENT_MS 20000
#define PY        "/usr/bin/python3"

static struct h_proc servers[4];
static int n_servers;

static void teardown(void)
{
	for (int i = 0; i < n_servers; i++)
		h_proc_free(&servers[i]);
	n_servers = 0;
}

TestSuite(stats, .fini = teardown, .timeout = 90);

static const char *pki(const char *name)
{
	return h_pki_file(name);
}

/* Files in DIR whose name is all digits (one per process), as a count. */
static int stats_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] >= '0' && e->d_name[0] <= '9')
			n++;
	closedir(d);
	return n;
}

/* Entries in DIR other than . and .. */
static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static void env_for(struct h_env *env, const char *dir)
{
	h_env_init(env);
	h_env_set(env, "TLSSHIM_STATS_DIR", "%s", dir);
}

/* python3 -m http.server on 127.0.0.1:PORT under the shim with POLICY, counting into DIR. */
static struct h_proc *start_http(int port, const char *policy, const char *dir)
{
	struct h_proc *p = &servers[n_servers];
	struct h_env env;

	env_for(&env, dir);
	h_env_preload(&env);
	h_env_set(&env, "TLSSHIM_POLICY", "%s", policy);
	cr_assert_eq(h_spawn(p, ARGV(PY, "-m", "http.server", "-b", "127.0.0.1", "--directory",
				     (char *)h_tmpdir(), h_fmt("%d", port)),
			     &env, NULL, 0),
		     0, "expected http.server to start");
	n_servers++;
	h_env_free(&env);
	cr_assert_eq(h_wait_port(port, 10000), 0, "expected http.server on %d; it said:\n%s", port,
		     p->err);
	return p;
}

/* Runs ARGV with ENV-less defaults plus TLSSHIM_STATS_DIR=DIR; returns its exit code. */
static int run_in(struct h_proc *p, char *const argv[], const char *dir)
{
	struct h_env env;
	int rc;

	env_for(&env, dir);
	rc = h_run(p, argv, &env, CLIENT_MS);
	h_env_free(&env);
	return rc;
}

/* `tlsshim stats ARGS...` reading DIR: its stdout (a new string); asserts exit 0. */
static char *stats_out(const char *dir, char *const args[])
{
	char *argv[8] = {(char *)h_cmd(), "stats"};
	struct h_proc p;
	char *out;
	int i, rc;

	for (i = 0; args != NULL && args[i] != NULL && i < 5; i++)
		argv[2 + i] = args[i];
	argv[2 + i] = NULL;
	rc = run_in(&p, argv, dir);
	cr_assert_eq(rc, 0, "expected tlsshim stats to exit 0, got %d:\n%s%s", rc, p.out, p.err);
	out = strdup(p.out);
	h_proc_free(&p);
	return out;
}

static void curl_https(int port, int n)
{
	for (int i = 0; i < n; i++) {
		struct h_proc p;
		int rc = run_in(&p,
				ARGV("curl", "-sS", "-o", "/dev/null", "--cacert", (char *)pki("ca.pem"),
				     h_fmt("https://localhost:%d/", port)),
				"/nonexistent");

		cr_assert_eq(rc, 0, "expected curl over TLS to succeed:\n%s", p.err);
		h_proc_free(&p);
	}
}

static void curl_plain(int port)
{
	struct h_proc p;

	run_in(&p, ARGV("curl", "-sS", "-o", "/dev/null", h_fmt("http://127.0.0.1:%d/", port)),
	       "/nonexistent");
	h_proc_free(&p);
}

/* Waits until `tlsshim stats PID` reading DIR contains NEEDLE; returns the last output. */
static char *wait_stats(const char *dir, int pid, const char *needle)
{
	char *out = NULL;

	for (int i = 0; i < 100; i++) {
		free(out);
		out = stats_out(dir, ARGV(h_fmt("%d", pid)));
		if (strstr(out, needle) != NULL)
			break;
		usleep(50000);
	}
	return out;
}

Test(stats, server_counts_by_rule_and_in_the_table)
{
	const char *dir = h_tmpdir();
	int port = h_free_port();
	struct h_proc *srv;
	char *out, *table;
	struct stat st;

	srv = start_http(port,
			 h_fmt("accept 127.0.0.1:%d tls cert=%s key=%s", port, pki("server.pem"),
			       pki("server.key")),
			 dir);
	cr_expect_eq(stats_files(dir), 0,
		     "expected no statistics file before the first wrapped connection");
	curl_https(port, 3);
	curl_plain(port);
	out = wait_stats(dir, srv->pid, "not_tls 1");
	cr_expect(strstr(out, "4 total") != NULL, "expected 4 connections counted:\n%s", out);
	cr_expect(strstr(out, "3 full, 0 resumed") != NULL, "expected 3 full handshakes:\n%s",
		  out);
	cr_expect(strstr(out, "not_tls 1") != NULL,
		  "expected the cleartext client counted as not_tls:\n%s", out);
	cr_expect(strstr(out, "TLSv1.3 3") != NULL, "expected 3 TLS 1.3 handshakes:\n%s", out);
	cr_expect(strstr(out, "TLS_AES_") != NULL, "expected the cipher suite:\n%s", out);
	cr_expect(strstr(out, "certificate  /CN=localhost, expires") != NULL,
		  "expected the server certificate's subject and expiry:\n%s", out);
	cr_expect(strstr(out, h_fmt("rule accept 127.0.0.1:%d tls", port)) != NULL,
		  "expected the rule as written:\n%s", out);
	cr_expect(strstr(out, "bytes        in 0 B") == NULL,
		  "expected the requests' bytes counted:\n%s", out);
	table = stats_out(dir, NULL);
	cr_expect(strstr(table, h_fmt("%d", srv->pid)) != NULL && strstr(table, "python3"),
		  "expected the server in the table:\n%s", table);
	cr_expect(strstr(table, "days)") != NULL, "expected the nearest expiry:\n%s", table);
	cr_assert_eq(stat(h_fmt("%s/%d", dir, srv->pid), &st), 0, "expected the file DIR/PID");
	cr_expect_eq(st.st_mode & 07777, 0600, "expected mode 0600, got %o", st.st_mode & 07777);
	free(out);
	free(table);
}

Test(stats, prometheus_output_passes_promtool)
{
	const char *dir = h_tmpdir(), *outdir = h_tmpdir();
	const char *prom = h_fmt("%s/tlsshim.prom", outdir);
	int port = h_free_port();
	struct h_proc *srv, p;
	char *text, *out;
	size_t len;
	int rc;

	srv = start_http(port,
			 h_fmt("accept 127.0.0.1:%d tls cert=%s key=%s", port, pki("server.pem"),
			       pki("server.key")),
			 dir);
	curl_https(port, 2);
	free(wait_stats(dir, srv->pid, "2 full"));
	out = stats_out(dir, ARGV("--prometheus", "--output", (char *)prom));
	free(out);
	text = h_read_file(prom, &len);
	cr_assert_not_null(text, "expected --output to write %s", prom);
	cr_expect(strstr(text, "# TYPE tlsshim_handshakes_total counter") != NULL,
		  "expected HELP/TYPE lines:\n%s", text);
	cr_expect(strstr(text, h_fmt("tlsshim_handshakes_total{pid=\"%d\",command=\"python3\","
				     "rule=\"accept 127.0.0.1:%d tls",
				     srv->pid, port)) != NULL,
		  "expected labels pid, command, rule:\n%s", text);
	cr_expect(strstr(text, "direction=\"accept\",resumed=\"false\"} 2") != NULL,
		  "expected 2 full handshakes:\n%s", text);
	cr_expect(strstr(text, "tlsshim_certificate_expiry_timestamp_seconds{") != NULL,
		  "expected the certificate expiry:\n%s", text);
	rc = run_in(&p, ARGV("/bin/sh", "-c", h_fmt("promtool check metrics < '%s'", prom)), dir);
	cr_expect_eq(rc, 0, "expected promtool check metrics to accept it, it said:\n%s%s", p.out,
		     p.err);
	h_proc_free(&p);
	/* Written atomically: no temporary file left beside it. */
	cr_expect_eq(count_entries(outdir), 1, "expected no temporary file beside the output");
	free(text);
}

/*
 * The library makes no system call at exit (a program confined by seccomp
 * after connecting would be killed by it): the reader removes the file of a
 * process that has exited, was killed, or exec'd another program.
 */
Test(stats, files_of_gone_processes_are_pruned_by_the_reader)
{
	const char *dir = h_tmpdir();
	int port = h_free_port();
	struct h_proc *srv, p;
	char *out;
	struct h_env env;
	int rc;

	/* A client that is denied: counted while it runs; its file is pruned once it exited. */
	env_for(&env, dir);
	h_env_preload(&env);
	h_env_set(&env, "TLSSHIM_POLICY", "connect 127.0.0.1:%d deny", port);
	h_env_set(&env, "PORT", "%d", port);
	h_env_set(&env, "CMD", "%s", h_cmd());
	rc = h_run(&p,
		   ARGV(PY, "-c",
			"import os, socket, subprocess\n"
			"try:\n"
			"    socket.create_connection(('127.0.0.1', int(os.environ['PORT'])))\n"
			"except PermissionError:\n"
			"    print('denied')\n"
			"print(subprocess.run([os.environ['CMD'], 'stats', str(os.getpid())],\n"
			"                     capture_output=True, text=True,\n"
			"                     env={'TLSSHIM_STATS_DIR': os.environ['TLSSHIM_STATS_DIR']})"
			".stdout)\n"),
		   &env, CLIENT_MS);
	cr_expect_eq(rc, 0, "expected the client to run:\n%s", p.err);
	cr_expect(strstr(p.out, "denied") != NULL, "expected EACCES:\n%s", p.out);
	cr_expect(strstr(p.out, "0 total, 0 open, 1 denied") != NULL,
		  "expected the denied connection counted while the process ran:\n%s", p.out);
	h_proc_free(&p);
	out = stats_out(dir, NULL);
	cr_expect_eq(stats_files(dir), 0, "expected the exited process's file pruned");
	free(out);

	/* One that execs a program not under the shim: its counters are not the new program's. */
	h_env_set(&env, "PYTHONUNBUFFERED", "1");
	cr_assert_eq(h_spawn(&p,
			     ARGV(PY, "-c",
				  "import os, socket\n"
				  "try:\n"
				  "    socket.create_connection(('127.0.0.1', int(os.environ['PORT'])))\n"
				  "except PermissionError:\n"
				  "    print('denied', flush=True)\n"
				  "os.execve('/bin/sleep', ['sleep', '30'], {})\n"),
			     &env, NULL, 0),
		     0, "expected python to start");
	cr_assert_eq(h_wait_output(&p, "denied", 10000), 0, "expected the denied line");
	usleep(300000);
	out = stats_out(dir, NULL);
	cr_expect(strstr(out, h_fmt("%d ", p.pid)) == NULL,
		  "expected a process that exec'd sleep not listed:\n%s", out);
	cr_expect_eq(stats_files(dir), 0, "expected its file pruned");
	free(out);
	h_kill(&p);
	h_proc_free(&p);
	h_env_free(&env);

	/* A server killed with SIGKILL: pruned too. */
	srv = start_http(port,
			 h_fmt("accept 127.0.0.1:%d tls cert=%s key=%s", port, pki("server.pem"),
			       pki("server.key")),
			 dir);
	curl_https(port, 1);
	free(wait_stats(dir, srv->pid, "1 full"));
	cr_assert_eq(stats_files(dir), 1, "expected one file");
	kill(srv->pid, SIGKILL);
	h_wait(srv, 5000);
	cr_expect_eq(stats_files(dir), 1, "expected the killed process's file left behind");
	out = stats_out(dir, NULL);
	cr_expect(strstr(out, h_fmt("%d ", srv->pid)) == NULL,
		  "expected a dead process not listed:\n%s", out);
	cr_expect_eq(stats_files(dir), 0, "expected the reader to prune the dead process's file");
	free(out);
}

Test(stats, nothing_made_when_off_or_when_nothing_is_wrapped)
{
	const char *dir = h_tmpdir();
	int port = h_free_port();
	struct h_proc p;
	struct h_env env;

	/* TLSSHIM_STATS=off: a wrapped (denied) connection makes no file. */
	env_for(&env, dir);
	h_env_preload(&env);
	h_env_set(&env, "TLSSHIM_STATS", "off");
	h_env_set(&env, "TLSSHIM_POLICY", "connect 127.0.0.1:%d deny", port);
	h_run(&p, ARGV("/bin/sh", "-c", h_fmt("curl -s http://127.0.0.1:%d/; ls '%s'", port, dir)),
	      &env, CLIENT_MS);
	h_env_free(&env);
	cr_expect_eq(stats_files(dir), 0, "expected no file with TLSSHIM_STATS=off");
	cr_expect(strchr(p.out, '\n') == NULL, "expected no file while it ran: %s", p.out);
	h_proc_free(&p);

	/* A cleartext connection by a plain rule, and one no rule matches: no file. */
	env_for(&env, dir);
	h_env_preload(&env);
	h_env_set(&env, "TLSSHIM_POLICY", "connect 127.0.0.1:%d plain; connect 10.0.0.0/8 tls",
		  port);
	h_run(&p,
	      ARGV("/bin/sh", "-c",
		   h_fmt("curl -s http://127.0.0.1:%d/; curl -s http://127.0.0.1:%d/; ls '%s'",
			 port, h_free_port(), dir)),
	      &env, CLIENT_MS);
	h_env_free(&env);
	cr_expect_eq(stats_files(dir), 0, "expected no file when nothing was wrapped");
	cr_expect(p.out[0] == '\0', "expected no file while it ran: %s", p.out);
	h_proc_free(&p);
}

Test(stats, unknown_pid_is_an_error)
{
	struct h_proc p;
	int rc = run_in(&p, ARGV((char *)h_cmd(), "stats", "999999999"), h_tmpdir());

	cr_expect_eq(rc, 1, "expected exit 1 for a PID with no statistics, got %d", rc);
	cr_expect(strstr(p.err, "no statistics for process 999999999") != NULL, "got: %s", p.err);
	h_proc_free(&p);
	rc = run_in(&p, ARGV((char *)h_cmd(), "stats", "--output", "x"), h_tmpdir());
	cr_expect_eq(rc, 64, "expected a usage error for --output without --prometheus");
	h_proc_free(&p);
}

/* ---- certificate expiry (expiry-warn=) ----------------------------------------------- */

TestSuite(expiry, .fini = teardown, .timeout = 90);

/* DIR/NAME.pem + .key for localhost, signed by the test CA, valid for DAYS days. */
static void make_cert_days(const char *dir, const char *name, int days)
{
	char *script =
	    h_fmt("set -e; cd '%s'\n"
		  "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out %s.key\n"
		  "openssl req -new -key %s.key -subj /CN=soon.test -out %s.csr\n"
		  "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > %s.ext\n"
		  "openssl x509 -req -in %s.csr -CA '%s' -CAkey '%s' -set_serial 0x$(openssl rand "
		  "-hex 8) -days %d -extfile %s.ext -out %s.pem\n",
		  dir, name, name, name, name, name, pki("ca.pem"), pki("ca.key"), days, name,
		  name);
	struct h_proc p;
	int rc = run_in(&p, ARGV("/bin/sh", "-c", script), "/nonexistent");

	cr_assert_eq(rc, 0, "expected to make certificate %s:\n%s%s", name, p.out, p.err);
	h_proc_free(&p);
}

/* Starts http.server with RULE_EXTRA after the cert/key of NAME, makes one TLS request. */
static struct h_proc *serve_once(const char *dir, const char *name, const char *extra,
				 int expect_ok)
{
	int port = h_free_port();
	struct h_proc *srv, p;
	int rc;

	srv = start_http(port,
			 h_fmt("accept 127.0.0.1:%d tls cert=%s/%s.pem key=%s/%s.key%s", port, dir,
			       name, dir, name, extra),
			 "/nonexistent");
	rc = run_in(&p,
		    ARGV("curl", "-sS", "-o", "/dev/null", "--cacert", (char *)pki("ca.pem"),
			 h_fmt("https://localhost:%d/", port)),
		    "/nonexistent");
	if (expect_ok)
		cr_expect_eq(rc, 0, "expected curl to succeed:\n%s", p.err);
	else
		cr_expect_neq(rc, 0, "expected curl to refuse the expired certificate");
	h_proc_free(&p);
	h_collect(srv, 300);
	return srv;
}

Test(expiry, warns_within_14_days_by_default)
{
	const char *dir = h_tmpdir();
	struct h_proc *srv;

	make_cert_days(dir, "soon", 5);
	srv = serve_once(dir, "soon", "", 1);
	cr_expect(strstr(srv->err, "warn: rule \"accept") != NULL &&
		      (strstr(srv->err, h_fmt("cert %s/soon.pem: certificate /CN=soon.test expires "
					      "in 4 days",
					      dir)) != NULL ||
		       strstr(srv->err, h_fmt("cert %s/soon.pem: certificate /CN=soon.test expires "
					      "in 5 days",
					      dir)) != NULL),
		  "expected a warn line naming the file, the subject and the days left, got:\n%s",
		  srv->err);
}

Test(expiry, expiry_warn_option_sets_the_window)
{
	const char *dir = h_tmpdir();
	struct h_proc *srv;

	make_cert_days(dir, "soon", 5);
	make_cert_days(dir, "later", 40);
	srv = serve_once(dir, "soon", " expiry-warn=3", 1);
	cr_expect(strstr(srv->err, "expires in") == NULL,
		  "expected no warning 5 days ahead with expiry-warn=3, got:\n%s", srv->err);
	srv = serve_once(dir, "later", " expiry-warn=60", 1);
	cr_expect(strstr(srv->err, "certificate /CN=soon.test expires in 39 days") != NULL ||
		      strstr(srv->err, "certificate /CN=soon.test expires in 40 days") != NULL,
		  "expected a warning 40 days ahead with expiry-warn=60, got:\n%s", srv->err);
	srv = serve_once(dir, "later", "", 1);
	cr_expect(strstr(srv->err, "expires in") == NULL,
		  "expected no warning 40 days ahead by default, got:\n%s", srv->err);
}

Test(expiry, expired_certificate_is_an_error_line)
{
	const char *dir = h_tmpdir();
	struct h_proc *srv, p;

	run_in(&p,
	       ARGV("/bin/sh", "-c",
		    h_fmt("cp '%s' '%s' '%s/'", pki("expired.pem"), pki("expired.key"), dir)),
	       "/nonexistent");
	h_proc_free(&p);
	srv = serve_once(dir, "expired", " expiry-warn=0", 0);
	cr_expect(strstr(srv->err, h_fmt("cert %s/expired.pem: certificate /CN=localhost expired "
					 "on 2020-02-01 00:00:00 UTC",
					 dir)) != NULL &&
		      strstr(srv->err, "error: rule") != NULL,
		  "expected an error line saying when it expired, got:\n%s", srv->err);
}
