/*
 * seccomp_io - a client that, once connected, confines itself with a seccomp
 * filter (libseccomp) allowing only the system calls it makes itself, plus
 * those shim/DESIGN.md says the shim may add on a program's behalf; then it
 * does its I/O. A call outside the filter kills it with SIGSYS, as sshd's
 * pre-auth child or a systemd unit with SystemCallFilter= would be.
 *
 *   seccomp_io rw|sock|vec|msg PORT
 *
 * rw: read/write; sock: send/recv; vec: readv/writev; msg: sendmsg/recvmsg.
 * Sends "go", shuts down its write side, reads the reply to its end (byte i
 * is (i * 7) % 251) and prints "GOT <bytes> BAD <first wrong offset or -1>"
 * (with write(2) on stdout, which the filter allows for fds 1 and 2).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

enum family { RW, SOCK, VEC, MSG };

static const char *const own_calls[][2] = {
    [RW] = {"read", "write"},
    [SOCK] = {"recvfrom", "sendto"},
    [VEC] = {"readv", "writev"},
    [MSG] = {"recvmsg", "sendmsg"},
};

/*
 * What the shim may add on the program's behalf (shim/DESIGN.md, "System
 * calls"), and what any program's allocator needs (OpenSSL allocates).
 */
static const char *const shim_calls[] = {
    /* waiting for the socket (blocking emulation) and the program's time-outs */
    "poll",
    "ppoll",
    "getsockopt",
    /* SIGPIPE: kept off writes the program did not make, raised as the kernel would */
    "rt_sigprocmask",
    "rt_sigpending",
    "rt_sigtimedwait",
    "getpid",
    "tgkill",
    /* a wait interrupted by a signal: restart or EINTR */
    "rt_sigaction",
    /* locks (contended), clocks (when not in the vDSO), OpenSSL's random generator */
    "futex",
    "clock_gettime",
    "getrandom",
    /* memory, as for any allocation */
    "brk",
    "mmap",
    "munmap",
    "mremap",
    "madvise",
};

static void allow(scmp_filter_ctx ctx, const char *name)
{
	int nr = seccomp_syscall_resolve_name(name);

	if (nr == __NR_SCMP_ERROR || seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) != 0) {
		fprintf(stderr, "seccomp_io: cannot allow %s\n", name);
		exit(1);
	}
}

static void confine(enum family f)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);

	if (ctx == NULL)
		exit(1);
	allow(ctx, own_calls[f][0]);
	allow(ctx, own_calls[f][1]);
	allow(ctx, "shutdown");
	allow(ctx, "close");
	allow(ctx, "exit_group");
	allow(ctx, "exit");
	/* Its report on stdout, and the shim's log lines on stderr. */
	if (f != RW &&
	    seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(write), 1, SCMP_A0(SCMP_CMP_LE, 2)) != 0)
		exit(1);
	for (size_t i = 0; i < sizeof(shim_calls) / sizeof(shim_calls[0]); i++)
		allow(ctx, shim_calls[i]);
	if (seccomp_load(ctx) != 0) {
		fprintf(stderr, "seccomp_io: cannot load the filter\n");
		exit(1);
	}
	seccomp_release(ctx);
}

static ssize_t io_write(enum family f, int fd, const void *buf, size_t len)
{
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};

	switch (f) {
	case SOCK:
		return send(fd, buf, len, 0);
	case VEC:
		return writev(fd, &iov, 1);
	case MSG:
		return sendmsg(fd, &m, 0);
	default:
		return write(fd, buf, len);
	}
}

static ssize_t io_read(enum family f, int fd, void *buf, size_t len)
{
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};

	switch (f) {
	case SOCK:
		return recv(fd, buf, len, 0);
	case VEC:
		return readv(fd, &iov, 1);
	case MSG:
		return recvmsg(fd, &m, 0);
	default:
		return read(fd, buf, len);
	}
}

int main(int argc, char **argv)
{
	static unsigned char buf[65536];
	struct sockaddr_in a = {.sin_family = AF_INET};
	long long got = 0, bad = -1;
	enum family f;
	char line[128];
	ssize_t r;
	int fd, n;

	if (argc != 3) {
		fprintf(stderr, "usage: seccomp_io rw|sock|vec|msg PORT\n");
		return 2;
	}
	f = strcmp(argv[1], "sock") == 0  ? SOCK
	    : strcmp(argv[1], "vec") == 0 ? VEC
	    : strcmp(argv[1], "msg") == 0 ? MSG
					  : RW;
	a.sin_port = htons((unsigned short)atoi(argv[2]));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		perror("seccomp_io: connect");
		return 1;
	}
	confine(f);
	r = io_write(f, fd, "go", 2);
	if (r != 2 || shutdown(fd, SHUT_WR) != 0) {
		n = snprintf(line, sizeof(line), "seccomp_io: %s: %s\n",
			     r != 2 ? "write" : "shutdown", strerror(errno));
		if (write(2, line, (size_t)n) != n)
			return 1;
		return 1;
	}
	while ((r = io_read(f, fd, buf, sizeof(buf))) > 0) {
		for (ssize_t j = 0; j < r; j++) {
			if (bad < 0 && buf[j] != (unsigned char)(((got + j) * 7) % 251))
				bad = got + j;
		}
		got += r;
	}
	n = snprintf(line, sizeof(line), "GOT %lld BAD %lld END %s\n", got, bad,
		     r == 0 ? "read 0" : "error");
	if (write(1, line, (size_t)n) != n)
		return 1;
	close(fd);
	return 0;
}
