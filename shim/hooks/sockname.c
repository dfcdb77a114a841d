/*
 * sockname.c - hooks: getsockname/getpeername answer for an fd that stands
 * for a TCP connection whose TLS session is kept by a relay process (handed
 * across exec, inherit_relayed.c) with the TCP connection's addresses. Every other
 * fd costs one relaxed load and goes to libc.
 */
#include "hook.h"
#include "inherit.h"

HOOK int getsockname(int fd, struct sockaddr *sa, socklen_t *len)
{
	int rc;

	NEED_REAL(getsockname);
	if (unlikely(inherit_any_relayed()) && inherit_sockname(fd, 0, sa, len, &rc))
		return (int)hook_ret(rc);
	return real.getsockname(fd, sa, len);
}

HOOK int getpeername(int fd, struct sockaddr *sa, socklen_t *len)
{
	int rc;

	NEED_REAL(getpeername);
	if (unlikely(inherit_any_relayed()) && inherit_sockname(fd, 1, sa, len, &rc))
		return (int)hook_ret(rc);
	return real.getpeername(fd, sa, len);
}
