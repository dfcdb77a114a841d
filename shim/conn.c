/*
 * conn.c - a wrapped connection: handshake, read, write, shutdown, readiness,
 * and the blocking emulation that makes it look like the plain socket.
 *
 * Every operation is a loop of "step under the lock, then wait without it":
 * the step runs the engine until it needs the socket (want POLLIN/POLLOUT) and
 * the wait is a poll() on the socket, bounded by SO_RCVTIMEO/SO_SNDTIMEO and
 * by the handshake deadline. A non-blocking caller gets EAGAIN instead of the
 * wait.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "engine_load.h"
#include "epreg.h"
#include "fdtab.h"
#include "listeners.h"
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

/*
 * The TLS engine, set once by the first wrapped connection. Read through
 * engine(): an acquire load (a plain load on x86) that pairs with the single
 * compare-and-swap that sets it, so every thread sees the table it points to.
 */
static const struct engine_ops *engine_ptr;

static inline const struct engine_ops *engine(void)
{
	return __atomic_load_n(&engine_ptr, __ATOMIC_ACQUIRE);
}

#define E engine()

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- life cycle ------------------------------------------------------------------- */

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
	free(c->desc);
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
	c->desc = strdup(desc);
	if (c->desc == NULL) {
		free(p);
		return NULL;
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

static int session_new(struct conn *c, char *err, size_t errlen)
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
		__atomic_compare_exchange_n(&engine_ptr, &none, e, 0, __ATOMIC_ACQ_REL,
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
	if (session_new(c, why, sizeof(why)) != 0) {
		log_error("%s: %s", desc, why);
		conn_put(c);
		*err = ECONNREFUSED;
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

struct conn *conn_new_server(int fd, const struct policy_rule *rule, const char *desc,
			     int user_nonblock, int user_nodelay, int *err)
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

/* What the handshake negotiated, for the statistics. */
static void stats_handshake_done(struct conn *c)
{
	struct ts_info info;

	if (stats_rule_of(c->rule) == NULL)
		return;
	E->info(c->ts, &info);
	stats_handshake(c->rule, info.version, info.cipher, info.resumed);
}

/* ---- written before the handshake completed ------------------------------------- */

static void early_free(struct conn *c)
{
	free(c->early);
	c->early = NULL;
	c->early_len = c->early_off = 0;
}

static size_t early_held(const struct conn *c)
{
	return c->early_len - c->early_off;
}

/*
 * Keeps up to LEN bytes the program writes while its handshake is still going
 * on (they are encrypted by out_flush() once it completes). Returns the count
 * kept, -EAGAIN when CONN_EARLY_MAX bytes are held already, or -ENOMEM.
 */
static ssize_t early_put(struct conn *c, const void *buf, size_t len)
{
	size_t held = early_held(c), n = len;
	unsigned char *b;

	if (held >= CONN_EARLY_MAX)
		return -EAGAIN;
	if (n > CONN_EARLY_MAX - held)
		n = CONN_EARLY_MAX - held;
	if (c->early_off > 0) {
		memmove(c->early, c->early + c->early_off, held);
		c->early_off = 0;
		c->early_len = held;
	}
	b = realloc(c->early, held + n);
	if (b == NULL)
		return -ENOMEM;
	memcpy(b + held, buf, n);
	c->early = b;
	c->early_len = held + n;
	return (ssize_t)n;
}

/* Whether anything the program wrote is still to be sent (kept plaintext or ciphertext). */
static int out_pending(const struct conn *c)
{
	return early_held(c) > 0 || (c->ts != NULL && E->output_pending(c->ts));
}

/*
 * OPEN: encrypts and sends what was written before the handshake completed,
 * then the engine's kept ciphertext, then a shutdown(SHUT_WR) the program
 * asked for meanwhile (close_notify, then FIN). Returns 0 when all is out,
 * TS_WANT_WRITE / TS_WANT_READ, or the engine's TS_SYSERR / TS_FATAL.
 */
static int out_flush(struct conn *c)
{
	int rc;

	while (early_held(c) > 0) {
		ssize_t r = E->write(c->ts, c->early + c->early_off, early_held(c));

		if (r <= 0)
			return r == 0 ? TS_WANT_WRITE : (int)r;
		stats_bytes_out(c->rule, (size_t)r);
		c->early_off += (size_t)r;
	}
	if (c->early != NULL)
		early_free(c);
	rc = E->flush(c->ts);
	if (rc != 0 || !c->shut_pending)
		return rc;
	rc = E->close_notify(c->ts);
	if (rc != 0)
		return rc;
	c->notify_sent = 1;
	c->shut_pending = 0;
	real.shutdown(c->fd, c->rd_shut ? SHUT_RDWR : SHUT_WR);
	log_debug("%s: sent close_notify", c->desc);
	return 0;
}

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
static void own_add(struct conn *c)
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
static void own_remove(struct conn *c)
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

/* ---- failures --------------------------------------------------------------------- */

/*
 * The connection is dead for TLS reasons: log why, make every later I/O fail
 * with ECONNRESET, and end the TCP stream so that nothing more can be sent.
 */
static int fail_at(struct conn *c, int level, const char *reason)
{
	log_msg(level, "%s: %s", c->desc, reason);
	stats_failed(c->rule, reason);
	if (c->early_len > c->early_off)
		log_msg(level, "%s: %zu bytes written before the handshake failed were discarded",
			c->desc, c->early_len - c->early_off);
	early_free(c);
	c->shut_pending = 0;
	if (c->ts != NULL)
		E->flush(c->ts); /* best effort: let the alert reach the peer */
	c->state = CONN_FAILED;
	c->tls_failed = 1;
	c->err = ECONNRESET;
	c->so_error = ECONNRESET;
	real.shutdown(c->fd, SHUT_RDWR);
	return -ECONNRESET;
}

static int fail(struct conn *c, const char *reason)
{
	return fail_at(c, c->role == TLS_ROLE_CLIENT ? LOG_LVL_ERROR : LOG_LVL_WARN, reason);
}

static int peer_gone(int err)
{
	return err == ECONNRESET || err == EPIPE || err == ECONNABORTED;
}

/*
 * The level of a failed accept handshake (engine result RC; our client failing
 * is always an error). What clients do routinely is not a warning: going away before sending
 * anything (port checks, a load generator stopping) is debug; going away in the middle of a
 * handshake, or sending bytes that are not TLS, is info. A failure once the client's first
 * handshake message arrived (verification, no common version or cipher, an
 * alert) stays a warning, as does any other socket error.
 */
static int handshake_fail_level(struct conn *c, int rc)
{
	int progress = E->peer_progress(c->ts);

	switch (rc) {
	case TS_SYSERR:
		if (!peer_gone(E->sys_errno(c->ts)))
			return LOG_LVL_WARN;
		return progress == TS_PEER_SILENT ? LOG_LVL_DEBUG : LOG_LVL_INFO;
	case TS_EOF:
	case TS_CLOSED:
		return progress == TS_PEER_SILENT ? LOG_LVL_DEBUG : LOG_LVL_INFO;
	case TS_FATAL:
		return progress == TS_PEER_SPOKE ? LOG_LVL_WARN : LOG_LVL_INFO;
	default:
		return LOG_LVL_WARN;
	}
}

static int fail_rc(struct conn *c, int rc, const char *during)
{
	int level = c->role == TLS_ROLE_CLIENT   ? LOG_LVL_ERROR
		    : c->state == CONN_HANDSHAKE ? handshake_fail_level(c, rc)
						 : LOG_LVL_WARN;
	char why[320];

	switch (rc) {
	case TS_FATAL:
		return fail_at(c, level, E->reason(c->ts));
	case TS_SYSERR:
		snprintf(why, sizeof(why), "%s: %s", during, strerror(E->sys_errno(c->ts)));
		return fail_at(c, level, why);
	case TS_EOF:
	case TS_CLOSED:
		snprintf(why, sizeof(why), "%s: the peer closed the connection%s", during,
			 level == LOG_LVL_DEBUG ? " before sending anything" : "");
		return fail_at(c, level, why);
	default:
		snprintf(why, sizeof(why), "%s: unexpected engine result %d", during, rc);
		return fail_at(c, level, why);
	}
}

/* ---- one owner across fork (conn.h) ------------------------------------------------- */

/* Whether the session may be used in STATE at all (cleartext and failed ones need no owner). */
static int claim_needed(const struct conn *c)
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
static int claim(struct conn *c)
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
			 c->desc);
	}
	if (claim_needed(c)) {
		c->state = CONN_FAILED;
		c->err = ECONNRESET;
	}
	return -ECONNRESET;
}

/* fork(), in the parent before it (c->lock held): an owner's conn becomes contended. */
static void claim_fork_prepare(struct conn *c)
{
	uint64_t gen;
	void *m;

	if (c->closed || c->claim != CLAIM_OWNER || !claim_needed(c))
		return;
	if (c->claim_word == NULL) {
		m = mmap(NULL, sizeof(*c->claim_word), PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED) {
			/* Without shared memory the parent keeps it; the child loses (child
			 * handler). */
			log_warn("%s: no shared memory for fork(): %s; the child cannot use it",
				 c->desc, strerror(errno));
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
	if (c->claim != CLAIM_OWNER || !claim_needed(c) || c->closed)
		return;
	c->claim = c->claim_word != NULL ? CLAIM_CONTENDER : CLAIM_LOST;
}

/* ---- steps (called with c->lock held; never wait) ---------------------------------- */

static int step_connect(struct conn *c, short *want)
{
	struct pollfd p = {.fd = c->fd, .events = POLLOUT};
	int err = 0;
	socklen_t len = sizeof(err);

	if (real.poll(&p, 1, 0) == 0) {
		*want = POLLOUT;
		return -EAGAIN;
	}
	if (real.getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err != 0) {
		/* A TCP failure, not a TLS one: the program sees it as it is. */
		log_info("%s: %s", c->desc, strerror(err));
		c->state = CONN_FAILED;
		c->err = err;
		c->so_error = err;
		return -err;
	}
	if (c->st != NULL) {
		/*
		 * starttls=: connect() returns after the dialogue and the handshake,
		 * as before the early return existed: what the program reads and
		 * writes first depends on them (stls_pg_filter, the greeting).
		 */
		c->state = CONN_STARTTLS;
		return 0;
	}
	c->state = CONN_HANDSHAKE;
	/*
	 * A plain connect() is done here. Wait a little for the handshake, so that
	 * a failure can still fail connect(); but not for our own listener, whose
	 * accept() may come only after connect() returns.
	 */
	if (c->own_listener) {
		c->early_open = 1;
		own_add(c);
	} else {
		unsigned ms = c->rule->opt.handshake_timeout_ms;

		if (ms > CONN_CONNECT_WAIT_MS)
			ms = CONN_CONNECT_WAIT_MS;
		c->connect_wait_ns = now_ns() + (uint64_t)ms * 1000000u;
	}
	return 0;
}

/* The connect wait is over: the program goes on while the handshake does. */
static void connect_wait_check(struct conn *c, uint64_t now)
{
	if (c->early_open || c->connect_wait_ns == 0 || now < c->connect_wait_ns)
		return;
	c->early_open = 1;
	log_debug("%s: connected; the handshake goes on in the next I/O", c->desc);
}

/*
 * The peer hung up during the handshake, without an alert: a client that
 * connected and closed (port probes, clients whose connect() returned before
 * the handshake), or a server program that closed a connection it accepted
 * without reading, after our connect() had returned. The program reads the
 * end of the stream, as from the plain socket. Its first write "succeeds"
 * (the kernel would take it and the peer's reset would drop it: here it is
 * dropped, never sent), later ones fail with EPIPE.
 */
static int hangup(struct conn *c, int rc)
{
	int level = c->role == TLS_ROLE_SERVER ? handshake_fail_level(c, rc) : LOG_LVL_INFO;
	char why[320];

	if (rc == TS_SYSERR)
		snprintf(why, sizeof(why), "handshake: %s", strerror(E->sys_errno(c->ts)));
	else
		snprintf(why, sizeof(why), "handshake: the peer closed the connection%s",
			 level == LOG_LVL_DEBUG ? " before sending anything" : "");
	fail_at(c, level, why);
	c->hs_hangup = 1;
	c->rd_eof = 1;
	c->err = EPIPE;
	c->so_error = 0;
	return -EPIPE;
}

/* ---- starttls= (the machines are in starttls*.c) ------------------------------------ */

/* SMTP's EHLO argument: our address as a literal (RFC 5321 4.1.3), as a client without a name. */
static void starttls_helo(struct conn *c)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char a[INET6_ADDRSTRLEN] = "127.0.0.1";

	if (c->st->proto != POLICY_STARTTLS_SMTP || c->st->phase != 0 || c->st->in_len != 0)
		return;
	if (real.getsockname(c->fd, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, a, sizeof(a));
		else if (ss.ss_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, a, sizeof(a));
	}
	snprintf(c->st->helo, sizeof(c->st->helo), "[%s%s]",
		 ss.ss_family == AF_INET6 ? "IPv6:" : "", a);
}

static int starttls_fail(struct conn *c, int level, const char *what)
{
	char why[STLS_WHY_MAX + 64];

	snprintf(why, sizeof(why), "starttls=%s: %s", policy_starttls_str(c->st->proto), what);
	return fail_at(c, c->role == TLS_ROLE_CLIENT ? LOG_LVL_ERROR : level, why);
}

/*
 * The protocol's upgrade, on the raw socket: send what the machine says, read
 * what it asks for (a server never past the request), until it says TLS
 * (CONN_HANDSHAKE), cleartext (accept auto: CONN_PLAIN) or fail. The
 * handshake-timeout bounds the dialogue and the handshake together.
 */
static int step_starttls(struct conn *c, short *want)
{
	struct stls *s = c->st;
	uint64_t now = now_ns();
	char why[128];
	ssize_t n;

	if (c->hs_deadline_ns == 0) {
		c->hs_deadline_ns = now + (uint64_t)c->rule->opt.handshake_timeout_ms * 1000000u;
		starttls_helo(c);
	} else if (now >= c->hs_deadline_ns) {
		snprintf(why, sizeof(why), "the dialogue took longer than %u ms",
			 c->rule->opt.handshake_timeout_ms);
		return starttls_fail(c, LOG_LVL_INFO, why);
	}
	for (;;) {
		if (c->st_out_off < s->out_len) {
			n = real.send(c->fd, s->out + c->st_out_off, s->out_len - c->st_out_off,
				      MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				*want = POLLOUT;
				return -EAGAIN;
			}
			if (n < 0)
				return starttls_fail(c, LOG_LVL_INFO, strerror(errno));
			c->st_out_off += (size_t)n;
			continue;
		}
		s->out_len = 0;
		c->st_out_off = 0;
		switch (stls_step(s)) {
		case STLS_WANT_WRITE:
			continue;
		case STLS_WANT_READ: {
			size_t room = sizeof(s->in) - s->in_len;

			n = real.recv(c->fd, s->in + s->in_len,
				      s->read_max < room ? s->read_max : room, MSG_DONTWAIT);
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				*want = POLLIN;
				return -EAGAIN;
			}
			if (n < 0)
				return starttls_fail(c, LOG_LVL_INFO, strerror(errno));
			if (n == 0)
				return starttls_fail(c,
						     s->in_len == 0 ? LOG_LVL_DEBUG : LOG_LVL_INFO,
						     "the peer closed the connection");
			s->in_len += (size_t)n;
			continue;
		}
		case STLS_TLS:
			log_debug("%s: starttls=%s: upgraded; TLS handshake next", c->desc,
				  policy_starttls_str(s->proto));
			c->state = CONN_HANDSHAKE;
			return 0;
		case STLS_PLAIN:
			log_info("%s: cleartext client (auto, starttls=%s)", c->desc,
				 policy_starttls_str(s->proto));
			c->state = CONN_PLAIN;
			stats_decided(c->rule, POLICY_PLAIN);
			return 0;
		default:
			return starttls_fail(c, LOG_LVL_WARN, s->why);
		}
	}
}

/* accept starttls=smtp: the cleartext before STARTTLS is still filtered. */
static int smtp_filtering(const struct conn *c)
{
	return c->st != NULL && c->role == TLS_ROLE_SERVER &&
	       c->st->proto == POLICY_STARTTLS_SMTP && !c->st->srv_done;
}

/* Bytes the program reads before any of the session's: a synthesised greeting, an 'N'. */
static size_t greet_pending(const struct conn *c)
{
	return c->st != NULL ? c->st->greet_len - c->st->greet_off : 0;
}

/* Hands out what greet_pending() counts (c->lock held); frees the dialogue's state when done. */
static ssize_t greet_read(struct conn *c, void *buf, size_t len, int flags)
{
	struct stls *s = c->st;
	size_t n = greet_pending(c);

	if (n > len)
		n = len;
	if (buf != NULL && !(flags & MSG_TRUNC))
		memcpy(buf, s->greet + s->greet_off, n);
	if (flags & MSG_PEEK)
		return (ssize_t)n;
	s->greet_off += n;
	if (s->greet_off == s->greet_len && smtp_filtering(c)) {
		s->greet_off = s->greet_len = 0; /* the next line the client sends goes here */
	} else if (s->greet_off == s->greet_len && !s->pg_filter) {
		free(c->st);
		c->st = NULL;
	}
	return (ssize_t)n;
}

/* Sends the shim's own pending answer (st->out): 0 when none is left, -EAGAIN, -errno. */
static int st_flush(struct conn *c, short *want)
{
	struct stls *s = c->st;
	ssize_t n;

	while (c->st_out_off < s->out_len) {
		n = real.send(c->fd, s->out + c->st_out_off, s->out_len - c->st_out_off,
			      MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			*want = POLLOUT;
			return -EAGAIN;
		}
		if (n < 0)
			return -errno;
		c->st_out_off += (size_t)n;
	}
	s->out_len = 0;
	c->st_out_off = 0;
	return 0;
}

/*
 * accept starttls=smtp, before STARTTLS: the program's read of the client's
 * cleartext, a line at a time through stls_smtp_srv_input(). Returns bytes,
 * 0 at the end of the stream, -EAGAIN, -errno, or -EALREADY when the state
 * changed (to HANDSHAKE, or to an unfiltered PLAIN): the caller starts over.
 */
static ssize_t smtp_srv_recv(struct conn *c, void *buf, size_t len, int flags, short *want)
{
	struct stls *s = c->st;
	ssize_t n;
	int rc;

	for (;;) {
		rc = st_flush(c, want);
		if (rc != 0)
			return rc;
		if (greet_pending(c) > 0)
			return greet_read(c, buf, len, flags);
		switch (stls_smtp_srv_input(s)) {
		case STLS_WANT_READ: {
			size_t room = sizeof(s->in) - s->in_len;

			if (greet_pending(c) > 0)
				continue; /* a line for the program first */
			n = real.recv(c->fd, s->in + s->in_len,
				      s->read_max < room ? s->read_max : room, MSG_DONTWAIT);
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				*want = POLLIN;
				return -EAGAIN;
			}
			if (n < 0)
				return -errno;
			if (n == 0) {
				/* The end of the stream: a partial line is the program's, then 0.
				 */
				if (s->in_len == 0)
					return 0;
				stls_greet_add(s, s->in, s->in_len);
				stls_consume(s, s->in_len);
				continue;
			}
			s->in_len += (size_t)n;
			continue;
		}
		case STLS_WANT_WRITE:
			continue;
		case STLS_PLAIN:
			if (greet_pending(c) > 0)
				continue;
			/* auto: the client went on in cleartext, unfiltered from now on. */
			free(c->st);
			c->st = NULL;
			stats_decided(c->rule, POLICY_PLAIN);
			log_info("%s: cleartext client (auto, starttls=smtp)", c->desc);
			return -EALREADY;
		case STLS_TLS:
			log_debug("%s: starttls=smtp: the client sent STARTTLS; TLS handshake next",
				  c->desc);
			c->state = CONN_HANDSHAKE;
			free(c->st); /* nothing is left in it: lines are taken one at a time */
			c->st = NULL;
			return -EALREADY;
		default:
			return starttls_fail(c, LOG_LVL_WARN, s->why);
		}
	}
}

/* The program's write before STARTTLS: -EALREADY when it goes to the client as it is. */
static ssize_t smtp_srv_send(struct conn *c, const void *buf, size_t len, short *want)
{
	size_t take;
	int direct, rc = st_flush(c, want);

	if (rc != 0)
		return rc;
	take = stls_smtp_srv_output(c->st, buf, len, &direct);
	if (direct)
		return -EALREADY;
	/* Kept bytes count as written; what could not go yet goes before the next I/O. */
	rc = st_flush(c, want);
	return rc == 0 || rc == -EAGAIN ? (ssize_t)take : rc;
}

static int step_handshake(struct conn *c, short *want)
{
	char why[320];
	uint64_t now = now_ns();
	int rc;

	if (c->ts == NULL && session_new(c, why, sizeof(why)) != 0)
		return fail(c, why);
	if (c->hs_deadline_ns == 0) {
		c->hs_deadline_ns = now + (uint64_t)c->rule->opt.handshake_timeout_ms * 1000000u;
	} else if (now >= c->hs_deadline_ns) {
		snprintf(why, sizeof(why), "handshake timed out after %u ms",
			 c->rule->opt.handshake_timeout_ms);
		return fail(c, why);
	}
	rc = E->handshake(c->ts);
	if (rc == TS_WANT_READ || rc == TS_WANT_WRITE)
		connect_wait_check(c, now);
	switch (rc) {
	case 0:
		c->state = CONN_OPEN;
		stats_handshake_done(c);
		/* A client says at info which name it verified, on every connection. */
		if (log_enabled(c->role == TLS_ROLE_CLIENT ? LOG_LVL_INFO : LOG_LVL_DEBUG)) {
			E->describe(c->ts, why, sizeof(why));
			log_msg(c->role == TLS_ROLE_CLIENT ? LOG_LVL_INFO : LOG_LVL_DEBUG,
				"%s: TLS established: %s", c->desc, why);
		}
		return 0;
	case TS_WANT_READ:
		*want = POLLIN;
		return -EAGAIN;
	case TS_WANT_WRITE:
		*want = POLLOUT;
		return -EAGAIN;
	case TS_EOF:
	case TS_SYSERR:
		/* Bytes the program wrote and the peer will never see are a reset, as plain. */
		if ((c->role == TLS_ROLE_SERVER || (c->early_open && early_held(c) == 0)) &&
		    (rc == TS_EOF || peer_gone(E->sys_errno(c->ts))))
			return hangup(c, rc);
		return fail_rc(c, rc, "handshake");
	default:
		return fail_rc(c, rc, "handshake");
	}
}

/* accept auto: a TLS ClientHello starts with a handshake record (0x16, 0x03 ...). */
static int step_auto(struct conn *c, short *want)
{
	unsigned char b[2];
	uint64_t now = now_ns();
	char why[128];
	ssize_t n;

	/* A client that never speaks is bounded like a handshake. */
	if (c->hs_deadline_ns == 0) {
		c->hs_deadline_ns = now + (uint64_t)c->rule->opt.handshake_timeout_ms * 1000000u;
	} else if (now >= c->hs_deadline_ns) {
		snprintf(why, sizeof(why), "the client sent nothing within %u ms (auto)",
			 c->rule->opt.handshake_timeout_ms);
		return fail(c, why);
	}
	n = real.recv(c->fd, b, sizeof(b), MSG_PEEK | MSG_DONTWAIT);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			*want = POLLIN;
			return -EAGAIN;
		}
		return -errno;
	}
	if (n > 0 && b[0] == 0x16 && (n < 2 || b[1] == 0x03)) {
		c->state = CONN_HANDSHAKE;
		log_debug("%s: client speaks TLS (auto)", c->desc);
		return 0;
	}
	c->state = CONN_PLAIN;
	stats_decided(c->rule, POLICY_PLAIN);
	if (n == 0)
		log_debug("%s: the client closed before sending anything (auto)", c->desc);
	else
		log_info("%s: cleartext client (auto)", c->desc);
	return 0;
}

/* Brings the connection to OPEN or PLAIN. 0 when there, -EAGAIN (with *want), -errno. */
static int step_ready(struct conn *c, short *want)
{
	int rc;

	for (;;) {
		if (c->closed)
			return -EBADF;
		if (c->claim != CLAIM_OWNER && c->state != CONN_AUTO_DETECT && claim_needed(c) &&
		    claim(c) != 0)
			return -ECONNRESET;
		switch (c->state) {
		case CONN_OPEN:
		case CONN_PLAIN:
			return 0;
		case CONN_FAILED:
			return -c->err;
		case CONN_TCP_CONNECTING:
			rc = step_connect(c, want);
			break;
		case CONN_STARTTLS:
			rc = step_starttls(c, want);
			break;
		case CONN_AUTO_DETECT:
			rc = step_auto(c, want);
			break;
		case CONN_HANDSHAKE:
			rc = step_handshake(c, want);
			break;
		default:
			return -EINVAL;
		}
		if (rc != 0)
			return rc;
	}
}

/* The peer ended the stream: reads give 0 from now on. */
static void note_eof(struct conn *c, ssize_t how)
{
	if (c->rd_eof)
		return;
	c->rd_eof = 1;
	if (how == TS_CLOSED)
		log_debug("%s: peer closed the connection (close_notify)", c->desc);
	else
		log_info("%s: peer closed the connection without close_notify", c->desc);
}

/*
 * The program's latest call family (conn_set_io), for the session's socket
 * calls; unless WRITING (the program's own write), writes the session makes
 * must not raise SIGPIPE (TS_IO_QUIET). Returns the family.
 */
static int use_io_family(struct conn *c, int writing)
{
	int io = atomic_load_explicit(&c->io_family, memory_order_relaxed);

	if (c->ts != NULL)
		E->set_io(c->ts, io | (writing ? 0 : TS_IO_QUIET));
	return io;
}

static void hold_release(struct conn *c, short *kev);

static ssize_t step_recv(struct conn *c, void *buf, size_t len, int flags, short *want)
{
	int io = use_io_family(c, 0), rc = step_ready(c, want);
	ssize_t r;

	if (rc != 0)
		return c->hs_hangup ? 0 : rc;
	if (greet_pending(c) > 0 && !c->rd_shut)
		return len == 0 ? 0 : greet_read(c, buf, len, flags);
	if (c->state == CONN_PLAIN && c->st != NULL && c->role == TLS_ROLE_SERVER &&
	    c->st->proto == POLICY_STARTTLS_SMTP) {
		r = smtp_srv_recv(c, buf, len, flags, want);
		return r == -EALREADY ? step_recv(c, buf, len, flags, want) : r;
	}
	if (c->state == CONN_PLAIN) {
		/* The socket is non-blocking underneath: read() is recv(MSG_DONTWAIT). */
		if (io == TS_IO_RW && flags == 0)
			r = real.read(c->fd, buf, len);
		else
			r = real.recv(c->fd, buf, len, flags | MSG_DONTWAIT);
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			*want = POLLIN;
			return -EAGAIN;
		}
		return r < 0 ? -errno : r;
	}
	if (c->rd_eof || c->rd_shut || len == 0)
		return 0;
	hold_release(c, NULL); /* a request held back must go before waiting for its answer */
	if (out_pending(c))
		out_flush(c);
	r = E->read(c->ts, buf, len, (flags & MSG_PEEK) != 0);
	if (r > 0) {
		size_t done = (size_t)r;

		/*
		 * A socket returns everything queued, up to LEN; TLS hands out one
		 * record at a time. Take more records while they can be had without
		 * waiting: decrypted, buffered by OpenSSL's read-ahead, or still in
		 * the kernel (the last socket read filled its buffer). Event loops
		 * take a short read beside a hang-up for the end of the stream.
		 */
		while (!(flags & MSG_PEEK) && done < len && E->more_input(c->ts)) {
			r = E->read(c->ts, (char *)buf + done, len - done, 0);
			if (r <= 0) {
				/* The end of the stream found on the way is the next read's 0. */
				if (r == TS_CLOSED || r == TS_EOF)
					note_eof(c, r);
				break;
			}
			done += (size_t)r;
		}
		if (!(flags & MSG_PEEK))
			stats_bytes_in(c->rule, done);
		return (ssize_t)done;
	}
	switch (r) {
	case TS_WANT_READ:
		/* Bytes the socket could not take yet must reach the peer to be answered. */
		*want = c->hold_len > 0 || out_pending(c) ? POLLIN | POLLOUT : POLLIN;
		return -EAGAIN;
	case TS_WANT_WRITE:
		*want = POLLOUT;
		return -EAGAIN;
	case TS_CLOSED:
	case TS_EOF:
		note_eof(c, r);
		return 0;
	case TS_SYSERR:
		rc = E->sys_errno(c->ts);
		c->rd_eof = 1;
		return -(rc ? rc : EIO);
	default:
		return fail_rc(c, (int)r, "read");
	}
}

/*
 * Seals LEN bytes into records: bytes taken, -EAGAIN (with *want) or -errno.
 * KERNEL_SIGNALS: the session writes with write()/writev(), which raise SIGPIPE.
 */
static ssize_t engine_write(struct conn *c, const void *buf, size_t len, int kernel_signals,
			    short *want)
{
	ssize_t r = E->write(c->ts, buf, len);
	int rc;

	if (r > 0) {
		stats_bytes_out(c->rule, (size_t)r);
		return r;
	}
	switch (r) {
	case TS_WANT_WRITE:
		*want = POLLOUT;
		return -EAGAIN;
	case TS_WANT_READ:
		*want = POLLIN;
		return -EAGAIN;
	case TS_SYSERR:
		rc = E->sys_errno(c->ts);
		/* write()/writev() raised SIGPIPE already, as on the plain socket. */
		if (rc == EPIPE && kernel_signals)
			c->epipe_signalled = 1;
		return -(rc ? rc : EIO);
	default:
		return fail_rc(c, (int)r, "write");
	}
}

#define HOLD_MAX 16384 /* the plaintext of one record (RFC 8446 section 5.1) */

/*
 * Seals the held bytes (an OPEN connection, c->lock held): 0 when none are
 * left, -EAGAIN (with *want) while the socket cannot take them, or -errno.
 */
static int hold_seal(struct conn *c, int kernel_signals, short *want)
{
	ssize_t r;

	while (c->hold_len > 0) {
		r = engine_write(c, c->hold, c->hold_len, kernel_signals, want);
		if (r < 0)
			return (int)r;
		c->hold_len -= (size_t)r;
		memmove(c->hold, c->hold + r, c->hold_len);
	}
	free(c->hold);
	c->hold = NULL;
	return 0;
}

/*
 * The program said more is coming (MORE: TCP_CORK or MSG_MORE), or bytes are
 * held from when it did: gather into one record up to the record size instead
 * of one record per write (nginx writes the headers, then sendfile()s the body,
 * under TCP_CORK). Held bytes count as sent, as in a corked socket's buffer.
 * Returns bytes taken, -EAGAIN (with *want) or -errno.
 */
static ssize_t send_gathered(struct conn *c, const char *buf, size_t len, int more,
			     int kernel_signals, short *want)
{
	size_t n;
	int rc;

	if (c->hold_len == HOLD_MAX) {
		rc = hold_seal(c, kernel_signals, want);
		if (rc != 0)
			return rc;
	}
	/* Whole records need no copy. */
	if (c->hold_len == 0 && len >= HOLD_MAX)
		return engine_write(c, buf, more ? len - len % HOLD_MAX : len, kernel_signals,
				    want);
	if (c->hold == NULL) {
		c->hold = malloc(HOLD_MAX);
		if (c->hold == NULL)
			return engine_write(c, buf, len, kernel_signals, want);
	}
	n = len < HOLD_MAX - c->hold_len ? len : HOLD_MAX - c->hold_len;
	memcpy(c->hold + c->hold_len, buf, n);
	c->hold_len += n;
	if (more && c->hold_len < HOLD_MAX)
		return (ssize_t)n;
	rc = hold_seal(c, kernel_signals, want);
	return rc == 0 || rc == -EAGAIN ? (ssize_t)n : rc;
}

/*
 * starttls=postgres, client: the program's first message (c->lock held, OPEN).
 * Its SSLRequest/GSSENCRequest is answered 'N' by the shim (stls_pg_filter);
 * other bytes go into the session as they are. Returns as send_gathered().
 */
static ssize_t send_pg_filtered(struct conn *c, const char *buf, size_t len, int more,
				int kernel_signals, short *want)
{
	size_t fwd, take;
	ssize_t r;

	/* Room first: bytes the filter gives back must not be lost to a failed malloc. */
	if (c->hold == NULL) {
		c->hold = malloc(HOLD_MAX);
		if (c->hold == NULL)
			return -ENOMEM;
	}
	take = stls_pg_filter(c->st, buf, len, &fwd);
	if (fwd > 0) {
		memcpy(c->hold + c->hold_len, c->st->pbuf, fwd); /* hold_len <= 8 until now */
		c->hold_len += fwd;
		c->st->pbuf_len = 0;
	}
	if (!c->st->pg_filter && greet_pending(c) == 0) {
		free(c->st);
		c->st = NULL;
	}
	if (take == len) {
		if (fwd > 0 && !more) {
			r = hold_seal(c, kernel_signals, want);
			if (r < 0 && r != -EAGAIN)
				return r;
		}
		return (ssize_t)take;
	}
	r = send_gathered(c, buf + take, len - take, more, kernel_signals, want);
	if (r < 0)
		return take > 0 ? (ssize_t)take : r;
	return r + (ssize_t)take;
}

static ssize_t step_send_io(struct conn *c, const void *buf, size_t len, int flags, short *want)
{
	int io = use_io_family(c, 1), rc = step_ready(c, want);
	int kernel_signals = io == TS_IO_RW || io == TS_IO_VEC; /* no MSG_NOSIGNAL there */
	int more = c->corked || (flags & MSG_MORE);
	ssize_t r;

	c->epipe_signalled = 0;
	if (c->hs_hangup && !c->hangup_wrote && !c->wr_shut) {
		c->hangup_wrote = len > 0; /* see hangup() */
		return (ssize_t)len;
	}
	/* Connected for the program before the handshake: keep the bytes until the keys exist. */
	if (rc == -EAGAIN && c->early_open && c->state == CONN_HANDSHAKE)
		return c->wr_shut ? -EPIPE : early_put(c, buf, len);
	if (rc != 0)
		return rc;
	if (c->state == CONN_PLAIN && smtp_filtering(c)) {
		r = smtp_srv_send(c, buf, len, want);
		if (r != -EALREADY)
			return r;
	}
	if (c->state == CONN_PLAIN) {
		if (io == TS_IO_RW && flags == 0)
			r = real.write(c->fd, buf, len);
		else
			r = real.send(c->fd, buf, len, flags | MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r < 0 && errno == EPIPE && io == TS_IO_RW && flags == 0)
			c->epipe_signalled = 1;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			*want = POLLOUT;
			return -EAGAIN;
		}
		return r < 0 ? -errno : r;
	}
	if (c->wr_shut)
		return -EPIPE;
	if (len == 0)
		return 0;
	/* In order: what was written before the handshake goes first. */
	if (early_held(c) > 0) {
		rc = out_flush(c);
		if (rc == TS_WANT_WRITE || rc == TS_WANT_READ) {
			*want = rc == TS_WANT_WRITE ? POLLOUT : POLLIN;
			return -EAGAIN;
		}
		if (rc == TS_SYSERR) {
			rc = E->sys_errno(c->ts);
			return -(rc ? rc : EIO);
		}
		if (rc != 0)
			return fail_rc(c, rc, "write");
	}
	if (c->st != NULL && c->st->pg_filter)
		return send_pg_filtered(c, buf, len, more, kernel_signals, want);
	if (more || c->hold_len > 0)
		return send_gathered(c, buf, len, more, kernel_signals, want);
	return engine_write(c, buf, len, kernel_signals, want);
}

/* The program's write: only its own writes may raise SIGPIPE (use_io_family). */
static ssize_t step_send(struct conn *c, const void *buf, size_t len, int flags, short *want)
{
	ssize_t r = step_send_io(c, buf, len, flags, want);

	use_io_family(c, 0);
	return r;
}

/* Before the program reads or waits: what it held back goes out (c->lock held). */
static void hold_release(struct conn *c, short *kev)
{
	short want = 0;

	if (c->hold_len > 0 && c->state == CONN_OPEN && hold_seal(c, 0, &want) == -EAGAIN &&
	    kev != NULL)
		*kev |= want;
}

int conn_cork(const struct conn *c)
{
	return c->corked;
}

int conn_set_cork(struct conn *c, int on)
{
	int rc = 0;

	pthread_mutex_lock(&c->lock);
	c->corked = on != 0;
	/* Cleartext (auto) goes to the kernel as it is; so does undoing that. */
	if (c->state == CONN_PLAIN || c->state == CONN_AUTO_DETECT || c->kcorked) {
		if (real.setsockopt(c->fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on)) != 0)
			rc = -errno;
		else
			c->kcorked = on != 0;
	}
	if (!on && rc == 0 && c->state == CONN_OPEN && claim(c) == 0) {
		hold_release(c, NULL);
		E->flush(c->ts);
	}
	pthread_mutex_unlock(&c->lock);
	epreg_touch(c);
	return rc;
}

/* ---- waiting ---------------------------------------------------------------------- */

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
		if (sigaction(sig, NULL, &sa) != 0)
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
static uint64_t deadline_locked(const struct conn *c)
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
	if (c->own_listed && (c->state == CONN_HANDSHAKE || early_held(c) > 0)) {
		uint64_t soon = now_ns() + CONN_OWN_RECHECK_NS;

		if (d == 0 || soon < d)
			d = soon;
	}
	return d;
}

struct waiter {
	int opt;           /* SO_RCVTIMEO or SO_SNDTIMEO */
	uint64_t deadline; /* 0 = none; computed on the first wait */
	int started;
};

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
		own_remove(o);
		return;
	}
	rc = step_ready(o, &want);
	if (rc == 0 && o->state == CONN_OPEN && out_pending(o)) {
		rc = out_flush(o);
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
	own_remove(o);
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
	int n = conn_own_collect(NULL, 0, o, p, CONN_OWN_DRIVE);

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
static int conn_wait(struct conn *c, short want, struct waiter *w)
{
	struct pollfd p[1 + CONN_OWN_DRIVE];
	struct conn *o[CONN_OWN_DRIVE];
	uint64_t now, hs;
	int timeout, n, no;

	if (!w->started) {
		int ms = sock_timeout_ms(c->fd, w->opt);

		w->started = 1;
		w->deadline = ms < 0 ? 0 : now_ns() + (uint64_t)ms * 1000000u;
	}
	for (;;) {
		pthread_mutex_lock(&c->lock);
		p[0].fd = c->fd;
		p[0].events = want;
		p[0].revents = 0;
		hs = deadline_locked(c);
		n = c->closed;
		pthread_mutex_unlock(&c->lock);
		if (n)
			return -EBADF;
		now = now_ns();
		if (w->deadline != 0 && now >= w->deadline)
			return -EAGAIN;
		timeout = -1;
		if (w->deadline != 0)
			timeout = (int)((w->deadline - now + 999999) / 1000000);
		/* Wake for the handshake deadline too: the next step then fails it. */
		if (hs != 0) {
			int hms = hs > now ? (int)((hs - now + 999999) / 1000000) : 0;

			if (timeout < 0 || hms < timeout)
				timeout = hms;
		}
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

/* ---- the operations ---------------------------------------------------------------- */

/*
 * After a TCP failure, Linux's connect() reports the pending error (or
 * ECONNABORTED if SO_ERROR was read) and leaves the socket unconnected, ready
 * to connect again. The shim read the error itself: disconnect the same way.
 */
static int tcp_reset(struct conn *c)
{
	static const struct sockaddr unspec = {.sa_family = AF_UNSPEC};
	int e = c->so_error ? c->so_error : ECONNABORTED;

	c->so_error = 0;
	real.connect(c->fd, &unspec, sizeof(unspec));
	return -e;
}

int conn_connect(struct conn *c, const struct sockaddr *sa, socklen_t len)
{
	struct waiter w = {.opt = SO_SNDTIMEO};
	struct ep dst;
	short want = 0;
	int rc, open;

	c->own_listener = ep_from_sockaddr(&dst, sa, len) == 0 && listeners_local(&dst);
	if (real.connect(c->fd, sa, len) < 0 && errno != EINPROGRESS)
		return -errno;
	if (conn_nonblock(c)) {
		/* Start the handshake now: the ClientHello goes out with the SYN's answer. */
		pthread_mutex_lock(&c->lock);
		step_ready(c, &want);
		pthread_mutex_unlock(&c->lock);
		return -EINPROGRESS;
	}
	for (;;) {
		pthread_mutex_lock(&c->lock);
		rc = step_ready(c, &want);
		open = c->early_open;
		pthread_mutex_unlock(&c->lock);
		if (rc != -EAGAIN)
			break;
		if (open) {
			rc = 0; /* the handshake finishes in the program's next I/O */
			break;
		}
		/* The TCP part honours SO_SNDTIMEO like connect(2); the TLS part its deadline. */
		if (c->state == CONN_HANDSHAKE)
			w.deadline = 0, w.started = 1;
		rc = conn_wait(c, want, &w);
		if (rc == -EAGAIN)
			return -EINPROGRESS;
		if (rc < 0)
			return rc;
	}
	if (rc == 0 || c->hs_hangup) {
		c->connect_told = 1;
		return 0;
	}
	/* A TCP error is reported as is; a TLS failure as a refused connection. */
	if (c->tls_failed) {
		c->so_error = 0;
		return -ECONNREFUSED;
	}
	if (rc != -EINTR && rc != -EBADF) {
		pthread_mutex_lock(&c->lock);
		c->so_error = -rc;
		rc = tcp_reset(c);
		pthread_mutex_unlock(&c->lock);
	}
	return rc;
}

int conn_connect_again(struct conn *c, int *afresh)
{
	int rc;

	pthread_mutex_lock(&c->lock);
	*afresh = c->state == CONN_FAILED && !c->tls_failed;
	if (*afresh) {
		rc = tcp_reset(c);
		pthread_mutex_unlock(&c->lock);
		return rc;
	}
	/* Connected for the program, the handshake going on or the peer gone: as connected. */
	switch ((c->early_open && c->state == CONN_HANDSHAKE) || c->hs_hangup ? CONN_OPEN
									      : c->state) {
	case CONN_OPEN:
		/* Linux: the first connect() after completion succeeds, later ones EISCONN. */
		rc = c->connect_told ? -EISCONN : 0;
		c->connect_told = 1;
		break;
	case CONN_FAILED:
		rc = -c->err;
		break;
	default:
		rc = -EALREADY;
		break;
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

static void raise_sigpipe(int flags)
{
	if (!(flags & MSG_NOSIGNAL))
		pthread_kill(pthread_self(), SIGPIPE);
}

static ssize_t recv_blocking(struct conn *c, void *buf, size_t len, int flags)
{
	struct waiter w = {.opt = SO_RCVTIMEO};
	int nonblock = (flags & MSG_DONTWAIT) || conn_nonblock(c);
	char scratch[4096];
	size_t done = 0;
	ssize_t r;
	int rc;

	for (;;) {
		short want = 0;
		void *dst = (char *)buf + done;
		size_t n = len - done;

		/* MSG_TRUNC on TCP discards the bytes instead of copying them. */
		if (flags & MSG_TRUNC) {
			dst = scratch;
			if (n > sizeof(scratch))
				n = sizeof(scratch);
		}
		pthread_mutex_lock(&c->lock);
		r = step_recv(c, dst, n, flags, &want);
		pthread_mutex_unlock(&c->lock);
		if (r > 0) {
			done += (size_t)r;
			if (!(flags & MSG_WAITALL) || (flags & MSG_PEEK) || done == len)
				return (ssize_t)done;
			continue;
		}
		if (r == 0)
			return (ssize_t)done;
		if (r != -EAGAIN || nonblock)
			return done > 0 ? (ssize_t)done : r;
		rc = conn_wait(c, want, &w);
		if (rc < 0)
			return done > 0 ? (ssize_t)done : rc;
	}
}

static ssize_t send_blocking(struct conn *c, const void *buf, size_t len, int flags)
{
	struct waiter w = {.opt = SO_SNDTIMEO};
	int nonblock = (flags & MSG_DONTWAIT) || conn_nonblock(c);
	size_t done = 0;
	ssize_t r;
	int rc, signalled;

	for (;;) {
		short want = 0;

		pthread_mutex_lock(&c->lock);
		r = step_send(c, (const char *)buf + done, len - done, flags, &want);
		if (r > 0) {
			done += (size_t)r;
			/* A socket accepts what fits: keep going while the engine takes data. */
			while (done < len) {
				r = step_send(c, (const char *)buf + done, len - done, flags,
					      &want);
				if (r <= 0)
					break;
				done += (size_t)r;
			}
		}
		signalled = c->epipe_signalled;
		pthread_mutex_unlock(&c->lock);
		if (done == len && len > 0)
			break;
		if (r == -EPIPE && !signalled)
			raise_sigpipe(flags);
		if (r != -EAGAIN && r < 0)
			return done > 0 ? (ssize_t)done : r;
		if (r == 0 && len == 0)
			return 0;
		if (nonblock)
			return done > 0 ? (ssize_t)done : -EAGAIN;
		rc = conn_wait(c, want, &w);
		if (rc < 0)
			return done > 0 ? (ssize_t)done : rc;
	}
	/* Blocking: like a socket, return once the kernel has it (flush our record). */
	while (!nonblock) {
		short want = 0;

		pthread_mutex_lock(&c->lock);
		rc = 0;
		if (c->state == CONN_OPEN && c->ts != NULL && claim(c) == 0) {
			/* Bytes held back on purpose stay; the ones the socket refused go. */
			if (!c->corked && !(flags & MSG_MORE))
				rc = hold_seal(c, 0, &want) == -EAGAIN ? TS_WANT_WRITE : 0;
			if (rc == 0)
				rc = out_flush(c);
		}
		pthread_mutex_unlock(&c->lock);
		if (rc != TS_WANT_WRITE)
			break;
		if (conn_wait(c, POLLOUT, &w) < 0)
			break;
	}
	return (ssize_t)done;
}

ssize_t conn_recv(struct conn *c, void *buf, size_t len, int flags)
{
	ssize_t r = recv_blocking(c, buf, len, flags);

	if (r == -EAGAIN)
		atomic_fetch_add_explicit(&c->rd_eagain, 1, memory_order_relaxed);
	epreg_touch(c); /* what it read or left behind changes readiness */
	return r;
}

ssize_t conn_send(struct conn *c, const void *buf, size_t len, int flags)
{
	ssize_t r = send_blocking(c, buf, len, flags);

	if (r == -EAGAIN || (r >= 0 && (size_t)r < len))
		atomic_fetch_add_explicit(&c->wr_eagain, 1, memory_order_relaxed);
	epreg_touch(c);
	return r;
}

/*
 * A peek into several buffers: one peek of their total (at most TS_PEEK_MAX),
 * scattered. Peeking each buffer in turn would show every one the same bytes.
 */
static ssize_t recvv_peek(struct conn *c, const struct iovec *iov, int iovcnt, int flags)
{
	size_t want = 0, off = 0;
	unsigned char *tmp;
	ssize_t r;

	for (int i = 0; i < iovcnt && want < TS_PEEK_MAX; i++)
		want += iov[i].iov_len;
	if (want > TS_PEEK_MAX)
		want = TS_PEEK_MAX;
	if (want == 0)
		return conn_recv(c, NULL, 0, flags);
	tmp = malloc(want);
	if (tmp == NULL)
		return -ENOMEM;
	r = conn_recv(c, tmp, want, flags);
	for (int i = 0; i < iovcnt && r > 0 && off < (size_t)r; i++) {
		size_t n = (size_t)r - off < iov[i].iov_len ? (size_t)r - off : iov[i].iov_len;

		memcpy(iov[i].iov_base, tmp + off, n);
		off += n;
	}
	free(tmp);
	return r;
}

ssize_t conn_recvv(struct conn *c, const struct iovec *iov, int iovcnt, int flags)
{
	ssize_t total = 0;

	if ((flags & MSG_PEEK) && iovcnt > 1)
		return recvv_peek(c, iov, iovcnt, flags);
	for (int i = 0; i < iovcnt; i++) {
		ssize_t r;

		if (iov[i].iov_len == 0)
			continue;
		/* After the first bytes, take only what is already decrypted. */
		r = conn_recv(c, iov[i].iov_base, iov[i].iov_len,
			      total > 0 ? (flags | MSG_DONTWAIT) & ~MSG_WAITALL : flags);
		if (r < 0)
			return total > 0 ? total : r;
		total += r;
		if ((size_t)r < iov[i].iov_len || r == 0)
			break;
	}
	return total;
}

ssize_t conn_sendv(struct conn *c, const struct iovec *iov, int iovcnt, int flags)
{
	char small[4096];
	size_t sum = 0;
	ssize_t total = 0;

	/* Bounded as it goes: lengths may add up past SIZE_MAX (the hooks checked each). */
	for (int i = 0; i < iovcnt && sum <= sizeof(small); i++)
		sum += iov[i].iov_len <= sizeof(small) ? iov[i].iov_len : sizeof(small) + 1;
	/* Small gathers (headers + body) go out as one record, not one per piece. */
	if (sum <= sizeof(small) && iovcnt > 1) {
		size_t off = 0;

		for (int i = 0; i < iovcnt; i++) {
			memcpy(small + off, iov[i].iov_base, iov[i].iov_len);
			off += iov[i].iov_len;
		}
		return conn_send(c, small, sum, flags);
	}
	/* Larger ones: the pieces but the last say more is coming (one record up to 16 KB). */
	while (iovcnt > 0 && iov[iovcnt - 1].iov_len == 0)
		iovcnt--;
	for (int i = 0; i < iovcnt; i++) {
		int f = flags | (i < iovcnt - 1 ? MSG_MORE : 0);
		ssize_t r;

		if (iov[i].iov_len == 0)
			continue;
		r = conn_send(c, iov[i].iov_base, iov[i].iov_len,
			      total > 0 ? f | MSG_DONTWAIT | MSG_NOSIGNAL : f);
		if (r < 0)
			return total > 0 ? total : r;
		total += r;
		if ((size_t)r < iov[i].iov_len)
			break;
	}
	return total;
}

/* Sends close_notify, waiting for the socket at most WAIT_MS if it is full. */
static void send_close_notify(struct conn *c, int wait_ms)
{
	struct pollfd p = {.fd = c->fd, .events = POLLOUT};
	int rc;

	if (c->state != CONN_OPEN || c->notify_sent || c->ts == NULL)
		return;
	c->notify_sent = 1;
	/* What the program held back was written before it closed. */
	while (c->hold_len > 0) {
		short want = 0;

		if (hold_seal(c, 0, &want) != -EAGAIN || wait_ms <= 0)
			break;
		pthread_mutex_unlock(&c->lock);
		if (real.poll(&p, 1, wait_ms) <= 0)
			wait_ms = 0;
		pthread_mutex_lock(&c->lock);
		if (c->ts == NULL || c->closed || c->state != CONN_OPEN)
			return;
	}
	rc = E->close_notify(c->ts);
	while (rc == TS_WANT_WRITE && wait_ms > 0) {
		pthread_mutex_unlock(&c->lock);
		if (real.poll(&p, 1, wait_ms) <= 0)
			wait_ms = 0;
		pthread_mutex_lock(&c->lock);
		if (c->ts == NULL || c->closed)
			return;
		rc = E->flush(c->ts);
	}
	log_debug("%s: sent close_notify", c->desc);
}

int conn_shutdown(struct conn *c, int how)
{
	int rc = 0, later = 0;

	pthread_mutex_lock(&c->lock);
	if ((how == SHUT_WR || how == SHUT_RDWR) && !c->wr_shut) {
		/*
		 * The handshake and what was written before it need the write side:
		 * close_notify and FIN follow them (out_flush), in a later call.
		 */
		if (c->early_open && c->state == CONN_HANDSHAKE)
			later = 1;
		else if (c->state == CONN_OPEN && claim(c) == 0 && out_pending(c) &&
			 out_flush(c) != 0)
			later = 1;
		else if (c->state == CONN_OPEN && c->claim == CLAIM_OWNER)
			send_close_notify(c, conn_nonblock(c) ? 0 : 1000);
		c->shut_pending = later;
	}
	if (how == SHUT_WR || how == SHUT_RDWR)
		c->wr_shut = 1;
	if (how == SHUT_RD || how == SHUT_RDWR)
		c->rd_shut = 1;
	/* Not even SHUT_RD now: Linux then ends reads, and the handshake must read. */
	if (!later && real.shutdown(c->fd, how) < 0)
		rc = -errno;
	pthread_mutex_unlock(&c->lock);
	epreg_touch(c);
	return rc;
}

/*
 * A server program closes a connection whose handshake never ran (or did
 * not finish): the client's handshake records are unread, and closing with
 * unread bytes sends a reset where the plain socket would send FIN (the
 * client would see ECONNRESET instead of the end of the stream). They are
 * not the program's data: read them away first.
 */
static void drain_handshake(struct conn *c)
{
	char scratch[4096];

	if (c->role != TLS_ROLE_SERVER || c->state != CONN_HANDSHAKE)
		return;
	int io = atomic_load_explicit(&c->io_family, memory_order_relaxed);
	struct iovec v = {scratch, sizeof(scratch)};
	struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
	ssize_t r;

	/* The program's call family (a seccomp filter allows those); non-blocking underneath. */
	for (int i = 0; i < 16; i++) {
		if (io == TS_IO_RW)
			r = real.read(c->fd, scratch, sizeof(scratch));
		else if (io == TS_IO_VEC)
			r = real.readv(c->fd, &v, 1);
		else if (io == TS_IO_MSG)
			r = real.recvmsg(c->fd, &m, MSG_DONTWAIT);
		else
			r = real.recv(c->fd, scratch, sizeof(scratch), MSG_DONTWAIT);
		if (r <= 0)
			break;
	}
}

/*
 * The socket is about to close with bytes written before the handshake
 * completed, or a shutdown waiting for it: the plain socket would still send
 * them. Finish the handshake and send them, waiting at most WAIT_MS (the
 * lock is dropped while waiting); what cannot be sent by then is dropped,
 * never sent in cleartext.
 */
static void finish_early(struct conn *c, int wait_ms)
{
	uint64_t end = now_ns() + (uint64_t)wait_ms * 1000000u, now;

	while (!c->closed && (early_held(c) > 0 || c->shut_pending)) {
		struct pollfd p = {.fd = c->fd};
		short want = 0;
		int rc = step_ready(c, &want);

		if (rc == 0 && c->state == CONN_OPEN) {
			rc = out_flush(c);
			if (rc != TS_WANT_WRITE && rc != TS_WANT_READ)
				break;
			want = rc == TS_WANT_WRITE ? POLLOUT : POLLIN;
		} else if (rc != -EAGAIN) {
			break;
		}
		now = now_ns();
		if (now >= end)
			break;
		p.events = want;
		pthread_mutex_unlock(&c->lock);
		real.poll(&p, 1, (int)((end - now + 999999) / 1000000));
		pthread_mutex_lock(&c->lock);
	}
	if (early_held(c) > 0)
		log_warn(
		    "%s: closed before the handshake completed: %zu bytes written were not sent",
		    c->desc, early_held(c));
}

/*
 * The socket is about to close: read what the peer sent that the program
 * never read. TLS records it did not ask for (session tickets) must not turn
 * the close into a reset, as unread bytes in the kernel would; unread
 * application data must, as it would on the plain socket (RFC 1122 4.2.2.13).
 */
static void close_like_plain(struct conn *c)
{
	static const struct linger rst = {.l_onoff = 1, .l_linger = 0};
	char scratch[4096];
	size_t unread = c->ts != NULL ? E->pending(c->ts) : 0;

	if (c->state != CONN_OPEN || c->ts == NULL)
		return;
	for (int i = 0; i < 64 && !c->rd_eof; i++) {
		ssize_t r = E->read(c->ts, scratch, sizeof(scratch), 0);

		if (r <= 0)
			break;
		unread += (size_t)r;
	}
	if (unread > 0)
		real.setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
}

int conn_close_fd(struct conn *c, int fd)
{
	pthread_mutex_lock(&c->lock);
	for (int i = 0; i < c->nfds; i++) {
		if (c->fds[i] == fd) {
			c->fds[i] = c->fds[--c->nfds];
			break;
		}
	}
	if (c->nfds > 0) {
		/* Another fd of the same socket stays open: the session moves to it. */
		if (c->fd == fd) {
			c->fd = c->fds[0];
			if (c->ts != NULL)
				E->set_fd(c->ts, c->fd);
		}
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	/*
	 * The last fd in this process. After fork(), only the process that has
	 * claimed the session may end it: one that has not used it since must
	 * not end the session its sibling uses (a forking server's parent).
	 */
	if (c->claim == CLAIM_OWNER) {
		drain_handshake(c);
		finish_early(c, 1000);
		close_like_plain(c);
		send_close_notify(c, conn_nonblock(c) ? 0 : 1000);
	}
	c->closed = 1;
	own_remove(c);
	pthread_mutex_unlock(&c->lock);
	return 1;
}

int conn_readable_bytes(struct conn *c)
{
	short want;
	int n = 0;

	pthread_mutex_lock(&c->lock);
	if (greet_pending(c) > 0 && (c->state == CONN_OPEN || c->state == CONN_PLAIN)) {
		/* Only those: the session's bytes come after them. */
		n = (int)greet_pending(c);
		pthread_mutex_unlock(&c->lock);
		return n;
	}
	if (c->state == CONN_PLAIN) {
		pthread_mutex_unlock(&c->lock);
		return -ENOTTY; /* caller asks the kernel */
	}
	if (c->state == CONN_OPEN && !c->rd_eof) {
		/* Decrypt what has arrived, so the count is what a read would return. */
		step_recv(c, NULL, TS_PEEK_MAX, MSG_PEEK, &want);
		n = c->state == CONN_OPEN ? (int)E->pending(c->ts) : 0;
	}
	pthread_mutex_unlock(&c->lock);
	return n;
}

void conn_release_fd(int fd)
{
	struct conn *c = fdtab_take(fd);

	if (epreg_fd_maybe(fd))
		epreg_fd_closed(fd, c);
	if (c != NULL) {
		if (conn_close_fd(c, fd))
			epreg_conn_closed(c);
		conn_put(c);
	}
}

/*
 * Unmaps FD from C without a byte of I/O: its number now names another file.
 * When it was C's last fd the session ends silently (its socket is already
 * gone; close_notify would go into the new file). Returns 1 when it was the last.
 */
static int conn_forget_fd(struct conn *c, int fd)
{
	int last;

	pthread_mutex_lock(&c->lock);
	for (int i = 0; i < c->nfds; i++) {
		if (c->fds[i] == fd) {
			c->fds[i] = c->fds[--c->nfds];
			break;
		}
	}
	last = c->nfds == 0;
	if (!last && c->fd == fd) {
		c->fd = c->fds[0];
		if (c->ts != NULL)
			E->set_fd(c->ts, c->fd);
	}
	if (last)
		c->closed = 1;
	pthread_mutex_unlock(&c->lock);
	return last;
}

void conn_drop_stale(int fd)
{
	int saved = errno, last = 0;
	struct conn *c = fdtab_take(fd);

	if (c != NULL) {
		log_debug("%s: fd %d was closed without the shim (raw system call or another "
			  "library) and now names a new file: its entry is dropped",
			  c->desc, fd);
		last = conn_forget_fd(c, fd);
	}
	epreg_fd_stale(fd, c, last);
	if (c != NULL)
		conn_put(c);
	errno = saved;
}

void conn_disconnect(struct conn *c)
{
	int fds[64], n;

	pthread_mutex_lock(&c->lock);
	/* Threads still inside the conn see the reset a plain socket would report. */
	c->state = CONN_FAILED;
	c->err = ECONNRESET;
	c->notify_sent = 1;
	n = c->nfds < 64 ? c->nfds : 64;
	memcpy(fds, c->fds, (size_t)n * sizeof(int));
	pthread_mutex_unlock(&c->lock);
	for (int i = 0; i < n; i++) {
		struct conn *t = fdtab_take(fds[i]);
		int fl, off = 0;

		if (t == NULL)
			continue;
		if (t != c) {
			/* The fd was closed and reused meanwhile: not ours to unmap. */
			fdtab_set(fds[i], t);
			conn_put(t);
			continue;
		}
		fl = real.fcntl(fds[i], F_GETFL);
		if (fl >= 0 && !conn_nonblock(c))
			real.fcntl(fds[i], F_SETFL, fl & ~O_NONBLOCK);
		if (!conn_nodelay(c))
			real.setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &off, sizeof(off));
		if (c->corked && !c->kcorked) {
			int on = 1;

			real.setsockopt(fds[i], IPPROTO_TCP, TCP_CORK, &on, sizeof(on));
		}
		conn_put(t);
	}
}

uint64_t conn_deadline(struct conn *c)
{
	uint64_t d;

	pthread_mutex_lock(&c->lock);
	d = deadline_locked(c);
	pthread_mutex_unlock(&c->lock);
	return d;
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

/* ---- readiness -------------------------------------------------------------------- */

static short failed_events(short uev)
{
	return (short)(POLLERR | POLLHUP | (uev & (POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM)));
}

/* During the handshake, a connected client can write while there is room to keep it. */
static short early_writable(const struct conn *c, short uev)
{
	if (!c->early_open || c->state != CONN_HANDSHAKE || early_held(c) >= CONN_EARLY_MAX)
		return 0;
	return uev & (POLLOUT | POLLWRNORM);
}

short conn_poll_prepare(struct conn *c, short uev, short *kev)
{
	short ready = 0, want = 0;
	int rc;

	pthread_mutex_lock(&c->lock);
	if (c->state == CONN_PLAIN) {
		*kev = uev;
		/* accept starttls=smtp: an answer of the shim's own still to send. */
		if (smtp_filtering(c) && c->st->out_len > 0 && st_flush(c, &want) == -EAGAIN)
			*kev |= POLLOUT;
		goto out;
	}
	rc = step_ready(c, &want);
	if (rc == -EAGAIN) {
		*kev = want; /* the direction TLS needs, not the one asked for */
		ready = early_writable(c, uev);
		goto out;
	}
	if (rc < 0 || c->state == CONN_FAILED) {
		*kev = 0;
		ready = failed_events(uev);
		goto out;
	}
	if (c->state == CONN_PLAIN) {
		*kev = uev;
		goto out;
	}
	*kev = uev & (short)~(POLLIN | POLLRDNORM);
	hold_release(c, kev); /* the program is about to wait */
	if (out_pending(c) && out_flush(c) == TS_WANT_WRITE)
		*kev |= POLLOUT; /* our own pending record: not writable for the program yet */
	if (uev & (POLLIN | POLLRDNORM)) {
		char b;

		/* Records OpenSSL read ahead may hold data the kernel no longer shows. */
		if (E->pending(c->ts) == 0 && E->buffered_input(c->ts) && !c->rd_eof)
			step_recv(c, &b, 1, MSG_PEEK, &want);
		if (c->rd_eof || c->rd_shut || c->state == CONN_FAILED || E->pending(c->ts) > 0)
			ready |= uev & (POLLIN | POLLRDNORM);
		else if (E->output_pending(c->ts) > 1)
			*kev |= POLLOUT; /* reading waits until the peer takes our output */
		else
			*kev |= POLLIN;
	}
	if (c->rd_eof)
		ready |= uev & POLLRDHUP;
out:
	/* What the shim holds for the program to read first (starttls=). */
	if (greet_pending(c) > 0 && (c->state == CONN_OPEN || c->state == CONN_PLAIN))
		ready |= uev & (POLLIN | POLLRDNORM);
	pthread_mutex_unlock(&c->lock);
	return ready;
}

short conn_poll_result(struct conn *c, short uev, short krev)
{
	short rev = 0, want = 0;
	char b;
	ssize_t r;
	int rc;

	if (krev == 0)
		return 0;
	pthread_mutex_lock(&c->lock);
	if (c->state == CONN_PLAIN) {
		rev = krev;
		goto out;
	}
	rc = step_ready(c, &want);
	if (rc == -EAGAIN) {
		rev = early_writable(c, uev); /* the handshake went on */
		goto out;
	}
	if (rc < 0 || c->state == CONN_FAILED) {
		rev = failed_events(uev);
		goto out;
	}
	if (c->state == CONN_PLAIN) {
		rev = krev & (short)(uev | POLLERR | POLLHUP);
		goto out;
	}
	if (out_pending(c))
		out_flush(c);
	if ((uev & (POLLIN | POLLRDNORM)) && (krev & (POLLIN | POLLHUP | POLLERR))) {
		/* Readable only if a record decodes to data (or to the end of it). */
		r = step_recv(c, &b, 1, MSG_PEEK, &want);
		if (r != -EAGAIN)
			rev |= uev & (POLLIN | POLLRDNORM);
		if (c->state == CONN_FAILED)
			rev |= POLLERR;
	}
	if ((uev & (POLLOUT | POLLWRNORM)) && (krev & POLLOUT) && !out_pending(c))
		rev |= uev & (POLLOUT | POLLWRNORM);
	/* The peer's FIN: the kernel knows it (after close_notify, or without one). */
	if (c->rd_eof || (krev & POLLRDHUP))
		rev |= uev & POLLRDHUP;
	rev |= krev & (POLLERR | POLLHUP | POLLNVAL);
out:
	pthread_mutex_unlock(&c->lock);
	return rev;
}

/* ---- fork ------------------------------------------------------------------------- */

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
	pthread_mutex_init(&own_lock, NULL);
}
