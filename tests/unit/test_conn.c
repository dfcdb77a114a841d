/*
 * test_conn.c - unit tests of a wrapped connection's state machine (shim/conn*.c)
 * against a fake TLS engine, linked against the core without the hooks.
 *
 * The fake engine is a "TLS" whose records are the bytes themselves: a
 * handshake sends 'h' and reads one byte from the peer ('H' completes it,
 * 'A' is an alert, anything else is not TLS), data passes through as it is,
 * and close_notify is the byte 0x15. The peer is the other end of a
 * socketpair (or a TCP connection on 127.0.0.1 for connect), driven by the
 * test. Negative cases first.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "conn_int.h"
#include "fdclose.h"
#include "fdtab.h"
#include "listeners.h"
#include "real.h"
#include <sys/wait.h>

#define NOTIFY 0x15 /* the fake's close_notify */

/* ---- the fake engine ---------------------------------------------------------------- */

struct tsess {
	int fd;
	int hello_sent;
	int sys_err;
	int progress;
	int notify_sent;
	const char *reason;
};

static int fake_refuse_sessions; /* sess_new fails, as when a certificate cannot be loaded */

static struct tsess *f_new(const struct tsess_params *p, char *err, size_t errlen)
{
	struct tsess *s;

	if (fake_refuse_sessions) {
		snprintf(err, errlen, "cannot load cert /nonexistent: no such file");
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	cr_assert_not_null(s);
	s->fd = p->fd;
	return s;
}

static void f_free(struct tsess *s)
{
	free(s);
}

static void f_set_fd(struct tsess *s, int fd)
{
	s->fd = fd;
}

static void f_set_io(struct tsess *s, int family)
{
	(void)s;
	(void)family;
}

/* A socket result as the engine reports it. */
static int f_io_error(struct tsess *s, int want)
{
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return want;
	s->sys_err = errno;
	return TS_SYSERR;
}

static int f_handshake(struct tsess *s)
{
	char b;
	ssize_t n;

	if (!s->hello_sent) {
		if (send(s->fd, "h", 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			return f_io_error(s, TS_WANT_WRITE);
		s->hello_sent = 1;
	}
	n = recv(s->fd, &b, 1, MSG_DONTWAIT);
	if (n < 0)
		return f_io_error(s, TS_WANT_READ);
	if (n == 0)
		return TS_EOF;
	s->progress = TS_PEER_SPOKE;
	if (b == 'H')
		return 0;
	s->reason = b == 'A' ? "peer sent alert: handshake failure"
			     : "peer is not speaking TLS (wrong version number)";
	if (b != 'A')
		s->progress = TS_PEER_PARTIAL;
	return TS_FATAL;
}

static ssize_t f_read(struct tsess *s, void *buf, size_t len, int peek)
{
	char tmp[4096];
	ssize_t n;
	size_t k = 0;

	if (len == 0)
		return 0;
	n = recv(s->fd, tmp, len < sizeof(tmp) ? len : sizeof(tmp), MSG_DONTWAIT | MSG_PEEK);
	if (n < 0)
		return f_io_error(s, TS_WANT_READ);
	if (n == 0)
		return TS_EOF;
	if (tmp[0] == NOTIFY) {
		if (!peek)
			recv(s->fd, tmp, 1, MSG_DONTWAIT);
		return TS_CLOSED;
	}
	while (k < (size_t)n && tmp[k] != NOTIFY)
		k++;
	if (peek) {
		if (buf != NULL)
			memcpy(buf, tmp, k);
		return (ssize_t)k;
	}
	return recv(s->fd, buf, k, MSG_DONTWAIT);
}

static int fake_records; /* engine writes: each would be one TLS record (or more) */

static ssize_t f_write(struct tsess *s, const void *buf, size_t len)
{
	ssize_t n = send(s->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);

	if (n > 0)
		fake_records++;

	return n < 0 ? f_io_error(s, TS_WANT_WRITE) : n;
}

static int f_flush(struct tsess *s)
{
	(void)s;
	return 0;
}

static int f_close_notify(struct tsess *s)
{
	static const char n = NOTIFY;

	if (s->notify_sent)
		return 0;
	if (send(s->fd, &n, 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		return f_io_error(s, TS_WANT_WRITE);
	s->notify_sent = 1;
	return 0;
}

static size_t f_zero(const struct tsess *s)
{
	(void)s;
	return 0;
}

static int f_izero(const struct tsess *s)
{
	(void)s;
	return 0;
}

static const char *f_reason(const struct tsess *s)
{
	return s->reason != NULL ? s->reason : "no reason";
}

static int f_sys_errno(const struct tsess *s)
{
	return s->sys_err;
}

static void f_describe(const struct tsess *s, char *buf, size_t len)
{
	(void)s;
	snprintf(buf, len, "fake");
}

static int f_progress(const struct tsess *s)
{
	return s->progress;
}

static void f_info(const struct tsess *s, struct ts_info *out)
{
	(void)s;
	memset(out, 0, sizeof(*out));
}

static const struct engine_ops fake_ops = {
    .abi = ENGINE_ABI,
    .sess_new = f_new,
    .sess_free = f_free,
    .set_fd = f_set_fd,
    .set_io = f_set_io,
    .handshake = f_handshake,
    .read = f_read,
    .write = f_write,
    .flush = f_flush,
    .close_notify = f_close_notify,
    .pending = f_zero,
    .buffered_input = f_izero,
    .more_input = f_izero,
    .output_pending = f_izero,
    .reason = f_reason,
    .sys_errno = f_sys_errno,
    .describe = f_describe,
    .peer_progress = f_progress,
    .info = f_info,
};

/* ---- fixtures ----------------------------------------------------------------------- */

/* No source: the statistics never count the stand-in rule. */
static struct policy_rule rule = {
    .action = POLICY_TLS,
    .opt = {.handshake_timeout_ms = 10000},
};
static int sp[2]; /* sp[0]: the program's socket (wrapped); sp[1]: the peer */

static void setup(void)
{
	real_init();
	conn_engine_ptr = &fake_ops;
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
}

static void teardown(void)
{
	close(sp[0]);
	close(sp[1]);
}

/* An accepted connection, non-blocking as accept4(SOCK_NONBLOCK) makes it. */
static struct conn *server(void)
{
	int err = 0;
	struct conn *c;

	fcntl(sp[0], F_SETFL, fcntl(sp[0], F_GETFL) | O_NONBLOCK);
	c = conn_new_server(sp[0], &rule, "accept test", NULL, 1, 0, &err);
	cr_assert_not_null(c, "conn_new_server: %s", strerror(err));
	return c;
}

static void peer_says(const char *bytes, size_t len)
{
	cr_assert_eq(send(sp[1], bytes, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* What the peer has received so far (non-blocking), as a string; -1 on a socket error. */
static ssize_t peer_got(char *buf, size_t len)
{
	ssize_t n = recv(sp[1], buf, len - 1, MSG_DONTWAIT);

	buf[n > 0 ? n : 0] = '\0';
	return n;
}

/* Brings a server conn to OPEN: the peer answers the fake handshake. */
static struct conn *open_server(void)
{
	struct conn *c = server();
	char b[8];
	short want = 0;

	peer_says("H", 1);
	pthread_mutex_lock(&c->lock);
	cr_assert_eq(conn_step_ready(c, &want), 0);
	pthread_mutex_unlock(&c->lock);
	cr_assert_eq(c->state, CONN_OPEN);
	cr_assert_eq(peer_got(b, sizeof(b)), 1, "the fake's hello");
	return c;
}

TestSuite(conn, .init = setup, .fini = teardown, .timeout = 20);

/* ---- the log prefix ------------------------------------------------------------------ */

/*
 * An accepted connection's log prefix is made from its two addresses when a
 * line first needs it (most connections never print one), once: the same
 * text, and the same string, for every later line; IPv6 in brackets.
 */
Test(conn, accepted_connection_description_is_made_once_when_asked)
{
	struct sockaddr_in l = {.sin_family = AF_INET, .sin_port = htons(443)};
	struct sockaddr_in6 p = {.sin6_family = AF_INET6, .sin6_port = htons(50123)};
	struct ep ends[2];
	struct conn *c;
	const char *first;
	int err = 0;

	inet_pton(AF_INET, "127.0.0.1", &l.sin_addr);
	inet_pton(AF_INET6, "2001:db8::7", &p.sin6_addr);
	cr_assert_eq(ep_from_sockaddr(&ends[0], (struct sockaddr *)&l, sizeof(l)), 0);
	cr_assert_eq(ep_from_sockaddr(&ends[1], (struct sockaddr *)&p, sizeof(p)), 0);
	c = conn_new_server(sp[0], &rule, NULL, ends, 1, 0, &err);
	cr_assert_not_null(c, "conn_new_server: %s", strerror(err));
	cr_expect_null(atomic_load(&c->desc),
		       "expected no description made before it is asked for");
	first = conn_desc(c);
	cr_expect_str_eq(first, "accept 127.0.0.1:443 from [2001:db8::7]:50123");
	cr_expect_eq(conn_desc(c), first, "expected the same string the second time");
	conn_put(c);

	/* A peer of unknown address reads "?"; a given prefix is kept as it is. */
	memset(&ends[1], 0, sizeof(ends[1]));
	c = conn_new_server(sp[0], &rule, NULL, ends, 1, 0, &err);
	cr_assert_not_null(c);
	cr_expect_str_eq(conn_desc(c), "accept 127.0.0.1:443 from ?");
	conn_put(c);
	c = conn_new_server(sp[0], &rule, "inherited connection", NULL, 1, 0, &err);
	cr_assert_not_null(c);
	cr_expect_str_eq(conn_desc(c), "inherited connection");
	conn_put(c);
}

/* ---- negative cases: failures and their errnos -------------------------------------- */

Test(conn, handshake_alert_fails_every_later_call_with_econnreset)
{
	struct conn *c = server();
	char buf[16];
	short kev = 0, ready;

	peer_says("A", 1);
	cr_expect_eq(conn_recv(c, buf, sizeof(buf), 0), -ECONNRESET);
	cr_expect_eq(c->state, CONN_FAILED);
	cr_expect(c->tls_failed);
	cr_expect_eq(conn_send(c, "data", 4, MSG_NOSIGNAL), -ECONNRESET,
		     "a write after the failure");
	cr_expect_eq(conn_recv(c, buf, sizeof(buf), 0), -ECONNRESET, "and the next read");
	cr_expect_eq(conn_take_so_error(c), ECONNRESET, "SO_ERROR says the same");
	cr_expect_eq(conn_take_so_error(c), 0, "SO_ERROR is cleared once read");
	ready = conn_poll_prepare(c, POLLIN | POLLOUT, &kev);
	cr_expect(ready & POLLERR, "readiness reports the error: %#x", ready);
	cr_expect(ready & POLLIN, "and the read that would fail: %#x", ready);
	cr_expect_eq(kev, 0, "nothing to ask the kernel");
	/* Nothing in cleartext: the peer got the hello, then the end of the stream. */
	cr_expect_eq(peer_got(buf, sizeof(buf)), 1);
	cr_expect_str_eq(buf, "h");
	cr_expect_eq(peer_got(buf, sizeof(buf)), 0, "TCP shut down after the failure");
	conn_put(c);
}

Test(conn, bytes_that_are_not_tls_fail_the_handshake)
{
	struct conn *c = server();
	char buf[16];

	peer_says("GET / HTTP/1.0\r\n", 16);
	cr_expect_eq(conn_recv(c, buf, sizeof(buf), 0), -ECONNRESET);
	cr_expect_eq(conn_send(c, "x", 1, MSG_NOSIGNAL), -ECONNRESET);
	conn_put(c);
}

Test(conn, a_session_that_cannot_be_made_fails_without_a_byte_sent)
{
	struct conn *c = server();
	char buf[16];

	fake_refuse_sessions = 1;
	cr_expect_eq(conn_recv(c, buf, sizeof(buf), 0), -ECONNRESET);
	cr_expect_eq(peer_got(buf, sizeof(buf)), 0, "the peer sees only the end of the stream");
	conn_put(c);
}

Test(conn, a_client_whose_session_cannot_be_made_is_refused_before_connect)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0), err = 0;
	struct conn *c;

	cr_assert_geq(fd, 0);
	fake_refuse_sessions = 1;
	c = conn_new_client(fd, &rule, "example.test", "127.0.0.1", 443, "connect test", &err);
	cr_expect_null(c);
	cr_expect_eq(err, ECONNREFUSED, "err = %d (%s)", err, strerror(err));
	close(fd);
}

Test(conn, a_peer_that_leaves_during_the_handshake_is_an_end_of_stream)
{
	struct conn *c = server();
	char buf[16];

	shutdown(sp[1], SHUT_WR); /* a port probe: connects and closes */
	cr_expect_eq(conn_recv(c, buf, sizeof(buf), 0), 0, "the program reads the end");
	cr_expect(c->hs_hangup);
	cr_expect_eq(conn_send(c, "x", 1, MSG_NOSIGNAL), 1, "the first write is taken (dropped)");
	cr_expect_eq(conn_send(c, "y", 1, MSG_NOSIGNAL), -EPIPE, "later ones get EPIPE");
	cr_expect_eq(conn_take_so_error(c), 0, "no pending error: the peer just left");
	conn_put(c);
}

Test(conn, the_handshake_deadline_fails_a_silent_peer)
{
	struct policy_rule quick = rule;
	struct timespec ms20 = {0, 20 * 1000000};
	struct conn *c;
	char buf[4];
	int err = 0;

	quick.opt.handshake_timeout_ms = 1;
	fcntl(sp[0], F_SETFL, fcntl(sp[0], F_GETFL) | O_NONBLOCK);
	c = conn_new_server(sp[0], &quick, "accept test", NULL, 1, 0, &err);
	cr_assert_not_null(c);
	cr_expect_eq(conn_recv(c, buf, sizeof(buf), 0), -EAGAIN, "the deadline starts");
	cr_expect_neq(conn_deadline(c), 0, "readiness callers are told when to look again");
	nanosleep(&ms20, NULL);
	cr_expect_eq(conn_recv(c, buf, sizeof(buf), 0), -ECONNRESET, "past it: failed");
	cr_expect_eq(conn_deadline(c), 0, "nothing pending once failed");
	conn_put(c);
}

Test(conn, a_reset_after_the_handshake_is_econnreset_not_an_end_of_stream)
{
	struct conn *c = open_server();
	char buf[16];

	/* The peer closes with our bytes unread: the kernel resets the connection. */
	cr_assert_eq(conn_send(c, "unread", 6, MSG_NOSIGNAL), 6);
	close(sp[1]);
	sp[1] = open("/dev/null", O_RDONLY); /* for teardown */
	cr_expect_eq(conn_recv(c, buf, sizeof(buf), 0), -ECONNRESET);
	conn_put(c);
}

Test(conn, a_write_after_shutdown_gets_epipe)
{
	struct conn *c = open_server();

	cr_assert_eq(conn_shutdown(c, SHUT_WR), 0);
	cr_expect_eq(conn_send(c, "x", 1, MSG_NOSIGNAL), -EPIPE);
	conn_put(c);
}

Test(conn, io_on_a_closed_conn_is_ebadf)
{
	struct conn *c = open_server();
	char b;

	conn_ref(c);
	cr_expect_eq(conn_close_fd(c, sp[0]), 1, "the last fd");
	cr_expect_eq(conn_recv(c, &b, 1, 0), -EBADF);
	cr_expect_eq(conn_send(c, "x", 1, MSG_NOSIGNAL), -EBADF);
	conn_put(c);
	conn_put(c);
}

/* ---- the handshake's steps ---------------------------------------------------------- */

Test(conn, want_read_asks_the_kernel_for_pollin_and_a_nonblocking_read_gets_eagain)
{
	struct conn *c = server();
	char buf[8];
	short kev = 0;

	cr_expect_eq(conn_recv(c, buf, sizeof(buf), 0), -EAGAIN);
	cr_expect_eq(c->state, CONN_HANDSHAKE);
	cr_expect_eq(conn_poll_prepare(c, POLLIN, &kev), 0, "nothing ready yet");
	cr_expect_eq(kev, POLLIN, "kev = %#x", kev);
	cr_expect_eq(conn_poll_prepare(c, POLLOUT, &kev), 0, "not writable during the handshake");
	cr_expect_eq(kev, POLLIN, "the direction TLS needs, not the one asked for: %#x", kev);
	peer_says("H", 1);
	cr_expect_eq(conn_poll_result(c, POLLOUT, POLLIN), 0,
		     "the kernel's POLLIN completed the handshake, but said nothing of POLLOUT");
	cr_expect_eq(c->state, CONN_OPEN);
	cr_expect_eq(conn_poll_result(c, POLLOUT, POLLOUT), POLLOUT, "then writable");
	cr_expect_eq(c->state, CONN_OPEN);
	conn_put(c);
}

Test(conn, want_write_asks_the_kernel_for_pollout)
{
	struct conn *c = server();
	char fill[4096], buf[8];
	short kev = 0;

	memset(fill, 'f', sizeof(fill));
	while (send(sp[0], fill, sizeof(fill), MSG_DONTWAIT) > 0)
		; /* the socket cannot take the handshake's first flight */
	cr_expect_eq(conn_recv(c, buf, sizeof(buf), 0), -EAGAIN);
	cr_expect_eq(conn_poll_prepare(c, POLLIN, &kev), 0);
	cr_expect_eq(kev, POLLOUT, "kev = %#x", kev);
	while (recv(sp[1], fill, sizeof(fill), MSG_DONTWAIT) > 0)
		;
	cr_expect_eq(conn_poll_prepare(c, POLLIN, &kev), 0);
	cr_expect_eq(kev, POLLIN, "the flight went: now the answer is awaited (%#x)", kev);
	conn_put(c);
}

Test(conn, data_flows_both_ways_once_open)
{
	struct conn *c = open_server();
	char buf[32];

	peer_says("hello", 5);
	cr_expect_eq(conn_recv(c, buf, sizeof(buf), MSG_PEEK), 5, "a peek");
	cr_expect_eq(conn_recv(c, buf, sizeof(buf), 0), 5);
	buf[5] = '\0';
	cr_expect_str_eq(buf, "hello");
	cr_expect_eq(conn_send(c, "world", 5, 0), 5);
	cr_expect_eq(peer_got(buf, sizeof(buf)), 5);
	cr_expect_str_eq(buf, "world");
	cr_expect_eq(conn_recv(c, buf, sizeof(buf), 0), -EAGAIN, "nothing more: EAGAIN");
	conn_put(c);
}

Test(conn, a_blocking_read_waits_for_data_already_there)
{
	struct conn *c;
	char buf[32];
	int err = 0;

	peer_says("Hready", 6);
	c = conn_new_server(sp[0], &rule, "accept test", NULL, 0, 0, &err); /* a blocking program */
	cr_assert_not_null(c);
	cr_expect(fcntl(sp[0], F_GETFL) & O_NONBLOCK, "non-blocking underneath");
	cr_expect_eq(conn_recv(c, buf, sizeof(buf), 0), 5);
	conn_put(c);
}

Test(conn, a_blocking_read_honours_so_rcvtimeo)
{
	struct timeval tv = {0, 20000};
	struct conn *c;
	char buf[8];
	int err = 0;

	cr_assert_eq(setsockopt(sp[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	peer_says("H", 1);
	c = conn_new_server(sp[0], &rule, "accept test", NULL, 0, 0, &err);
	cr_assert_not_null(c);
	cr_expect_eq(conn_recv(c, buf, sizeof(buf), 0), -EAGAIN, "the time-out expired, as Linux");
	cr_expect_eq(c->state, CONN_OPEN);
	conn_put(c);
}

/* ---- the end of the stream ---------------------------------------------------------- */

Test(conn, close_notify_from_the_peer_is_an_end_of_stream)
{
	struct conn *c = open_server();
	char buf[16];
	const char bytes[] = {'b', 'y', 'e', NOTIFY};
	short kev = 0;

	peer_says(bytes, sizeof(bytes));
	cr_expect_eq(conn_recv(c, buf, sizeof(buf), 0), 3, "the data before it");
	cr_expect_eq(conn_recv(c, buf, sizeof(buf), 0), 0, "then the end");
	cr_expect(c->rd_eof);
	cr_expect_eq(conn_recv(c, buf, sizeof(buf), 0), 0, "and again");
	cr_expect(conn_poll_prepare(c, POLLIN | POLLRDHUP, &kev) & POLLIN, "readable (EOF)");
	conn_put(c);
}

Test(conn, a_tcp_eof_without_close_notify_is_an_end_of_stream_too)
{
	struct conn *c = open_server();
	char buf[16];

	shutdown(sp[1], SHUT_WR);
	cr_expect_eq(conn_recv(c, buf, sizeof(buf), 0), 0);
	cr_expect(c->rd_eof);
	cr_expect_eq(c->state, CONN_OPEN, "not a failure: the program decides");
	conn_put(c);
}

Test(conn, shutdown_wr_sends_close_notify_then_fin)
{
	struct conn *c = open_server();
	char buf[8];

	cr_assert_eq(conn_shutdown(c, SHUT_WR), 0);
	cr_expect_eq(peer_got(buf, sizeof(buf)), 1);
	cr_expect_eq(buf[0], NOTIFY, "close_notify first");
	cr_expect_eq(peer_got(buf, sizeof(buf)), 0, "then FIN");
	cr_expect(c->wr_shut && c->notify_sent);
	conn_put(c);
}

Test(conn, the_last_close_sends_close_notify_and_a_dup_keeps_the_session)
{
	struct conn *c = open_server();
	int d = dup(sp[0]);
	char buf[8];

	cr_assert_eq(conn_add_fd(c, d), 0);
	cr_expect_eq(conn_close_fd(c, sp[0]), 0, "not the last fd");
	cr_expect_eq(c->fd, d, "the session moved to the dup");
	cr_expect_eq(peer_got(buf, sizeof(buf)), -1, "no close_notify yet");
	cr_expect_eq(conn_send(c, "x", 1, 0), 1, "still usable through the dup");
	cr_expect_eq(peer_got(buf, sizeof(buf)), 1);
	cr_expect_eq(conn_close_fd(c, d), 1, "the last fd");
	cr_expect_eq(peer_got(buf, sizeof(buf)), 1);
	cr_expect_eq(buf[0], NOTIFY, "close_notify at the last close");
	close(d);
	conn_put(c);
}

Test(conn, a_handshake_never_finished_sends_no_close_notify)
{
	struct conn *c = server();
	char buf[8];

	cr_expect_eq(conn_close_fd(c, sp[0]), 1);
	cr_expect_eq(peer_got(buf, sizeof(buf)), -1, "nothing: no session to end");
	conn_put(c);
}

/* ---- connect (a TCP peer on 127.0.0.1 in a thread) ---------------------------------- */

struct tcp_peer {
	int lfd;
	char answer; /* the byte the fake handshake gets */
	pthread_t t;
};

static void *tcp_peer_run(void *arg)
{
	struct tcp_peer *p = arg;
	int fd = accept(p->lfd, NULL, NULL);
	char b;

	if (fd >= 0) {
		if (recv(fd, &b, 1, 0) == 1) /* the hello */
			send(fd, &p->answer, 1, MSG_NOSIGNAL);
		while (recv(fd, &b, 1, 0) > 0)
			;
		close(fd);
	}
	return NULL;
}

static struct conn *client_to(struct tcp_peer *p, char answer, int nonblock, struct sockaddr_in *sa)
{
	socklen_t len = sizeof(*sa);
	int fd, err = 0;
	struct conn *c;

	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	p->lfd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(bind(p->lfd, (struct sockaddr *)sa, sizeof(*sa)), 0);
	cr_assert_eq(listen(p->lfd, 1), 0);
	cr_assert_eq(getsockname(p->lfd, (struct sockaddr *)sa, &len), 0);
	p->answer = answer;
	pthread_create(&p->t, NULL, tcp_peer_run, p);
	fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
	c = conn_new_client(fd, &rule, NULL, "127.0.0.1", ntohs(sa->sin_port), "connect test",
			    &err);
	cr_assert_not_null(c, "conn_new_client: %s", strerror(err));
	return c;
}

static void client_done(struct tcp_peer *p, struct conn *c)
{
	int fd = c->fd;

	conn_close_fd(c, fd);
	close(fd);
	conn_put(c);
	pthread_join(p->t, NULL);
	close(p->lfd);
}

Test(conn, a_blocking_connect_whose_handshake_fails_is_refused)
{
	struct tcp_peer p;
	struct sockaddr_in sa;
	struct conn *c = client_to(&p, 'A', 0, &sa);

	cr_expect_eq(conn_connect(c, (struct sockaddr *)&sa, sizeof(sa)), -ECONNREFUSED);
	client_done(&p, c);
}

Test(conn, a_nonblocking_connect_whose_handshake_fails_resets_the_next_io)
{
	struct tcp_peer p;
	struct sockaddr_in sa;
	struct conn *c = client_to(&p, 'A', 1, &sa);
	char b;
	int i;

	cr_expect_eq(conn_connect(c, (struct sockaddr *)&sa, sizeof(sa)), -EINPROGRESS);
	/* As an event loop: wait for readiness until the outcome is known. */
	for (i = 0; i < 1000 && c->state != CONN_FAILED && c->state != CONN_OPEN; i++) {
		short kev = 0;
		struct pollfd pf = {.fd = c->fd};

		if (conn_poll_prepare(c, POLLOUT, &kev) != 0)
			break;
		pf.events = kev;
		cr_assert_geq(poll(&pf, 1, 1000), 0);
		conn_poll_result(c, POLLOUT, pf.revents);
	}
	cr_expect_eq(c->state, CONN_FAILED);
	cr_expect_eq(conn_recv(c, &b, 1, 0), -ECONNRESET);
	cr_expect_eq(conn_take_so_error(c), ECONNRESET);
	client_done(&p, c);
}

Test(conn, a_blocking_connect_returns_once_the_handshake_completed)
{
	struct tcp_peer p;
	struct sockaddr_in sa;
	struct conn *c = client_to(&p, 'H', 0, &sa);
	int afresh = 1;

	cr_expect_eq(conn_connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_expect_eq(c->state, CONN_OPEN);
	cr_expect_eq(conn_connect_again(c, &afresh), -EISCONN, "as Linux, once connected");
	cr_expect_eq(afresh, 0);
	client_done(&p, c);
}

Test(conn, a_connect_refused_by_tcp_is_reported_as_it_is)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM, 0), fd, err = 0, afresh = 0;
	struct conn *c;

	/* A port nobody listens on: bound, then closed. */
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(l, (struct sockaddr *)&sa, &len), 0);
	close(l);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	c = conn_new_client(fd, &rule, NULL, "127.0.0.1", ntohs(sa.sin_port), "connect test", &err);
	cr_assert_not_null(c);
	cr_expect_eq(conn_connect(c, (struct sockaddr *)&sa, sizeof(sa)), -ECONNREFUSED);
	cr_expect_not(c->tls_failed, "a TCP failure, not a TLS one");
	cr_expect_eq(conn_connect_again(c, &afresh), -ECONNABORTED,
		     "SO_ERROR was read: ECONNABORTED, as Linux");
	cr_expect(afresh, "the caller unwraps the socket for a fresh connect");
	conn_close_fd(c, fd);
	close(fd);
	conn_put(c);
}

/* ---- accept auto: TLS or cleartext, told by the first bytes -------------------------- */

static struct conn *auto_server(void)
{
	static struct policy_rule autorule = {
	    .action = POLICY_AUTO,
	    .opt = {.handshake_timeout_ms = 10000},
	};
	int err = 0;
	struct conn *c;

	fcntl(sp[0], F_SETFL, fcntl(sp[0], F_GETFL) | O_NONBLOCK);
	c = conn_new_server(sp[0], &autorule, "accept auto test", NULL, 1, 0, &err);
	cr_assert_not_null(c);
	cr_assert_eq(c->state, CONN_AUTO_DETECT);
	return c;
}

Test(conn, auto_passes_a_cleartext_client_through_untouched)
{
	struct conn *c = auto_server();
	char buf[32];

	cr_expect_eq(conn_recv(c, buf, sizeof(buf), 0), -EAGAIN, "nothing said yet");
	peer_says("GET / HTTP/1.0\r\n", 16);
	cr_expect_eq(conn_recv(c, buf, sizeof(buf), 0), 16);
	cr_expect_eq(c->state, CONN_PLAIN);
	cr_expect_eq(conn_send(c, "HTTP/1.0 200\r\n", 15, 0), 15);
	cr_expect_eq(peer_got(buf, sizeof(buf)), 15, "no handshake byte before the answer");
	cr_expect_str_eq(buf, "HTTP/1.0 200\r\n");
	conn_put(c);
}

Test(conn, auto_takes_a_tls_record_for_a_handshake)
{
	struct conn *c = auto_server();
	const char hello[] = {0x16, 0x03};
	char buf[8];

	peer_says(hello, sizeof(hello));
	cr_expect_eq(conn_recv(c, buf, sizeof(buf), 0), -ECONNRESET,
		     "the fake handshake reads 0x16: not its 'H', a failed handshake");
	cr_expect(c->tls_failed, "it went to the handshake, never to cleartext");
	conn_put(c);
}

/* ---- one owner across fork() -------------------------------------------------------- */

Test(conn, after_fork_the_first_process_to_use_the_session_owns_it)
{
	struct conn *c = open_server();
	char buf[8];
	int status;
	pid_t pid;

	conn_fork_prepare();
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		conn_fork_child();
		/* The child writes first: the session is its own from now on. */
		_exit(conn_send(c, "child", 5, MSG_NOSIGNAL) == 5 ? 0 : 1);
	}
	conn_fork_parent();
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's write went");
	cr_expect_eq(peer_got(buf, sizeof(buf)), 5);
	cr_expect_str_eq(buf, "child");
	cr_expect_eq(conn_send(c, "parent", 6, MSG_NOSIGNAL), -ECONNRESET,
		     "the parent lost the session: a record from it would break the stream");
	cr_expect_eq(conn_recv(c, buf, sizeof(buf), 0), -ECONNRESET);
	cr_expect_eq(conn_close_fd(c, sp[0]), 1);
	cr_expect_eq(peer_got(buf, sizeof(buf)), -1, "and its close sends no close_notify");
	conn_put(c);
}

/* ---- connect returns before the handshake: the bytes written meanwhile are kept ------ */

struct slow_peer {
	int lfd, go[2];
	char got[64];
	size_t n;
	pthread_t t;
};

/* Accepts, takes the hello, answers only when told, then keeps all it receives. */
static void *slow_peer_run(void *arg)
{
	struct slow_peer *p = arg;
	int fd = accept(p->lfd, NULL, NULL);
	char b;
	ssize_t r;

	if (fd < 0)
		return NULL;
	if (recv(fd, &b, 1, 0) == 1 && read(p->go[0], &b, 1) == 1)
		send(fd, "H", 1, MSG_NOSIGNAL);
	while (p->n < sizeof(p->got) - 1 &&
	       (r = recv(fd, p->got + p->n, sizeof(p->got) - 1 - p->n, 0)) > 0)
		p->n += (size_t)r;
	close(fd);
	return NULL;
}

Test(conn, bytes_written_before_the_handshake_completed_go_first_and_encrypted)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	struct slow_peer p = {0};
	struct conn *c;
	int fd, err = 0, i;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	p.lfd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(bind(p.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(p.lfd, 1), 0);
	cr_assert_eq(getsockname(p.lfd, (struct sockaddr *)&sa, &len), 0);
	listeners_note(p.lfd); /* this process's own listener: connect does not wait */
	cr_assert_eq(pipe(p.go), 0);
	pthread_create(&p.t, NULL, slow_peer_run, &p);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	c = conn_new_client(fd, &rule, NULL, "127.0.0.1", ntohs(sa.sin_port), "connect test", &err);
	cr_assert_not_null(c);

	cr_expect_eq(conn_connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_expect(c->early_open, "connected for the program");
	cr_expect_eq(c->state, CONN_HANDSHAKE, "the handshake goes on");
	cr_expect_eq(conn_send(c, "early", 5, MSG_DONTWAIT), 5, "kept, counted as written");
	cr_expect_eq(conn_early_held(c), 5);
	cr_assert_eq(write(p.go[1], "g", 1), 1);
	/* The program's event loop: readiness calls finish the handshake and send them. */
	for (i = 0; i < 1000 && (c->state != CONN_OPEN || conn_early_held(c) > 0); i++) {
		struct pollfd pf = {.fd = fd};
		short kev = 0;

		conn_poll_prepare(c, POLLIN, &kev);
		pf.events = kev;
		cr_assert_geq(poll(&pf, 1, 1000), 0);
		conn_poll_result(c, POLLIN, pf.revents);
	}
	cr_expect_eq(c->state, CONN_OPEN);
	cr_expect_eq(conn_early_held(c), 0);
	cr_expect_eq(conn_send(c, "late", 4, 0), 4);
	conn_close_fd(c, fd);
	close(fd);
	pthread_join(p.t, NULL);
	p.got[p.n] = '\0';
	cr_expect_str_eq(p.got, "earlylate\x15",
			 "after the handshake the peer got the kept bytes, later ones, then "
			 "close_notify: \"%s\" (%zu bytes)",
			 p.got, p.n);
	conn_put(c);
	close(p.lfd);
	close(p.go[0]);
	close(p.go[1]);
}

/* ---- starttls=postgres, client: the dialogue before the handshake ---------------------- */

struct pg_peer {
	int lfd;
	char answer; /* to SSLRequest */
	unsigned char req[8];
	char rest[64];
	size_t n;
	pthread_t t;
};

/* Reads the 8-byte request, answers, plays the fake handshake's 'H' after 'S', keeps the rest. */
static void *pg_peer_run(void *arg)
{
	struct pg_peer *p = arg;
	int fd = accept(p->lfd, NULL, NULL);
	ssize_t r;
	char b;

	if (fd < 0)
		return NULL;
	if (recv(fd, p->req, sizeof(p->req), MSG_WAITALL) == sizeof(p->req)) {
		send(fd, &p->answer, 1, MSG_NOSIGNAL);
		if (p->answer == 'S' && recv(fd, &b, 1, 0) == 1 && b == 'h')
			send(fd, "H", 1, MSG_NOSIGNAL);
	}
	while (p->n < sizeof(p->rest) - 1 &&
	       (r = recv(fd, p->rest + p->n, sizeof(p->rest) - 1 - p->n, 0)) > 0)
		p->n += (size_t)r;
	close(fd);
	return NULL;
}

static struct conn *pg_client(struct pg_peer *p, char answer, struct sockaddr_in *sa, int *fd)
{
	static struct policy_rule pgrule = {
	    .action = POLICY_TLS,
	    .opt = {.handshake_timeout_ms = 10000, .starttls = POLICY_STARTTLS_POSTGRES},
	};
	socklen_t len = sizeof(*sa);
	int err = 0;
	struct conn *c;

	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	p->lfd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(bind(p->lfd, (struct sockaddr *)sa, sizeof(*sa)), 0);
	cr_assert_eq(listen(p->lfd, 1), 0);
	cr_assert_eq(getsockname(p->lfd, (struct sockaddr *)sa, &len), 0);
	p->answer = answer;
	pthread_create(&p->t, NULL, pg_peer_run, p);
	*fd = socket(AF_INET, SOCK_STREAM, 0);
	c = conn_new_client(*fd, &pgrule, NULL, "127.0.0.1", ntohs(sa->sin_port), "connect test",
			    &err);
	cr_assert_not_null(c);
	return c;
}

static const unsigned char ssl_request[8] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};

Test(conn, starttls_postgres_refused_by_the_server_is_refused_without_cleartext)
{
	struct pg_peer p = {0};
	struct sockaddr_in sa;
	int fd;
	struct conn *c = pg_client(&p, 'N', &sa, &fd);

	cr_expect_eq(conn_connect(c, (struct sockaddr *)&sa, sizeof(sa)), -ECONNREFUSED);
	cr_expect(c->tls_failed);
	conn_close_fd(c, fd);
	close(fd);
	pthread_join(p.t, NULL);
	cr_expect_eq(memcmp(p.req, ssl_request, 8), 0, "the shim's SSLRequest");
	cr_expect_eq(p.n, 0, "and not a byte after it (%zu)", p.n);
	conn_put(c);
	close(p.lfd);
}

Test(conn, starttls_postgres_upgrades_on_s_before_connect_returns)
{
	struct pg_peer p = {0};
	struct sockaddr_in sa;
	int fd;
	struct conn *c = pg_client(&p, 'S', &sa, &fd);

	cr_expect_eq(conn_connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_expect_eq(c->state, CONN_OPEN, "the dialogue and the handshake are done");
	conn_close_fd(c, fd);
	close(fd);
	pthread_join(p.t, NULL);
	cr_expect_eq(memcmp(p.req, ssl_request, 8), 0);
	cr_expect_eq(p.n, 1, "then only close_notify (%zu bytes)", p.n);
	cr_expect_eq(p.rest[0], NOTIFY);
	conn_put(c);
	close(p.lfd);
}

/* ---- gathering: one record for what the program says belongs together ----------------- */

Test(conn, a_small_gathered_write_is_one_record)
{
	struct conn *c = open_server();
	struct iovec v[3] = {{"HTTP/1.1 200 OK\r\n", 17}, {"\r\n", 2}, {"body", 4}};
	char buf[64];

	fake_records = 0;
	cr_expect_eq(conn_sendv(c, v, 3, 0), 23);
	cr_expect_eq(fake_records, 1, "headers and body sealed together: %d records", fake_records);
	cr_expect_eq(peer_got(buf, sizeof(buf)), 23);
	cr_expect_str_eq(buf, "HTTP/1.1 200 OK\r\n\r\nbody");
	conn_put(c);
}

Test(conn, corked_writes_are_held_until_uncorked)
{
	struct conn *c = open_server();
	char buf[64];

	fake_records = 0;
	cr_assert_eq(conn_set_cork(c, 1), 0);
	cr_expect_eq(conn_cork(c), 1, "the program's view");
	cr_expect_eq(conn_send(c, "one ", 4, 0), 4, "held bytes count as written");
	cr_expect_eq(conn_send(c, "two", 3, 0), 3);
	cr_expect_eq(fake_records, 0, "nothing sealed while corked");
	cr_expect_eq(peer_got(buf, sizeof(buf)), -1, "nothing sent");
	cr_assert_eq(conn_set_cork(c, 0), 0);
	cr_expect_eq(fake_records, 1, "one record at uncork: %d", fake_records);
	cr_expect_eq(peer_got(buf, sizeof(buf)), 7);
	cr_expect_str_eq(buf, "one two");
	conn_put(c);
}

Test(conn, msg_more_gathers_until_a_write_without_it)
{
	struct conn *c = open_server();
	char buf[64];

	fake_records = 0;
	cr_expect_eq(conn_send(c, "a", 1, MSG_MORE), 1);
	cr_expect_eq(conn_send(c, "b", 1, MSG_MORE), 1);
	cr_expect_eq(fake_records, 0);
	cr_expect_eq(conn_send(c, "c", 1, 0), 1);
	cr_expect_eq(fake_records, 1, "%d records", fake_records);
	cr_expect_eq(peer_got(buf, sizeof(buf)), 3);
	cr_expect_str_eq(buf, "abc");
	conn_put(c);
}

Test(conn, held_bytes_go_before_the_program_reads)
{
	struct conn *c = open_server();
	char buf[64];

	cr_expect_eq(conn_send(c, "request", 7, MSG_MORE), 7);
	cr_expect_eq(peer_got(buf, sizeof(buf)), -1, "held");
	cr_expect_eq(conn_recv(c, buf, sizeof(buf), 0), -EAGAIN, "a read waits for the answer...");
	cr_expect_eq(peer_got(buf, sizeof(buf)), 7, "...so the request went first");
	cr_expect_str_eq(buf, "request");
	conn_put(c);
}

/* ---- reads as the socket's: peeks into several buffers, MSG_TRUNC ---------------------- */

Test(conn, a_peek_into_several_buffers_is_one_peek_scattered)
{
	struct conn *c = open_server();
	char a[4] = "", b[4] = "", all[8] = "";
	struct iovec v[2] = {{a, 3}, {b, 3}};

	peer_says("abcdef", 6);
	cr_expect_eq(conn_recvv(c, v, 2, MSG_PEEK), 6);
	cr_expect_str_eq(a, "abc");
	cr_expect_str_eq(b, "def", "not the same bytes again in the second buffer: \"%s\"", b);
	cr_expect_eq(conn_recv(c, all, 6, 0), 6, "the peek left them for the read");
	cr_expect_str_eq(all, "abcdef");
	conn_put(c);
}

Test(conn, msg_trunc_discards_what_it_counts)
{
	struct conn *c = open_server();
	char buf[8] = "";

	peer_says("skipkeep", 8);
	cr_expect_eq(conn_recv(c, NULL, 4, MSG_TRUNC), 4);
	cr_expect_eq(conn_recv(c, buf, sizeof(buf), 0), 4);
	cr_expect_str_eq(buf, "keep");
	conn_put(c);
}
