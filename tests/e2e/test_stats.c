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
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "e2e/harness.h"
#include "stats_layout.h"

#define CLIENT_MS 20000
#define PY        "/usr/bin/python3"

TestSuite(stats, .fini = h_teardown, .timeout = 90);

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

/* PYTHON -m http.server on 127.0.0.1:PORT under the shim with POLICY, counting into DIR. */
static struct h_proc *start_http_as(const char *python, int port, const char *policy,
				    const char *dir)
{
	struct h_proc *p;
	struct h_env env;

	env_for(&env, dir);
	h_env_preload(&env);
	h_env_set(&env, "TLSSHIM_POLICY", "%s", policy);
	p = h_server(ARGV((char *)python, "-m", "http.server", "-b", "127.0.0.1", "--directory",
			  (char *)h_tmpdir(), h_fmt("%d", port)),
		     &env, port, NULL);
	h_env_free(&env);
	return p;
}

static struct h_proc *start_http(int port, const char *policy, const char *dir)
{
	return start_http_as(PY, port, policy, dir);
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
				ARGV("curl", "-sS", "-o", "/dev/null", "--cacert",
				     (char *)pki("ca.pem"), h_fmt("https://localhost:%d/", port)),
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

/* Waits up to MS until process PID runs a program whose path ends in SUFFIX (it exec'd). */
static int runs_program(int pid, const char *suffix, int ms)
{
	char exe[4096];

	for (int waited = 0; waited < ms; waited += 20) {
		ssize_t n = readlink(h_fmt("/proc/%d/exe", pid), exe, sizeof(exe) - 1);

		if (n > 0) {
			exe[n] = '\0';
			if (n >= (ssize_t)strlen(suffix) &&
			    strcmp(exe + n - strlen(suffix), suffix) == 0)
				return 1;
		}
		usleep(20000);
	}
	return 0;
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
	cr_expect(strstr(out, "3 full, 0 resumed") != NULL, "expected 3 full handshakes:\n%s", out);
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

/*
 * A statistics file says what its process wrote, and root's `tlsshim stats`
 * reads every user's: a command name with terminal controls (here an OSC
 * that sets the window title) is printed escaped, never as the controls.
 */
Test(stats, text_a_process_wrote_is_printed_escaped)
{
	const char *dir = h_tmpdir();
	const char *py = h_fmt("%s/py\x1b]2;owned\x07", h_tmpdir());
	int port = h_free_port();
	struct h_proc *srv;
	char *out, *table;

	cr_assert_eq(symlink(PY, py), 0, "expected to make %s: %s", py, strerror(errno));
	srv = start_http_as(py, port,
			    h_fmt("accept 127.0.0.1:%d tls cert=%s key=%s", port, pki("server.pem"),
				  pki("server.key")),
			    dir);
	curl_https(port, 1);
	out = wait_stats(dir, srv->pid, "1 full");
	table = stats_out(dir, NULL);
	cr_expect(strpbrk(out, "\x1b\x07") == NULL && strpbrk(table, "\x1b\x07") == NULL,
		  "expected no terminal control in the output, got:\n%s\n%s", out, table);
	cr_expect(strstr(out, "(py\\x1b]2;owned\\x07)") != NULL,
		  "expected the command name escaped by PID:\n%s", out);
	cr_expect(strstr(table, "py\\x1b]2;owned\\x07") != NULL,
		  "expected the command name escaped in the table:\n%s", table);
	free(out);
	free(table);
}

/* Field 22 of /proc/PID/stat (the process's start time), or 0. */
static unsigned long long starttime_of(int pid)
{
	size_t len;
	char *stat = h_read_file(h_fmt("/proc/%d/stat", pid), &len), *p;
	unsigned long long t = 0;

	p = stat != NULL ? strrchr(stat, ')') : NULL;
	for (int i = 0; i < 20 && p != NULL; i++)
		p = strchr(p + 1, ' ');
	if (p != NULL)
		t = strtoull(p + 1, NULL, 10);
	free(stat);
	return t;
}

/*
 * Writes a statistics file DIR/PID owned by UID: complete (with COMM, N_RULES zeroed rules)
 * or half made.
 */
static void forge_n(const char *dir, int pid, uid_t uid, int complete, const char *comm,
		    uint32_t n_rules)
{
	struct stats_head h;
	const char *path = h_fmt("%s/%d", dir, pid);

	memset(&h, 0, sizeof(h));
	if (complete)
		atomic_store(&h.magic, STATS_MAGIC);
	h.version = STATS_VERSION;
	h.head_size = sizeof(h);
	h.rule_size = sizeof(struct stats_rule);
	h.pid = pid;
	h.uid = uid;
	h.n_rules = n_rules;
	h.starttime = starttime_of(pid);
	snprintf(h.comm, sizeof(h.comm), "%s", comm);
	cr_assert_eq(h_write_file(path, &h, sizeof(h)), 0, "expected to write %s", path);
	cr_assert_eq(truncate(path, (off_t)(sizeof(h) + n_rules * sizeof(struct stats_rule))), 0,
		     "expected to size %s", path);
	cr_assert_eq(chown(path, uid, uid), 0, "expected to chown %s", path);
}

static void forge(const char *dir, int pid, uid_t uid, int complete, const char *comm)
{
	forge_n(dir, pid, uid, complete, comm, 0);
}

/*
 * Root's `tlsshim stats` reads every user's directory. A file there speaks
 * for that user's processes only (one naming a root process is not shown),
 * and root removes nothing there: a directory swapped for a link while it
 * looks would otherwise make root delete files elsewhere.
 */
Test(stats, another_users_directory_is_read_not_trusted)
{
	const char *dir = h_tmpdir();
	char *out;
	struct stat st;

	if (geteuid() != 0)
		cr_skip_test("needs root: a directory and files of another user");
	cr_assert_eq(chown(dir, 65534, 65534), 0, "expected to chown %s", dir);
	forge(dir, getpid(), 65534, 1, "forged");
	forge(dir, 4194304, 65534, 0, "stale"); /* no such process: PID_MAX_LIMIT */
	out = stats_out(dir, NULL);
	cr_expect(strstr(out, "forged") == NULL,
		  "expected another user's file about a root process not shown:\n%s", out);
	cr_expect_eq(stat(h_fmt("%s/4194304", dir), &st), 0,
		     "expected root to leave another user's stale file in place");
	free(out);
}

struct shrinker {
	const char *path;
	_Atomic int stop;
};

/* Cuts PATH down to its header and back to its size, over and over, until told to stop. */
static void *shrink_loop(void *arg)
{
	struct shrinker *sh = arg;
	struct stat st;
	int fd = open(sh->path, O_WRONLY);

	if (fd < 0 || fstat(fd, &st) != 0)
		return NULL;
	while (!atomic_load(&sh->stop)) {
		if (ftruncate(fd, (off_t)sizeof(struct stats_head)) != 0)
			break;
		usleep(300);
		if (ftruncate(fd, st.st_size) != 0)
			break;
		usleep(300);
	}
	close(fd);
	return NULL;
}

/*
 * A file truncated while `tlsshim stats` has it mapped (its writer, or a
 * user doing it on purpose to root's reader) must not kill the reader with
 * SIGBUS: that file is skipped.
 */
Test(stats, a_file_that_shrinks_while_read_is_skipped)
{
	const char *dir = h_tmpdir();
	struct shrinker sh = {.path = h_fmt("%s/%d", dir, getpid())};
	char *argv[] = {(char *)h_cmd(), "stats", NULL};
	pthread_t t;
	int bad = 0;

	/* megabytes: reading takes a while */
	forge_n(dir, getpid(), geteuid(), 1, "shrinking", 4096);
	cr_assert_eq(pthread_create(&t, NULL, shrink_loop, &sh), 0);
	for (int i = 0; i < 40 && bad == 0; i++) {
		struct h_proc p;
		int rc = run_in(&p, argv, dir);

		if (rc != 0)
			bad = rc;
		h_proc_free(&p);
	}
	atomic_store(&sh.stop, 1);
	pthread_join(t, NULL);
	cr_expect_eq(bad, 0, "expected tlsshim stats to exit 0 every time, one exited %d (%s)", bad,
		     bad == 128 + SIGBUS ? "SIGBUS" : "?");
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
	rc = h_run(
	    &p,
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
	cr_assert_eq(
	    h_spawn(&p,
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
	cr_assert(runs_program(p.pid, "/sleep", 15000), "expected python to exec sleep");
	out = stats_out(dir, NULL);
	cr_expect(strstr(out, h_fmt("%d ", p.pid)) == NULL,
		  "expected a process that exec'd sleep not listed:\n%s", out);
	cr_expect_eq(stats_files(dir), 0, "expected its file pruned");
	free(out);
	h_kill(&p);
	h_proc_free(&p);
	h_env_free(&env);

	/* A file of another layout (an older tlsshim's) whose process is gone: pruned too. */
	{
		unsigned char old_file[1224] = {0};
		uint64_t magic = 0x31746174736c7374ULL;
		uint32_t version_head[2] = {1, 80};

		memcpy(old_file, &magic, 8);
		memcpy(old_file + 8, version_head, 8);
		cr_assert_eq(h_write_file(h_fmt("%s/999999999", dir), old_file, sizeof(old_file)),
			     0, "expected to write an old-layout file");
		free(stats_out(dir, NULL));
		cr_expect_eq(stats_files(dir), 0,
			     "expected a dead process's old-layout file pruned");
	}

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

/*
 * A forking server: the parent accepts, the child runs the handshake and the
 * I/O. The child counts in a file of its own, made at the fork.
 */
/* The parent PID of PID (from /proc), or -1. */
static int parent_of(int pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	int ppid = -1;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "re");
	if (f == NULL)
		return -1;
	if (fgets(buf, sizeof(buf), f) != NULL && (p = strrchr(buf, ')')) != NULL)
		sscanf(p + 1, " %*c %d", &ppid);
	fclose(f);
	return ppid;
}

Test(stats, forked_child_counts_in_its_own_file)
{
	const char *dir = h_tmpdir();
	int port = h_free_port();
	struct h_proc *srv;
	struct h_env env;
	char *out, *line, *child;
	int child_pid;

	env_for(&env, dir);
	h_env_preload(&env);
	h_env_set(&env, "TLSSHIM_POLICY", "accept 127.0.0.1:%d tls cert=%s key=%s", port,
		  pki("server.pem"), pki("server.key"));
	h_env_set(&env, "PORT", "%d", port);
	srv = h_server(
	    ARGV(PY, "-c",
		 "import http.server, os, socketserver, time\n"
		 "class H(http.server.BaseHTTPRequestHandler):\n"
		 "    def do_GET(self):\n"
		 "        self.send_response(200); self.send_header('Content-Length', '3')\n"
		 "        self.end_headers(); self.wfile.write(b'hi\\n'); self.wfile.flush()\n"
		 "        time.sleep(4)  # the child stays for tlsshim stats to see\n"
		 "class S(socketserver.ForkingMixIn, http.server.HTTPServer): pass\n"
		 "S(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n"),
	    &env, port, NULL);
	h_env_free(&env);
	curl_https(port, 1);
	out = stats_out(dir, NULL);
	/* The table: the parent (1 connection, no handshake) and its child (the handshake). */
	line = strstr(out, h_fmt("\n%-8d", srv->pid));
	cr_expect(line != NULL, "expected the parent in the table:\n%s", out);
	child = NULL;
	/* The table lists every shimmed process of the machine: the child is the server's. */
	for (char *l = strchr(out, '\n'); l != NULL; l = strchr(l + 1, '\n'))
		if (l[1] >= '0' && l[1] <= '9' && atoi(l + 1) != srv->pid &&
		    parent_of(atoi(l + 1)) == srv->pid)
			child = l + 1;
	cr_assert(child != NULL, "expected the forked child in the table:\n%s", out);
	child_pid = atoi(child);
	free(out);
	out = stats_out(dir, ARGV(h_fmt("%d", child_pid)));
	cr_expect(strstr(out, "1 full, 0 resumed") != NULL &&
		      strstr(out, "bytes        in 0 B") == NULL,
		  "expected the child's handshake and bytes in its own file:\n%s", out);
	free(out);
	out = stats_out(dir, ARGV(h_fmt("%d", srv->pid)));
	cr_expect(strstr(out, "1 total") != NULL && strstr(out, "0 full, 0 resumed") != NULL,
		  "expected the parent to count the accepted connection only:\n%s", out);
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
	/* Past INT_MAX is no PID: read as an int it wraps (to 1, init, here). */
	rc = run_in(&p, ARGV((char *)h_cmd(), "stats", "4294967297"), h_tmpdir());
	cr_expect_eq(rc, 64, "expected a usage error for PID 4294967297, got %d:\n%s", rc, p.err);
	h_proc_free(&p);
}

/* ---- certificate expiry (expiry-warn=) ----------------------------------------------- */

TestSuite(expiry, .fini = h_teardown, .timeout = 90);

/* DIR/NAME.pem + .key for localhost, signed by the test CA, valid for DAYS days. */
static void make_cert_days(const char *dir, const char *name, int days)
{
	char *script = h_fmt(
	    "set -e; cd '%s'\n"
	    "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out %s.key\n"
	    "openssl req -new -key %s.key -subj /CN=soon.test -out %s.csr\n"
	    "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > %s.ext\n"
	    "openssl x509 -req -in %s.csr -CA '%s' -CAkey '%s' -set_serial 0x$(openssl rand "
	    "-hex 8) -days %d -extfile %s.ext -out %s.pem\n",
	    dir, name, name, name, name, name, pki("ca.pem"), pki("ca.key"), days, name, name);
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

/* ---- rotation the way Kubernetes does it (the ..data symbolic link) ------------------ */

TestSuite(k8s_rotation, .fini = h_teardown, .timeout = 120);

/* A python3 TLS client: new connections to PORT for SECONDS; prints each served cert's hash. */
static const char traffic_py[] =
    "import hashlib, os, socket, ssl, sys, time\n"
    "port, secs = int(sys.argv[1]), float(sys.argv[2])\n"
    "ctx = ssl.create_default_context(cafile=sys.argv[3])\n"
    "if len(sys.argv) > 4: ctx.load_cert_chain(sys.argv[4], sys.argv[5])\n"
    "ok = bad = 0; seen = []; end = time.time() + secs\n"
    "while time.time() < end:\n"
    "    try:\n"
    "        with socket.create_connection(('127.0.0.1', port), timeout=5) as s:\n"
    "            with ctx.wrap_socket(s, server_hostname='localhost') as t:\n"
    "                fp = hashlib.sha256(t.getpeercert(binary_form=True)).hexdigest()\n"
    "                t.sendall(b'GET / HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n')\n"
    "                data = b''\n"
    "                while True:\n"
    "                    b = t.recv(65536)\n"
    "                    if not b: break\n"
    "                    data += b\n"
    "                if not data.startswith(b'HTTP/1.0 200'): raise Exception('bad reply')\n"
    "        ok += 1\n"
    "        if not seen or seen[-1] != fp: seen.append(fp)\n"
    "    except Exception as e:\n"
    "        bad += 1; print('error', repr(e), flush=True)\n"
    "    time.sleep(0.02)\n"
    "print('OK', ok, 'FAIL', bad)\n"
    "for fp in seen: print('CERT', fp)\n";

/* The SHA-256 of the DER certificate in PEM file PATH (lower-case hex). */
static char *cert_sha256(const char *path)
{
	struct h_proc p;
	char *fp;
	int rc =
	    run_in(&p,
		   ARGV("/bin/sh", "-c",
			h_fmt("openssl x509 -in '%s' -outform DER | sha256sum | cut -c1-64", path)),
		   "/nonexistent");

	cr_assert_eq(rc, 0, "expected the fingerprint of %s", path);
	fp = strndup(p.out, 64);
	h_proc_free(&p);
	return fp;
}

/*
 * What kubelet's atomic writer does for a Secret volume: the new version in a
 * new timestamped directory, a `..data_tmp` link to it renamed over `..data`,
 * the old directory removed.
 */
static void k8s_publish(const char *dir, const char *version, const char *old_version)
{
	char *tmp = h_fmt("%s/..data_tmp", dir);

	unlink(tmp);
	cr_assert_eq(symlink(version, tmp), 0, "symlink ..data_tmp: %s", strerror(errno));
	cr_assert_eq(rename(tmp, h_fmt("%s/..data", dir)), 0, "rename ..data: %s", strerror(errno));
	if (old_version != NULL) {
		struct h_proc p;

		run_in(&p, ARGV("rm", "-rf", h_fmt("%s/%s", dir, old_version)), "/nonexistent");
		h_proc_free(&p);
	}
}

/* DIR/VERSION/{tls.crt,tls.key,ca.crt} from the certificate NAME made in SRC. */
static void k8s_version(const char *dir, const char *version, const char *src, const char *name)
{
	struct h_proc p;
	int rc = run_in(&p,
			ARGV("/bin/sh", "-c",
			     h_fmt("set -e; mkdir '%s/%s'; cp '%s/%s.pem' '%s/%s/tls.crt'; "
				   "cp '%s/%s.key' '%s/%s/tls.key'; cp '%s' '%s/%s/ca.crt'",
				   dir, version, src, name, dir, version, src, name, dir, version,
				   pki("ca.pem"), dir, version)),
			"/nonexistent");

	cr_assert_eq(rc, 0, "expected to lay out %s:\n%s", version, p.err);
	h_proc_free(&p);
}

Test(k8s_rotation, data_link_swapped_mid_traffic)
{
	const char *dir = h_tmpdir(), *src = h_tmpdir(), *stats = h_tmpdir();
	enum { VERSIONS = 4 };
	char *fps[VERSIONS], *out, *last, *reloaded;
	int port = h_free_port();
	struct h_proc *srv, client;
	struct h_env env;

	/* Each version has its own key: a key of one with the certificate of another fails. */
	for (int v = 0; v < VERSIONS; v++) {
		make_cert_days(src, h_fmt("v%d", v), 30);
		k8s_version(dir, h_fmt("..2026_12_06_00_00_0%d.00000000%d", v, v), src,
			    h_fmt("v%d", v));
		fps[v] = cert_sha256(h_fmt("%s/v%d.pem", src, v));
	}
	k8s_publish(dir, "..2026_12_06_00_00_00.000000000", NULL);
	for (const char *const *f = (const char *const[]){"tls.crt", "tls.key", "ca.crt", NULL};
	     *f != NULL; f++)
		cr_assert_eq(symlink(h_fmt("..data/%s", *f), h_fmt("%s/%s", dir, *f)), 0,
			     "symlink %s", *f);

	env_for(&env, stats);
	h_env_preload(&env);
	h_env_set(&env, "TLSSHIM_LOG", "info");
	h_env_set(&env, "TLSSHIM_POLICY", "accept 127.0.0.1:%d tls cert=%s/tls.crt key=%s/tls.key",
		  port, dir, dir);
	srv = h_server(ARGV(PY, "-m", "http.server", "-b", "127.0.0.1", "--directory",
			    (char *)h_tmpdir(), h_fmt("%d", port)),
		       &env, port, NULL);
	h_env_free(&env);

	/* Traffic all along: a new connection every 20 ms. */
	env_for(&env, stats);
	cr_assert_eq(h_spawn(&client,
			     ARGV(PY, "-c", (char *)traffic_py, h_fmt("%d", port), "7",
				  (char *)pki("ca.pem")),
			     &env, NULL, 0),
		     0, "expected the client to start");
	h_env_free(&env);
	for (int v = 1; v < VERSIONS; v++) {
		usleep(1500000);
		k8s_publish(dir, h_fmt("..2026_12_06_00_00_0%d.00000000%d", v, v),
			    h_fmt("..2026_12_06_00_00_0%d.00000000%d", v - 1, v - 1));
	}
	h_wait(&client, 30000);
	cr_expect(strstr(client.out, "FAIL 0") != NULL,
		  "expected every request to succeed across the rotations, client said:\n%s%s",
		  client.out, client.err);
	last = strrchr(client.out, 'C');
	cr_expect(last != NULL && strncmp(last, h_fmt("CERT %s", fps[VERSIONS - 1]), 69) == 0,
		  "expected the last version's certificate (%s) served at the end, client "
		  "saw:\n%s",
		  fps[VERSIONS - 1], client.out);
	for (char *l = strstr(client.out, "CERT "); l != NULL; l = strstr(l + 1, "CERT ")) {
		int known = 0;

		for (int v = 0; v < VERSIONS; v++)
			known |= strncmp(l + 5, fps[v], 64) == 0;
		cr_expect(known, "expected only the published certificates served, got:\n%s",
			  client.out);
	}
	h_collect(srv, 200);
	cr_expect(strstr(srv->err, "keeping the previous certificates") == NULL,
		  "expected no failed reload (a key of one version with another's "
		  "certificate), server said:\n%s",
		  srv->err);
	reloaded = strstr(srv->err, "certificates reloaded");
	cr_expect(reloaded != NULL, "expected the reloads logged, server said:\n%s", srv->err);
	out = wait_stats(stats, srv->pid, "loads)");
	cr_expect(strstr(out, h_fmt("(%d loads)", VERSIONS)) != NULL,
		  "expected %d certificate loads counted:\n%s", VERSIONS, out);
	cr_expect(strstr(out, "failed       0:") != NULL, "expected no failure counted:\n%s", out);
	free(out);
	h_proc_free(&client);
}

struct flapper {
	const char *dir;
	volatile int stop;
	long swaps;
};

/* Swaps ..data between two versions every half millisecond. */
static void *flap(void *arg)
{
	struct flapper *f = arg;
	const char *tmp = h_fmt("%s/..data_tmp", f->dir), *data = h_fmt("%s/..data", f->dir);

	while (!f->stop) {
		for (int v = 0; v < 2; v++) {
			unlink(tmp);
			if (symlink(v ? "..v1" : "..v0", tmp) == 0 && rename(tmp, data) == 0)
				f->swaps++;
			usleep(500);
		}
	}
	return NULL;
}

/*
 * Stress the window the snapshot closes: while ..data flips between two
 * versions with different keys, every reload must read the certificate and
 * the key of one version (OpenSSL would refuse a mixed pair: "does not match").
 */
Test(k8s_rotation, flapping_data_link_never_mixes_key_and_cert)
{
	const char *dir = h_tmpdir(), *src = h_tmpdir();
	int port = h_free_port();
	struct flapper f = {.dir = dir};
	struct h_proc *srv, client;
	struct h_env env;
	pthread_t t;

	for (int v = 0; v < 2; v++) {
		make_cert_days(src, h_fmt("v%d", v), 30);
		k8s_version(dir, h_fmt("..v%d", v), src, h_fmt("v%d", v));
	}
	k8s_publish(dir, "..v0", NULL);
	cr_assert_eq(symlink("..data/tls.crt", h_fmt("%s/tls.crt", dir)), 0, "symlink");
	cr_assert_eq(symlink("..data/tls.key", h_fmt("%s/tls.key", dir)), 0, "symlink");
	srv = start_http(
	    port, h_fmt("accept 127.0.0.1:%d tls cert=%s/tls.crt key=%s/tls.key", port, dir, dir),
	    "/nonexistent");
	cr_assert_eq(pthread_create(&t, NULL, flap, &f), 0, "expected the flapper thread");
	env_for(&env, "/nonexistent");
	h_spawn(&client,
		ARGV(PY, "-c", (char *)traffic_py, h_fmt("%d", port), "6", (char *)pki("ca.pem")),
		&env, NULL, 0);
	h_env_free(&env);
	h_wait(&client, 30000);
	f.stop = 1;
	pthread_join(t, NULL);
	h_collect(srv, 200);
	cr_expect(strstr(client.out, "FAIL 0") != NULL,
		  "expected every request to succeed, client said:\n%s%s", client.out, client.err);
	cr_expect(strstr(srv->err, "does not match") == NULL,
		  "expected no reload to pair a key with another version's certificate (%ld "
		  "swaps), server said:\n%s",
		  f.swaps, srv->err);
	h_proc_free(&client);
}
