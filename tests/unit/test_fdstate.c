/*
 * test_fdstate.c - unit tests of shim/fdstate.c: a wrapped fd's duplicates
 * and flags as the program sees them.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "fdstate.h"
#include "test_conn_util.h"

Test(fdstate, dup_of_an_unwrapped_fd_or_a_failed_dup_wraps_nothing)
{
	struct tc t = tc_auto();
	int d = dup(t.peer);

	cr_expect_eq(fdstate_dup(t.peer, d), d);
	cr_expect_not(fdtab_maybe(d), "the plain peer's dup was wrapped");
	cr_expect_eq(fdstate_dup(t.fd, -1), -1);
	close(d);
	tc_close(&t);
}

Test(fdstate, a_dup_shares_the_wrapping_and_dup2_onto_it_releases_it)
{
	struct tc t = tc_auto();
	int d = dup(t.fd), p[2];
	struct conn *a, *b;

	cr_expect_eq(fdstate_dup(t.fd, d), d);
	a = fdtab_get(t.fd);
	b = fdtab_get(d);
	cr_expect(b != NULL && a == b, "the dup maps to another conn (%p, %p)", (void *)a,
		  (void *)b);
	conn_put(a);
	if (b != NULL)
		conn_put(b);
	/* dup2(pipe, d): the shim lets go of d first; t.fd keeps the connection. */
	cr_assert_eq(pipe(p), 0);
	fdstate_dup_target(p[0], d);
	cr_expect_not(fdtab_maybe(d), "d is still wrapped");
	cr_expect(fdtab_maybe(t.fd));
	/* Not when the source is not a valid fd: dup2 would fail and close nothing. */
	cr_expect_eq(fdstate_dup(t.fd, d), d);
	fdstate_dup_target(12345, d);
	cr_expect(fdtab_maybe(d), "released for a dup2 that cannot happen");
	fdclose_release(d);
	close(d);
	close(p[0]);
	close(p[1]);
	tc_close(&t);
}

/*
 * A duplicate the table cannot map (a number past it, as dup2 may make where
 * fs.nr_open is raised; or no memory for its chunk) is refused and closed: a
 * raw duplicate would send the program's plaintext out as it is.
 */
Test(fdstate, a_dup_the_table_cannot_hold_is_refused_not_left_raw)
{
	struct tc t = tc_auto();
	int big = (int)(FDTAB_CHUNK * FDTAB_CHUNKS) + 5;

	cr_expect_eq(fdstate_dup(t.fd, big), -ENOMEM);
	cr_expect_not(fdtab_maybe(big));
	cr_expect(fdtab_maybe(t.fd), "the original lost its wrapping");
	tc_close(&t);
}

Test(fdstate, o_nonblock_is_the_programs_while_the_socket_stays_non_blocking)
{
	struct tc t = tc_auto();
	struct conn *c = fdtab_get(t.fd);
	int fl;

	cr_assert(fcntl(t.fd, F_GETFL) & O_NONBLOCK, "wrapped: non-blocking underneath");
	fl = fdstate_fl(c, fcntl, t.fd, F_GETFL, NULL);
	cr_expect(fl >= 0 && !(fl & O_NONBLOCK), "the program did not set it: %#x", fl);
	cr_expect_eq(fdstate_fl(c, fcntl, t.fd, F_SETFL, (void *)(long)(fl | O_NONBLOCK)), 0);
	cr_expect(fdstate_fl(c, fcntl, t.fd, F_GETFL, NULL) & O_NONBLOCK);
	cr_expect_eq(fdstate_fl(c, fcntl, t.fd, F_SETFL, (void *)(long)(fl & ~O_NONBLOCK)), 0);
	cr_expect_not(fdstate_fl(c, fcntl, t.fd, F_GETFL, NULL) & O_NONBLOCK);
	cr_expect(fcntl(t.fd, F_GETFL) & O_NONBLOCK, "cleared underneath");
	cr_expect_eq(fdstate_fl(c, fcntl, 12345, F_GETFL, NULL), -EBADF);
	cr_expect_eq(fdstate_ioctl(c, t.fd, FIONBIO, &(int){1}), 0);
	cr_expect(conn_nonblock(c));
	cr_expect_eq(fdstate_ioctl(c, t.fd, FIONBIO, NULL), -EFAULT);
	conn_put(c);
	tc_close(&t);
}

Test(fdstate, fionread_counts_the_plaintext_the_shim_holds)
{
	struct tc t = tc_buffered();
	struct conn *c = fdtab_get(t.fd);
	struct pollfd p = {.fd = t.fd, .events = POLLIN};
	int n = -1;

	cr_assert_eq(conn_poll_prepare(c, POLLIN, &p.events) & POLLIN, POLLIN);
	cr_assert_not(tc_kernel_readable(t.fd));
	cr_expect_eq(fdstate_ioctl(c, t.fd, FIONREAD, &n), 0);
	cr_expect_eq(n, 8, "FIONREAD %d with 8 bytes held and the kernel socket empty", n);
	cr_expect_eq(fdstate_ioctl(c, t.fd, FIONREAD, NULL), -EFAULT);
	conn_put(c);
	tc_close(&t);
}

Test(fdstate, aio_on_a_wrapped_fd_is_refused)
{
	struct tc t = tc_auto();

	cr_expect_eq(fdstate_aio_refused(t.fd, "aio_write"), 1);
	cr_expect_eq(fdstate_aio_refused(t.peer, "aio_write"), 0, "a plain fd refused");
	cr_expect_eq(fdstate_aio_refused(-1, "aio_read"), 0);
	tc_close(&t);
}
