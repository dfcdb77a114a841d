/*
 * test_conn_util.h - wrapped connections for the core's unit tests, made the
 * way the accept hook makes them (conn_new_server + fdtab_set) over a
 * loopback TCP pair, with no hook loaded and no TLS engine needed:
 *
 *  - tc_buffered(): `accept ... auto starttls=postgres`, whose client sent 8
 *    cleartext bytes that are not a request. Once a readiness call or a read
 *    has driven the connection, the shim holds those bytes for the program
 *    (plaintext it must read first) while the kernel socket is empty.
 *  - tc_auto(): `accept ... auto` (cleartext or TLS, told by the first bytes).
 */
#ifndef TLSSHIM_TEST_CONN_UTIL_H
#define TLSSHIM_TEST_CONN_UTIL_H

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "fdclose.h"
#include "fdtab.h"
#include "policy.h"
#include "real.h"

/* A wrapped server-side fd and its plain client. */
struct tc {
	int fd;   /* wrapped (fdtab) */
	int peer; /* the client: a plain socket */
	struct policy *p;
};

/* A connected loopback pair: *SRV accepted, *CLI connected; returns the port. */
static inline uint16_t tc_pair(int *srv, int *cli)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert(l >= 0);
	cr_assert_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(l, 4), 0);
	cr_assert_eq(getsockname(l, (struct sockaddr *)&a, &len), 0);
	*cli = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(connect(*cli, (struct sockaddr *)&a, sizeof(a)), 0);
	*srv = accept(l, NULL, NULL);
	cr_assert(*srv >= 0);
	close(l);
	return ntohs(a.sin_port);
}

/* Wraps the accepted side of a new pair under the accept rule OPTS ("auto", ...). */
static inline struct tc tc_wrap(const char *opts)
{
	struct policy_diags d = {0};
	struct tc t;
	struct conn *c;
	char text[200];
	int err = 0;
	uint16_t port;

	real_init();
	port = tc_pair(&t.fd, &t.peer);
	/* The certificate is never loaded: no handshake happens in these tests. */
	snprintf(text, sizeof(text), "accept 127.0.0.1:%u %s cert=/dev/null key=/dev/null", port,
		 opts);
	t.p = policy_new();
	cr_assert_not_null(t.p);
	policy_add_text(t.p, "TLSSHIM_POLICY", text, &d);
	cr_assert_eq(policy_finish(t.p, &d), 0, "policy %s: %s", text, d.n ? d.v[0].msg : "");
	c = conn_new_server(t.fd, policy_rule_at(t.p, 0), "accept test", NULL, 0, -1, &err);
	cr_assert_not_null(c, "conn_new_server: %s", strerror(err));
	cr_assert_eq(fdtab_set(t.fd, c), 0);
	conn_put(c); /* the table holds it now */
	return t;
}

static inline struct tc tc_auto(void)
{
	return tc_wrap("auto");
}

/* 8 bytes a PostgreSQL server reads as the start of a cleartext client's first message. */
static const char tc_cleartext[8] = "ABCDEFGH";

static inline struct tc tc_buffered(void)
{
	struct tc t = tc_wrap("auto starttls=postgres");

	cr_assert_eq(write(t.peer, tc_cleartext, sizeof(tc_cleartext)), 8);
	return t;
}

/* Whether the kernel has bytes for FD (the shim's own buffers aside). */
static inline int tc_kernel_readable(int fd)
{
	char b;
	ssize_t n = real.recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);

	return n > 0;
}

/* The client resets the connection (SO_LINGER 0). */
static inline void tc_reset_peer(struct tc *t)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	setsockopt(t->peer, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(t->peer);
	t->peer = -1;
}

static inline void tc_close(struct tc *t)
{
	fdclose_release(t->fd);
	close(t->fd);
	if (t->peer >= 0)
		close(t->peer);
	policy_free(t->p);
}

#endif
