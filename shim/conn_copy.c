/*
 * conn_copy.c - sendfile/splice through a wrapped connection (see
 * conn_copy.h), with the conn API of conn.h.
 *
 * Bytes read from the input are consumed (a pipe, a socket, a file without an
 * offset), so they are sent whole even when the program's socket is
 * non-blocking: conn_send_all() waits in the connection's own blocking loop.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "conn_copy.h"
#include "real.h"

ssize_t conn_copy_in(struct conn *c, int in, off64_t *off, size_t count)
{
	char small[4096]; /* a web server's small files (headers + sendfile) need no malloc */
	size_t cap = count < CONN_COPY_CHUNK ? count : CONN_COPY_CHUNK;
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
