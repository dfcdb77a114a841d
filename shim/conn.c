/*
 * conn.c - a wrapped connection's life cycle: made for a client or a server
 * socket, its fds (dup), its reference count, and one owner of its TLS
 * session across fork(). The state machine is in conn_step.c; conn_int.h
 * lists the other files.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "conn_int.h"
#include "engine_load.h"
#include "errmap.h"
#include "log.h"
#include "real.h"
#include "starttls.h"
#include "stats.h"

/* Every live conn, for the fork handlers. */
static pthread_mutex_t all_lock = PTHREAD_MUTEX_INITIALIZER;
static struct conn_link {
	struct conn *c;
	struct conn_link *next, *prev;
} all_head = {NULL, &all_head, &all_head};

struct conn_priv {
	struct conn c; /* first: a struct conn * is a struct conn_priv * */
	struct conn_link link;
};

/* The TLS engine (conn_int.h). */
const struct engine_ops *conn_engine_ptr;

void conn_ref(struct conn *c)
{
	atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

void conn_put(struct conn *c)
{
	struct conn_priv *p = (struct conn_priv *)c;

	if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
		return;
	pthread_mutex_lock(&all_lock);
	p->link.prev->next = p->link.next;
	p->link.next->prev = p->link.prev;
	pthread_mutex_unlock(&all_lock);
	stats_conn_end(c->rule, c->stats_mark);
	if (c->ts != NULL)
		E->sess_free(c->ts);
	if (c->fds != c->fds_inline)
		free(c->fds);
	free(c->hold);
	free(c->st);
	if (c->claim_word != NULL)
		munmap((void *)c->claim_word, sizeof(*c->claim_word));
	pthread_mutex_destroy(&c->lock);
	free(c->peer_name);
	free(atomic_load_explicit(&c->desc, memory_order_relaxed));
	free(c->early);
	free(p);
}

static struct conn *conn_alloc(int fd, const struct policy_rule *rule, const char *desc)
{
	struct conn_priv *p;
	struct conn *c;

	real_init(); /* everything below calls real functions */
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	c = &p->c;
	atomic_init(&c->desc, NULL);
	if (desc != NULL) {
		char *d = strdup(desc);

		if (d == NULL) {
			free(p);
			return NULL;
		}
		atomic_init(&c->desc, d);
	}
	pthread_mutex_init(&c->lock, NULL);
	atomic_init(&c->refs, 1);
	c->fd = fd;
	c->fds = c->fds_inline;
	c->fds[0] = fd;
	c->nfds = 1;
	c->capfds = 2;
	c->rule = rule;
	p->link.c = c;
	pthread_mutex_lock(&all_lock);
	p->link.next = all_head.next;
	p->link.prev = &all_head;
	all_head.next->prev = &p->link;
	all_head.next = &p->link;
	pthread_mutex_unlock(&all_lock);
	c->stats_mark = stats_conn_new(rule);
	return c;
}

/*
 * TLS puts bytes on the wire the program never wrote (handshake flights,
 * session tickets, close_notify). With Nagle's algorithm on, the program's
 * next small write would wait for those to be acknowledged (a delayed ACK:
 * up to 40 ms) where the plain socket would have sent at once. So the socket
 * always has TCP_NODELAY; the program's own setting is remembered and
 * reported back. Returns the program's setting.
 */
static int make_nodelay_was(int fd, int was)
{
	int on = 1;

	if (!was)
		real.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	return was != 0;
}

static int make_nodelay(int fd)
{
	int was = 0;
	socklen_t len = sizeof(was);

	if (real.getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &was, &len) != 0)
		was = 0;
	return make_nodelay_was(fd, was);
}

/* Makes the socket non-blocking underneath; returns the program's O_NONBLOCK, or -errno. */
static int make_nonblocking(int fd)
{
	int fl = real.fcntl(fd, F_GETFL);

	if (fl < 0)
		return -errno;
	if (!(fl & O_NONBLOCK) && real.fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return (fl & O_NONBLOCK) != 0;
}

int conn_session_new(struct conn *c, char *err, size_t errlen)
{
	struct tsess_params p = {
	    .fd = c->fd,
	    .role = c->role,
	    .rule = c->rule,
	    .peer_name = c->peer_name,
	    .peer_addr = c->peer_addr,
	    .port = c->port,
	};

	const struct engine_ops *e = engine(), *none = NULL;

	/*
	 * The first wrapped connection loads the engine (engine_load() is
	 * once-only and returns the same table to every caller); later ones find
	 * it set. Conns reach other threads through fdtab's lock, after this.
	 */
	if (e == NULL) {
		e = engine_load(err, errlen);
		if (e == NULL)
			return -1;
		__atomic_compare_exchange_n(&conn_engine_ptr, &none, e, 0, __ATOMIC_ACQ_REL,
					    __ATOMIC_ACQUIRE);
	}
	c->ts = e->sess_new(&p, err, errlen);
	if (c->ts == NULL)
		return -1;
	e->set_io(c->ts, atomic_load_explicit(&c->io_family, memory_order_relaxed) | TS_IO_QUIET);
	return 0;
}

struct conn *conn_new_client(int fd, const struct policy_rule *rule, const char *name,
			     const char *addr, uint16_t port, const char *desc, int *err)
{
	struct conn *c;
	char why[256] = "";
	int nb = make_nonblocking(fd);

	if (nb < 0) {
		*err = -nb;
		return NULL;
	}
	c = conn_alloc(fd, rule, desc);
	if (c == NULL)
		goto nomem;
	c->role = TLS_ROLE_CLIENT;
	c->state = CONN_TCP_CONNECTING;
	atomic_init(&c->user_nonblock, nb);
	atomic_init(&c->user_nodelay, make_nodelay(fd));
	snprintf(c->peer_addr, sizeof(c->peer_addr), "%s", addr);
	c->port = port;
	if (name != NULL) {
		c->peer_name = strdup(name);
		if (c->peer_name == NULL)
			goto nomem;
	}
	/* Fail before a single packet leaves if TLS cannot be set up at all. */
	if (conn_session_new(c, why, sizeof(why)) != 0) {
		log_error("%s: %s", desc, why);
		conn_put(c);
		*err = outcome_errno(OUTCOME_REFUSED);
		return NULL;
	}
	if (rule->opt.insecure)
		log_warn("%s: certificate verification is off (insecure)", desc);
	if (rule->opt.starttls != POLICY_STARTTLS_NONE) {
		c->st = malloc(sizeof(*c->st));
		if (c->st == NULL)
			goto nomem;
		stls_init(c->st, rule->opt.starttls, TLS_ROLE_CLIENT, 0, NULL);
	}
	return c;
nomem:
	if (c != NULL)
		conn_put(c);
	*err = ENOMEM;
	return NULL;
}

const char *conn_accept_desc(const struct ep ends[2], char *buf)
{
	char l[80], p[80] = "?";

	ep_describe(&ends[0], NULL, l, sizeof(l));
	if (ends[1].family != 0)
		ep_describe(&ends[1], NULL, p, sizeof(p));
	snprintf(buf, CONN_ACCEPT_DESC_MAX, "accept %s from %s", l, p);
	return buf;
}

const char *conn_desc(struct conn *c)
{
	char *d = atomic_load_explicit(&c->desc, memory_order_acquire), *none = NULL;
	char buf[CONN_ACCEPT_DESC_MAX];

	if (d != NULL)
		return d;
	/* Two threads may both make it; one copy is kept. */
	d = strdup(conn_accept_desc(c->ends, buf));
	if (d == NULL)
		return "accept (out of memory)";
	if (!atomic_compare_exchange_strong_explicit(&c->desc, &none, d, memory_order_acq_rel,
						     memory_order_acquire)) {
		free(d);
		return none;
	}
	return d;
}

struct conn *conn_new_server(int fd, const struct policy_rule *rule, const char *desc,
			     const struct ep ends[2], int user_nonblock, int user_nodelay, int *err)
{
	struct conn *c;

	/* accept4(SOCK_NONBLOCK) did it: no fcntl() per connection. */
	if (!user_nonblock && make_nonblocking(fd) < 0) {
		*err = errno;
		return NULL;
	}
	c = conn_alloc(fd, rule, desc);
	if (c == NULL) {
		*err = ENOMEM;
		return NULL;
	}
	if (desc == NULL) {
		c->ends[0] = ends[0];
		c->ends[1] = ends[1];
	}
	c->role = TLS_ROLE_SERVER;
	c->state = rule->action == POLICY_AUTO ? CONN_AUTO_DETECT : CONN_HANDSHAKE;
	if (rule->opt.starttls != POLICY_STARTTLS_NONE) {
		/* With auto, the protocol's request is what tells TLS from cleartext. */
		c->st = malloc(sizeof(*c->st));
		if (c->st == NULL) {
			conn_put(c);
			*err = ENOMEM;
			return NULL;
		}
		stls_init(c->st, rule->opt.starttls, TLS_ROLE_SERVER, rule->action == POLICY_AUTO,
			  NULL);
		/* SMTP: the program greets first; the shim filters the cleartext until STARTTLS. */
		c->state = rule->opt.starttls == POLICY_STARTTLS_SMTP ? CONN_PLAIN : CONN_STARTTLS;
	}
	atomic_init(&c->user_nonblock, user_nonblock);
	atomic_init(&c->user_nodelay,
		    user_nodelay >= 0 ? make_nodelay_was(fd, user_nodelay) : make_nodelay(fd));
	return c;
}

int conn_nodelay(const struct conn *c)
{
	return atomic_load_explicit(&c->user_nodelay, memory_order_relaxed);
}

void conn_set_nodelay(struct conn *c, int on)
{
	atomic_store_explicit(&c->user_nodelay, on != 0, memory_order_relaxed);
}

int conn_nonblock(const struct conn *c)
{
	return atomic_load_explicit(&c->user_nonblock, memory_order_relaxed);
}

void conn_set_nonblock(struct conn *c, int on)
{
	atomic_store_explicit(&c->user_nonblock, on != 0, memory_order_relaxed);
}

int conn_add_fd(struct conn *c, int fd)
{
	int rc = 0;

	pthread_mutex_lock(&c->lock);
	if (c->nfds == c->capfds) {
		int cap = c->capfds * 2;
		int *v = malloc((size_t)cap * sizeof(*v));

		if (v == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		memcpy(v, c->fds, (size_t)c->nfds * sizeof(*v));
		if (c->fds != c->fds_inline)
			free(c->fds);
		c->fds = v;
		c->capfds = cap;
	}
	c->fds[c->nfds++] = fd;
out:
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int conn_take_so_error(struct conn *c)
{
	int e;

	pthread_mutex_lock(&c->lock);
	e = c->so_error;
	c->so_error = 0;
	pthread_mutex_unlock(&c->lock);
	return e;
}

/* Whether the session may be used in STATE at all (cleartext and failed ones need no owner). */
int conn_claim_needed(const struct conn *c)
{
	return c->state != CONN_PLAIN && c->state != CONN_FAILED;
}

/*
 * Whether this process may seal and open the session's records (c->lock
 * held): 0, or -ECONNRESET once another process has claimed it since the
 * fork. A loser fails as a plain socket whose connection is gone: every I/O
 * gets ECONNRESET, readiness reports an error, and it never writes to the
 * socket again (no alert, no close_notify: the records are the owner's).
 */
int conn_claim(struct conn *c)
{
	uint64_t want;

	if (c->claim == CLAIM_OWNER)
		return 0;
	if (c->claim == CLAIM_CONTENDER) {
		want = c->claim_gen << 1;
		if (atomic_compare_exchange_strong(c->claim_word, &want, want | 1)) {
			c->claim = CLAIM_OWNER;
			return 0;
		}
		c->claim = CLAIM_LOST;
		log_warn("%s: another process has used this connection since fork(): "
			 "this one gets ECONNRESET",
			 conn_desc(c));
	}
	if (conn_claim_needed(c)) {
		c->state = CONN_FAILED;
		c->err = outcome_errno(OUTCOME_RESET);
	}
	return -outcome_errno(OUTCOME_RESET);
}

/* fork(), in the parent before it (c->lock held): an owner's conn becomes contended. */
static void claim_fork_prepare(struct conn *c)
{
	uint64_t gen;
	void *m;

	if (c->closed || c->claim != CLAIM_OWNER || !conn_claim_needed(c))
		return;
	if (c->claim_word == NULL) {
		m = mmap(NULL, sizeof(*c->claim_word), PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED) {
			/* Without shared memory the parent keeps it; the child loses (child
			 * handler). */
			log_warn("%s: no shared memory for fork(): %s; the child cannot use it",
				 conn_desc(c), strerror(errno));
			return;
		}
		c->claim_word = m;
		atomic_init(c->claim_word, 0);
	}
	gen = (atomic_load(c->claim_word) >> 1) + 1;
	atomic_store(c->claim_word, gen << 1);
	c->claim_gen = gen;
	c->claim = CLAIM_CONTENDER;
}

/*
 * In the child: an OWNER here is one the parent claimed between prepare and
 * fork (the child then loses the race it finds already run) or one that
 * could not be shared (the child loses).
 */
static void claim_fork_child(struct conn *c)
{
	if (c->claim != CLAIM_OWNER || !conn_claim_needed(c) || c->closed)
		return;
	c->claim = c->claim_word != NULL ? CLAIM_CONTENDER : CLAIM_LOST;
}

/*
 * Only the list lock is held across fork(): holding every conn's lock would
 * mean thousands of locks. A conn another thread was using at that instant
 * is left mid-operation in the child, which is the fork(2) rule for any
 * state shared with other threads.
 */
void conn_fork_prepare(void)
{
	pthread_mutex_lock(&all_lock);
	/* Each conn's lock only briefly: a thread using it never waits while holding it. */
	for (struct conn_link *l = all_head.next; l != &all_head; l = l->next) {
		pthread_mutex_lock(&l->c->lock);
		claim_fork_prepare(l->c);
		pthread_mutex_unlock(&l->c->lock);
	}
}

void conn_fork_parent(void)
{
	pthread_mutex_unlock(&all_lock);
}

void conn_fork_child(void)
{
	/* Only this thread exists in the child: fresh locks are the simplest truth. */
	for (struct conn_link *l = all_head.next; l != &all_head; l = l->next) {
		pthread_mutex_init(&l->c->lock, NULL);
		claim_fork_child(l->c);
	}
	pthread_mutex_init(&all_lock, NULL);
	conn_own_fork_child();
}
