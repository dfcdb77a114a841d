/*
 * stale - a plain TCP client for the end-to-end tests: closes its connection
 * behind libc's back (a system call instruction of its own, as a library that
 * was not preloaded would), then lets a creator call reuse the fd number and
 * uses the new fd as what it is.
 *
 *   stale PORT
 *
 * For each CREATOR (open, fopen, pipe, socketpair, eventfd, memfd_create, dup,
 * syscall(SYS_openat), epoll_create1, and a pipe added to an epoll set that
 * watched the old connection) it connects to 127.0.0.1:PORT (an echo server),
 * checks one echo, closes the socket with its own system call, calls the
 * creator and prints "CREATOR: reused=1 ok" when the new fd got the number and
 * reads and writes as that object. It knows nothing of TLS.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static int port;
static char dir[] = "/tmp/stale-XXXXXX";

/* close(2) without libc: the shim never sees it. */
#if defined(__x86_64__)
static long own_close(int fd)
{
	long ret;

	__asm__ volatile("syscall" : "=a"(ret) : "a"(SYS_close), "D"(fd) : "rcx", "r11", "memory");
	return ret;
}
#elif defined(__aarch64__)
static long own_close(int fd)
{
	register long x8 __asm__("x8") = SYS_close;
	register long x0 __asm__("x0") = fd;

	__asm__ volatile("svc 0" : "+r"(x0) : "r"(x8) : "memory");
	return x0;
}
#else
#error "stale needs a system call instruction for this architecture"
#endif

/* A wrapped connection that has carried an echo; closed behind libc's back. */
static int dead_connection(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
	char b[4];
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    write(fd, "abc\n", 4) != 4 || read(fd, b, 4) != 4 || memcmp(b, "abc\n", 4) != 0) {
		printf("echo failed: %s\n", strerrorname_np(errno));
		exit(1);
	}
	own_close(fd);
	return fd;
}

static void report(const char *what, int old, int fd, int ok)
{
	printf("%s: reused=%d %s\n", what, fd == old, ok ? "ok" : "wrong");
}

/* FD is a file: writes and reads back through the hooked calls. */
static int file_works(int fd)
{
	char b[16] = {0};

	return write(fd, "file-data", 9) == 9 && lseek(fd, 0, SEEK_SET) == 0 &&
	       read(fd, b, sizeof(b)) == 9 && memcmp(b, "file-data", 9) == 0;
}

/* R and W are the two ends of a channel: a write on W is read on R. */
static int channel_works(int r, int w)
{
	char b[8] = {0};

	return write(w, "chan", 4) == 4 && read(r, b, sizeof(b)) == 4 && memcmp(b, "chan", 4) == 0;
}

int main(int argc, char **argv)
{
	char path[64];
	int old, fd, p[2], ok;

	if (argc != 2) {
		fprintf(stderr, "usage: stale PORT\n");
		return 2;
	}
	port = atoi(argv[1]);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (mkdtemp(dir) == NULL)
		return 1;
	snprintf(path, sizeof(path), "%s/f", dir);

	old = dead_connection();
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	report("open", old, fd, file_works(fd));
	close(fd);

	old = dead_connection();
	FILE *f = fopen(path, "w+");
	fd = f ? fileno(f) : -1;
	report("fopen", old, fd, fd >= 0 && file_works(fd));
	if (f)
		fclose(f);

	old = dead_connection();
	fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDWR | O_TRUNC);
	report("syscall(SYS_openat)", old, fd, file_works(fd));
	close(fd);

	old = dead_connection();
	ok = pipe(p) == 0;
	report("pipe", old, p[0], ok && channel_works(p[0], p[1]));
	close(p[0]);
	close(p[1]);

	old = dead_connection();
	ok = socketpair(AF_UNIX, SOCK_STREAM, 0, p) == 0;
	report("socketpair", old, p[0], ok && channel_works(p[1], p[0]));
	close(p[0]);
	close(p[1]);

	old = dead_connection();
	fd = eventfd(0, 0);
	uint64_t v = 7, got = 0;
	ok = write(fd, &v, 8) == 8 && read(fd, &got, 8) == 8 && got == 7;
	report("eventfd", old, fd, ok);
	close(fd);

	old = dead_connection();
	fd = memfd_create("stale", 0);
	report("memfd_create", old, fd, file_works(fd));
	close(fd);

	int file = open(path, O_RDWR | O_TRUNC);
	old = dead_connection();
	fd = dup(file);
	report("dup", old, fd, file_works(fd));
	close(fd);
	close(file);

	/* An epoll set watched the connection; a pipe takes its number and the set's place. */
	int ep = epoll_create1(0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 1};
	char b[4];
	ok = connect(s, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	     epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev) == 0 && write(s, "xyz\n", 4) == 4 &&
	     read(s, b, 4) == 4;
	own_close(s);
	ok = ok && pipe(p) == 0;
	ev.data.u64 = 2;
	ok = ok && epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == 0 && write(p[1], "e", 1) == 1;
	struct epoll_event out[4];
	int n = ok ? epoll_wait(ep, out, 4, 2000) : -1;
	report("pipe in an epoll set", s, p[0],
	       n == 1 && out[0].data.u64 == 2 && (out[0].events & EPOLLIN));

	unlink(path);
	rmdir(dir);
	return 0;
}
