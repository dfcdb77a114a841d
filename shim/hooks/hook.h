/*
 * hook.h - what every hook file needs: the export attribute, the lazy real
 * table, and the one place errno is set from an internal -errno result.
 */
#ifndef TLSSHIM_HOOK_H
#define TLSSHIM_HOOK_H

#include <errno.h>
#include <sys/types.h>

#include "real.h"

#define HOOK __attribute__((visibility("default")))

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* Resolves real.NAME on its first use (a process that wraps nothing resolves little). */
#define NEED_REAL(name)                                                              \
	do {                                                                         \
		if (unlikely(__atomic_load_n(&real.name, __ATOMIC_ACQUIRE) == NULL)) \
			real_resolve((void **)&real.name, #name, 1);                 \
	} while (0)

/* As NEED_REAL for a symbol an older libc may lack: real.NAME may stay NULL. */
#define NEED_REAL_OPT(name)                                                          \
	do {                                                                         \
		if (unlikely(__atomic_load_n(&real.name, __ATOMIC_ACQUIRE) == NULL)) \
			real_resolve((void **)&real.name, #name, 0);                 \
	} while (0)

/* Internal results are a count or -errno; hooks return -1 and set errno once. */
static inline ssize_t hook_ret(ssize_t r)
{
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	return r;
}

#endif
