/*
 * corkserve - a plain TCP server for the end-to-end tests that answers each
 * "go\n" with a 100-byte header and a body of BODY bytes, the way servers say
 * "more is coming":
 *
 *   corkserve PORT MODE BODY
 *
 *   cork     TCP_CORK on, write the header, sendfile() the body, TCP_CORK off (nginx)
 *   corkwait TCP_CORK on, write the header and the body, and leave it on
 *   more     send(header, MSG_MORE), then write the body
 *   writev   one writev() of header and body
 *   plain    write the header, then the body (two writes: the control)
 *
 * Prints "listening", serves one connection until EOF, then prints what
 * getsockopt(TCP_CORK) said after it was set ("cork=1") and exits 0. It knows
 * nothing of TLS: it is what the shim wraps. Failures print the call and exit 1.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "errname.h"

static void fail(const char *call)
{
	fprintf(stderr, "%s: %s (%s)\n", call, strerror(errno), errname(errno));
	exit(1);
}

static void cork(int fd, int on)
{
	if (setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on)) != 0)
		fail("setsockopt TCP_CORK");
}

static void write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n <= 0)
			fail("write");
		buf += n;
		len -= (size_t)n;
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	static char head[100], body[65536];
	int l, fd, one = 1, seen = -1;
	size_t blen;
	FILE *f;

	if (argc != 4 || (blen = strtoul(argv[3], NULL, 10)) > sizeof(body)) {
		fprintf(stderr, "usage: corkserve PORT cork|corkwait|more|writev|plain BODY\n");
		return 2;
	}
	memset(head, 'h', sizeof(head));
	memset(body, 'b', blen);
	f = tmpfile();
	if (f == NULL || fwrite(body, 1, blen, f) != blen || fflush(f) != 0)
		fail("tmpfile");
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((unsigned short)atoi(argv[1]));
	l = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (l < 0 || bind(l, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(l, 4) != 0)
		fail("listen");
	printf("listening\n");
	fflush(stdout);
	fd = accept(l, NULL, NULL);
	if (fd < 0)
		fail("accept");
	for (;;) {
		char req[3];
		size_t got = 0;
		const char *m = argv[2];

		while (got < sizeof(req)) {
			ssize_t n = read(fd, req + got, sizeof(req) - got);

			if (n < 0)
				fail("read");
			if (n == 0)
				goto out;
			got += (size_t)n;
		}
		if (strcmp(m, "cork") == 0 || strcmp(m, "corkwait") == 0) {
			off_t off = 0;
			socklen_t len = sizeof(seen);

			cork(fd, 1);
			if (getsockopt(fd, IPPROTO_TCP, TCP_CORK, &seen, &len) != 0)
				fail("getsockopt TCP_CORK");
			write_all(fd, head, sizeof(head));
			if (m[4] == '\0') {
				if (sendfile(fd, fileno(f), &off, blen) != (ssize_t)blen)
					fail("sendfile");
				cork(fd, 0);
			} else {
				write_all(fd, body, blen);
			}
		} else if (strcmp(m, "more") == 0) {
			if (send(fd, head, sizeof(head), MSG_MORE) != (ssize_t)sizeof(head))
				fail("send MSG_MORE");
			write_all(fd, body, blen);
		} else if (strcmp(m, "writev") == 0) {
			struct iovec v[2] = {{head, sizeof(head)}, {body, blen}};

			if (writev(fd, v, 2) != (ssize_t)(sizeof(head) + blen))
				fail("writev");
		} else {
			write_all(fd, head, sizeof(head));
			write_all(fd, body, blen);
		}
	}
out:
	printf("cork=%d\n", seen);
	close(fd);
	return 0;
}
