/*
 * epreg_int.h - the epoll registry's state, shared by epreg.c (registrations:
 * epoll_ctl, close, adoption, fork) and epreg_wait.c (epoll_wait). Not for
 * other modules: they use epreg.h.
 *
 * Everything here is guarded by the registry's lock (ep_lock_take /
 * ep_lock_give), which is never held across the kernel wait. Lock order:
 * registry, then conn->lock.
 */
#ifndef TLSSHIM_EPREG_INT_H
#define TLSSHIM_EPREG_INT_H

#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>

/*
 * The registry's tables are keyed by an fd or a pointer, and epoll_wait looks
 * one up for every kernel event: a multiplicative hash of the word instead of
 * uthash's default (Jenkins, about 60 instructions for 8 bytes). Every file
 * that uses the tables must hash alike, so this header brings uthash.h itself.
 */
#ifdef UTHASH_H
#error "epreg_int.h must come before uthash.h"
#endif
static inline unsigned ep_hash_word(const void *key, size_t len)
{
	uint64_t v = 0;

	memcpy(&v, key, len < sizeof(v) ? len : sizeof(v));
	return (unsigned)((v * 0x9e3779b97f4a7c15u) >> 32);
}
#define HASH_FUNCTION(keyptr, keylen, hashv)                                \
	do {                                                                \
		if ((keylen) <= sizeof(uint64_t))                           \
			(hashv) = ep_hash_word((keyptr), (size_t)(keylen)); \
		else                                                        \
			HASH_JEN((keyptr), (keylen), (hashv));              \
	} while (0)
#include <uthash.h>

struct conn;

struct epset;

struct reg {
	int fd;
	struct epset *set;
	struct conn *c;     /* NULL: not wrapped; the kernel has the program's data */
	uint32_t uev;       /* the program's events and flags */
	epoll_data_t udata; /* the program's data */
	uint32_t kev;       /* events registered with the kernel (wrapped) */
	unsigned in_kernel : 1;
	unsigned armed : 1; /* EPOLLONESHOT: 0 once reported, until EPOLL_CTL_MOD */
	unsigned queued : 1;
	unsigned timed : 1;  /* on the set's list of pending handshakes */
	unsigned dead : 1;   /* freed while a waiter may hold it: in the graveyard */
	unsigned orphan : 1; /* its fd was closed, a dup keeps the socket: not in by_fd */
	uint32_t syn;        /* readiness found without the kernel, to report this call */
	/* EPOLLET: what was last reported, and the EAGAIN counts then. */
	uint32_t et_told;
	unsigned et_rd, et_wr;
	struct reg *self; /* key of by_ptr */
	struct reg *next_dirty;
	struct reg *next_syn;
	struct reg *next_timed;
	struct reg *next_of_conn;
	struct reg *next_dead;
	UT_hash_handle hh; /* by_fd */
	UT_hash_handle hp; /* by_ptr */
};

struct epset {
	int epfd;
	struct reg *by_fd;
	struct reg *by_ptr;
	struct reg *dirty;
	struct reg *timed; /* registrations whose handshake has a deadline */
	int nwrapped;
	/*
	 * Threads inside epoll_wait on this set. While there are any, freed
	 * registrations (and the set itself, if its fd is closed) are kept: a
	 * waiter may hold them in its list or in kernel events it has not
	 * translated yet. The last waiter out frees them.
	 */
	int waiters;
	int closed;
	struct reg *graveyard;
	struct epset *next;
};

#define USER_EVENTS (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLRDNORM | EPOLLWRNORM)
#define KERN_FLAGS  (EPOLLET | EPOLLRDHUP | EPOLLPRI)

/* Takes the registry's lock; giving it back first drops the stale fds queued meanwhile. */
void ep_lock_take(void);
void ep_lock_give(void);

/* The set of epoll fd EPFD, or NULL. */
struct epset *ep_set_find(int epfd);

/* Puts wrapped R on its set's dirty list (looked at in the next wait). */
void ep_queue(struct reg *r);

/*
 * Brings the kernel's registration of wrapped R in line with KEV (removed
 * while a reported EPOLLONESHOT registration is disarmed). Returns 0 or -errno.
 */
int ep_sync_kernel(struct reg *r, uint32_t kev);

/* Queues every registration of C, in every set. */
void ep_touch_locked(struct conn *c);

#endif
