/*
 * epreg.c - the epoll registry (see epreg.h for the design).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uthash.h>

#include "conn.h"
#include "epreg.h"
#include "fdtab.h"
#include "real.h"
#include "shim.h"

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

static pthread_mutex_t ep_lock = PTHREAD_MUTEX_INITIALIZER;
static struct epset *sets;
static atomic_int nsets;

/*
 * How many registrations (and epoll sets) the registry holds per fd number,
 * hashed into buckets: closing or handing out an fd whose bucket is empty has
 * nothing to forget, and does not take ep_lock. Only then is a new fd free of
 * the registry's lock, which the shim's and OpenSSL's own file opens (made
 * under other shim locks) rely on. Written under ep_lock, read without.
 */
#define FD_BUCKETS 4096
static atomic_ushort fd_refs[FD_BUCKETS];

static void fd_ref(int fd, int delta)
{
	atomic_fetch_add_explicit(&fd_refs[(unsigned)fd % FD_BUCKETS], (unsigned short)delta,
				  memory_order_relaxed);
}

int epreg_fd_maybe(int fd)
{
	return atomic_load_explicit(&fd_refs[(unsigned)fd % FD_BUCKETS], memory_order_relaxed) != 0;
}

/*
 * Work that reaches the registry while this thread already holds ep_lock is
 * queued and done when the lock is given back, not by taking it again: a new
 * fd handed out (a stale entry dropped) or an fd closed inside the registry's
 * own work, e.g. OpenSSL or a sanitizer's symboliser opening and closing a file
 * during a handshake step that epoll_ctl or epoll_wait drives. Under ep_lock.
 */
enum deferred_kind { DEF_STALE, DEF_FD_CLOSED, DEF_CONN_CLOSED };
struct deferred {
	enum deferred_kind kind;
	int fd;
	int arg;        /* DEF_STALE: last; DEF_FD_CLOSED: others */
	struct conn *c; /* a reference, or NULL */
};
static __thread int ep_held;
static struct deferred *def_q;
static size_t def_n, def_cap;

static void stale_locked(int fd, struct conn *c, int last);
static void fd_closed_locked(int fd, struct conn *c, int others);
static void conn_closed_locked(struct conn *c);

static void deferred_run(struct deferred d)
{
	switch (d.kind) {
	case DEF_STALE:
		stale_locked(d.fd, d.c, d.arg);
		break;
	case DEF_FD_CLOSED:
		fd_closed_locked(d.fd, d.c, d.arg);
		break;
	case DEF_CONN_CLOSED:
		conn_closed_locked(d.c);
		break;
	}
	if (d.c != NULL)
		conn_put(d.c);
}

/*
 * Queues D when this thread holds ep_lock (returns 1), else returns 0 and the
 * caller does the work under the lock. Allocation failure drops the work: a
 * registration left behind is dropped when its fd number is next handed out.
 */
static int deferred_queue(struct deferred d)
{
	if (!ep_held)
		return 0;
	if (def_n == def_cap) {
		size_t cap = def_cap ? 2 * def_cap : 8;
		struct deferred *q = realloc(def_q, cap * sizeof(*q));

		if (q == NULL)
			return 1;
		def_q = q;
		def_cap = cap;
	}
	if (d.c != NULL)
		conn_ref(d.c);
	def_q[def_n++] = d;
	return 1;
}

static void ep_lock_take(void)
{
	pthread_mutex_lock(&ep_lock);
	ep_held = 1;
}

static void ep_lock_give(void)
{
	while (def_n > 0)
		deferred_run(def_q[--def_n]);
	ep_held = 0;
	pthread_mutex_unlock(&ep_lock);
}

/* Per conn: its registrations, chained through next_of_conn (under ep_lock). */
struct conn_regs {
	struct conn *c;
	struct reg *head;
	UT_hash_handle hh;
};
static struct conn_regs *by_conn;

#define USER_EVENTS (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLRDNORM | EPOLLWRNORM)
#define KERN_FLAGS  (EPOLLET | EPOLLRDHUP | EPOLLPRI)

int epreg_active(void)
{
	return atomic_load_explicit(&nsets, memory_order_relaxed) != 0;
}

static struct epset *set_find(int epfd)
{
	for (struct epset *s = sets; s != NULL; s = s->next)
		if (s->epfd == epfd)
			return s;
	return NULL;
}

static struct epset *set_get(int epfd)
{
	struct epset *s = set_find(epfd);

	if (s != NULL)
		return s;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->epfd = epfd;
	s->next = sets;
	sets = s;
	atomic_fetch_add(&nsets, 1);
	fd_ref(epfd, 1);
	return s;
}

static void conn_link(struct reg *r)
{
	struct conn_regs *cr;

	HASH_FIND_PTR(by_conn, &r->c, cr);
	if (cr == NULL) {
		cr = calloc(1, sizeof(*cr));
		if (cr == NULL)
			return; /* the reg still works; it just isn't touched by I/O */
		cr->c = r->c;
		HASH_ADD_PTR(by_conn, c, cr);
		atomic_fetch_add(&r->c->n_epregs, 1);
	}
	r->next_of_conn = cr->head;
	cr->head = r;
}

static void conn_unlink(struct reg *r)
{
	struct conn_regs *cr;

	HASH_FIND_PTR(by_conn, &r->c, cr);
	if (cr == NULL)
		return;
	for (struct reg **pp = &cr->head; *pp != NULL; pp = &(*pp)->next_of_conn) {
		if (*pp == r) {
			*pp = r->next_of_conn;
			break;
		}
	}
	if (cr->head == NULL) {
		HASH_DEL(by_conn, cr);
		atomic_fetch_sub(&r->c->n_epregs, 1);
		free(cr);
	}
}

static void touch_locked(struct conn *c);

static void queue(struct reg *r)
{
	if (r->queued || r->c == NULL)
		return;
	r->queued = 1;
	r->next_dirty = r->set->dirty;
	r->set->dirty = r;
}

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
			queue(r);
		else if (first == 0 || d < first)
			first = d;
		pp = &r->next_timed;
	}
	return first;
}

static void reg_free(struct reg *r)
{
	struct epset *s = r->set;

	if (!r->orphan) {
		HASH_DELETE(hh, s->by_fd, r);
		fd_ref(r->fd, -1);
	}
	if (r->c != NULL) {
		if (r->queued) {
			for (struct reg **pp = &s->dirty; *pp != NULL; pp = &(*pp)->next_dirty) {
				if (*pp == r) {
					*pp = r->next_dirty;
					break;
				}
			}
		}
		if (r->timed) {
			for (struct reg **pp = &s->timed; *pp != NULL; pp = &(*pp)->next_timed) {
				if (*pp == r) {
					*pp = r->next_timed;
					break;
				}
			}
		}
		conn_unlink(r);
		s->nwrapped--;
		conn_put(r->c);
		if (s->waiters > 0) {
			r->dead = 1;
			r->next_dead = s->graveyard;
			s->graveyard = r;
			return;
		}
		HASH_DELETE(hp, s->by_ptr, r);
	}
	free(r);
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

/* Brings the kernel's registration of wrapped R in line with KEV. Returns 0 or -errno. */
static int sync_kernel(struct reg *r, uint32_t kev)
{
	struct epoll_event e = {.data.ptr = r};
	int op;

	if (!r->armed) {
		if (r->in_kernel && real.epoll_ctl(r->set->epfd, EPOLL_CTL_DEL, r->fd, &e) == 0)
			r->in_kernel = 0;
		return 0;
	}
	e.events = kev | (r->uev & KERN_FLAGS);
	if (r->in_kernel && e.events == r->kev)
		return 0;
	op = r->in_kernel ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	if (real.epoll_ctl(r->set->epfd, op, r->fd, &e) != 0)
		return -errno;
	r->in_kernel = 1;
	r->kev = e.events;
	return 0;
}

/* Registers wrapped R with the kernel for the first time (or after adoption). */
static int reg_wrap(struct reg *r, struct conn *c)
{
	short kev = 0;

	conn_ref(c);
	r->c = c;
	r->self = r;
	HASH_ADD(hp, r->set->by_ptr, self, sizeof(r->self), r);
	r->set->nwrapped++;
	conn_link(r);
	conn_poll_prepare(c, (short)(r->uev & USER_EVENTS), &kev);
	queue(r);
	return sync_kernel(r, (uint16_t)kev);
}

int epreg_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	struct conn *c = fdtab_maybe(fd) ? fdtab_get(fd) : NULL;
	struct epset *s;
	struct reg *r;
	int rc = 0;

	/* Unwrapped fds are remembered only if a later connect() may wrap them. */
	if (c == NULL && !shim.has_connect && !epreg_active())
		return real.epoll_ctl(epfd, op, fd, ev) == 0 ? 0 : -errno;
	real_init(); /* the registry calls several real functions */
	ep_lock_take();
	s = set_find(epfd);
	r = NULL;
	if (s != NULL)
		HASH_FIND(hh, s->by_fd, &fd, sizeof(fd), r);
	switch (op) {
	case EPOLL_CTL_ADD:
		/* close() removes registrations, so one found here is live. */
		if (r != NULL && r->c != NULL) {
			rc = -EEXIST;
			break;
		}
		if (r != NULL && c != NULL) {
			/* Tracked before wrapping and not adopted: the kernel says EEXIST too. */
			rc = -EEXIST;
			break;
		}
		if (ev == NULL) {
			rc = -EFAULT;
			break;
		}
		if (c == NULL) {
			if (real.epoll_ctl(epfd, op, fd, ev) != 0) {
				rc = -errno;
				break;
			}
			if (!shim.has_connect)
				break;
			if (r != NULL) {
				/* A tracked entry whose fd was closed behind our back. */
				r->uev = ev->events;
				r->udata = ev->data;
				break;
			}
		}
		s = set_get(epfd);
		r = s ? calloc(1, sizeof(*r)) : NULL;
		if (r == NULL) {
			rc = c ? -ENOMEM : 0;
			break;
		}
		r->fd = fd;
		r->set = s;
		r->uev = ev->events;
		r->udata = ev->data;
		r->armed = 1;
		HASH_ADD(hh, s->by_fd, fd, sizeof(int), r);
		fd_ref(fd, 1);
		if (c != NULL) {
			rc = reg_wrap(r, c);
			if (rc != 0)
				reg_free(r);
		}
		break;
	case EPOLL_CTL_MOD:
		if (ev == NULL) {
			rc = -EFAULT;
			break;
		}
		if (r == NULL || r->c == NULL) {
			if (real.epoll_ctl(epfd, op, fd, ev) != 0) {
				rc = -errno;
				break;
			}
			if (r != NULL) {
				r->uev = ev->events;
				r->udata = ev->data;
			}
			break;
		}
		r->uev = ev->events;
		r->udata = ev->data;
		r->armed = 1;
		queue(r);
		{
			short kev = 0;

			conn_poll_prepare(r->c, (short)(r->uev & USER_EVENTS), &kev);
			rc = sync_kernel(r, (uint16_t)kev);
		}
		break;
	case EPOLL_CTL_DEL:
		if (r == NULL || r->c == NULL) {
			if (real.epoll_ctl(epfd, op, fd, ev) != 0)
				rc = -errno;
			if (r != NULL)
				reg_free(r);
			break;
		}
		if (r->in_kernel && real.epoll_ctl(epfd, op, fd, ev) != 0 && errno != ENOENT)
			rc = -errno;
		reg_free(r);
		break;
	default:
		rc = -EINVAL;
		break;
	}
	ep_lock_give();
	if (c != NULL)
		conn_put(c);
	return rc;
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
		sync_kernel(r, 0);
		return;
	}
	/* Level-triggered: still ready next time if the program leaves data. */
	if (!(r->uev & EPOLLET))
		queue(r);
}

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
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
		if (!r->armed)
			continue;
		ready = (uint16_t)conn_poll_prepare(r->c, (short)(r->uev & USER_EVENTS), &kev);
		sync_kernel(r, (uint16_t)kev);
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

int epreg_wait(int epfd, struct epoll_event *ev, int max, int64_t timeout_ns, const sigset_t *mask,
	       int *handled)
{
	int64_t deadline = timeout_ns < 0 ? -1 : mono_ns() + timeout_ns;
	struct epset *s;

	*handled = 0;
	if (max <= 0)
		return -EINVAL;
	ep_lock_take();
	s = set_find(epfd);
	if (s == NULL || s->nwrapped == 0) {
		ep_lock_give();
		return 0;
	}
	*handled = 1;
	s->waiters++;
	for (;;) {
		struct reg *syn;
		int64_t now, left = -1;
		uint64_t hs;
		int k, out, nsyn, room;

		nsyn = drain_dirty(s, &syn);
		now = mono_ns();
		hs = due_deadlines(s, (uint64_t)now);
		if (s->dirty != NULL && nsyn == 0)
			hs = (uint64_t)now; /* a deadline passed: fail it in the next round */
		ep_lock_give();
		if (deadline >= 0)
			left = deadline > now ? deadline - now : 0;
		if (nsyn > 0)
			left = 0;
		else if (hs != 0 && (left < 0 || (int64_t)hs - now < left))
			left = (int64_t)hs > now ? (int64_t)hs - now : 0;
		/* This process's handshakes with its own listeners move on (conn.h). */
		if (conn_own_poke() > 0 && (left < 0 || left > CONN_OWN_RECHECK_NS))
			left = CONN_OWN_RECHECK_NS;
		/* Ready ones we found take places first; the kernel fills the rest. */
		room = max - (nsyn < max ? nsyn : max - 1);
		k = real.epoll_pwait(epfd, ev, room,
				     left >= 0 ? (int)((left + 999999) / 1000000) : -1, mask);
		if (k < 0 && nsyn == 0) {
			int e = errno;

			ep_lock_take();
			set_leave(s);
			ep_lock_give();
			return -e;
		}
		if (k < 0)
			k = 0;
		ep_lock_take();
		/* Its fd was closed meanwhile: nothing it returned is meaningful. */
		if (s->closed) {
			set_leave(s);
			ep_lock_give();
			return 0;
		}
		out = 0;
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
			touch_locked(r->c);
			watch_deadline(r);
			if (rev == 0)
				continue;
			ev[out].events = rev;
			ev[out].data = r->udata;
			out++;
			reported(r, rev);
		}
		for (struct reg *r = syn; r != NULL; r = r->next_syn) {
			if (r->dead || r->syn == 0 || !r->armed)
				continue;
			if (out == max) {
				r->syn = 0;
				queue(r); /* no room: next call */
				continue;
			}
			ev[out].events = r->syn;
			ev[out].data = r->udata;
			out++;
			reported(r, r->syn);
			r->syn = 0;
		}
		if (out > 0 || (deadline >= 0 && mono_ns() >= deadline)) {
			set_leave(s);
			ep_lock_give();
			return out;
		}
	}
}

/* FD closed; OTHERS: another fd of C's socket stays open. Under ep_lock. */
static void fd_closed_locked(int fd, struct conn *c, int others)
{
	struct epset **pp;

	for (pp = &sets; *pp != NULL;) {
		struct epset *s = *pp;
		struct reg *r = NULL, *tmp;

		if (s->epfd == fd) {
			HASH_ITER(hh, s->by_fd, r, tmp)
			reg_free(r);
			*pp = s->next;
			atomic_fetch_sub(&nsets, 1);
			fd_ref(fd, -1);
			if (s->waiters > 0)
				s->closed = 1; /* the last waiter frees it */
			else
				free(s);
			continue;
		}
		HASH_FIND(hh, s->by_fd, &fd, sizeof(fd), r);
		if (r != NULL && r->c != NULL && c == r->c && others) {
			/* Another fd keeps the socket, and the kernel keeps reporting. */
			HASH_DELETE(hh, s->by_fd, r);
			fd_ref(fd, -1);
			r->orphan = 1;
		} else if (r != NULL) {
			reg_free(r);
		}
		pp = &s->next;
	}
}

/* Every registration of C ends. Under ep_lock. */
static void conn_closed_locked(struct conn *c)
{
	struct conn_regs *cr;

	/* reg_free unlinks from the conn's list: take the head until it is gone. */
	for (;;) {
		HASH_FIND_PTR(by_conn, &c, cr);
		if (cr == NULL || cr->head == NULL)
			break;
		reg_free(cr->head);
	}
}

void epreg_fd_closed(int fd, struct conn *c)
{
	int others = c != NULL && c->nfds > 1;

	if (!epreg_fd_maybe(fd))
		return;
	if (deferred_queue((struct deferred){DEF_FD_CLOSED, fd, others, c}))
		return;
	ep_lock_take();
	fd_closed_locked(fd, c, others);
	ep_lock_give();
}

static void stale_locked(int fd, struct conn *c, int last)
{
	fd_closed_locked(fd, c, c != NULL && !last);
	if (c != NULL && last && atomic_load_explicit(&c->n_epregs, memory_order_relaxed) > 0)
		conn_closed_locked(c);
}

void epreg_fd_stale(int fd, struct conn *c, int last)
{
	if (!epreg_fd_maybe(fd) && (c == NULL || !last || atomic_load(&c->n_epregs) == 0))
		return;
	if (deferred_queue((struct deferred){DEF_STALE, fd, last, c}))
		return;
	ep_lock_take();
	stale_locked(fd, c, last);
	ep_lock_give();
}

void epreg_adopt(int fd, struct conn *c)
{
	if (!epreg_fd_maybe(fd))
		return;
	ep_lock_take();
	for (struct epset *s = sets; s != NULL; s = s->next) {
		struct reg *r = NULL;

		HASH_FIND(hh, s->by_fd, &fd, sizeof(fd), r);
		if (r == NULL || r->c != NULL)
			continue;
		/* The kernel entry has the program's data: switch it to ours. */
		r->in_kernel = 1;
		r->kev = 0xffffffffu; /* force a MOD */
		reg_wrap(r, c);
	}
	ep_lock_give();
}

/* Queues every registration of C, in every set. Under ep_lock. */
static void touch_locked(struct conn *c)
{
	struct conn_regs *cr;

	HASH_FIND_PTR(by_conn, &c, cr);
	for (struct reg *r = cr ? cr->head : NULL; r != NULL; r = r->next_of_conn)
		queue(r);
}

void epreg_touch(struct conn *c)
{
	if (atomic_load_explicit(&c->n_epregs, memory_order_relaxed) == 0)
		return;
	ep_lock_take();
	touch_locked(c);
	ep_lock_give();
}

void epreg_conn_closed(struct conn *c)
{
	if (atomic_load_explicit(&c->n_epregs, memory_order_relaxed) == 0)
		return;
	if (deferred_queue((struct deferred){DEF_CONN_CLOSED, -1, 0, c}))
		return;
	ep_lock_take();
	conn_closed_locked(c);
	ep_lock_give();
}

void epreg_fork_prepare(void)
{
	pthread_mutex_lock(&ep_lock);
}

void epreg_fork_parent(void)
{
	pthread_mutex_unlock(&ep_lock);
}

void epreg_fork_child(void)
{
	ep_held = 0;
	pthread_mutex_init(&ep_lock, NULL);
}
