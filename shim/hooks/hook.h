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

/* Resolve the real table if a hook runs before the constructor (another library's). */
#define NEED_REAL(name)                          \
	do {                                     \
		if (unlikely(real.name == NULL)) \
			real_init();             \
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
