/*
 * sockopt.h - the socket options a wrapped connection answers itself:
 * TCP_NODELAY and TCP_CORK as the program set them (the socket underneath
 * always has TCP_NODELAY; a TLS connection gathers corked bytes itself), and
 * SO_ERROR, the outcome of a connect the shim made. Functions return 0 or
 * -errno; the hooks (hooks/connect.c) set errno.
 */
#ifndef TLSSHIM_SOCKOPT_H
#define TLSSHIM_SOCKOPT_H

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

struct conn;

/* Whether (LEVEL, OPT) is set by sockopt_set() on a wrapped fd (else: the kernel's). */
static inline int sockopt_set_ours(int level, int opt)
{
	return level == IPPROTO_TCP && (opt == TCP_NODELAY || opt == TCP_CORK);
}

/* Whether (LEVEL, OPT) is answered by sockopt_get() on a wrapped fd (else: the kernel's). */
static inline int sockopt_get_ours(int level, int opt)
{
	return (level == SOL_SOCKET && opt == SO_ERROR) || sockopt_set_ours(level, opt);
}

/* setsockopt(IPPROTO_TCP, TCP_NODELAY or TCP_CORK) on C: 0, -EINVAL, or TCP_CORK's -errno. */
int sockopt_set(struct conn *c, int opt, const void *val, socklen_t len);

/*
 * getsockopt of an option sockopt_get_ours() names, on C. SO_ERROR lets a
 * connect in progress learn its outcome first, as the kernel would, and
 * clears the pending error (even when VAL or LEN is unusable: -EINVAL).
 */
int sockopt_get(struct conn *c, int level, int opt, void *val, socklen_t *len);

#endif
