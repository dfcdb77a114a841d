/*
 * epreg.c - the epoll registry (see epreg.h for the design): registrations
 * (epoll_ctl), their end (close, stale fds), adoption at connect, fork.
 * epoll_wait is in epreg_wait.c.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conn.h"
#include "epreg.h"
#include "epreg_int.h"
#include "fdtab.h"
#include "real.h"
#include "shim.h"

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

void ep_lock_take(void)
{
	pthread_mutex_lock(&ep_lock);
	ep_held = 1;
}

void ep_lock_give(void)
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

int epreg_active(void)
{
	return atomic_load_explicit(&nsets, memory_order_relaxed) != 0;
}

struct epset *ep_set_find(int epfd)
{
	for (struct epset *s = sets; s != NULL; s = s->next)
		if (s->epfd == epfd)
			return s;
	return NULL;
}

static struct epset *set_get(int epfd)
{
	struct epset *s = ep_set_find(epfd);

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

void ep_queue(struct reg *r)
{
	if (r->queued || r->c == NULL)
		return;
	r->queued = 1;
	r->next_dirty = r->set->dirty;
	r->set->dirty = r;
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

/* Brings the kernel's registration of wrapped R in line with KEV. Returns 0 or -errno. */
int ep_sync_kernel(struct reg *r, uint32_t kev)
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
	ep_queue(r);
	return ep_sync_kernel(r, (uint16_t)kev);
}

/* A new registration of FD in S with the program's events and data. Under ep_lock. */
static struct reg *reg_new(struct epset *s, int fd, const struct epoll_event *ev)
{
	struct reg *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->fd = fd;
	r->set = s;
	r->uev = ev->events;
	r->udata = ev->data;
	r->armed = 1;
	HASH_ADD(hh, s->by_fd, fd, sizeof(int), r);
	fd_ref(fd, 1);
	return r;
}

/*
 * EPOLL_CTL_ADD of FD (C: its conn, or NULL) to EPFD, where R is FD's
 * registration if one is known. A wrapped fd goes to the kernel under our
 * data; an unwrapped one under the program's, remembered for a later
 * connect() only when the policy has connect rules. Under ep_lock.
 */
static int ctl_add(int epfd, int fd, struct conn *c, struct reg *r, const struct epoll_event *ev)
{
	struct epset *s;
	int rc;

	/* close() removes registrations, so one found here is live. */
	if (r != NULL && r->c != NULL)
		return -EEXIST;
	/* Tracked before wrapping and not adopted: the kernel says EEXIST too. */
	if (r != NULL && c != NULL)
		return -EEXIST;
	if (ev == NULL)
		return -EFAULT;
	if (c == NULL) {
		if (real.epoll_ctl(epfd, EPOLL_CTL_ADD, fd, (struct epoll_event *)ev) != 0)
			return -errno;
		if (!shim.has_connect)
			return 0;
		if (r != NULL) {
			/* A tracked entry whose fd was closed behind our back. */
			r->uev = ev->events;
			r->udata = ev->data;
			return 0;
		}
	}
	s = set_get(epfd);
	r = s != NULL ? reg_new(s, fd, ev) : NULL;
	if (r == NULL)
		return c != NULL ? -ENOMEM : 0;
	if (c == NULL)
		return 0;
	rc = reg_wrap(r, c);
	if (rc != 0)
		reg_free(r);
	return rc;
}

/* EPOLL_CTL_MOD of FD in EPFD (R: its registration, or NULL). Under ep_lock. */
static int ctl_mod(int epfd, int fd, struct reg *r, const struct epoll_event *ev)
{
	short kev = 0;

	if (ev == NULL)
		return -EFAULT;
	if (r == NULL || r->c == NULL) {
		if (real.epoll_ctl(epfd, EPOLL_CTL_MOD, fd, (struct epoll_event *)ev) != 0)
			return -errno;
		if (r != NULL) {
			r->uev = ev->events;
			r->udata = ev->data;
		}
		return 0;
	}
	r->uev = ev->events;
	r->udata = ev->data;
	r->armed = 1; /* EPOLLONESHOT: re-armed */
	ep_queue(r);
	conn_poll_prepare(r->c, (short)(r->uev & USER_EVENTS), &kev);
	return ep_sync_kernel(r, (uint16_t)kev);
}

/* EPOLL_CTL_DEL of FD in EPFD (R: its registration, or NULL). Under ep_lock. */
static int ctl_del(int epfd, int fd, struct reg *r, struct epoll_event *ev)
{
	int rc = 0;

	if (r == NULL || r->c == NULL) {
		if (real.epoll_ctl(epfd, EPOLL_CTL_DEL, fd, ev) != 0)
			rc = -errno;
		if (r != NULL)
			reg_free(r);
		return rc;
	}
	/* A disarmed EPOLLONESHOT registration is not in the kernel. */
	if (r->in_kernel && real.epoll_ctl(epfd, EPOLL_CTL_DEL, fd, ev) != 0 && errno != ENOENT)
		rc = -errno;
	reg_free(r);
	return rc;
}

int epreg_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	struct conn *c = fdtab_maybe(fd) ? fdtab_get(fd) : NULL;
	struct epset *s;
	struct reg *r = NULL;
	int rc;

	/* Unwrapped fds are remembered only if a later connect() may wrap them. */
	if (c == NULL && !shim.has_connect && !epreg_active())
		return real.epoll_ctl(epfd, op, fd, ev) == 0 ? 0 : -errno;
	real_init(); /* the registry calls several real functions */
	ep_lock_take();
	s = ep_set_find(epfd);
	if (s != NULL)
		HASH_FIND(hh, s->by_fd, &fd, sizeof(fd), r);
	switch (op) {
	case EPOLL_CTL_ADD:
		rc = ctl_add(epfd, fd, c, r, ev);
		break;
	case EPOLL_CTL_MOD:
		rc = ctl_mod(epfd, fd, r, ev);
		break;
	case EPOLL_CTL_DEL:
		rc = ctl_del(epfd, fd, r, ev);
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
void ep_touch_locked(struct conn *c)
{
	struct conn_regs *cr;

	HASH_FIND_PTR(by_conn, &c, cr);
	if (cr == NULL)
		return;
	for (struct reg *r = cr->head; r != NULL; r = r->next_of_conn)
		ep_queue(r);
	/* So the program's read or write after an event need not take ep_lock. */
	atomic_store_explicit(&c->ep_queued, 1, memory_order_relaxed);
}

/*
 * A conn whose registrations are all queued already needs no look-up: an
 * event loop's read, write and uncork of one request touch it several times
 * before its next epoll_wait. drain_dirty() clears c->ep_queued as it takes
 * one off its queue, before looking at the conn under its lock, so a touch
 * after that lock is never lost.
 */
void epreg_touch(struct conn *c)
{
	if (atomic_load_explicit(&c->n_epregs, memory_order_relaxed) == 0 ||
	    atomic_load_explicit(&c->ep_queued, memory_order_relaxed))
		return;
	ep_lock_take();
	ep_touch_locked(c);
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
