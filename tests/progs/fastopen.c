/*
 * fastopen - a plain TCP client for the end-to-end tests that reaches its
 * server without a plain connect(): each MODE is one way a program can
 * connect and send at once, or name its destination in an unusual form.
 *
 *   fastopen MODE PORT SEND
 *
 *   sendto        sendto(MSG_FASTOPEN, 127.0.0.1:PORT) on an unconnected socket
 *   sendmsg       sendmsg(MSG_FASTOPEN) with msg_name
 *   sendmmsg      sendmmsg(MSG_FASTOPEN) with msg_name in the first message
 *   sendto-nb     sendto(MSG_FASTOPEN) on a non-blocking socket: EINPROGRESS,
 *                 wait for POLLOUT, send again (the Fast Open pattern without a cookie)
 *   sendto-v6     an AF_INET6 socket, sendto(MSG_FASTOPEN) to ::ffff:127.0.0.1
 *   connectopt    setsockopt(TCP_FASTOPEN_CONNECT), connect(), write()
 *   connect24     an AF_INET6 socket, connect() to ::ffff:127.0.0.1 with
 *                 addrlen 24 (RFC 2133's sockaddr_in6, which Linux accepts)
 *   unspec        connect(), send SEND, connect(AF_UNSPEC), connect() again,
 *                 send SEND again
 *
 * Then half-closes (SHUT_WR) and copies what comes back to stdout until EOF.
 * SEND may contain \n escapes. Every failure prints "CALL: strerror (ENAME)"
 * on stderr and exits 1, so tests can tell what the program saw.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "errname.h"

static void fail(const char *call, int e)
{
	fprintf(stderr, "%s: %s (%s)\n", call, strerror(e), errname(e));
	exit(1);
}

static size_t unescape(char *s)
{
	char *w = s;

	for (char *r = s; *r; r++) {
		if (*r == '\\' && r[1] == 'n') {
			r++;
			*w++ = '\n';
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
	return (size_t)(w - s);
}

static void send_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, 0);

		if (n < 0)
			fail("send", errno);
		buf += n;
		len -= (size_t)n;
	}
}

/* 127.0.0.1:PORT as an AF_INET6 address (::ffff:127.0.0.1). */
static struct sockaddr_in6 mapped(int port)
{
	struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};

	inet_pton(AF_INET6, "::ffff:127.0.0.1", &a.sin6_addr);
	return a;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	const char *mode;
	char buf[4096], *msg;
	size_t len;
	ssize_t n;
	int fd, one = 1;

	if (argc != 4) {
		fprintf(stderr, "usage: fastopen MODE PORT SEND\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	mode = argv[1];
	a.sin_port = htons((uint16_t)atoi(argv[2]));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	msg = argv[3];
	len = unescape(msg);
	fd = socket(strncmp(mode, "sendto-v6", 9) == 0 || strcmp(mode, "connect24") == 0 ? AF_INET6
											 : AF_INET,
		    SOCK_STREAM, 0);
	if (strcmp(mode, "sendto") == 0) {
		n = sendto(fd, msg, len, MSG_FASTOPEN, (struct sockaddr *)&a, sizeof(a));
		if (n < 0)
			fail("sendto", errno);
		if ((size_t)n < len)
			send_all(fd, msg + n, len - (size_t)n);
	} else if (strcmp(mode, "sendmsg") == 0 || strcmp(mode, "sendmmsg") == 0) {
		struct iovec iov = {.iov_base = msg, .iov_len = len};
		struct mmsghdr mm = {.msg_hdr = {.msg_name = &a,
						 .msg_namelen = sizeof(a),
						 .msg_iov = &iov,
						 .msg_iovlen = 1}};

		if (mode[4] == 'm') {
			n = sendmsg(fd, &mm.msg_hdr, MSG_FASTOPEN);
			if (n < 0)
				fail("sendmsg", errno);
		} else {
			if (sendmmsg(fd, &mm, 1, MSG_FASTOPEN) != 1)
				fail("sendmmsg", errno);
			n = mm.msg_len;
		}
		if ((size_t)n < len)
			send_all(fd, msg + n, len - (size_t)n);
	} else if (strcmp(mode, "sendto-nb") == 0) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};

		fcntl(fd, F_SETFL, O_NONBLOCK);
		n = sendto(fd, msg, len, MSG_FASTOPEN, (struct sockaddr *)&a, sizeof(a));
		if (n < 0 && errno != EINPROGRESS)
			fail("sendto", errno);
		if (n < 0) {
			printf("sendto: EINPROGRESS\n");
			if (poll(&p, 1, 10000) != 1)
				fail("poll", ETIMEDOUT);
			n = 0;
		}
		fcntl(fd, F_SETFL, 0);
		send_all(fd, msg + n, len - (size_t)n);
	} else if (strcmp(mode, "sendto-v6") == 0) {
		struct sockaddr_in6 a6 = mapped(atoi(argv[2]));

		n = sendto(fd, msg, len, MSG_FASTOPEN, (struct sockaddr *)&a6, sizeof(a6));
		if (n < 0)
			fail("sendto", errno);
		if ((size_t)n < len)
			send_all(fd, msg + n, len - (size_t)n);
	} else if (strcmp(mode, "connectopt") == 0) {
		if (setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &one, sizeof(one)) != 0)
			fail("setsockopt", errno);
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
			fail("connect", errno);
		if (write(fd, msg, len) != (ssize_t)len)
			fail("write", errno);
	} else if (strcmp(mode, "connect24") == 0) {
		struct sockaddr_in6 a6 = mapped(atoi(argv[2]));

		if (connect(fd, (struct sockaddr *)&a6, 24) != 0)
			fail("connect", errno);
		send_all(fd, msg, len);
	} else if (strcmp(mode, "unspec") == 0) {
		struct sockaddr u = {.sa_family = AF_UNSPEC};

		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
			fail("connect", errno);
		send_all(fd, msg, len);
		if (connect(fd, &u, sizeof(u)) != 0)
			fail("connect(AF_UNSPEC)", errno);
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
			fail("connect again", errno);
		send_all(fd, msg, len);
	} else {
		fprintf(stderr, "fastopen: unknown mode %s\n", mode);
		return 2;
	}
	if (shutdown(fd, SHUT_WR) != 0)
		fail("shutdown", errno);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		fwrite(buf, 1, (size_t)n, stdout);
	if (n < 0)
		fail("read", errno);
	return 0;
}
