/*
 * connect.c - hooks: connect() goes to wrap_connect() (wrap.c: decided by
 * decide.c); getsockopt(SO_ERROR) reports the wrapped connection's outcome.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "conn.h"
#include "fdtab.h"
#include "hook.h"
#include "inherit.h"
#include "log.h"
#include "shim.h"
#include "wrap.h"

static int shim_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	int rc, decide;

	rc = wrap_connect_again(fd, &decide);
	if (!decide)
		return (int)hook_ret(rc);
	rc = wrap_connect(fd, sa, len);
	if (rc == 1)
		return real.connect(fd, sa, len);
	return (int)hook_ret(rc);
}

/*
 * The address is copied first: a bad pointer gets the kernel's EFAULT instead
 * of a crash, and the connection is decided and made on one value (another
 * thread could otherwise change it between the decision and the connect).
 */
static int shim_connect_copy(int fd, const struct sockaddr *sa, socklen_t len)
{
	struct sockaddr_storage ss;
	const struct sockaddr *a = (const struct sockaddr *)&ss;

	if (sockaddr_copy(&ss, sa, len) != 0)
		return real.connect(fd, sa, len);
	if (len >= (socklen_t)sizeof(sa_family_t) && a->sa_family == AF_UNSPEC && fdtab_maybe(fd))
		return wrap_disconnect(fd, a, len);
	if (shim.has_connect && (a->sa_family == AF_INET || a->sa_family == AF_INET6))
		return shim_connect(fd, a, len);
	return real.connect(fd, a, len);
}

HOOK int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	NEED_REAL(connect);
	if (sa != NULL && (shim.has_connect || fdtab_maybe(fd)))
		return shim_connect_copy(fd, sa, len);
	return real.connect(fd, sa, len);
}
HOOK_ALIAS(connect, __connect)
HOOK_INTERNAL(connect)

/*
 * TCP_NODELAY and TCP_CORK as the program set them (the wrapped socket always
 * has TCP_NODELAY; TLS connections gather corked bytes themselves).
 */
static int tcpopt_get(struct conn *c, int opt, void *val, socklen_t *len)
{
	if (val == NULL || len == NULL || *len < (socklen_t)sizeof(int))
		return -EINVAL;
	*(int *)val = opt == TCP_CORK ? conn_cork(c) : conn_nodelay(c);
	*len = sizeof(int);
	return 0;
}

HOOK int setsockopt(int fd, int level, int opt, const void *val, socklen_t len)
{
	struct conn *c;
	int rc;

	NEED_REAL(setsockopt);
	/* An fd standing for a TCP connection whose TLS session is in a relay (inherit.c). */
	if (unlikely(inherit_any_relayed()) && inherit_setsockopt(fd, level, opt, val, len, &rc))
		return (int)hook_ret(rc);
	if (likely(level != IPPROTO_TCP || (opt != TCP_NODELAY && opt != TCP_CORK) ||
		   !fdtab_maybe(fd)))
		return real.setsockopt(fd, level, opt, val, len);
	c = fdtab_get(fd);
	if (c == NULL)
		return real.setsockopt(fd, level, opt, val, len);
	rc = 0;
	if (val == NULL || len < (socklen_t)sizeof(int))
		rc = -EINVAL;
	else if (opt == TCP_CORK)
		rc = conn_set_cork(c, *(const int *)val != 0);
	else
		conn_set_nodelay(c, *(const int *)val != 0);
	conn_put(c);
	return (int)hook_ret(rc);
}

HOOK int getsockopt(int fd, int level, int opt, void *val, socklen_t *len)
{
	struct conn *c;
	short kev;
	int e;

	NEED_REAL(getsockopt);
	if (unlikely(inherit_any_relayed()) && inherit_getsockopt(fd, level, opt, val, len, &e))
		return (int)hook_ret(e);
	if (likely(!fdtab_maybe(fd)) ||
	    !((level == SOL_SOCKET && opt == SO_ERROR) ||
	      (level == IPPROTO_TCP && (opt == TCP_NODELAY || opt == TCP_CORK))))
		return real.getsockopt(fd, level, opt, val, len);
	c = fdtab_get(fd);
	if (c == NULL)
		return real.getsockopt(fd, level, opt, val, len);
	if (level == IPPROTO_TCP) {
		e = tcpopt_get(c, opt, val, len);
		conn_put(c);
		return (int)hook_ret(e);
	}
	/* Let a connect in progress learn its outcome first, as the kernel would. */
	conn_poll_prepare(c, POLLOUT, &kev);
	e = conn_take_so_error(c);
	conn_put(c);
	if (val == NULL || len == NULL || *len < (socklen_t)sizeof(int)) {
		errno = EINVAL;
		return -1;
	}
	*(int *)val = e;
	*len = sizeof(int);
	return 0;
}
HOOK_INTERNAL(setsockopt)
HOOK_INTERNAL(getsockopt)
