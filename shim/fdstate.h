/*
 * fdstate.h - a wrapped fd's duplicates and flags as the program sees them:
 * the wrapping follows the fd through dup; O_NONBLOCK and FIONBIO are
 * remembered as the program set them while the socket underneath stays
 * non-blocking; FIONREAD counts plaintext. Functions return a result or
 * -errno; the hooks (hooks/fdops.c) set errno.
 */
#ifndef TLSSHIM_FDSTATE_H
#define TLSSHIM_FDSTATE_H

struct conn;

/*
 * NEWFD (< 0: none) is now a duplicate of OLDFD: it shares OLDFD's wrapping,
 * if any. Returns NEWFD, or -ENOMEM when NEWFD cannot be mapped (no memory,
 * or a number past the fd table): NEWFD is then closed, not left a raw socket
 * under a TLS session whose writes would leave in cleartext.
 */
int fdstate_dup(int oldfd, int newfd) __attribute__((warn_unused_result));

/*
 * In a vfork()ed child: the copies of wrapped fds it made (dup2(conn, 0)
 * before exec), which its own fd table holds and the shared tables do not.
 * Fills FDS[i] with such an fd and SRC[i] with the parent's wrapped fd it
 * copies, at most MAX; returns how many (0 outside a vfork()ed child).
 */
int fdstate_vfork_dups(int *fds, int *src, int max);

/*
 * dup2/dup3(OLDFD, NEWFD) are about to close NEWFD, when OLDFD is valid: so
 * does the shim, with close_notify if it was its connection's last fd.
 */
void fdstate_dup_target(int oldfd, int newfd);

/*
 * fcntl(FD, F_GETFL or F_SETFL, ARG) on C, whose socket is FD, with libc's
 * fcntl FN: O_NONBLOCK as the program set it. Returns the flags (F_GETFL),
 * 0, or -errno.
 */
int fdstate_fl(struct conn *c, int (*fn)(int, int, ...), int fd, int cmd, void *arg);

/* ioctl(FD, FIONBIO or FIONREAD, ARG) on C, whose socket is FD. Returns 0 or -errno. */
int fdstate_ioctl(struct conn *c, int fd, unsigned long req, void *arg);

/*
 * close_range/closefrom are about to close [FIRST, LAST]: the shim lets go of
 * the wrapped fds among them first (close_notify where it was the last fd),
 * and forgets the log file's fd if it is one of them. Chunks of the fd table
 * never allocated are skipped, so a whole range costs little.
 */
void fdstate_release_range(unsigned int first, unsigned int last);

/*
 * Whether an AIO request (CALL: aio_read, ...) on FD must be refused: glibc
 * would run it with its internal read/write, past TLS. Logged; 1 or 0.
 */
int fdstate_aio_refused(int fd, const char *call);

#endif
