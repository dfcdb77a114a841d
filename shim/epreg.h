/*
 * epreg.h - epoll for wrapped fds: what the program registered, and the
 * truth about plaintext readiness.
 *
 * A wrapped fd is registered with the kernel under our own data (a pointer to
 * its registration) and the events TLS needs; epoll_wait translates kernel
 * events back into the program's events and data, and adds the events the
 * kernel cannot know about (plaintext OpenSSL already holds). Only the
 * registrations whose connection did something since the last wait are
 * re-examined ("dirty"), so an idle set costs nothing per wait.
 *
 * Registrations of not-yet-wrapped fds are remembered too (program data only)
 * when the policy has connect rules: event loops often add a socket to epoll
 * before connect() wraps it; the registration is then adopted.
 *
 * One mutex guards the registry; it is never held across a wait. Lock order:
 * registry, then conn->lock.
 */
#ifndef TLSSHIM_EPREG_H
#define TLSSHIM_EPREG_H

#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>

struct conn;

/* Whether the registry knows anything at all (lock-free fast path). */
int epreg_active(void);
/* 0 when no epoll set (as registry) or registration may involve FD: lock-free. */
int epreg_fd_maybe(int fd);

/* epoll_ctl for EPFD: returns 0 or -errno. */
int epreg_ctl(int epfd, int op, int fd, struct epoll_event *ev) __attribute__((warn_unused_result));

/*
 * epoll_wait on EPFD: at most MAX events into EV, waiting at most TIMEOUT_NS
 * (< 0: forever) with MASK (may be NULL) during the wait. Returns the count or
 * -errno. *HANDLED is 0 when EPFD has no wrapped registration (the caller then
 * calls libc directly).
 */
int epreg_wait(int epfd, struct epoll_event *ev, int max, int64_t timeout_ns, const sigset_t *mask,
	       int *handled) __attribute__((warn_unused_result));

/*
 * FD is being closed by the program (C: its conn, already out of fdtab, or
 * NULL): forget its registrations, and the set if FD is an epoll fd. While
 * another fd of C's socket stays open, the kernel keeps the registration,
 * and so do we (until the last one closes).
 */
void epreg_fd_closed(int fd, struct conn *c);

/*
 * FD's number was handed out anew after a close the shim never saw (C: the
 * stale conn it mapped to, already out of fdtab and unmapped from C, or NULL;
 * LAST: it was C's last fd): forget its registrations without any I/O. From
 * inside the registry's own work (this thread holds its lock) this is done
 * when the lock is given back.
 */
void epreg_fd_stale(int fd, struct conn *c, int last);

/* FD has just been wrapped as C: adopt registrations made before. */
void epreg_adopt(int fd, struct conn *c);

/* C's readiness may have changed (the program read, wrote, shut down). */
void epreg_touch(struct conn *c);

/* C's last fd is closing: its registrations end with it. */
void epreg_conn_closed(struct conn *c);

/* fork() handlers. */
void epreg_fork_prepare(void);
void epreg_fork_parent(void);
void epreg_fork_child(void);

#endif
