/*
 * recorder - a plain TCP server for the end-to-end tests that appends every
 * byte it receives, from any connection, to FILE, until it is killed.
 *
 *   recorder [-r REPLY] PORT FILE
 *
 * Listens on 127.0.0.1:PORT; prints "listening PORT" once it does, and
 * "accepted N" / "closed N BYTES" per connection. With -r, sends REPLY
 * (\n escapes allowed) on each connection, then closes it after the peer's EOF.
 * Bytes reach FILE as they arrive (no buffering), so a test can read it at
 * any time.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONNS 64

int main(int argc, char **argv)
{
	struct pollfd fds[MAX_CONNS + 1];
	long long got[MAX_CONNS + 1] = {0};
	int ids[MAX_CONNS + 1] = {0};
	struct sockaddr_in a = {.sin_family = AF_INET};
	const char *reply = NULL;
	int opt, lfd, out, nfds = 1, next_id = 1, one = 1;

	while ((opt = getopt(argc, argv, "r:")) != -1) {
		if (opt != 'r') {
			fprintf(stderr, "usage: recorder [-r REPLY] PORT FILE\n");
			return 2;
		}
		reply = optarg;
	}
	if (argc - optind != 2) {
		fprintf(stderr, "usage: recorder [-r REPLY] PORT FILE\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	out = open(argv[optind + 1], O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (out < 0) {
		perror(argv[optind + 1]);
		return 1;
	}
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	a.sin_port = htons(atoi(argv[optind]));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(lfd, 16) != 0) {
		perror("bind/listen");
		return 1;
	}
	printf("listening %s\n", argv[optind]);
	fds[0] = (struct pollfd){.fd = lfd, .events = POLLIN};
	for (;;) {
		if (poll(fds, (nfds_t)nfds, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("poll");
			return 1;
		}
		if ((fds[0].revents & POLLIN) && nfds <= MAX_CONNS) {
			int c = accept(lfd, NULL, NULL);

			if (c >= 0) {
				ids[nfds] = next_id++;
				got[nfds] = 0;
				fds[nfds++] = (struct pollfd){.fd = c, .events = POLLIN};
				printf("accepted %d\n", ids[nfds - 1]);
				if (reply) {
					char r[4096];
					size_t n = 0;

					for (const char *s = reply; *s && n < sizeof(r); s++)
						r[n++] =
						    (*s == '\\' && s[1] == 'n') ? (s++, '\n') : *s;
					if (send(c, r, n, MSG_NOSIGNAL) < 0)
						perror("send");
				}
			}
		}
		for (int i = 1; i < nfds; i++) {
			char buf[65536];
			ssize_t n;

			if (!fds[i].revents)
				continue;
			n = recv(fds[i].fd, buf, sizeof(buf), 0);
			if (n > 0) {
				if (write(out, buf, (size_t)n) != n)
					perror("write");
				got[i] += n;
				continue;
			}
			if (n < 0 && errno == EINTR)
				continue;
			printf("closed %d %lld\n", ids[i], got[i]);
			close(fds[i].fd);
			fds[i] = fds[nfds - 1];
			ids[i] = ids[nfds - 1];
			got[i] = got[nfds - 1];
			nfds--;
			i--;
		}
	}
}
