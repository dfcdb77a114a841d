/*
 * clock.h - the shim's one clock: CLOCK_MONOTONIC, for waits, deadlines and
 * cache ages (never the wall clock, which the administrator may set back).
 * Header-only: the preload library and the TLS engine both use it.
 */
#ifndef TLSSHIM_CLOCK_H
#define TLSSHIM_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Now, in ns since an arbitrary start (boot); signed, so differences may go below zero. */
static inline int64_t clock_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Now, in ms, on the same clock. */
static inline int64_t clock_ms(void)
{
	return clock_ns() / 1000000;
}

/*
 * The one wait budget: how long a wait may sleep at NOW, in ns. Until
 * DEADLINE (the program's time-out; < 0: none), and no later than HS (the
 * earliest handshake deadline among the connections waited on, as
 * conn_deadline() gives it; 0: none), so that the next round fails a silent
 * peer or completes a connect even when nothing else happens. Returns -1 for
 * no limit, else the ns left (0 once either has passed).
 */
static inline int64_t clock_wait_left(int64_t now, int64_t deadline, uint64_t hs)
{
	int64_t left = -1;

	if (deadline >= 0)
		left = deadline > now ? deadline - now : 0;
	if (hs != 0) {
		int64_t h = (int64_t)hs > now ? (int64_t)hs - now : 0;

		if (left < 0 || h < left)
			left = h;
	}
	return left;
}

/* A budget of clock_wait_left() as poll()'s time-out: ms rounded up, -1 for none. */
static inline int clock_wait_ms(int64_t left)
{
	return left < 0 ? -1 : (int)((left + 999999) / 1000000);
}

#endif
