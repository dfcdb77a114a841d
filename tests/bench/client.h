/*
 * client.h - the benchmark load generator, shared by native_client (OpenSSL) and
 * plain_client (plain TCP; run under the shim or through stunnel): blocking
 * sockets, one connection at a time, a one-line "RESULT key=value ..." answer.
 *
 * Modes (the server's mode in brackets):
 *   throughput BYTES  one connection; an 8-byte length, then BYTES in 64 KiB writes;
 *                     timed from the first byte to the server's 8-byte count [sink]
 *   rtt N             one connection; N round trips of 64 bytes (after 200 warm-up
 *                     ones); mean microseconds per round trip [echo]
 *   connrate N        N x (connect + handshake + 1-byte round trip + close), in
 *                     sequence; connections per second [echo]
 *   idle N            one warm-up connection, "base" on stdout, wait for a line on
 *                     stdin; then N connections, each with a 1-byte round trip,
 *                     "ready N" on stdout, and hold them until stdin closes. The
 *                     driver reads VmRSS at "base" and at "ready". [echo]
 *
 * Every mode stops at --max-secs (rtt, connrate: the figure is over what was done)
 * and the process ends at a hard limit of four times that plus a minute.
 */
#ifndef TLSSHIM_BENCH_CLIENT_H
#define TLSSHIM_BENCH_CLIENT_H

#include <endian.h>

#include "bench.h"

#define CL_CHUNK (64 * 1024)

struct cl_opts {
	int port;
	const char *mode;
	long long arg;
	double max_secs;
	const char *ca, *name;
	int reuse;
};

static unsigned char cl_buf[CL_CHUNK];

static void cl_open(const struct xport *xp, const struct cl_opts *o, struct xconn *c)
{
	int fd = tcp_connect(o->port);

	if (fd < 0)
		die("connect 127.0.0.1:%d: %s", o->port, strerror(errno));
	if (xp->cli_wrap(c, fd) != 0)
		die("TLS handshake with 127.0.0.1:%d failed", o->port);
}

static void cl_write_all(const struct xport *xp, struct xconn *c, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = xp->write(c, p, len);
		if (n <= 0)
			die("write: %s", n == XIO_ERR ? strerror(errno) : "connection closed");
		p += n;
		len -= (size_t)n;
	}
}

static void cl_read_full(const struct xport *xp, struct xconn *c, void *buf, size_t len)
{
	unsigned char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = xp->read(c, p, len);
		if (n == 0)
			die("read: the server closed the connection");
		if (n < 0)
			die("read: %s", n == XIO_ERR ? strerror(errno) : "would block");
		p += n;
		len -= (size_t)n;
	}
}

static void cl_ping(const struct xport *xp, struct xconn *c, size_t len)
{
	cl_write_all(xp, c, cl_buf, len);
	cl_read_full(xp, c, cl_buf, len);
}

static int cl_throughput(const struct xport *xp, const struct cl_opts *o)
{
	uint64_t total = (uint64_t)o->arg, sent = 0, be, reply;
	struct xconn c;
	double t0, t1;
	size_t n;

	memset(cl_buf, 0x5a, sizeof(cl_buf));
	cl_open(xp, o, &c);
	be = htobe64(total);
	t0 = now_s();
	cl_write_all(xp, &c, &be, sizeof(be));
	while (sent < total) {
		n = total - sent < CL_CHUNK ? (size_t)(total - sent) : CL_CHUNK;
		cl_write_all(xp, &c, cl_buf, n);
		sent += n;
	}
	cl_read_full(xp, &c, &reply, sizeof(reply));
	t1 = now_s();
	if (be64toh(reply) != total)
		die("the server counted %llu bytes of %llu", (unsigned long long)be64toh(reply),
		    (unsigned long long)total);
	xp->close(&c);
	printf("RESULT mbps=%.1f bytes=%llu secs=%.4f\n", (double)total / (t1 - t0) / 1e6,
	       (unsigned long long)total, t1 - t0);
	return 0;
}

static int cl_rtt(const struct xport *xp, const struct cl_opts *o)
{
	struct xconn c;
	double t0, t1, deadline;
	long long i;

	memset(cl_buf, 0x5a, 64);
	cl_open(xp, o, &c);
	for (i = 0; i < 200; i++)
		cl_ping(xp, &c, 64);
	t0 = now_s();
	deadline = t0 + o->max_secs;
	for (i = 0; i < o->arg; i++) {
		if ((i & 255) == 255 && now_s() > deadline)
			break;
		cl_ping(xp, &c, 64);
	}
	t1 = now_s();
	xp->close(&c);
	printf("RESULT rtt_us=%.2f n=%lld secs=%.4f\n", (t1 - t0) * 1e6 / (double)i, i, t1 - t0);
	return 0;
}

static int cl_connrate(const struct xport *xp, const struct cl_opts *o)
{
	struct xconn c;
	double t0, t1, deadline;
	long long i, resumed = 0;
	int r = -1;

	cl_buf[0] = 'x';
	t0 = now_s();
	deadline = t0 + o->max_secs;
	for (i = 0; i < o->arg && now_s() < deadline; i++) {
		cl_open(xp, o, &c);
		cl_ping(xp, &c, 1);
		r = xp->resumed(&c);
		resumed += r == 1;
		xp->close(&c);
	}
	t1 = now_s();
	printf("RESULT cps=%.1f n=%lld resumed=%lld secs=%.4f\n", (double)i / (t1 - t0), i,
	       r < 0 ? -1 : resumed, t1 - t0);
	return 0;
}

/* Waits for a line (or end of file) on stdin; the hard limit bounds the wait. */
static int cl_wait_stdin(void)
{
	char line[64];

	return fgets(line, sizeof(line), stdin) != NULL;
}

static int cl_idle(const struct xport *xp, const struct cl_opts *o)
{
	struct xconn *conns = calloc((size_t)o->arg + 1, sizeof(*conns));
	double deadline = now_s() + o->max_secs;
	long long i;

	if (!conns)
		die("out of memory");
	raise_nofile();
	cl_buf[0] = 'x';
	cl_open(xp, o, &conns[0]);
	cl_ping(xp, &conns[0], 1);
	printf("base\n");
	fflush(stdout);
	if (!cl_wait_stdin())
		return 0;
	for (i = 1; i <= o->arg; i++) {
		if (now_s() > deadline)
			die("only %lld of %lld connections within %.0f s", i - 1, o->arg,
			    o->max_secs);
		cl_open(xp, o, &conns[i]);
		cl_ping(xp, &conns[i], 1);
	}
	printf("ready %lld\n", o->arg);
	fflush(stdout);
	while (cl_wait_stdin())
		;
	return 0;
}

static void cl_parse(int argc, char **argv, struct cl_opts *o, const char *usage)
{
	int i, pos = 0;

	memset(o, 0, sizeof(*o));
	o->max_secs = 10;
	o->name = "localhost";
	bench_prog = argv[0];
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--reuse")) {
			o->reuse = 1;
		} else if (a[0] != '-' && pos == 0) {
			o->mode = a;
			pos++;
		} else if (a[0] != '-' && pos == 1) {
			o->arg = arg_num(a, "count", 1, 1LL << 50);
			pos++;
		} else if (!v) {
			die("usage: %s %s", argv[0], usage);
		} else if (!strcmp(a, "--port")) {
			o->port = (int)arg_num(argv[++i], "port", 1, 65535);
		} else if (!strcmp(a, "--max-secs")) {
			o->max_secs = (double)arg_num(argv[++i], "max secs", 1, 3600);
		} else if (!strcmp(a, "--ca")) {
			o->ca = argv[++i];
		} else if (!strcmp(a, "--name")) {
			o->name = argv[++i];
		} else {
			die("usage: %s %s", argv[0], usage);
		}
	}
	if (pos != 2 || !o->port)
		die("usage: %s %s", argv[0], usage);
}

static int client_run(const struct xport *xp, const struct cl_opts *o)
{
	signal(SIGPIPE, SIG_IGN);
	hard_limit((unsigned)(o->max_secs * 4) + 60);
	if (!strcmp(o->mode, "throughput"))
		return cl_throughput(xp, o);
	if (!strcmp(o->mode, "rtt"))
		return cl_rtt(xp, o);
	if (!strcmp(o->mode, "connrate"))
		return cl_connrate(xp, o);
	if (!strcmp(o->mode, "idle"))
		return cl_idle(xp, o);
	die("unknown mode '%s' (throughput, rtt, connrate, idle)", o->mode);
}

#endif
