/*
 * newfd.c - hooks: every libc call that hands out a new fd number drops a
 * stale entry the number may still have in the table (shim/fd-surface.tsv
 * lists them). An fd closed behind the shim's back (a raw system call, a
 * library that was not preloaded) leaves its entry; without this, a file
 * that reuses the number would be read and written as the dead TLS session.
 *
 * Each hook calls libc and then fd_new() on the result: one table probe.
 * accept, dup and fcntl(F_DUPFD) do the same in their own files, and so do
 * recvmsg/recvmmsg for fds received over SCM_RIGHTS.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <netdb.h>
#include <pty.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/pidfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <utmp.h>

#include "hook.h"
#include "log.h"
#include "shim.h"

int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);
mqd_t __mq_open_2(const char *name, int flags);

/* NOLINTBEGIN(bugprone-macro-parentheses): va_start takes the bare name; so does real.NAME */
/* The mode argument of open-like calls: read only when the flags say it is there. */
#define OPEN_MODE(flags, mode)                                    \
	do {                                                      \
		if ((flags) & (O_CREAT | __O_TMPFILE)) {          \
			va_list ap_;                              \
			va_start(ap_, flags);                     \
			mode = (mode_t)va_arg(ap_, unsigned int); \
			va_end(ap_);                              \
		}                                                 \
	} while (0)

/* An fd-returning call whose real function is missing (a libc without it): ENOSYS. */
#define CALL_NEWFD(name, ...)                 \
	do {                                  \
		int fd_;                      \
		NEED_REAL_OPT(name);          \
		if (real.name == NULL) {      \
			errno = ENOSYS;       \
			return -1;            \
		}                             \
		fd_ = real.name(__VA_ARGS__); \
		fd_new(fd_);                  \
		return fd_;                   \
	} while (0)

/* open/openat may run inside dlsym() before the table is filled: the kernel's own. */
#define CALL_OPENAT(name, dirfd, path, flags, mode)                                    \
	do {                                                                           \
		int fd_;                                                               \
		NEED_REAL_OPT(name);                                                   \
		fd_ = real.name != NULL                                                \
			  ? real.name(dirfd, path, flags, mode)                        \
			  : (int)real_sys(SYS_openat, dirfd, (long)path, flags, mode); \
		fd_new(fd_);                                                           \
		return fd_;                                                            \
	} while (0)
/* NOLINTEND(bugprone-macro-parentheses) */

HOOK int open(const char *path, int flags, ...)
{
	mode_t mode = 0;

	OPEN_MODE(flags, mode);
	CALL_OPENAT(openat, AT_FDCWD, path, flags, mode);
}
HOOK_ALIAS(open, open64)
HOOK_ALIAS(open, __open)
HOOK_ALIAS(open, __open64)
HOOK_INTERNAL(open)

HOOK int openat(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;

	OPEN_MODE(flags, mode);
	CALL_OPENAT(openat, dirfd, path, flags, mode);
}
HOOK_ALIAS(openat, openat64)
HOOK_INTERNAL(openat)

/* _FORTIFY_SOURCE: glibc's checks (O_CREAT without a mode aborts) stay glibc's. */
HOOK int __open_2(const char *path, int flags)
{
	CALL_NEWFD(__open_2, path, flags);
}

HOOK int __open64_2(const char *path, int flags)
{
	CALL_NEWFD(__open64_2, path, flags);
}

HOOK int __openat_2(int dirfd, const char *path, int flags)
{
	CALL_NEWFD(__openat_2, dirfd, path, flags);
}

HOOK int __openat64_2(int dirfd, const char *path, int flags)
{
	CALL_NEWFD(__openat64_2, dirfd, path, flags);
}

HOOK int creat(const char *path, mode_t mode)
{
	CALL_OPENAT(openat, AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}
HOOK_ALIAS(creat, creat64)

HOOK int socket(int domain, int type, int protocol)
{
	CALL_NEWFD(socket, domain, type, protocol);
}
HOOK_ALIAS(socket, __socket)
HOOK_INTERNAL(socket)

/* Both ends of a pair: fds[0] and fds[1] are new. */
static int new_pair(int rc, const int fds[2])
{
	if (rc == 0) {
		fd_new(fds[0]);
		fd_new(fds[1]);
	}
	return rc;
}

HOOK int socketpair(int domain, int type, int protocol, int fds[2])
{
	NEED_REAL_OPT(socketpair);
	if (real.socketpair == NULL) {
		errno = ENOSYS;
		return -1;
	}
	return new_pair(real.socketpair(domain, type, protocol, fds), fds);
}
HOOK_INTERNAL(socketpair)

HOOK int pipe(int fds[2])
{
	NEED_REAL_OPT(pipe2);
	if (real.pipe2 == NULL) {
		errno = ENOSYS;
		return -1;
	}
	return new_pair(real.pipe2(fds, 0), fds);
}
HOOK_ALIAS(pipe, __pipe)
HOOK_INTERNAL(pipe)

HOOK int pipe2(int fds[2], int flags)
{
	NEED_REAL_OPT(pipe2);
	if (real.pipe2 == NULL) {
		errno = ENOSYS;
		return -1;
	}
	return new_pair(real.pipe2(fds, flags), fds);
}
HOOK_INTERNAL(pipe2)

HOOK int eventfd(unsigned int count, int flags)
{
	CALL_NEWFD(eventfd, count, flags);
}

HOOK int epoll_create(int size)
{
	CALL_NEWFD(epoll_create, size);
}
HOOK_INTERNAL(epoll_create)

HOOK int epoll_create1(int flags)
{
	CALL_NEWFD(epoll_create1, flags);
}
HOOK_INTERNAL(epoll_create1)

HOOK int memfd_create(const char *name, unsigned int flags)
{
	CALL_NEWFD(memfd_create, name, flags);
}

HOOK int timerfd_create(clockid_t clock, int flags)
{
	CALL_NEWFD(timerfd_create, clock, flags);
}

/* signalfd(-1, ...) makes a new fd; with an existing one it returns that one. */
HOOK int signalfd(int fd, const sigset_t *mask, int flags)
{
	CALL_NEWFD(signalfd, fd, mask, flags);
}

HOOK int inotify_init(void)
{
	CALL_NEWFD(inotify_init);
}

HOOK int inotify_init1(int flags)
{
	CALL_NEWFD(inotify_init1, flags);
}

HOOK int fanotify_init(unsigned int flags, unsigned int event_flags)
{
	CALL_NEWFD(fanotify_init, flags, event_flags);
}

HOOK int pidfd_open(pid_t pid, unsigned int flags)
{
	CALL_NEWFD(pidfd_open, pid, flags);
}

HOOK int pidfd_getfd(int pidfd, int targetfd, unsigned int flags)
{
	CALL_NEWFD(pidfd_getfd, pidfd, targetfd, flags);
}

HOOK int fsopen(const char *fs, unsigned int flags)
{
	CALL_NEWFD(fsopen, fs, flags);
}

HOOK int fsmount(int fd, unsigned int flags, unsigned int attr)
{
	CALL_NEWFD(fsmount, fd, flags, attr);
}

HOOK int fspick(int dirfd, const char *path, unsigned int flags)
{
	CALL_NEWFD(fspick, dirfd, path, flags);
}

HOOK int open_tree(int dirfd, const char *path, unsigned int flags)
{
	CALL_NEWFD(open_tree, dirfd, path, flags);
}

HOOK int open_by_handle_at(int mountfd, struct file_handle *h, int flags)
{
	CALL_NEWFD(open_by_handle_at, mountfd, h, flags);
}

HOOK int mkstemp(char *tmpl)
{
	CALL_NEWFD(mkstemp, tmpl);
}
HOOK_ALIAS(mkstemp, mkstemp64)

HOOK int mkostemp(char *tmpl, int flags)
{
	CALL_NEWFD(mkostemp, tmpl, flags);
}
HOOK_ALIAS(mkostemp, mkostemp64)

HOOK int mkstemps(char *tmpl, int suffixlen)
{
	CALL_NEWFD(mkstemps, tmpl, suffixlen);
}
HOOK_ALIAS(mkstemps, mkstemps64)

HOOK int mkostemps(char *tmpl, int suffixlen, int flags)
{
	CALL_NEWFD(mkostemps, tmpl, suffixlen, flags);
}
HOOK_ALIAS(mkostemps, mkostemps64)

HOOK int posix_openpt(int flags)
{
	CALL_NEWFD(posix_openpt, flags);
}

HOOK int getpt(void)
{
	CALL_NEWFD(getpt);
}

HOOK int shm_open(const char *name, int flags, mode_t mode)
{
	CALL_NEWFD(shm_open, name, flags, mode);
}

HOOK int openpty(int *amaster, int *aslave, char *name, const struct termios *t,
		 const struct winsize *w)
{
	int rc;

	NEED_REAL_OPT(openpty);
	if (real.openpty == NULL) {
		errno = ENOSYS;
		return -1;
	}
	rc = real.openpty(amaster, aslave, name, t, w);
	if (rc == 0) {
		fd_new(*amaster);
		fd_new(*aslave);
	}
	return rc;
}

/* The terminal becomes fds 0-2 (glibc's own dup2, out of our sight). */
static void std_fds_new(void)
{
	fd_new(0);
	fd_new(1);
	fd_new(2);
}

HOOK int login_tty(int fd)
{
	int rc;

	NEED_REAL_OPT(login_tty);
	if (real.login_tty == NULL) {
		errno = ENOSYS;
		return -1;
	}
	rc = real.login_tty(fd);
	if (rc == 0)
		std_fds_new();
	return rc;
}

HOOK pid_t forkpty(int *amaster, char *name, const struct termios *t, const struct winsize *w)
{
	pid_t pid;

	NEED_REAL_OPT(forkpty);
	if (real.forkpty == NULL) {
		errno = ENOSYS;
		return -1;
	}
	pid = real.forkpty(amaster, name, t, w);
	if (pid == 0)
		std_fds_new();
	else if (pid > 0)
		fd_new(*amaster);
	return pid;
}

/* ---- streams and directories: glibc opens their fds internally ---------------------- */

/* A stream call made inside dlsym(), before its real function is known: ENOSYS. */
#define NEED_STREAM(name)                \
	do {                             \
		NEED_REAL(name);         \
		if (real.name == NULL) { \
			errno = ENOSYS;  \
			return NULL;     \
		}                        \
	} while (0)

static FILE *new_stream(FILE *f)
{
	if (f != NULL)
		fd_new(fileno(f));
	return f;
}

HOOK FILE *fopen(const char *path, const char *mode)
{
	NEED_STREAM(fopen);
	return new_stream(real.fopen(path, mode));
}
HOOK_ALIAS(fopen, fopen64)

HOOK FILE *freopen(const char *path, const char *mode, FILE *f)
{
	NEED_STREAM(freopen);
	return new_stream(real.freopen(path, mode, f));
}
HOOK_ALIAS(freopen, freopen64)

HOOK FILE *tmpfile(void)
{
	NEED_STREAM(tmpfile);
	return new_stream(real.tmpfile());
}
HOOK_ALIAS(tmpfile, tmpfile64)

HOOK DIR *opendir(const char *path)
{
	DIR *d;

	NEED_STREAM(opendir);
	d = real.opendir(path);
	if (d != NULL)
		fd_new(dirfd(d));
	return d;
}

HOOK mqd_t mq_open(const char *name, int flags, ...)
{
	struct mq_attr *attr = NULL;
	mode_t mode = 0;

	if (flags & O_CREAT) {
		va_list ap;

		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, unsigned int);
		attr = va_arg(ap, struct mq_attr *);
		va_end(ap);
	}
	CALL_NEWFD(mq_open, name, flags, mode, attr);
}

HOOK mqd_t __mq_open_2(const char *name, int flags)
{
	CALL_NEWFD(__mq_open_2, name, flags);
}

/* ---- rcmd, rexec: TCP connections libc makes itself ---------------------------------- */

/*
 * rcmd()/rexec() resolve and connect inside libc, where no hook sees the
 * connect: the policy cannot wrap or deny it (a known limit, README). With
 * connect rules in force the call is logged; its fds are new numbers.
 */
static void warn_internal_connect(const char *call, const char *host, int port)
{
	if (shim.has_connect)
		log_warn("%s %s:%d: libc connects inside %s, where the policy cannot decide the "
			 "connection: it is neither wrapped nor denied (a known limit)",
			 call, host != NULL ? host : "?", port, call);
}

static int new_pair_ptr(int fd, const int *fd2p)
{
	fd_new(fd);
	if (fd >= 0 && fd2p != NULL)
		fd_new(*fd2p);
	return fd;
}

HOOK int rcmd_af(char **ahost, unsigned short port, const char *locuser, const char *remuser,
		 const char *cmd, int *fd2p, sa_family_t af)
{
	NEED_REAL_OPT(rcmd_af);
	if (real.rcmd_af == NULL) {
		errno = ENOSYS;
		return -1;
	}
	warn_internal_connect("rcmd", ahost != NULL ? *ahost : NULL, ntohs(port));
	return new_pair_ptr(real.rcmd_af(ahost, port, locuser, remuser, cmd, fd2p, af), fd2p);
}

HOOK int rcmd(char **ahost, unsigned short port, const char *locuser, const char *remuser,
	      const char *cmd, int *fd2p)
{
	return rcmd_af(ahost, port, locuser, remuser, cmd, fd2p, AF_INET);
}

HOOK int rexec_af(char **ahost, int port, const char *user, const char *pass, const char *cmd,
		  int *fd2p, sa_family_t af)
{
	NEED_REAL_OPT(rexec_af);
	if (real.rexec_af == NULL) {
		errno = ENOSYS;
		return -1;
	}
	warn_internal_connect("rexec", ahost != NULL ? *ahost : NULL, ntohs((uint16_t)port));
	return new_pair_ptr(real.rexec_af(ahost, port, user, pass, cmd, fd2p, af), fd2p);
}

HOOK int rexec(char **ahost, int port, const char *user, const char *pass, const char *cmd,
	       int *fd2p)
{
	return rexec_af(ahost, port, user, pass, cmd, fd2p, AF_INET);
}

HOOK int rresvport_af(int *port, sa_family_t af)
{
	CALL_NEWFD(rresvport_af, port, af);
}

HOOK int rresvport(int *port)
{
	CALL_NEWFD(rresvport_af, port, AF_INET);
}
