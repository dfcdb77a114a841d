/*
 * test_runtimes.c - runtimes and programs we did not write, under the shim:
 * a program doing its own TLS (python's ssl) over wrapped sockets, where the
 * program's OpenSSL and the shim's share the thread; node (libuv) and a C
 * client with libuv's read rule reading a stream that ends with a hang-up; a
 * program confined by a seccomp filter that allows only its own calls.
 *
 * Every program gets an explicit environment; the shim is never loaded into
 * this binary.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "e2e/harness.h"

#define PYTHON "/usr/bin/python3"
#define RUN_MS 60000

TestSuite(runtimes, .timeout = 120);

/* The environment of a program under the shim with POLICY. */
static void shim_env(struct h_env *e, const char *policy)
{
	h_env_shim(e, policy);
	h_env_set(e, "TLSSHIM_LOG", "warn");
	h_env_set(e, "PYTHONUNBUFFERED", "1");
}

/* Both directions of PORT wrapped, as a wrap-every-loopback-connection policy would. */
static const char *both_policy(int port)
{
	return h_fmt("connect 127.0.0.1:%d tls ca=%s name=localhost; "
		     "accept 127.0.0.1:%d tls cert=%s key=%s",
		     port, h_pki_file("ca.pem"), port, h_pki_file("server.pem"),
		     h_pki_file("server.key"));
}

/* ---- the program's own OpenSSL over a wrapped socket --------------------------------- */

/*
 * argv: port ca cert key. One process, a server thread and a client, both
 * doing python ssl over the wrapped connection (TLS inside TLS). First the
 * client asks for a name the certificate does not carry: its own OpenSSL
 * must report its own verification error. Then the right name: it works.
 * os._exit() at the end, for the reason given in test_transparency.c
 * (python's atexit OpenSSL clean-up racing a thread's, openssl#17469).
 */
static const char nested_py[] =
    "import os, socket, ssl, sys, threading\n"
    "port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]\n"
    "ls = socket.socket()\n"
    "ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "ls.bind(('127.0.0.1', port)); ls.listen(4)\n"
    "sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); sctx.load_cert_chain(cert, key)\n"
    "def serve():\n"
    "    for _ in range(2):\n"
    "        c, _ = ls.accept()\n"
    "        try:\n"
    "            with sctx.wrap_socket(c, server_side=True) as s:\n"
    "                s.sendall(s.recv(100).upper())\n"
    "        except (ssl.SSLError, OSError) as e:\n"
    "            sys.stdout.write('server: %s\\n' % type(e).__name__); sys.stdout.flush()\n"
    "t = threading.Thread(target=serve, daemon=True); t.start()\n"
    "cctx = ssl.create_default_context(cafile=ca)\n"
    "try:\n"
    "    with cctx.wrap_socket(socket.create_connection(('127.0.0.1', port)),\n"
    "                          server_hostname='wrong.test') as s:\n"
    "        print('UNEXPECTED: verified wrong.test')\n"
    "except ssl.SSLCertVerificationError as e:\n"
    "    sys.stdout.write('VERIFY-ERROR %s\\n' % e.verify_message); sys.stdout.flush()\n"
    "with cctx.wrap_socket(socket.create_connection(('127.0.0.1', port)),\n"
    "                      server_hostname='localhost') as s:\n"
    "    s.sendall(b'hello inside')\n"
    "    print('REPLY', s.recv(100).decode())\n"
    "t.join(10)\n"
    "sys.stdout.flush(); os._exit(0)\n";

Test(runtimes, python_ssl_over_wrapped_sockets)
{
	int port = h_free_port();
	struct h_env env;
	struct h_proc p;
	int rc;

	shim_env(&env, both_policy(port));
	rc = h_run(&p,
		   ARGV(PYTHON, "-c", (char *)nested_py, h_fmt("%d", port),
			(char *)h_pki_file("ca.pem"), (char *)h_pki_file("server.pem"),
			(char *)h_pki_file("server.key")),
		   &env, RUN_MS);
	/* Before: the shim emptied the thread's error queue inside python's handshake, and
	 * python saw "EOF occurred in violation of protocol" instead of its own error. */
	cr_expect(p.out && strstr(p.out, "VERIFY-ERROR Hostname mismatch"),
		  "python's own verification error must reach python\nstdout:\n%s\nstderr:\n%s",
		  p.out ? p.out : "", p.err ? p.err : "");
	cr_expect(rc == 0 && p.out && strstr(p.out, "REPLY HELLO INSIDE"),
		  "TLS inside the shim's TLS: want exit 0 and the reply, got exit %d\nstdout:\n%s\n"
		  "stderr:\n%s",
		  rc, p.out ? p.out : "", p.err ? p.err : "");
	h_proc_free(&p);
	h_env_free(&env);
}

/* ---- full reads at a hang-up ------------------------------------------------------------ */

#define HUP_BYTES 1000000 /* about 62 records */

/*
 * argv: port bytes. For each connection: read the request up to the client's
 * end of it (the client half-closes), send BYTES (byte i is (i * 7) % 251) and
 * close at once: the last records and the FIN arrive together, and with both
 * directions shut the client's next event is data beside EPOLLHUP.
 */
static const char hup_server_py[] = "import socket, sys\n"
				    "port, n = int(sys.argv[1]), int(sys.argv[2])\n"
				    "data = bytes((i * 7) % 251 for i in range(n))\n"
				    "ls = socket.socket()\n"
				    "ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
				    "ls.bind(('127.0.0.1', port)); ls.listen(8)\n"
				    "print('READY', flush=True)\n"
				    "while True:\n"
				    "    c, _ = ls.accept()\n"
				    "    while c.recv(65536):\n"
				    "        pass\n"
				    "    try:\n"
				    "        c.sendall(data)\n"
				    "    except OSError:\n"
				    "        pass\n"
				    "    c.close()\n";

/* argv: port. Node's own stream reading (libuv, epoll, 64 KiB reads): counts and checks. */
static const char hup_client_js[] =
    "const net = require('net');\n"
    "let got = 0, bad = -1;\n"
    "const s = net.connect(+process.argv[process.argv.length - 1], '127.0.0.1', () => "
    "s.end('go'));\n"
    "s.on('data', d => {\n"
    "  for (let i = 0; i < d.length; i++)\n"
    "    if (bad < 0 && d[i] !== ((got + i) * 7) % 251) bad = got + i;\n"
    "  got += d.length;\n"
    "});\n"
    "s.on('end', () => console.log(`GOT ${got} BAD ${bad} END end`));\n"
    "s.on('error', e => { console.log(`ERROR ${e.message}`); process.exitCode = 1; });\n";

static struct h_proc hup_server;

static int start_hup_server(void)
{
	int port = h_free_port();
	struct h_env env;

	shim_env(&env, h_fmt("accept 127.0.0.1:%d tls cert=%s key=%s", port,
			     h_pki_file("server.pem"), h_pki_file("server.key")));
	cr_assert_eq(h_spawn(&hup_server,
			     ARGV(PYTHON, "-c", (char *)hup_server_py, h_fmt("%d", port),
				  h_fmt("%d", HUP_BYTES)),
			     &env, NULL, 0),
		     0, "cannot start the python server");
	cr_assert_eq(h_wait_output(&hup_server, "READY", 15000), 0,
		     "the server did not start\nstderr:\n%s", hup_server.err);
	h_env_free(&env);
	return port;
}

static void stop_hup_server(void)
{
	h_proc_free(&hup_server);
}

/* Runs ARGV under a connect rule for PORT, 3 times: every run must get every byte. */
static void expect_full_stream(char *const argv[], int port, const char *what)
{
	const char *want = h_fmt("GOT %d BAD -1 END ", HUP_BYTES);
	struct h_env env;

	shim_env(&env, h_fmt("connect 127.0.0.1:%d tls ca=%s name=localhost", port,
			     h_pki_file("ca.pem")));
	for (int i = 0; i < 3; i++) {
		struct h_proc p;
		int rc = h_run(&p, argv, &env, RUN_MS);

		cr_assert(rc == 0 && p.out && strncmp(p.out, want, strlen(want)) == 0,
			  "%s, run %d: want \"%s...\" (every byte, then the end), got exit %d\n"
			  "stdout:\n%s\nstderr:\n%s",
			  what, i + 1, want, rc, p.out ? p.out : "", p.err ? p.err : "");
		h_proc_free(&p);
	}
	h_env_free(&env);
}

Test(runtimes, node_reads_every_byte_before_hangup, .fini = stop_hup_server)
{
	int port;

	if (access("/usr/bin/node", X_OK) != 0)
		cr_skip_test("/usr/bin/node is not installed (Debian nodejs)");
	port = start_hup_server();
	expect_full_stream(ARGV("/usr/bin/node", "-e", (char *)hup_client_js, h_fmt("%d", port)),
			   port, "node");
}

Test(runtimes, c_64k_reads_every_byte_before_hangup, .fini = stop_hup_server)
{
	int port = start_hup_server();

	expect_full_stream(ARGV((char *)h_prog("hupread"), h_fmt("%d", port)), port,
			   "hupread (64 KiB reads, libuv's rule)");
}

/* ---- a program confined by seccomp -------------------------------------------------- */

/*
 * seccomp_io allows only its own calls (one family: read/write, send/recv,
 * readv/writev, sendmsg/recvmsg) and the list in shim/DESIGN.md, then does its
 * I/O. Before, the shim's socket calls were always recvfrom/sendto: a program
 * using read/write died with SIGSYS.
 */
static void expect_confined_io(const char *family)
{
	int port = start_hup_server();

	expect_full_stream(ARGV((char *)h_prog("seccomp_io"), (char *)family, h_fmt("%d", port)),
			   port, h_fmt("seccomp_io %s (killed by SIGSYS is exit 159)", family));
}

Test(runtimes, seccomp_read_write, .fini = stop_hup_server)
{
	expect_confined_io("rw");
}

Test(runtimes, seccomp_send_recv, .fini = stop_hup_server)
{
	expect_confined_io("sock");
}

Test(runtimes, seccomp_readv_writev, .fini = stop_hup_server)
{
	expect_confined_io("vec");
}

Test(runtimes, seccomp_sendmsg_recvmsg, .fini = stop_hup_server)
{
	expect_confined_io("msg");
}
