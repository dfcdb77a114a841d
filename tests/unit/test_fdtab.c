/*
 * test_fdtab.c - unit tests of shim/fdtab.c and the close path (fdclose.c):
 * which fds map to a conn, and the reference each mapping and each pin
 * holds, through dup, close, a stale number and disconnect. Linked against
 * the core without the hooks; the conns are real ones on a socketpair
 * (no TLS session is made: nothing here does I/O).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "fdclose.h"
#include "fdtab.h"
#include "real.h"

/* A stand-in rule: no source, so the statistics never count it. */
static struct policy_rule rule = {.action = POLICY_TLS};
static int sp[2];

static void setup(void)
{
	real_init();
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
}

static void teardown(void)
{
	close(sp[0]);
	close(sp[1]);
}

static struct conn *new_conn(int fd)
{
	int err = 0;
	struct conn *c = conn_new_server(fd, &rule, "test", NULL, 1, 0, &err);

	cr_assert_not_null(c, "conn_new_server: %s", strerror(err));
	return c;
}

static int refs(struct conn *c)
{
	return atomic_load(&c->refs);
}

TestSuite(fdtab, .init = setup, .fini = teardown);

/* ---- negative cases first ----------------------------------------------------------- */

Test(fdtab, refuses_fds_outside_the_table)
{
	struct conn *c = new_conn(sp[0]);
	static const int bad[] = {-1, -1000, (int)(FDTAB_CHUNK * FDTAB_CHUNKS)};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = fdtab_set(bad[i], c);

		cr_expect(rc == -EBADF || rc == -ENOMEM, "fdtab_set(%d) = %d", bad[i], rc);
		cr_expect_not(fdtab_maybe(bad[i]), "fdtab_maybe(%d)", bad[i]);
		cr_expect_null(fdtab_get(bad[i]), "fdtab_get(%d)", bad[i]);
		cr_expect_null(fdtab_take(bad[i]), "fdtab_take(%d)", bad[i]);
	}
	cr_expect_eq(refs(c), 1, "a refused mapping took no reference: %d", refs(c));
	conn_put(c);
}

Test(fdtab, an_unmapped_fd_is_not_wrapped)
{
	cr_expect_not(fdtab_maybe(sp[1]));
	cr_expect_null(fdtab_get(sp[1]));
	cr_expect_null(fdtab_take(sp[1]));
	/* The close path on an fd the shim never wrapped does nothing (and does not crash). */
	fdclose_release(sp[1]);
	cr_expect_not(fdtab_maybe(sp[1]));
}

Test(fdtab, take_twice_gives_the_conn_once)
{
	struct conn *c = new_conn(sp[0]);

	cr_assert_eq(fdtab_set(sp[0], c), 0);
	conn_put(c);
	c = fdtab_take(sp[0]);
	cr_assert_not_null(c);
	cr_expect_null(fdtab_take(sp[0]), "a second take finds nothing");
	cr_expect_null(fdtab_get(sp[0]), "a pin after the take finds nothing");
	cr_expect_eq(refs(c), 1, "the table's reference went to the taker: %d", refs(c));
	conn_put(c);
}

/* ---- lifetimes ---------------------------------------------------------------------- */

Test(fdtab, a_mapping_holds_a_reference_and_a_pin_another)
{
	struct conn *c = new_conn(sp[0]), *p;

	cr_assert_eq(fdtab_set(sp[0], c), 0);
	cr_expect_eq(refs(c), 2, "creator + table: %d", refs(c));
	cr_expect(fdtab_maybe(sp[0]));
	cr_expect(fdtab_any());
	p = fdtab_get(sp[0]);
	cr_assert_eq(p, c);
	cr_expect_eq(refs(c), 3, "creator + table + pin: %d", refs(c));
	conn_put(p);
	conn_put(c); /* the table's reference is now the only one */
	cr_expect_eq(refs(c), 1);
	fdclose_release(sp[0]); /* frees it: ASan reports a leak or a use after free otherwise */
	cr_expect_not(fdtab_maybe(sp[0]));
}

Test(fdtab, a_pinned_conn_outlives_the_close_of_its_fd)
{
	struct conn *c = new_conn(sp[0]), *pin;

	cr_assert_eq(fdtab_set(sp[0], c), 0);
	conn_put(c);
	pin = fdtab_get(sp[0]);
	fdclose_release(sp[0]); /* another thread's close() while this one is in a call */
	cr_expect_not(fdtab_maybe(sp[0]));
	cr_expect_eq(refs(pin), 1, "only the pin is left: %d", refs(pin));
	cr_expect(pin->closed, "its last fd closed: the session is over");
	cr_expect_eq(conn_recv(pin, (char[1]){0}, 1, MSG_DONTWAIT), -EBADF,
		     "a call that raced the close sees the closed socket");
	conn_put(pin);
}

Test(fdtab, dup_maps_a_second_fd_and_the_last_close_ends_the_session)
{
	struct conn *c = new_conn(sp[0]);
	int d = dup(sp[0]);

	cr_assert_geq(d, 0);
	cr_assert_eq(fdtab_set(sp[0], c), 0);
	cr_assert_eq(conn_add_fd(c, d), 0);
	cr_assert_eq(fdtab_set(d, c), 0);
	cr_expect_eq(refs(c), 3, "creator + two mappings: %d", refs(c));
	cr_expect_eq(fdtab_get(d), c);
	conn_put(c); /* the pin just taken */

	fdclose_release(sp[0]);
	cr_expect_not(c->closed, "one fd of the socket is still open");
	cr_expect_eq(c->fd, d, "the session moved to the remaining fd");
	cr_expect_eq(refs(c), 2);
	cr_expect(fdtab_maybe(d));

	fdclose_release(d);
	cr_expect(c->closed, "the last fd closed");
	cr_expect_eq(refs(c), 1);
	conn_put(c);
	close(d);
}

Test(fdtab, set_over_a_mapping_drops_the_old_reference)
{
	struct conn *a = new_conn(sp[0]), *b = new_conn(sp[0]);

	cr_assert_eq(fdtab_set(sp[0], a), 0);
	cr_expect_eq(refs(a), 2);
	cr_assert_eq(fdtab_set(sp[0], b), 0);
	cr_expect_eq(refs(a), 1, "the replaced mapping's reference was dropped: %d", refs(a));
	cr_expect_eq(fdtab_get(sp[0]), b);
	conn_put(b);
	conn_put(a);
	conn_put(b);
	fdclose_release(sp[0]);
}

Test(fdtab, a_stale_entry_is_dropped_without_io_and_errno_is_kept)
{
	struct conn *c = new_conn(sp[0]), *pin;
	char b;

	cr_assert_eq(fdtab_set(sp[0], c), 0);
	conn_put(c);
	pin = fdtab_get(sp[0]);
	errno = EINTR;
	fdclose_stale(sp[0]); /* its number was handed out again by the kernel */
	cr_expect_eq(errno, EINTR, "errno kept across the drop");
	cr_expect_not(fdtab_maybe(sp[0]));
	cr_expect(pin->closed, "the session ended with its last fd");
	/* Nothing was written on the fd (close_notify would go into the new file). */
	cr_expect_eq(recv(sp[1], &b, 1, MSG_DONTWAIT), -1);
	cr_expect_eq(errno, EAGAIN);
	cr_expect_eq(refs(pin), 1);
	conn_put(pin);
}

Test(fdtab, disconnect_unmaps_every_fd_and_restores_blocking_mode)
{
	struct conn *c;
	int d = dup(sp[0]), err = 0;

	cr_assert_geq(d, 0);
	/* The program's socket is blocking: the conn makes it non-blocking underneath. */
	c = conn_new_server(sp[0], &rule, "test", NULL, 0, 0, &err);
	cr_assert_not_null(c);
	cr_expect(fcntl(sp[0], F_GETFL) & O_NONBLOCK, "non-blocking underneath");
	cr_assert_eq(fdtab_set(sp[0], c), 0);
	cr_assert_eq(conn_add_fd(c, d), 0);
	cr_assert_eq(fdtab_set(d, c), 0);

	fdclose_disconnect(c);
	cr_expect_not(fdtab_maybe(sp[0]));
	cr_expect_not(fdtab_maybe(d));
	cr_expect_not(fcntl(sp[0], F_GETFL) & O_NONBLOCK, "the program's blocking mode is back");
	cr_expect_eq(c->state, CONN_FAILED);
	cr_expect_eq(c->err, ECONNRESET, "a thread still inside sees a reset");
	cr_expect_eq(refs(c), 1, "only the creator's reference is left: %d", refs(c));
	conn_put(c);
	close(d);
}

Test(fdtab, disconnect_leaves_a_reused_number_alone)
{
	struct conn *c = new_conn(sp[0]), *other = new_conn(sp[1]);

	cr_assert_eq(fdtab_set(sp[0], c), 0);
	/* sp[0] was closed and its number reused by another wrapped socket meanwhile. */
	cr_assert_eq(fdtab_set(sp[0], other), 0);
	fdclose_disconnect(c);
	cr_expect_eq(fdtab_get(sp[0]), other, "the other conn's mapping is kept");
	conn_put(other);
	cr_expect_eq(refs(c), 1);
	conn_put(c);
	conn_put(other);
	fdclose_release(sp[0]);
}
