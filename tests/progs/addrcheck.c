/*
 * addrcheck - socket addresses the kernel refuses, given to connect() and to
 * sendto()/sendmsg() with MSG_FASTOPEN on fresh TCP sockets; prints one line
 * per call, "NAME: -1 ERRNO" or "NAME: RESULT", for the end-to-end tests to
 * compare plain and under the shim (identical: the kernel's own errors, no
 * crash, no connection).
 *
 *   addrcheck PORT
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "errname.h"

static void show(const char *name, long r)
{
	if (r < 0)
		printf("%s: -1 %s\n", name, errname(errno));
	else
		printf("%s: %ld\n", name, r);
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
	struct sockaddr_storage big;
	void *bad = (void *)16; /* never mapped */
	int fd;

	if (argc != 2)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	a.sin_port = htons((uint16_t)atoi(argv[1]));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a6.sin6_port = a.sin_port;
	inet_pton(AF_INET6, "::ffff:127.0.0.1", &a6.sin6_addr);
	memset(&big, 0, sizeof(big));
	memcpy(&big, &a, sizeof(a));

#define FRESH(dom) (fd >= 0 ? close(fd) : 0, fd = socket((dom), SOCK_STREAM, 0))
	fd = -1;
	FRESH(AF_INET);
	show("connect bad pointer", connect(fd, bad, sizeof(a)));
	FRESH(AF_INET);
	show("connect AF_INET len 15", connect(fd, (struct sockaddr *)&a, 15));
	FRESH(AF_INET);
	show("connect AF_INET len 129", connect(fd, (struct sockaddr *)&big, 129));
	FRESH(AF_INET6);
	show("connect AF_INET6 len 23", connect(fd, (struct sockaddr *)&a6, 23));
	FRESH(AF_INET);
	show("connect AF_INET6 on AF_INET socket", connect(fd, (struct sockaddr *)&a6, sizeof(a6)));
	FRESH(AF_INET6);
	show("connect AF_INET on AF_INET6 socket", connect(fd, (struct sockaddr *)&big, 28));
	FRESH(AF_INET);
	show("sendto fastopen bad pointer", sendto(fd, "x", 1, MSG_FASTOPEN, bad, sizeof(a)));
	FRESH(AF_INET);
	show("sendto fastopen len 129",
	     sendto(fd, "x", 1, MSG_FASTOPEN, (struct sockaddr *)&big, 129));
	FRESH(AF_INET);
	show("sendto fastopen len 15", sendto(fd, "x", 1, MSG_FASTOPEN, (struct sockaddr *)&a, 15));
	FRESH(AF_INET);
	show("send fastopen no address", send(fd, "x", 1, MSG_FASTOPEN));
	FRESH(AF_INET);
	show("sendto unconnected without fastopen",
	     sendto(fd, "x", 1, 0, (struct sockaddr *)&a, sizeof(a)));
	FRESH(AF_INET);
	{
		struct iovec iov = {.iov_base = "x", .iov_len = 1};
		struct msghdr m = {
		    .msg_name = bad, .msg_namelen = sizeof(a), .msg_iov = &iov, .msg_iovlen = 1};

		show("sendmsg fastopen bad name", sendmsg(fd, &m, MSG_FASTOPEN));
	}
	close(fd);
	return 0;
}
