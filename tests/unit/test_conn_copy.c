/*
 * test_conn_copy.c - unit tests of shim/conn_copy.c: sendfile/splice through
 * a wrapped connection (here one that `auto` let through in cleartext, so the
 * peer reads what the program sent as it was).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "conn_copy.h"
#include "test_conn_util.h"

static void read_exactly(int fd, char *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);

		cr_assert(r > 0, "read: %zd after %zu of %zu", r, got, n);
		got += (size_t)r;
	}
}

/* A file of N bytes whose byte i is i * 7 (mod 256). */
static int file_of(size_t n)
{
	char path[] = "/tmp/tlsshim-copy.XXXXXX";
	int fd = mkstemp(path);
	unsigned char *b = malloc(n);

	cr_assert(fd >= 0 && b != NULL);
	unlink(path);
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)(i * 7);
	cr_assert_eq(write(fd, b, n), (ssize_t)n);
	free(b);
	return fd;
}

Test(conn_copy, a_closed_input_sends_nothing)
{
	struct tc t = tc_buffered();
	struct conn *c = fdtab_get(t.fd);
	off64_t off = 0;

	cr_expect_eq(conn_copy_in(c, 12345, NULL, 10), -EBADF);
	cr_expect_eq(conn_copy_in(c, 12345, &off, 10), -EBADF);
	cr_expect_eq(off, 0);
	conn_put(c);
	tc_close(&t);
}

Test(conn_copy, sendfile_from_an_offset_sends_every_byte)
{
	struct tc t = tc_buffered();
	struct conn *c = fdtab_get(t.fd);
	size_t n = 3 * CONN_COPY_CHUNK + 5;
	int f = file_of(n + 100);
	unsigned char *got = malloc(n);
	off64_t off = 100;

	cr_assert_not_null(got);
	cr_expect_eq(conn_copy_in(c, f, &off, n), (ssize_t)n);
	cr_expect_eq(off, (off64_t)(100 + n));
	read_exactly(t.peer, (char *)got, n);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(got[i], (unsigned char)((i + 100) * 7), "byte %zu", i);
	/* Past the end of the file: 0, as sendfile. */
	cr_expect_eq(conn_copy_in(c, f, &off, 10), 0);
	free(got);
	close(f);
	conn_put(c);
	tc_close(&t);
}

Test(conn_copy, splice_out_hands_over_what_the_shim_holds_first)
{
	struct tc t = tc_buffered();
	struct conn *c = fdtab_get(t.fd);
	struct pollfd p = {.fd = t.fd, .events = POLLIN};
	int pp[2];
	char buf[16];

	cr_assert_eq(pipe(pp), 0);
	cr_assert_eq(conn_poll_prepare(c, POLLIN, &p.events) & POLLIN, POLLIN);
	cr_expect_eq(conn_copy_out(c, pp[1], NULL, 100, 1), 8);
	read_exactly(pp[0], buf, 8);
	cr_expect_arr_eq(buf, tc_cleartext, 8);
	cr_expect_eq(conn_copy_out(c, pp[1], NULL, 100, 1), -EAGAIN, "nothing more to read");
	close(pp[0]);
	close(pp[1]);
	conn_put(c);
	tc_close(&t);
}

struct drain {
	int fd;
	size_t skip, n, got;
	unsigned char *buf;
};

/*
 * Once the sender has found the socket full: reads D->skip bytes away, then
 * up to D->n into D->buf (D->got), until the peer's read times out.
 */
static void *drain_later(void *arg)
{
	struct drain *d = arg;
	char junk[4096];
	ssize_t r = 1;

	usleep(200 * 1000);
	for (size_t left = d->skip; left > 0 && r > 0; left -= (size_t)r)
		r = read(d->fd, junk, left < sizeof(junk) ? left : sizeof(junk));
	while (r > 0 && d->got < d->n) {
		r = read(d->fd, d->buf + d->got, d->n - d->got);
		if (r > 0)
			d->got += (size_t)r;
	}
	return NULL;
}

Test(conn_copy, a_non_blocking_socket_reads_a_pipe_only_when_it_can_send)
{
	struct tc t = tc_buffered();
	struct conn *c = fdtab_get(t.fd);
	size_t n = CONN_COPY_CHUNK, sent = 0;
	struct drain d = {.fd = t.peer, .n = n, .buf = malloc(n)};
	unsigned char *src = malloc(n);
	char fill[4096] = {0};
	struct pollfd p = {.fd = t.fd, .events = POLLIN};
	pthread_t th;
	int pp[2], left = 0;
	ssize_t k;

	cr_assert(d.buf != NULL && src != NULL);
	for (size_t i = 0; i < n; i++)
		src[i] = (unsigned char)(i * 13);
	cr_assert_eq(pipe(pp), 0);
	cr_assert_eq(fcntl(pp[1], F_SETPIPE_SZ, (int)n), (int)n);
	cr_assert_eq(write(pp[1], src, n), (ssize_t)n);
	/* The connection is past its first bytes (cleartext); then the socket is filled. */
	cr_assert_eq(conn_poll_prepare(c, POLLIN, &p.events) & POLLIN, POLLIN);
	while ((k = real.send(t.fd, fill, sizeof(fill), MSG_DONTWAIT)) > 0)
		d.skip += (size_t)k;
	cr_assert_eq(errno, EAGAIN);
	conn_set_nonblock(c, 1);
	/*
	 * Full: a pipe's bytes are gone once read, and the peer may never read
	 * again (a program must not wait on it): EAGAIN, the pipe left as it was.
	 */
	cr_expect_eq(conn_copy_in(c, pp[0], NULL, n), -EAGAIN);
	cr_expect_eq(ioctl(pp[0], FIONREAD, &left), 0);
	cr_expect_eq(left, (int)n, "the pipe holds %d of %zu bytes", left, n);
	/* Once the peer reads, every byte read from the pipe goes out. */
	setsockopt(t.peer, SOL_SOCKET, SO_RCVTIMEO, &(struct timeval){5, 0},
		   sizeof(struct timeval));
	cr_assert_eq(pthread_create(&th, NULL, drain_later, &d), 0);
	for (int tries = 0; sent < n && tries < 5000; tries++) {
		k = conn_copy_in(c, pp[0], NULL, n - sent);
		if (k == -EAGAIN)
			usleep(1000);
		else if (k > 0)
			sent += (size_t)k;
		else
			break;
	}
	pthread_join(th, NULL);
	cr_expect_eq(sent, n, "sent %zu of %zu bytes", sent, n);
	cr_expect_eq(d.got, n, "the peer got %zu of %zu bytes", d.got, n);
	cr_expect_arr_eq(d.buf, src, n, "the peer got other bytes");
	free(d.buf);
	free(src);
	close(pp[0]);
	close(pp[1]);
	conn_put(c);
	tc_close(&t);
}
