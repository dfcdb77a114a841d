/*
 * tcpcat - a plain TCP client for the end-to-end tests: connects to HOST PORT,
 * sends SEND, and copies what comes back to stdout until EOF.
 *
 *   tcpcat [-h] [-N] [-t SECONDS] HOST PORT [SEND]
 *
 *   -h   half-close (shutdown SHUT_WR) after sending
 *   -N   non-blocking socket: connect, wait for it with poll, then send/recv with poll
 *   -t   give up (exit 3) when nothing arrives for SECONDS (default 10)
 *
 * SEND may contain \r, \n and \\ escapes. It knows nothing of TLS: it is what
 * the shim wraps. Every failure prints "CALL: strerror (ENAME)" on stderr and
 * exits 1 (2 for usage and name resolution, 3 for the time-out), so tests can
 * tell what the program saw.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "errname.h"

static int timeout_ms = 10000;
static int nonblocking;

static void fail(const char *call, int e)
{
	fprintf(stderr, "%s: %s (%s)\n", call, strerror(e), errname(e));
	exit(1);
}

static size_t unescape(char *s)
{
	char *w = s;

	for (char *r = s; *r; r++) {
		if (*r == '\\' && r[1]) {
			r++;
			*w++ = *r == 'n' ? '\n' : *r == 'r' ? '\r' : *r;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
	return (size_t)(w - s);
}

/* In non-blocking mode, waits for EVENTS; exits 3 on time-out. */
static void wait_for(int fd, short events)
{
	struct pollfd p = {.fd = fd, .events = events};
	int n;

	if (!nonblocking)
		return;
	do
		n = poll(&p, 1, timeout_ms);
	while (n < 0 && errno == EINTR);
	if (n == 0) {
		fprintf(stderr, "poll: timed out\n");
		exit(3);
	}
}

static int open_conn(const char *host, const char *port)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
	int fd = -1, e = 0, rc;

	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "getaddrinfo: %s\n", gai_strerror(rc));
		exit(2);
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | (nonblocking ? SOCK_NONBLOCK : 0),
			    ai->ai_protocol);
		if (fd < 0) {
			e = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		e = errno;
		if (nonblocking && e == EINPROGRESS) {
			socklen_t len = sizeof(e);

			wait_for(fd, POLLOUT);
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) == 0 && e == 0)
				break;
		}
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		fail("connect", e);
	return fd;
}

int main(int argc, char **argv)
{
	int opt, halfclose = 0, fd;
	char *send_buf = NULL;
	size_t send_len = 0, off = 0;
	char buf[65536];

	while ((opt = getopt(argc, argv, "hNt:")) != -1) {
		switch (opt) {
		case 'h':
			halfclose = 1;
			break;
		case 'N':
			nonblocking = 1;
			break;
		case 't':
			timeout_ms = atoi(optarg) * 1000;
			break;
		default:
			fprintf(stderr, "usage: tcpcat [-h] [-N] [-t SECONDS] HOST PORT [SEND]\n");
			return 2;
		}
	}
	if (argc - optind < 2 || argc - optind > 3) {
		fprintf(stderr, "usage: tcpcat [-h] [-N] [-t SECONDS] HOST PORT [SEND]\n");
		return 2;
	}
	if (argc - optind == 3) {
		send_buf = argv[optind + 2];
		send_len = unescape(send_buf);
	}
	setvbuf(stdout, NULL, _IONBF, 0);
	fd = open_conn(argv[optind], argv[optind + 1]);
	if (!nonblocking) {
		struct timeval tv = {.tv_sec = timeout_ms / 1000};

		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	while (off < send_len) {
		ssize_t n;

		wait_for(fd, POLLOUT);
		n = send(fd, send_buf + off, send_len - off, MSG_NOSIGNAL);
		if (n < 0 && (errno == EINTR || (nonblocking && errno == EAGAIN)))
			continue;
		if (n < 0)
			fail("send", errno);
		off += (size_t)n;
	}
	if (halfclose && shutdown(fd, SHUT_WR) != 0)
		fail("shutdown", errno);
	for (;;) {
		ssize_t n;

		wait_for(fd, POLLIN);
		n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0 && (errno == EINTR || (nonblocking && errno == EAGAIN)))
			continue;
		if (n < 0 && !nonblocking && errno == EAGAIN) {
			fprintf(stderr, "recv: timed out\n");
			return 3;
		}
		if (n < 0)
			fail("recv", errno);
		if (n == 0)
			break;
		if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
			return 1;
	}
	if (close(fd) != 0)
		fail("close", errno);
	return 0;
}
