/*
 * file.c - hooks that would otherwise move bytes past TLS: sendfile and
 * splice into or out of a wrapped socket are carried through TLS, and a
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
#include "fdtab.h"
#include "hook.h"

#define COPY_CHUNK 65536

/* Sends all of BUF through C, waiting if needed (the bytes are already consumed). */
static ssize_t send_all(struct conn *c, const char *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = conn_send(c, buf + done, len - done, MSG_NOSIGNAL);

		if (r == -EAGAIN) {
			struct pollfd p = {.fd = c->fd, .events = POLLOUT};

			real.poll(&p, 1, 1000);
			continue;
		}
		if (r < 0)
			return done > 0 ? (ssize_t)done : r;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

/* sendfile/splice into a wrapped socket: read IN, encrypt, send. */
static ssize_t copy_in(struct conn *c, int in, off64_t *off, size_t count)
{
	char small[4096]; /* a web server's small files (headers + sendfile) need no malloc */
	size_t cap = count < COPY_CHUNK ? count : COPY_CHUNK;
	char *buf = cap <= sizeof(small) ? small : malloc(cap);
	size_t total = 0;
	ssize_t r = 0;

	if (buf == NULL)
		return -ENOMEM;
	while (total < count) {
		size_t n = count - total < cap ? count - total : cap;

		r = off ? pread64(in, buf, n, *off) : real.read(in, buf, n);
		if (r <= 0) {
			if (r < 0)
				r = -errno;
			break;
		}
		if (off)
			*off += r;
		r = send_all(c, buf, (size_t)r);
		if (r < 0)
			break;
		total += (size_t)r;
		/* A non-blocking caller gets what went out now, like a socket's partial send. */
		if (conn_nonblock(c))
			break;
	}
	if (buf != small)
		free(buf);
	return total > 0 ? (ssize_t)total : r;
}

static ssize_t do_sendfile(int out, int in, off64_t *off, size_t count)
{
	struct conn *c = fdtab_get(out);
	ssize_t r;

	if (c == NULL)
		return -ENOENT;
	r = copy_in(c, in, off, count);
	conn_put(c);
	return r;
}

HOOK ssize_t sendfile(int out, int in, off_t *off, size_t count)
{
	off64_t o;
	ssize_t r;

	NEED_REAL(sendfile);
	if (likely(!fdtab_maybe(out)))
		return real.sendfile(out, in, off, count);
	o = off ? *off : 0;
	r = do_sendfile(out, in, off ? &o : NULL, count);
	if (r == -ENOENT)
		return real.sendfile(out, in, off, count);
	if (off)
		*off = (off_t)o;
	return hook_ret(r);
}

HOOK ssize_t sendfile64(int out, int in, off64_t *off, size_t count)
{
	ssize_t r;

	NEED_REAL(sendfile64);
	if (likely(!fdtab_maybe(out)))
		return real.sendfile64(out, in, off, count);
	r = do_sendfile(out, in, off, count);
	if (r == -ENOENT)
		return real.sendfile64(out, in, off, count);
	return hook_ret(r);
}

HOOK ssize_t splice(int in, loff_t *inoff, int out, loff_t *outoff, size_t len, unsigned flags)
{
	struct conn *c;
	ssize_t r;

	NEED_REAL(splice);
	if (likely(!fdtab_maybe(in) && !fdtab_maybe(out)))
		return real.splice(in, inoff, out, outoff, len, flags);
	if ((c = fdtab_get(out)) != NULL) {
		r = copy_in(c, in, inoff, len < COPY_CHUNK ? len : COPY_CHUNK);
	} else if ((c = fdtab_get(in)) != NULL) {
		char buf[16384];
		size_t n = len < sizeof(buf) ? len : sizeof(buf);
		size_t done = 0;

		r = conn_recv(c, buf, n, (flags & SPLICE_F_NONBLOCK) ? MSG_DONTWAIT : 0);
		/* Plaintext already taken from TLS must land in the pipe. */
		while (r > 0 && done < (size_t)r) {
			ssize_t w = outoff ? pwrite64(out, buf + done, (size_t)r - done, *outoff)
					   : real.write(out, buf + done, (size_t)r - done);
			if (w < 0) {
				if (errno == EAGAIN || errno == EINTR)
					continue;
				r = -errno;
				break;
			}
			if (outoff)
				*outoff += w;
			done += (size_t)w;
		}
	} else {
		return real.splice(in, inoff, out, outoff, len, flags);
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
		setvbuf(f, NULL, _IOFBF, BUFSIZ);
	return f;
}

/* syscall()'s way in (hooks/syscall.c): SYS_sendfile is sendfile64. */
HOOK_INTERNAL(sendfile64)
HOOK_INTERNAL(splice)
