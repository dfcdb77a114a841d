/*
 * hook.h - what every hook file needs: the export attribute, the lazy real
 * table, and the one place errno is set from an internal -errno result.
 */
#ifndef TLSSHIM_HOOK_H
#define TLSSHIM_HOOK_H

#include <errno.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "conn.h"
#include "epreg.h"
#include "fdnew.h"
#include "fdtab.h"
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

/*
 * The same code under a second exported name: glibc exports aliases (__write,
 * __close, ...) a program can link against. HOOK_INTERNAL gives syscall()
 * (hooks/syscall.c) a hidden name for a hook, hook_NAME, to reach it directly.
 */
#define HOOK_ALIAS(name, other)        \
	extern __typeof__(name)(other) \
	    __attribute__((alias(#name), copy(name), visibility("default")));
#define HOOK_INTERNAL(name)                 \
	extern __typeof__(name) hook_##name \
	    __attribute__((alias(#name), copy(name), visibility("hidden")));

#endif
