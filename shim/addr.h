/*
 * addr.h - socket addresses as the policy sees them.
 */
#ifndef TLSSHIM_ADDR_H
#define TLSSHIM_ADDR_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct ep {
	int family;             /* AF_INET or AF_INET6 (IPv4-mapped IPv6 becomes AF_INET) */
	unsigned char addr[16]; /* network order */
	uint16_t port;
};

/* The numeric address, no brackets (room for INET6_ADDRSTRLEN). */
#define EP_TEXT_MAX 48

/*
 * EP's numeric address into BUF (EP_TEXT_MAX bytes). Made when asked for, not
 * by ep_from_sockaddr(): inet_ntop() is a sprintf, and most connections never
 * print their addresses.
 */
const char *ep_text(const struct ep *ep, char *buf);

/*
 * Fills EP from SA. Returns 0, or -1 if SA is not an AF_INET/AF_INET6 address
 * of a length the kernel accepts (IPv6: 24 bytes, RFC 2133, or more).
 */
int ep_from_sockaddr(struct ep *ep, const struct sockaddr *sa, socklen_t len);

/* "NAME:PORT (ADDR)" or "ADDR:PORT" / "[ADDR6]:PORT" into BUF. */
void ep_describe(const struct ep *ep, const char *name, char *buf, size_t len);

/* Whether FD is a TCP stream socket (not UNIX, UDP, SCTP, raw). */
int fd_is_tcp(int fd);

/*
 * FD's TCP_NODELAY (0 or 1) if FD is a TCP stream socket, else -1: fd_is_tcp()
 * and the option in one system call. errno is preserved.
 */
int fd_tcp_nodelay(int fd);

/*
 * Whether connecting TCP socket FD to (SA, LEN) is a connection the kernel
 * would try: 0 with EP filled, else -1 (not TCP, a family other than the
 * socket's, a length the kernel rejects: the kernel gives its own error).
 * errno is preserved.
 */
int tcp_destination(int fd, const struct sockaddr *sa, socklen_t len, struct ep *ep);

/*
 * Copies the program's socket address SA (LEN bytes) into SS (zero-filled
 * beyond), so that a connection is decided, and made, on one value no other
 * thread can change in between. Returns 0, or -EFAULT for memory the kernel
 * could not read either (or LEN over sizeof(*SS)): the caller then hands the
 * call to libc for the kernel's own error. errno is preserved.
 */
int sockaddr_copy(struct sockaddr_storage *ss, const struct sockaddr *sa, socklen_t len)
    __attribute__((warn_unused_result));

/* Whether [P, P+N) is readable, asked of the kernel (futex); 1 or 0. errno is clobbered. */
int user_readable(const void *p, size_t n);

#endif
