/*
 * test_nginx.c - end-to-end tests of plain nginx (no ssl module in its
 * configuration) under the shim: `accept 127.0.0.1:PORT tls` makes it an
 * HTTPS server, a `connect` rule makes its proxy_pass a TLS client. Each test
 * writes its own nginx.conf, pid file and logs into a temporary prefix and
 * runs nginx from there, touching nothing in /etc or /var (`master_process
 * on`, workers forked as in production); curl, verifying the server against
 * the test CA, is the client and runs without the shim.
 *
 * What a user checks: status codes, the exact bytes (SHA-256) of files and
 * uploads, how many TCP connections curl made, what nginx logged, and that
 * nothing leaves in cleartext. The nginx_like suite does what found each bug
 * in nginx with small Python programs, so that the class is covered. Every
 * wait is bounded; every nginx a test starts is stopped in the suite's fini
 * (SIGQUIT, then SIGKILL to its process group), also when the test failed.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "e2e/harness.h"

#define NGINX     "/usr/sbin/nginx" /* absolute: a binary upgrade execs argv[0] */
#define PY        "/usr/bin/python3"
#define CLIENT_MS 60000 /* every client run is bounded by this */
#define WAIT_MS   20000 /* and every wait for nginx to do something */
#define MIB       (1024 * 1024)

static void stop_all(void);

TestSuite(nginx_serve, .fini = stop_all, .timeout = 180);
TestSuite(nginx_signals, .fini = stop_all, .timeout = 180);
TestSuite(nginx_client, .fini = stop_all, .timeout = 120);
TestSuite(nginx_like, .fini = stop_all, .timeout = 120);

/* ---- nginx instances, and their clean-up ------------------------------------------ */

struct ngx {
	const char *dir; /* the prefix: nginx.conf, nginx.pid, logs, www/ */
	int port;
	pid_t master; /* the master process at start */
	pid_t pgid;   /* its process group: every master and worker of this instance */
};

#define MAX_NGX 4
static struct ngx *started[MAX_NGX];
static int n_started;

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int alive(pid_t pid)
{
	char path[64], st = '?';
	FILE *f;

	if (pid <= 0 || kill(pid, 0) != 0)
		return 0;
	/* A zombie (ours, not yet reaped) has finished. */
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	if (fscanf(f, "%*d (%*[^)]) %c", &st) != 1)
		st = '?';
	fclose(f);
	return st != 'Z';
}

/* The pid in the instance's FILE (nginx.pid, nginx.pid.oldbin), or 0. */
static pid_t pid_file(const struct ngx *n, const char *file)
{
	char *text = h_read_file(h_fmt("%s/%s", n->dir, file), NULL);
	pid_t pid = text != NULL ? (pid_t)atoi(text) : 0;

	free(text);
	return pid;
}

/* The processes whose parent is PID (nginx's workers, or a new master), at most MAX. */
static int children_of(pid_t pid, pid_t *out, int max)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	int n = 0;

	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL && n < max) {
		char path[300], st;
		int ppid;
		FILE *f;

		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
		f = fopen(path, "r");
		if (f == NULL)
			continue;
		if (fscanf(f, "%*d (%*[^)]) %c %d", &st, &ppid) == 2 && ppid == pid && st != 'Z')
			out[n++] = (pid_t)atoi(de->d_name);
		fclose(f);
	}
	closedir(d);
	return n;
}

/* Waits until every pid of PIDS has exited; 1, or 0 after TIMEOUT_MS. */
static int wait_gone(const pid_t *pids, int n, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;

	for (;;) {
		int left = 0;

		for (int i = 0; i < n; i++) {
			waitpid(pids[i], NULL, WNOHANG); /* our own child: reap it */
			left += alive(pids[i]);
		}
		if (left == 0)
			return 1;
		if (now_ms() >= deadline)
			return 0;
		usleep(20000);
	}
}

/* Stops N: SIGQUIT (graceful) to every master, then SIGKILL to the whole group. */
static void stop(struct ngx *n)
{
	pid_t pids[3] = {n->master, pid_file(n, "nginx.pid"), pid_file(n, "nginx.pid.oldbin")};

	for (int i = 0; i < 3; i++)
		if (pids[i] > 0)
			kill(pids[i], SIGQUIT);
	if (!wait_gone(pids, 3, 5000))
		for (int i = 0; i < 3; i++)
			if (pids[i] > 0)
				kill(pids[i], SIGKILL);
	if (n->pgid > 1)
		kill(-n->pgid, SIGKILL); /* workers left behind by a killed master */
}

static void stop_all(void)
{
	for (int i = 0; i < n_started; i++)
		stop(started[i]);
	n_started = 0;
	h_teardown();
}

/* ---- files ------------------------------------------------------------------------- */

/* LEN bytes of a pseudo-random pattern from SEED (not compressible, not all alike). */
static char *pattern(size_t len, unsigned seed)
{
	char *b = malloc(len + 1);
	unsigned long long x = 0x9e3779b97f4a7c15ull ^ seed;

	cr_assert(b != NULL, "out of memory");
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		b[i] = (char)(x >> 24);
	}
	b[len] = '\0';
	return b;
}

static char *sha256_hex(const void *data, size_t len)
{
	unsigned char md[32];
	char *hex = h_fmt("%064d", 0);

	cr_assert(EVP_Digest(data, len, md, NULL, EVP_sha256(), NULL) == 1, "sha256 failed");
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	return hex;
}

/* Writes DIR/www/NAME with LEN bytes of pattern SEED; returns the bytes (caller frees). */
static char *www_file(const struct ngx *n, const char *name, size_t len, unsigned seed)
{
	char *b = pattern(len, seed);

	cr_assert_eq(h_write_file(h_fmt("%s/www/%s", n->dir, name), b, len), 0,
		     "expected to write www/%s", name);
	return b;
}

/* ---- starting nginx ----------------------------------------------------------------- */

/*
 * nginx.conf for N: WORKERS worker processes, in the foreground or as a
 * daemon (DAEMON), listening on 127.0.0.1:PORT in plain HTTP with nginx's
 * usual sendfile and tcp_nopush, root DIR/www; SERVER is added inside the
 * server block, HTTP inside the http block.
 */
static void write_conf(const struct ngx *n, int workers, int daemon, const char *http,
		       const char *server)
{
	char *conf =
	    h_fmt("worker_processes %d;\n"
		  "daemon %s;\n"
		  "master_process on;\n"
		  "%s\n"
		  "pid %s/nginx.pid;\n"
		  "error_log %s/error.log info;\n"
		  "events { worker_connections 256; }\n"
		  "http {\n"
		  " access_log %s/access.log;\n"
		  " sendfile on;\n"
		  " tcp_nopush on;\n"
		  " default_type application/octet-stream;\n"
		  " client_body_temp_path %s/tmp;\n"
		  " proxy_temp_path %s/tmp;\n"
		  " fastcgi_temp_path %s/tmp;\n"
		  " uwsgi_temp_path %s/tmp;\n"
		  " scgi_temp_path %s/tmp;\n"
		  " %s\n"
		  " server {\n"
		  "  listen 127.0.0.1:%d;\n"
		  "  root %s/www;\n"
		  "  location = /version { return 200 \"config 1\\n\"; }\n"
		  "  %s\n"
		  " }\n"
		  "}\n",
		  workers, daemon ? "on" : "off",
		  /* as root, the workers stay root: they read files in our 0700 temp dir */
		  geteuid() == 0 ? "user root;" : "", n->dir, n->dir, n->dir, n->dir, n->dir,
		  n->dir, n->dir, n->dir, http ? http : "", n->port, n->dir, server ? server : "");

	cr_assert_eq(h_write_file(h_fmt("%s/nginx.conf", n->dir), conf, strlen(conf)), 0,
		     "expected to write nginx.conf");
}

/* A new instance: its prefix (with www/ and tmp/) and a free port. */
static struct ngx *ngx_new(void)
{
	struct ngx *n = calloc(1, sizeof(*n));

	cr_assert(n != NULL && n_started < MAX_NGX, "too many nginx instances");
	cr_assert_eq(access(NGINX, X_OK), 0, "expected nginx at %s (scripts/setup-deps)", NGINX);
	n->dir = h_tmpdir();
	n->port = h_free_port();
	cr_assert_eq(mkdir(h_fmt("%s/www", n->dir), 0700), 0, "mkdir www");
	cr_assert_eq(mkdir(h_fmt("%s/tmp", n->dir), 0700), 0, "mkdir tmp");
	started[n_started++] = n;
	return n;
}

/* The policy every test serves under: plain nginx made an HTTPS server. */
static char *accept_rule(const struct ngx *n)
{
	return h_fmt("accept 127.0.0.1:%d tls cert=%s key=%s", n->port, pki("server.pem"),
		     pki("server.key"));
}

static void ngx_env(struct h_env *e, const struct ngx *n, const char *policy)
{
	h_env_shim(e, policy);
	h_env_set(e, "TLSSHIM_LOG_FILE", "%s/tlsshim.log", n->dir);
}

static char *log_text(const struct ngx *n, const char *name)
{
	char *t = h_read_file(h_fmt("%s/%s", n->dir, name), NULL);

	return t != NULL ? t : strdup("");
}

/* Waits until PID has WANT children (nginx's workers); returns how many it has. */
static int wait_workers(pid_t pid, int want, pid_t *out, int max)
{
	long long deadline = now_ms() + WAIT_MS;
	int got;

	for (;;) {
		got = children_of(pid, out, max);
		if (got >= want || now_ms() >= deadline || !alive(pid))
			return got;
		usleep(20000);
	}
}

/*
 * Starts nginx in the foreground (`daemon off`) under the shim with POLICY;
 * waits until it listens and has WORKERS workers.
 */
static void ngx_start(struct ngx *n, const char *policy, int workers)
{
	struct h_env env;
	struct h_proc *p;
	pid_t w[8];
	int got;

	ngx_env(&env, n, policy);
	p = h_server(ARGV(NGINX, "-p", (char *)n->dir, "-c", h_fmt("%s/nginx.conf", n->dir), "-e",
			  h_fmt("%s/error.log", n->dir)),
		     &env, n->port, NULL);
	h_env_free(&env);
	n->master = p->pid;
	n->pgid = p->pid; /* h_spawn made it a group leader; its workers stay in the group */
	got = wait_workers(n->master, workers, w, 8);
	cr_assert_eq(got, workers, "expected nginx to start %d workers, it has %d; error.log:\n%s",
		     workers, got, log_text(n, "error.log"));
}

/*
 * Starts nginx as a daemon (`daemon on`, as init systems run it) under the
 * shim with POLICY; waits until it listens and its master has WORKERS
 * workers. The master is not our child: nginx forks it and the first process
 * exits.
 */
static void ngx_start_daemon(struct ngx *n, const char *policy, int workers)
{
	struct h_env env;
	struct h_proc p;
	pid_t w[8];
	int rc, got;

	ngx_env(&env, n, policy);
	h_env_set(&env, "D", "%s", n->dir);
	rc = h_run(&p,
		   ARGV("/bin/sh", "-c",
			"exec \"$0\" \"$@\" </dev/null >\"$D/stdout\" 2>\"$D/stderr\"", NGINX, "-p",
			(char *)n->dir, "-c", h_fmt("%s/nginx.conf", n->dir), "-e",
			h_fmt("%s/error.log", n->dir)),
		   &env, WAIT_MS);
	h_env_free(&env);
	cr_assert_eq(rc, 0, "expected nginx to start as a daemon, it exited %d; error.log:\n%s", rc,
		     log_text(n, "error.log"));
	h_proc_free(&p);
	cr_assert_eq(h_wait_port(n->port, WAIT_MS), 0, "expected nginx to listen on %d", n->port);
	n->master = pid_file(n, "nginx.pid");
	n->pgid = n->master; /* the daemon called setsid(): its own group */
	cr_assert(n->master > 0, "expected nginx.pid");
	got = wait_workers(n->master, workers, w, 8);
	cr_assert_eq(got, workers, "expected nginx to start %d workers, it has %d", workers, got);
}

/* ---- clients ------------------------------------------------------------------------ */

/* Runs ARGV without the shim (a real TLS client); returns its exit code. */
static int run_client(struct h_proc *p, char *const argv[])
{
	return h_run_plain(p, argv, CLIENT_MS);
}

/* https://localhost:PORT/PATH */
static char *url(const struct ngx *n, const char *path)
{
	return h_fmt("https://localhost:%d/%s", n->port, path);
}

/*
 * GET PATH over TLS, verified against the test CA (EXTRA: one more curl
 * option, or NULL). The body is in P->out; returns the HTTP status (0 if
 * curl failed).
 */
static int get(struct h_proc *p, const struct ngx *n, const char *path, const char *extra,
	       const char *extra_arg)
{
	char *s;
	int rc, status;

	if (extra != NULL)
		rc = run_client(p, ARGV("curl", "-sS", "--max-time", "50", "--cacert",
					pki("ca.pem"), "-w", "%{stderr}status=%{http_code}\n",
					(char *)extra, (char *)extra_arg, url(n, path)));
	else
		rc =
		    run_client(p, ARGV("curl", "-sS", "--max-time", "50", "--cacert", pki("ca.pem"),
				       "-w", "%{stderr}status=%{http_code}\n", url(n, path)));
	if (rc != 0)
		return 0;
	s = h_line_with(p->err, "status=");
	status = s != NULL ? atoi(s + 7) : 0;

	free(s);
	return status;
}

/* GET PATH over TLS and expect status 200 and exactly WANT (LEN bytes); WHAT for messages. */
static void expect_file(const struct ngx *n, const char *path, const char *want, size_t len,
			const char *what)
{
	struct h_proc p;
	int status = get(&p, n, path, NULL, NULL);

	cr_expect_eq(status, 200, "expected GET /%s %s to give 200, got %d:\n%s", path, what,
		     status, p.err);
	cr_expect(p.out_len == len && memcmp(p.out, want, len) == 0,
		  "expected the %zu bytes of /%s %s (sha256 %s), got %zu bytes (sha256 %s)", len,
		  path, what, sha256_hex(want, len), p.out_len, sha256_hex(p.out, p.out_len));
	h_proc_free(&p);
}

/* Sum of the NEEDLE=N fields in TEXT (curl -w output, one line per transfer). */
static int sum_field(const char *text, const char *needle, int *lines)
{
	int sum = 0;
	size_t nl = strlen(needle);

	*lines = 0;
	for (const char *s = text; (s = strstr(s, needle)) != NULL; s += nl) {
		sum += atoi(s + nl);
		(*lines)++;
	}
	return sum;
}

/* ---- 1. the fork model: two workers, keep-alive and Connection: close ---------------- */

/*
 * 20 requests for a 1 KB file from one curl: over one keep-alive connection
 * (CLOSE 0: curl's num_connects adds up to 1) or one connection each (CLOSE
 * 1: `Connection: close`, 20 connections, so both workers' accept paths run).
 */
static void twenty_requests(const struct ngx *n, const char *body, int close)
{
	char *argv[64];
	int k = 0, lines, conns, ok;
	struct h_proc p;
	struct h_env e;
	int rc;

	argv[k++] = "curl";
	argv[k++] = "-sS";
	argv[k++] = "--max-time";
	argv[k++] = "50";
	argv[k++] = "--cacert";
	argv[k++] = pki("ca.pem");
	argv[k++] = "-w";
	argv[k++] = "%{stderr}status=%{http_code} connects=%{num_connects}\n";
	if (close) {
		argv[k++] = "-H";
		argv[k++] = "Connection: close";
	}
	for (int i = 0; i < 20; i++)
		argv[k++] = url(n, "1k");
	argv[k] = NULL;
	h_env_init(&e);
	rc = h_run(&p, argv, &e, CLIENT_MS);
	h_env_free(&e);
	cr_expect_eq(rc, 0, "expected curl to make 20 requests (%s), it exited %d:\n%s",
		     close ? "Connection: close" : "keep-alive", rc, p.err);
	ok = h_count(p.err, "status=200 ");
	conns = sum_field(p.err, "connects=", &lines);
	cr_expect_eq(ok, 20, "expected 20 answers 200 (%s), got %d:\n%s",
		     close ? "Connection: close" : "keep-alive", ok, p.err);
	cr_expect_eq(
	    conns, close ? 20 : 1,
	    "expected curl to make %d TCP connection(s) for 20 requests (%s), it made %d:\n%s",
	    close ? 20 : 1, close ? "Connection: close" : "keep-alive", conns, p.err);
	cr_expect_eq(p.out_len, 20 * 1024, "expected 20 x 1024 bytes, got %zu", p.out_len);
	for (int i = 0; i < 20 && p.out_len == 20 * 1024; i++)
		cr_expect(memcmp(p.out + i * 1024, body, 1024) == 0,
			  "expected response %d (%s) to be the file, it differs", i + 1,
			  close ? "Connection: close" : "keep-alive");
	h_proc_free(&p);
}

Test(nginx_serve, two_workers_serve_keepalive_and_connection_close)
{
	struct ngx *n = ngx_new();
	char *body;
	char *access;

	body = www_file(n, "1k", 1024, 1);
	write_conf(n, 2, 0, NULL, NULL);
	ngx_start(n, accept_rule(n), 2);
	twenty_requests(n, body, 0);
	twenty_requests(n, body, 1);
	access = log_text(n, "access.log");
	cr_expect_eq(h_count(access, "\"GET /1k HTTP/1.1\" 200 1024"), 40,
		     "expected nginx to log 40 requests for /1k answered with 1024 bytes:\n%s",
		     access);
	free(access);
	free(body);
}

/* ---- 2. files: sendfile + tcp_nopush, large files, ranges ---------------------------- */

Test(nginx_serve, sendfile_with_tcp_nopush_sends_1mib_and_20mib_intact)
{
	struct ngx *n = ngx_new();
	char *one = www_file(n, "1m", MIB, 2);
	char *twenty = www_file(n, "20m", 20 * MIB, 3);

	write_conf(n, 1, 0, NULL, NULL);
	ngx_start(n, accept_rule(n), 1);
	expect_file(n, "1m", one, MIB, "(1 MiB, sendfile on, tcp_nopush on)");
	expect_file(n, "20m", twenty, 20 * MIB, "(20 MiB, sendfile on, tcp_nopush on)");
	/* The same again on one keep-alive connection after a small response. */
	expect_file(n, "1m", one, MIB, "(1 MiB, a second time)");
	free(one);
	free(twenty);
}

/*
 * A TLS client (not under the shim) that asks for PATH and then stops
 * reading for SECONDS: the send buffers fill and nginx's sendfile meets a
 * full socket.
 */
static const char stalled_reader_py[] =
    "import socket, ssl, sys, time\n"
    "port, ca, path, secs = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])\n"
    "ctx = ssl.create_default_context(cafile=ca)\n"
    "s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', port), timeout=10),\n"
    "                    server_hostname='localhost')\n"
    "s.sendall(b'GET /' + path.encode() + b' HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n')\n"
    "print('reading stopped after', len(s.recv(4096)), flush=True)\n"
    "time.sleep(secs)\n";

Test(nginx_serve, a_client_that_stops_reading_does_not_stall_the_worker)
{
	struct ngx *n = ngx_new();
	char *body = www_file(n, "1k", 1024, 12), *big = www_file(n, "20m", 20 * MIB, 13);
	struct h_env env;
	struct h_proc *slow;

	/* One worker: a worker blocked on the slow client would serve no one else. */
	write_conf(n, 1, 0, NULL, NULL);
	ngx_start(n, accept_rule(n), 1);
	h_env_init(&env);
	slow = h_server(ARGV(PY, "-c", (char *)stalled_reader_py, h_fmt("%d", n->port),
			     pki("ca.pem"), "20m", "60"),
			&env, 0, "reading stopped");
	h_env_free(&env);
	usleep(300000); /* nginx fills the client's window and meets a full socket */
	for (int i = 0; i < 3; i++)
		expect_file(n, "1k", body, 1024, "while another client has stopped reading");
	h_kill(slow);
	/* And the big file still goes out whole. */
	expect_file(n, "20m", big, 20 * MIB, "after the stalled client left");
	free(body);
	free(big);
}

Test(nginx_serve, range_requests_get_exactly_the_slice)
{
	static const struct {
		const char *file;
		long long from, to;
	} cases[] = {
	    {"1m", 1000, 200999},
	    {"20m", 10 * MIB - 5, 12 * MIB + 4},
	    {"20m", 20 * MIB - 100, 20 * MIB - 1},
	};
	struct ngx *n = ngx_new();
	char *one = www_file(n, "1m", MIB, 4);
	char *twenty = www_file(n, "20m", 20 * MIB, 5);

	write_conf(n, 1, 0, NULL, NULL);
	ngx_start(n, accept_rule(n), 1);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *src = strcmp(cases[i].file, "1m") == 0 ? one : twenty;
		size_t len = (size_t)(cases[i].to - cases[i].from + 1);
		char *range = h_fmt("%lld-%lld", cases[i].from, cases[i].to);
		struct h_proc p;
		int status = get(&p, n, cases[i].file, "-r", range);

		cr_expect_eq(status, 206, "expected GET /%s Range %s to give 206, got %d:\n%s",
			     cases[i].file, range, status, p.err);
		cr_expect(p.out_len == len && memcmp(p.out, src + cases[i].from, len) == 0,
			  "expected bytes %s of /%s (%zu bytes, sha256 %s), got %zu bytes (sha256 "
			  "%s)",
			  range, cases[i].file, len, sha256_hex(src + cases[i].from, len),
			  p.out_len, sha256_hex(p.out, p.out_len));
		h_proc_free(&p);
	}
	free(one);
	free(twenty);
}

/* ---- 3. request bodies: nginx reads a 2 MB upload ------------------------------------ */

Test(nginx_serve, upload_of_2mb_is_stored_intact)
{
	struct ngx *n = ngx_new();
	size_t len = 2 * 1000 * 1000 + 123;
	char *body = pattern(len, 6), *src = h_fmt("%s/upload.src", h_tmpdir()), *stored;
	struct h_proc p;
	size_t got = 0;
	int rc;

	cr_assert_eq(h_write_file(src, body, len), 0, "expected to write the upload");
	cr_assert_eq(mkdir(h_fmt("%s/www/up", n->dir), 0700), 0, "mkdir www/up");
	/* The DAV module stores a PUT body (read into client_body_temp_path, then renamed). */
	write_conf(n, 2, 0, NULL,
		   "location /up/ { dav_methods PUT; client_max_body_size 50m; "
		   "client_body_buffer_size 16k; }");
	ngx_start(n, accept_rule(n), 2);
	/* curl sends `Expect: 100-continue` for a body this big: nginx answers 100 first. */
	rc = run_client(&p, ARGV("curl", "-sS", "--max-time", "50", "--cacert", pki("ca.pem"), "-T",
				 src, "-w", "%{stderr}status=%{http_code}\n", url(n, "up/file")));
	cr_expect_eq(rc, 0, "expected curl -T to upload %zu bytes, it exited %d:\n%s", len, rc,
		     p.err);
	cr_expect_eq(h_count(p.err, "status=201"), 1, "expected 201 Created for the PUT:\n%s",
		     p.err);
	h_proc_free(&p);
	stored = h_read_file(h_fmt("%s/www/up/file", n->dir), &got);
	cr_expect(
	    stored != NULL && got == len && memcmp(stored, body, len) == 0,
	    "expected nginx to store the %zu bytes uploaded (sha256 %s), it stored %zu (sha256 "
	    "%s)",
	    len, sha256_hex(body, len), got, stored ? sha256_hex(stored, got) : "-");
	/* And it serves them back over TLS. */
	expect_file(n, "up/file", body, len, "(the upload, read back)");
	free(stored);
	free(body);
}

/* ---- 4. reload: SIGHUP, new workers, the same master --------------------------------- */

Test(nginx_signals, reload_keeps_serving_tls_and_old_workers_exit)
{
	struct ngx *n = ngx_new();
	char *body = www_file(n, "1k", 1024, 7), *conf, *c2;
	pid_t old[8], now[8];
	int nold, nnow, stale = 0;
	struct h_proc p;
	struct h_env env;
	int status, rc;

	write_conf(n, 2, 0, NULL, NULL);
	ngx_start(n, accept_rule(n), 2);
	nold = children_of(n->master, old, 8);
	expect_file(n, "1k", body, 1024, "before the reload");
	status = get(&p, n, "version", NULL, NULL);
	cr_expect(status == 200 && strcmp(p.out, "config 1\n") == 0,
		  "expected /version to say config 1, got %d %s", status, p.out);
	h_proc_free(&p);

	/* A changed configuration, as `nginx -s reload` after an edit. */
	conf = h_read_file(h_fmt("%s/nginx.conf", n->dir), NULL);
	c2 = strstr(conf, "config 1");
	cr_assert(c2 != NULL);
	c2[7] = '2';
	cr_assert_eq(h_write_file(h_fmt("%s/nginx.conf", n->dir), conf, strlen(conf)), 0);
	free(conf);
	/* `nginx -s reload` (from the same environment) sends the master SIGHUP. */
	ngx_env(&env, n, accept_rule(n));
	rc = h_run(&p,
		   ARGV(NGINX, "-p", (char *)n->dir, "-c", h_fmt("%s/nginx.conf", n->dir), "-e",
			h_fmt("%s/error.log", n->dir), "-s", "reload"),
		   &env, WAIT_MS);
	h_env_free(&env);
	cr_assert_eq(rc, 0, "expected nginx -s reload to succeed, it exited %d:\n%s", rc, p.err);
	h_proc_free(&p);
	cr_expect(wait_gone(old, nold, WAIT_MS),
		  "expected the old workers to exit after the reload");
	nnow = wait_workers(n->master, 2, now, 8);
	for (int i = 0; i < nnow; i++)
		for (int j = 0; j < nold; j++)
			stale += now[i] == old[j];
	cr_expect(nnow == 2 && stale == 0,
		  "expected the same master with 2 new workers after SIGHUP, it has %d (%d old)",
		  nnow, stale);
	cr_expect(alive(n->master), "expected the master to survive the reload");

	expect_file(n, "1k", body, 1024, "after the reload");
	status = get(&p, n, "version", NULL, NULL);
	cr_expect(status == 200 && strcmp(p.out, "config 2\n") == 0,
		  "expected /version to say config 2 after the reload, got %d %s", status, p.out);
	h_proc_free(&p);
	free(body);
}

/* ---- 5. binary upgrade: SIGUSR2 execs a new master on the inherited listeners -------- */

/* Whether PID has the shim mapped. */
static int has_shim(pid_t pid)
{
	char *maps = h_read_file(h_fmt("/proc/%d/maps", (int)pid), NULL);
	int yes = maps != NULL && strstr(maps, "libtlsshim.so") != NULL;

	free(maps);
	return yes;
}

/* A plain-HTTP request for PATH to the wrapped port: curl's exit code; P has its output. */
static int get_plain(struct h_proc *p, const struct ngx *n, const char *path)
{
	return run_client(p, ARGV("curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w",
				  "%{stderr}status=%{http_code}\n",
				  h_fmt("http://127.0.0.1:%d/%s", n->port, path)));
}

Test(nginx_signals, binary_upgrade_keeps_tls_on_the_inherited_listener)
{
	struct ngx *n = ngx_new();
	char *body = www_file(n, "1k", 1024, 8), *access;
	pid_t old, next = 0, w[8];
	long long deadline;
	struct h_proc p;
	int rc;

	write_conf(n, 2, 1, NULL, NULL);
	ngx_start_daemon(n, accept_rule(n), 2);
	old = n->master;
	expect_file(n, "1k", body, 1024, "before the upgrade");

	/* SIGUSR2: the master renames its pid file and forks + execs nginx with NGINX=fd;fd; */
	cr_assert_eq(kill(old, SIGUSR2), 0, "kill -USR2");
	deadline = now_ms() + WAIT_MS;
	while (now_ms() < deadline) {
		next = pid_file(n, "nginx.pid");
		if (next > 0 && next != old && children_of(next, w, 8) == 2)
			break;
		usleep(50000);
	}
	cr_assert(next > 0 && next != old && children_of(next, w, 8) == 2,
		  "expected a new master with 2 workers after SIGUSR2; error.log:\n%s",
		  log_text(n, "error.log"));
	cr_expect_eq(pid_file(n, "nginx.pid.oldbin"), old, "expected nginx.pid.oldbin");
	cr_expect(has_shim(next),
		  "expected the new master (pid %d), exec'd with nginx's own environment "
		  "(TZ and NGINX only), to run under the shim",
		  (int)next);

	/* The old master goes; the new one serves on the listening socket it inherited. */
	cr_assert_eq(kill(old, SIGQUIT), 0, "kill -QUIT old master");
	cr_expect(wait_gone(&old, 1, WAIT_MS), "expected the old master to exit on SIGQUIT");
	for (int i = 0; i < 3; i++)
		expect_file(n, "1k", body, 1024,
			    "after the upgrade (new master, inherited listener)");

	/* And the port is still TLS-only: a cleartext request is not served. */
	rc = get_plain(&p, n, "plain-after-upgrade");
	cr_expect_neq(rc, 0,
		      "expected plain HTTP to the wrapped port to fail after the upgrade, "
		      "curl exited 0:\n%s",
		      p.err);
	h_proc_free(&p);
	access = log_text(n, "access.log");
	cr_expect(strstr(access, "plain-after-upgrade") == NULL,
		  "expected nginx never to see a cleartext request after the upgrade:\n%s", access);
	free(access);
	free(body);
}

/* ---- 6. nginx as a TLS client: proxy_pass under a connect rule ----------------------- */

/*
 * The upstream: a TLS server (Python's ssl module, not the shim) that notes
 * the first bytes of each connection before its handshake ("first HEX": a
 * TLS record starts 16 03) and the request line it read inside TLS, then
 * answers with FILE.
 */
static const char upstream_py[] =
    "import socket, ssl, sys, time\n"
    "port, cert, key, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]\n"
    "data = open(path, 'rb').read()\n"
    "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
    "ctx.load_cert_chain(cert, key)\n"
    "ls = socket.socket()\n"
    "ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "ls.bind(('127.0.0.1', port))\n"
    "ls.listen(16)\n"
    "print('listening', flush=True)\n"
    "while True:\n"
    "    c, _ = ls.accept()\n"
    "    c.settimeout(10)\n"
    "    try:\n"
    "        first, t = b'', time.time() + 5\n"
    "        while len(first) < 3 and time.time() < t:\n"
    "            first = c.recv(3, socket.MSG_PEEK)\n"
    "            if not first: break\n"
    "        print('first', first.hex(), flush=True)\n"
    "        s = ctx.wrap_socket(c, server_side=True)\n"
    "        req = b''\n"
    "        while b'\\r\\n\\r\\n' not in req:\n"
    "            d = s.recv(65536)\n"
    "            if not d: break\n"
    "            req += d\n"
    "        print('request', req.split(b'\\r\\n')[0].decode('latin-1'), flush=True)\n"
    "        s.sendall(b'HTTP/1.0 200 OK\\r\\nContent-Type: application/octet-stream\\r\\n'\n"
    "                  b'Content-Length: %d\\r\\n\\r\\n' % len(data) + data)\n"
    "        s.close()\n"
    "    except Exception as e:\n"
    "        print('error', type(e).__name__, e, flush=True)\n"
    "        c.close()\n";

/* nginx proxying /up/ to an upstream TLS server through the shim with name=NAME. */
static struct h_proc *proxy_setup(struct ngx **np, const char *name, char **body, size_t len)
{
	struct ngx *n = ngx_new();
	int up = h_free_port();
	char *file = h_fmt("%s/upstream.bin", h_tmpdir());
	struct h_proc *u;

	*body = pattern(len, 9);
	cr_assert_eq(h_write_file(file, *body, len), 0);
	u = h_server(ARGV(PY, "-c", (char *)upstream_py, h_fmt("%d", up), pki("server.pem"),
			  pki("server.key"), file),
		     NULL, 0, "listening");
	write_conf(n, 2, 0, NULL, h_fmt("location /up/ { proxy_pass http://127.0.0.1:%d/; }", up));
	ngx_start(n,
		  h_fmt("%s\nconnect 127.0.0.1:%d tls ca=%s name=%s", accept_rule(n), up,
			pki("ca.pem"), name),
		  2);
	*np = n;
	return u;
}

Test(nginx_client, proxy_pass_to_a_tls_upstream_under_a_connect_rule)
{
	size_t len = 300 * 1000 + 7;
	struct ngx *n;
	char *body;
	struct h_proc *u = proxy_setup(&n, "localhost", &body, len);

	expect_file(n, "up/data", body, len, "(proxied from the TLS upstream)");
	h_collect(u, 200);
	cr_expect(h_count(u->out, "request GET /data ") == 1,
		  "expected the upstream to read nginx's request inside TLS:\n%s", u->out);
	cr_expect(h_count(u->out, "first 1603") >= 1 &&
		      h_count(u->out, "first ") == h_count(u->out, "first 1603"),
		  "expected every connection to the upstream to start with a TLS record:\n%s",
		  u->out);
	free(body);
}

Test(nginx_client, wrong_upstream_name_is_502_and_nothing_in_cleartext)
{
	size_t len = 1000;
	struct ngx *n;
	char *body, *shimlog;
	struct h_proc *u = proxy_setup(&n, "wrong.test", &body, len), p;
	int status = get(&p, n, "up/data", NULL, NULL);

	cr_expect_eq(status, 502,
		     "expected 502 Bad Gateway from nginx when the upstream's certificate does not "
		     "carry name=wrong.test, got %d:\n%s",
		     status, p.out);
	h_proc_free(&p);
	h_collect(u, 200);
	cr_expect(h_count(u->out, "first ") >= 1, "expected nginx to try the upstream:\n%s",
		  u->out);
	cr_expect(h_count(u->out, "first ") == h_count(u->out, "first 1603"),
		  "expected only TLS records to reach the upstream:\n%s", u->out);
	cr_expect(h_count(u->out, "request ") == 0 && strstr(u->out, "GET") == NULL,
		  "expected no request to reach the upstream when verification fails:\n%s", u->out);
	shimlog = log_text(n, "tlsshim.log");
	cr_expect(
	    strstr(shimlog, "hostname mismatch (wanted wrong.test)") != NULL,
	    "expected the shim to log why it failed the upstream, naming the name checked:\n%s",
	    shimlog);
	free(shimlog);
	free(body);
}

/*
 * An HTTP/1.1 upstream over TLS (Python's ssl, not the shim) that keeps
 * connections alive and logs, per request, the client port it came from.
 */
static const char keepalive_upstream_py[] =
    "import functools, http.server, ssl, sys\n"
    "port, cert, key, root = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]\n"
    "class H(http.server.SimpleHTTPRequestHandler):\n"
    "    protocol_version = 'HTTP/1.1'\n"
    "    def log_message(self, fmt, *a):\n"
    "        print('request from port', self.client_address[1], flush=True)\n"
    "s = http.server.ThreadingHTTPServer(('127.0.0.1', port),\n"
    "                                    functools.partial(H, directory=root))\n"
    "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
    "ctx.load_cert_chain(cert, key)\n"
    "s.socket = ctx.wrap_socket(s.socket, server_side=True)\n"
    "print('listening', flush=True)\n"
    "s.serve_forever()\n";

Test(nginx_client, upstream_keepalive_reuses_one_tls_connection)
{
	struct ngx *n = ngx_new();
	int up = h_free_port();
	char *root = (char *)h_tmpdir(), *body = pattern(MIB, 14), *first;
	struct h_proc *u;

	cr_assert_eq(h_write_file(h_fmt("%s/data", root), body, MIB), 0);
	u = h_server(ARGV(PY, "-c", (char *)keepalive_upstream_py, h_fmt("%d", up),
			  pki("server.pem"), pki("server.key"), root),
		     NULL, 0, "listening");
	/* nginx's upstream keepalive pool: idle TLS connections kept and used again. */
	write_conf(n, 1, 0, h_fmt("upstream tls_up { server 127.0.0.1:%d; keepalive 4; }", up),
		   "location /up/ { proxy_pass http://tls_up/; proxy_http_version 1.1; "
		   "proxy_set_header Connection \"\"; }");
	ngx_start(n,
		  h_fmt("%s\nconnect 127.0.0.1:%d tls ca=%s name=localhost", accept_rule(n), up,
			pki("ca.pem")),
		  1);
	for (int i = 0; i < 4; i++)
		expect_file(n, "up/data", body, MIB, "(through a kept-alive TLS upstream)");
	usleep(1500000); /* idle in the pool: the session may get tickets, a close check */
	expect_file(n, "up/data", body, MIB, "(after the upstream connection idled)");
	h_collect(u, 200);
	first = h_line_with(u->out, "request from port");
	cr_expect(first != NULL && h_count(u->out, first) == 5,
		  "expected all 5 requests on one upstream TLS connection:\n%s", u->out);
	free(first);
	free(body);
}

/* ---- 7. a cleartext client on the wrapped port ---------------------------------------- */

Test(nginx_serve, plain_http_client_is_refused_and_never_logged)
{
	struct ngx *n = ngx_new();
	char *body = www_file(n, "1k", 1024, 10), *access, *errors;
	struct h_proc p;
	int rc;

	write_conf(n, 2, 0, NULL, NULL);
	ngx_start(n, accept_rule(n), 2);
	rc = get_plain(&p, n, "plain-probe");
	cr_expect_neq(rc, 0, "expected plain HTTP to the wrapped port to fail, curl exited 0:\n%s",
		      p.err);
	h_proc_free(&p);
	/* The TLS client right after is served and logged. */
	expect_file(n, "1k", body, 1024, "after a cleartext client");
	access = log_text(n, "access.log");
	errors = log_text(n, "error.log");
	cr_expect(strstr(access, "\"GET /1k HTTP/1.1\" 200") != NULL,
		  "expected nginx to log the TLS request:\n%s", access);
	cr_expect(
	    strstr(access, "plain-probe") == NULL && strstr(errors, "plain-probe") == NULL,
	    "expected nginx never to see the cleartext request:\naccess.log:\n%s\nerror.log:\n%s",
	    access, errors);
	free(access);
	free(errors);
	free(body);
}

/* ---- the same behaviours outside nginx ------------------------------------------------ */

/*
 * What nginx does that found a bug, done by small Python programs, so that
 * the class is covered and not only nginx: re-executing on a listener with an
 * environment of one's own, registering with epoll before connect(), and
 * edge-triggered reads that stop at a short read or at FIONREAD's count.
 */

/* A server under the shim (POLICY) with its log in a file of the instance's dir. */
static struct h_proc *start_py(const struct ngx *n, const char *policy, const char *script,
			       const char *arg1, const char *arg2, const char *needle)
{
	struct h_env env;
	struct h_proc *p;

	ngx_env(&env, n, policy);
	h_env_set(&env, "TLSSHIM_LOG", "info");
	p = h_server(
	    ARGV(PY, "-c", (char *)script, h_fmt("%d", n->port), (char *)arg1, (char *)arg2), &env,
	    0, needle);
	h_env_free(&env);
	return p;
}

/*
 * Listens on 127.0.0.1:PORT, then re-executes PROGRAM (argv[3]; python) on the
 * listener with an empty environment, as nginx's binary upgrade does, running
 * SERVE (argv[2]) there with the listener's fd number. With MODE spawn, uses
 * posix_spawn instead and then serves one request itself.
 */
static const char reexec_py[] =
    "import os, socket, sys\n"
    "port, serve, prog = int(sys.argv[1]), sys.argv[2], sys.argv[3]\n"
    "ls = socket.socket()\n"
    "ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "ls.bind(('127.0.0.1', port))\n"
    "ls.listen(16)\n"
    "os.set_inheritable(ls.fileno(), True)\n"
    "argv = [prog, '-c', serve, str(ls.fileno())]\n"
    "if os.environ.get('MODE') == 'spawn':\n"
    "    try:\n"
    "        os.posix_spawn(prog, argv, {})\n"
    "        print('spawned', flush=True)\n"
    "    except OSError as e:\n"
    "        print('spawn refused', e.errno == 13, flush=True)\n"
    "    c, _ = ls.accept()\n"
    "    c.recv(65536)\n"
    "    c.sendall(b'HTTP/1.0 200 OK\\r\\nContent-Length: 7\\r\\n\\r\\nparent\\n')\n"
    "    c.close()\n"
    "    sys.exit(0)\n"
    "print('exec', flush=True)\n"
    "os.execve(prog, argv, {})\n";

/* The program exec'd on the listener: serves "child\n" over HTTP/1.0, or says why it cannot. */
static const char serve_py[] =
    "import socket, sys\n"
    "ls = socket.socket(fileno=int(sys.argv[1]))\n"
    "print('child serving', flush=True)\n"
    "while True:\n"
    "    try:\n"
    "        c, _ = ls.accept()\n"
    "    except OSError as e:\n"
    "        print('child cannot accept', e.errno, flush=True)\n"
    "        sys.exit(3)\n"
    "    c.recv(65536)\n"
    "    c.sendall(b'HTTP/1.0 200 OK\\r\\nContent-Length: 6\\r\\n\\r\\nchild\\n')\n"
    "    c.close()\n";

Test(nginx_like, reexec_on_a_listener_with_an_empty_environment_keeps_tls)
{
	struct ngx *n = ngx_new();
	struct h_proc *srv = start_py(n, accept_rule(n), reexec_py, serve_py, PY, "child serving");
	struct h_proc p;
	char *shimlog;
	int status = get(&p, n, "x", NULL, NULL);

	cr_expect(status == 200 && strcmp(p.out, "child\n") == 0,
		  "expected the re-executed program to serve over TLS, got %d %s:\n%s", status,
		  p.out, p.err);
	h_proc_free(&p);
	cr_expect_neq(get_plain(&p, n, "x"), 0,
		      "expected plain HTTP to the re-executed program's port to fail:\n%s", p.err);
	h_proc_free(&p);
	shimlog = log_text(n, "tlsshim.log");
	cr_expect(strstr(shimlog, "LD_PRELOAD and the TLSSHIM_ variables go along") != NULL,
		  "expected the shim to say why the new program keeps the library:\n%s", shimlog);
	free(shimlog);
	(void)srv;
}

/* A copy of python3 with the setuid bit: a program the loader would not preload into. */
static char *setuid_python(void)
{
	char *copy = h_fmt("%s/python3-setuid", h_tmpdir());
	struct h_proc p;
	int rc = run_client(&p, ARGV("/bin/cp", PY, copy));

	h_proc_free(&p);
	cr_assert_eq(rc, 0, "cp python3");
	cr_assert_eq(chmod(copy, 04755), 0, "chmod u+s");
	return copy;
}

Test(nginx_like, exec_of_a_program_that_cannot_load_the_library_gets_no_listener)
{
	struct ngx *n = ngx_new();
	char *prog = setuid_python(), *shimlog;
	struct h_proc *srv = start_py(n, accept_rule(n), reexec_py, serve_py, prog, "exec"), p;
	int rc;

	h_wait_output(srv, "child cannot accept", WAIT_MS);
	cr_expect(h_count(srv->out, "child cannot accept") == 1,
		  "expected the setuid program to find no listener on the fd it inherited:\n%s%s",
		  srv->out, srv->err);
	rc = get_plain(&p, n, "x");
	cr_expect_neq(rc, 0, "expected nothing to serve the port in cleartext:\n%s", p.err);
	h_proc_free(&p);
	shimlog = log_text(n, "tlsshim.log");
	cr_expect(strstr(shimlog, "is a dead socket to the new program") != NULL,
		  "expected the shim to log the refusal:\n%s", shimlog);
	free(shimlog);
}

Test(nginx_like, spawn_of_a_program_that_cannot_load_the_library_is_refused)
{
	struct ngx *n = ngx_new();
	char *prog = setuid_python();
	struct h_env env;
	struct h_proc *srv, p;
	int status;

	ngx_env(&env, n, accept_rule(n));
	h_env_set(&env, "MODE", "spawn");
	srv = h_server(
	    ARGV(PY, "-c", (char *)reexec_py, h_fmt("%d", n->port), (char *)serve_py, prog), &env,
	    0, "spawn");
	h_env_free(&env);
	cr_expect(h_count(srv->out, "spawn refused True") == 1,
		  "expected posix_spawn of a setuid program inheriting the listener to fail with "
		  "EACCES:\n%s%s",
		  srv->out, srv->err);
	/* The caller keeps its listener, still under TLS. */
	status = get(&p, n, "x", NULL, NULL);
	cr_expect(status == 200 && strcmp(p.out, "parent\n") == 0,
		  "expected the spawning program to go on serving over TLS, got %d %s:\n%s", status,
		  p.out, p.err);
	h_proc_free(&p);
}

/*
 * A client under the shim that registers its socket with epoll (edge-
 * triggered) before connect(), as nginx's upstream module does, then sends
 * a request and reads the answer to its end. MODE nonblock or block.
 */
static const char early_epoll_py[] =
    "import hashlib, select, socket, sys\n"
    "port, mode = int(sys.argv[1]), sys.argv[2]\n"
    "s = socket.socket()\n"
    "ep = select.epoll()\n"
    "if mode == 'nonblock':\n"
    "    s.setblocking(False)\n"
    "ep.register(s.fileno(), select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP |\n"
    "            select.EPOLLET)\n"
    "print('connect', s.connect_ex(('127.0.0.1', port)), flush=True)\n"
    "s.setblocking(False)\n"
    "req, data = b'GET /data HTTP/1.0\\r\\n\\r\\n', b''\n"
    "while True:\n"
    "    if not ep.poll(10):\n"
    "        print('stalled', len(data), flush=True)\n"
    "        sys.exit(1)\n"
    "    try:\n"
    "        while req:\n"
    "            req = req[s.send(req):]\n"
    "        while True:\n"
    "            d = s.recv(65536)\n"
    "            if not d:\n"
    "                body = data.split(b'\\r\\n\\r\\n', 1)[1]\n"
    "                print('body', len(body), hashlib.sha256(body).hexdigest(), flush=True)\n"
    "                sys.exit(0)\n"
    "            data += d\n"
    "    except BlockingIOError:\n"
    "        pass\n"
    "    except OSError as e:\n"
    "        print('error', e, flush=True)\n"
    "        sys.exit(2)\n";

Test(nginx_like, epoll_registration_before_connect_then_tls)
{
	static const char *modes[] = {"nonblock", "block"};
	size_t len = 200 * 1000 + 3;
	int up = h_free_port();
	char *body = pattern(len, 11), *file = h_fmt("%s/upstream.bin", h_tmpdir());

	cr_assert_eq(h_write_file(file, body, len), 0);
	h_server(ARGV(PY, "-c", (char *)upstream_py, h_fmt("%d", up), pki("server.pem"),
		      pki("server.key"), file),
		 NULL, 0, "listening");
	for (size_t i = 0; i < 2; i++) {
		struct h_env env;
		struct h_proc p;
		int rc;

		h_env_shim(&env, h_fmt("connect 127.0.0.1:%d tls ca=%s name=localhost", up,
				       pki("ca.pem")));
		rc = h_run(
		    &p, ARGV(PY, "-c", (char *)early_epoll_py, h_fmt("%d", up), (char *)modes[i]),
		    &env, CLIENT_MS);
		h_env_free(&env);
		cr_expect(rc == 0 &&
			      h_count(p.out, h_fmt("body %zu %s", len, sha256_hex(body, len))) == 1,
			  "expected the %s client registered with epoll before connect() to get "
			  "the %zu bytes over TLS, it exited %d:\n%s%s",
			  modes[i], len, rc, p.out, p.err);
		h_proc_free(&p);
	}
	free(body);
}

/*
 * A server under the shim reading one connection with epoll, edge-triggered,
 * that stops reading as nginx does: at a short read (MODE short, 10000-byte
 * reads across 16 KB records) or once it has read what FIONREAD said (MODE
 * fionread). Answers the SHA-256 of TOTAL bytes.
 */
static const char et_reader_py[] =
    "import fcntl, hashlib, select, socket, struct, sys, termios\n"
    "port, mode, total = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])\n"
    "ls = socket.socket()\n"
    "ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "ls.bind(('127.0.0.1', port))\n"
    "ls.listen(4)\n"
    "print('listening', flush=True)\n"
    "c, _ = ls.accept()\n"
    "c.setblocking(False)\n"
    "ep = select.epoll()\n"
    "ep.register(c.fileno(), select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET)\n"
    "h, got = hashlib.sha256(), 0\n"
    "def take(n):\n"
    "    global got\n"
    "    try:\n"
    "        d = c.recv(n)\n"
    "    except BlockingIOError:\n"
    "        return 0\n"
    "    h.update(d)\n"
    "    got += len(d)\n"
    "    return len(d)\n"
    "while got < total:\n"
    "    if not ep.poll(15):\n"
    "        print('stalled at', got, flush=True)\n"
    "        sys.exit(1)\n"
    "    if mode == 'fionread':\n"
    "        avail = struct.unpack('i', fcntl.ioctl(c.fileno(), termios.FIONREAD, b'0000'))[0]\n"
    "        while avail > 0:\n"
    "            avail -= take(min(avail, 16384))\n"
    "    else:\n"
    "        while take(10000) == 10000:\n"
    "            pass\n"
    "print('read', got, flush=True)\n"
    "c.setblocking(True)\n"
    "c.sendall(h.hexdigest().encode() + b'\\n')\n"
    "c.close()\n";

/* Sends TOTAL bytes over TLS (verified) and prints the server's answer and its own digest. */
static const char sender_py[] =
    "import hashlib, socket, ssl, sys\n"
    "port, ca, total = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])\n"
    "data = bytes(range(256)) * (total // 256)\n"
    "ctx = ssl.create_default_context(cafile=ca)\n"
    "s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', port), timeout=30),\n"
    "                    server_hostname='localhost')\n"
    "s.sendall(data)\n"
    "print('sent', hashlib.sha256(data).hexdigest(), flush=True)\n"
    "print('answer', s.recv(100).decode().strip(), flush=True)\n";

Test(nginx_like, edge_triggered_reads_that_stop_short_or_at_fionread)
{
	static const char *modes[] = {"short", "fionread"};
	const int total = 2 * 1024 * 1024;

	for (size_t i = 0; i < 2; i++) {
		struct ngx *n = ngx_new();
		struct h_proc *srv, p;
		char *sent, *answer;
		int rc;

		srv = start_py(n, accept_rule(n), et_reader_py, modes[i], h_fmt("%d", total),
			       "listening");
		rc = run_client(&p, ARGV(PY, "-c", (char *)sender_py, h_fmt("%d", n->port),
					 pki("ca.pem"), h_fmt("%d", total)));
		sent = h_line_with(p.out, "sent ");
		answer = h_line_with(p.out, "answer ");
		h_collect(srv, 200);
		cr_expect(rc == 0 && sent != NULL && answer != NULL &&
			      strcmp(sent + 5, answer + 7) == 0,
			  "expected the %s reader to get all %d bytes, the client said (exit %d):\n"
			  "%s%s\nthe server:\n%s%s",
			  modes[i], total, rc, p.out, p.err, srv->out, srv->err);
		free(sent);
		free(answer);
		h_proc_free(&p);
	}
}

/*
 * A server under the shim that splices a pipe into its non-blocking client
 * connection (as HAProxy can) while the client has stopped reading: splice
 * must say EAGAIN once the connection is full, not wait for the peer.
 */
static const char splicer_py[] =
    "import os, socket, sys, time\n"
    "ls = socket.socket()\n"
    "ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "ls.bind(('127.0.0.1', int(sys.argv[1])))\n"
    "ls.listen(4)\n"
    "print('listening', flush=True)\n"
    "c, _ = ls.accept()\n"
    "c.recv(100)\n"
    "c.setblocking(False)\n"
    "r, w = os.pipe()\n"
    "os.set_blocking(w, False)\n"
    "sent = 0\n"
    "while sent < 512 * 1024 * 1024:\n"
    "    try:\n"
    "        os.write(w, b'x' * 65536)\n"
    "    except BlockingIOError:\n"
    "        pass\n"
    "    try:\n"
    "        sent += os.splice(r, c.fileno(), 65536, flags=os.SPLICE_F_NONBLOCK)\n"
    "    except BlockingIOError:\n"
    "        print('splice would block after', sent, flush=True)\n"
    "        break\n"
    "time.sleep(30)\n";

static const char hello_then_stop_py[] =
    "import socket, ssl, sys, time\n"
    "ctx = ssl.create_default_context(cafile=sys.argv[2])\n"
    "s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', int(sys.argv[1]))),\n"
    "                    server_hostname='localhost')\n"
    "s.sendall(b'hello\\n')\n"
    "print('got', len(s.recv(100)), flush=True)\n"
    "time.sleep(30)\n";

Test(nginx_like, splice_from_a_pipe_does_not_wait_for_a_stalled_peer)
{
	struct ngx *n = ngx_new();
	struct h_proc *srv = start_py(n, accept_rule(n), splicer_py, "", "", "listening");
	struct h_env env;

	h_env_init(&env);
	h_server(ARGV(PY, "-c", (char *)hello_then_stop_py, h_fmt("%d", n->port), pki("ca.pem")),
		 &env, 0, "got");
	h_env_free(&env);
	cr_expect_eq(
	    h_wait_output(srv, "splice would block", WAIT_MS), 0,
	    "expected splice into the full connection to fail with EAGAIN, not to wait for "
	    "the peer:\n%s%s",
	    srv->out, srv->err);
}
