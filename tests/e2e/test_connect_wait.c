/*
 * test_connect_wait.c - when a wrapped connect() returns: as a plain one does,
 * without waiting for a server program that accepts late, and without a byte
 * in cleartext while the handshake is still to come.
 *
 * The server accepts only once the client says its connect() returned (a file
 * the client creates), so with a connect that waits for the handshake the two
 * programs wait for each other. Real python3 programs, explicit environments.
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

TestSuite(connect_wait, .timeout = 120);

/*
 * argv: port flag-file. Accepts once FLAG exists, records what it reads to
 * stdout (repr), answers "pong" to "ping", then closes.
 */
static const char late_server_py[] =
    "import os, socket, sys, time\n"
    "port, flag = int(sys.argv[1]), sys.argv[2]\n"
    "l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "l.bind(('127.0.0.1', port)); l.listen(4)\n"
    "print('READY', flush=True)\n"
    "for _ in range(400):\n"
    "    if os.path.exists(flag):\n"
    "        break\n"
    "    time.sleep(0.05)\n"
    "else:\n"
    "    sys.exit('server: the client never said it connected')\n"
    "c, _ = l.accept()\n"
    "c.settimeout(20)\n"
    "got = b''\n"
    "try:\n"
    "    while not got.endswith(b'ping'):\n"
    "        d = c.recv(4096)\n"
    "        if not d:\n"
    "            break\n"
    "        got += d\n"
    "    if got.endswith(b'ping'):\n"
    "        c.sendall(b'pong')\n"
    "except OSError as e:\n"
    "    print('server:', type(e).__name__, flush=True)\n"
    "print('server read', repr(got), flush=True)\n"
    "c.close()\n";

/*
 * argv: port flag-file. A blocking client: connect, then tell the server to
 * accept, write "ping" and read the answer.
 */
static const char client_py[] = "import socket, sys\n"
				"port, flag = int(sys.argv[1]), sys.argv[2]\n"
				"s = socket.socket()\n"
				"s.connect(('127.0.0.1', port))\n"
				"print('connected', flush=True)\n"
				"open(flag, 'w').close()\n"
				"s.sendall(b'ping')\n"
				"try:\n"
				"    print('client read', repr(s.recv(100)), flush=True)\n"
				"except OSError as e:\n"
				"    print('client:', type(e).__name__, e.errno, flush=True)\n";

static void env_with(struct h_env *e, const char *policy)
{
	h_env_init(e);
	if (policy == NULL)
		return;
	h_env_preload(e);
	h_env_set(e, "TLSSHIM_POLICY", "%s", policy);
	h_env_set(e, "TLSSHIM_LOG", "info");
}

/* Starts the late server (POLICY NULL: plain, no shim) and waits until it listens. */
static void start_late_server(struct h_proc *srv, int port, const char *flag, const char *policy)
{
	struct h_env env;

	env_with(&env, policy);
	cr_assert_eq(
	    h_spawn(srv,
		    ARGV(PYTHON, "-c", (char *)late_server_py, h_fmt("%d", port), (char *)flag),
		    &env, NULL, 0),
	    0, "cannot start the server: %s", strerror(errno));
	if (h_wait_output(srv, "READY", 15000) != 0) {
		h_collect(srv, 0);
		h_kill(srv);
		cr_assert_fail("the server did not get ready:\n%s%s", srv->out ? srv->out : "",
			       srv->err ? srv->err : "");
	}
	h_env_free(&env);
}

/* A server that accepts only after the client's connect returned: they talk in TLS. */
Test(connect_wait, server_that_accepts_after_connect_returned)
{
	int port = h_free_port();
	const char *flag = h_fmt("%s/late-accept-%d", h_tmpdir(), port);
	struct h_proc srv, cli;
	struct h_env env;
	int rc;

	start_late_server(&srv, port, flag,
			  h_fmt("accept 127.0.0.1:%d tls cert=%s key=%s", port,
				h_pki_file("server.pem"), h_pki_file("server.key")));
	env_with(&env, h_fmt("connect 127.0.0.1:%d tls ca=%s name=localhost", port,
			     h_pki_file("ca.pem")));
	rc = h_run(&cli, ARGV(PYTHON, "-c", (char *)client_py, h_fmt("%d", port), (char *)flag),
		   &env, RUN_MS);
	h_wait(&srv, RUN_MS);
	cr_expect(rc == 0 && cli.out && strstr(cli.out, "connected\nclient read b'pong'"),
		  "expected connect to return before the server accepted, then \"pong\"; "
		  "exit %d\nclient stdout:\n%s\nclient stderr:\n%s\nserver:\n%s%s",
		  rc, cli.out ? cli.out : "", cli.err ? cli.err : "", srv.out ? srv.out : "",
		  srv.err ? srv.err : "");
	cr_expect(srv.out && strstr(srv.out, "server read b'ping'"),
		  "expected the server to read \"ping\", it said:\n%s%s", srv.out ? srv.out : "",
		  srv.err ? srv.err : "");
	unlink(flag);
	h_proc_free(&cli);
	h_proc_free(&srv);
	h_env_free(&env);
}

/*
 * The server is not TLS at all and accepts late: connect returns, the
 * client's write is kept, the handshake fails (time-out), and the write
 * fails the next I/O with ECONNRESET, logged with the bytes discarded. Not
 * one byte of "ping" reaches the server.
 */
Test(connect_wait, writes_before_the_handshake_never_leave_in_cleartext)
{
	int port = h_free_port();
	const char *flag = h_fmt("%s/late-plain-%d", h_tmpdir(), port);
	struct h_proc srv, cli;
	struct h_env env;
	int rc;

	start_late_server(&srv, port, flag, NULL);
	env_with(&env, h_fmt("connect 127.0.0.1:%d tls ca=%s name=localhost handshake-timeout=3",
			     port, h_pki_file("ca.pem")));
	rc = h_run(&cli, ARGV(PYTHON, "-c", (char *)client_py, h_fmt("%d", port), (char *)flag),
		   &env, RUN_MS);
	h_wait(&srv, RUN_MS);
	cr_expect(rc == 0 && cli.out && strstr(cli.out, "connected\n") &&
		      strstr(cli.out, "client: ConnectionResetError 104"),
		  "expected connect to return, then ECONNRESET at the read; exit %d\n"
		  "stdout:\n%s\nstderr:\n%s",
		  rc, cli.out ? cli.out : "", cli.err ? cli.err : "");
	cr_expect(cli.err && strstr(cli.err, ": error: connect ") &&
		      strstr(cli.err, "4 bytes written before the handshake failed were discarded"),
		  "expected an error line with the reason and the bytes discarded:\n%s",
		  cli.err ? cli.err : "");
	cr_expect(
	    srv.out && strstr(srv.out, "server read b") && strstr(srv.out, "\\x16\\x03") &&
		!strstr(srv.out, "ping"),
	    "expected the server to read a TLS ClientHello and never \"ping\", it said:\n%s%s",
	    srv.out ? srv.out : "", srv.err ? srv.err : "");
	unlink(flag);
	h_proc_free(&cli);
	h_proc_free(&srv);
	h_env_free(&env);
}
