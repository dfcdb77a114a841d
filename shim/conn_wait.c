/*
 * conn_wait.c - the blocking emulation: the socket underneath is always
 * non-blocking, so a blocking call waits here, in poll() without c->lock,
 * bounded by the program's SO_RCVTIMEO/SO_SNDTIMEO and the handshake
 * deadline (clock_wait_left()). Waits also move on the handshakes of
 * connections to this process's own listeners (conn.h, CONN_OWN_DRIVE).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "clock.h"
#include "conn_int.h"
#include "epreg.h"
#include "real.h"

/*
 * Client connections to this process's own listener that connect() let go
 * before their handshake completed. Their peer is a thread of this process,
 * maybe the very thread that will not call on the client again until the
 * server side has answered (connect, write, accept, read). So every thread
 * that waits on a wrapped socket also moves these on (conn_own_collect(),
 * conn_own_release(), conn_own_poke(); see conn.h).
 * The list holds a reference to each; lock order: a conn's lock, then
 * own_lock (nothing takes a conn lock while holding own_lock).
 */
#define OWN_MAX 16
static pthread_mutex_t own_lock = PTHREAD_MUTEX_INITIALIZER;
static struct conn *own_list[OWN_MAX];
static atomic_int own_count;

/* Lists C (under c->lock). A full list only means C is not driven by others. */
void conn_own_add(struct conn *c)
{
	pthread_mutex_lock(&own_lock);
	for (int i = 0; i < OWN_MAX; i++) {
		if (own_list[i] == NULL) {
			conn_ref(c);
			own_list[i] = c;
			c->own_listed = 1;
			atomic_fetch_add(&own_count, 1);
			break;
		}
	}
	pthread_mutex_unlock(&own_lock);
}

/* Unlists C (under c->lock; the caller holds a reference of its own). */
void conn_own_remove(struct conn *c)
{
	if (!c->own_listed)
		return;
	pthread_mutex_lock(&own_lock);
	for (int i = 0; i < OWN_MAX; i++) {
		if (own_list[i] == c) {
			own_list[i] = NULL;
			atomic_fetch_sub(&own_count, 1);
			break;
		}
	}
	pthread_mutex_unlock(&own_lock);
	c->own_listed = 0;
	conn_put(c);
}

/*
 * Whether a syscall interrupted by a signal would have been restarted: only
 * if every installed handler of a signal that can interrupt it has
 * SA_RESTART. poll() itself is never restarted, so we decide for the
 * read/write we emulate. Fault signals are synchronous (they cannot arrive
 * while a thread sleeps in poll), so their handlers (sanitizers', a JVM's)
 * do not count. Rare: runs only on EINTR.
 */
static int signals_restart(void)
{
	for (int sig = 1; sig < NSIG; sig++) {
		struct sigaction sa;

		if (sig == SIGKILL || sig == SIGSTOP || sig == SIGSEGV || sig == SIGBUS ||
		    sig == SIGFPE || sig == SIGILL || sig == SIGTRAP || sig == SIGSYS)
			continue;
		if (real.sigaction(sig, NULL, &sa) != 0)
			continue;
		if (sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN)
			continue;
		if (!(sa.sa_flags & SA_RESTART))
			return 0;
	}
	return 1;
}

/* The program's SO_RCVTIMEO / SO_SNDTIMEO in ms, or -1 for none. */
static int sock_timeout_ms(int fd, int opt)
{
	struct timeval tv;
	socklen_t len = sizeof(tv);

	if (real.getsockopt(fd, SOL_SOCKET, opt, &tv, &len) < 0)
		return -1;
	if (tv.tv_sec == 0 && tv.tv_usec == 0)
		return -1;
	return (int)(tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000);
}

/* conn_deadline() under c->lock. */
uint64_t conn_deadline_locked(const struct conn *c)
{
	uint64_t d = 0;

	if (c->state == CONN_HANDSHAKE || c->state == CONN_AUTO_DETECT || c->state == CONN_STARTTLS)
		d = c->hs_deadline_ns;
	if (c->state == CONN_HANDSHAKE && !c->early_open && c->connect_wait_ns != 0 &&
	    (d == 0 || c->connect_wait_ns < d))
		d = c->connect_wait_ns;
	/*
	 * Another thread may move a listed handshake on (own_advance) and take
	 * the very bytes this thread's wait was for: such waits look again often.
	 */
	if (c->own_listed && (c->state == CONN_HANDSHAKE || conn_early_held(c) > 0)) {
		uint64_t soon = (uint64_t)clock_ns() + CONN_OWN_RECHECK_NS;

		if (d == 0 || soon < d)
			d = soon;
	}
	return d;
}

/*
 * Moves O on (under o->lock): its handshake, then what was written before it.
 * Sets P to what O waits for (fd -1 for nothing) and unlists O once done.
 */
static void own_advance(struct conn *o, struct pollfd *p)
{
	short want = 0;
	int rc;

	p->fd = -1;
	p->events = 0;
	p->revents = 0;
	/* After fork(), only the process that uses a session moves it on (its own I/O does). */
	if (o->claim != CLAIM_OWNER) {
		conn_own_remove(o);
		return;
	}
	rc = conn_step_ready(o, &want);
	if (rc == 0 && o->state == CONN_OPEN && conn_out_pending(o)) {
		rc = conn_out_flush(o);
		if (rc == TS_WANT_WRITE || rc == TS_WANT_READ) {
			want = rc == TS_WANT_WRITE ? POLLOUT : POLLIN;
			rc = -EAGAIN;
		}
	}
	if (rc == -EAGAIN) {
		p->fd = o->fd;
		p->events = want;
		return;
	}
	conn_own_remove(o);
}

static int among(const struct conn *c, struct conn *const *set, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (set[i] == c)
			return 1;
	return 0;
}

int conn_own_collect(struct conn *const *skip, size_t nskip, struct conn **o, struct pollfd *p,
		     int max)
{
	int n = 0;

	if (atomic_load_explicit(&own_count, memory_order_relaxed) == 0)
		return 0;
	pthread_mutex_lock(&own_lock);
	for (int i = 0; i < OWN_MAX && n < max; i++) {
		if (own_list[i] != NULL && !among(own_list[i], skip, nskip)) {
			conn_ref(own_list[i]);
			o[n++] = own_list[i];
		}
	}
	pthread_mutex_unlock(&own_lock);
	for (int i = 0; i < n; i++) {
		pthread_mutex_lock(&o[i]->lock);
		own_advance(o[i], &p[i]);
		pthread_mutex_unlock(&o[i]->lock);
	}
	return n;
}

void conn_own_release(struct conn **o, const struct pollfd *p, int n)
{
	for (int i = 0; i < n; i++) {
		struct pollfd q;

		if (p[i].fd >= 0 && p[i].revents != 0) {
			pthread_mutex_lock(&o[i]->lock);
			own_advance(o[i], &q);
			pthread_mutex_unlock(&o[i]->lock);
			epreg_touch(o[i]);
		}
		conn_put(o[i]);
	}
}

int conn_own_poke(void)
{
	struct conn *o[CONN_OWN_DRIVE];
	struct pollfd p[CONN_OWN_DRIVE];
	int n;

	/* Every epoll_wait asks: nearly always there is nothing to move on. */
	if (atomic_load_explicit(&own_count, memory_order_relaxed) == 0)
		return 0;
	n = conn_own_collect(NULL, 0, o, p, CONN_OWN_DRIVE);
	for (int i = 0; i < n; i++) {
		epreg_touch(o[i]);
		p[i].revents = 0; /* advanced once is enough */
	}
	conn_own_release(o, p, n);
	return n;
}

/*
 * Waits for WANT on the conn's socket (advancing the listed handshakes of
 * this process meanwhile). Returns 0 to try again, -EAGAIN when the
 * program's socket time-out expired, or -errno (EINTR, EBADF).
 */
int conn_wait(struct conn *c, short want, struct conn_waiter *w)
{
	struct pollfd p[1 + CONN_OWN_DRIVE];
	struct conn *o[CONN_OWN_DRIVE];
	int64_t now;
	uint64_t hs;
	int timeout, n, no;

	if (!w->started) {
		int ms = sock_timeout_ms(c->fd, w->opt);

		w->started = 1;
		w->deadline = ms < 0 ? -1 : clock_ns() + (int64_t)ms * 1000000;
	}
	for (;;) {
		pthread_mutex_lock(&c->lock);
		p[0].fd = c->fd;
		p[0].events = want;
		p[0].revents = 0;
		hs = conn_deadline_locked(c);
		n = c->closed;
		pthread_mutex_unlock(&c->lock);
		if (n)
			return -EBADF;
		now = clock_ns();
		if (w->deadline >= 0 && now >= w->deadline)
			return -EAGAIN;
		/* Wake for the handshake deadline too: the next step then fails it. */
		timeout = clock_wait_ms(clock_wait_left(now, w->deadline, hs));
		no = conn_own_collect(&c, 1, o, p + 1, CONN_OWN_DRIVE);
		n = real.poll(p, 1 + (nfds_t)no, timeout);
		if (no > 0) {
			int e = errno;

			conn_own_release(o, p + 1, no);
			errno = e;
			/* Only another conn moved: wait on (the deadlines are looked at again). */
			if (n > 0 && p[0].revents == 0)
				continue;
		}
		if (n >= 0) {
			if (n > 0 && (p[0].revents & POLLNVAL))
				return -EBADF;
			return 0;
		}
		if (errno != EINTR)
			return -errno;
		if (!signals_restart())
			return -EINTR;
	}
}

/*
 * Whether C can never have a deadline again: OPEN and FAILED are final, and so
 * is PLAIN once no starttls= filter can still upgrade it. Under c->lock.
 */
static int hs_settled(const struct conn *c)
{
	if (c->own_listed)
		return 0;
	return c->state == CONN_OPEN || c->state == CONN_FAILED ||
	       (c->state == CONN_PLAIN && c->st == NULL);
}

uint64_t conn_deadline(struct conn *c)
{
	uint64_t d;

	/* epoll_wait asks for every event: a settled conn answers without its lock. */
	if (atomic_load_explicit(&c->hs_settled, memory_order_relaxed))
		return 0;
	pthread_mutex_lock(&c->lock);
	d = conn_deadline_locked(c);
	if (d == 0 && hs_settled(c))
		atomic_store_explicit(&c->hs_settled, 1, memory_order_relaxed);
	pthread_mutex_unlock(&c->lock);
	return d;
}

void conn_own_fork_child(void)
{
	pthread_mutex_init(&own_lock, NULL);
}
