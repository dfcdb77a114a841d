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
#include "fdclose.h"
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
 * FD was just handed out by the kernel (open, socket, accept, pipe, dup, ...):
 * an entry under its number is stale, left by a close the shim never saw (a
 * raw system call, a library that was not preloaded). One probe when the
 * number is not in the table and no epoll registration is remembered.
 */
static inline void fd_new(int fd)
{
	if (unlikely(fd >= 0 && (fdtab_maybe(fd) || epreg_active())))
		fdclose_stale(fd);
}

/*
 * The same code under a second exported name: glibc exports aliases (__write,
 * __close, ...) a program can link against. HOOK_INTERNAL gives syscall()
 * (hooks/syscall.c) a hidden name for a hook, hook_NAME, to reach it directly.
 */
#define HOOK_ALIAS(name, other)       \
	extern __typeof__(name) other \
	    __attribute__((alias(#name), copy(name), visibility("default")));
#define HOOK_INTERNAL(name)                 \
	extern __typeof__(name) hook_##name \
	    __attribute__((alias(#name), copy(name), visibility("hidden")));

/*
 * The policy decision for connecting FD to SA (connect(), and the implicit
 * connect of sendto/sendmsg/sendmmsg with MSG_FASTOPEN). Returns 1 when the
 * connection is not the shim's to decide (not TCP, an address the kernel
 * rejects, no rule, a plain rule): the caller hands the call to libc.
 * Otherwise it is done as the rule says: 0 (connected, and for tls the
 * handshake done), -EINPROGRESS, -EACCES (deny), -ECONNREFUSED (several
 * names for the address and the rule would have to guess one), or -errno.
 * (hooks/connect.c)
 */
int connect_decide(int fd, const struct sockaddr *sa, socklen_t len);

/*
 * For a connect on FD that may already be wrapped: *DECIDE is set to 1 when
 * FD is not and the connection is to be decided; else it is 0 and the
 * result (-EALREADY, -EISCONN, 0 the first time after a non-blocking connect
 * completed, or the failure) is returned. A TCP failure is returned once,
 * as Linux does, and unwraps FD: the next connect is decided afresh.
 * (hooks/connect.c)
 */
int connect_again(int fd, int *decide);

#endif
