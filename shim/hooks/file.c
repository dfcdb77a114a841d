/*
 * file.c - hooks that would otherwise move bytes past TLS: sendfile and
 * splice into or out of a wrapped socket are carried through TLS
 * (conn_copy.c), and a
 * stdio stream opened on a wrapped fd (glibc's stdio calls read/write
 * internally, never through our hooks) reads and writes through TLS.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "conn.h"
#include "conn_copy.h"
#include "fdtab.h"
#include "hook.h"

HOOK ssize_t sendfile(int out, int in, off_t *off, size_t count)
{
	struct conn *c;
	off64_t o;
	ssize_t r;

	NEED_REAL(sendfile);
	c = unlikely(fdtab_maybe(out)) ? fdtab_get(out) : NULL;
	if (likely(c == NULL))
		return real.sendfile(out, in, off, count);
	o = off ? *off : 0;
	r = conn_copy_in(c, in, off ? &o : NULL, count);
	conn_put(c);
	if (off)
		*off = (off_t)o;
	return hook_ret(r);
}

HOOK ssize_t sendfile64(int out, int in, off64_t *off, size_t count)
{
	struct conn *c;
	ssize_t r;

	NEED_REAL(sendfile64);
	c = unlikely(fdtab_maybe(out)) ? fdtab_get(out) : NULL;
	if (likely(c == NULL))
		return real.sendfile64(out, in, off, count);
	r = conn_copy_in(c, in, off, count);
	conn_put(c);
	return hook_ret(r);
}

HOOK ssize_t splice(int in, loff_t *inoff, int out, loff_t *outoff, size_t len, unsigned flags)
{
	struct conn *c;
	ssize_t r;

	NEED_REAL(splice);
	if (likely(!fdtab_maybe(in) && !fdtab_maybe(out)))
		return real.splice(in, inoff, out, outoff, len, flags);
	c = fdtab_get(out);
	if (c != NULL) {
		r = conn_copy_in(c, in, inoff, len < CONN_COPY_CHUNK ? len : CONN_COPY_CHUNK);
	} else {
		c = fdtab_get(in);
		if (c == NULL)
			return real.splice(in, inoff, out, outoff, len, flags);
		r = conn_copy_out(c, out, outoff, len, (flags & SPLICE_F_NONBLOCK) != 0);
	}
	conn_put(c);
	return hook_ret(r);
}

/* ---- stdio on a wrapped fd ---------------------------------------------------------- */

static ssize_t cookie_read(void *cookie, char *buf, size_t len)
{
	int fd = (int)(intptr_t)cookie;
	struct conn *c = fdtab_get(fd);
	ssize_t r;

	if (c == NULL)
		return real.read(fd, buf, len);
	conn_set_io(c, TS_IO_RW); /* a stdio stream reads with read() */
	r = conn_recv(c, buf, len, 0);
	conn_put(c);
	return hook_ret(r);
}

static ssize_t cookie_write(void *cookie, const char *buf, size_t len)
{
	int fd = (int)(intptr_t)cookie;
	struct conn *c = fdtab_get(fd);
	ssize_t r;

	if (c == NULL)
		return real.write(fd, buf, len);
	conn_set_io(c, TS_IO_RW);
	r = conn_send(c, buf, len, 0);
	conn_put(c);
	/* stdio treats 0 as an error; a socket write error is what it should see. */
	return r < 0 ? (errno = (int)-r, -1) : r;
}

/* A socket is not seekable: fseek() fails with ESPIPE, as on the plain stream. */
static int cookie_seek(void *cookie, off64_t *off, int whence)
{
	(void)cookie;
	(void)off;
	(void)whence;
	errno = ESPIPE;
	return -1;
}

static int cookie_close(void *cookie)
{
	int fd = (int)(intptr_t)cookie;

	fdclose_release(fd);
	return real.close(fd);
}

HOOK FILE *fdopen(int fd, const char *mode)
{
	cookie_io_functions_t io = {
	    .read = cookie_read,
	    .write = cookie_write,
	    .seek = cookie_seek,
	    .close = cookie_close,
	};
	FILE *f;
	int fl;

	NEED_REAL(fdopen);
	if (likely(!fdtab_maybe(fd)))
		return real.fdopen(fd, mode);
	fl = real.fcntl(fd, F_GETFL);
	if (fl < 0)
		return NULL;
	f = fopencookie((void *)(intptr_t)fd, mode, io);
	/* Sockets are not seekable; stdio must not buffer writes across reads oddly. */
	if (f != NULL)
		(void)setvbuf(f, NULL, _IOFBF, BUFSIZ); /* else stdio's default: still correct */
	return f;
}

/* syscall()'s way in (hooks/syscall.c): SYS_sendfile is sendfile64. */
HOOK_INTERNAL(sendfile64)
HOOK_INTERNAL(splice)
