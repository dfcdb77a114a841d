/*
 * test_poll_emul.c - unit tests of shim/poll_emul.c: poll/select over sets
 * with wrapped fds, against the core alone (no hook is loaded).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/select.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "poll_emul.h"
#include "test_conn_util.h"

/* ---- what is not the emulation's, and bad arguments ---- */

Test(poll_emul, select_leaves_sets_without_a_wrapped_fd_to_the_kernel)
{
	int p[2], h = -1;
	fd_set rd;

	cr_assert_eq(pipe(p), 0);
	FD_ZERO(&rd);
	FD_SET(p[0], &rd);
	cr_expect_eq(poll_emul_select(p[0] + 1, &rd, NULL, NULL, 0, NULL, &h), 0);
	cr_expect_eq(h, 0, "a set of unwrapped fds is handled");
	cr_expect(FD_ISSET(p[0], &rd), "an unhandled set was changed");
	close(p[0]);
	close(p[1]);
}

Test(poll_emul, select_leaves_nfds_out_of_range_to_the_kernel)
{
	struct tc t = tc_auto();
	static const int bad[] = {-1, INT32_MIN, FD_SETSIZE + 1};
	fd_set rd;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int h = -1, rc;

		FD_ZERO(&rd);
		FD_SET(t.fd, &rd);
		rc = poll_emul_select(bad[i], &rd, NULL, NULL, 0, NULL, &h);
		cr_expect_eq(h, 0, "nfds %d: handled (rc %d); the kernel's error is its own",
			     bad[i], rc);
		cr_expect(FD_ISSET(t.fd, &rd), "nfds %d: the set was changed", bad[i]);
	}
	/* ... which for a negative count is EINVAL, before any set is read. */
	errno = 0;
	cr_expect_eq(real.select(-1, &rd, NULL, NULL, &(struct timeval){0, 0}), -1);
	cr_expect_eq(errno, EINVAL);
	tc_close(&t);
}

Test(poll_emul, rejects_bad_time_outs_as_the_kernel)
{
	static const struct timespec bad[] = {{-1, 0}, {0, -1}, {0, 1000000000}};
	struct tc t = tc_auto();
	struct timeval tv = {-1, 0};
	int64_t ns = 0;
	fd_set rd;
	int h = 0;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(poll_emul_timeout(&bad[i], &ns), -EINVAL, "{%ld, %ld}",
			     (long)bad[i].tv_sec, (long)bad[i].tv_nsec);
	cr_expect_eq(poll_emul_timeout(NULL, &ns), 0);
	cr_expect_eq(ns, -1, "no time-out is forever");
	cr_expect_eq(poll_emul_timeout(&(struct timespec){2, 5}, &ns), 0);
	cr_expect_eq(ns, 2000000005);
	FD_ZERO(&rd);
	FD_SET(t.fd, &rd);
	cr_expect_eq(poll_emul_select_tv(t.fd + 1, &rd, NULL, NULL, &tv, &h), -EINVAL);
	cr_expect_eq(h, 1, "select's EINVAL is given whatever the sets hold");
	tv = (struct timeval){0, -1};
	cr_expect_eq(poll_emul_select_tv(t.fd + 1, &rd, NULL, NULL, &tv, &h), -EINVAL);
	tc_close(&t);
}

Test(poll_emul, select_with_a_closed_fd_beside_a_wrapped_one_is_EBADF)
{
	struct tc t = tc_auto();
	int p[2], h = 0;
	fd_set rd;

	cr_assert_eq(pipe(p), 0);
	close(p[1]);
	close(p[0]); /* p[0] is now a closed number */
	FD_ZERO(&rd);
	FD_SET(t.fd, &rd);
	FD_SET(p[0], &rd);
	cr_expect_eq(
	    poll_emul_select((t.fd > p[0] ? t.fd : p[0]) + 1, &rd, NULL, NULL, 0, NULL, &h),
	    -EBADF);
	cr_expect_eq(h, 1);
	tc_close(&t);
}

Test(poll_emul, times_out_with_nothing_ready)
{
	struct tc t = tc_auto();
	struct pollfd p = {.fd = t.fd, .events = POLLIN};

	cr_assert(poll_emul_any_wrapped(&p, 1));
	cr_expect_eq(poll_emul(&p, 1, 20 * 1000000, NULL), 0);
	cr_expect_eq(p.revents, 0);
	tc_close(&t);
}

/* ---- readiness the kernel cannot see ---- */

Test(poll_emul, buffered_plaintext_is_readable_while_the_kernel_socket_is_empty)
{
	struct tc t = tc_buffered();
	struct pollfd p = {.fd = t.fd, .events = POLLIN | POLLOUT};
	char buf[16];

	/* The first look takes the client's bytes from the kernel into the shim. */
	cr_expect_eq(poll_emul(&p, 1, 5000 * 1000000ll, NULL), 1);
	cr_expect(p.revents & POLLIN, "revents %#x", p.revents);
	cr_assert_not(tc_kernel_readable(t.fd), "the bytes are still in the kernel");
	/* Asked again, with the kernel socket empty: still readable. */
	p.revents = 0;
	cr_expect_eq(poll_emul(&p, 1, 0, NULL), 1);
	cr_expect(p.revents & POLLIN, "buffered plaintext not reported: revents %#x", p.revents);
	cr_expect_eq(conn_recv(fdtab_get(t.fd), buf, sizeof(buf), 0), 8);
	conn_put(fdtab_get(t.fd)); /* the pin above */
	cr_expect_arr_eq(buf, tc_cleartext, 8);
	/* Read: nothing more, so not readable (writable still). */
	p = (struct pollfd){.fd = t.fd, .events = POLLIN};
	cr_expect_eq(poll_emul(&p, 1, 0, NULL), 0, "revents %#x after the read", p.revents);
	tc_close(&t);
}

Test(poll_emul, select_reports_buffered_plaintext_and_counts_each_set)
{
	struct tc t = tc_buffered();
	struct pollfd p = {.fd = t.fd, .events = POLLIN};
	struct timeval tv = {5, 0};
	fd_set rd, wr;
	int h = 0;

	cr_assert_eq(poll_emul(&p, 1, 5000 * 1000000ll, NULL), 1);
	cr_assert_not(tc_kernel_readable(t.fd));
	FD_ZERO(&rd);
	FD_ZERO(&wr);
	FD_SET(t.fd, &rd);
	FD_SET(t.fd, &wr);
	cr_expect_eq(poll_emul_select_tv(t.fd + 1, &rd, &wr, NULL, &tv, &h), 2);
	cr_expect_eq(h, 1);
	cr_expect(FD_ISSET(t.fd, &rd));
	cr_expect(FD_ISSET(t.fd, &wr));
	cr_expect(tv.tv_sec <= 5 && tv.tv_sec >= 0, "time left %ld s", (long)tv.tv_sec);
	tc_close(&t);
}

/* ---- hang-up and errors ---- */

Test(poll_emul, a_reset_connection_is_POLLERR_and_POLLHUP)
{
	struct tc t = tc_auto();
	struct pollfd p = {.fd = t.fd, .events = POLLIN};

	tc_reset_peer(&t);
	cr_expect_eq(poll_emul(&p, 1, 5000 * 1000000ll, NULL), 1);
	cr_expect_eq(p.revents & (POLLERR | POLLHUP), POLLERR | POLLHUP, "revents %#x", p.revents);
	tc_close(&t);
}

Test(poll_emul, passes_the_kernel_events_of_unwrapped_fds)
{
	struct tc t = tc_auto();
	struct pollfd p[2];
	int pp[2];

	cr_assert_eq(pipe(pp), 0);
	close(pp[1]);
	p[0] = (struct pollfd){.fd = t.fd, .events = POLLIN};
	p[1] = (struct pollfd){.fd = pp[0], .events = POLLIN};
	cr_expect_eq(poll_emul(p, 2, 5000 * 1000000ll, NULL), 1);
	cr_expect_eq(p[0].revents, 0, "the wrapped fd: revents %#x", p[0].revents);
	cr_expect(p[1].revents & POLLHUP, "the pipe: revents %#x", p[1].revents);
	close(pp[0]);
	tc_close(&t);
}

/* ---- sets larger than the emulation's stack arrays ---- */

Test(poll_emul, poll_and_select_over_many_fds)
{
	struct tc t = tc_buffered();
	struct pollfd p[80];
	int dev = open("/dev/null", O_RDONLY), h = 0, n = 0;
	fd_set rd;

	cr_assert(dev >= 0);
	FD_ZERO(&rd);
	for (int i = 0; i < 80; i++) {
		int fd = i == 79 ? t.fd : dup(dev);

		cr_assert(fd >= 0 && fd < FD_SETSIZE);
		p[i] = (struct pollfd){.fd = fd, .events = POLLIN};
		FD_SET(fd, &rd);
		n = fd >= n ? fd + 1 : n;
	}
	/* /dev/null is always readable: 79 of them, and the wrapped fd's bytes. */
	cr_expect_eq(poll_emul(p, 80, 5000 * 1000000ll, NULL), 80);
	cr_expect(p[79].revents & POLLIN);
	cr_expect_eq(poll_emul_select(n, &rd, NULL, NULL, 0, NULL, &h), 80);
	cr_expect_eq(h, 1);
	for (int i = 0; i < 79; i++)
		close(p[i].fd);
	close(dev);
	tc_close(&t);
}
