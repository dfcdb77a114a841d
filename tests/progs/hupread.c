/*
 * hupread - a client that reads the way libuv (node) does, to check that
 * reads are as full as the kernel's at a hang-up.
 *
 *   hupread PORT
 *
 * Connects to 127.0.0.1:PORT, sends "go", shuts down its write side, then
 * waits with epoll and reads into a 64 KiB buffer until EAGAIN. Like libuv, a
 * read shorter than the buffer while epoll reports a hang-up (EPOLLHUP or
 * EPOLLRDHUP) is taken for the end of the stream: a plain socket returns
 * everything the kernel holds, so nothing is lost that way. Checks that byte
 * i of the stream is (i * 7) % 251 and prints "GOT <bytes> BAD <first wrong
 * offset or -1> END <how it ended>".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE (64 * 1024)

int main(int argc, char **argv)
{
	static unsigned char buf[BUF_SIZE];
	struct sockaddr_in a = {.sin_family = AF_INET};
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP};
	long long got = 0, bad = -1;
	const char *end = "?";
	int fd, ep, done = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: hupread PORT\n");
		return 2;
	}
	a.sin_port = htons((unsigned short)atoi(argv[1]));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		perror("hupread: connect");
		return 1;
	}
	if (write(fd, "go", 2) != 2 || shutdown(fd, SHUT_WR) != 0) {
		perror("hupread: write");
		return 1;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	ep = epoll_create1(0);
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
		perror("hupread: epoll");
		return 1;
	}
	while (!done) {
		struct epoll_event out;
		int n = epoll_wait(ep, &out, 1, 30000), partial = 0;

		if (n <= 0) {
			end = n == 0 ? "timeout" : "epoll_wait failed";
			break;
		}
		/* libuv reads until a read comes back short (at most 32 times per event). */
		for (int i = 0; i < 32; i++) {
			ssize_t r = read(fd, buf, sizeof(buf));

			if (r > 0) {
				for (ssize_t j = 0; j < r; j++) {
					if (bad < 0 &&
					    buf[j] != (unsigned char)(((got + j) * 7) % 251))
						bad = got + j;
				}
				got += r;
				if (r < (ssize_t)sizeof(buf)) {
					partial = 1;
					break;
				}
				continue;
			}
			if (r == 0) {
				end = "read 0";
				done = 1;
			} else if (errno != EAGAIN) {
				end = strerror(errno);
				done = 1;
			}
			break;
		}
		if (!done && partial && (out.events & (EPOLLHUP | EPOLLRDHUP))) {
			end = "short read at hang-up";
			done = 1;
		}
	}
	printf("GOT %lld BAD %lld END %s\n", got, bad, end);
	return 0;
}
