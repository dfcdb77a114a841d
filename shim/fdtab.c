/*
 * fdtab.c - the fd -> conn table (see fdtab.h and shim/DESIGN.md).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "conn.h"
#include "fdtab.h"

_Atomic(struct conn *) *_Atomic fdtab_chunks[FDTAB_CHUNKS];
atomic_int fdtab_used;

#define STRIPES 64u
static pthread_mutex_t stripes[STRIPES] = {[0 ... STRIPES - 1] = PTHREAD_MUTEX_INITIALIZER};
static pthread_mutex_t grow_lock = PTHREAD_MUTEX_INITIALIZER;

static _Atomic(struct conn *) *slot(int fd, int create)
{
	unsigned ci = (unsigned)fd >> FDTAB_CHUNK_BITS;
	_Atomic(struct conn *) *chunk;

	if (fd < 0 || ci >= FDTAB_CHUNKS)
		return NULL;
	chunk = atomic_load_explicit(&fdtab_chunks[ci], memory_order_acquire);
	if (chunk == NULL && create) {
		pthread_mutex_lock(&grow_lock);
		chunk = atomic_load_explicit(&fdtab_chunks[ci], memory_order_acquire);
		if (chunk == NULL) {
			chunk = calloc(FDTAB_CHUNK, sizeof(*chunk));
			if (chunk != NULL) {
				atomic_store_explicit(&fdtab_used, 1, memory_order_relaxed);
				atomic_store_explicit(&fdtab_chunks[ci], chunk,
						      memory_order_release);
			}
		}
		pthread_mutex_unlock(&grow_lock);
	}
	if (chunk == NULL)
		return NULL;
	return &chunk[(unsigned)fd & (FDTAB_CHUNK - 1)];
}

/* FD's slot in a chunk fdtab_maybe() found (chunks are never freed): every hook's path. */
static inline _Atomic(struct conn *) *slot_found(int fd)
{
	return &atomic_load_explicit(&fdtab_chunks[(unsigned)fd >> FDTAB_CHUNK_BITS],
				     memory_order_acquire)[(unsigned)fd & (FDTAB_CHUNK - 1)];
}

struct conn *fdtab_get(int fd)
{
	_Atomic(struct conn *) *s;
	struct conn *c;

	if (!fdtab_maybe(fd))
		return NULL;
	s = slot_found(fd);
	pthread_mutex_lock(&stripes[(unsigned)fd % STRIPES]);
	c = atomic_load_explicit(s, memory_order_acquire);
	if (c != NULL)
		conn_ref(c);
	pthread_mutex_unlock(&stripes[(unsigned)fd % STRIPES]);
	return c;
}

int fdtab_set(int fd, struct conn *c)
{
	_Atomic(struct conn *) *s = slot(fd, 1);
	struct conn *old;

	if (s == NULL)
		return fd < 0 ? -EBADF : -ENOMEM;
	conn_ref(c);
	pthread_mutex_lock(&stripes[(unsigned)fd % STRIPES]);
	old = atomic_exchange_explicit(s, c, memory_order_acq_rel);
	pthread_mutex_unlock(&stripes[(unsigned)fd % STRIPES]);
	/* Callers remove stale mappings first; never leak one if they did not. */
	if (old != NULL)
		conn_put(old);
	return 0;
}

struct conn *fdtab_take(int fd)
{
	_Atomic(struct conn *) *s;
	struct conn *c;

	if (!fdtab_maybe(fd))
		return NULL;
	s = slot_found(fd);
	pthread_mutex_lock(&stripes[(unsigned)fd % STRIPES]);
	c = atomic_exchange_explicit(s, NULL, memory_order_acq_rel);
	pthread_mutex_unlock(&stripes[(unsigned)fd % STRIPES]);
	return c;
}

void fdtab_foreach(void (*fn)(int fd, struct conn *c, void *arg), void *arg)
{
	for (unsigned ci = 0; ci < FDTAB_CHUNKS; ci++) {
		_Atomic(struct conn *) *chunk = atomic_load(&fdtab_chunks[ci]);

		if (chunk == NULL)
			continue;
		for (unsigned i = 0; i < FDTAB_CHUNK; i++) {
			struct conn *c = atomic_load(&chunk[i]);

			if (c != NULL)
				fn((int)(ci * FDTAB_CHUNK + i), c, arg);
		}
	}
}

void fdtab_fork_prepare(void)
{
	pthread_mutex_lock(&grow_lock);
}

void fdtab_fork_parent(void)
{
	pthread_mutex_unlock(&grow_lock);
}

void fdtab_fork_child(void)
{
	/* Stripe sections are a load and an increment: fresh locks are consistent. */
	for (unsigned i = 0; i < STRIPES; i++)
		pthread_mutex_init(&stripes[i], NULL);
	pthread_mutex_init(&grow_lock, NULL);
}
