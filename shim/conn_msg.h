/*
 * conn_msg.h - the vectored and message calls on a wrapped connection:
 * readv/writev, recvmsg/sendmsg, recvmmsg/sendmmsg, preadv2/pwritev2 at
 * offset -1, dprintf. The program's arguments are checked as the kernel
 * checks them, in its order (a bad pointer is EFAULT, not a crash in the
 * shim); the calls then go to conn.c. Functions return a count or -errno;
 * the hooks (hooks/io.c) set errno.
 */
#ifndef TLSSHIM_CONN_MSG_H
#define TLSSHIM_CONN_MSG_H

#include <stdarg.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

struct conn;

/* Flags a TLS stream cannot honour: -EOPNOTSUPP (MSG_OOB, logged), else 0. */
int conn_msg_flags_check(int flags);

/*
 * The kernel's checks of the iovec array IOV[0..CNT) (lib/iov_iter.c,
 * import_iovec), in its order: a count above UIO_MAXIOV, or any length
 * negative as ssize_t, EINVAL; an unreadable array, or a range past user
 * space, EFAULT; a NULL buffer with a length, EFAULT. Returns 0 or -errno.
 */
int conn_msg_iov_check(const struct iovec *iov, int cnt);

/*
 * recvmsg/sendmsg on C with the program's UMSG (copied first, as the kernel
 * does: net/socket.c, copy_msghdr_from_user). recvmsg reports no address, no
 * control data and no flags (a TCP stream has none).
 */
ssize_t conn_recvmsg(struct conn *c, struct msghdr *umsg, int flags);
ssize_t conn_sendmsg(struct conn *c, const struct msghdr *umsg, int flags);

/*
 * recvmmsg/sendmmsg on C: at most UIO_MAXIOV messages, each after the first
 * without waiting; a receive stops at the first empty one. Returns how many
 * messages were done, or -errno when the first failed.
 */
int conn_recvmmsg(struct conn *c, struct mmsghdr *v, unsigned int n, int flags);
int conn_sendmmsg(struct conn *c, struct mmsghdr *v, unsigned int n, int flags);

/* preadv2/pwritev2 at offset -1 on C (WRITE: pwritev2), with RWF_* FLAGS. */
ssize_t conn_rwv2(struct conn *c, const struct iovec *iov, int cnt, int flags, int write);

/* vdprintf on C: the text formatted and sent as one write. Returns its length or -errno. */
int conn_vdprintf(struct conn *c, const char *fmt, va_list ap);

#endif
