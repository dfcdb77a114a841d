/*
 * bench.h - helpers shared by the benchmark programs in tests/bench/: clocks,
 * errors, argument parsing, loopback sockets, and the plain-TCP transport.
 *
 * A "transport" (struct xport) is one table of connection operations with a
 * plain implementation (here) and an OpenSSL one (bench_tls.h), so the server
 * (server.h) and the load generator (client.h) are the same code with and
 * without OpenSSL: native_* programs use TLS, plain_* programs use plain TCP
 * and are what runs under the shim and behind stunnel.
 *
 * Everything here is loopback only (127.0.0.1) and every wait is bounded.
 */
#ifndef TLSSHIM_BENCH_H
#define TLSSHIM_BENCH_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Results of xport read/write besides a byte count (> 0) or end of stream (0). */
enum {
	XIO_WANT_READ = -1,  /* non-blocking: wait for readable, call again */
	XIO_WANT_WRITE = -2, /* non-blocking: wait for writable, call again */
	XIO_ERR = -3,        /* the connection failed; errno or the TLS error queue says why */
};

/* One connection of a transport. */
struct xconn {
	int fd;
	void *tls; /* SSL * for the TLS transport, NULL for plain */
};

/* A transport: the same operations over plain TCP or over OpenSSL. */
struct xport {
	const char *name;
	/* Server side: takes over an accepted non-blocking fd. 0, or -1 (C is closed). */
	int (*srv_wrap)(struct xconn *c, int fd);
	/* Client side: takes over a connected blocking fd, handshakes. 0, or -1 (closed). */
	int (*cli_wrap)(struct xconn *c, int fd);
	ssize_t (*read)(struct xconn *c, void *buf, size_t len);
	ssize_t (*write)(struct xconn *c, const void *buf, size_t len);
	/* Sends close_notify (best effort, never waits), frees, closes the fd. */
	void (*close)(struct xconn *c);
	/* 1 when the connection resumed a TLS session, 0 when not, -1 unknown. */
	int (*resumed)(const struct xconn *c);
};

static const char *bench_prog = "bench";

static inline void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", bench_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static inline double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Parses a decimal count in [MIN, MAX] or dies naming WHAT. */
static inline long long arg_num(const char *s, const char *what, long long min, long long max)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		die("bad %s '%s' (want %lld..%lld)", what, s, min, max);
	return v;
}

/* Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit. */
static inline long raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		die("getrlimit: %s", strerror(errno));
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		die("setrlimit: %s", strerror(errno));
	return (long)rl.rlim_cur;
}

/* The hard time limit of a program: SIGALRM's default action ends it. */
static inline void hard_limit(unsigned secs)
{
	signal(SIGALRM, SIG_DFL);
	alarm(secs);
}

static inline struct sockaddr_in loopback(int port)
{
	struct sockaddr_in sa;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sa;
}

static inline void set_nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* A blocking TCP connection to 127.0.0.1:PORT, or -1 with errno. */
static inline int tcp_connect(int port)
{
	struct sockaddr_in sa = loopback(port);
	int fd, e;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	set_nodelay(fd);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* A non-blocking listening socket on 127.0.0.1:PORT, or dies. */
static inline int tcp_listen(int port)
{
	struct sockaddr_in sa = loopback(port);
	int fd, one = 1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		die("bind 127.0.0.1:%d: %s", port, strerror(errno));
	if (listen(fd, 4096) != 0)
		die("listen: %s", strerror(errno));
	return fd;
}

/* ---- the plain transport ---------------------------------------------------------- */

static inline int plain_srv_wrap(struct xconn *c, int fd)
{
	c->fd = fd;
	c->tls = NULL;
	return 0;
}

static inline int plain_cli_wrap(struct xconn *c, int fd)
{
	c->fd = fd;
	c->tls = NULL;
	return 0;
}

static inline ssize_t plain_result(ssize_t n)
{
	if (n >= 0)
		return n;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return XIO_WANT_READ;
	return XIO_ERR;
}

static inline ssize_t plain_read(struct xconn *c, void *buf, size_t len)
{
	ssize_t n;

	do
		n = read(c->fd, buf, len);
	while (n < 0 && errno == EINTR);
	return plain_result(n);
}

static inline ssize_t plain_write(struct xconn *c, const void *buf, size_t len)
{
	ssize_t n;

	do
		n = send(c->fd, buf, len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return XIO_WANT_WRITE;
	return plain_result(n);
}

static inline void plain_close(struct xconn *c)
{
	close(c->fd);
	c->fd = -1;
}

static inline int plain_resumed(const struct xconn *c)
{
	(void)c;
	return -1;
}

static inline const struct xport *plain_transport(void)
{
	static const struct xport x = {
	    .name = "plain",
	    .srv_wrap = plain_srv_wrap,
	    .cli_wrap = plain_cli_wrap,
	    .read = plain_read,
	    .write = plain_write,
	    .close = plain_close,
	    .resumed = plain_resumed,
	};

	return &x;
}

#endif
