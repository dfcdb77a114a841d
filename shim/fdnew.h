/*
 * fdnew.h - what every call that hands out an fd number does with it.
 */
#ifndef TLSSHIM_FDNEW_H
#define TLSSHIM_FDNEW_H

#include "conn.h"
#include "epreg.h"
#include "fdclose.h"
#include "fdtab.h"

/*
 * FD was just handed out by the kernel (open, socket, accept, pipe, dup, ...):
 * an entry under its number is stale, left by a close the shim never saw (a
 * raw system call, a library that was not preloaded). One probe when the
 * number is not in the table and no epoll registration is remembered.
 */
static inline void fd_new(int fd)
{
	if (__builtin_expect(fd >= 0 && (fdtab_maybe(fd) || epreg_fd_maybe(fd)), 0))
		fdclose_stale(fd);
}

#endif
