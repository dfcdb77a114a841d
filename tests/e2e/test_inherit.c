/*
 * test_inherit.c - end-to-end tests of inherited connections (issue 17):
 * servers that never accept() in the process that serves the connection
 * (an inetd-style super-server that execs `cat`, systemd-socket-activate
 * --accept --inetd, git daemon, sshd), and clients that hand a connection to
 * a helper (a ProxyCommand-style program) before or after its handshake.
 *
 * Peers are real TLS programs without the shim (python3's ssl module, socat
 * OPENSSL:) on 127.0.0.1 with the test PKI. Small python3 programs (the
 * super-server, the peers, a recording proxy) are written to a temporary
 * directory by the test.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "e2e/harness.h"

#define PY        "/usr/bin/python3"
#define CLIENT_MS 30000

TestSuite(inherit_inetd, .fini = h_teardown, .timeout = 90);
TestSuite(inherit_activation, .fini = h_teardown, .timeout = 90);
TestSuite(inherit_git, .fini = h_teardown, .timeout = 120);
TestSuite(inherit_client, .fini = h_teardown, .timeout = 90);
TestSuite(inherit_refuse, .fini = h_teardown, .timeout = 90);
TestSuite(inherit_sshd, .fini = h_teardown, .timeout = 90);

/* Occurrences of NEEDLE in the LEN bytes at HAY (binary). */
static int count_mem(const char *hay, size_t len, const char *needle)
{
	size_t nl = strlen(needle);
	int n = 0;

	for (const char *p = memmem(hay, len, needle, nl); p;
	     p = memmem(p + 1, len - (size_t)(p + 1 - hay), needle, nl))
		n++;
	return n;
}

/* Writes TEXT to a new file NAME in the test's temporary directory; returns its path. */
static char *script(const char *name, const char *text, int exec)
{
	static const char *dir;
	char *path;

	if (dir == NULL)
		dir = h_tmpdir();
	path = h_fmt("%s/%s", dir, name);
	cr_assert_eq(h_write_file(path, text, strlen(text)), 0, "expected to write %s", path);
	if (exec)
		chmod(path, 0755);
	return path;
}

/* A port outside the kernel's ephemeral range (a client's local port never is one of these). */
static int low_port(void)
{
	/* Tests run in parallel, each forked from the same runner: seed apart. */
	srandom((unsigned)getpid() * 2654435761u);
	for (int tries = 0; tries < 200; tries++) {
		int p = 20000 + (int)(random() % 10000);

		if (!h_port_listening(p))
			return p;
	}
	return h_free_port();
}

static char *accept_rule(int port, const char *action)
{
	return h_fmt("accept 127.0.0.1:%d %s cert=%s key=%s", port, action, pki("server.pem"),
		     pki("server.key"));
}

/* Starts ARGV with ENV (consumed) and waits until something listens on PORT. */
static struct h_proc *start(char *const argv[], struct h_env *env, int port)
{
	struct h_proc *p = h_server(argv, env, port, NULL);

	h_env_free(env);
	return p;
}

/* An environment under the shim with POLICY (log at LOG, to stderr). */
static void shim_env(struct h_env *e, const char *policy, const char *log)
{
	h_env_init(e);
	h_env_preload(e);
	h_env_set(e, "TLSSHIM_POLICY", "%s", policy);
	h_env_set(e, "TLSSHIM_LOG", "%s", log);
	h_env_set(e, "PYTHONUNBUFFERED", "1");
}

/*
 * Starts python3 program TEXT (written as NAME) with PORT and ARG (may be
 * NULL) under the TLS accept rule for PORT, logging at info; waits until it
 * listens on PORT.
 */
static struct h_proc *tls_py_server(int port, const char *name, const char *text, char *arg)
{
	struct h_env e;

	shim_env(&e, accept_rule(port, "tls"), "info");
	return start(ARGV(PY, script(name, text, 0), h_fmt("%d", port), arg), &e, port);
}

/* ---- the programs ------------------------------------------------------------------ */

/* A tiny inetd: accept, fork, put the connection on 0 and 1, exec the service. */
static const char *superd_py =
    "import os, socket, sys\n"
    "port = int(sys.argv[1]); argv = sys.argv[2:]\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', port)); s.listen(16)\n"
    "while True:\n"
    "    c, _ = s.accept()\n"
    "    if os.fork() == 0:\n"
    "        s.close(); os.dup2(c.fileno(), 0); os.dup2(c.fileno(), 1); c.close()\n"
    "        os.execvp(argv[0], argv)\n"
    "    c.close()\n"
    "    try:\n"
    "        while os.waitpid(-1, os.WNOHANG)[0] > 0: pass\n"
    "    except ChildProcessError: pass\n";

/*
 * A native TLS client: sends each argument after PORT CA as a line (or, for
 * "@N", N pattern bytes) and expects, in order, the replies given by
 * "=TEXT" arguments (a line) or "@N" (the same bytes echoed). Prints OK or
 * what differed; "EOF" checks that the server ends the stream next.
 */
static const char *tlsc_py =
    "import socket, ssl, sys\n"
    "port, ca = int(sys.argv[1]), sys.argv[2]\n"
    "ctx = ssl.create_default_context(cafile=ca)\n"
    "s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', port), timeout=20),\n"
    "                    server_hostname='localhost')\n"
    "def take(n):\n"
    "    b = b''\n"
    "    while len(b) < n:\n"
    "        d = s.recv(n - len(b))\n"
    "        if not d: break\n"
    "        b += d\n"
    "    return b\n"
    "def line():\n"
    "    b = b''\n"
    "    while not b.endswith(b'\\n'):\n"
    "        d = s.recv(1)\n"
    "        if not d: break\n"
    "        b += d\n"
    "    return b\n"
    "for a in sys.argv[3:]:\n"
    "    if a.startswith('@'):\n"
    "        n = int(a[1:]); data = bytes((i * 7 + i // 251) % 256 for i in range(n))\n"
    "        s.sendall(data); got = take(n)\n"
    "        if got != data: print('MISMATCH after', len(got), 'of', n); sys.exit(1)\n"
    "    elif a.startswith('='):\n"
    "        got = line().decode(errors='replace')\n"
    "        if got != a[1:] + '\\n': print('EXPECTED', repr(a[1:]), 'GOT', repr(got)); "
    "sys.exit(1)\n"
    "    elif a == 'EOF':\n"
    "        rest = s.recv(100)\n"
    "        if rest: print('EXPECTED EOF, GOT', repr(rest)); sys.exit(1)\n"
    "    else:\n"
    "        s.sendall(a.encode() + b'\\n')\n"
    "print('OK')\n";

/* Runs the native TLS client against PORT with ARGS...; returns its exit code. */
static int tls_client(struct h_proc *p, int port, char *a1, char *a2, char *a3, char *a4, char *a5)
{
	char *path = script("tlsc.py", tlsc_py, 0);
	struct h_env e;
	int rc;

	h_env_init(&e);
	rc = h_run(p, ARGV(PY, path, h_fmt("%d", port), pki("ca.pem"), a1, a2, a3, a4, a5), &e,
		   CLIENT_MS);
	h_env_free(&e);
	return rc;
}

/* ---- inetd-style super-server under the shim -------------------------------------- */

Test(inherit_inetd, super_server_under_shim_execs_cat_and_echo_is_exact)
{
	int port = h_free_port();
	struct h_proc *srv, c;
	int rc;

	srv = tls_py_server(port, "superd.py", superd_py, "cat");
	for (int i = 0; i < 2; i++) {
		rc = tls_client(&c, port, "@1", "@200000", "@5", NULL, NULL);
		cr_expect_eq(rc, 0,
			     "expected cat behind the super-server to echo 200005 bytes over TLS "
			     "(connection %d), got %d:\n%s%s",
			     i + 1, rc, c.out, c.err);
		h_proc_free(&c);
	}
	h_collect(srv, 200);
	cr_expect(strstr(srv->err, "inherited connection on fd 0 adopted") != NULL,
		  "expected cat's shim to log that it adopted fd 0, got:\n%s", srv->err);
	cr_expect(strstr(srv->err, "inherited on standard input/output: its TLS session moved "
				   "to relay process") != NULL,
		  "expected cat's shim to keep the session in a relay (stdio), got:\n%s", srv->err);
}

/* A statically linked cat: the loader ignores LD_PRELOAD for it. */
static const char *static_cat_c = "#include <unistd.h>\n"
				  "int main(void)\n"
				  "{\n"
				  "\tchar b[65536];\n"
				  "\tssize_t n;\n"
				  "\twhile ((n = read(0, b, sizeof(b))) > 0)\n"
				  "\t\tfor (ssize_t o = 0, w; o < n; o += w)\n"
				  "\t\t\tif ((w = write(1, b + o, (size_t)(n - o))) <= 0)\n"
				  "\t\t\t\treturn 1;\n"
				  "\treturn 0;\n"
				  "}\n";

/*
 * The super-server execs a program that will not load the library: the
 * connection cannot be left for it to adopt, so it goes through a relay
 * (before, the static program got the TCP socket and echoed the TLS records).
 */
Test(inherit_inetd, static_program_gets_the_connection_through_a_relay)
{
	int port = h_free_port();
	char *src = script("static_cat.c", static_cat_c, 0), *bin = h_fmt("%s.bin", src);
	struct h_env e;
	struct h_proc *srv, c;
	int rc;

	h_env_init(&e);
	rc = h_run(&c, ARGV("cc", "-static", "-O2", "-o", bin, src), &e, 60000);
	h_env_free(&e);
	cr_assert_eq(rc, 0, "expected a static build of cat, got %d:\n%s", rc, c.err);
	h_proc_free(&c);
	srv = tls_py_server(port, "superd.py", superd_py, bin);
	rc = tls_client(&c, port, "@100000", "@7", NULL, NULL, NULL);
	cr_expect_eq(rc, 0, "expected the static cat to echo over TLS, got %d:\n%s%s", rc, c.out,
		     c.err);
	h_proc_free(&c);
	h_collect(srv, 200);
	cr_expect(strstr(srv->err, "its TLS session moved to relay process") != NULL,
		  "expected a relay for a program the library cannot be loaded into, got:\n%s",
		  srv->err);
}

/* The service reads a line (the session carries data), then execs twice more. */
static const char *after_sh =
    "#!/bin/sh\n"
    "read line\n"
    "echo \"got $line\"\n"
    "exec " PY " -c 'import os, socket\n"
    "s = socket.socket(fileno=0)\n"
    "print(\"peer\", s.family.name, s.proto, s.getpeername()[0], s.getsockname()[1], flush=True)\n"
    "s.detach()\n"
    "os.execvp(\"cat\", [\"cat\"])'\n";

Test(inherit_inetd, session_that_carried_data_follows_two_execs)
{
	int port = h_free_port();
	struct h_proc *srv, c;
	int rc;

	srv = tls_py_server(port, "superd.py", superd_py, script("after.sh", after_sh, 1));
	rc = tls_client(&c, port, "hello", "=got hello",
			h_fmt("=peer AF_INET 6 127.0.0.1 %d", port), "@150000", "@3");
	cr_expect_eq(rc, 0,
		     "expected the shell's reply, the TCP addresses from python after exec, "
		     "and cat's exact echo after a second exec, got %d:\n%s%s",
		     rc, c.out, c.err);
	h_proc_free(&c);
	h_collect(srv, 200);
	cr_expect(strstr(srv->err, "moved to relay process") != NULL,
		  "expected a log line saying the session moved to a relay, got:\n%s", srv->err);
	cr_expect(strstr(srv->err, "warn") == NULL, "expected no warning, got:\n%s", srv->err);
}

/* ---- systemd socket activation (the super-server is not under the shim) ---------- */

static const char *echo_py = "import sys\n"
			     "for line in sys.stdin:\n"
			     "    sys.stdout.write('echo: ' + line); sys.stdout.flush()\n";

/*
 * The words that start a program under the shim with RULE (log at info):
 * `tlsshim run --log info -p RULE --`. systemd-socket-activate passes the
 * service no environment of its own, and under SAN=asan the sanitizer
 * runtime must come first in LD_PRELOAD, which `run` does not do: then
 * `env LD_PRELOAD=... TLSSHIM_POLICY=RULE TLSSHIM_LOG=info`.
 */
static int under_shim(char **w, const char *rule)
{
	struct h_env e;
	int n = 0;

	if (h_san() == NULL) {
		w[n++] = (char *)h_cmd();
		w[n++] = "run";
		w[n++] = "--log";
		w[n++] = "info";
		w[n++] = "-p";
		w[n++] = (char *)rule;
		w[n++] = "--";
		return n;
	}
	h_env_init(&e);
	h_env_preload(&e);
	w[n++] = "env";
	w[n++] = h_fmt("LD_PRELOAD=%s", h_env_get(&e, "LD_PRELOAD"));
	w[n++] = h_fmt("TLSSHIM_POLICY=%s", rule);
	w[n++] = "TLSSHIM_LOG=info";
	h_env_free(&e);
	return n;
}

/* systemd-socket-activate --accept --inetd on PORT running the echo under the shim with RULE. */
static struct h_proc *activate(int port, const char *rule)
{
	char *argv[20] = {"systemd-socket-activate", "--accept", "--inetd", "-l",
			  h_fmt("127.0.0.1:%d", port)};
	int n = 5;
	struct h_env e;

	n += under_shim(argv + n, rule);
	argv[n++] = PY;
	argv[n++] = script("echo.py", echo_py, 0);
	argv[n] = NULL;
	h_env_init(&e);
	return start(argv, &e, port);
}

/* A cleartext client: sends LINE, prints everything it gets until EOF (or 5 s). */
static int plain_client(struct h_proc *p, int port, const char *line)
{
	struct h_env e;
	int rc;

	h_env_init(&e);
	rc = h_run(p,
		   ARGV(PY, "-c",
			"import socket, sys\n"
			"s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5)\n"
			"s.sendall(sys.argv[2].encode() + b'\\n')\n"
			"b = b''\n"
			"try:\n"
			"    while True:\n"
			"        d = s.recv(4096)\n"
			"        if not d: break\n"
			"        b += d\n"
			"except OSError as e: print('ERR', e.__class__.__name__, file=sys.stderr)\n"
			"sys.stdout.write(b.decode('latin-1'))\n",
			h_fmt("%d", port), (char *)line),
		   &e, CLIENT_MS);
	h_env_free(&e);
	return rc;
}

Test(inherit_activation, socket_activated_echo_serves_tls_and_refuses_cleartext)
{
	int port = h_free_port();
	struct h_proc *srv, c;
	int rc;

	srv = activate(port, accept_rule(port, "tls"));
	rc = tls_client(&c, port, "one", "=echo: one", "two", "=echo: two", NULL);
	cr_expect_eq(rc, 0, "expected the activated echo to answer over TLS, got %d:\n%s%s", rc,
		     c.out, c.err);
	h_proc_free(&c);
	rc = plain_client(&c, port, "cleartext");
	cr_expect(strstr(c.out, "cleartext") == NULL && strstr(c.out, "echo") == NULL,
		  "expected a cleartext client to get no cleartext answer, got:\n%s", c.out);
	h_proc_free(&c);
	h_collect(srv, 500);
	cr_expect(strstr(srv->err, "not speaking TLS") != NULL,
		  "expected the refusal to be logged, got:\n%s", srv->err);
}

Test(inherit_activation, auto_rule_serves_both_kinds_of_client)
{
	int port = h_free_port();
	struct h_proc c;
	int rc;

	activate(port, accept_rule(port, "auto"));
	rc = tls_client(&c, port, "tls", "=echo: tls", NULL, NULL, NULL);
	cr_expect_eq(rc, 0, "expected a TLS client served under auto, got %d:\n%s%s", rc, c.out,
		     c.err);
	h_proc_free(&c);
	plain_client(&c, port, "plain");
	cr_expect(strstr(c.out, "echo: plain") != NULL,
		  "expected a cleartext client served under auto, got:\n%s%s", c.out, c.err);
	h_proc_free(&c);
}

/*
 * A program sets TLSSHIM_INHERIT itself, claiming its inherited socket was
 * one `auto` let through in cleartext and one a client made for another
 * name: neither may weaken the `tls` rule that covers it.
 */
Test(inherit_activation, forged_hints_cannot_weaken_the_rule)
{
	int port = h_free_port();
	struct h_env e;
	struct h_proc c;
	int rc;

	char *argv[24] = {"systemd-socket-activate",
			  "--accept",
			  "--inetd",
			  "-l",
			  h_fmt("127.0.0.1:%d", port),
			  "/bin/sh",
			  "-c",
			  "i=$(stat -L -c %i /proc/self/fd/0); "
			  "TLSSHIM_INHERIT=\"a 0 $i 0 p;a 1 $i 0 c evil.test\" exec \"$@\"",
			  "sh"};
	int n = 9;

	n += under_shim(argv + n, accept_rule(port, "tls"));
	argv[n++] = PY;
	argv[n++] = script("echo.py", echo_py, 0);
	argv[n] = NULL;
	h_env_init(&e);
	start(argv, &e, port);
	rc = tls_client(&c, port, "one", "=echo: one", NULL, NULL, NULL);
	cr_expect_eq(rc, 0, "expected TLS despite the forged hints, got %d:\n%s%s", rc, c.out,
		     c.err);
	h_proc_free(&c);
	plain_client(&c, port, "cleartext");
	cr_expect(strstr(c.out, "echo") == NULL,
		  "expected a cleartext client to get nothing despite the forged hints, got:\n%s",
		  c.out);
	h_proc_free(&c);
}

Test(inherit_activation, deny_rule_closes_the_inherited_connection)
{
	int port = h_free_port();
	struct h_proc *srv, c;

	srv = activate(port, h_fmt("accept 127.0.0.1:%d deny", port));
	plain_client(&c, port, "hello");
	cr_expect(strstr(c.out, "echo") == NULL,
		  "expected a denied connection to get nothing, got:\n%s", c.out);
	h_proc_free(&c);
	h_collect(srv, 500);
	cr_expect(strstr(srv->err, "inherited connection denied by policy") != NULL,
		  "expected the denial to be logged, got:\n%s", srv->err);
}

/* ucspi-tcp: tcpserver (not under the shim) starts the service with the connection on 0/1. */
Test(inherit_activation, tcpserver_service_serves_tls)
{
	int port = h_free_port();
	char *argv[20] = {"tcpserver", "-q", "127.0.0.1", h_fmt("%d", port)};
	int n = 4;
	struct h_env e;
	struct h_proc c;
	int rc;

	n += under_shim(argv + n, accept_rule(port, "tls"));
	argv[n++] = PY;
	argv[n++] = script("echo.py", echo_py, 0);
	argv[n] = NULL;
	h_env_init(&e);
	start(argv, &e, port);
	rc = tls_client(&c, port, "one", "=echo: one", "two", "=echo: two", NULL);
	cr_expect_eq(rc, 0, "expected the tcpserver service to answer over TLS, got %d:\n%s%s", rc,
		     c.out, c.err);
	h_proc_free(&c);
	plain_client(&c, port, "cleartext");
	cr_expect(strstr(c.out, "echo") == NULL,
		  "expected a cleartext client to get nothing, got:\n%s", c.out);
	h_proc_free(&c);
}

/* ---- git daemon ----------------------------------------------------------------- */

static void sh(const char *cmd)
{
	struct h_proc p;
	struct h_env e;
	int rc;

	h_env_init(&e);
	rc = h_run(&p, ARGV("/bin/sh", "-c", (char *)cmd), &e, 60000);
	h_env_free(&e);
	cr_assert_eq(rc, 0, "expected `%s` to succeed, got %d:\n%s%s", cmd, rc, p.out, p.err);
	h_proc_free(&p);
}

Test(inherit_git, git_daemon_clone_over_tls_is_byte_identical)
{
	int port = h_free_port();
	const char *dir = h_tmpdir();
	char *proxy = script("gitproxy.sh",
			     h_fmt("#!/bin/sh\n# -t: git closes its writing side long before the "
				   "pack is all read\nexec socat -t 60 - "
				   "OPENSSL:127.0.0.1:$2,cafile=%s,commonname=localhost\n",
				   pki("ca.pem")),
			     1);
	struct h_env e;
	struct h_proc *srv, c;
	int rc;

	sh(h_fmt("set -e; cd %s; git init -q --bare repos/proj.git; git init -q src; cd src; "
		 "for i in $(seq 1 40); do head -c 30000 /dev/urandom | base64 > f$i; done; "
		 "head -c 300000 /dev/urandom > blob.bin; git add .; "
		 "git -c user.email=t@t -c user.name=t commit -qm one; "
		 "git push -q ../repos/proj.git HEAD:refs/heads/master",
		 dir));
	shim_env(&e, accept_rule(port, "tls"), "debug");
	srv = start(ARGV("git", "daemon", "--export-all", h_fmt("--base-path=%s/repos", dir),
			 "--listen=127.0.0.1", h_fmt("--port=%d", port), "--reuseaddr"),
		    &e, port);
	h_env_init(&e);
	rc = h_run(&c,
		   ARGV("git", "-c", h_fmt("core.gitProxy=%s", proxy), "clone", "-q",
			h_fmt("git://127.0.0.1:%d/proj.git", port), h_fmt("%s/clone", dir)),
		   &e, 60000);
	h_env_free(&e);
	h_collect(srv, 300);
	cr_assert_eq(rc, 0,
		     "expected git clone through socat OPENSSL: to succeed, got %d:\n%s%s\n"
		     "git daemon said:\n%s",
		     rc, c.out, c.err, srv->err);
	h_proc_free(&c);
	sh(h_fmt("cd %s && diff -r --exclude=.git src clone && "
		 "test \"$(git -C src rev-parse HEAD)\" = \"$(git -C clone rev-parse HEAD)\" && "
		 "git -C clone fsck --strict --no-progress",
		 dir));
	/* A cleartext git client gets nothing. */
	h_env_init(&e);
	rc = h_run(&c,
		   ARGV("git", "clone", "-q", h_fmt("git://127.0.0.1:%d/proj.git", port),
			h_fmt("%s/plain", dir)),
		   &e, 30000);
	h_env_free(&e);
	cr_expect_neq(rc, 0, "expected a cleartext git clone to fail, it succeeded");
	h_proc_free(&c);
	h_collect(srv, 300);
	cr_expect(strstr(srv->err, "moved to relay process") != NULL,
		  "expected upload-pack to get the session through a relay, got:\n%s", srv->err);
}

/* ---- client side --------------------------------------------------------------- */

/* A native TLS echo server on PORT: each line back, until the client closes. */
static const char *tls_echo_py =
    "import socket, ssl, sys, threading\n"
    "port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]\n"
    "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert, key)\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', port)); s.listen(8)\n"
    "def serve(c):\n"
    "    try:\n"
    "        t = ctx.wrap_socket(c, server_side=True)\n"
    "        f = t.makefile('rwb')\n"
    "        for line in f:\n"
    "            f.write(line); f.flush()\n"
    "    except Exception as e: print('server:', e, flush=True)\n"
    "while True:\n"
    "    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()\n";

static struct h_proc *start_tls_echo(int port)
{
	struct h_env e;

	h_env_init(&e);
	return start(ARGV(PY, script("tls_echo.py", tls_echo_py, 0), h_fmt("%d", port),
			  pki("server.pem"), pki("server.key")),
		     &e, port);
}

/* Connects to PORT, puts the socket on 0 and 1, execs the rest of argv. */
static const char *launch_py =
    "import os, socket, sys\n"
    "c = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
    "if sys.argv[2] == 'talk':\n"
    "    c.sendall(b'first\\n'); b = b''\n"
    "    while not b.endswith(b'\\n'): b += c.recv(1)\n"
    "    print('launcher got', b.decode().strip(), file=sys.stderr, flush=True)\n"
    "os.dup2(c.fileno(), 0); os.dup2(c.fileno(), 1); c.close()\n"
    "os.execvp(sys.argv[3], sys.argv[3:])\n";

static const char *helper_sh = "echo second; read x; echo \"helper got $x\" >&2";

Test(inherit_client, proxycommand_style_helper_adopts_by_its_connect_rule)
{
	int port = low_port();
	struct h_proc c;
	struct h_env e;
	int rc;

	start_tls_echo(port);
	/* The launcher is plain; only the helper it execs runs under the shim. */
	h_env_init(&e);
	h_env_set(&e, "TLSSHIM_LOG", "info");
	rc = h_run(&c,
		   ARGV(PY, script("launch.py", launch_py, 0), h_fmt("%d", port), "quiet",
			(char *)h_cmd(), "run", "-p",
			h_fmt("connect 127.0.0.1:%d tls ca=%s", port, pki("ca.pem")), "--",
			"/bin/sh", "-c", (char *)helper_sh),
		   &e, CLIENT_MS);
	h_env_free(&e);
	cr_expect_eq(rc, 0, "expected the helper to run, got %d:\n%s", rc, c.err);
	cr_expect(strstr(c.err, "helper got second") != NULL,
		  "expected the helper to talk TLS to the native server by its connect rule, "
		  "got:\n%s",
		  c.err);
	h_proc_free(&c);
}

/* ucspi-tcp: tcpclient (not under the shim) runs its program with the connection on fds 6/7. */
Test(inherit_client, tcpclient_program_adopts_fds_6_and_7)
{
	int port = low_port();
	char *argv[20] = {"tcpclient", "127.0.0.1", h_fmt("%d", port)};
	int n = 3;
	struct h_proc c;
	struct h_env e;
	int rc;

	start_tls_echo(port);
	n += under_shim(argv + n, h_fmt("connect 127.0.0.1:%d tls ca=%s", port, pki("ca.pem")));
	argv[n++] = "/bin/sh";
	argv[n++] = "-c";
	argv[n++] = "echo via-tcpclient >&7; read x <&6; echo \"helper got $x\" >&2";
	argv[n] = NULL;
	h_env_init(&e);
	rc = h_run(&c, argv, &e, CLIENT_MS);
	h_env_free(&e);
	cr_expect_eq(rc, 0, "expected the program to run, got %d:\n%s", rc, c.err);
	cr_expect(strstr(c.err, "helper got via-tcpclient") != NULL,
		  "expected the program to talk TLS on fds 6/7 by its connect rule, got:\n%s",
		  c.err);
	h_proc_free(&c);
}

Test(inherit_client, client_session_follows_exec_to_a_helper)
{
	int port = low_port();
	struct h_proc c, *srv;
	struct h_env e;
	int rc;

	srv = start_tls_echo(port);
	shim_env(&e, h_fmt("connect 127.0.0.1:%d tls ca=%s", port, pki("ca.pem")), "info");
	rc = h_run(&c,
		   ARGV(PY, script("launch.py", launch_py, 0), h_fmt("%d", port), "talk", "/bin/sh",
			"-c", (char *)helper_sh),
		   &e, CLIENT_MS);
	h_env_free(&e);
	cr_expect_eq(rc, 0, "expected the helper to run, got %d:\n%s", rc, c.err);
	h_collect(srv, 100);
	cr_expect(strstr(c.err, "launcher got first") != NULL &&
		      strstr(c.err, "helper got second") != NULL,
		  "expected the launcher and then the exec'd helper to talk over one TLS "
		  "session, got:\n%s\nthe server said:\n%s",
		  c.err, srv->out);
	cr_expect(strstr(c.err, "moved to relay process") != NULL,
		  "expected the session to move to a relay, got:\n%s", c.err);
	h_proc_free(&c);
}

/* ---- what cannot follow ------------------------------------------------------------ */

/*
 * A server under the shim accepts (the connection is wrapped in this
 * process, on a socket that is not its stdio), talks over TLS, then runs a
 * child through subprocess, which uses vfork(): the parent keeps the session,
 * so the child cannot have it. The child is given the connection's fd and
 * tries three PATH entries; then the server writes again itself.
 */
static const char *vfork_py =
    "import os, socket, subprocess, sys\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(1)\n"
    "c, _ = s.accept(); f = c.makefile('rb')\n"
    "c.sendall(b'got ' + f.readline())\n"
    "env = dict(os.environ, PATH='/nonexistent/a:/nonexistent/b:/usr/bin:/bin')\n"
    "r = subprocess.run(['sh', '-c', 'echo from-child >&%d' % c.fileno()],\n"
    "                   pass_fds=(c.fileno(),), env=env)\n"
    "sys.stderr.write('child exit %d\\n' % r.returncode)\n"
    "c.sendall(b'after\\n'); c.close()\n";

Test(inherit_refuse, child_that_cannot_take_the_session_gets_an_error_not_records)
{
	int port = h_free_port();
	struct h_proc *srv, c;
	int rc;

	srv = tls_py_server(port, "vfork.py", vfork_py, NULL);
	rc = tls_client(&c, port, "x", "=got x", "=after", "EOF", NULL);
	cr_expect_eq(rc, 0,
		     "expected the server's own replies and nothing from the child, got %d:\n%s%s",
		     rc, c.out, c.err);
	h_proc_free(&c);
	h_wait(srv, 5000);
	cr_expect(strstr(srv->err, "child exit 0") == NULL,
		  "expected the child's write to fail, got:\n%s", srv->err);
	cr_expect_eq(h_count(srv->err, "refused to the new program"), 1,
		     "expected one refusal line for one exec (three PATH tries), got:\n%s",
		     srv->err);
}

/*
 * system() and posix_spawn() exec inside glibc, past the exec hooks, and the
 * server goes on: the connection moves into a relay first, then the
 * children and the server all write through it.
 */
static const char *spawn_py =
    "import os, socket, sys\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(1)\n"
    "c, _ = s.accept(); f = c.makefile('rb')\n"
    "c.sendall(b'got ' + f.readline())\n"
    "fd = c.fileno(); os.set_inheritable(fd, True)\n"
    "os.system('echo from-system >&%d' % fd)\n"
    "pid = os.posix_spawn('/bin/sh', ['sh', '-c', 'echo from-spawn >&%d' % fd], os.environ)\n"
    "os.waitpid(pid, 0)\n"
    "c.sendall(b'after\\n'); c.close()\n";

Test(inherit_refuse, system_and_posix_spawn_children_write_through_a_relay)
{
	int port = h_free_port();
	struct h_proc *srv, c;
	int rc;

	srv = tls_py_server(port, "spawn.py", spawn_py, NULL);
	rc = tls_client(&c, port, "x", "=got x", "=from-system", "=from-spawn", "=after");
	cr_expect_eq(rc, 0,
		     "expected the server's and both children's lines over TLS, got %d:\n%s%s", rc,
		     c.out, c.err);
	h_proc_free(&c);
	h_wait(srv, 5000);
	cr_expect(strstr(srv->err, "spawn of sh: its TLS session moved to relay process") != NULL,
		  "expected the session to move to a relay at system(), got:\n%s", srv->err);
}

/*
 * A server whose connection is on many fds (dup'ed onto 10..19, all
 * inheritable) execs a program that writes on the last of them: every fd
 * goes through the relay, none reaches the new program as the raw TCP socket.
 */
static const char *manyfd_py =
    "import os, socket, sys\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(1)\n"
    "c, _ = s.accept(); f = c.makefile('rb')\n"
    "c.sendall(b'got ' + f.readline())\n"
    "for fd in range(10, 20): os.dup2(c.fileno(), fd)\n"
    "os.execv(sys.executable, [sys.executable, '-c',\n"
    "         'import os; os.write(10, b\"via-10\\\\n\"); os.write(19, b\"via-19\\\\n\")'])\n";

Test(inherit_refuse, connection_on_many_fds_follows_exec_on_every_one)
{
	int port = h_free_port();
	struct h_proc *srv, c;
	int rc;

	srv = tls_py_server(port, "manyfd.py", manyfd_py, NULL);
	rc = tls_client(&c, port, "x", "=got x", "=via-10", "=via-19", "EOF");
	cr_expect_eq(rc, 0,
		     "expected both lines over TLS (fd 19 through the relay too), got %d:\n%s%s",
		     rc, c.out, c.err);
	h_proc_free(&c);
	h_wait(srv, 5000);
	cr_expect(strstr(srv->err, "its TLS session moved to relay process") != NULL,
		  "expected the session to move to a relay, got:\n%s", srv->err);
}

/* TLSSHIM_INHERIT is program-writable: malformed entries are ignored, never trusted. */
Test(inherit_refuse, malformed_inherit_entries_are_ignored)
{
	static const char *const bad[] = {
	    ";;;",
	    "a",
	    "a 0",
	    "a -5 1 0",
	    "a 99999999999999999999 1 0 c x",
	    "r",
	    "r 1 4 nonsense 1 :: 2 1",
	    "x",
	    "a 0 1 0 c " /* empty name */,
	    "a 1 1 zz p p p p p p p p p p",
	    "\x01\xff garbage",
	};
	char big[6000];
	struct h_env e;
	struct h_proc c;
	int rc;

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "a 0 1 0 c ", 10);
	for (size_t i = 0; i <= sizeof(bad) / sizeof(bad[0]); i++) {
		const char *v = i < sizeof(bad) / sizeof(bad[0]) ? bad[i] : big;

		shim_env(&e, accept_rule(4433, "tls"), "warn");
		h_env_set(&e, "TLSSHIM_INHERIT", "%s", v);
		rc = h_run(&c, ARGV(PY, "-c", "print('ran')"), &e, CLIENT_MS);
		h_env_free(&e);
		cr_expect(rc == 0 && strstr(c.out, "ran") != NULL,
			  "expected a program to run normally with TLSSHIM_INHERIT=\"%.60s\", got "
			  "%d:\n%s",
			  v, rc, c.err);
		h_proc_free(&c);
	}
}

/* ---- sshd ------------------------------------------------------------------------ */

/* Forwards 127.0.0.1:LISTEN to 127.0.0.1:TO, appending every byte both ways to FILE. */
static const char *tap_py =
    "import socket, sys, threading\n"
    "lp, tp, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]\n"
    "out = open(path, 'ab', buffering=0); lock = threading.Lock()\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', lp)); s.listen(4)\n"
    "def pump(a, b):\n"
    "    try:\n"
    "        while True:\n"
    "            d = a.recv(65536)\n"
    "            if not d: break\n"
    "            with lock: out.write(d)\n"
    "            b.sendall(d)\n"
    "    except OSError: pass\n"
    "    try: b.shutdown(socket.SHUT_WR)\n"
    "    except OSError: pass\n"
    "while True:\n"
    "    c, _ = s.accept(); u = socket.create_connection(('127.0.0.1', tp))\n"
    "    threading.Thread(target=pump, args=(c, u), daemon=True).start()\n"
    "    threading.Thread(target=pump, args=(u, c), daemon=True).start()\n";

Test(inherit_sshd, ssh_over_tls_to_sshd_and_no_cleartext_on_the_wire)
{
	int port = h_free_port(), tport = h_free_port();
	const char *dir = h_tmpdir();
	char *wire = h_fmt("%s/wire", dir), *got;
	struct h_env e;
	struct h_proc c, *sshd;
	size_t len = 0;
	int rc;

	sh(h_fmt(
	    "set -e; cd %s; ssh-keygen -q -t ed25519 -N '' -f hostkey; "
	    "ssh-keygen -q -t ed25519 -N '' -f userkey; cp userkey.pub authorized_keys; "
	    "mkdir -p /run/sshd; printf 'Port %d\\nListenAddress 127.0.0.1\\nHostKey %s/hostkey\\n"
	    "PidFile none\\nUsePAM no\\nStrictModes no\\nAuthorizedKeysFile %s/authorized_keys\\n"
	    "PasswordAuthentication no\\nKbdInteractiveAuthentication no\\n' > sshd_config",
	    dir, port, dir, dir));
	shim_env(&e, accept_rule(port, "tls"), "info");
	sshd =
	    start(ARGV("/usr/sbin/sshd", "-D", "-e", "-f", h_fmt("%s/sshd_config", dir)), &e, port);
	h_env_init(&e);
	start(ARGV(PY, script("tap.py", tap_py, 0), h_fmt("%d", tport), h_fmt("%d", port), wire),
	      &e, tport);
	/* ssh under a connect rule, through the tap. */
	shim_env(&e, h_fmt("connect 127.0.0.1:%d tls ca=%s", tport, pki("ca.pem")), "info");
	rc = h_run(&c,
		   ARGV("ssh", "-i", h_fmt("%s/userkey", dir), "-p", h_fmt("%d", tport), "-o",
			"StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o",
			"BatchMode=yes", "-o", "ConnectTimeout=30", "root@127.0.0.1", "echo",
			"hello-ssh"),
		   &e, CLIENT_MS);
	h_env_free(&e);
	/*
	 * sshd re-execs itself with the connection on fd 0/1, which the shim
	 * adopts into a relay: its privilege-separated children (one in a
	 * seccomp sandbox, one forked after authentication) all use a local
	 * socket, and getpeername() answers with the TCP addresses.
	 */
	h_collect(sshd, 200);
	cr_expect_eq(rc, 0,
		     "expected ssh to sshd, both under the shim, to run a command, got %d:\n%s\n"
		     "sshd said:\n%s",
		     rc, c.err, sshd->err);
	cr_expect(strstr(c.out, "hello-ssh") != NULL, "expected the command's output, got:\n%s",
		  c.out);
	h_proc_free(&c);
	/* A cleartext ssh client against the same sshd. */
	h_env_init(&e);
	h_run(&c,
	      ARGV("ssh", "-i", h_fmt("%s/userkey", dir), "-p", h_fmt("%d", tport), "-o",
		   "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o",
		   "BatchMode=yes", "-o", "ConnectTimeout=10", "root@127.0.0.1", "true"),
	      &e, CLIENT_MS);
	h_env_free(&e);
	h_proc_free(&c);
	got = h_read_file(wire, &len);
	cr_assert_not_null(got, "expected the tap to record the wire");
	cr_expect(len > 0, "expected the tap to see traffic");
	/* The client's own banner goes out in cleartext from the plain ssh; sshd's never. */
	cr_expect(count_mem(got, len, "SSH-2.0-OpenSSH") <= 1,
		  "expected no cleartext banner from sshd on the wire (only the plain client's)");
	cr_expect(memmem(got, len, "ssh-ed25519", 11) == NULL &&
		      memmem(got, len, "hello-ssh", 9) == NULL,
		  "expected no cleartext key exchange or session data on the wire");
	free(got);
}
