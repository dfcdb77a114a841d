/*
 * real.c - resolve the real libc functions behind the hooks, once.
 *
 * dlsym() may itself call functions we hook (it allocates, and on some
 * systems reads files), so resolution must tolerate re-entry: a thread that
 * re-enters while resolving sees a NULL entry and the hooks fall back to raw
 * system calls for the few calls that can happen that early (real_raw_*).
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "real.h"

struct real_fns real;

static atomic_int real_state; /* 0 unresolved, 1 resolving, 2 done */
static __thread int real_resolving;

/* Where our own code lives, to detect a symbol that resolves back to us. */
static void *self_base(void)
{
	Dl_info info;

	if (dladdr((void *)self_base, &info) == 0)
		return NULL;
	return info.dli_fbase;
}

static void die(const char *what, const char *name)
{
	char msg[256];
	int n =
	    snprintf(msg, sizeof(msg), "tlsshim[%d]: error: %s: %s\n", (int)getpid(), what, name);

	if (n > 0)
		syscall(SYS_write, 2, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
	abort();
}

static void *resolve(const char *name, int required, void *self)
{
	void *p = dlsym(RTLD_NEXT, name);
	Dl_info info;

	if (p == NULL) {
		if (required)
			die("cannot find the real libc function", name);
		return NULL;
	}
	/* A real symbol that is our own hook would recurse forever. */
	if (self != NULL && dladdr(p, &info) != 0 && info.dli_fbase == self)
		die("libc function resolves back to tlsshim itself", name);
	return p;
}

void real_init(void)
{
	int expected = 0;
	void *self;

	if (atomic_load_explicit(&real_state, memory_order_acquire) == 2 || real_resolving)
		return;
	if (!atomic_compare_exchange_strong(&real_state, &expected, 1)) {
		/* Another thread resolves; wait for it (microseconds, once). */
		while (atomic_load_explicit(&real_state, memory_order_acquire) != 2)
			sched_yield();
		return;
	}
	real_resolving = 1;
	self = self_base();
#define REAL_REQ(name, ret, args) real.name = (ret(*) args)resolve(#name, 1, self);
#define REAL_OPT(name, ret, args) real.name = (ret(*) args)resolve(#name, 0, self);
	REAL_FUNCS(REAL_REQ, REAL_OPT)
#undef REAL_REQ
#undef REAL_OPT
	real_resolving = 0;
	atomic_store_explicit(&real_state, 2, memory_order_release);
}

int real_ready(void)
{
	return atomic_load_explicit(&real_state, memory_order_acquire) == 2;
}
