/*
 * sigpipe.c - whether SIGPIPE is ignored, cached (see sigpipe.h).
 *
 * One word: a generation (bumped by every change) and the state. An answer
 * from the kernel is stored only if no change began meanwhile, so a stale
 * one never outlives the change that made it stale. A disposition changed by
 * an inline system call (no libc, no syscall()) is not seen: the cache then
 * stays as it was (a known limit, as for other inline system calls).
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>

#include "real.h"
#include "sigpipe.h"

enum { SP_UNKNOWN = 0, SP_IGNORED = 1, SP_OTHER = 2, SP_MASK = 3, SP_GEN = 4 };

static atomic_uint sp_word; /* generation * SP_GEN + state */

int sigpipe_ignored(void)
{
	unsigned w = atomic_load_explicit(&sp_word, memory_order_acquire), v;
	struct sigaction sa;
	int saved = errno;

	if ((w & SP_MASK) != SP_UNKNOWN)
		return (w & SP_MASK) == SP_IGNORED;
	if (real.sigaction == NULL || real.sigaction(SIGPIPE, NULL, &sa) != 0) {
		errno = saved;
		return 0;
	}
	v = sa.sa_handler == SIG_IGN ? SP_IGNORED : SP_OTHER;
	atomic_compare_exchange_strong(&sp_word, &w, (w & ~(unsigned)SP_MASK) | v);
	return v == SP_IGNORED;
}

void sigpipe_forget(void)
{
	unsigned w = atomic_load_explicit(&sp_word, memory_order_relaxed);

	while (!atomic_compare_exchange_weak(&sp_word, &w,
					     ((w & ~(unsigned)SP_MASK) + SP_GEN) | SP_UNKNOWN))
		;
}
