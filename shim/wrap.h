/*
 * wrap.h - taking a connection over as the policy decides (decide.h): the
 * connect() family and accept(). Functions return a result or -errno; the
 * hooks (hooks/connect.c, hooks/accept.c, hooks/io.c's MSG_FASTOPEN) set errno.
 */
#ifndef TLSSHIM_WRAP_H
#define TLSSHIM_WRAP_H

#include <sys/socket.h>

/*
 * The policy decision for connecting FD to SA (connect(), and the implicit
 * connect of sendto/sendmsg/sendmmsg with MSG_FASTOPEN), carried out. SA is
 * a copy the program cannot change meanwhile. Returns 1 when the connection
 * is not the shim's to decide (not TCP, an address the kernel rejects, no
 * rule, a plain rule): the caller hands the call to libc. Otherwise it is
 * done as the rule says: 0 (connected, and for tls the handshake done),
 * -EINPROGRESS, -EACCES (deny), -ECONNREFUSED (several names for the address
 * and the rule would have to guess one), or -errno.
 */
int wrap_connect(int fd, const struct sockaddr *sa, socklen_t len)
    __attribute__((warn_unused_result));

/*
 * For a connect on FD that may already be wrapped: *DECIDE is set to 1 when
 * FD is not and the connection is to be decided; else it is 0 and the
 * result (-EALREADY, -EISCONN, 0 the first time after a non-blocking connect
 * completed, or the failure) is returned. A TCP failure is returned once,
 * as Linux does, and unwraps FD: the next connect is decided afresh.
 */
int wrap_connect_again(int fd, int *decide) __attribute__((warn_unused_result));

/*
 * MSG_FASTOPEN with an address on an unconnected TCP socket connects and
 * sends in one call (TCP Fast Open): the connection is decided as connect()
 * decides it. Returns 1 when libc is to make the call as it is (not ours to
 * decide, or no destination: the kernel's own error), 0 when FD is now
 * wrapped and connected (send on it without the flag), or -errno: -EACCES
 * (deny), -EINPROGRESS (non-blocking: like Fast Open without a cookie,
 * nothing was sent and the program sends again once connected), a failure,
 * or on a socket already wrapped what a second connect gives (-EISCONN).
 */
int wrap_fastopen(int fd, const struct sockaddr **sa, socklen_t salen, struct sockaddr_storage *ss);

/*
 * MSG_FASTOPEN with MSG's address: wrap_fastopen() with the length the kernel
 * would use. When the address was copied, *COPY is MSG with its name pointing
 * to SS, and libc is to be given that.
 */
int wrap_fastopen_msg(int fd, const struct msghdr *msg, struct msghdr *copy,
		      struct sockaddr_storage *ss);

/*
 * connect(FD, SA) with SA's family AF_UNSPEC: the kernel dissolves the
 * association (it resets the connection), and the socket may then connect
 * anywhere: the session ends with it, without close_notify (the plain socket
 * sends a reset), and the next connect() is decided afresh. Returns libc's
 * result (errno set by it), as the program's connect() would.
 */
int wrap_disconnect(int fd, const struct sockaddr *sa, socklen_t len);

/*
 * accept4(LFD, SA, SALEN, FLAGS) as the policy decides: a denied connection
 * is closed before the program sees it (and the next one accepted; a
 * non-blocking accept then says EAGAIN), one that cannot be wrapped is never
 * handed over in cleartext. The handshake is lazy: it runs on the
 * connection's first I/O. Returns the fd, or -errno; errno is preserved on
 * success.
 */
int wrap_accept(int lfd, struct sockaddr *sa, socklen_t *salen, int flags)
    __attribute__((warn_unused_result));

#endif
