/*
 * fdtab.h - per-fd state: which fds are wrapped connections.
 *
 * An array indexed by fd, in lazily allocated chunks, of pointers to struct
 * conn. A call on an fd the shim does not wrap costs two atomic loads and no
 * lock. Pointers found are pinned with fdtab_get() under a striped lock, so a
 * concurrent fdtab_take() (close: fdclose.h) cannot free a conn between the
 * load and the pin. Design: shim/DESIGN.md.
 */
#ifndef TLSSHIM_FDTAB_H
#define TLSSHIM_FDTAB_H

#include <stdatomic.h>
#include <stddef.h>

struct conn;

#define FDTAB_CHUNK_BITS 10
#define FDTAB_CHUNK      (1u << FDTAB_CHUNK_BITS)
#define FDTAB_CHUNKS     1024u /* fds below 1,048,576 (Linux's default nr_open) */

extern _Atomic(struct conn *) *_Atomic fdtab_chunks[FDTAB_CHUNKS];
extern atomic_int fdtab_used; /* set once any fd has been mapped; never cleared */

/* Whether this process has ever wrapped an fd (gates work no other process needs). */
static inline int fdtab_any(void)
{
	return atomic_load_explicit(&fdtab_used, memory_order_relaxed);
}

/* Whether FD may be wrapped: the lock-free fast path every hook takes first. */
static inline int fdtab_maybe(int fd)
{
	_Atomic(struct conn *) *chunk;

	if ((unsigned)fd >= FDTAB_CHUNK * FDTAB_CHUNKS)
		return 0;
	chunk = atomic_load_explicit(&fdtab_chunks[(unsigned)fd >> FDTAB_CHUNK_BITS],
				     memory_order_acquire);
	if (chunk == NULL)
		return 0;
	return atomic_load_explicit(&chunk[(unsigned)fd & (FDTAB_CHUNK - 1)],
				    memory_order_relaxed) != NULL;
}

/*
 * Returns the conn of FD with a reference taken (release with conn_put()),
 * or NULL if FD is not wrapped.
 */
struct conn *fdtab_get(int fd);

/* Maps FD to C (taking a reference for the table). Returns 0 or -ENOMEM / -EBADF. */
int fdtab_set(int fd, struct conn *c) __attribute__((warn_unused_result));

/*
 * Unmaps FD and returns its conn with the table's reference transferred to
 * the caller, or NULL if FD was not wrapped.
 */
struct conn *fdtab_take(int fd);

/* Calls FN for every wrapped fd (fork handlers). Not concurrent with set/take. */
void fdtab_foreach(void (*fn)(int fd, struct conn *c, void *arg), void *arg);

/* fork() handlers: the table's structure is held still; the child gets fresh locks. */
void fdtab_fork_prepare(void);
void fdtab_fork_parent(void);
void fdtab_fork_child(void);

#endif
