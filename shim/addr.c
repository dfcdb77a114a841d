/*
 * addr.c - socket address helpers (see addr.h).
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <linux/futex.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "real.h"

/* The shortest IPv6 address Linux accepts: RFC 2133's, without sin6_scope_id. */
#define SIN6_LEN_RFC2133 24

/* The lengths Linux accepts: at least the family's address, at most a sockaddr_storage. */
int ep_from_sockaddr(struct ep *ep, const struct sockaddr *sa, socklen_t len)
{
	if (sa == NULL || len > (socklen_t)sizeof(struct sockaddr_storage))
		return -1;
	memset(ep, 0, sizeof(*ep));
	if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)sa;

		ep->family = AF_INET;
		memcpy(ep->addr, &s->sin_addr, 4);
		ep->port = ntohs(s->sin_port);
	} else if (sa->sa_family == AF_INET6 && len >= (socklen_t)SIN6_LEN_RFC2133) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)sa;

		ep->port = ntohs(s->sin6_port);
		if (IN6_IS_ADDR_V4MAPPED(&s->sin6_addr)) {
			ep->family = AF_INET;
			memcpy(ep->addr, &s->sin6_addr.s6_addr[12], 4);
		} else {
			ep->family = AF_INET6;
			memcpy(ep->addr, &s->sin6_addr, 16);
		}
	} else {
		return -1;
	}
	return 0;
}

const char *ep_text(const struct ep *ep, char *buf)
{
	if (inet_ntop(ep->family, ep->addr, buf, EP_TEXT_MAX) == NULL)
		memcpy(buf, "?", 2);
	return buf;
}

void ep_describe(const struct ep *ep, const char *name, char *buf, size_t len)
{
	const char *lb = ep->family == AF_INET6 ? "[" : "";
	const char *rb = ep->family == AF_INET6 ? "]" : "";
	char t[EP_TEXT_MAX];

	if (name != NULL)
		snprintf(buf, len, "%s:%u (%s)", name, ep->port, ep_text(ep, t));
	else
		snprintf(buf, len, "%s%s%s:%u", lb, ep_text(ep, t), rb, ep->port);
}

int fd_is_tcp(int fd)
{
	int type = 0, proto = 0;
	socklen_t len = sizeof(type);
	int saved = errno;
	int ok;

	ok = real.getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
	len = sizeof(proto);
	/* MPTCP (262) is TCP to the program too. */
	ok = ok && real.getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) == 0 &&
	     (proto == IPPROTO_TCP || proto == 262);
	errno = saved;
	return ok;
}

int fd_tcp_nodelay(int fd)
{
	int on = 0, saved = errno, rc;
	socklen_t len = sizeof(on);

	/* Options of level IPPROTO_TCP exist on TCP sockets only (UNIX, UDP, SCTP, raw: error). */
	if (real.getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &len) == 0)
		rc = on != 0;
	else
		rc = fd_is_tcp(fd) ? 0 : -1; /* MPTCP on kernels that lack the option */
	errno = saved;
	return rc;
}

int tcp_destination(int fd, const struct sockaddr *sa, socklen_t len, struct ep *ep)
{
	int domain = 0, saved = errno;
	socklen_t dlen = sizeof(domain);

	if (ep_from_sockaddr(ep, sa, len) != 0 || !fd_is_tcp(fd))
		return -1;
	/* An IPv4 address on an IPv6 socket (or the reverse) is the kernel's error to give. */
	if (real.getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dlen) != 0 ||
	    domain != sa->sa_family) {
		errno = saved;
		return -1;
	}
	return 0;
}

int sockaddr_copy(struct sockaddr_storage *ss, const struct sockaddr *sa, socklen_t len)
{
	int saved = errno;

	memset(ss, 0, sizeof(*ss));
	if (len == 0)
		return 0;
	if (len > (socklen_t)sizeof(*ss) || sa == NULL)
		return -EFAULT;
	/* An unreadable address is the kernel's EFAULT, not a crash in the shim. */
	if (!user_readable(sa, len)) {
		errno = saved;
		return -EFAULT;
	}
	errno = saved;
	memcpy(ss, sa, len);
	return 0;
}

/* The kernel keeps mmap() at least this far below the main thread's stack (mm/util.c). */
#define MAIN_STACK_GAP ((uintptr_t)128 << 20)

/*
 * Whether [A, END) lies in the main thread's stack between our stack pointer
 * and the stack's top (the loader's __libc_stack_end): that span is mapped
 * while we run on it. Another thread's stack, an alternate signal stack or a
 * coroutine's is not recognised (the caller asks the kernel).
 */
static int on_main_stack(uintptr_t a, uintptr_t end)
{
	static uintptr_t *_Atomic top_p;
	static atomic_int looked;
	uintptr_t sp = (uintptr_t)__builtin_frame_address(0), top;
	uintptr_t *p = atomic_load_explicit(&top_p, memory_order_acquire);

	if (p == NULL && !atomic_exchange(&looked, 1)) {
		p = dlsym(RTLD_DEFAULT, "__libc_stack_end");
		atomic_store_explicit(&top_p, p, memory_order_release);
	}
	if (p == NULL)
		return 0;
	top = *p;
	return sp < top && top - sp < MAIN_STACK_GAP && a >= sp && end <= top;
}

/*
 * Whether [P, P+N) can be read, asked of the kernel without reading it: a
 * futex wait with a zero time-out on a word of each page reads that word
 * (EFAULT if it cannot) and returns at once (EAGAIN or ETIMEDOUT). futex is a
 * call every threaded program's seccomp filter allows (shim/DESIGN.md, "System
 * calls"); process_vm_readv would answer as well but a filter may kill for it.
 * Used for the program's iovec arrays and msghdrs on wrapped fds, and for
 * the socket addresses the shim decides on. Memory in the caller's frames on
 * the main thread's stack (where most programs keep them) is readable without
 * asking: no system call per write.
 */
int user_readable(const void *p, size_t n)
{
	static const struct timespec zero = {0, 0};
	uintptr_t a = (uintptr_t)p, end = a + n;

	if (p == NULL || end < a)
		return 0;
	if (on_main_stack(a, end))
		return 1;
	while (a < end) {
		const uint32_t *w = (const uint32_t *)(a & ~(uintptr_t)3);

		if (real_sys(SYS_futex, (long)w, FUTEX_WAIT_PRIVATE, (long)0xa5a5a5a5u,
			     (long)&zero) != 0 &&
		    errno == EFAULT)
			return 0;
		a = (a | 4095) + 1;
	}
	return 1;
}
