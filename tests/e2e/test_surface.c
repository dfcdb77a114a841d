/*
 * test_surface.c - end-to-end tests of libc's fd surface beyond read/write:
 * paths that move socket bytes without write()/send() by name (pwritev2,
 * syscall(), dprintf) never put them on the wire in cleartext, and an fd
 * closed behind the shim's back (libuv's syscall(SYS_close)) leaves no entry
 * that captures the file that reuses its number (node). The audit of the
 * whole surface is scripts/check-fd-surface (make lint).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "e2e/harness.h"

#define CLIENT_MS 30000

TestSuite(surface, .fini = h_teardown, .timeout = 90);

/* Starts a server and waits until it listens on PORT. */
static struct h_proc *start_server(char *const argv[], int port)
{
	return h_server(argv, NULL, port, NULL);
}

/* A native TLS echo server (tests/progs/tls_sink -e). */
static struct h_proc *start_echo(int port)
{
	return start_server(ARGV((char *)h_prog("tls_sink"), "-e", h_fmt("%d", port),
				 (char *)h_pki_file("server.pem"),
				 (char *)h_pki_file("server.key")),
			    port);
}

static int run_shim(struct h_proc *p, const char *policy, char *const argv[])
{
	struct h_env e;
	int rc;

	h_env_init(&e);
	h_env_preload(&e);
	h_env_set(&e, "TLSSHIM_POLICY", "%s", policy);
	rc = h_run(p, argv, &e, CLIENT_MS);
	h_env_free(&e);
	return rc;
}

/*
 * Every path in tests/progs/canary sends its line through TLS: a relay that
 * records what the client puts on the wire never sees the canary, and the
 * TLS echo server (which decrypts it) sends each line back; POSIX AIO, which
 * glibc runs with its internal calls, is refused. Before pwritev2, syscall(),
 * dprintf and aio_write were hooked, each of them sent the line in cleartext.
 */
Test(surface, canary_never_on_the_wire_by_pwritev2_syscall_or_dprintf)
{
	const char *canary = "CANARY-7f3a91";
	const char *wire = h_fmt("%s/wire", h_tmpdir());
	int port = h_free_port(), relay = h_free_port();
	struct h_proc p;
	size_t len = 0;
	char *got;
	int rc;

	start_echo(port);
	start_server(ARGV("socat", "-r", (char *)wire,
			  h_fmt("TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork", relay),
			  h_fmt("TCP:127.0.0.1:%d", port)),
		     relay);
	rc = run_shim(
	    &p, h_fmt("connect 127.0.0.1:%d tls ca=%s name=localhost", relay, h_pki_file("ca.pem")),
	    ARGV((char *)h_prog("canary"), "127.0.0.1", h_fmt("%d", relay), (char *)canary));
	cr_expect_eq(rc, 0, "expected canary to exit 0, got %d; stderr:\n%s", rc, p.err);
	cr_expect_str_eq(p.out,
			 "pwritev2: echoed\npwritev2-nowait: echoed\nsyscall-write: echoed\n"
			 "syscall-pwritev2: echoed\nsyscall-sendto: echoed\ndprintf: echoed\n"
			 "aio_write: refused: EOPNOTSUPP\n",
			 "expected every line echoed through TLS and AIO refused, got:\n%s\n"
			 "stderr:\n%s",
			 p.out, p.err);
	cr_expect(strstr(p.err, "aio_write on fd") != NULL,
		  "expected an error line naming the connection AIO was refused on, stderr:\n%s",
		  p.err);
	got = h_read_file(wire, &len);
	cr_assert_not_null(got, "expected the relay's record %s", wire);
	cr_expect(
	    len > 0 && (unsigned char)got[0] == 0x16,
	    "expected the wire to start with a TLS handshake record, first byte 0x%02x of %zu",
	    len ? (unsigned char)got[0] : 0, len);
	cr_expect(!memmem(got, len, canary, strlen(canary)),
		  "expected the canary never in cleartext on the wire; %zu bytes recorded hold it",
		  len);
	free(got);
	h_proc_free(&p);
}

/*
 * libuv closes sockets with syscall(SYS_close): the shim must see it, or the
 * file node opens next under the same number is written as the dead TLS
 * session (fs.writeFileSync failed with EPIPE). Echoes through the shim,
 * each followed by a file written and read back: every one exact.
 */
static const char *node_script =
    "const net = require('net'), fs = require('fs');\n"
    "const port = +process.argv[1], dir = process.argv[2];\n"
    "let i = 0;\n"
    "function round() {\n"
    "  if (i === 6) { console.log('done'); return; }\n"
    "  const msg = 'echo-' + i + '-' + 'x'.repeat(3000 * i) + '\\n';\n"
    "  const s = net.connect(port, '127.0.0.1');\n"
    "  let got = '';\n"
    "  s.on('connect', () => s.write(msg));\n"
    "  s.on('data', d => { got += d; if (got.length >= msg.length) s.end(); });\n"
    "  s.on('error', e => { console.log('socket error ' + e.code); process.exit(1); });\n"
    "  s.on('close', () => {\n"
    "    console.log('echo ' + i + ' ' + (got === msg ? 'ok' : 'wrong'));\n"
    "    const f = dir + '/f' + i, data = 'file-' + i + '-' + 'y'.repeat(5000 * i);\n"
    "    fs.writeFileSync(f, data);\n"
    "    console.log('file ' + i + ' ' + (fs.readFileSync(f, 'utf8') === data ? 'ok' : "
    "'wrong'));\n"
    "    i++; round();\n"
    "  });\n"
    "}\n"
    "round();\n";

Test(surface, node_echoes_and_files_after_libuv_raw_close)
{
	int port = h_free_port();
	struct h_proc p;
	int rc;

	if (access("/usr/bin/node", X_OK) != 0)
		cr_skip_test("node is not installed (scripts/setup-deps installs nodejs)");
	start_echo(port);
	rc = run_shim(
	    &p, h_fmt("connect 127.0.0.1:%d tls ca=%s name=localhost", port, h_pki_file("ca.pem")),
	    ARGV("/usr/bin/node", "-e", (char *)node_script, "--", h_fmt("%d", port),
		 (char *)h_tmpdir()));
	cr_expect_eq(rc, 0, "expected node to exit 0, got %d; stdout:\n%s\nstderr:\n%s", rc, p.out,
		     p.err);
	cr_expect_str_eq(p.out,
			 "echo 0 ok\nfile 0 ok\necho 1 ok\nfile 1 ok\necho 2 ok\nfile 2 ok\n"
			 "echo 3 ok\nfile 3 ok\necho 4 ok\nfile 4 ok\necho 5 ok\nfile 5 ok\ndone\n",
			 "expected every echo and every file exact, got:\n%s\nstderr:\n%s", p.out,
			 p.err);
	h_proc_free(&p);
}

/*
 * A connection closed behind libc's back (tests/progs/stale closes it with a
 * system call instruction of its own, as a library that was not preloaded
 * would): each call that hands out its number next gives a file, pipe,
 * socket pair, eventfd, memfd or dup that works as one, and a pipe in the
 * epoll set that watched the connection is reported with its own data.
 */
Test(surface, fd_closed_behind_the_shims_back_is_reused_cleanly)
{
	int port = h_free_port();
	struct h_proc p;
	int rc;

	start_echo(port);
	rc = run_shim(
	    &p, h_fmt("connect 127.0.0.1:%d tls ca=%s name=localhost", port, h_pki_file("ca.pem")),
	    ARGV((char *)h_prog("stale"), h_fmt("%d", port)));
	cr_expect_eq(rc, 0, "expected stale to exit 0, got %d; stdout:\n%s\nstderr:\n%s", rc, p.out,
		     p.err);
	cr_expect_str_eq(p.out,
			 "open: reused=1 ok\nfopen: reused=1 ok\nsyscall(SYS_openat): reused=1 ok\n"
			 "pipe: reused=1 ok\nsocketpair: reused=1 ok\neventfd: reused=1 ok\n"
			 "memfd_create: reused=1 ok\ndup: reused=1 ok\n"
			 "pipe in an epoll set: reused=1 ok\n",
			 "expected each new fd to reuse the number and work, got:\n%s\nstderr:\n%s",
			 p.out, p.err);
	h_proc_free(&p);
}

/* io_uring is a known limit: setting one up through syscall() is logged. */
Test(surface, io_uring_setup_through_syscall_is_warned)
{
	struct h_proc p;
	int rc;

	rc = run_shim(&p, "connect 127.0.0.1:1 tls", ARGV((char *)h_prog("uring_setup")));
	cr_expect_eq(rc, 0, "expected uring_setup to exit 0, got %d; stderr:\n%s", rc, p.err);
	cr_expect(strncmp(p.out, "io_uring_setup: ", 16) == 0,
		  "expected the program's own result line, got:\n%s", p.out);
	cr_expect(strstr(p.err, "warn: io_uring_setup: socket I/O submitted through io_uring "
				"bypasses the shim") != NULL,
		  "expected a warning that io_uring bypasses the shim, stderr:\n%s", p.err);
	h_proc_free(&p);
}
