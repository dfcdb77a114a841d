/*
 * conform.c - the differential conformance program: runs one I/O pattern
 * against a peer (another instance of itself in the other role) over TCP on
 * 127.0.0.1 and prints every call's result, one line per call, with nothing
 * that could differ between runs (no timings, addresses or fd numbers).
 *
 *   conform PATTERN server PORT     listens, says READY on stderr, accepts one
 *   conform PATTERN client PORT     connects
 *   conform list                    prints the pattern names
 *
 * The runner (tests/e2e/test_conformance.c) runs each pattern twice: both ends
 * plain, and both ends under the shim with `accept … tls` + `connect … tls`.
 * The outputs must be identical: a wrapped socket must look like a plain one.
 *
 * The two ends order their steps through a side channel the shim leaves
 * alone (an abstract UNIX socket), so no step depends on timing; the TCP
 * connection carries only the pattern's own data. Plain libc, no OpenSSL.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../tcp_still.h"

#define WAIT_MS 5000 /* a wait that must end because the event comes */

static int g_port;
static int g_lfd = -1;  /* server: the TCP listener */
static int g_sync = -1; /* the side channel to the peer */

/* ---- output -------------------------------------------------------------------------- */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void die(const char *what)
{
	fprintf(stderr, "conform: %s: %s\n", what, strerror(errno));
	fflush(stdout);
	_exit(99);
}

static const char *en(int e)
{
	const char *n = strerrorname_np(e);

	return n ? n : "E?";
}

/* "what = R" or "what = -1 ENAME". */
static void show(const char *what, long r, int e)
{
	if (r < 0)
		say("%s = %ld %s", what, r, en(e));
	else
		say("%s = %ld", what, r);
}

static uint32_t fnv(const void *p, size_t n)
{
	const unsigned char *s = p;
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 16777619u;
	return h;
}

/* The result of a read: short data quoted, long data as length + digest. */
static void show_data(const char *what, long r, int e, const void *buf)
{
	if (r < 0) {
		say("%s = %ld %s", what, r, en(e));
	} else if (r <= 64) {
		char q[64 * 4 + 1], *o = q;
		const unsigned char *s = buf;

		for (long i = 0; i < r; i++)
			o += (s[i] >= 32 && s[i] < 127 && s[i] != '\\')
				 ? sprintf(o, "%c", s[i])
				 : sprintf(o, "\\x%02x", s[i]);
		*o = 0;
		say("%s = %ld \"%s\"", what, r, q);
	} else {
		say("%s = %ld fnv=%08x", what, r, fnv(buf, (size_t)r));
	}
}

#define CALL(what, expr)                \
	({                              \
		errno = 0;              \
		long r_ = (long)(expr); \
		int e_ = errno;         \
		show((what), r_, e_);   \
		errno = e_;             \
		r_;                     \
	})

#define CALLD(what, expr, buf)                    \
	({                                        \
		errno = 0;                        \
		long r_ = (long)(expr);           \
		int e_ = errno;                   \
		show_data((what), r_, e_, (buf)); \
		errno = e_;                       \
		r_;                               \
	})

static const char *pollname(int ev)
{
	static char s[160];
	static const struct {
		int bit;
		const char *name;
	} t[] = {{POLLIN, "POLLIN"},      {POLLPRI, "POLLPRI"}, {POLLOUT, "POLLOUT"},
		 {POLLERR, "POLLERR"},    {POLLHUP, "POLLHUP"}, {POLLNVAL, "POLLNVAL"},
		 {POLLRDHUP, "POLLRDHUP"}};

	s[0] = 0;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (ev & t[i].bit) {
			if (s[0])
				strcat(s, "|");
			strcat(s, t[i].name);
			ev &= ~t[i].bit;
		}
	if (ev)
		sprintf(s + strlen(s), "%s0x%x", s[0] ? "|" : "", ev);
	return s[0] ? s : "-";
}

static const char *epname(uint32_t ev)
{
	static char s[160];
	static const struct {
		uint32_t bit;
		const char *name;
	} t[] = {{EPOLLIN, "EPOLLIN"},   {EPOLLPRI, "EPOLLPRI"}, {EPOLLOUT, "EPOLLOUT"},
		 {EPOLLERR, "EPOLLERR"}, {EPOLLHUP, "EPOLLHUP"}, {EPOLLRDHUP, "EPOLLRDHUP"}};

	s[0] = 0;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (ev & t[i].bit) {
			if (s[0])
				strcat(s, "|");
			strcat(s, t[i].name);
			ev &= ~t[i].bit;
		}
	if (ev)
		sprintf(s + strlen(s), "%s0x%x", s[0] ? "|" : "", ev);
	return s[0] ? s : "-";
}

/* ---- the side channel -------------------------------------------------------------- */

static void sync_addr(struct sockaddr_un *a, socklen_t *len)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	int n = snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "tlsshim-conform-%d", g_port);
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

/* Tells the peer step C happened. */
static void sync_send(char c)
{
	if (write(g_sync, &c, 1) != 1)
		die("sync write");
}

/* Waits until the peer says step C happened. */
static void sync_wait(char c)
{
	char got;

	if (read(g_sync, &got, 1) != 1)
		die("sync read");
	if (got != c) {
		fprintf(stderr, "conform: sync: expected '%c', got '%c'\n", c, got);
		_exit(98);
	}
}

static void sync_send_u64(uint64_t v)
{
	if (write(g_sync, &v, sizeof(v)) != (ssize_t)sizeof(v))
		die("sync write");
}

static uint64_t sync_wait_u64(void)
{
	uint64_t v;

	if (read(g_sync, &v, sizeof(v)) != (ssize_t)sizeof(v))
		die("sync read");
	return v;
}

/* ---- connections ------------------------------------------------------------------- */

static int accept_conn(void)
{
	int fd = accept(g_lfd, NULL, NULL);

	if (fd < 0)
		die("accept");
	say("accept = ok");
	return fd;
}

static void peer_addr(struct sockaddr_in *a)
{
	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_port = htons((uint16_t)g_port);
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

static int connect_conn(void)
{
	struct sockaddr_in a;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		die("socket");
	peer_addr(&a);
	CALL("connect", connect(fd, (struct sockaddr *)&a, sizeof(a)));
	return fd;
}

/* The first byte, client to server: after it both ends are done with any handshake. */
static void greet_c(int fd)
{
	CALL("write greeting", write(fd, "G", 1));
}

static void greet_s(int fd)
{
	char b[8];

	CALLD("read greeting", read(fd, b, 1), b);
}

static int client(void)
{
	int fd = connect_conn();

	greet_c(fd);
	return fd;
}

static int server(void)
{
	int fd = accept_conn();

	greet_s(fd);
	return fd;
}

static void set_nonblock(int fd, int on)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK) < 0)
		die("fcntl");
}

static void msleep(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- bulk data ----------------------------------------------------------------------- */

static unsigned char pat(uint64_t i, unsigned seed)
{
	return (unsigned char)(((i + seed) * 2654435761u) >> 13);
}

static void fill(unsigned char *b, uint64_t off, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = pat(off + i, seed);
}

/* Writes N pattern bytes (blocking). Returns the count written, or -1. */
static long send_pat(int fd, size_t n, unsigned seed)
{
	unsigned char b[16384];
	size_t done = 0;

	while (done < n) {
		size_t k = n - done < sizeof(b) ? n - done : sizeof(b);

		fill(b, done, k, seed);
		ssize_t r = write(fd, b, k);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		done += (size_t)r;
		/* a short write: the rest of this chunk goes in the next round */
	}
	return (long)done;
}

/* Reads until N bytes or EOF/error, checking the pattern. Returns the count; *OK. */
static long recv_pat(int fd, size_t n, unsigned seed, int *ok)
{
	unsigned char b[16384];
	size_t done = 0;

	*ok = 1;
	while (done < n) {
		size_t k = n - done < sizeof(b) ? n - done : sizeof(b);
		ssize_t r = read(fd, b, k);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN) {
			struct pollfd p = {fd, POLLIN, 0};

			poll(&p, 1, WAIT_MS);
			continue;
		}
		if (r <= 0)
			break;
		for (ssize_t i = 0; i < r; i++)
			if (b[i] != pat(done + (size_t)i, seed))
				*ok = 0;
		done += (size_t)r;
	}
	return (long)done;
}

/* Reads exactly N bytes (or up to EOF) into BUF. Returns the count, or -1. */
static long read_exact(int fd, void *buf, size_t n)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r = read(fd, (char *)buf + done, n - done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return done ? (long)done : -1;
		if (r == 0)
			break;
		done += (size_t)r;
	}
	return (long)done;
}

static void expect_eof(int fd)
{
	char b[16];

	CALLD("read at end", read(fd, b, sizeof(b)), b);
}

/* ==== patterns ======================================================================= */

/* ---- blocking read/write ---- */

static void blocking_rw_c(void)
{
	char b[64];
	int fd = client();

	CALL("write ping", write(fd, "ping", 4));
	CALLD("read pong", read_exact(fd, b, 4), b);
	CALL("write 100000", send_pat(fd, 100000, 1));
	int ok;
	long n = recv_pat(fd, 100000, 2, &ok);
	say("read 100000 = %ld intact=%d", n, ok);
	CALL("close", close(fd));
}

static void blocking_rw_s(void)
{
	char b[64];
	int fd = server();

	CALLD("read ping", read_exact(fd, b, 4), b);
	CALL("write pong", write(fd, "pong", 4));
	int ok;
	long n = recv_pat(fd, 100000, 1, &ok);
	say("read 100000 = %ld intact=%d", n, ok);
	CALL("write 100000", send_pat(fd, 100000, 2));
	expect_eof(fd);
	close(fd);
}

/* ---- non-blocking connect ---- */

static void nonblock_connect_c(void)
{
	struct sockaddr_in a;
	char b[64];
	int err = -1;
	socklen_t len = sizeof(err);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

	peer_addr(&a);
	CALL("connect", connect(fd, (struct sockaddr *)&a, sizeof(a)));
	struct pollfd p = {fd, POLLOUT, 0};
	CALL("poll POLLOUT", poll(&p, 1, WAIT_MS));
	say("revents = %s", pollname(p.revents));
	CALL("getsockopt SO_ERROR", getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len));
	say("so_error = %s", err ? en(err) : "0");
	CALL("connect again (completes)", connect(fd, (struct sockaddr *)&a, sizeof(a)));
	CALL("connect a third time", connect(fd, (struct sockaddr *)&a, sizeof(a)));
	CALL("write greeting", write(fd, "G", 1));
	p.events = POLLIN;
	CALL("poll POLLIN", poll(&p, 1, WAIT_MS));
	say("revents = %s", pollname(p.revents));
	CALLD("read", read(fd, b, sizeof(b)), b);
	CALLD("read", read(fd, b, sizeof(b)), b);
	CALL("close", close(fd));
}

static void nonblock_connect_s(void)
{
	int fd = server();

	CALL("write ok", write(fd, "ok", 2));
	expect_eof(fd);
	close(fd);
}

/* ---- non-blocking read: EAGAIN exactly when no data ---- */

static void nonblock_read_c(void)
{
	char b[64];
	int fd = client();

	set_nonblock(fd, 1);
	CALLD("read (nothing sent)", read(fd, b, sizeof(b)), b);
	CALLD("recv (nothing sent)", recv(fd, b, sizeof(b), 0), b);
	sync_send('a');
	sync_wait('b');
	CALLD("read (after data1)", read(fd, b, sizeof(b)), b);
	CALLD("read (drained)", read(fd, b, sizeof(b)), b);
	sync_send('c');
	sync_wait('d');
	CALLD("read 3 of 6", read(fd, b, 3), b);
	CALLD("read rest", read(fd, b, sizeof(b)), b);
	CALLD("read (drained)", read(fd, b, sizeof(b)), b);
	sync_send('e');
	sync_wait('f');
	struct pollfd p = {fd, POLLIN, 0};
	CALL("poll POLLIN", poll(&p, 1, WAIT_MS));
	say("revents = %s", pollname(p.revents));
	CALLD("read (peer closed)", read(fd, b, sizeof(b)), b);
	CALL("close", close(fd));
}

static void nonblock_read_s(void)
{
	int fd = server();

	sync_wait('a');
	CALL("write data1", write(fd, "data1", 5));
	sync_send('b');
	sync_wait('c');
	CALL("write abcdef", write(fd, "abcdef", 6));
	sync_send('d');
	sync_wait('e');
	CALL("close", close(fd));
	sync_send('f');
}

/* ---- non-blocking write on a full socket ---- */

static void nonblock_write_c(void)
{
	static unsigned char b[65536];
	int fd = client();
	uint64_t total = 0;
	long writes = 0;
	int last_err = 0;

	set_nonblock(fd, 1);
	/*
	 * Fill until a write fails after the connection stood still. The first
	 * EAGAIN is not enough: the kernel goes on moving the send buffer into
	 * the peer's receive buffer after it (later still on a loaded machine),
	 * so a later write could succeed, plain or not. Nor is an EAGAIN before
	 * the connection was seen standing still: the ACKs that stopped it may
	 * have made room since.
	 */
	uint64_t until = now_ms() + 4 * WAIT_MS;

	for (int i = 0; i < 100000; i++) {
		int still = tcp_standing_still(fd);

		fill(b, total, sizeof(b), 3);
		ssize_t r = write(fd, b, sizeof(b));

		if (r < 0 && errno == EAGAIN && !still && now_ms() < until) {
			struct pollfd w = {fd, POLLOUT, 0};

			poll(&w, 1, 10); /* room, or the last ACK: look again */
			continue;
		}
		if (r < 0) {
			last_err = errno;
			break;
		}
		writes++;
		total += (uint64_t)r;
	}
	say("fill: writes>0 = %d, ended with %s", writes > 0, last_err ? en(last_err) : "none");
	say("fill: standing still = %d", tcp_standing_still(fd));
	struct pollfd p = {fd, POLLOUT, 0};
	CALL("poll POLLOUT (full)", poll(&p, 1, 0));
	say("revents = %s", pollname(p.revents));
	long again = CALL("write again (full)", write(fd, b, sizeof(b)));
	if (again > 0)
		total += (uint64_t)again;
	sync_send_u64(total);
	/* The peer drains everything; the socket becomes writable again. */
	CALL("poll POLLOUT (draining)", poll(&p, 1, WAIT_MS));
	say("revents = %s", pollname(p.revents));
	sync_wait('d');
	CALL("write tail", write(fd, "tail", 4));
	CALL("close", close(fd));
}

static void nonblock_write_s(void)
{
	char b[16];
	int fd = server();
	uint64_t total = sync_wait_u64();
	int ok;
	long n = recv_pat(fd, total, 3, &ok);

	say("read all filled bytes = %d intact=%d", (uint64_t)n == total, ok);
	sync_send('d');
	CALLD("read tail", read_exact(fd, b, 4), b);
	expect_eof(fd);
	close(fd);
}

/* ---- readiness: one scenario, seven ways to wait ---- */

enum waitkind { W_POLL, W_PPOLL, W_SELECT, W_PSELECT, W_EPOLL, W_EPOLL_PWAIT, W_EPOLL_PWAIT2 };
static int g_ep = -1;

/* Waits for EVENTS (POLLIN/POLLOUT) on FD; prints the result and the ready set. */
static void wait_fd(enum waitkind k, int fd, short events, int ms, const char *label)
{
	char what[96];
	int r, e;
	short rev = 0;

	snprintf(what, sizeof(what), "wait %s %s %dms", label, pollname(events), ms);
	switch (k) {
	case W_POLL:
	case W_PPOLL: {
		struct pollfd p = {fd, events, 0};
		struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
		sigset_t ss;

		sigemptyset(&ss);
		r = k == W_POLL ? poll(&p, 1, ms) : ppoll(&p, 1, &ts, &ss);
		e = errno;
		rev = p.revents;
		break;
	}
	case W_SELECT:
	case W_PSELECT: {
		fd_set rd, wr, ex;
		struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
		struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

		FD_ZERO(&rd);
		FD_ZERO(&wr);
		FD_ZERO(&ex);
		if (events & POLLIN)
			FD_SET(fd, &rd);
		if (events & POLLOUT)
			FD_SET(fd, &wr);
		FD_SET(fd, &ex);
		r = k == W_SELECT ? select(fd + 1, &rd, &wr, &ex, &tv)
				  : pselect(fd + 1, &rd, &wr, &ex, &ts, NULL);
		e = errno;
		if (r > 0) {
			rev |= FD_ISSET(fd, &rd) ? POLLIN : 0;
			rev |= FD_ISSET(fd, &wr) ? POLLOUT : 0;
			rev |= FD_ISSET(fd, &ex) ? POLLPRI : 0;
		}
		break;
	}
	case W_EPOLL:
	case W_EPOLL_PWAIT:
	case W_EPOLL_PWAIT2:
	default: {
		struct epoll_event ev = {.events = (uint32_t)events, .data.u32 = 7}, out[4];
		struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

		if (g_ep < 0) {
			g_ep = epoll_create1(EPOLL_CLOEXEC);
			if (epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev) < 0)
				die("epoll_ctl add");
		} else if (epoll_ctl(g_ep, EPOLL_CTL_MOD, fd, &ev) < 0) {
			die("epoll_ctl mod");
		}
		memset(out, 0, sizeof(out));
		r = k == W_EPOLL         ? epoll_wait(g_ep, out, 4, ms)
		    : k == W_EPOLL_PWAIT ? epoll_pwait(g_ep, out, 4, ms, NULL)
					 : epoll_pwait2(g_ep, out, 4, &ts, NULL);
		e = errno;
		if (r > 0) {
			rev = (short)out[0].events;
			if (out[0].data.u32 != 7)
				say("epoll data mismatch");
		}
		break;
	}
	}
	show(what, r, e);
	if (r > 0)
		say("  ready = %s", pollname(rev));
}

static void ready_c(enum waitkind k)
{
	char b[64];
	int fd = client();

	wait_fd(k, fd, POLLIN, 0, "idle");
	wait_fd(k, fd, POLLOUT, 0, "idle");
	sync_send('a');
	sync_wait('b');
	wait_fd(k, fd, POLLIN | POLLOUT, WAIT_MS, "data");
	CALLD("read", read(fd, b, sizeof(b)), b);
	wait_fd(k, fd, POLLIN, 0, "drained");
	sync_send('c');
	sync_wait('d');
	CALLD("read 4 of 10", read(fd, b, 4), b);
	wait_fd(k, fd, POLLIN, 0, "6 buffered");
	wait_fd(k, fd, POLLIN, WAIT_MS, "6 buffered");
	CALLD("read rest", read(fd, b, sizeof(b)), b);
	wait_fd(k, fd, POLLIN, 0, "drained");
	wait_fd(k, fd, POLLIN, 100, "drained");
	sync_send('e');
	sync_wait('f');
	wait_fd(k, fd, POLLIN, WAIT_MS, "peer shut");
	CALLD("read", read(fd, b, sizeof(b)), b);
	wait_fd(k, fd, POLLIN | POLLOUT, 0, "peer shut");
	CALL("write after peer's shutdown", write(fd, "z", 1));
	CALL("close", close(fd));
}

static void ready_s(void)
{
	char b[16];
	int fd = server();

	sync_wait('a');
	CALL("write abc", write(fd, "abc", 3));
	sync_send('b');
	sync_wait('c');
	CALL("write 0123456789", write(fd, "0123456789", 10));
	sync_send('d');
	sync_wait('e');
	CALL("shutdown SHUT_WR", shutdown(fd, SHUT_WR));
	sync_send('f');
	CALLD("read", read_exact(fd, b, 1), b);
	expect_eof(fd);
	close(fd);
}

static void poll_c(void)
{
	ready_c(W_POLL);
}
static void ppoll_c(void)
{
	ready_c(W_PPOLL);
}
static void select_c(void)
{
	ready_c(W_SELECT);
}
static void pselect_c(void)
{
	ready_c(W_PSELECT);
}
static void epoll_wait_c(void)
{
	ready_c(W_EPOLL);
}
static void epoll_pwait_c(void)
{
	ready_c(W_EPOLL_PWAIT);
}
static void epoll_pwait2_c(void)
{
	ready_c(W_EPOLL_PWAIT2);
}

/* ---- epoll: level-triggered, edge-triggered, one-shot, several sets, closed fd ---- */

static void ep_wait(int ep, int ms, const char *label)
{
	struct epoll_event out[4];
	char what[96];

	memset(out, 0, sizeof(out));
	snprintf(what, sizeof(what), "epoll_wait %s %dms", label, ms);
	int r = (int)CALL(what, epoll_wait(ep, out, 4, ms));
	for (int i = 0; i < r; i++)
		say("  event tag=%u %s", out[i].data.u32, epname(out[i].events));
}

static int ep_add(int ep, int fd, uint32_t ev, uint32_t tag, int op)
{
	struct epoll_event e = {.events = ev, .data.u32 = tag};

	return epoll_ctl(ep, op, fd, &e);
}

static void epoll_level_c(void)
{
	char b[64];
	int fd = client();
	int ep = epoll_create1(0);

	CALL("epoll_ctl ADD EPOLLIN", ep_add(ep, fd, EPOLLIN, 1, EPOLL_CTL_ADD));
	ep_wait(ep, 0, "idle");
	sync_send('a');
	sync_wait('b');
	ep_wait(ep, WAIT_MS, "data");
	ep_wait(ep, 0, "data, not read");
	CALLD("read 4 of 10", read(fd, b, 4), b);
	ep_wait(ep, 0, "6 buffered");
	CALLD("read rest", read(fd, b, sizeof(b)), b);
	ep_wait(ep, 0, "drained");
	CALL("epoll_ctl MOD EPOLLIN|EPOLLOUT",
	     ep_add(ep, fd, EPOLLIN | EPOLLOUT, 2, EPOLL_CTL_MOD));
	ep_wait(ep, 0, "writable");
	ep_wait(ep, 0, "writable again");
	CALL("epoll_ctl DEL", ep_add(ep, fd, 0, 0, EPOLL_CTL_DEL));
	CALL("epoll_ctl DEL again", ep_add(ep, fd, 0, 0, EPOLL_CTL_DEL));
	CALL("epoll_ctl MOD after DEL", ep_add(ep, fd, EPOLLIN, 0, EPOLL_CTL_MOD));
	CALL("epoll_ctl ADD", ep_add(ep, fd, EPOLLIN, 3, EPOLL_CTL_ADD));
	CALL("epoll_ctl ADD twice", ep_add(ep, fd, EPOLLIN, 3, EPOLL_CTL_ADD));
	sync_send('c');
	sync_wait('d');
	ep_wait(ep, WAIT_MS, "peer closed");
	CALLD("read", read(fd, b, sizeof(b)), b);
	ep_wait(ep, 0, "after EOF");
	CALL("close", close(fd));
	close(ep);
}

static void epoll_level_s(void)
{
	int fd = server();

	sync_wait('a');
	CALL("write 0123456789", write(fd, "0123456789", 10));
	sync_send('b');
	sync_wait('c');
	CALL("close", close(fd));
	sync_send('d');
}

static void epoll_edge_c(void)
{
	char b[64];
	int fd = client();
	int ep = epoll_create1(0);

	set_nonblock(fd, 1);
	CALL("epoll_ctl ADD EPOLLIN|EPOLLET", ep_add(ep, fd, EPOLLIN | EPOLLET, 1, EPOLL_CTL_ADD));
	ep_wait(ep, 0, "idle");
	sync_send('a');
	sync_wait('b');
	ep_wait(ep, WAIT_MS, "data");
	ep_wait(ep, 0, "no new data");
	CALLD("read 4 of 10", read(fd, b, 4), b);
	ep_wait(ep, 0, "partly read");
	CALLD("read", read(fd, b, sizeof(b)), b);
	CALLD("read until EAGAIN", read(fd, b, sizeof(b)), b);
	ep_wait(ep, 0, "drained");
	sync_send('c');
	sync_wait('d');
	ep_wait(ep, WAIT_MS, "more data");
	CALLD("read", read(fd, b, sizeof(b)), b);
	CALLD("read until EAGAIN", read(fd, b, sizeof(b)), b);
	ep_wait(ep, 100, "drained");
	CALL("epoll_ctl MOD EPOLLIN|EPOLLOUT|EPOLLET",
	     ep_add(ep, fd, EPOLLIN | EPOLLOUT | EPOLLET, 2, EPOLL_CTL_MOD));
	ep_wait(ep, 0, "writable edge");
	ep_wait(ep, 0, "writable, no new edge");
	sync_send('e');
	sync_wait('f');
	ep_wait(ep, WAIT_MS, "peer closed");
	CALLD("read", read(fd, b, sizeof(b)), b);
	CALLD("read", read(fd, b, sizeof(b)), b);
	CALL("close", close(fd));
	close(ep);
}

static void epoll_edge_s(void)
{
	int fd = server();

	sync_wait('a');
	CALL("write 0123456789", write(fd, "0123456789", 10));
	sync_send('b');
	sync_wait('c');
	CALL("write xyz", write(fd, "xyz", 3));
	sync_send('d');
	sync_wait('e');
	CALL("close", close(fd));
	sync_send('f');
}

static void epoll_oneshot_c(void)
{
	char b[64];
	int fd = client();
	int ep = epoll_create1(0);

	CALL("epoll_ctl ADD EPOLLIN|EPOLLONESHOT",
	     ep_add(ep, fd, EPOLLIN | EPOLLONESHOT, 1, EPOLL_CTL_ADD));
	sync_send('a');
	sync_wait('b');
	ep_wait(ep, WAIT_MS, "data");
	ep_wait(ep, 0, "disarmed");
	sync_send('c');
	sync_wait('d');
	ep_wait(ep, 100, "disarmed, more data");
	CALL("epoll_ctl MOD re-arm", ep_add(ep, fd, EPOLLIN | EPOLLONESHOT, 2, EPOLL_CTL_MOD));
	ep_wait(ep, WAIT_MS, "re-armed");
	ep_wait(ep, 0, "disarmed");
	CALLD("read_exact 2", read_exact(fd, b, 2), b);
	CALL("epoll_ctl MOD re-arm", ep_add(ep, fd, EPOLLIN | EPOLLONESHOT, 3, EPOLL_CTL_MOD));
	ep_wait(ep, 100, "re-armed, drained");
	sync_send('e');
	sync_wait('f');
	ep_wait(ep, WAIT_MS, "peer closed");
	CALLD("read", read(fd, b, sizeof(b)), b);
	CALL("close", close(fd));
	close(ep);
}

static void epoll_oneshot_s(void)
{
	int fd = server();

	sync_wait('a');
	CALL("write a", write(fd, "a", 1));
	sync_send('b');
	sync_wait('c');
	CALL("write b", write(fd, "b", 1));
	sync_send('d');
	sync_wait('e');
	CALL("close", close(fd));
	sync_send('f');
}

static void epoll_two_sets_c(void)
{
	char b[64];
	int fd = client();
	int ep1 = epoll_create1(0), ep2 = epoll_create1(0);

	CALL("epoll_ctl ADD set 1 level", ep_add(ep1, fd, EPOLLIN, 1, EPOLL_CTL_ADD));
	CALL("epoll_ctl ADD set 2 edge", ep_add(ep2, fd, EPOLLIN | EPOLLET, 2, EPOLL_CTL_ADD));
	ep_wait(ep1, 0, "set 1 idle");
	ep_wait(ep2, 0, "set 2 idle");
	sync_send('a');
	sync_wait('b');
	ep_wait(ep1, WAIT_MS, "set 1 data");
	ep_wait(ep2, WAIT_MS, "set 2 data");
	ep_wait(ep1, 0, "set 1 again");
	ep_wait(ep2, 0, "set 2 again");
	CALLD("read", read(fd, b, sizeof(b)), b);
	ep_wait(ep1, 0, "set 1 drained");
	ep_wait(ep2, 0, "set 2 drained");
	CALL("epoll_ctl DEL set 1", ep_add(ep1, fd, 0, 0, EPOLL_CTL_DEL));
	sync_send('c');
	sync_wait('d');
	ep_wait(ep1, 100, "set 1 after DEL");
	ep_wait(ep2, WAIT_MS, "set 2 more data");
	CALLD("read", read(fd, b, sizeof(b)), b);
	CALL("close", close(fd));
	ep_wait(ep2, 0, "set 2 after close");
	close(ep1);
	close(ep2);
}

/*
 * An epoll set watching another epoll set whose fd has data. A known limit
 * under the shim when the data is already decrypted in OpenSSL's buffer: the
 * outer set asks the kernel about the inner one, which cannot know.
 */
static void epoll_nested_c(void)
{
	char b[64];
	int fd = client();
	int ep1 = epoll_create1(0), ep3 = epoll_create1(0);

	CALL("epoll_ctl ADD", ep_add(ep1, fd, EPOLLIN, 1, EPOLL_CTL_ADD));
	CALL("epoll_ctl ADD set 1 into set 3", ep_add(ep3, ep1, EPOLLIN, 3, EPOLL_CTL_ADD));
	sync_send('a');
	sync_wait('b');
	ep_wait(ep1, WAIT_MS, "set 1 data");
	ep_wait(ep3, 0, "set 3 (nested)");
	CALLD("read", read(fd, b, sizeof(b)), b);
	ep_wait(ep3, 0, "set 3 drained");
	CALL("close", close(fd));
	close(ep1);
	close(ep3);
}

static void epoll_nested_s(void)
{
	int fd = server();

	sync_wait('a');
	CALL("write hello", write(fd, "hello", 5));
	sync_send('b');
	expect_eof(fd);
	close(fd);
}

static void epoll_two_sets_s(void)
{
	int fd = server();

	sync_wait('a');
	CALL("write hello", write(fd, "hello", 5));
	sync_send('b');
	sync_wait('c');
	CALL("write more", write(fd, "more", 4));
	sync_send('d');
	expect_eof(fd);
	close(fd);
}

static void epoll_closed_fd_c(void)
{
	char b[64];
	int fd = client();
	int ep = epoll_create1(0);

	/* The only fd of the socket closed: the registration goes away with it. */
	CALL("epoll_ctl ADD", ep_add(ep, fd, EPOLLIN, 1, EPOLL_CTL_ADD));
	int fd2 = dup(fd);
	say("dup = %s", fd2 >= 0 ? "ok" : en(errno));
	CALL("close original (dup remains)", close(fd));
	CALL("epoll_ctl DEL closed fd", ep_add(ep, fd, 0, 0, EPOLL_CTL_DEL));
	sync_send('a');
	sync_wait('b');
	/* Linux: the registration lives on while another fd holds the socket open. */
	ep_wait(ep, WAIT_MS, "registered fd closed, dup open");
	CALLD("read via dup", read(fd2, b, sizeof(b)), b);
	ep_wait(ep, 0, "drained");
	CALL("close dup", close(fd2));
	ep_wait(ep, 0, "all fds closed");
	close(ep);

	/* A second connection: its only fd closed while registered. */
	int c2 = connect_conn();
	greet_c(c2);
	ep = epoll_create1(0);
	CALL("epoll_ctl ADD", ep_add(ep, c2, EPOLLIN | EPOLLOUT, 2, EPOLL_CTL_ADD));
	ep_wait(ep, 0, "open");
	CALL("close", close(c2));
	ep_wait(ep, 0, "closed");
	sync_send('c');
	sync_wait('d');
	ep_wait(ep, 100, "closed, peer wrote");
	close(ep);
}

static void epoll_closed_fd_s(void)
{
	int fd = server();

	sync_wait('a');
	CALL("write data", write(fd, "data", 4));
	sync_send('b');
	expect_eof(fd);
	close(fd);
	int c2 = server();
	sync_wait('c');
	CALL("write to closed peer", send(c2, "x", 1, MSG_NOSIGNAL));
	sync_send('d');
	expect_eof(c2);
	close(c2);
}

/* ---- recv flags ---- */

static void msg_peek_c(void)
{
	char b[64];
	int fd = client();

	CALLD("recv PEEK 5 (blocks)", recv(fd, b, 5, MSG_PEEK), b);
	sync_wait('b');
	CALLD("recv PEEK 100", recv(fd, b, 100, MSG_PEEK), b);
	CALLD("recv PEEK 100 again", recv(fd, b, 100, MSG_PEEK), b);
	CALLD("recv 5", recv(fd, b, 5, 0), b);
	CALLD("recv PEEK|DONTWAIT", recv(fd, b, 100, MSG_PEEK | MSG_DONTWAIT), b);
	int n = -1;
	CALL("ioctl FIONREAD", ioctl(fd, FIONREAD, &n));
	say("fionread = %d", n);
	CALLD("recv 100", recv(fd, b, 100, 0), b);
	CALLD("recv PEEK|DONTWAIT (empty)", recv(fd, b, 100, MSG_PEEK | MSG_DONTWAIT), b);
	sync_send('c');
	sync_wait('d');
	CALLD("recv PEEK (peer closed)", recv(fd, b, 100, MSG_PEEK), b);
	CALLD("recv (peer closed)", recv(fd, b, 100, 0), b);
	CALL("close", close(fd));
}

static void msg_peek_s(void)
{
	int fd = server();

	CALL("write hello world", write(fd, "hello world", 11));
	sync_send('b');
	sync_wait('c');
	CALL("close", close(fd));
	sync_send('d');
}

static void msg_waitall_c(void)
{
	char b[64];
	int fd = client();

	sync_send('a');
	CALLD("recv WAITALL 8 (arrives in 2 parts)", recv(fd, b, 8, MSG_WAITALL), b);
	sync_send('c');
	CALLD("recv WAITALL 10 (peer sends 2, shuts)", recv(fd, b, 10, MSG_WAITALL), b);
	CALLD("recv WAITALL after EOF", recv(fd, b, 10, MSG_WAITALL), b);
	CALL("close", close(fd));
}

static void msg_waitall_s(void)
{
	int fd = server();

	sync_wait('a');
	CALL("write abc", write(fd, "abc", 3));
	msleep(100);
	CALL("write defgh", write(fd, "defgh", 5));
	sync_wait('c');
	CALL("write xy", write(fd, "xy", 2));
	msleep(50);
	CALL("shutdown SHUT_WR", shutdown(fd, SHUT_WR));
	expect_eof(fd);
	close(fd);
}

static void msg_dontwait_c(void)
{
	char b[64];
	int fd = client();

	CALLD("recv DONTWAIT (nothing)", recv(fd, b, sizeof(b), MSG_DONTWAIT), b);
	CALLD("recvfrom DONTWAIT (nothing)", recvfrom(fd, b, sizeof(b), MSG_DONTWAIT, NULL, NULL),
	      b);
	say("O_NONBLOCK = %d", !!(fcntl(fd, F_GETFL) & O_NONBLOCK));
	sync_send('a');
	sync_wait('b');
	CALLD("recv DONTWAIT", recv(fd, b, sizeof(b), MSG_DONTWAIT), b);
	CALL("send DONTWAIT", send(fd, "reply", 5, MSG_DONTWAIT));
	CALLD("recv (blocking)", recv(fd, b, sizeof(b), 0), b);
	CALL("close", close(fd));
}

static void msg_dontwait_s(void)
{
	char b[64];
	int fd = server();

	sync_wait('a');
	CALL("write data", write(fd, "data", 4));
	sync_send('b');
	CALLD("read reply", read_exact(fd, b, 5), b);
	CALL("write last", write(fd, "last", 4));
	expect_eof(fd);
	close(fd);
}

/* ---- SIGPIPE / MSG_NOSIGNAL ---- */

static volatile sig_atomic_t g_sigpipes, g_alarms;

static void on_sigpipe(int s)
{
	(void)s;
	g_sigpipes++;
}

static void sigpipe_c(void)
{
	char b[64];
	struct sigaction sa = {.sa_handler = on_sigpipe};
	int fd = client();

	sigaction(SIGPIPE, &sa, NULL);
	sync_wait('a'); /* the peer closed */
	CALLD("read (peer closed)", read(fd, b, sizeof(b)), b);
	CALL("send NOSIGNAL (first after close)", send(fd, "x", 1, MSG_NOSIGNAL));
	msleep(100); /* the peer's RST comes back */
	say("sigpipes = %d", (int)g_sigpipes);
	CALL("send NOSIGNAL", send(fd, "x", 1, MSG_NOSIGNAL));
	say("sigpipes = %d", (int)g_sigpipes);
	CALL("write", write(fd, "x", 1));
	say("sigpipes = %d", (int)g_sigpipes);
	CALL("send 0 flags", send(fd, "x", 1, 0));
	say("sigpipes = %d", (int)g_sigpipes);
	struct iovec v = {"x", 1};
	CALL("writev", writev(fd, &v, 1));
	say("sigpipes = %d", (int)g_sigpipes);
	CALL("close", close(fd));
}

static void sigpipe_s(void)
{
	int fd = server();

	CALL("close", close(fd));
	msleep(50);
	sync_send('a');
}

/* ---- shutdown(SHUT_WR) half-close ---- */

static void half_close_c(void)
{
	char b[64];
	int fd = client();

	CALL("write req", write(fd, "req", 3));
	CALL("shutdown SHUT_WR", shutdown(fd, SHUT_WR));
	CALL("send after SHUT_WR (NOSIGNAL)", send(fd, "x", 1, MSG_NOSIGNAL));
	CALLD("read resp", read_exact(fd, b, 4), b);
	sync_wait('b');
	struct pollfd p = {fd, POLLIN | POLLOUT | POLLRDHUP, 0};
	CALL("poll", poll(&p, 1, WAIT_MS));
	say("revents = %s", pollname(p.revents));
	CALLD("read", read(fd, b, sizeof(b)), b);
	CALLD("read", read(fd, b, sizeof(b)), b);
	CALL("shutdown SHUT_WR again", shutdown(fd, SHUT_WR));
	CALL("shutdown SHUT_RDWR", shutdown(fd, SHUT_RDWR));
	CALL("close", close(fd));
}

static void half_close_s(void)
{
	char b[64];
	int fd = server();

	CALLD("read req", read_exact(fd, b, 3), b);
	CALLD("read (client shut)", read(fd, b, sizeof(b)), b);
	struct pollfd p = {fd, POLLIN | POLLOUT | POLLRDHUP, 0};
	CALL("poll", poll(&p, 1, 0));
	say("revents = %s", pollname(p.revents));
	CALL("write resp", write(fd, "resp", 4));
	CALL("write more", write(fd, "more", 4));
	CALL("close", close(fd));
	sync_send('b');
}

/* ---- peer close ---- */

static void peer_close_c(void)
{
	char b[64];
	int fd = client();

	sync_wait('a');
	struct pollfd p = {fd, POLLIN | POLLRDHUP, 0};
	CALL("poll", poll(&p, 1, WAIT_MS));
	say("revents = %s", pollname(p.revents));
	CALLD("read", read(fd, b, sizeof(b)), b);
	CALL("poll", poll(&p, 1, 0));
	say("revents = %s", pollname(p.revents));
	CALLD("read", read(fd, b, sizeof(b)), b);
	CALLD("read again", read(fd, b, sizeof(b)), b);
	p.events = POLLIN;
	CALL("poll POLLIN", poll(&p, 1, 0));
	say("revents = %s", pollname(p.revents));
	int n = -1;
	CALL("ioctl FIONREAD", ioctl(fd, FIONREAD, &n));
	say("fionread = %d", n);
	CALL("close", close(fd));
}

static void peer_close_s(void)
{
	int fd = server();

	CALL("write bye", write(fd, "bye", 3));
	CALL("close", close(fd));
	msleep(50);
	sync_send('a');
}

/* ---- FIONREAD ---- */

static void fionread_c(void)
{
	char b[64];
	int n = -1;
	int fd = client();

	CALL("ioctl FIONREAD (nothing)", ioctl(fd, FIONREAD, &n));
	say("fionread = %d", n);
	sync_send('a');
	sync_wait('b');
	CALL("ioctl FIONREAD", ioctl(fd, FIONREAD, &n));
	say("fionread = %d", n);
	CALLD("read 4", read(fd, b, 4), b);
	CALL("ioctl FIONREAD", ioctl(fd, FIONREAD, &n));
	say("fionread = %d", n);
	CALLD("read rest", read(fd, b, sizeof(b)), b);
	CALL("ioctl FIONREAD", ioctl(fd, FIONREAD, &n));
	say("fionread = %d", n);
	CALL("close", close(fd));
}

static void fionread_s(void)
{
	int fd = server();

	sync_wait('a');
	CALL("write 0123456789", write(fd, "0123456789", 10));
	sync_send('b');
	expect_eof(fd);
	close(fd);
}

/* ---- O_NONBLOCK round trip, FIONBIO ---- */

static void fcntl_nonblock_c(void)
{
	char b[64];
	int one = 1, zero = 0;
	int fd = client();

	say("F_GETFL = %s", (fcntl(fd, F_GETFL) & O_NONBLOCK) ? "O_NONBLOCK" : "blocking");
	say("F_GETFL accmode = %d", fcntl(fd, F_GETFL) & O_ACCMODE);
	CALL("F_SETFL O_NONBLOCK", fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK));
	say("F_GETFL = %s", (fcntl(fd, F_GETFL) & O_NONBLOCK) ? "O_NONBLOCK" : "blocking");
	CALLD("read", read(fd, b, sizeof(b)), b);
	CALL("F_SETFL 0", fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK));
	say("F_GETFL = %s", (fcntl(fd, F_GETFL) & O_NONBLOCK) ? "O_NONBLOCK" : "blocking");
	CALL("ioctl FIONBIO 1", ioctl(fd, FIONBIO, &one));
	say("F_GETFL = %s", (fcntl(fd, F_GETFL) & O_NONBLOCK) ? "O_NONBLOCK" : "blocking");
	CALLD("read", read(fd, b, sizeof(b)), b);
	CALL("ioctl FIONBIO 0", ioctl(fd, FIONBIO, &zero));
	say("F_GETFL = %s", (fcntl(fd, F_GETFL) & O_NONBLOCK) ? "O_NONBLOCK" : "blocking");
	say("F_GETFD = %d", fcntl(fd, F_GETFD));
	CALL("F_SETFD FD_CLOEXEC", fcntl(fd, F_SETFD, FD_CLOEXEC));
	say("F_GETFD = %d", fcntl(fd, F_GETFD));
	sync_send('a');
	CALLD("read (blocking, waits for data)", read(fd, b, sizeof(b)), b);
	CALL("close", close(fd));
}

static void fcntl_nonblock_s(void)
{
	int fd = server();

	sync_wait('a');
	msleep(100);
	CALL("write late", write(fd, "late", 4));
	expect_eof(fd);
	close(fd);
}

/* ---- readv/writev, sendmsg/recvmsg, sendto/recvfrom ---- */

static void vectored_c(void)
{
	char a[3], b2[3], c3[8], buf[64];
	int fd = client();
	struct iovec w[3] = {{"ab", 2}, {"cde", 3}, {"fghij", 5}};

	CALL("writev 2+3+5", writev(fd, w, 3));
	struct iovec r[3] = {{a, 3}, {b2, 3}, {c3, 8}};
	sync_wait('b');
	long n = CALL("readv 3+3+8", readv(fd, r, 3));
	if (n >= 0)
		say("  iov %.3s|%.3s|%.*s", a, b2, (int)(n > 6 ? n - 6 : 0), c3);
	struct msghdr m = {0};
	struct iovec ri = {buf, sizeof(buf)};
	m.msg_iov = &ri;
	m.msg_iovlen = 1;
	sync_send('c');
	sync_wait('d');
	n = CALLD("recvmsg", recvmsg(fd, &m, 0), buf);
	say("  msg_flags = %d msg_namelen = %d msg_controllen = %d", m.msg_flags,
	    (int)m.msg_namelen, (int)m.msg_controllen);
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	CALL("sendto NULL addr", sendto(fd, "to", 2, 0, NULL, 0));
	CALLD("recvfrom with addr", recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&sa, &sl),
	      buf);
	say("  addrlen = %d", (int)sl);
	struct iovec e = {buf, 0};
	CALL("writev zero length", writev(fd, &e, 1));
	CALL("write zero length", write(fd, buf, 0));
	CALL("close", close(fd));
}

static void vectored_s(void)
{
	char buf[64];
	int fd = server();

	CALLD("read_exact 10", read_exact(fd, buf, 10), buf);
	CALL("write 12345678", write(fd, "12345678", 8));
	sync_send('b');
	sync_wait('c');
	struct iovec w[2] = {{"msg", 3}, {"-data", 5}};
	struct msghdr m = {0};
	m.msg_iov = w;
	m.msg_iovlen = 2;
	CALL("sendmsg 3+5", sendmsg(fd, &m, 0));
	sync_send('d');
	CALLD("read_exact 2", read_exact(fd, buf, 2), buf);
	CALL("send from", send(fd, "from", 4, 0));
	expect_eof(fd);
	close(fd);
}

/* ---- preadv2/pwritev2 (offset -1 is readv/writev), and the positional calls ---- */

static void rwv2_c(void)
{
	char a[2], b2[8], buf[16];
	int fd = client();
	struct iovec w[2] = {{"ab", 2}, {"cd", 2}};
	struct iovec e = {buf, 0};
	struct iovec one = {"e", 1};

	CALL("pwritev2 -1 2+2", pwritev2(fd, w, 2, -1, 0));
	CALL("pwritev2 -1 RWF_NOWAIT", pwritev2(fd, &one, 1, -1, RWF_NOWAIT));
	CALL("pwritev2 -1 RWF_HIPRI|RWF_DSYNC", pwritev2(fd, &one, 1, -1, RWF_HIPRI | RWF_DSYNC));
	CALL("pwritev2 -1 unknown flag", pwritev2(fd, &one, 1, -1, 0x40000000));
	CALL("pwritev2 -1 unknown flag, no bytes", pwritev2(fd, &e, 1, -1, 0x40000000));
	CALL("pwritev2 offset 0", pwritev2(fd, w, 2, 0, 0));
	CALL("pwritev2 offset -2", pwritev2(fd, w, 2, -2, 0));
	CALL("pwritev offset 0", pwritev(fd, w, 2, 0));
	CALL("pwrite offset 0", pwrite(fd, "x", 1, 0));
	CALL("pwrite offset -1", pwrite(fd, "x", 1, -1));
	CALL("preadv2 -1 RWF_NOWAIT, nothing there", preadv2(fd, &e + 0, 1, -1, RWF_NOWAIT));
	struct iovec nb = {buf, sizeof(buf)};
	CALL("preadv2 -1 RWF_NOWAIT, nothing there, room", preadv2(fd, &nb, 1, -1, RWF_NOWAIT));
	sync_send('a');
	sync_wait('b');
	struct iovec r[2] = {{a, 2}, {b2, 8}};
	long n = CALL("preadv2 -1 2+8", preadv2(fd, r, 2, -1, 0));
	if (n >= 2)
		say("  iov %.2s|%.*s", a, (int)(n - 2), b2);
	CALL("preadv2 offset 0", preadv2(fd, r, 2, 0, 0));
	CALL("preadv offset 0", preadv(fd, r, 2, 0));
	CALL("pread offset 0", pread(fd, buf, 1, 0));
	CALL("close", close(fd));
}

static void rwv2_s(void)
{
	char buf[16];
	int fd = server();

	sync_wait('a');
	CALLD("read_exact 6", read_exact(fd, buf, 6), buf);
	CALL("write pong-ok", write(fd, "pong-ok", 7));
	sync_send('b');
	expect_eof(fd);
	close(fd);
}

/* ---- syscall(): the raw numbers behave as the libc calls ---- */

static void syscall_rw_c(void)
{
	char buf[16], path[] = "/tmp/conform-XXXXXX";
	int fd = client();
	struct iovec w[2] = {{"de", 2}, {"f", 1}};
	struct iovec r = {buf, sizeof(buf)};

	CALL("syscall write", syscall(SYS_write, fd, "abc", 3));
	CALL("syscall writev", syscall(SYS_writev, fd, w, 2));
	CALL("syscall sendto", syscall(SYS_sendto, fd, "gh", 2, 0, NULL, 0));
	CALL("syscall pwritev2 -1", syscall(SYS_pwritev2, fd, w, 1, -1L, 0L, 0));
	CALL("syscall pwrite64 offset 0", syscall(SYS_pwrite64, fd, "x", 1, 0L));
	sync_send('a');
	sync_wait('b');
	CALLD("syscall read", syscall(SYS_read, fd, buf, 4), buf);
	CALLD("syscall recvfrom", syscall(SYS_recvfrom, fd, buf, 2, 0, NULL, NULL), buf);
	CALLD("syscall readv", syscall(SYS_readv, fd, &r, 1), buf);
	struct pollfd p = {.fd = fd, .events = POLLIN};
	CALL("syscall poll, nothing there", syscall(SYS_poll, &p, 1, 0));
	CALL("syscall ppoll, bad sigset size", syscall(SYS_ppoll, &p, 1, NULL, &(sigset_t){0}, 4));
	int d = (int)syscall(SYS_dup, fd);
	say("syscall dup = %s", d >= 0 ? "a new fd" : en(errno));
	CALL("syscall shutdown SHUT_WR", syscall(SYS_shutdown, fd, SHUT_WR));
	sync_send('c');
	CALLD("read at end", read(fd, buf, sizeof(buf)), buf);
	/* The raw close: the next file that gets the number is an ordinary file. */
	CALL("close the dup", close(d));
	CALL("syscall close", syscall(SYS_close, fd));
	int f = mkstemp(path);
	say("file reuses the number = %d", f == fd);
	unlink(path);
	CALL("write file", write(f, "file-data", 9));
	CALL("lseek", lseek(f, 0, SEEK_SET));
	CALLD("read file", read(f, buf, sizeof(buf)), buf);
	CALL("close file", close(f));
}

static void syscall_rw_s(void)
{
	char buf[16];
	int fd = server();

	sync_wait('a');
	CALLD("read_exact 10", read_exact(fd, buf, 10), buf);
	CALL("write 1234567890", write(fd, "1234567890", 10));
	sync_send('b');
	sync_wait('c');
	expect_eof(fd);
	close(fd);
}

/* ---- the kernel's argument checks on vectored calls ---- */

/* The bad arguments are the point: the compiler's warnings about them are not. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#pragma GCC diagnostic ignored "-Wstringop-overread"
#pragma GCC diagnostic ignored "-Wnonnull"
static void iov_errors_c(void)
{
	char buf[16];
	int fd = client();
	struct iovec wrap[2] = {{buf, 10}, {buf, SIZE_MAX - 5}};
	struct iovec huge[2] = {{buf, SSIZE_MAX}, {buf, SSIZE_MAX}};
	struct iovec thirds[3] = {
	    {buf, 0x6000000000000000}, {buf, 0x6000000000000000}, {buf, 0x6000000000000000}};
	struct iovec ok = {"ok", 2};
	struct msghdr m = {0};

	CALL("writev count -1", writev(fd, &ok, -1));
	CALL("writev count 1025", writev(fd, &ok, 1025));
	CALL("writev NULL array", writev(fd, NULL, 1));
	CALL("writev sum wraps (length < 0)", writev(fd, wrap, 2));
	CALL("writev two SSIZE_MAX", writev(fd, huge, 2));
	CALL("writev three 0x6000..", writev(fd, thirds, 3));
	void *gone = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	munmap(gone, 4096);
	CALL("writev unmapped array", writev(fd, gone, 2));
	CALL("sendmsg unmapped header", sendmsg(fd, gone, 0));
	CALL("recvmsg unmapped header", recvmsg(fd, gone, MSG_DONTWAIT));
	CALL("readv count -1", readv(fd, &ok, -1));
	CALL("readv sum wraps", readv(fd, wrap, 2));
	CALL("pwritev2 -1 sum wraps", pwritev2(fd, wrap, 2, -1, 0));
	CALL("sendmsg NULL", sendmsg(fd, NULL, 0));
	m.msg_iov = wrap;
	m.msg_iovlen = 2;
	CALL("sendmsg sum wraps", sendmsg(fd, &m, 0));
	m.msg_iovlen = 1025;
	CALL("sendmsg iovlen 1025", sendmsg(fd, &m, 0));
	m.msg_iov = NULL;
	m.msg_iovlen = 1;
	CALL("sendmsg NULL iov", sendmsg(fd, &m, 0));
	m.msg_iov = wrap;
	m.msg_iovlen = 2;
	CALL("recvmsg sum wraps", recvmsg(fd, &m, MSG_DONTWAIT));
	CALL("writev zero count", writev(fd, &ok, 0));
	CALL("write NULL", write(fd, NULL, 10));
	CALL("send NULL", send(fd, NULL, 10, 0));
	struct iovec nul[2] = {{NULL, 5}, {"x", 1}};
	CALL("writev NULL first", writev(fd, nul, 2));
	struct iovec part[2] = {{"ok", 2}, {NULL, 5}};
	CALL("writev ok, then NULL", writev(fd, part, 2));
	CALL("writev ok", writev(fd, part, 1));
	sync_send('a');
	sync_wait('b');
	CALL("read NULL", read(fd, NULL, 4));
	CALL("readv NULL first", readv(fd, nul, 2));
	CALLD("read", read_exact(fd, buf, 4), buf);
	CALL("close", close(fd));
}
#pragma GCC diagnostic pop

static void iov_errors_s(void)
{
	char buf[16];
	int fd = server();

	sync_wait('a');
	CALLD("read_exact 2", read_exact(fd, buf, 2), buf);
	CALL("write back", write(fd, "back", 4));
	msleep(100); /* "back" is in the client's socket before it reads */
	sync_send('b');
	expect_eof(fd);
	close(fd);
}

/* ---- sendfile, splice, copy_file_range into the socket ---- */

static int temp_file(size_t n, unsigned seed)
{
	char path[] = "/tmp/conform-XXXXXX";
	unsigned char b[16384];
	int f = mkstemp(path);

	if (f < 0)
		die("mkstemp");
	unlink(path);
	for (size_t done = 0; done < n;) {
		size_t k = n - done < sizeof(b) ? n - done : sizeof(b);

		fill(b, done, k, seed);
		if (write(f, b, k) != (ssize_t)k)
			die("write temp");
		done += k;
	}
	lseek(f, 0, SEEK_SET);
	return f;
}

static void sendfile_c(void)
{
	int fd = client();
	int f = temp_file(100000, 4);
	off_t off = 0;
	long total = 0;

	while (total < 100000) {
		ssize_t r = sendfile(fd, f, &off, 100000 - (size_t)total);

		if (r <= 0) {
			show("sendfile", r, errno);
			break;
		}
		total += r;
	}
	say("sendfile with offset: total = %ld off = %ld filepos = %ld", total, (long)off,
	    (long)lseek(f, 0, SEEK_CUR));
	total = 0;
	lseek(f, 0, SEEK_SET);
	while (total < 50000) {
		ssize_t r = sendfile(fd, f, NULL, 50000 - (size_t)total);

		if (r <= 0) {
			show("sendfile", r, errno);
			break;
		}
		total += r;
	}
	say("sendfile NULL offset: total = %ld filepos = %ld", total, (long)lseek(f, 0, SEEK_CUR));
	sync_wait('b');
	CALL("sendfile count 0", sendfile(fd, f, NULL, 0));
	close(f);
	CALL("close", close(fd));
}

static void sendfile_s(void)
{
	int fd = server();
	int ok;
	long n = recv_pat(fd, 100000, 4, &ok);

	say("read 100000 = %ld intact=%d", n, ok);
	n = recv_pat(fd, 50000, 4, &ok);
	say("read 50000 = %ld intact=%d", n, ok);
	sync_send('b');
	expect_eof(fd);
	close(fd);
}

/*
 * A blocking sendfile() of a file much larger than the socket buffers to a
 * peer that does not read, under SO_SNDTIMEO: returns, when the time-out
 * expires, the bytes that went out, the offset moved past them; the peer then
 * reads exactly those bytes and replies.
 */
#define BIG_FILE (48u << 20)

static void sendfile_timeout_c(void)
{
	int fd = client();
	int f = temp_file(BIG_FILE, 6);
	struct timeval tv = {0, 300000};
	off_t off = 0;

	CALL("setsockopt SO_SNDTIMEO 300ms",
	     setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)));
	uint64_t t0 = now_ms();
	ssize_t r = sendfile(fd, f, &off, BIG_FILE);
	uint64_t dt = now_ms() - t0;

	say("sendfile returned after the time-out, within 10 s: %d", dt >= 250 && dt < 10000);
	say("  some but not all went out: %d; the offset moved by the count: %d",
	    r > 0 && r<(ssize_t)BIG_FILE, r> 0 && off == (off_t)r);
	sync_send_u64(r > 0 ? (uint64_t)r : 0);
	/* As a request/response program would: the reply comes once the count has arrived. */
	char b[8];
	CALLD("read the reply", read(fd, b, sizeof(b)), b);
	close(f);
	CALL("close", close(fd));
}

static void sendfile_timeout_s(void)
{
	int fd = server();
	uint64_t n = sync_wait_u64();
	int ok;
	long got = recv_pat(fd, n, 6, &ok);

	say("read the count = %d intact=%d", got == (long)n && n > 0, ok);
	CALL("write reply", write(fd, "ok", 2));
	expect_eof(fd);
	close(fd);
}

static void splice_c(void)
{
	int fd = client();
	int p[2];
	unsigned char b[5000];
	long total = 0;

	if (pipe(p) < 0)
		die("pipe");
	fill(b, 0, sizeof(b), 5);
	CALL("write pipe", write(p[1], b, sizeof(b)));
	while (total < 5000) {
		ssize_t r = splice(p[0], NULL, fd, NULL, 5000 - (size_t)total, 0);

		if (r <= 0) {
			show("splice", r, errno);
			break;
		}
		total += r;
	}
	say("splice pipe->socket total = %ld", total);
	int f = temp_file(3000, 5);
	CALL("copy_file_range file->socket", copy_file_range(f, NULL, fd, NULL, 3000, 0));
	close(f);
	close(p[0]);
	close(p[1]);
	sync_wait('b');
	CALL("close", close(fd));
}

static void splice_s(void)
{
	int fd = server();
	int ok;
	long n = recv_pat(fd, 5000, 5, &ok);

	say("read 5000 = %ld intact=%d", n, ok);
	sync_send('b');
	expect_eof(fd);
	close(fd);
}

/* ---- stdio on the socket ---- */

static void fgets_show(const char *what, FILE *f)
{
	char line[128];

	errno = 0;
	if (fgets(line, sizeof(line), f))
		show_data(what, (long)strlen(line), 0, line);
	else
		say("%s = NULL eof=%d error=%d", what, feof(f), ferror(f));
}

static void fdopen_c(void)
{
	int fd = client();
	FILE *in = fdopen(fd, "r");
	FILE *out = fdopen(dup(fd), "w");

	say("fdopen = %s %s", in ? "ok" : "NULL", out ? "ok" : "NULL");
	CALL("fprintf", fprintf(out, "line one\nline %s\n", "two"));
	CALL("fflush", fflush(out));
	fgets_show("fgets", in);
	CALL("fputs", fputs("bye\n", out));
	CALL("fclose out (a dup)", fclose(out));
	fgets_show("fgets", in);
	CALL("fclose in", fclose(in));
}

static void fdopen_s(void)
{
	int fd = server();
	FILE *f = fdopen(fd, "r+");

	say("fdopen = %s", f ? "ok" : "NULL");
	fgets_show("fgets", f);
	fgets_show("fgets", f);
	CALL("fseek (socket)", fseek(f, 0, SEEK_CUR));
	CALL("fprintf", fprintf(f, "ack %d\nlast\n", 2));
	CALL("fflush", fflush(f));
	fgets_show("fgets", f);
	fgets_show("fgets", f);
	CALL("fclose", fclose(f));
}

/* ---- dup, dup2, dup3, F_DUPFD ---- */

static void dup_c(void)
{
	char b[16];
	int fd = client();
	int d1 = dup(fd);
	int d2 = dup2(fd, 100);
	int d3 = fcntl(fd, F_DUPFD, 200);
	int d4 = fcntl(fd, F_DUPFD_CLOEXEC, 300);
	int d5 = dup3(fd, 150, O_CLOEXEC);

	say("dup ok = %d, dup2 = %d, F_DUPFD >= 200: %d, F_DUPFD_CLOEXEC >= 300: %d, dup3 = %d",
	    d1 >= 0, d2, d3 >= 200, d4 >= 300, d5);
	say("cloexec: dup %d dup2 %d F_DUPFD %d F_DUPFD_CLOEXEC %d dup3 %d", fcntl(d1, F_GETFD),
	    fcntl(d2, F_GETFD), fcntl(d3, F_GETFD), fcntl(d4, F_GETFD), fcntl(d5, F_GETFD));
	CALL("dup2 same fd", dup2(d2, d2) == d2);
	CALL("dup3 same fd", dup3(d2, d2, 0));
	CALL("close original", close(fd));
	CALL("write via dup", write(d1, "1", 1));
	CALL("close dup", close(d1));
	CALL("write via dup2", write(d2, "2", 1));
	CALL("close dup2", close(d2));
	CALL("write via F_DUPFD", write(d3, "3", 1));
	CALL("close F_DUPFD", close(d3));
	CALL("write via F_DUPFD_CLOEXEC", write(d4, "4", 1));
	CALLD("read via F_DUPFD_CLOEXEC", read_exact(d4, b, 4), b);
	CALL("close F_DUPFD_CLOEXEC", close(d4));
	set_nonblock(d5, 1);
	CALLD("read via dup3 (nonblocking)", read(d5, b, sizeof(b)), b);
	CALL("write via dup3", write(d5, "5", 1));
	/* dup2 onto an fd that is another wrapped connection's only fd. */
	int c2 = connect_conn();
	greet_c(c2);
	CALL("dup2 conn1 over conn2", dup2(d5, c2) == c2);
	CALL("write via new copy", write(c2, "6", 1));
	CALL("close dup3", close(d5));
	CALL("write via last copy", write(c2, "7", 1));
	CALL("close last copy", close(c2));
	CALL("write after close", write(c2, "x", 1));
	CALLD("read after close", read(c2, b, 1), b);
	CALL("close again", close(c2));
}

static void dup_s(void)
{
	char b[16];
	int fd = server();

	CALLD("read 4", read_exact(fd, b, 4), b);
	CALL("write back", write(fd, "back", 4));
	int c2 = server();
	CALLD("read 3", read_exact(fd, b, 3), b);
	expect_eof(fd);
	CALLD("conn 2: read (client dup2'd over it)", read(c2, b, sizeof(b)), b);
	close(fd);
	close(c2);
}

/* ---- fork ---- */

static void fork_client_c(void)
{
	char b[64];
	int fd = client();
	int p[2];

	if (pipe(p) < 0)
		die("pipe");
	pid_t pid = fork();
	if (pid == 0) {
		close(p[1]);
		if (read(p[0], b, 1) != 1) /* the parent closed its copy */
			_exit(3);
		CALL("child: write", write(fd, "from child", 10));
		CALLD("child: read", read_exact(fd, b, 5), b);
		CALL("child: write again", write(fd, "bye", 3));
		CALL("child: close", close(fd));
		_exit(0);
	}
	close(p[0]);
	CALL("parent: close its copy", close(fd));
	CALL("parent: write via closed fd", write(fd, "x", 1));
	if (write(p[1], "go", 1) != 1)
		die("pipe write");
	int st;
	waitpid(pid, &st, 0);
	say("parent: child exit = %d", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	close(p[1]);
}

static void fork_client_s(void)
{
	char b[64];
	int fd = server();

	CALLD("read", read_exact(fd, b, 10), b);
	CALL("write reply", write(fd, "reply", 5));
	CALLD("read", read_exact(fd, b, 3), b);
	expect_eof(fd);
	close(fd);
}

/* A forking server: the child serves the connection, before any I/O on it. */
static void fork_server_s(void)
{
	char b[64];
	int fd = accept_conn();
	int p[2];

	if (pipe(p) < 0)
		die("pipe");
	pid_t pid = fork();
	if (pid == 0) {
		close(p[1]);
		if (read(p[0], b, 1) != 1)
			_exit(3);
		greet_s(fd);
		CALLD("child: read", read_exact(fd, b, 5), b);
		CALL("child: write", write(fd, "world", 5));
		expect_eof(fd);
		CALL("child: close", close(fd));
		_exit(0);
	}
	close(p[0]);
	CALL("parent: close its copy", close(fd));
	if (write(p[1], "go", 1) != 1)
		die("pipe write");
	int st;
	waitpid(pid, &st, 0);
	say("parent: child exit = %d", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	close(p[1]);
}

static void fork_server_c(void)
{
	char b[64];
	int fd = client();

	CALL("write hello", write(fd, "hello", 5));
	CALLD("read", read_exact(fd, b, 5), b);
	CALL("close", close(fd));
}

/* ---- threads: full duplex on one fd ---- */

#define DUPLEX_BYTES (1 << 20)

struct duplex {
	int fd;
	unsigned seed;
	long done;
};

static void *duplex_writer(void *arg)
{
	struct duplex *d = arg;

	d->done = send_pat(d->fd, DUPLEX_BYTES, d->seed);
	return NULL;
}

static void duplex(int fd, unsigned wseed, unsigned rseed)
{
	struct duplex d = {fd, wseed, 0};
	pthread_t t;
	int ok;

	if (pthread_create(&t, NULL, duplex_writer, &d) != 0)
		die("pthread_create");
	long n = recv_pat(fd, DUPLEX_BYTES, rseed, &ok);
	pthread_join(t, NULL);
	say("thread wrote = %ld", d.done);
	say("main read = %ld intact=%d", n, ok);
}

static void threads_c(void)
{
	int fd = client();

	duplex(fd, 6, 7);
	CALL("shutdown SHUT_WR", shutdown(fd, SHUT_WR));
	expect_eof(fd);
	CALL("close", close(fd));
}

static void threads_s(void)
{
	int fd = server();

	duplex(fd, 7, 6);
	expect_eof(fd);
	CALL("close", close(fd));
}

/* ---- SO_RCVTIMEO ---- */

static void rcvtimeo_c(void)
{
	char b[64];
	int fd = client();
	struct timeval tv = {0, 200000}, got = {0, 0};
	socklen_t len = sizeof(got);

	CALL("setsockopt SO_RCVTIMEO 200ms",
	     setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)));
	CALL("getsockopt SO_RCVTIMEO", getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &got, &len));
	say("  = %ld.%06ld", (long)got.tv_sec, (long)got.tv_usec);
	uint64_t t0 = now_ms();
	CALLD("read (times out)", read(fd, b, sizeof(b)), b);
	uint64_t dt = now_ms() - t0;
	say("  waited >= 150ms and < 2000ms: %d", dt >= 150 && dt < 2000);
	CALLD("recv (times out)", recv(fd, b, sizeof(b), 0), b);
	CALL("setsockopt SO_SNDTIMEO 200ms",
	     setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)));
	sync_send('a');
	CALLD("read (data within timeout)", read(fd, b, sizeof(b)), b);
	CALL("close", close(fd));
}

static void rcvtimeo_s(void)
{
	int fd = server();

	sync_wait('a');
	msleep(50);
	CALL("write data", write(fd, "data", 4));
	expect_eof(fd);
	close(fd);
}

/* ---- EINTR ---- */

static void on_alarm(int s)
{
	(void)s;
	g_alarms++;
}

static void arm(int restart, int ms)
{
	struct sigaction sa = {.sa_handler = on_alarm, .sa_flags = restart ? SA_RESTART : 0};
	struct itimerval it = {{0, 0}, {ms / 1000, (ms % 1000) * 1000}};

	sigaction(SIGALRM, &sa, NULL);
	setitimer(ITIMER_REAL, &it, NULL);
}

static void eintr_c(void)
{
	char b[64];
	int fd = client();

	arm(0, 150);
	CALLD("read, no SA_RESTART", read(fd, b, sizeof(b)), b);
	say("  alarms = %d", (int)g_alarms);
	arm(0, 150);
	CALLD("recv, no SA_RESTART", recv(fd, b, sizeof(b), 0), b);
	say("  alarms = %d", (int)g_alarms);
	arm(1, 150);
	struct pollfd p = {fd, POLLIN, 0};
	CALL("poll, SA_RESTART (never restarted)", poll(&p, 1, 3000));
	say("  alarms = %d", (int)g_alarms);
	int ep = epoll_create1(0);
	ep_add(ep, fd, EPOLLIN, 1, EPOLL_CTL_ADD);
	arm(1, 150);
	struct epoll_event ev;
	CALL("epoll_wait, SA_RESTART (never restarted)", epoll_wait(ep, &ev, 1, 3000));
	say("  alarms = %d", (int)g_alarms);
	close(ep);
	arm(1, 150);
	sync_send('a'); /* the peer writes after 500 ms */
	CALLD("read, SA_RESTART (restarted, gets data)", read(fd, b, sizeof(b)), b);
	say("  alarms = %d", (int)g_alarms);
	CALL("close", close(fd));
}

static void eintr_s(void)
{
	int fd = server();

	sync_wait('a');
	msleep(500);
	CALL("write late", write(fd, "late", 4));
	expect_eof(fd);
	close(fd);
}

/* ---- read returns what is there: two writes, one read ---- */

static void coalesce_c(void)
{
	static char b[10000];
	int fd = client();

	sync_send('a');
	sync_wait('b');
	CALLD("read 100 (peer wrote 2+2)", read(fd, b, 100), b);
	sync_send('c');
	sync_wait('d');
	CALLD("read 10000 (peer wrote 3x1000)", read(fd, b, sizeof(b)), b);
	sync_send('e');
	sync_wait('f');
	CALLD("recv 10000 (peer wrote 3x1000)", recv(fd, b, sizeof(b), 0), b);
	CALL("close", close(fd));
}

static void coalesce_s(void)
{
	char b[1000];
	int fd = server();

	sync_wait('a');
	CALL("write ab", write(fd, "ab", 2));
	CALL("write cd", write(fd, "cd", 2));
	sync_send('b');
	sync_wait('c');
	for (int i = 0; i < 3; i++) {
		fill((unsigned char *)b, (uint64_t)i * 1000, 1000, 8);
		CALL("write 1000", write(fd, b, 1000));
	}
	sync_send('d');
	sync_wait('e');
	for (int i = 0; i < 3; i++) {
		fill((unsigned char *)b, (uint64_t)i * 1000, 1000, 9);
		CALL("write 1000", write(fd, b, 1000));
	}
	sync_send('f');
	expect_eof(fd);
	close(fd);
}

/* ---- socket options and names pass through ---- */

static void sockopts_c(void)
{
	int fd = client();
	int v = -1, one = 1;
	socklen_t len = sizeof(v);
	struct sockaddr_in a;
	socklen_t al = sizeof(a);

	CALL("getsockopt SO_TYPE", getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len));
	say("  = %d", v);
	CALL("setsockopt TCP_NODELAY", setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)));
	len = sizeof(v);
	CALL("getsockopt TCP_NODELAY", getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len));
	say("  = %d", !!v);
	len = sizeof(v);
	CALL("getsockopt SO_ERROR", getsockopt(fd, SOL_SOCKET, SO_ERROR, &v, &len));
	say("  = %d", v);
	CALL("getpeername", getpeername(fd, (struct sockaddr *)&a, &al));
	say("  peer %s port matches %d", inet_ntoa(a.sin_addr), ntohs(a.sin_port) == g_port);
	CALL("close", close(fd));
	CALL("getsockopt after close", getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len));
}

static void sockopts_s(void)
{
	int fd = server();
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	int v = -1;
	socklen_t len = sizeof(v);

	CALL("getsockopt TCP_NODELAY", getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len));
	say("  = %d", !!v);
	CALL("getsockname", getsockname(fd, (struct sockaddr *)&a, &al));
	say("  local %s port matches %d", inet_ntoa(a.sin_addr), ntohs(a.sin_port) == g_port);
	expect_eof(fd);
	close(fd);
}

/* ---- close_range, closefrom ---- */

static void close_range_c(void)
{
	char b[16];
	int fd = client();

	say("dup2 to 50 51 52 = %d %d %d", dup2(fd, 50), dup2(fd, 51), dup2(fd, 52));
	CALL("close_range 50-51 CLOEXEC", close_range(50, 51, CLOSE_RANGE_CLOEXEC));
	say("F_GETFD 50 = %d", fcntl(50, F_GETFD));
	CALL("close_range 50-52", close_range(50, 52, 0));
	CALL("F_GETFD 50 (closed)", fcntl(50, F_GETFD));
	CALL("write via original", write(fd, "a", 1));
	CALLD("read", read_exact(fd, b, 1), b);
	say("dup2 to 60 = %d", dup2(fd, 60));
	CALL("close original", close(fd));
	CALL("write via 60", write(60, "b", 1));
	CALLD("read via 60", read_exact(60, b, 1), b);
	closefrom(60);
	CALL("F_GETFD 60 after closefrom", fcntl(60, F_GETFD));
	sync_wait('z');
}

static void close_range_s(void)
{
	char b[16];
	int fd = server();

	CALLD("read", read_exact(fd, b, 1), b);
	CALL("write A", write(fd, "A", 1));
	CALLD("read", read_exact(fd, b, 1), b);
	CALL("write B", write(fd, "B", 1));
	expect_eof(fd);
	sync_send('z');
	close(fd);
}

/* ---- an event-loop server: non-blocking accepted socket, epoll ---- */

static void server_nonblock_s(void)
{
	char b[64];
	int v = -1;
	socklen_t len = sizeof(v);
	int fd = accept4(g_lfd, NULL, NULL, SOCK_NONBLOCK);

	say("accept4 SOCK_NONBLOCK = %s", fd >= 0 ? "ok" : en(errno));
	say("F_GETFL = %s", (fcntl(fd, F_GETFL) & O_NONBLOCK) ? "O_NONBLOCK" : "blocking");
	/* The shim turns it on underneath; the program sees its own setting. */
	CALL("getsockopt TCP_NODELAY", getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len));
	say("  = %d", !!v);
	CALLD("read (client has sent nothing)", read(fd, b, sizeof(b)), b);
	int ep = epoll_create1(0);
	CALL("epoll_ctl ADD EPOLLIN", ep_add(ep, fd, EPOLLIN, 1, EPOLL_CTL_ADD));
	ep_wait(ep, 0, "nothing sent");
	sync_send('a');
	ep_wait(ep, WAIT_MS, "greeting sent");
	CALLD("read", read(fd, b, sizeof(b)), b);
	CALLD("read", read(fd, b, sizeof(b)), b);
	ep_wait(ep, 0, "drained");
	CALL("write ok", write(fd, "ok", 2));
	ep_wait(ep, WAIT_MS, "client closes");
	CALLD("read", read(fd, b, sizeof(b)), b);
	CALL("close", close(fd));
	close(ep);
}

static void server_nonblock_c(void)
{
	char b[64];
	int fd = connect_conn();

	sync_wait('a');
	CALL("write greeting", write(fd, "G", 1));
	CALLD("read", read_exact(fd, b, 2), b);
	CALL("close", close(fd));
}

/* ---- connect before accept, in one process (its own listener) ---- */

static void *own_thread(void *arg)
{
	int *fd = arg;

	*fd = connect_conn();
	CALL("thread: write t", write(*fd, "t", 1));
	return NULL;
}

/* Reads what the program's own client wrote, then the end of the stream after it closed. */
static void own_read_then_eof(int a, int c, const char *what)
{
	char b[16];

	CALLD(what, read(a, b, sizeof(b)), b);
	CALL("close client", close(c));
	CALLD("read after the client closed", read(a, b, sizeof(b)), b);
	CALL("close accepted", close(a));
}

/*
 * A program that connects to its own listener before it accepts (test suites,
 * in-process servers): connect() returns when the plain one would, whoever is
 * yet to call accept() or read. Everything happens in the server process; the
 * client only keeps the side channel.
 */
static void own_listener_c(void)
{
	sync_wait('z');
}

static void own_listener_s(void)
{
	struct sockaddr_in la, pa;
	socklen_t ll = sizeof(la), pl = sizeof(pa);
	struct pollfd p;
	pthread_t t;
	char b[16];
	int c, a, e = 0;
	socklen_t el = sizeof(e);

	say("-- connect, accept, no I/O");
	c = connect_conn();
	a = accept_conn();
	getsockname(g_lfd, (struct sockaddr *)&la, &ll);
	CALL("getpeername", getpeername(c, (struct sockaddr *)&pa, &pl));
	say("peer is the listener: %s", pa.sin_port == la.sin_port ? "yes" : "no");
	CALL("close client", close(c));
	CALL("close accepted", close(a));

	say("-- connect, write, accept, read; the server answers");
	c = connect_conn();
	CALL("write hello", write(c, "hello", 5));
	a = accept_conn();
	CALLD("read", read(a, b, sizeof(b)), b);
	CALL("write world", write(a, "world", 5));
	CALLD("read answer", read(c, b, sizeof(b)), b);
	CALL("close client", close(c));
	CALLD("read after the client closed", read(a, b, sizeof(b)), b);
	CALL("close accepted", close(a));

	say("-- connect, accept, the server writes first");
	c = connect_conn();
	a = accept_conn();
	CALL("write banner", write(a, "banner", 6));
	CALLD("read banner", read(c, b, sizeof(b)), b);
	CALL("close client", close(c));
	CALLD("read after the client closed", read(a, b, sizeof(b)), b);
	CALL("close accepted", close(a));

	say("-- non-blocking connect, POLLOUT, write, then accept and read");
	c = socket(AF_INET, SOCK_STREAM, 0);
	set_nonblock(c, 1);
	peer_addr(&pa);
	CALL("connect", connect(c, (struct sockaddr *)&pa, sizeof(pa)));
	p = (struct pollfd){.fd = c, .events = POLLOUT};
	CALL("poll POLLOUT", poll(&p, 1, WAIT_MS));
	say("revents %s", pollname(p.revents));
	CALL("getsockopt SO_ERROR", getsockopt(c, SOL_SOCKET, SO_ERROR, &e, &el));
	say("SO_ERROR %s", e ? en(e) : "0");
	CALL("write x", write(c, "x", 1));
	a = accept_conn();
	p = (struct pollfd){.fd = a, .events = POLLIN};
	CALL("poll POLLIN", poll(&p, 1, WAIT_MS));
	own_read_then_eof(a, c, "read");

	say("-- connect, write, shutdown(SHUT_WR), then accept");
	c = connect_conn();
	CALL("write bye", write(c, "bye", 3));
	CALL("shutdown SHUT_WR", shutdown(c, SHUT_WR));
	a = accept_conn();
	CALLD("read", read(a, b, sizeof(b)), b);
	CALLD("read", read(a, b, sizeof(b)), b);
	CALL("close client", close(c));
	CALL("close accepted", close(a));

	say("-- connect, close, then accept");
	c = connect_conn();
	CALL("close client", close(c));
	a = accept_conn();
	CALLD("read", read(a, b, sizeof(b)), b);
	CALL("close accepted", close(a));

	say("-- a thread connects and writes; accept only after it ended");
	if (pthread_create(&t, NULL, own_thread, &c) != 0)
		die("pthread_create");
	pthread_join(t, NULL);
	a = accept_conn();
	own_read_then_eof(a, c, "read");
	sync_send('z');
}

/* ---- full reads at a hang-up ---- */

#define HUP_LEN 90000 /* several TLS records; fits the client's receive window unread */

/*
 * The peer sends several records' worth and closes; everything has arrived
 * before the client reads. Each read takes all it can, up to the buffer, as
 * the kernel's does: event loops (libuv) take a short read beside a hang-up
 * for the end of the stream. Peek and FIONREAD see the same.
 */
static void full_read_hup_c(void)
{
	static char b[65536];
	struct iovec iov[2] = {{b, 32768}, {b + 32768, 32768}};
	struct msghdr m = {0};
	int fd = client(), n = -1;

	CALL("shutdown SHUT_WR", shutdown(fd, SHUT_WR));
	sync_wait('a');
	struct pollfd p = {fd, POLLIN | POLLRDHUP, 0};
	CALL("poll", poll(&p, 1, WAIT_MS));
	say("revents = %s", pollname(p.revents));
	CALL("ioctl FIONREAD", ioctl(fd, FIONREAD, &n));
	say("fionread = %d", n);
	CALLD("recv MSG_PEEK 64k", recv(fd, b, sizeof(b), MSG_PEEK), b);
	m.msg_iov = iov;
	m.msg_iovlen = 2;
	CALLD("recvmsg MSG_PEEK 2x32k", recvmsg(fd, &m, MSG_PEEK), b);
	memset(b, 0, sizeof(b));
	CALLD("readv 2x32k", readv(fd, iov, 2), b);
	m.msg_iovlen = 1;
	iov[0].iov_len = sizeof(b);
	CALLD("recvmsg 64k", recvmsg(fd, &m, 0), b);
	CALLD("recvfrom 64k", recvfrom(fd, b, sizeof(b), 0, NULL, NULL), b);
	CALLD("read 64k", read(fd, b, sizeof(b)), b);
	CALL("close", close(fd));
}

static void full_read_hup_s(void)
{
	static char b[HUP_LEN];
	char g[16];
	int fd = server();

	for (size_t i = 0; i < sizeof(b); i++)
		b[i] = (char)(i * 7 % 251);
	CALL("read end", read(fd, g, sizeof(g)));
	CALL("write", write(fd, b, sizeof(b)));
	CALL("close", close(fd));
	msleep(50);
	sync_send('a');
}

/* ==== the table ====================================================================== */

static const struct pattern {
	const char *name;
	void (*client)(void);
	void (*server)(void);
} patterns[] = {
    {"blocking_rw", blocking_rw_c, blocking_rw_s},
    {"nonblock_connect", nonblock_connect_c, nonblock_connect_s},
    {"nonblock_read", nonblock_read_c, nonblock_read_s},
    {"nonblock_write", nonblock_write_c, nonblock_write_s},
    {"poll", poll_c, ready_s},
    {"ppoll", ppoll_c, ready_s},
    {"select", select_c, ready_s},
    {"pselect", pselect_c, ready_s},
    {"epoll_wait", epoll_wait_c, ready_s},
    {"epoll_pwait", epoll_pwait_c, ready_s},
    {"epoll_pwait2", epoll_pwait2_c, ready_s},
    {"epoll_level", epoll_level_c, epoll_level_s},
    {"epoll_edge", epoll_edge_c, epoll_edge_s},
    {"epoll_oneshot", epoll_oneshot_c, epoll_oneshot_s},
    {"epoll_two_sets", epoll_two_sets_c, epoll_two_sets_s},
    {"epoll_nested", epoll_nested_c, epoll_nested_s},
    {"epoll_closed_fd", epoll_closed_fd_c, epoll_closed_fd_s},
    {"msg_peek", msg_peek_c, msg_peek_s},
    {"msg_waitall", msg_waitall_c, msg_waitall_s},
    {"msg_dontwait", msg_dontwait_c, msg_dontwait_s},
    {"sigpipe", sigpipe_c, sigpipe_s},
    {"half_close", half_close_c, half_close_s},
    {"peer_close", peer_close_c, peer_close_s},
    {"fionread", fionread_c, fionread_s},
    {"full_read_hup", full_read_hup_c, full_read_hup_s},
    {"fcntl_nonblock", fcntl_nonblock_c, fcntl_nonblock_s},
    {"vectored", vectored_c, vectored_s},
    {"rwv2", rwv2_c, rwv2_s},
    {"syscall_rw", syscall_rw_c, syscall_rw_s},
    {"iov_errors", iov_errors_c, iov_errors_s},
    {"sendfile", sendfile_c, sendfile_s},
    {"sendfile_timeout", sendfile_timeout_c, sendfile_timeout_s},
    {"splice", splice_c, splice_s},
    {"fdopen", fdopen_c, fdopen_s},
    {"dup", dup_c, dup_s},
    {"fork_client", fork_client_c, fork_client_s},
    {"fork_server", fork_server_c, fork_server_s},
    {"threads", threads_c, threads_s},
    {"rcvtimeo", rcvtimeo_c, rcvtimeo_s},
    {"eintr", eintr_c, eintr_s},
    {"coalesce", coalesce_c, coalesce_s},
    {"sockopts", sockopts_c, sockopts_s},
    {"close_range", close_range_c, close_range_s},
    {"server_nonblock", server_nonblock_c, server_nonblock_s},
    {"own_listener", own_listener_c, own_listener_s},
};

static void setup_server(void)
{
	struct sockaddr_in a;
	struct sockaddr_un u;
	socklen_t ul;
	int one = 1;
	int us = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sync_addr(&u, &ul);
	if (us < 0 || bind(us, (struct sockaddr *)&u, ul) < 0 || listen(us, 1) < 0)
		die("sync listen");
	g_lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(g_lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	peer_addr(&a);
	if (g_lfd < 0 || bind(g_lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(g_lfd, 8) < 0)
		die("listen");
	fprintf(stderr, "READY\n");
	g_sync = accept4(us, NULL, NULL, SOCK_CLOEXEC);
	if (g_sync < 0)
		die("sync accept");
	close(us);
}

static void setup_client(void)
{
	struct sockaddr_un u;
	socklen_t ul;

	sync_addr(&u, &ul);
	g_sync = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	for (int i = 0; i < 100; i++) {
		if (connect(g_sync, (struct sockaddr *)&u, ul) == 0)
			return;
		msleep(20);
	}
	die("sync connect");
}

int main(int argc, char **argv)
{
	const struct pattern *p = NULL;

	if (argc == 2 && strcmp(argv[1], "list") == 0) {
		for (size_t i = 0; i < sizeof(patterns) / sizeof(patterns[0]); i++)
			printf("%s\n", patterns[i].name);
		return 0;
	}
	if (argc != 4) {
		fprintf(stderr, "usage: conform PATTERN server|client PORT | conform list\n");
		return 2;
	}
	for (size_t i = 0; i < sizeof(patterns) / sizeof(patterns[0]); i++)
		if (strcmp(patterns[i].name, argv[1]) == 0)
			p = &patterns[i];
	g_port = atoi(argv[3]);
	if (!p || g_port <= 0) {
		fprintf(stderr, "conform: unknown pattern or bad port\n");
		return 2;
	}
	if (strcmp(argv[2], "server") == 0) {
		setup_server();
		p->server();
	} else {
		setup_client();
		p->client();
	}
	say("end");
	return 0;
}
