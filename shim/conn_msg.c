/*
 * conn_msg.c - the vectored and message calls on a wrapped connection (see
 * conn_msg.h): the kernel's argument checks, in its order, then conn.c.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "addr.h"
#include "conn.h"
#include "conn_msg.h"
#include "log.h"

/* Flags a TLS stream cannot honour. */
int conn_msg_flags_check(int flags)
{
	if (flags & MSG_OOB) {
		log_warn("MSG_OOB on a TLS-wrapped socket is not supported");
		return -EOPNOTSUPP;
	}
	return 0;
}

/*
 * The highest user address + 1 the kernel accepts in a range (x86-64, 4-level
 * paging: TASK_SIZE_MAX; what access_ok() compares with).
 */
#define USER_END     0x7ffffffff000ul
#define MAX_RW_COUNT 0x7ffff000ul /* INT_MAX rounded down to a page: the kernel's cap */

/*
 * The kernel's checks of an iovec array, for a wrapped fd (lib/iov_iter.c,
 * import_iovec), in its order: a count above UIO_MAXIOV, or any length
 * negative as ssize_t, EINVAL; an unreadable array, or a range past user
 * space (a single buffer is first capped to MAX_RW_COUNT), EFAULT. And a
 * buffer at NULL is EFAULT, where OpenSSL would crash: the kernel copies a
 * small write in one piece and fails it whole (a large one may go out in part
 * first: a difference of count, not of bytes). Returns 0 or -errno.
 */
int conn_msg_iov_check(const struct iovec *iov, int cnt)
{
	if (cnt < 0 || cnt > IOV_MAX)
		return -EINVAL;
	if (cnt == 0)
		return 0;
	if (!user_readable(iov, (size_t)cnt * sizeof(*iov)))
		return -EFAULT;
	for (int i = 0; i < cnt; i++)
		if ((ssize_t)iov[i].iov_len < 0)
			return -EINVAL;
	for (int i = 0; i < cnt; i++) {
		uintptr_t base = (uintptr_t)iov[i].iov_base;
		size_t len = iov[i].iov_len;

		if (cnt == 1 && len > MAX_RW_COUNT)
			len = MAX_RW_COUNT;
		if (base + len < base || base + len > USER_END)
			return -EFAULT;
	}
	for (int i = 0; i < cnt; i++)
		if (iov[i].iov_base == NULL && iov[i].iov_len > 0)
			return -EFAULT;
	return 0;
}

/* Copies a structure the program passed (a msghdr) or fails with -EFAULT, as the kernel. */
static int copy_from_user(void *dst, const void *src, size_t n)
{
	if (!user_readable(src, n))
		return -EFAULT;
	memcpy(dst, src, n);
	return 0;
}

/* Bytes an iovec array (already checked) describes, saturating at SSIZE_MAX. */
static size_t iov_total(const struct iovec *iov, int cnt)
{
	size_t sum = 0;

	for (int i = 0; i < cnt; i++) {
		if (iov[i].iov_len > SSIZE_MAX - sum)
			return SSIZE_MAX;
		sum += iov[i].iov_len;
	}
	return sum;
}

/* The kernel's checks of a msghdr (net/socket.c, copy_msghdr_from_user). */
static int msg_check(const struct msghdr *umsg, struct msghdr *msg)
{
	int r = copy_from_user(msg, umsg, sizeof(*msg));

	if (r != 0)
		return r;
	/* The kernel clamps a long msg_namelen but refuses a negative one. */
	if (msg->msg_name != NULL && (int)msg->msg_namelen < 0)
		return -EINVAL;
	if (msg->msg_iovlen > IOV_MAX)
		return -EMSGSIZE;
	return conn_msg_iov_check(msg->msg_iov, (int)msg->msg_iovlen);
}

ssize_t conn_recvmsg(struct conn *c, struct msghdr *umsg, int flags)
{
	struct msghdr msg;
	ssize_t r = msg_check(umsg, &msg);

	if (r == 0)
		r = conn_msg_flags_check(flags);
	if (r != 0)
		return r;
	conn_set_io(c, TS_IO_MSG);
	r = conn_recvv(c, msg.msg_iov, (int)msg.msg_iovlen, flags);
	if (r >= 0) {
		umsg->msg_namelen = 0;
		umsg->msg_controllen = 0;
		umsg->msg_flags = 0;
	}
	return r;
}

ssize_t conn_sendmsg(struct conn *c, const struct msghdr *umsg, int flags)
{
	struct msghdr msg;
	ssize_t r = msg_check(umsg, &msg);

	if (r == 0)
		r = conn_msg_flags_check(flags);
	if (r != 0)
		return r;
	conn_set_io(c, TS_IO_MSG);
	return conn_sendv(c, msg.msg_iov, (int)msg.msg_iovlen, flags);
}

int conn_sendmmsg(struct conn *c, struct mmsghdr *v, unsigned int n, int flags)
{
	unsigned int i;
	ssize_t r = 0;

	if (n > IOV_MAX)
		n = IOV_MAX; /* the kernel's cap (UIO_MAXIOV) */
	for (i = 0; i < n; i++) {
		r = conn_sendmsg(c, &v[i].msg_hdr, i > 0 ? flags | MSG_DONTWAIT : flags);
		if (r < 0)
			break;
		v[i].msg_len = (unsigned int)r;
	}
	return i == 0 && r < 0 ? (int)r : (int)i;
}

int conn_recvmmsg(struct conn *c, struct mmsghdr *v, unsigned int n, int flags)
{
	unsigned int i;
	ssize_t r = 0;

	if (n > IOV_MAX)
		n = IOV_MAX;
	for (i = 0; i < n; i++) {
		r = conn_recvmsg(c, &v[i].msg_hdr,
				 i > 0 ? flags | MSG_DONTWAIT : flags & ~MSG_WAITFORONE);
		if (r <= 0)
			break;
		v[i].msg_len = (unsigned int)r;
	}
	return i == 0 && r < 0 ? (int)r : (int)i;
}

/*
 * On a socket (no FMODE_PREAD/PWRITE) the kernel answers any other offset
 * with ESPIPE, or EINVAL below -1, before touching data: those calls and
 * pread/pwrite/preadv/pwritev go to libc, which cannot move a byte. With -1
 * the call is readv/writev with RWF_* flags (fs/read_write.c,
 * kiocb_set_rw_flags): RWF_NOWAIT is MSG_DONTWAIT on a socket, the other
 * known flags are ignored, and any flag a socket cannot honour is EOPNOTSUPP,
 * checked after the iovecs and only when there are bytes to move.
 */
#define RWF_SOCKET_OK 0x3fu /* HIPRI, DSYNC, SYNC, NOWAIT, APPEND, NOAPPEND */

ssize_t conn_rwv2(struct conn *c, const struct iovec *iov, int cnt, int flags, int write)
{
	ssize_t r;
	int mf = (flags & RWF_NOWAIT) ? MSG_DONTWAIT : 0;

	conn_set_io(c, TS_IO_VEC);
	r = conn_msg_iov_check(iov, cnt);
	if (r != 0 || iov_total(iov, cnt) == 0)
		return r;
	if ((unsigned)flags & ~RWF_SOCKET_OK)
		return -EOPNOTSUPP;
	return write ? conn_sendv(c, iov, cnt, mf) : conn_recvv(c, iov, cnt, mf);
}

int conn_vdprintf(struct conn *c, const char *fmt, va_list ap)
{
	char *text = NULL;
	ssize_t r;
	int n = vasprintf(&text, fmt, ap);

	if (n < 0)
		return -ENOMEM;
	conn_set_io(c, TS_IO_RW);
	r = n > 0 ? conn_send(c, text, (size_t)n, 0) : 0;
	free(text);
	/* glibc's dprintf fails (-1) when its stream could not write everything. */
	if (r >= 0 && r < n)
		r = -EAGAIN;
	return r < 0 ? (int)r : n;
}
