/*
 * server.h - the benchmark server, shared by native_server (OpenSSL) and
 * plain_server (plain TCP; run under the shim or behind stunnel): one thread,
 * non-blocking sockets, level-triggered epoll, a per-fd connection table.
 *
 * Modes:
 *   echo  every byte read is written back (RTT, connection rate, idle memory)
 *   sink  the client sends an 8-byte big-endian length L, then L bytes; the server
 *         counts them and, at L (or when the client half-closes first), replies with
 *         the 8-byte big-endian count (bulk throughput)
 *
 * Idle connections hold only their struct srv_conn (and the transport's state):
 * I/O goes through one shared buffer, and a connection owns a private buffer only
 * while the kernel refuses part of an echo.
 */
#ifndef TLSSHIM_BENCH_SERVER_H
#define TLSSHIM_BENCH_SERVER_H

#include <endian.h>
#include <sys/epoll.h>

#include "bench.h"

enum srv_mode { SRV_ECHO, SRV_SINK };

struct srv_conn {
	struct xconn x;
	unsigned char *pend; /* echo bytes the kernel did not take yet */
	size_t pend_len, pend_off;
	uint64_t want, got; /* sink: announced and received byte counts */
	unsigned char hdr[8];
	unsigned hdr_got;
	uint32_t armed; /* the epoll events currently registered */
	unsigned replied : 1, more : 1;
};

struct server {
	const struct xport *xp;
	enum srv_mode mode;
	int epfd, lfd;
	struct srv_conn **conns; /* indexed by fd */
	long conns_max;
	int *more; /* fds to serve again without waiting (read budget used up) */
	size_t n_more;
	unsigned long accepted, failed, live, resumed;
};

static unsigned char srv_buf[64 * 1024];
static volatile sig_atomic_t srv_stop;

static void srv_on_signal(int sig)
{
	(void)sig;
	srv_stop = 1;
}

static void srv_arm(struct server *s, struct srv_conn *c, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.fd = c->x.fd};

	if (c->armed == events)
		return;
	if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->x.fd, &ev) != 0)
		die("epoll_ctl MOD: %s", strerror(errno));
	c->armed = events;
}

static void srv_drop(struct server *s, struct srv_conn *c, int failed)
{
	int fd = c->x.fd;

	epoll_ctl(s->epfd, EPOLL_CTL_DEL, fd, NULL);
	if (s->xp->resumed(&c->x) == 1)
		s->resumed++;
	s->xp->close(&c->x);
	s->conns[fd] = NULL;
	free(c->pend);
	free(c);
	s->live--;
	if (failed)
		s->failed++;
}

/* Writes what the kernel takes, keeps the rest in C->pend. 0, or -1 when the connection failed. */
static int srv_send(struct server *s, struct srv_conn *c, const unsigned char *p, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = s->xp->write(&c->x, p, len);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n != XIO_WANT_WRITE && n != XIO_WANT_READ)
			return -1;
		c->pend = malloc(len);
		if (!c->pend)
			die("out of memory");
		memcpy(c->pend, p, len);
		c->pend_len = len;
		c->pend_off = 0;
		srv_arm(s, c, n == XIO_WANT_WRITE ? EPOLLOUT : EPOLLIN);
		return 0;
	}
	return 0;
}

/* Sends C->pend. 1 when nothing is left, 0 when still waiting, -1 when the connection failed. */
static int srv_flush(struct server *s, struct srv_conn *c)
{
	ssize_t n;

	while (c->pend_len > 0) {
		n = s->xp->write(&c->x, c->pend + c->pend_off, c->pend_len);
		if (n == XIO_WANT_WRITE || n == XIO_WANT_READ) {
			srv_arm(s, c, n == XIO_WANT_WRITE ? EPOLLOUT : EPOLLIN);
			return 0;
		}
		if (n <= 0)
			return -1;
		c->pend_off += (size_t)n;
		c->pend_len -= (size_t)n;
	}
	free(c->pend);
	c->pend = NULL;
	c->pend_off = 0;
	return 1;
}

static int srv_reply(struct server *s, struct srv_conn *c)
{
	uint64_t be = htobe64(c->got);

	c->replied = 1;
	return srv_send(s, c, (const unsigned char *)&be, sizeof(be));
}

/* Consumes N bytes read into srv_buf. 0, or -1 when the connection failed. */
static int srv_data(struct server *s, struct srv_conn *c, size_t n)
{
	const unsigned char *p = srv_buf;
	size_t take;

	if (s->mode == SRV_ECHO)
		return srv_send(s, c, p, n);
	if (c->hdr_got < sizeof(c->hdr)) {
		take = sizeof(c->hdr) - c->hdr_got;
		take = take < n ? take : n;
		memcpy(c->hdr + c->hdr_got, p, take);
		c->hdr_got += (unsigned)take;
		n -= take;
		if (c->hdr_got == sizeof(c->hdr)) {
			memcpy(&c->want, c->hdr, sizeof(c->want));
			c->want = be64toh(c->want);
		}
	}
	c->got += n;
	if (c->hdr_got == sizeof(c->hdr) && !c->replied && c->got >= c->want)
		return srv_reply(s, c);
	return 0;
}

/* Serves C after a readiness event: flush, then read up to a budget. */
static void srv_io(struct server *s, struct srv_conn *c)
{
	ssize_t n;
	int i, r;

	r = srv_flush(s, c);
	if (r < 0)
		goto fail;
	if (r == 0)
		return;
	for (i = 0; i < 64; i++) {
		n = s->xp->read(&c->x, srv_buf, sizeof(srv_buf));
		if (n > 0) {
			if (srv_data(s, c, (size_t)n) < 0)
				goto fail;
			if (c->pend_len > 0)
				return; /* read again once the peer took our bytes */
			continue;
		}
		if (n == 0) {
			if (s->mode == SRV_SINK && !c->replied)
				srv_reply(s, c); /* best effort: the peer half-closed */
			srv_drop(s, c, 0);
			return;
		}
		if (n == XIO_WANT_READ) {
			srv_arm(s, c, EPOLLIN);
			return;
		}
		if (n == XIO_WANT_WRITE) {
			srv_arm(s, c, EPOLLOUT);
			return;
		}
		goto fail;
	}
	if (!c->more) {
		c->more = 1;
		s->more[s->n_more++] = c->x.fd;
	}
	return;
fail:
	srv_drop(s, c, 1);
}

static void srv_accept(struct server *s)
{
	struct epoll_event ev;
	struct srv_conn *c;
	int i, fd;

	for (i = 0; i < 256; i++) {
		fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED)
				fprintf(stderr, "%s: accept: %s\n", bench_prog, strerror(errno));
			return;
		}
		if (fd >= s->conns_max)
			die("fd %d beyond the table (%ld)", fd, s->conns_max);
		set_nodelay(fd);
		c = calloc(1, sizeof(*c));
		if (!c)
			die("out of memory");
		if (s->xp->srv_wrap(&c->x, fd) != 0) {
			free(c);
			s->failed++;
			continue;
		}
		ev.events = EPOLLIN;
		ev.data.fd = fd;
		if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
			die("epoll_ctl ADD: %s", strerror(errno));
		c->armed = EPOLLIN;
		s->conns[fd] = c;
		s->accepted++;
		s->live++;
	}
}

/* Serves connections on 127.0.0.1:PORT until SIGTERM/SIGINT or LIMIT seconds. */
static int server_run(const struct xport *xp, enum srv_mode mode, int port, double limit)
{
	struct epoll_event evs[256], ev;
	struct sigaction sa;
	struct sockaddr_in sin;
	socklen_t slen = sizeof(sin);
	struct server s;
	double deadline = now_s() + limit;
	size_t n_more, j;
	int i, n, fd;

	memset(&s, 0, sizeof(s));
	s.xp = xp;
	s.mode = mode;
	s.conns_max = raise_nofile();
	s.conns = calloc((size_t)s.conns_max, sizeof(*s.conns));
	s.more = calloc((size_t)s.conns_max, sizeof(*s.more));
	if (!s.conns || !s.more)
		die("out of memory");

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = srv_on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	hard_limit((unsigned)limit + 30);

	s.lfd = tcp_listen(port);
	if (getsockname(s.lfd, (struct sockaddr *)&sin, &slen) != 0)
		die("getsockname: %s", strerror(errno));
	s.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (s.epfd < 0)
		die("epoll_create1: %s", strerror(errno));
	ev.events = EPOLLIN;
	ev.data.fd = s.lfd;
	if (epoll_ctl(s.epfd, EPOLL_CTL_ADD, s.lfd, &ev) != 0)
		die("epoll_ctl: %s", strerror(errno));
	printf("listening %d\n", ntohs(sin.sin_port));
	fflush(stdout);

	while (!srv_stop && now_s() < deadline) {
		n = epoll_wait(s.epfd, evs, 256, s.n_more ? 0 : 500);
		if (n < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		for (i = 0; i < n; i++) {
			fd = evs[i].data.fd;
			if (fd == s.lfd)
				srv_accept(&s);
			else if (s.conns[fd])
				srv_io(&s, s.conns[fd]);
		}
		n_more = s.n_more;
		s.n_more = 0;
		for (j = 0; j < n_more; j++) {
			fd = s.more[j];
			if (!s.conns[fd] || !s.conns[fd]->more)
				continue;
			s.conns[fd]->more = 0;
			srv_io(&s, s.conns[fd]);
		}
	}
	fprintf(stderr, "%s: accepted %lu, failed %lu, open %lu", bench_prog, s.accepted, s.failed,
		s.live);
	if (xp != plain_transport())
		fprintf(stderr, ", resumed %lu", s.resumed);
	fputc('\n', stderr);
	return 0;
}

/* Options common to both servers; the TLS ones are NULL/0 unless given. */
struct srv_opts {
	int port;
	enum srv_mode mode;
	double limit;
	const char *cert, *key;
	int no_tickets;
};

static void srv_parse(int argc, char **argv, struct srv_opts *o, const char *usage)
{
	int i;

	memset(o, 0, sizeof(*o));
	o->limit = 900;
	bench_prog = argv[0];
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--no-tickets")) {
			o->no_tickets = 1;
			continue;
		}
		if (!v)
			die("usage: %s %s", argv[0], usage);
		i++;
		if (!strcmp(a, "--port"))
			o->port = (int)arg_num(v, "port", 0, 65535);
		else if (!strcmp(a, "--mode") && !strcmp(v, "echo"))
			o->mode = SRV_ECHO;
		else if (!strcmp(a, "--mode") && !strcmp(v, "sink"))
			o->mode = SRV_SINK;
		else if (!strcmp(a, "--time-limit"))
			o->limit = (double)arg_num(v, "time limit", 1, 86400);
		else if (!strcmp(a, "--cert"))
			o->cert = v;
		else if (!strcmp(a, "--key"))
			o->key = v;
		else
			die("usage: %s %s", argv[0], usage);
	}
}

#endif
