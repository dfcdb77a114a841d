/*
 * test_errmap.c - unit tests of shim/errmap.h: the contract's errno for each
 * outcome (interface.md, "What the program sees") and for each engine result.
 */
#include <criterion/criterion.h>
#include <errno.h>

#include "errmap.h"

Test(errmap, outcomes_get_the_contracts_errno)
{
	static const struct {
		enum outcome o;
		int err;
	} cases[] = {
	    {OUTCOME_DENIED, EACCES},
	    {OUTCOME_REFUSED, ECONNREFUSED},
	    {OUTCOME_RESET, ECONNRESET},
	    {OUTCOME_HUNGUP, EPIPE},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_expect_eq(outcome_errno(cases[i].o), cases[i].err, "outcome %d: %d, expected %d",
			     cases[i].o, outcome_errno(cases[i].o), cases[i].err);
	cr_expect_eq(outcome_errno((enum outcome)99), EIO, "an unknown outcome is never 0");
}

Test(errmap, engine_results_get_an_errno_and_never_zero)
{
	static const struct {
		int rc, sys, err;
	} cases[] = {
	    {TS_SYSERR, 0, EIO}, /* the engine kept no errno: never a success */
	    {TS_SYSERR, ECONNRESET, ECONNRESET},
	    {TS_SYSERR, EPIPE, EPIPE},
	    {TS_SYSERR, ETIMEDOUT, ETIMEDOUT},
	    {TS_FATAL, 0, ECONNRESET},
	    {TS_CLOSED, 0, EPIPE},
	    {TS_EOF, 0, EPIPE},
	    {TS_WANT_READ, 0, EAGAIN},
	    {TS_WANT_WRITE, 0, EAGAIN},
	    {-99, 0, EIO},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_expect_eq(engine_errno(cases[i].rc, cases[i].sys), cases[i].err,
			     "engine result %d (errno %d): %d, expected %d", cases[i].rc,
			     cases[i].sys, engine_errno(cases[i].rc, cases[i].sys), cases[i].err);
}
