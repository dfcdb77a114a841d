/*
 * canary - a plain TCP client for the end-to-end tests: sends a canary line
 * through each libc path that writes to a socket without write()/send() by
 * name, and reads each line back from an echo server.
 *
 *   canary HOST PORT CANARY
 *
 * For each METHOD it sends "CANARY METHOD\n" and prints "METHOD: echoed" when
 * the same line comes back, or "METHOD: send failed: ENAME"; last, it submits
 * the line with aio_write and prints "aio_write: echoed" or "aio_write:
 * refused: ENAME" (the shim refuses AIO on a wrapped fd). It knows
 * nothing of TLS: under the shim with a `tls` rule, a recording relay between
 * it and the server must never see CANARY.
 */
#include <aio.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

static const char *canary;

static const char *en(int e)
{
	const char *n = strerrorname_np(e);

	return n ? n : "E?";
}

/* Reads one line (up to LEN-1 bytes) into BUF. Returns its length, or -1. */
static long read_line(int fd, char *buf, size_t len)
{
	size_t n = 0;

	while (n + 1 < len) {
		ssize_t r = read(fd, buf + n, 1);

		if (r <= 0)
			return -1;
		if (buf[n++] == '\n')
			break;
	}
	buf[n] = 0;
	return (long)n;
}

/* Checks the echo of the line METHOD sent (R: what the sending call returned). */
static void check(int fd, const char *method, long r, size_t want)
{
	char line[256], expect[256];

	if (r < 0) {
		printf("%s: send failed: %s\n", method, en(errno));
		return;
	}
	snprintf(expect, sizeof(expect), "%s %s\n", canary, method);
	if ((size_t)r != want) {
		printf("%s: short send %ld of %zu\n", method, r, want);
		return;
	}
	if (read_line(fd, line, sizeof(line)) < 0) {
		printf("%s: read failed: %s\n", method, en(errno));
		return;
	}
	printf("%s: %s\n", method, strcmp(line, expect) == 0 ? "echoed" : "wrong echo");
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	char line[256];
	struct iovec iov[2];
	int fd, n;

	if (argc != 4) {
		fprintf(stderr, "usage: canary HOST PORT CANARY\n");
		return 2;
	}
	canary = argv[3];
	setvbuf(stdout, NULL, _IOLBF, 0);
	a.sin_port = htons((unsigned short)atoi(argv[2]));
	inet_pton(AF_INET, argv[1], &a.sin_addr);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		printf("connect failed: %s\n", en(errno));
		return 1;
	}

	n = snprintf(line, sizeof(line), "%s pwritev2\n", canary);
	iov[0] = (struct iovec){line, 4};
	iov[1] = (struct iovec){line + 4, (size_t)n - 4};
	check(fd, "pwritev2", pwritev2(fd, iov, 2, -1, 0), (size_t)n);

	n = snprintf(line, sizeof(line), "%s pwritev2-nowait\n", canary);
	iov[0] = (struct iovec){line, (size_t)n};
	check(fd, "pwritev2-nowait", pwritev2(fd, iov, 1, -1, RWF_NOWAIT), (size_t)n);

	n = snprintf(line, sizeof(line), "%s syscall-write\n", canary);
	check(fd, "syscall-write", syscall(SYS_write, fd, line, (size_t)n), (size_t)n);

	n = snprintf(line, sizeof(line), "%s syscall-pwritev2\n", canary);
	iov[0] = (struct iovec){line, (size_t)n};
	check(fd, "syscall-pwritev2", syscall(SYS_pwritev2, fd, iov, 1, -1L, 0L, 0), (size_t)n);

	n = snprintf(line, sizeof(line), "%s syscall-sendto\n", canary);
	check(fd, "syscall-sendto", syscall(SYS_sendto, fd, line, (size_t)n, 0, NULL, 0),
	      (size_t)n);

	n = snprintf(line, sizeof(line), "%s dprintf\n", canary);
	check(fd, "dprintf", dprintf(fd, "%s dprintf\n", canary), (size_t)n);

	n = snprintf(line, sizeof(line), "%s aio_write\n", canary);
	struct aiocb cb = {.aio_fildes = fd, .aio_buf = line, .aio_nbytes = (size_t)n};
	if (aio_write(&cb) != 0) {
		printf("aio_write: refused: %s\n", en(errno));
	} else {
		const struct aiocb *list[1] = {&cb};

		while (aio_error(&cb) == EINPROGRESS)
			aio_suspend(list, 1, NULL);
		check(fd, "aio_write", aio_return(&cb), (size_t)n);
	}
	close(fd);
	return 0;
}
