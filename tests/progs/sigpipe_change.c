/*
 * sigpipe_change - a client that ignores SIGPIPE, then catches it, and then
 * has a write it did not make fail with EPIPE: the shim's record sealed when
 * the program uncorks. The plain socket raises no SIGPIPE for an uncork, so
 * neither may the shim, whatever it remembered of the earlier SIG_IGN.
 *
 *   sigpipe_change sigaction|signal|syscall PORT
 *
 * The handler is installed with sigaction(), signal() or
 * syscall(SYS_rt_sigaction). While corked, the write side is shut by an
 * inline system call the shim does not see, so the record sealed at uncork
 * meets EPIPE in the kernel (a plain socket sends the corked bytes, then FIN).
 * Prints "sigpipes N" and exits 0.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile sig_atomic_t sigpipes;

static void on_sigpipe(int s)
{
	(void)s;
	sigpipes++;
}

/* The kernel's struct sigaction on x86_64 and aarch64 (arch/x86/include/uapi/asm/signal.h). */
#define KSA_RESTORER 0x04000000 /* the kernel's SA_RESTORER (not in libc's headers) */

struct ksigaction {
	void (*handler)(int);
	unsigned long flags;
	void (*restorer)(void);
	unsigned long mask;
};

#if defined(__x86_64__)
static long raw_shutdown(int fd, int how)
{
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"((long)SYS_shutdown), "D"((long)fd), "S"((long)how)
			 : "rcx", "r11", "memory");
	return ret;
}
#elif defined(__aarch64__)
static long raw_shutdown(int fd, int how)
{
	register long x8 __asm__("x8") = SYS_shutdown;
	register long x0 __asm__("x0") = fd;
	register long x1 __asm__("x1") = how;

	__asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1) : "memory");
	return x0;
}
#else
#error "raw_shutdown: x86_64 or aarch64"
#endif

/* Writes S under TCP_CORK; SHUT: first shuts the write side, behind the shim's back. */
static void corked_write(int fd, const char *s, int shut)
{
	int on = 1, off = 0;

	if (setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on)) != 0 ||
	    write(fd, s, strlen(s)) != (ssize_t)strlen(s))
		perror("sigpipe_change: corked write");
	if (shut && raw_shutdown(fd, SHUT_WR) != 0)
		fprintf(stderr, "sigpipe_change: raw shutdown failed\n");
	setsockopt(fd, IPPROTO_TCP, TCP_CORK, &off, sizeof(off));
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	int fd;

	if (argc != 3)
		return 2;
	a.sin_port = htons((unsigned short)atoi(argv[2]));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		perror("sigpipe_change: connect");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	corked_write(fd, "ignored ", 0); /* sealed at uncork while SIGPIPE is ignored */
	if (strcmp(argv[1], "sigaction") == 0) {
		struct sigaction sa = {.sa_handler = on_sigpipe};

		sigaction(SIGPIPE, &sa, NULL);
	} else if (strcmp(argv[1], "signal") == 0) {
		signal(SIGPIPE, on_sigpipe);
	} else {
		struct sigaction usr2 = {.sa_handler = on_sigpipe}, probe;
		struct ksigaction k = {.handler = on_sigpipe, .flags = KSA_RESTORER};

		/* The restorer libc's own sigaction() passes, read back from another signal. */
		sigaction(SIGUSR2, &usr2, NULL);
		sigaction(SIGUSR2, NULL, &probe);
		k.restorer = probe.sa_restorer;
		if (syscall(SYS_rt_sigaction, SIGPIPE, &k, NULL, 8) != 0) {
			perror("sigpipe_change: rt_sigaction");
			return 1;
		}
	}
	corked_write(fd, "caught", 1); /* sealed at uncork: EPIPE underneath */
	printf("sigpipes %d\n", (int)sigpipes);
	return 0;
}
