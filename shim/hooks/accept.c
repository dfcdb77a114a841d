/*
 * accept.c - hooks: accept()/accept4() under a policy with accept rules go
 * to wrap_accept() (wrap.c: decided by decide.c, the handshake lazy, at the
 * connection's first I/O). listen() notes the port, so
 * that a connect() to this process's own listener does not wait for a
 * handshake only a later accept() could answer.
 */
#include <sys/socket.h>

#include "hook.h"
#include "listeners.h"
#include "shim.h"
#include "wrap.h"

static int shim_accept(int lfd, struct sockaddr *sa, socklen_t *salen, int flags)
{
	return (int)hook_ret(wrap_accept(lfd, sa, salen, flags));
}

HOOK int accept(int fd, struct sockaddr *sa, socklen_t *len)
{
	int nfd;

	NEED_REAL(accept);
	if (shim.has_accept)
		return shim_accept(fd, sa, len, 0);
	nfd = real.accept(fd, sa, len);
	fd_new(nfd);
	return nfd;
}
HOOK_INTERNAL(accept)

HOOK int accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
	int nfd;

	NEED_REAL(accept4);
	if (shim.has_accept)
		return shim_accept(fd, sa, len, flags);
	nfd = real.accept4(fd, sa, len, flags);
	fd_new(nfd);
	return nfd;
}
HOOK_INTERNAL(accept4)

HOOK int listen(int fd, int backlog)
{
	int rc;

	NEED_REAL(listen);
	rc = real.listen(fd, backlog);
	if (rc == 0 && shim.has_connect) {
		real_init(); /* fd_is_tcp() and friends */
		listeners_note(fd);
	}
	return rc;
}
HOOK_INTERNAL(listen)
