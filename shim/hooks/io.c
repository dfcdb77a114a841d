/*
 * io.c - hooks: the read/write family, including the _FORTIFY_SOURCE variants.
 *
 * Each hook is a trampoline: an fd the shim does not wrap costs one lock-free
 * table probe and goes straight to libc; a wrapped one goes to conn.c.
 */
#include <errno.h>
#include <execinfo.h>
#include <limits.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/futex.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>

#include "addr.h"
#include "conn.h"
#include "conn_msg.h"
#include "errmap.h"
#include "fdtab.h"
#include "hook.h"
#include "log.h"
#include "scm.h"
#include "shim.h"
#include "wrap.h"

extern void __chk_fail(void) __attribute__((noreturn));
int __vdprintf_chk(int fd, int flag, const char *fmt, va_list ap);
int __dprintf_chk(int fd, int flag, const char *fmt, ...);
ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen);
ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags);
ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags, struct sockaddr *sa,
		       socklen_t *salen);

/* IO: the program's call family (enum ts_io), which the shim's own socket calls then use. */
static ssize_t wrapped_recv(int fd, void *buf, size_t len, int flags, int io, int *handled)
{
	struct conn *c = fdtab_get(fd);
	ssize_t r;

	*handled = c != NULL;
	if (c == NULL)
		return 0;
	conn_set_io(c, io);
	r = conn_msg_flags_check(flags);
	/* The kernel's copy faults (TCP's MSG_TRUNC copies nothing); OpenSSL's would crash. */
	if (r == 0 && buf == NULL && len > 0 && !(flags & MSG_TRUNC))
		r = -EFAULT;
	if (r == 0)
		r = conn_recv(c, buf, len, flags);
	conn_put(c);
	return hook_ret(r);
}

static ssize_t wrapped_send(int fd, const void *buf, size_t len, int flags, int io, int *handled)
{
	struct conn *c = fdtab_get(fd);
	ssize_t r;

	*handled = c != NULL;
	if (c == NULL)
		return 0;
	conn_set_io(c, io);
	r = conn_msg_flags_check(flags);
	if (r == 0 && buf == NULL && len > 0)
		r = -EFAULT;
	if (r == 0)
		r = conn_send(c, buf, len, flags);
	conn_put(c);
	return hook_ret(r);
}

/*
 * The hot hooks are split: the fast path (the real function is known, the fd
 * is not ours) is a few loads and a tail jump, and everything else is an
 * out-of-line call. Kept together, the compiler saves registers for the slow
 * path on every call, which doubled the cost of a read() the shim does not wrap.
 * PASS_THROUGH is that fast path: it returns from the hook with libc's answer.
 */
#define PASS_THROUGH(name, fd, ...)                                                        \
	do {                                                                               \
		__typeof__(real.name) fn_ = __atomic_load_n(&real.name, __ATOMIC_ACQUIRE); \
		if (likely(fn_ != NULL && !fdtab_maybe(fd)))                               \
			return fn_(__VA_ARGS__);                                           \
	} while (0)

static __attribute__((noinline)) ssize_t read_slow(int fd, void *buf, size_t len)
{
	int h;
	ssize_t r;

	NEED_REAL(read);
	if (real.read == NULL)
		return real_sys(SYS_read, fd, (long)buf, (long)len, 0);
	if (!fdtab_maybe(fd))
		return real.read(fd, buf, len);
	r = wrapped_recv(fd, buf, len, 0, TS_IO_RW, &h);
	return h ? r : real.read(fd, buf, len);
}

static inline ssize_t shim_read(int fd, void *buf, size_t len)
{
	PASS_THROUGH(read, fd, fd, buf, len);
	return read_slow(fd, buf, len);
}

HOOK ssize_t read(int fd, void *buf, size_t len)
{
	return shim_read(fd, buf, len);
}

HOOK ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
	if (len > buflen)
		__chk_fail();
	return shim_read(fd, buf, len);
}

static __attribute__((noinline)) ssize_t write_slow(int fd, const void *buf, size_t len)
{
	int h;
	ssize_t r;

	NEED_REAL(write);
	if (real.write == NULL)
		return real_sys(SYS_write, fd, (long)buf, (long)len, 0);
	if (!fdtab_maybe(fd))
		return real.write(fd, buf, len);
	r = wrapped_send(fd, buf, len, 0, TS_IO_RW, &h);
	return h ? r : real.write(fd, buf, len);
}

HOOK ssize_t write(int fd, const void *buf, size_t len)
{
	PASS_THROUGH(write, fd, fd, buf, len);
	return write_slow(fd, buf, len);
}

static __attribute__((noinline)) ssize_t recv_slow(int fd, void *buf, size_t len, int flags)
{
	int h;
	ssize_t r;

	NEED_REAL(recv);
	if (!fdtab_maybe(fd) || (flags & MSG_ERRQUEUE))
		return real.recv(fd, buf, len, flags);
	r = wrapped_recv(fd, buf, len, flags, TS_IO_SOCK, &h);
	return h ? r : real.recv(fd, buf, len, flags);
}

static inline ssize_t shim_recv(int fd, void *buf, size_t len, int flags)
{
	PASS_THROUGH(recv, fd, fd, buf, len, flags);
	return recv_slow(fd, buf, len, flags);
}

HOOK ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	return shim_recv(fd, buf, len, flags);
}

HOOK ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
	if (len > buflen)
		__chk_fail();
	return shim_recv(fd, buf, len, flags);
}

static __attribute__((noinline)) ssize_t send_slow(int fd, const void *buf, size_t len, int flags)
{
	int h;
	ssize_t r;

	NEED_REAL(send);
	if (!fdtab_maybe(fd))
		return real.send(fd, buf, len, flags);
	r = wrapped_send(fd, buf, len, flags, TS_IO_SOCK, &h);
	return h ? r : real.send(fd, buf, len, flags);
}

HOOK ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	PASS_THROUGH(send, fd, fd, buf, len, flags);
	return send_slow(fd, buf, len, flags);
}

static __attribute__((noinline)) ssize_t recvfrom_slow(int fd, void *buf, size_t len, int flags,
						       struct sockaddr *sa, socklen_t *salen)
{
	int h;
	ssize_t r;

	NEED_REAL(recvfrom);
	if (!fdtab_maybe(fd) || (flags & MSG_ERRQUEUE))
		return real.recvfrom(fd, buf, len, flags, sa, salen);
	r = wrapped_recv(fd, buf, len, flags, TS_IO_SOCK, &h);
	if (!h)
		return real.recvfrom(fd, buf, len, flags, sa, salen);
	/* TCP does not report a source address. */
	if (r >= 0 && salen != NULL)
		*salen = 0;
	return r;
}

static inline ssize_t shim_recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *sa,
				    socklen_t *salen)
{
	PASS_THROUGH(recvfrom, fd, fd, buf, len, flags, sa, salen);
	return recvfrom_slow(fd, buf, len, flags, sa, salen);
}

HOOK ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *sa,
		      socklen_t *salen)
{
	return shim_recvfrom(fd, buf, len, flags, sa, salen);
}

HOOK ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
			    struct sockaddr *sa, socklen_t *salen)
{
	if (len > buflen)
		__chk_fail();
	return shim_recvfrom(fd, buf, len, flags, sa, salen);
}

/* An address the kernel refuses to copy in, even where TCP then ignores it. */
static int bad_addrlen(const void *sa, socklen_t salen)
{
	return sa != NULL && salen > (socklen_t)sizeof(struct sockaddr_storage);
}

static __attribute__((noinline)) ssize_t sendto_slow(int fd, const void *buf, size_t len, int flags,
						     const struct sockaddr *sa, socklen_t salen)
{
	int h;
	ssize_t r;

	NEED_REAL(sendto);
	if (unlikely(flags & MSG_FASTOPEN)) {
		struct sockaddr_storage ss;

		r = wrap_fastopen(fd, &sa, salen, &ss);
		if (r == 1)
			return real.sendto(fd, buf, len, flags, sa, salen);
		if (r < 0)
			return hook_ret(r);
		flags &= ~MSG_FASTOPEN;
	}
	if (!fdtab_maybe(fd))
		return real.sendto(fd, buf, len, flags, sa, salen);
	/* A connected TCP socket ignores the address, so does the wrapped one. */
	if (bad_addrlen(sa, salen))
		return hook_ret(-EINVAL);
	r = wrapped_send(fd, buf, len, flags, TS_IO_SOCK, &h);
	return h ? r : real.sendto(fd, buf, len, flags, sa, salen);
}

HOOK ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *sa,
		    socklen_t salen)
{
	if (likely(!(flags & MSG_FASTOPEN)))
		PASS_THROUGH(sendto, fd, fd, buf, len, flags, sa, salen);
	return sendto_slow(fd, buf, len, flags, sa, salen);
}

static __attribute__((noinline)) ssize_t readv_slow(int fd, const struct iovec *iov, int iovcnt)
{
	struct conn *c;
	ssize_t r;

	NEED_REAL(readv);
	if (!fdtab_maybe(fd))
		return real.readv(fd, iov, iovcnt);
	c = fdtab_get(fd);
	if (c == NULL)
		return real.readv(fd, iov, iovcnt);
	conn_set_io(c, TS_IO_VEC);
	r = conn_msg_iov_check(iov, iovcnt);
	if (r == 0)
		r = conn_recvv(c, iov, iovcnt, 0);
	conn_put(c);
	return hook_ret(r);
}

HOOK ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
	PASS_THROUGH(readv, fd, fd, iov, iovcnt);
	return readv_slow(fd, iov, iovcnt);
}

static __attribute__((noinline)) ssize_t writev_slow(int fd, const struct iovec *iov, int iovcnt)
{
	struct conn *c;
	ssize_t r;

	NEED_REAL(writev);
	if (!fdtab_maybe(fd))
		return real.writev(fd, iov, iovcnt);
	c = fdtab_get(fd);
	if (c == NULL)
		return real.writev(fd, iov, iovcnt);
	conn_set_io(c, TS_IO_VEC);
	r = conn_msg_iov_check(iov, iovcnt);
	if (r == 0)
		r = conn_sendv(c, iov, iovcnt, 0);
	conn_put(c);
	return hook_ret(r);
}

HOOK ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
	PASS_THROUGH(writev, fd, fd, iov, iovcnt);
	return writev_slow(fd, iov, iovcnt);
}

HOOK ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	struct conn *c;
	ssize_t r;

	NEED_REAL(recvmsg);
	if (likely(!fdtab_maybe(fd)) || (flags & MSG_ERRQUEUE)) {
		r = real.recvmsg(fd, msg, flags);
		if (r >= 0)
			scm_received(msg);
		return r;
	}
	c = fdtab_get(fd);
	if (c == NULL)
		return real.recvmsg(fd, msg, flags);
	r = conn_recvmsg(c, msg, flags);
	conn_put(c);
	return hook_ret(r);
}

HOOK ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	struct conn *c;
	ssize_t r;

	NEED_REAL(sendmsg);
	if (unlikely(flags & MSG_FASTOPEN) && msg != NULL) {
		struct sockaddr_storage ss;
		struct msghdr copy;

		r = wrap_fastopen_msg(fd, msg, &copy, &ss);
		if (r < 0)
			return hook_ret(r);
		if (r == 1 && !fdtab_maybe(fd)) {
			if (unlikely(scm_passes_wrapped(fd, &copy))) {
				errno = outcome_errno(OUTCOME_DENIED);
				return -1;
			}
			return real.sendmsg(fd, &copy, flags);
		}
		flags &= ~MSG_FASTOPEN;
	}
	if (likely(!fdtab_maybe(fd))) {
		if (unlikely(scm_passes_wrapped(fd, msg))) {
			errno = outcome_errno(OUTCOME_DENIED);
			return -1;
		}
		return real.sendmsg(fd, msg, flags);
	}
	c = fdtab_get(fd);
	if (c == NULL)
		return real.sendmsg(fd, msg, flags);
	r = conn_sendmsg(c, msg, flags);
	conn_put(c);
	return hook_ret(r);
}

HOOK int sendmmsg(int fd, struct mmsghdr *v, unsigned int n, int flags)
{
	struct conn *c;
	unsigned int i;
	ssize_t r = 0;

	NEED_REAL(sendmmsg);
	if (unlikely(flags & MSG_FASTOPEN) && v != NULL && n > 0) {
		struct sockaddr_storage ss;
		struct msghdr copy;

		r = wrap_fastopen_msg(fd, &v[0].msg_hdr, &copy, &ss);
		if (r < 0)
			return (int)hook_ret(r);
		/* As the kernel: the next message's Fast Open finds the socket connected. */
		if (r == 0) {
			flags &= ~MSG_FASTOPEN;
			n = 1;
		}
	}
	if (likely(!fdtab_maybe(fd))) {
		for (i = 0; v != NULL && i < n && fdtab_any(); i++) {
			if (unlikely(scm_passes_wrapped(fd, &v[i].msg_hdr))) {
				if (i > 0)
					return real.sendmmsg(fd, v, i, flags);
				errno = outcome_errno(OUTCOME_DENIED);
				return -1;
			}
		}
		return real.sendmmsg(fd, v, n, flags);
	}
	c = fdtab_get(fd);
	if (c == NULL)
		return real.sendmmsg(fd, v, n, flags);
	r = conn_sendmmsg(c, v, n, flags);
	conn_put(c);
	return (int)hook_ret(r);
}

HOOK int recvmmsg(int fd, struct mmsghdr *v, unsigned int n, int flags, struct timespec *t)
{
	struct conn *c;
	int r;

	NEED_REAL(recvmmsg);
	if (likely(!fdtab_maybe(fd))) {
		int got = real.recvmmsg(fd, v, n, flags, t);

		for (int k = 0; k < got; k++)
			scm_received(&v[k].msg_hdr);
		return got;
	}
	c = fdtab_get(fd);
	if (c == NULL)
		return real.recvmmsg(fd, v, n, flags, t);
	r = conn_recvmmsg(c, v, n, flags);
	conn_put(c);
	return (int)hook_ret(r);
}

/* ---- preadv2/pwritev2: offset -1 is readv/writev on a socket ------------------------ */

/* preadv2/pwritev2 at offset -1 on a wrapped fd (conn_msg.c); *HANDLED: FD was wrapped. */
static ssize_t rwv2_wrapped(int fd, const struct iovec *iov, int cnt, int flags, int write,
			    int *handled)
{
	struct conn *c = fdtab_get(fd);
	ssize_t r;

	*handled = c != NULL;
	if (c == NULL)
		return 0;
	r = conn_rwv2(c, iov, cnt, flags, write);
	conn_put(c);
	return hook_ret(r);
}

HOOK ssize_t preadv2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
	ssize_t r;
	int h = 0;

	NEED_REAL_OPT(preadv2);
	if (real.preadv2 == NULL) {
		errno = ENOSYS;
		return -1;
	}
	if (likely(!fdtab_maybe(fd)) || off != -1)
		return real.preadv2(fd, iov, cnt, off, flags);
	r = rwv2_wrapped(fd, iov, cnt, flags, 0, &h);
	return h ? r : real.preadv2(fd, iov, cnt, off, flags);
}
HOOK_ALIAS(preadv2, preadv64v2)
HOOK_INTERNAL(preadv2)

HOOK ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
	ssize_t r;
	int h = 0;

	NEED_REAL_OPT(pwritev2);
	if (real.pwritev2 == NULL) {
		errno = ENOSYS;
		return -1;
	}
	if (likely(!fdtab_maybe(fd)) || off != -1)
		return real.pwritev2(fd, iov, cnt, off, flags);
	r = rwv2_wrapped(fd, iov, cnt, flags, 1, &h);
	return h ? r : real.pwritev2(fd, iov, cnt, off, flags);
}
HOOK_ALIAS(pwritev2, pwritev64v2)
HOOK_INTERNAL(pwritev2)

/* ---- calls that write to an fd from inside libc ------------------------------------ */

/*
 * dprintf/vdprintf format into a stream glibc writes with its internal
 * write(): on a wrapped fd that would be cleartext. The text is sent through
 * TLS instead, as one write (conn_msg.c).
 */
static int vdprintf_wrapped(int fd, const char *fmt, va_list ap, int *handled)
{
	struct conn *c = fdtab_get(fd);
	int r;

	*handled = c != NULL;
	if (c == NULL)
		return 0;
	r = conn_vdprintf(c, fmt, ap);
	conn_put(c);
	return (int)hook_ret(r);
}

static int shim_vdprintf(int fd, const char *fmt, va_list ap)
{
	int h = 0, r;

	NEED_REAL(vdprintf);
	if (likely(!fdtab_maybe(fd)))
		return real.vdprintf(fd, fmt, ap);
	r = vdprintf_wrapped(fd, fmt, ap, &h);
	return h ? r : real.vdprintf(fd, fmt, ap);
}

HOOK int vdprintf(int fd, const char *fmt, va_list ap)
{
	return shim_vdprintf(fd, fmt, ap);
}

HOOK int dprintf(int fd, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = shim_vdprintf(fd, fmt, ap);
	va_end(ap);
	return r;
}

/* _FORTIFY_SOURCE: FLAG asks for %n checks, which only glibc's own printf does. */
HOOK int __vdprintf_chk(int fd, int flag, const char *fmt, va_list ap)
{
	(void)flag;
	return shim_vdprintf(fd, fmt, ap);
}

HOOK int __dprintf_chk(int fd, int flag, const char *fmt, ...)
{
	va_list ap;
	int r;

	(void)flag;
	va_start(ap, fmt);
	r = shim_vdprintf(fd, fmt, ap);
	va_end(ap);
	return r;
}

/* eventfd_read/eventfd_write are 8-byte read/write: on a wrapped fd, through TLS. */
static int eventfd_io(int fd, eventfd_t *value, int write)
{
	int h;
	ssize_t r = write ? wrapped_send(fd, value, sizeof(*value), 0, TS_IO_RW, &h)
			  : wrapped_recv(fd, value, sizeof(*value), 0, TS_IO_RW, &h);

	if (!h)
		return write ? real.eventfd_write(fd, *value) : real.eventfd_read(fd, value);
	return r == (ssize_t)sizeof(*value) ? 0 : -1;
}

HOOK int eventfd_read(int fd, eventfd_t *value)
{
	NEED_REAL(eventfd_read);
	if (likely(!fdtab_maybe(fd)))
		return real.eventfd_read(fd, value);
	return eventfd_io(fd, value, 0);
}

HOOK int eventfd_write(int fd, eventfd_t value)
{
	NEED_REAL(eventfd_write);
	if (likely(!fdtab_maybe(fd)))
		return real.eventfd_write(fd, value);
	return eventfd_io(fd, &value, 1);
}

/* glibc's exported aliases of the same calls. */
HOOK_ALIAS(read, __read)
HOOK_ALIAS(write, __write)
HOOK_ALIAS(send, __send)
HOOK_INTERNAL(read)
HOOK_INTERNAL(write)
HOOK_INTERNAL(readv)
HOOK_INTERNAL(writev)
HOOK_INTERNAL(send)
HOOK_INTERNAL(recv)
HOOK_INTERNAL(sendto)
HOOK_INTERNAL(recvfrom)
HOOK_INTERNAL(sendmsg)
HOOK_INTERNAL(recvmsg)
HOOK_INTERNAL(sendmmsg)
HOOK_INTERNAL(recvmmsg)

/* backtrace_symbols_fd writes with libc's internal write: on a wrapped fd, through TLS. */
HOOK void backtrace_symbols_fd(void *const *frames, int n, int fd)
{
	char **lines;
	int h;

	NEED_REAL_OPT(backtrace_symbols_fd);
	if (likely(!fdtab_maybe(fd))) {
		if (real.backtrace_symbols_fd != NULL)
			real.backtrace_symbols_fd(frames, n, fd);
		return;
	}
	lines = backtrace_symbols(frames, n);
	for (int i = 0; lines != NULL && i < n; i++) {
		wrapped_send(fd, lines[i], strlen(lines[i]), MSG_NOSIGNAL, TS_IO_RW, &h);
		wrapped_send(fd, "\n", 1, MSG_NOSIGNAL, TS_IO_RW, &h);
	}
	free(lines);
}
HOOK_ALIAS(backtrace_symbols_fd, __backtrace_symbols_fd)
