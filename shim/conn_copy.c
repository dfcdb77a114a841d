/*
 * conn_copy.c - sendfile/splice through a wrapped connection (see
 * conn_copy.h), with the conn API of conn.h.
 *
 * Bytes read from a pipe or a socket are consumed, so they are sent whole:
 * conn_send_all() waits in the connection's own blocking loop; on a
 * non-blocking socket they are read (one record) only when the connection
 * takes a write, so that wait is short. A file is read at an offset instead
 * and not consumed: a socket takes what it can, as with the kernel's sendfile
 * (non-blocking: now; blocking: within its SO_SNDTIMEO). A non-blocking socket
 * never waits for a peer that stopped reading (an nginx worker would stall,
 * and every other client of the worker with it).
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "conn_copy.h"
#include "real.h"

/*
 * IN a file read at *OFF (not consumed): sends what the connection takes (a
 * non-blocking C without waiting, a blocking one until its SO_SNDTIMEO), *OFF
 * moved past it. Returns the bytes sent, 0 at the end of the file, or -errno
 * (-EAGAIN: none taken).
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

/*
 * A file (an offset given, or a seekable input at its position): not consumed,
 * so what the connection does not take stays in it. A non-blocking C takes what
 * it can now; a blocking one waits as send() does, its SO_SNDTIMEO included,
 * and then returns what went out, as the kernel's sendfile does.
 */
static int copy_file_seekable(struct conn *c, int in, off64_t *off, size_t count, ssize_t *r)
{
	off64_t pos;

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

/* Whether C can take a write now, as poll(POLLOUT) would say (never blocks). */
static int writable_now(struct conn *c)
{
	short kev = 0, ready = conn_poll_prepare(c, POLLOUT, &kev);
	struct pollfd p = {.fd = c->fd, .events = kev};

	if (ready & (POLLOUT | POLLERR | POLLHUP))
		return 1;
	if (kev == 0 || real.poll(&p, 1, 0) <= 0)
		return 0;
	return (conn_poll_result(c, POLLOUT, p.revents) & (POLLOUT | POLLERR | POLLHUP)) != 0;
}

ssize_t conn_copy_in(struct conn *c, int in, off64_t *off, size_t count)
{
	char small[4096]; /* a web server's small files (headers + sendfile) need no malloc */
	size_t cap = count < CONN_COPY_CHUNK ? count : CONN_COPY_CHUNK;
	char *buf;
	size_t total = 0;
	ssize_t r = 0;

	if (copy_file_seekable(c, in, off, count, &r))
		return r;
	/*
	 * Non-blocking, from a pipe or a socket: what is read must go out, so read
	 * only when the connection takes a write now, and one record's worth at
	 * most, which it then takes at once (the engine queues what the kernel
	 * refuses of one record): never a wait on a peer that stopped reading.
	 */
	if (conn_nonblock(c)) {
		if (!writable_now(c))
			return -EAGAIN;
		if (cap > CONN_COPY_RECORD)
			cap = CONN_COPY_RECORD;
	}
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
