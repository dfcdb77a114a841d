/*
 * syscall.c - hook: libc's syscall().
 *
 * Programs reach the kernel through syscall() where libc has no wrapper or
 * they want none: libuv (so every node program) closes fds with
 * syscall(SYS_close, fd). The numbers of the socket, I/O, readiness, close
 * and dup calls go to the same hooks as their libc wrappers, so a wrapped
 * socket behaves the same and no byte leaves in cleartext; the numbers that
 * hand out a new fd drop a stale entry under it (fd_new). Every other number
 * (futex, getrandom, gettid, ...) goes to libc after one bounds check and one
 * table load. As in torsocks, the arguments are read as six longs: the
 * x86_64 and aarch64 calling conventions pass them in registers either way.
 *
 * The raw calls' own conventions are kept where they differ from libc's:
 * the sigset size of ppoll/pselect6/epoll_pwait*, pselect6's packed mask,
 * preadv2/pwritev2's split offset.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "hook.h"
#include "log.h"
#include "shim.h"
#include "sigpipe.h"

/* The hooks, under their hidden names (HOOK_INTERNAL in each hook file). */
extern __typeof__(read) hook_read;
extern __typeof__(write) hook_write;
extern __typeof__(readv) hook_readv;
extern __typeof__(writev) hook_writev;
extern __typeof__(preadv2) hook_preadv2;
extern __typeof__(pwritev2) hook_pwritev2;
extern __typeof__(send) hook_send;
extern __typeof__(recv) hook_recv;
extern __typeof__(sendto) hook_sendto;
extern __typeof__(recvfrom) hook_recvfrom;
extern __typeof__(sendmsg) hook_sendmsg;
extern __typeof__(recvmsg) hook_recvmsg;
extern __typeof__(sendmmsg) hook_sendmmsg;
extern __typeof__(recvmmsg) hook_recvmmsg;
extern __typeof__(connect) hook_connect;
extern __typeof__(accept) hook_accept;
extern __typeof__(accept4) hook_accept4;
extern __typeof__(listen) hook_listen;
extern __typeof__(shutdown) hook_shutdown;
extern __typeof__(close) hook_close;
extern __typeof__(close_range) hook_close_range;
extern __typeof__(dup) hook_dup;
extern __typeof__(dup2) hook_dup2;
extern __typeof__(dup3) hook_dup3;
extern __typeof__(fcntl) hook_fcntl;
extern __typeof__(ioctl) hook_ioctl;
extern __typeof__(setsockopt) hook_setsockopt;
extern __typeof__(getsockopt) hook_getsockopt;
extern __typeof__(sendfile64) hook_sendfile64;
extern __typeof__(splice) hook_splice;
extern __typeof__(poll) hook_poll;
extern __typeof__(ppoll) hook_ppoll;
extern __typeof__(select) hook_select;
extern __typeof__(pselect) hook_pselect;
extern __typeof__(epoll_ctl) hook_epoll_ctl;
extern __typeof__(epoll_wait) hook_epoll_wait;
extern __typeof__(epoll_pwait) hook_epoll_pwait;
extern __typeof__(epoll_pwait2) hook_epoll_pwait2;
extern __typeof__(socketpair) hook_socketpair;
extern __typeof__(pipe2) hook_pipe2;

enum route {
	R_PASS = 0,
	R_NEWFD, /* hands out one fd: libc, then fd_new() */
	R_URING, /* io_uring_setup: as R_NEWFD, and a warning (a known limit) */
	R_READ,
	R_WRITE,
	R_READV,
	R_WRITEV,
	R_PREADV2,
	R_PWRITEV2,
	R_SENDTO,
	R_RECVFROM,
	R_SENDMSG,
	R_RECVMSG,
	R_SENDMMSG,
	R_RECVMMSG,
	R_CONNECT,
	R_ACCEPT,
	R_ACCEPT4,
	R_LISTEN,
	R_SHUTDOWN,
	R_CLOSE,
	R_CLOSE_RANGE,
	R_DUP,
	R_DUP2,
	R_DUP3,
	R_FCNTL,
	R_IOCTL,
	R_SETSOCKOPT,
	R_GETSOCKOPT,
	R_SENDFILE,
	R_SPLICE,
	R_POLL,
	R_PPOLL,
	R_SELECT,
	R_PSELECT6,
	R_EPOLL_CTL,
	R_EPOLL_WAIT,
	R_EPOLL_PWAIT,
	R_EPOLL_PWAIT2,
	R_SOCKETPAIR,
	R_PIPE,
	R_PIPE2,
	R_SIGACTION, /* SIGPIPE's disposition: forgotten (sigpipe.h) */
};

#define ROUTES 512

static const unsigned char routes[ROUTES] = {
    [SYS_read] = R_READ,
    [SYS_write] = R_WRITE,
    [SYS_readv] = R_READV,
    [SYS_writev] = R_WRITEV,
    [SYS_preadv2] = R_PREADV2,
    [SYS_pwritev2] = R_PWRITEV2,
    [SYS_sendto] = R_SENDTO,
    [SYS_recvfrom] = R_RECVFROM,
    [SYS_sendmsg] = R_SENDMSG,
    [SYS_recvmsg] = R_RECVMSG,
    [SYS_sendmmsg] = R_SENDMMSG,
    [SYS_recvmmsg] = R_RECVMMSG,
    [SYS_connect] = R_CONNECT,
    [SYS_accept] = R_ACCEPT,
    [SYS_accept4] = R_ACCEPT4,
    [SYS_listen] = R_LISTEN,
    [SYS_shutdown] = R_SHUTDOWN,
    [SYS_close] = R_CLOSE,
    [SYS_close_range] = R_CLOSE_RANGE,
    [SYS_dup] = R_DUP,
    [SYS_dup2] = R_DUP2,
    [SYS_dup3] = R_DUP3,
    [SYS_fcntl] = R_FCNTL,
    [SYS_ioctl] = R_IOCTL,
    [SYS_setsockopt] = R_SETSOCKOPT,
    [SYS_getsockopt] = R_GETSOCKOPT,
    [SYS_sendfile] = R_SENDFILE,
    [SYS_splice] = R_SPLICE,
    [SYS_poll] = R_POLL,
    [SYS_ppoll] = R_PPOLL,
    [SYS_select] = R_SELECT,
    [SYS_pselect6] = R_PSELECT6,
    [SYS_epoll_ctl] = R_EPOLL_CTL,
    [SYS_epoll_wait] = R_EPOLL_WAIT,
    [SYS_epoll_pwait] = R_EPOLL_PWAIT,
    [SYS_epoll_pwait2] = R_EPOLL_PWAIT2,
    [SYS_socketpair] = R_SOCKETPAIR,
    [SYS_pipe] = R_PIPE,
    [SYS_pipe2] = R_PIPE2,
    [SYS_rt_sigaction] = R_SIGACTION,
    [SYS_open] = R_NEWFD,
    [SYS_openat] = R_NEWFD,
    [SYS_openat2] = R_NEWFD,
    [SYS_creat] = R_NEWFD,
    [SYS_socket] = R_NEWFD,
    [SYS_eventfd] = R_NEWFD,
    [SYS_eventfd2] = R_NEWFD,
    [SYS_epoll_create] = R_NEWFD,
    [SYS_epoll_create1] = R_NEWFD,
    [SYS_memfd_create] = R_NEWFD,
    [SYS_memfd_secret] = R_NEWFD,
    [SYS_timerfd_create] = R_NEWFD,
    [SYS_signalfd] = R_NEWFD,
    [SYS_signalfd4] = R_NEWFD,
    [SYS_inotify_init] = R_NEWFD,
    [SYS_inotify_init1] = R_NEWFD,
    [SYS_fanotify_init] = R_NEWFD,
    [SYS_pidfd_open] = R_NEWFD,
    [SYS_pidfd_getfd] = R_NEWFD,
    [SYS_userfaultfd] = R_NEWFD,
    [SYS_perf_event_open] = R_NEWFD,
    [SYS_fsopen] = R_NEWFD,
    [SYS_fsmount] = R_NEWFD,
    [SYS_fspick] = R_NEWFD,
    [SYS_open_tree] = R_NEWFD,
    [SYS_open_by_handle_at] = R_NEWFD,
    [SYS_landlock_create_ruleset] = R_NEWFD,
    [SYS_io_uring_setup] = R_URING,
};

/* The kernel's sigset_t: what the raw calls' size argument must be. */
#define KERNEL_SIGSET 8

/* The raw pselect6's sixth argument. */
struct pselect6_mask {
	const sigset_t *ss;
	size_t len;
};

static long pass(long nr, const long a[6])
{
	NEED_REAL(syscall);
	if (real.syscall == NULL) {
		errno = ENOSYS;
		return -1;
	}
	return real.syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}

static long new_fd(long nr, const long a[6])
{
	long r = pass(nr, a);

	fd_new((int)r);
	return r;
}

static long bad_sigset(void)
{
	errno = EINVAL;
	return -1;
}

static void uring_warn(void)
{
	static atomic_int warned;

	if ((shim.has_connect || shim.has_accept) && atomic_exchange(&warned, 1) == 0)
		log_warn("io_uring_setup: socket I/O submitted through io_uring bypasses the "
			 "shim: a connection a rule says is TLS would carry cleartext");
}

static long pselect6(const long a[6])
{
	const struct pselect6_mask *m = (const struct pselect6_mask *)a[5];
	const sigset_t *mask = NULL;

	if (m != NULL && m->ss != NULL) {
		if (m->len != KERNEL_SIGSET)
			return bad_sigset();
		mask = m->ss;
	}
	return hook_pselect((int)a[0], (fd_set *)a[1], (fd_set *)a[2], (fd_set *)a[3],
			    (const struct timespec *)a[4], mask);
}

/* Numbers with a route: the same code as the libc wrapper, by family. */

/* Read, write and the send/recv family */
static long routed_io(long nr, enum route r, const long a[6])
{
	int fd = (int)a[0];
	void *p1 = (void *)a[1];

	switch (r) {
	case R_READ:
		return hook_read(fd, p1, (size_t)a[2]);
	case R_WRITE:
		return hook_write(fd, p1, (size_t)a[2]);
	case R_READV:
		return hook_readv(fd, p1, (int)a[2]);
	case R_WRITEV:
		return hook_writev(fd, p1, (int)a[2]);
	case R_PREADV2: /* the offset's low half is the whole offset on 64-bit */
		return hook_preadv2(fd, p1, (int)a[2], (off_t)a[3], (int)a[5]);
	case R_PWRITEV2:
		return hook_pwritev2(fd, p1, (int)a[2], (off_t)a[3], (int)a[5]);
	case R_SENDTO:
		return hook_sendto(fd, p1, (size_t)a[2], (int)a[3], (const struct sockaddr *)a[4],
				   (socklen_t)a[5]);
	case R_RECVFROM:
		return hook_recvfrom(fd, p1, (size_t)a[2], (int)a[3], (struct sockaddr *)a[4],
				     (socklen_t *)a[5]);
	case R_SENDMSG:
		return hook_sendmsg(fd, p1, (int)a[2]);
	case R_RECVMSG:
		return hook_recvmsg(fd, p1, (int)a[2]);
	case R_SENDMMSG:
		return hook_sendmmsg(fd, p1, (unsigned int)a[2], (int)a[3]);
	case R_RECVMMSG:
		return hook_recvmmsg(fd, p1, (unsigned int)a[2], (int)a[3],
				     (struct timespec *)a[4]);
	default:
		return pass(nr, a);
	}
}

/* Connect, accept, listen, shutdown, socket options, sendfile, splice */
static long routed_sock(long nr, enum route r, const long a[6])
{
	int fd = (int)a[0];
	void *p1 = (void *)a[1];

	switch (r) {
	case R_CONNECT:
		return hook_connect(fd, p1, (socklen_t)a[2]);
	case R_ACCEPT:
		return hook_accept(fd, p1, (socklen_t *)a[2]);
	case R_ACCEPT4:
		return hook_accept4(fd, p1, (socklen_t *)a[2], (int)a[3]);
	case R_LISTEN:
		return hook_listen(fd, (int)a[1]);
	case R_SHUTDOWN:
		return hook_shutdown(fd, (int)a[1]);
	case R_SETSOCKOPT:
		return hook_setsockopt(fd, (int)a[1], (int)a[2], (const void *)a[3],
				       (socklen_t)a[4]);
	case R_GETSOCKOPT:
		return hook_getsockopt(fd, (int)a[1], (int)a[2], (void *)a[3], (socklen_t *)a[4]);
	case R_SENDFILE:
		return hook_sendfile64(fd, (int)a[1], (off64_t *)a[2], (size_t)a[3]);
	case R_SPLICE:
		return hook_splice(fd, (loff_t *)a[1], (int)a[2], (loff_t *)a[3], (size_t)a[4],
				   (unsigned int)a[5]);
	default:
		return pass(nr, a);
	}
}

/* Poll, select and epoll */
static long routed_wait(long nr, enum route r, const long a[6])
{
	int fd = (int)a[0];
	void *p1 = (void *)a[1];

	switch (r) {
	case R_POLL:
		return hook_poll((struct pollfd *)a[0], (nfds_t)a[1], (int)a[2]);
	case R_PPOLL:
		if (a[3] != 0 && a[4] != KERNEL_SIGSET)
			return bad_sigset();
		return hook_ppoll((struct pollfd *)a[0], (nfds_t)a[1],
				  (const struct timespec *)a[2], (const sigset_t *)a[3]);
	case R_SELECT:
		return hook_select(fd, p1, (fd_set *)a[2], (fd_set *)a[3], (struct timeval *)a[4]);
	case R_PSELECT6:
		return pselect6(a);
	case R_EPOLL_CTL:
		return hook_epoll_ctl(fd, (int)a[1], (int)a[2], (struct epoll_event *)a[3]);
	case R_EPOLL_WAIT:
		return hook_epoll_wait(fd, p1, (int)a[2], (int)a[3]);
	case R_EPOLL_PWAIT:
		if (a[4] != 0 && a[5] != KERNEL_SIGSET)
			return bad_sigset();
		return hook_epoll_pwait(fd, p1, (int)a[2], (int)a[3], (const sigset_t *)a[4]);
	case R_EPOLL_PWAIT2:
		if (a[4] != 0 && a[5] != KERNEL_SIGSET)
			return bad_sigset();
		return hook_epoll_pwait2(fd, p1, (int)a[2], (const struct timespec *)a[3],
					 (const sigset_t *)a[4]);
	default:
		return pass(nr, a);
	}
}

/* Calls that hand out, duplicate or close fds */
static long routed_fd(long nr, enum route r, const long a[6])
{
	int fd = (int)a[0];

	switch (r) {
	case R_NEWFD:
		return new_fd(nr, a);
	case R_URING:
		uring_warn();
		return new_fd(nr, a);
	case R_CLOSE:
		return hook_close(fd);
	case R_CLOSE_RANGE:
		return hook_close_range((unsigned int)a[0], (unsigned int)a[1], (int)a[2]);
	case R_DUP:
		return hook_dup(fd);
	case R_DUP2:
		return hook_dup2(fd, (int)a[1]);
	case R_DUP3:
		return hook_dup3(fd, (int)a[1], (int)a[2]);
	case R_FCNTL:
		return hook_fcntl(fd, (int)a[1], a[2]);
	case R_IOCTL:
		return hook_ioctl(fd, (unsigned long)a[1], a[2]);
	case R_SOCKETPAIR:
		return hook_socketpair(fd, (int)a[1], (int)a[2], (int *)a[3]);
	case R_PIPE:
		return hook_pipe2((int *)a[0], 0);
	case R_PIPE2:
		return hook_pipe2((int *)a[0], (int)a[1]);
	default:
		return pass(nr, a);
	}
}

/* rt_sigaction: a change of SIGPIPE's disposition forgets what the shim knew of it. */
static long sigaction_raw(long nr, const long a[6])
{
	long rc;

	if (a[0] != SIGPIPE || a[1] == 0)
		return pass(nr, a);
	sigpipe_forget();
	rc = pass(nr, a);
	sigpipe_forget();
	return rc;
}

static __attribute__((noinline)) long routed(long nr, enum route r, const long a[6])
{
	if (r == R_SIGACTION)
		return sigaction_raw(nr, a);
	if (r >= R_READ && r <= R_RECVMMSG)
		return routed_io(nr, r, a);
	if ((r >= R_CONNECT && r <= R_SHUTDOWN) || (r >= R_SETSOCKOPT && r <= R_SPLICE))
		return routed_sock(nr, r, a);
	if (r >= R_POLL && r <= R_EPOLL_PWAIT2)
		return routed_wait(nr, r, a);
	return routed_fd(nr, r, a);
}

/*
 * All six arguments are read whatever NR takes, as libc's syscall() passes six
 * registers: the sixth comes from the caller's stack, a slot that is always
 * mapped but that AddressSanitizer sees as the caller's redzone.
 */
HOOK __attribute__((no_sanitize_address)) long syscall(long nr, ...)
{
	va_list ap;
	long a[6];

	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (likely((unsigned long)nr >= ROUTES || routes[nr] == R_PASS)) {
		__typeof__(real.syscall) fn = __atomic_load_n(&real.syscall, __ATOMIC_ACQUIRE);

		if (likely(fn != NULL))
			return fn(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
		return pass(nr, a);
	}
	return routed(nr, (enum route)routes[nr], a);
}
