/*
 * real.c - resolve the real libc functions behind the hooks, once.
 *
 * Lazily, one symbol at a time: a process that wraps nothing (every child of
 * a wrapped shell inherits LD_PRELOAD) resolves only what its hooks pass
 * through, not 50 symbols at start-up (about 46,000 instructions, more than
 * a small program's whole start). Code that does wrapped work resolves the
 * whole table first (real_init()).
 *
 * dlsym() may itself call functions we hook (it allocates, and on some
 * systems reads files), so resolution tolerates re-entry: a thread that
 * re-enters while resolving sees a NULL entry, and the hooks that can run
 * that early (read, write, close) fall back to raw system calls.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "real.h"
#include "shim.h"

struct real_fns real;

/* 2 once every entry has been resolved. In .data (SHIM_LOAD_DATA): the constructor reads it. */
static atomic_int real_state SHIM_LOAD_DATA;
static __thread int real_resolving;

/*
 * Where our own code lives, to detect a symbol that resolves back to us.
 * One walk of the loaded objects at start-up; then each check is a range
 * comparison (dladdr() per symbol costs about 7 us each: 50 of them were
 * most of a small program's start-up).
 */
struct range {
	uintptr_t lo, hi;
};

static int find_self(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct range *r = arg;
	uintptr_t self = (uintptr_t)find_self, lo = UINTPTR_MAX, hi = 0;

	(void)size;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];

		if (ph->p_type != PT_LOAD)
			continue;
		if (info->dlpi_addr + ph->p_vaddr < lo)
			lo = info->dlpi_addr + ph->p_vaddr;
		if (info->dlpi_addr + ph->p_vaddr + ph->p_memsz > hi)
			hi = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
	}
	if (self < lo || self >= hi)
		return 0;
	r->lo = lo;
	r->hi = hi;
	return 1;
}

/*
 * A system call without libc's syscall(), which the shim interposes (hooks/
 * syscall.c): the fallback of hooks that run inside dlsym(), before their
 * real function is known, must not come back into the shim.
 */
#if defined(__x86_64__)
long real_sys(long nr, long a, long b, long c, long d)
{
	register long r10 __asm__("r10") = d;
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10)
			 : "rcx", "r11", "memory");
	if (ret < 0 && ret > -4096) {
		errno = (int)-ret;
		return -1;
	}
	return ret;
}
#elif defined(__aarch64__)
long real_sys(long nr, long a, long b, long c, long d)
{
	register long x8 __asm__("x8") = nr;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;

	__asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
	if (x0 < 0 && x0 > -4096) {
		errno = (int)-x0;
		return -1;
	}
	return x0;
}
#else
long real_sys(long nr, long a, long b, long c, long d)
{
	(void)nr, (void)a, (void)b, (void)c, (void)d;
	errno = ENOSYS;
	return -1;
}
#endif

static void die(const char *what, const char *name)
{
	char msg[256];
	int n =
	    snprintf(msg, sizeof(msg), "tlsshim[%d]: error: %s: %s\n", (int)getpid(), what, name);

	if (n > 0)
		real_sys(SYS_write, 2, (long)msg,
			 (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1, 0);
	abort();
}

static void *resolve(const char *name, int required, const struct range *self)
{
	void *p = dlsym(RTLD_NEXT, name);

	if (p == NULL) {
		if (required)
			die("cannot find the real libc function", name);
		return NULL;
	}
	/* A real symbol that is our own hook would recurse forever. */
	if ((uintptr_t)p >= self->lo && (uintptr_t)p < self->hi)
		die("libc function resolves back to tlsshim itself", name);
	return p;
}

static struct range self_range;
static atomic_int self_state; /* 0 unknown, 1 finding, 2 known */

/* Our own load range, found once (concurrent first callers wait microseconds). */
static const struct range *self(void)
{
	int expected = 0;

	if (atomic_load_explicit(&self_state, memory_order_acquire) == 2)
		return &self_range;
	if (atomic_compare_exchange_strong(&self_state, &expected, 1)) {
		struct range r = {0, 0};

		dl_iterate_phdr(find_self, &r);
		self_range = r;
		atomic_store_explicit(&self_state, 2, memory_order_release);
		return &self_range;
	}
	while (atomic_load_explicit(&self_state, memory_order_acquire) != 2)
		sched_yield();
	return &self_range;
}

void real_resolve(void **slot, const char *name, int required)
{
	void *p, *expected = NULL;

	if (__atomic_load_n(slot, __ATOMIC_ACQUIRE) != NULL || real_resolving)
		return;
	/* dlsym() may re-enter a hook: it then sees NULL and falls back (hooks). */
	real_resolving = 1;
	p = resolve(name, required, self());
	real_resolving = 0;
	/* Each slot is written once: later readers never race with a second store. */
	__atomic_compare_exchange_n(slot, &expected, p, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

int real_ready(void)
{
	return atomic_load_explicit(&real_state, memory_order_acquire) == 2;
}

void real_init(void)
{
	if (atomic_load_explicit(&real_state, memory_order_acquire) == 2)
		return;
#define REAL_REQ(name, ret, args) real_resolve((void **)&real.name, #name, 1);
#define REAL_OPT(name, ret, args) real_resolve((void **)&real.name, #name, 0);
	REAL_FUNCS(REAL_REQ, REAL_OPT)
#undef REAL_REQ
#undef REAL_OPT
	atomic_store_explicit(&real_state, 2, memory_order_release);
	if (shim.wrap_start != NULL)
		shim.wrap_start();
}

int real_open(const char *path, int flags, unsigned mode)
{
	return (int)real_sys(SYS_openat, AT_FDCWD, (long)path, flags, (long)mode);
}
