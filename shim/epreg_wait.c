/*
 * epreg_wait.c - epoll_wait over a set with wrapped fds (see epreg.h): the
 * dirty registrations are looked at without the kernel, the kernel's events
 * are translated back into the program's, and level, edge and one-shot
 * registrations are reported as the kernel would report them.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "clock.h"
#include "conn.h"
#include "epreg.h"
#include "epreg_int.h"
#include "real.h"

/* Watches R's handshake deadline, so that a silent peer is cut off on time. */
static void watch_deadline(struct reg *r)
{
	if (r->timed || r->c == NULL || conn_deadline(r->c) == 0)
		return;
	r->timed = 1;
	r->next_timed = r->set->timed;
	r->set->timed = r;
}

/*
 * The earliest pending handshake deadline of S (0 if none); queues the ones
 * already past so that the next drain fails them. Under ep_lock.
 */
static uint64_t due_deadlines(struct epset *s, uint64_t now)
{
	uint64_t first = 0;

	for (struct reg **pp = &s->timed; *pp != NULL;) {
		struct reg *r = *pp;
		uint64_t d = conn_deadline(r->c);

		if (d == 0) {
			*pp = r->next_timed;
			r->timed = 0;
			continue;
		}
		if (d <= now)
			ep_queue(r);
		else if (first == 0 || d < first)
			first = d;
		pp = &r->next_timed;
	}
	return first;
}

/* A waiter leaves S: the last one frees what died meanwhile. Under ep_lock. */
static void set_leave(struct epset *s)
{
	if (--s->waiters > 0)
		return;
	while (s->graveyard != NULL) {
		struct reg *r = s->graveyard;

		s->graveyard = r->next_dead;
		HASH_DELETE(hp, s->by_ptr, r);
		free(r);
	}
	if (s->closed)
		free(s);
}

/*
 * Edge-triggered: readiness found in our buffers (not a kernel edge) is new
 * only if the program has run into EAGAIN since it was last told, as it must
 * before waiting again. Returns READY without what would be a repeat.
 */
static uint32_t et_filter(struct reg *r, uint32_t ready)
{
	unsigned rd, wr;

	if (!(r->uev & EPOLLET))
		return ready;
	rd = atomic_load_explicit(&r->c->rd_eagain, memory_order_relaxed);
	wr = atomic_load_explicit(&r->c->wr_eagain, memory_order_relaxed);
	if ((r->et_told & EPOLLIN) && rd == r->et_rd)
		ready &= ~(uint32_t)(EPOLLIN | EPOLLRDNORM | EPOLLRDHUP);
	if ((r->et_told & EPOLLOUT) && wr == r->et_wr)
		ready &= ~(uint32_t)(EPOLLOUT | EPOLLWRNORM);
	if (r->et_told & (EPOLLERR | EPOLLHUP))
		ready &= ~(uint32_t)(EPOLLERR | EPOLLHUP);
	return ready;
}

/* After R was reported to the program with EVENTS. */
static void reported(struct reg *r, uint32_t events)
{
	if (r->uev & EPOLLET) {
		r->et_told = events;
		r->et_rd = atomic_load_explicit(&r->c->rd_eagain, memory_order_relaxed);
		r->et_wr = atomic_load_explicit(&r->c->wr_eagain, memory_order_relaxed);
	}
	if (r->uev & EPOLLONESHOT) {
		r->armed = 0;
		(void)ep_sync_kernel(r, 0); /* disarming cannot fail */
		return;
	}
	/* Level-triggered: still ready next time if the program leaves data. */
	if (!(r->uev & EPOLLET))
		ep_queue(r);
}

/*
 * Examines the dirty registrations of S: brings their kernel entries up to
 * date and collects those ready without the kernel (R->syn) on *SYN. Returns
 * how many. Under ep_lock.
 */
static int drain_dirty(struct epset *s, struct reg **syn)
{
	struct reg *list = s->dirty;
	int n = 0;

	s->dirty = NULL;
	*syn = NULL;
	while (list != NULL) {
		struct reg *r = list;
		short kev = 0;
		uint32_t ready;

		list = r->next_dirty;
		r->queued = 0;
		atomic_store_explicit(&r->c->ep_queued, 0, memory_order_relaxed);
		if (!r->armed)
			continue;
		ready = (uint16_t)conn_poll_prepare(r->c, (short)(r->uev & USER_EVENTS), &kev);
		/* A MOD makes the kernel look at the socket again: a new edge for what it holds. */
		if (atomic_exchange_explicit(&r->c->et_rearm, 0, memory_order_relaxed))
			r->kev = 0;
		/* On failure r->kev keeps the old mask: the next pass tries again. */
		(void)ep_sync_kernel(r, (uint16_t)kev);
		watch_deadline(r);
		ready = et_filter(r, ready);
		if (ready == 0)
			continue;
		r->syn = ready;
		r->next_syn = *syn;
		*syn = r;
		n++;
	}
	return n;
}

/*
 * How long the kernel wait of this round may be, ns (-1: forever): 0 when
 * NSYN registrations are ready already; else until DEADLINE (-1: none),
 * capped by S's earliest handshake deadline (queuing the ones past) and, while
 * this process has handshakes with its own listeners, CONN_OWN_RECHECK_NS.
 * Under ep_lock.
 */
static int64_t wait_left(struct epset *s, int64_t deadline, int nsyn)
{
	int64_t now = clock_ns();
	uint64_t hs = due_deadlines(s, (uint64_t)now);

	if (s->dirty != NULL && nsyn == 0)
		hs = (uint64_t)now; /* a deadline passed: fail it in the next round */
	return nsyn > 0 ? 0 : clock_wait_left(now, deadline, hs);
}

/*
 * Translates the kernel's events EV[0..K) of set S in place: an unwrapped
 * fd's pass as they are; a wrapped one's become the program's events (TLS
 * work done, what was found without the kernel added) or nothing. Returns
 * how many are left. Under ep_lock.
 */
static int from_kernel(struct epset *s, struct epoll_event *ev, int k)
{
	int out = 0;

	for (int i = 0; i < k; i++) {
		struct reg *r = NULL;
		struct reg *key = ev[i].data.ptr;
		uint32_t rev;

		HASH_FIND(hp, s->by_ptr, &key, sizeof(key), r);
		if (r == NULL) {
			ev[out++] = ev[i]; /* an unwrapped fd: the program's own data */
			continue;
		}
		if (r->dead || !r->armed)
			continue;
		rev = (uint16_t)conn_poll_result(r->c, (short)(r->uev & USER_EVENTS),
						 (short)ev[i].events);
		/* What we found ourselves joins the kernel's event for the same fd. */
		rev |= r->syn;
		r->syn = 0;
		/*
		 * TLS may have moved on (handshake, flush) and data may have moved
		 * from the kernel into OpenSSL, where other sets' kernel entries
		 * cannot see it: look at all of this conn's registrations again.
		 */
		ep_touch_locked(r->c);
		watch_deadline(r);
		if (rev == 0)
			continue;
		ev[out].events = rev;
		ev[out].data = r->udata;
		out++;
		reported(r, rev);
	}
	return out;
}

/*
 * Adds the registrations on SYN (ready without the kernel, not yet reported
 * with a kernel event) to EV after its first OUT entries, up to MAX; the
 * rest wait for the next call. Returns the new count. Under ep_lock.
 */
static int from_syn(struct reg *syn, struct epoll_event *ev, int out, int max)
{
	for (struct reg *r = syn; r != NULL; r = r->next_syn) {
		if (r->dead || r->syn == 0 || !r->armed)
			continue;
		if (out == max) {
			r->syn = 0;
			ep_queue(r); /* no room: next call */
			continue;
		}
		ev[out].events = r->syn;
		ev[out].data = r->udata;
		out++;
		reported(r, r->syn);
		r->syn = 0;
	}
	return out;
}

/* Leaves the wait on S with RC. Takes ep_lock if TAKE, gives it back. */
static int wait_end(struct epset *s, int rc, int take)
{
	if (take)
		ep_lock_take();
	set_leave(s);
	ep_lock_give();
	return rc;
}

int epreg_wait(int epfd, struct epoll_event *ev, int max, int64_t timeout_ns, const sigset_t *mask,
	       int *handled)
{
	int64_t deadline = timeout_ns < 0 ? -1 : clock_ns() + timeout_ns;
	struct epset *s;

	*handled = 0;
	if (max <= 0)
		return -EINVAL;
	ep_lock_take();
	s = ep_set_find(epfd);
	if (s == NULL || s->nwrapped == 0) {
		ep_lock_give();
		return 0;
	}
	*handled = 1;
	s->waiters++;
	for (;;) {
		struct reg *syn;
		int nsyn = drain_dirty(s, &syn), k, out, room;
		int64_t left = wait_left(s, deadline, nsyn);

		ep_lock_give();
		/* This process's handshakes with its own listeners move on (conn.h). */
		if (conn_own_poke() > 0 && (left < 0 || left > CONN_OWN_RECHECK_NS))
			left = CONN_OWN_RECHECK_NS;
		/* Ready ones we found take places first; the kernel fills the rest. */
		room = max - (nsyn < max ? nsyn : max - 1);
		k = real.epoll_pwait(epfd, ev, room,
				     left >= 0 ? (int)((left + 999999) / 1000000) : -1, mask);
		if (k < 0 && nsyn == 0)
			return wait_end(s, -errno, 1);
		ep_lock_take();
		/* Its fd was closed meanwhile: nothing it returned is meaningful. */
		if (s->closed)
			return wait_end(s, 0, 0);
		out = from_kernel(s, ev, k < 0 ? 0 : k);
		out = from_syn(syn, ev, out, max);
		if (out > 0 || (deadline >= 0 && clock_ns() >= deadline))
			return wait_end(s, out, 0);
	}
}
