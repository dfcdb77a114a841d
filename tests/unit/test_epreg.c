/*
 * test_epreg.c - unit tests of shim/epreg.c and epreg_wait.c: epoll over
 * wrapped fds, against the core alone (no hook is loaded; the epoll fds are
 * the kernel's own).
 */
#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "epreg.h"
#include "test_conn_util.h"

#define WAIT_MS(ms) ((int64_t)(ms)*1000000)

static int ep_new(void)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);

	cr_assert(ep >= 0);
	return ep;
}

static int ep_add(int ep, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event e = {.events = events, .data.u64 = data};

	return epreg_ctl(ep, EPOLL_CTL_ADD, fd, &e);
}

/* One epreg_wait of at most MS; the count, or -errno. */
static int ep_wait1(int ep, struct epoll_event *ev, int max, int ms, int *handled)
{
	return epreg_wait(ep, ev, max, WAIT_MS(ms), NULL, handled);
}

/* Brings T's bytes into the shim (the first readiness look reads them) and checks it. */
static void buffered_in_shim(int ep, struct tc *t)
{
	struct epoll_event ev[4];
	int h = 0;

	cr_assert_eq(ep_wait1(ep, ev, 4, 5000, &h), 1);
	cr_assert(h);
	cr_assert_not(tc_kernel_readable(t->fd), "the bytes are still in the kernel");
}

static ssize_t read_all(struct tc *t, char *buf, size_t len)
{
	struct conn *c = fdtab_get(t->fd);
	ssize_t n = conn_recv(c, buf, len, MSG_DONTWAIT);

	conn_put(c);
	return n;
}

static ssize_t write_some(struct tc *t)
{
	struct conn *c = fdtab_get(t->fd);
	ssize_t n = conn_send(c, "hi", 2, MSG_DONTWAIT | MSG_NOSIGNAL);

	conn_put(c);
	return n;
}

/* ---- epoll_ctl: the kernel's errors ---- */

Test(epreg_ctl, errors_as_the_kernel_gives_them)
{
	struct tc t = tc_auto();
	struct epoll_event e = {.events = EPOLLIN};
	int ep = ep_new();

	cr_expect_eq(epreg_ctl(ep, EPOLL_CTL_MOD, t.fd, &e), -ENOENT, "MOD before ADD");
	cr_expect_eq(epreg_ctl(ep, EPOLL_CTL_DEL, t.fd, &e), -ENOENT, "DEL before ADD");
	cr_expect_eq(epreg_ctl(ep, EPOLL_CTL_ADD, t.fd, NULL), -EFAULT, "ADD without an event");
	cr_expect_eq(epreg_ctl(ep, 99, t.fd, &e), -EINVAL, "an unknown op");
	cr_expect_eq(ep_add(ep, t.fd, EPOLLIN, 1), 0);
	cr_expect_eq(ep_add(ep, t.fd, EPOLLIN, 1), -EEXIST, "ADD twice");
	cr_expect_eq(epreg_ctl(ep, EPOLL_CTL_MOD, t.fd, NULL), -EFAULT, "MOD without an event");
	cr_expect_eq(epreg_ctl(ep, EPOLL_CTL_DEL, t.fd, NULL), 0, "DEL ignores the event");
	cr_expect_eq(epreg_ctl(ep, EPOLL_CTL_DEL, t.fd, &e), -ENOENT, "DEL twice");
	/* An epoll fd that is not one: the kernel's EINVAL (an unwrapped call to it). */
	cr_expect_eq(ep_add(t.peer, t.fd, EPOLLIN, 1), -EINVAL);
	close(ep);
	tc_close(&t);
}

Test(epreg_wait, leaves_sets_without_a_wrapped_fd_to_the_kernel)
{
	struct tc t = tc_auto();
	struct epoll_event ev[2];
	int ep = ep_new(), h = -1;

	cr_expect_eq(epreg_wait(ep, ev, 0, 0, NULL, &h), -EINVAL, "maxevents 0");
	cr_expect_eq(ep_wait1(ep, ev, 2, 0, &h), 0);
	cr_expect_eq(h, 0, "an empty set is handled");
	cr_assert_eq(ep_add(ep, t.fd, EPOLLIN, 1), 0);
	cr_assert_eq(epreg_ctl(ep, EPOLL_CTL_DEL, t.fd, NULL), 0);
	h = -1;
	cr_expect_eq(ep_wait1(ep, ev, 2, 0, &h), 0);
	cr_expect_eq(h, 0, "a set whose wrapped fd was removed is handled");
	close(ep);
	tc_close(&t);
}

/* ---- readiness the kernel cannot see ---- */

Test(epreg_wait, buffered_plaintext_is_readable_with_the_programs_data)
{
	struct tc t = tc_buffered();
	struct epoll_event ev[4];
	int ep = ep_new(), h = 0;
	char buf[16];

	cr_assert_eq(ep_add(ep, t.fd, EPOLLIN, 0xfeedfacecafe), 0);
	buffered_in_shim(ep, &t);
	/* Level-triggered, with the kernel socket empty: readable again, with the data. */
	cr_expect_eq(ep_wait1(ep, ev, 4, 0, &h), 1);
	cr_expect_eq(ev[0].events & EPOLLIN, EPOLLIN, "events %#x", ev[0].events);
	cr_expect_eq(ev[0].data.u64, 0xfeedfacecafe);
	cr_expect_eq(read_all(&t, buf, sizeof(buf)), 8);
	/* Read: not readable any more. */
	cr_expect_eq(ep_wait1(ep, ev, 4, 0, &h), 0, "events %#x after the read", ev[0].events);
	close(ep);
	tc_close(&t);
}

/* ---- level, edge, one-shot ---- */

Test(epreg_wait, edge_triggered_reports_buffered_plaintext_once)
{
	struct tc t = tc_buffered();
	struct epoll_event ev[4];
	int ep = ep_new(), h = 0;
	char buf[16];

	cr_assert_eq(ep_add(ep, t.fd, EPOLLIN | EPOLLET, 7), 0);
	buffered_in_shim(ep, &t);
	cr_expect_eq(ep_wait1(ep, ev, 4, 0, &h), 0, "a repeat without a new edge: %#x",
		     ev[0].events);
	/* A write makes the shim look again: still no new edge for reading. */
	cr_expect_eq(write_some(&t), 2);
	cr_expect_eq(ep_wait1(ep, ev, 4, 0, &h), 0, "a repeat after a write: %#x", ev[0].events);
	/* New bytes are a new edge, once the program has read to EAGAIN. */
	cr_expect_eq(read_all(&t, buf, sizeof(buf)), 8);
	cr_expect_eq(read_all(&t, buf, sizeof(buf)), -EAGAIN);
	cr_assert_eq(write(t.peer, "more", 4), 4);
	cr_expect_eq(ep_wait1(ep, ev, 4, 5000, &h), 1);
	cr_expect(ev[0].events & EPOLLIN);
	cr_expect_eq(ev[0].data.u64, 7);
	cr_expect_eq(ep_wait1(ep, ev, 4, 0, &h), 0, "edge reported twice");
	close(ep);
	tc_close(&t);
}

Test(epreg_wait, oneshot_is_disarmed_once_reported_and_rearmed_by_mod)
{
	struct tc t = tc_buffered();
	struct epoll_event ev[4], e = {.events = EPOLLIN | EPOLLONESHOT, .data.u64 = 9};
	int ep = ep_new(), h = 0;

	cr_assert_eq(ep_add(ep, t.fd, EPOLLIN | EPOLLONESHOT, 9), 0);
	buffered_in_shim(ep, &t);
	cr_expect_eq(ep_wait1(ep, ev, 4, 0, &h), 0, "one-shot reported twice");
	cr_assert_eq(epreg_ctl(ep, EPOLL_CTL_MOD, t.fd, &e), 0);
	cr_expect_eq(ep_wait1(ep, ev, 4, 0, &h), 1, "not re-armed by EPOLL_CTL_MOD");
	cr_expect_eq(ev[0].data.u64, 9);
	cr_expect_eq(ep_wait1(ep, ev, 4, 0, &h), 0);
	/* Disarmed: DEL still works (the kernel entry is gone already). */
	cr_expect_eq(epreg_ctl(ep, EPOLL_CTL_DEL, t.fd, NULL), 0);
	close(ep);
	tc_close(&t);
}

Test(epreg_wait, wrapped_and_unwrapped_fds_in_one_set)
{
	struct tc t = tc_buffered();
	struct epoll_event ev[4];
	int ep = ep_new(), h = 0, p[2], n, seen = 0;

	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(ep_add(ep, t.fd, EPOLLIN, 1), 0);
	/* With no connect rules and a wrapped fd in the set, the pipe goes to the kernel as is. */
	cr_assert_eq(ep_add(ep, p[0], EPOLLIN, 2), 0);
	cr_assert_eq(write(p[1], "x", 1), 1);
	n = ep_wait1(ep, ev, 4, 5000, &h);
	for (int i = 0; i < n; i++)
		seen |= 1 << ev[i].data.u64;
	/* The wrapped fd's bytes are read on this first look; the pipe is the kernel's. */
	cr_expect_eq(n, 2, "%d events", n);
	cr_expect_eq(seen, 6, "data seen: %#x", seen);
	/* maxevents 1: one now, the other next time. */
	cr_expect_eq(ep_wait1(ep, ev, 1, 0, &h), 1);
	cr_expect_eq(ep_wait1(ep, ev, 1, 0, &h), 1);
	close(p[0]);
	close(p[1]);
	close(ep);
	tc_close(&t);
}

Test(epreg_wait, a_reset_connection_is_EPOLLERR_and_EPOLLHUP)
{
	struct tc t = tc_auto();
	struct epoll_event ev[2];
	int ep = ep_new(), h = 0;

	cr_assert_eq(ep_add(ep, t.fd, EPOLLIN, 3), 0);
	tc_reset_peer(&t);
	cr_expect_eq(ep_wait1(ep, ev, 2, 5000, &h), 1);
	cr_expect_eq(ev[0].events & (EPOLLERR | EPOLLHUP), EPOLLERR | EPOLLHUP, "events %#x",
		     ev[0].events);
	close(ep);
	tc_close(&t);
}

Test(epreg_wait, closing_the_fd_ends_its_registration)
{
	struct tc t = tc_buffered();
	struct epoll_event ev[2];
	int ep = ep_new(), h = -1;

	cr_assert_eq(ep_add(ep, t.fd, EPOLLIN, 1), 0);
	buffered_in_shim(ep, &t);
	fdclose_release(t.fd); /* what close() does first */
	cr_expect_eq(ep_wait1(ep, ev, 2, 0, &h), 0);
	cr_expect_eq(h, 0, "a closed fd's registration is still handled");
	close(t.fd);
	t.fd = -1;
	close(ep);
	if (t.peer >= 0)
		close(t.peer);
	policy_free(t.p);
}
