/*
 * test_conformance.c - the differential conformance suite: runs each I/O
 * pattern of tests/conformance/conform.c twice, once with both ends plain and
 * no shim, once with both ends under the shim (`accept … tls` on the server,
 * `connect … tls` on the client), and requires the two outputs to be
 * identical line by line. One test per pattern, so a failure names it.
 *
 * The plain run must also print exactly the expected number of lines, so a
 * broken program cannot pass by printing nothing on both runs.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e/harness.h"

#define RUN_MS 30000 /* each program is bounded by this */

TestSuite(conformance, .timeout = 90);

static const char *conform_bin(void)
{
	return h_fmt("%s/tests/conformance/conform", h_build());
}

/* Both ends' environment: nothing, or the shim with one policy for both directions. */
static void make_env(struct h_env *e, int shim, int port)
{
	h_env_init(e);
	if (!shim)
		return;
	h_env_preload(e);
	h_env_set(
	    e, "TLSSHIM_POLICY",
	    "accept 127.0.0.1:%d tls cert=%s key=%s; connect 127.0.0.1:%d tls ca=%s name=localhost",
	    port, h_pki_file("server.pem"), h_pki_file("server.key"), port, h_pki_file("ca.pem"));
	h_env_set(e, "TLSSHIM_LOG", "error");
}

/*
 * Runs PATTERN with both ends plain (SHIM 0) or under the shim. Returns the
 * combined transcript: the server's lines, its exit status, the client's
 * lines, its exit status. *STDERR gets both programs' stderr (diagnostics).
 */
static char *run_pattern(const char *pattern, int shim, char **errs)
{
	struct h_proc srv, cli;
	struct h_env env;
	int port = h_free_port();
	char *portstr = h_fmt("%d", port);
	int srv_rc, cli_rc;

	make_env(&env, shim, port);
	cr_assert_eq(
	    h_spawn(&srv,
		    (char *[]){(char *)conform_bin(), (char *)pattern, "server", portstr, NULL},
		    &env, NULL, 0),
	    0, "%s: cannot start the server: %s", pattern, strerror(errno));
	if (h_wait_output(&srv, "READY", 10000) != 0) {
		h_kill(&srv);
		cr_assert_fail("%s (%s): the server did not get ready; stderr:\n%s", pattern,
			       shim ? "shim" : "plain", srv.err ? srv.err : "");
	}
	cr_assert_eq(
	    h_spawn(&cli,
		    (char *[]){(char *)conform_bin(), (char *)pattern, "client", portstr, NULL},
		    &env, NULL, 0),
	    0, "%s: cannot start the client: %s", pattern, strerror(errno));
	cli_rc = h_wait(&cli, RUN_MS);
	srv_rc = h_wait(&srv, cli_rc < 0 ? 1000 : RUN_MS);
	/* The server's "READY" goes to stderr: stdout holds only the pattern's lines. */
	char *out = h_fmt("server:\n%sserver exit %d\nclient:\n%sclient exit %d\n",
			  srv.out ? srv.out : "", srv_rc, cli.out ? cli.out : "", cli_rc);
	*errs = h_fmt("server stderr:\n%sclient stderr:\n%s", srv.err ? srv.err : "",
		      cli.err ? cli.err : "");
	h_proc_free(&srv);
	h_proc_free(&cli);
	h_env_free(&env);
	free(portstr);
	return out;
}

/* Line I (0-based) of S, as a new string, or NULL past the end. */
static char *line_at(const char *s, int i)
{
	for (; i > 0 && s; i--) {
		s = strchr(s, '\n');
		if (s)
			s++;
	}
	if (!s || !*s)
		return NULL;
	const char *e = strchr(s, '\n');
	return strndup(s, e ? (size_t)(e - s) : strlen(s));
}

/* Which side ("server"/"client") line I of transcript S belongs to. */
static const char *side_of(const char *s, int i)
{
	const char *side = "server";

	for (int k = 0; k <= i; k++) {
		char *l = line_at(s, k);

		if (l && strcmp(l, "client:") == 0)
			side = "client";
		free(l);
	}
	return side;
}

static void conform(const char *pattern, int expected_lines)
{
	char *plain_err, *shim_err;
	char *plain = run_pattern(pattern, 0, &plain_err);

	/* 4 lines of framing: "server:", "server exit", "client:", "client exit". */
	cr_assert_eq(
	    h_count(plain, "\n"), expected_lines + 4,
	    "%s: the plain run printed %d lines, expected %d: the program is broken\n%s\n%s",
	    pattern, h_count(plain, "\n") - 4, expected_lines, plain, plain_err);
	cr_assert(strstr(plain, "server exit 0\n") && strstr(plain, "client exit 0\n"),
		  "%s: the plain run failed:\n%s\n%s", pattern, plain, plain_err);

	char *shim = run_pattern(pattern, 1, &shim_err);
	if (strcmp(plain, shim) == 0)
		goto out;
	for (int i = 0;; i++) {
		char *a = line_at(plain, i), *b = line_at(shim, i);

		if (!a && !b)
			break;
		if (!a || !b || strcmp(a, b) != 0)
			cr_assert_fail("%s: line %d (%s) differs under the shim\n"
				       "  plain: %s\n  shim:  %s\n"
				       "--- plain ---\n%s--- shim ---\n%s%s",
				       pattern, i + 1, side_of(a ? plain : shim, i),
				       a ? a : "(no line)", b ? b : "(no line)", plain, shim,
				       shim_err);
		free(a);
		free(b);
	}
out:
	free(plain);
	free(shim);
	free(plain_err);
	free(shim_err);
}

/* One test per pattern; the number is the plain run's line count (both ends). */
#define CONFORM(name, lines)           \
	Test(conformance, name)        \
	{                              \
		conform(#name, lines); \
	}

CONFORM(blocking_rw, 16)
CONFORM(nonblock_connect, 19)
CONFORM(nonblock_read, 20)
CONFORM(nonblock_write, 18)
CONFORM(poll, 33)
CONFORM(ppoll, 33)
CONFORM(select, 33)
CONFORM(pselect, 33)
CONFORM(epoll_wait, 33)
CONFORM(epoll_pwait, 33)
CONFORM(epoll_pwait2, 33)
CONFORM(epoll_level, 35)
CONFORM(epoll_edge, 33)
CONFORM(epoll_oneshot, 25)
CONFORM(epoll_two_sets, 30)

/*
 * A known limit (README): an epoll set nested in another cannot see plaintext
 * already decrypted into OpenSSL's buffer. Kept, skipped with the reason, so the
 * difference stays visible and the test comes back when it is fixed.
 */
Test(conformance, epoll_nested)
{
	cr_skip_test("known limit: nested epoll sets do not see plaintext held by the shim");
	conform("epoll_nested", 0);
}
CONFORM(epoll_closed_fd, 30)
CONFORM(msg_peek, 20)
CONFORM(msg_waitall, 15)
CONFORM(msg_dontwait, 17)
CONFORM(sigpipe, 19)
CONFORM(half_close, 24)
CONFORM(peer_close, 20)
CONFORM(fionread, 19)
CONFORM(full_read_hup, 21)
CONFORM(fcntl_nonblock, 25)
CONFORM(vectored, 23)
CONFORM(rwv2, 27)
CONFORM(syscall_rw, 29)
CONFORM(iov_errors, 36)
CONFORM(sendfile, 13)
CONFORM(sendfile_timeout, 14)
CONFORM(splice, 12)
CONFORM(fdopen, 23)
CONFORM(dup, 39)
CONFORM(fork_client, 17)
CONFORM(fork_server, 15)
CONFORM(threads, 15)
CONFORM(rcvtimeo, 17)
CONFORM(eintr, 19)
CONFORM(coalesce, 19)
CONFORM(sockopts, 22)
CONFORM(close_range, 23)
CONFORM(server_nonblock, 23)
CONFORM(own_listener, 63)

/* Every pattern the program knows has a test here. */
Test(conformance, every_pattern_has_a_test)
{
	static const char *const tested[] = {
	    "blocking_rw",
	    "nonblock_connect",
	    "nonblock_read",
	    "nonblock_write",
	    "poll",
	    "ppoll",
	    "select",
	    "pselect",
	    "epoll_wait",
	    "epoll_pwait",
	    "epoll_pwait2",
	    "epoll_level",
	    "epoll_edge",
	    "epoll_oneshot",
	    "epoll_two_sets",
	    "epoll_nested",
	    "epoll_closed_fd",
	    "msg_peek",
	    "msg_waitall",
	    "msg_dontwait",
	    "sigpipe",
	    "half_close",
	    "peer_close",
	    "fionread",
	    "full_read_hup",
	    "fcntl_nonblock",
	    "vectored",
	    "sendfile",
	    "sendfile_timeout",
	    "splice",
	    "fdopen",
	    "dup",
	    "fork_client",
	    "fork_server",
	    "threads",
	    "rcvtimeo",
	    "eintr",
	    "coalesce",
	    "sockopts",
	    "close_range",
	    "server_nonblock",
	    "rwv2",
	    "syscall_rw",
	    "iov_errors",
	    "own_listener",
	};
	struct h_proc p;
	struct h_env env;

	h_env_init(&env);
	int rc = h_run(&p, (char *[]){(char *)conform_bin(), "list", NULL}, &env, 10000);
	cr_assert_eq(rc, 0, "conform list failed: %s", p.err);
	int n = 0;
	for (char *l; (l = line_at(p.out, n)); n++) {
		int found = 0;

		for (size_t i = 0; i < sizeof(tested) / sizeof(tested[0]); i++)
			found |= strcmp(l, tested[i]) == 0;
		cr_expect(found, "pattern %s has no test in test_conformance.c", l);
		free(l);
	}
	cr_assert_eq(n, (int)(sizeof(tested) / sizeof(tested[0])),
		     "conform knows %d patterns, the suite tests %zu", n,
		     sizeof(tested) / sizeof(tested[0]));
	h_proc_free(&p);
	h_env_free(&env);
}
