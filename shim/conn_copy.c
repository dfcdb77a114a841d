/*
 * conn_copy.c - sendfile/splice through a wrapped connection (see
 * conn_copy.h), with the conn API of conn.h.
 *
 * Bytes read from a pipe or a socket are consumed, so they are sent whole even
 * when the program's socket is non-blocking: conn_send_all() waits in the
 * connection's own blocking loop. A file is read at an offset instead and not
 * consumed: a non-blocking socket takes what it can now, as the kernel's
 * sendfile does, and never waits for the peer (nginx's worker would stall on
 * a client that stops reading, and every other client of the worker with it).
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "conn_copy.h"
#include "real.h"

/*
 * Non-blocking C, IN a file read at *OFF (not consumed): sends what the
 * connection takes without waiting, *OFF moved past it. Returns the bytes
 * sent, 0 at the end of the file, or -errno (-EAGAIN: none taken).
 */
static ssize_t copy_file(struct conn *c, int in, off64_t *off, size_t count)
{
	char small[4096];
	size_t cap = count < CONN_COPY_CHUNK ? count : CONN_COPY_CHUNK;
	char *buf = cap <= sizeof(small) ? small : malloc(cap);
	size_t total = 0;
	ssize_t r = 0;

	if (buf == NULL)
		return -ENOMEM;
	while (total < count) {
		size_t n = count - total < cap ? count - total : cap;
		ssize_t s;

		r = pread64(in, buf, n, *off);
		if (r <= 0) {
			if (r < 0)
				r = -errno;
			break;
		}
		s = conn_send(c, buf, (size_t)r, MSG_NOSIGNAL);
		if (s < 0) {
			r = s;
			break;
		}
		*off += s;
		total += (size_t)s;
		if (s < r)
			break; /* the connection is full for now: the rest stays in the file */
	}
	if (buf != small)
		free(buf);
	return total > 0 ? (ssize_t)total : r;
}

/* Non-blocking C: a file (an offset given, or a seekable input at its position) not consumed. */
static int copy_file_nonblock(struct conn *c, int in, off64_t *off, size_t count, ssize_t *r)
{
	off64_t pos;

	if (!conn_nonblock(c))
		return 0;
	pos = off != NULL ? *off : lseek64(in, 0, SEEK_CUR);
	if (pos < 0)
		return 0; /* a pipe or a socket: what is read is consumed */
	*r = copy_file(c, in, &pos, count);
	if (off != NULL)
		*off = pos;
	else if (*r > 0)
		(void)lseek64(in, pos, SEEK_SET);
	return 1;
}

ssize_t conn_copy_in(struct conn *c, int in, off64_t *off, size_t count)
{
	char small[4096]; /* a web server's small files (headers + sendfile) need no malloc */
	size_t cap = count < CONN_COPY_CHUNK ? count : CONN_COPY_CHUNK;
	char *buf;
	size_t total = 0;
	ssize_t r = 0;

	if (copy_file_nonblock(c, in, off, count, &r))
		return r;
	buf = cap <= sizeof(small) ? small : malloc(cap);
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
		r = conn_send_all(c, buf, (size_t)r, MSG_NOSIGNAL);
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

ssize_t conn_copy_out(struct conn *c, int out, off64_t *outoff, size_t len, int nonblock)
{
	char buf[16384];
	size_t n = len < sizeof(buf) ? len : sizeof(buf);
	size_t done = 0;
	ssize_t r = conn_recv(c, buf, n, nonblock ? MSG_DONTWAIT : 0);

	/* Plaintext already taken from TLS must land in OUT. */
	while (r > 0 && done < (size_t)r) {
		ssize_t w = outoff ? pwrite64(out, buf + done, (size_t)r - done, *outoff)
				   : real.write(out, buf + done, (size_t)r - done);

		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return -errno;
		}
		if (outoff)
			*outoff += w;
		done += (size_t)w;
	}
	return r;
}
