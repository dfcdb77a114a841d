/*
 * test_runtimes.c - runtimes and programs we did not write, under the shim:
 * a program doing its own TLS (python's ssl) over wrapped sockets, where the
 * program's OpenSSL and the shim's share the thread.
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

#define ARGV(...) ((char *[]){__VA_ARGS__, NULL})
#define PYTHON    "/usr/bin/python3"
#define RUN_MS    60000

TestSuite(runtimes, .timeout = 120);

/* The environment of a program under the shim with POLICY. */
static void shim_env(struct h_env *e, const char *policy)
{
	h_env_init(e);
	h_env_preload(e);
	h_env_set(e, "TLSSHIM_POLICY", "%s", policy);
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
 */
static const char nested_py[] =
    "import socket, ssl, sys, threading\n"
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
    "t.join(10)\n";

Test(runtimes, python_ssl_over_wrapped_sockets)
{
	int port = h_free_port();
	struct h_env env;
	struct h_proc p;
	int rc;

	shim_env(&env, both_policy(port));
	rc = h_run(&p,
		   ARGV(PYTHON, "-c", (char *)nested_py, h_fmt("%d", port), (char *)h_pki_file("ca.pem"),
			(char *)h_pki_file("server.pem"), (char *)h_pki_file("server.key")),
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
