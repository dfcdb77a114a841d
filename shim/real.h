/*
 * real.h - the real libc functions behind every hook, resolved once.
 *
 * Code in shim/ never calls a hooked function by its libc name: it calls
 * real.NAME(...). The TLS engine receives a pointer to the same table.
 */
#ifndef TLSSHIM_REAL_H
#define TLSSHIM_REAL_H

#include <aio.h>
#include <dirent.h>
#include <fcntl.h>
#include <mqueue.h>
#include <netdb.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

/*
 * X(name, return type, parameter list). REQ marks symbols every supported
 * libc has; OPT ones may be missing (the hook then fails with ENOSYS only if
 * the program somehow reached it, which it cannot without the symbol).
 */
/* clang-format off: one entry a line reads better than the formatter's packing. */
// clang-format off
#define REAL_FUNCS(REQ, OPT)                                                                     \
	REQ(connect, int, (int, const struct sockaddr *, socklen_t))                             \
	REQ(accept, int, (int, struct sockaddr *, socklen_t *))                                  \
	REQ(accept4, int, (int, struct sockaddr *, socklen_t *, int))                            \
	REQ(listen, int, (int, int))                                                             \
	REQ(close, int, (int))                                                                   \
	REQ(shutdown, int, (int, int))                                                           \
	REQ(read, ssize_t, (int, void *, size_t))                                                \
	REQ(write, ssize_t, (int, const void *, size_t))                                         \
	REQ(readv, ssize_t, (int, const struct iovec *, int))                                    \
	REQ(writev, ssize_t, (int, const struct iovec *, int))                                   \
	REQ(send, ssize_t, (int, const void *, size_t, int))                                     \
	REQ(recv, ssize_t, (int, void *, size_t, int))                                           \
	REQ(sendto, ssize_t, (int, const void *, size_t, int, const struct sockaddr *, socklen_t)) \
	REQ(recvfrom, ssize_t, (int, void *, size_t, int, struct sockaddr *, socklen_t *))       \
	REQ(sendmsg, ssize_t, (int, const struct msghdr *, int))                                 \
	REQ(recvmsg, ssize_t, (int, struct msghdr *, int))                                       \
	REQ(dup, int, (int))                                                                     \
	REQ(dup2, int, (int, int))                                                               \
	REQ(dup3, int, (int, int, int))                                                          \
	REQ(fcntl, int, (int, int, ...))                                                         \
	OPT(fcntl64, int, (int, int, ...))                                                       \
	REQ(ioctl, int, (int, unsigned long, ...))                                               \
	REQ(getsockopt, int, (int, int, int, void *, socklen_t *))                               \
	REQ(getsockname, int, (int, struct sockaddr *, socklen_t *))                             \
	REQ(getpeername, int, (int, struct sockaddr *, socklen_t *))                             \
	REQ(setsockopt, int, (int, int, int, const void *, socklen_t))                           \
	REQ(poll, int, (struct pollfd *, nfds_t, int))                                           \
	REQ(ppoll, int, (struct pollfd *, nfds_t, const struct timespec *, const sigset_t *))    \
	REQ(select, int, (int, fd_set *, fd_set *, fd_set *, struct timeval *))                  \
	REQ(pselect, int,                                                                        \
	    (int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *))      \
	REQ(epoll_create, int, (int))                                                            \
	REQ(epoll_create1, int, (int))                                                           \
	REQ(epoll_ctl, int, (int, int, int, struct epoll_event *))                               \
	REQ(epoll_wait, int, (int, struct epoll_event *, int, int))                              \
	REQ(epoll_pwait, int, (int, struct epoll_event *, int, int, const sigset_t *))           \
	OPT(epoll_pwait2, int,                                                                   \
	    (int, struct epoll_event *, int, const struct timespec *, const sigset_t *))         \
	REQ(getaddrinfo, int,                                                                    \
	    (const char *, const char *, const struct addrinfo *, struct addrinfo **))           \
	REQ(gethostbyname, struct hostent *, (const char *))                                     \
	REQ(gethostbyname2, struct hostent *, (const char *, int))                               \
	REQ(gethostbyname_r, int,                                                                \
	    (const char *, struct hostent *, char *, size_t, struct hostent **, int *))          \
	REQ(gethostbyname2_r, int,                                                               \
	    (const char *, int, struct hostent *, char *, size_t, struct hostent **, int *))     \
	OPT(close_range, int, (unsigned, unsigned, int))                                         \
	OPT(closefrom, void, (int))                                                              \
	REQ(sendfile, ssize_t, (int, int, off_t *, size_t))                                      \
	REQ(sendfile64, ssize_t, (int, int, off64_t *, size_t))                                  \
	REQ(sendmmsg, int, (int, struct mmsghdr *, unsigned, int))                               \
	REQ(recvmmsg, int, (int, struct mmsghdr *, unsigned, int, struct timespec *))            \
	REQ(splice, ssize_t, (int, loff_t *, int, loff_t *, size_t, unsigned))                   \
	REQ(copy_file_range, ssize_t, (int, loff_t *, int, loff_t *, size_t, unsigned))          \
	REQ(fdopen, FILE *, (int, const char *))                                                 \
	REQ(execve, int, (const char *, char *const[], char *const[]))                           \
	REQ(execv, int, (const char *, char *const[]))                                           \
	REQ(execvp, int, (const char *, char *const[]))                                          \
	OPT(execvpe, int, (const char *, char *const[], char *const[]))                          \
	OPT(fexecve, int, (int, char *const[], char *const[]))                                   \
	OPT(preadv2, ssize_t, (int, const struct iovec *, int, off_t, int))                      \
	OPT(pwritev2, ssize_t, (int, const struct iovec *, int, off_t, int))                     \
	REQ(vdprintf, int, (int, const char *, va_list))                                         \
	REQ(sigaction, int, (int, const struct sigaction *, struct sigaction *))                 \
	REQ(signal, sighandler_t, (int, sighandler_t))                                           \
	REQ(sysv_signal, sighandler_t, (int, sighandler_t))                                      \
	OPT(sigset, sighandler_t, (int, sighandler_t))                                           \
	OPT(sigignore, int, (int))                                                               \
	REQ(eventfd_read, int, (int, eventfd_t *))                                               \
	REQ(eventfd_write, int, (int, eventfd_t))                                                \
	REQ(syscall, long, (long, ...))                                                          \
	OPT(openat, int, (int, const char *, int, ...))                                          \
	OPT(__open_2, int, (const char *, int))                                                  \
	OPT(__open64_2, int, (const char *, int))                                                \
	OPT(__openat_2, int, (int, const char *, int))                                           \
	OPT(__openat64_2, int, (int, const char *, int))                                         \
	OPT(socket, int, (int, int, int))                                                        \
	OPT(socketpair, int, (int, int, int, int[2]))                                            \
	OPT(pipe2, int, (int[2], int))                                                           \
	OPT(eventfd, int, (unsigned int, int))                                                   \
	OPT(memfd_create, int, (const char *, unsigned int))                                     \
	OPT(timerfd_create, int, (clockid_t, int))                                               \
	OPT(signalfd, int, (int, const sigset_t *, int))                                         \
	OPT(inotify_init, int, (void))                                                           \
	OPT(inotify_init1, int, (int))                                                           \
	OPT(fanotify_init, int, (unsigned int, unsigned int))                                    \
	OPT(pidfd_open, int, (pid_t, unsigned int))                                              \
	OPT(pidfd_getfd, int, (int, int, unsigned int))                                          \
	OPT(fsopen, int, (const char *, unsigned int))                                           \
	OPT(fsmount, int, (int, unsigned int, unsigned int))                                     \
	OPT(fspick, int, (int, const char *, unsigned int))                                      \
	OPT(open_tree, int, (int, const char *, unsigned int))                                   \
	OPT(open_by_handle_at, int, (int, struct file_handle *, int))                            \
	OPT(mkstemp, int, (char *))                                                              \
	OPT(mkostemp, int, (char *, int))                                                        \
	OPT(mkstemps, int, (char *, int))                                                        \
	OPT(mkostemps, int, (char *, int, int))                                                  \
	OPT(posix_openpt, int, (int))                                                            \
	OPT(getpt, int, (void))                                                                  \
	OPT(shm_open, int, (const char *, int, mode_t))                                          \
	OPT(openpty, int,                                                                        \
	    (int *, int *, char *, const struct termios *, const struct winsize *))              \
	OPT(login_tty, int, (int))                                                               \
	OPT(forkpty, pid_t, (int *, char *, const struct termios *, const struct winsize *))     \
	OPT(mq_open, mqd_t, (const char *, int, ...))                                            \
	OPT(__mq_open_2, mqd_t, (const char *, int))                                             \
	OPT(rcmd_af, int,                                                                        \
	    (char **, unsigned short, const char *, const char *, const char *, int *,           \
	     sa_family_t))                                                                       \
	OPT(rexec_af, int,                                                                       \
	    (char **, int, const char *, const char *, const char *, int *, sa_family_t))        \
	OPT(rresvport_af, int, (int *, sa_family_t))                                             \
	OPT(aio_read, int, (struct aiocb *))                                                     \
	OPT(aio_write, int, (struct aiocb *))                                                    \
	OPT(lio_listio, int, (int, struct aiocb *const[], int, struct sigevent *))               \
	OPT(backtrace_symbols_fd, void, (void *const *, int, int))                               \
	OPT(execveat, int, (int, const char *, char *const[], char *const[], int))               \
	REQ(fopen, FILE *, (const char *, const char *))                                         \
	REQ(freopen, FILE *, (const char *, const char *, FILE *))                               \
	REQ(tmpfile, FILE *, (void))                                                             \
	REQ(opendir, DIR *, (const char *))                                                      \
	REQ(posix_spawn, int, (pid_t *, const char *, const posix_spawn_file_actions_t *,        \
			       const posix_spawnattr_t *, char *const[], char *const[]))         \
	REQ(posix_spawnp, int, (pid_t *, const char *, const posix_spawn_file_actions_t *,       \
				const posix_spawnattr_t *, char *const[], char *const[]))        \
	REQ(system, int, (const char *))                                                         \
	REQ(popen, FILE *, (const char *, const char *))                                         \
	REQ(__read_chk, ssize_t, (int, void *, size_t, size_t))                                  \
	REQ(__recv_chk, ssize_t, (int, void *, size_t, size_t, int))                             \
	REQ(__recvfrom_chk, ssize_t,                                                             \
	    (int, void *, size_t, size_t, int, struct sockaddr *, socklen_t *))

// clang-format on

/* NOLINTNEXTLINE(bugprone-macro-parentheses): a type and a parameter list, not expressions */
#define REAL_MEMBER(name, ret, args) ret(*name) args;

struct real_fns {
	REAL_FUNCS(REAL_MEMBER, REAL_MEMBER)
};

#undef REAL_MEMBER

/* The table: an entry is valid once resolved (real_resolve / real_init). */
extern struct real_fns real;

/*
 * Resolves one entry with dlsym(RTLD_NEXT), once (thread-safe). Aborts with a
 * message if REQUIRED and missing, or if it resolves back to the shim itself.
 * Leaves the entry NULL when called re-entrantly from inside dlsym().
 */
void real_resolve(void **slot, const char *name, int required);

/*
 * The system call NR with up to four arguments, straight to the kernel (not
 * through syscall(), which the shim interposes). -1 and errno on failure.
 */
long real_sys(long nr, long a, long b, long c, long d);

/*
 * open(2) for the shim's own files (log, statistics, /proc): straight to the
 * kernel, not through the open hook, whose stale-entry drop takes the epoll
 * registry's lock — the shim opens these while holding other locks of its own.
 */
int real_open(const char *path, int flags, unsigned mode);

/* Resolves every entry: called before any wrapped work. Idempotent. */
void real_init(void);

/* Whether real_init() has completed. */
int real_ready(void);

#endif
