/*
 * test_clock.c - unit tests of shim/clock.h: the one wait budget (the
 * program's time-out, capped by the earliest handshake deadline) and its
 * rounding to poll()'s milliseconds.
 */
#include <criterion/criterion.h>

#include "clock.h"

#define MS 1000000

Test(clock, wait_left_is_the_earlier_of_time_out_and_handshake_deadline)
{
	static const struct {
		int64_t now, deadline;
		uint64_t hs;
		int64_t left;
	} cases[] = {
	    {1000, -1, 0, -1},       /* no time-out, no handshake: no limit */
	    {1000, 1500, 0, 500},    /* the time-out */
	    {1000, 900, 0, 0},       /* the time-out has passed: do not sleep */
	    {1000, -1, 1200, 200},   /* only a handshake deadline */
	    {1000, -1, 900, 0},      /* it has passed: wake at once to fail it */
	    {1000, 5000, 1200, 200}, /* the handshake deadline comes first */
	    {1000, 1100, 1200, 100}, /* the time-out comes first */
	    {1000, 900, 5000, 0},    /* a passed time-out wins over a later deadline */
	    {1000, 1000, 1000, 0},   /* both exactly now */
	    {1000, -1, 1, 0},        /* hs = 1 is a deadline, not "none" */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_expect_eq(
		    clock_wait_left(cases[i].now, cases[i].deadline, cases[i].hs), cases[i].left,
		    "now %lld, deadline %lld, hs %llu: %lld, expected %lld",
		    (long long)cases[i].now, (long long)cases[i].deadline,
		    (unsigned long long)cases[i].hs,
		    (long long)clock_wait_left(cases[i].now, cases[i].deadline, cases[i].hs),
		    (long long)cases[i].left);
}

Test(clock, wait_ms_rounds_up_so_a_wait_never_ends_early)
{
	cr_expect_eq(clock_wait_ms(-1), -1, "no limit: poll's -1");
	cr_expect_eq(clock_wait_ms(0), 0);
	cr_expect_eq(clock_wait_ms(1), 1, "1 ns is 1 ms, not a busy 0");
	cr_expect_eq(clock_wait_ms(MS), 1);
	cr_expect_eq(clock_wait_ms(MS + 1), 2);
	cr_expect_eq(clock_wait_ms(1500 * (int64_t)MS), 1500);
}

Test(clock, is_monotonic)
{
	int64_t a = clock_ns(), b = clock_ns();

	cr_expect_gt(a, 0);
	cr_expect_geq(b, a);
	cr_expect_geq(clock_ms(), a / MS);
}
