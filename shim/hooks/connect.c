/*
 * connect.c - hooks: connect() goes to wrap_connect() (wrap.c: decided by
 * decide.c); setsockopt/getsockopt of the options a wrapped connection
 * answers itself go to sockopt.c.
 */
#include <errno.h>
#include <netinet/in.h>

#include "addr.h"
#include "conn.h"
#include "fdtab.h"
#include "hook.h"
#include "inherit.h"
#include "shim.h"
#include "sockopt.h"
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

HOOK int setsockopt(int fd, int level, int opt, const void *val, socklen_t len)
{
	struct conn *c;
	int rc;

	NEED_REAL(setsockopt);
	/* An fd standing for a TCP connection whose session is in a relay (inherit_relayed.c). */
	if (unlikely(inherit_any_relayed()) && inherit_setsockopt(fd, level, opt, val, len, &rc))
		return (int)hook_ret(rc);
	if (likely(!sockopt_set_ours(level, opt) || !fdtab_maybe(fd)))
		return real.setsockopt(fd, level, opt, val, len);
	c = fdtab_get(fd);
	if (c == NULL)
		return real.setsockopt(fd, level, opt, val, len);
	rc = sockopt_set(c, opt, val, len);
	conn_put(c);
	return (int)hook_ret(rc);
}

HOOK int getsockopt(int fd, int level, int opt, void *val, socklen_t *len)
{
	struct conn *c;
	int e;

	NEED_REAL(getsockopt);
	if (unlikely(inherit_any_relayed()) && inherit_getsockopt(fd, level, opt, val, len, &e))
		return (int)hook_ret(e);
	if (likely(!fdtab_maybe(fd)) || !sockopt_get_ours(level, opt))
		return real.getsockopt(fd, level, opt, val, len);
	c = fdtab_get(fd);
	if (c == NULL)
		return real.getsockopt(fd, level, opt, val, len);
	e = sockopt_get(c, level, opt, val, len);
	conn_put(c);
	return (int)hook_ret(e);
}
HOOK_INTERNAL(setsockopt)
HOOK_INTERNAL(getsockopt)
