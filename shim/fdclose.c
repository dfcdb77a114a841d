/*
 * fdclose.c - the close path. An fd of a wrapped connection goes away in
 * three ways: the program closes it (or dup2()s over it), it was closed
 * behind the shim's back and its number is handed out again, or connect
 * (AF_UNSPEC) disconnects the socket. Each is one pass, in this order:
 * fdtab (unmap), epreg (forget the registrations), conn (end the session),
 * epreg (a closed conn), then the reference is dropped. conn, fdtab and
 * epreg never call each other to close: only this file calls all three.
 */
#include <errno.h>

#include "conn.h"
#include "epreg.h"
#include "fdclose.h"
#include "fdtab.h"
#include "inherit.h"
#include "log.h"

void fdclose_release(int fd)
{
	struct conn *c = fdtab_take(fd);

	if (epreg_fd_maybe(fd))
		epreg_fd_closed(fd, c);
	if (c != NULL) {
		if (conn_close_fd(c, fd))
			epreg_conn_closed(c);
		conn_put(c);
	}
}

void fdclose_stale(int fd)
{
	int saved = errno, last = 0;
	struct conn *c;

	/*
	 * A vfork()ed child's new fd took a number it closed itself (its fd table
	 * is its own): the entry is the parent's, alive in the parent.
	 */
	if (inherit_vforked()) {
		errno = saved;
		return;
	}
	c = fdtab_take(fd);

	if (c != NULL) {
		log_debug("%s: fd %d was closed without the shim (raw system call or another "
			  "library) and now names a new file: its entry is dropped",
			  conn_desc(c), fd);
		last = conn_forget_fd(c, fd);
	}
	epreg_fd_stale(fd, c, last);
	if (c != NULL)
		conn_put(c);
	errno = saved;
}

void fdclose_disconnect(struct conn *c)
{
	int fds[64], n = conn_disconnect(c, fds, 64);

	for (int i = 0; i < n; i++) {
		struct conn *t = fdtab_take(fds[i]);

		if (t == NULL)
			continue;
		if (t != c) {
			/* The fd was closed and reused meanwhile: not ours to unmap. */
			if (fdtab_set(fds[i], t) != 0) /* its slot was just taken from: cannot */
				conn_forget_fd(t, fds[i]);
			conn_put(t);
			continue;
		}
		conn_unwrap_fd(c, fds[i]);
		conn_put(t);
	}
}
