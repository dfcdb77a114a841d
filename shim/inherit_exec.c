/*
 * inherit_exec.c - wrapped connections across exec and spawn (see inherit.h
 * and shim/DESIGN.md, "Inherited connections"): one whose handshake has not
 * started is handed over to the new program's shim in TLSSHIM_INHERIT (the
 * format is in inherit.c, which reads it); one that has carried data moves
 * into a relay process; what can do neither is refused.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../cmd/exe.h"
#include "addr.h"
#include "conn.h"
#include "env.h"
#include "fdclose.h"
#include "fdstate.h"
#include "fdtab.h"
#include "inherit.h"
#include "inherit_int.h"
#include "log.h"
#include "real.h"
#include "relay.h"
#include "shim.h"

const char *inherit_env_get(char *const envp[], const char *key)
{
	size_t kl = strlen(key);

	for (size_t i = 0; envp != NULL && envp[i] != NULL; i++)
		if (strncmp(envp[i], key, kl) == 0 && envp[i][kl] == '=')
			return envp[i] + kl + 1;
	return NULL;
}

/*
 * Whether the program PATH (looked up in PATH when SEARCH, as execvp does)
 * will honour LD_PRELOAD and make its socket calls through libc: not static,
 * not setuid/setgid or with file capabilities, not Go; for a script, its
 * interpreter (cmd/exe.c, the check `tlsshim run` makes). Unknown is no.
 */
int inherit_program_preloads(const char *path, int search)
{
	char why[160], *found = NULL;
	int rc;

	if (path == NULL)
		return 0;
	if (search && strchr(path, '/') == NULL) {
		found = exe_find(path, getenv("PATH"));
		if (found == NULL)
			return 0;
		path = found;
	}
	rc = exe_preloadable(path, why, sizeof(why));
	/*
	 * No such file: this exec fails and the connection stays here (the next
	 * try of an execvp done by hand, as python's, is asked again).
	 */
	if (rc == -2 && access(path, F_OK) != 0 && errno == ENOENT)
		rc = 0;
	free(found);
	return rc == 0;
}

/*
 * Whether the new program will load this library with this policy (so it
 * can adopt a connection whose handshake has not started): LD_PRELOAD names
 * our file, the policy variables are what we loaded, and the program is one
 * the loader preloads into and that calls libc (inherit_program_preloads).
 */
int inherit_child_adopts(const char *path, int search, char *const envp[])
{
	const char *pre = inherit_env_get(envp, "LD_PRELOAD");
	Dl_info info;

	if (pre == NULL || dladdr((void *)inherit_startup, &info) == 0 || info.dli_fname == NULL ||
	    strstr(pre, info.dli_fname) == NULL)
		return 0;
	if (inherit_hash_str(inherit_env_get(envp, ENV_POLICY)) != inherit_policy_hash ||
	    inherit_hash_str(inherit_env_get(envp, ENV_POLICY_FILE)) != inherit_policy_file_hash)
		return 0;
	return inherit_program_preloads(path, search);
}

struct entries {
	char buf[4096];
	size_t len;
};

static int entry_add(struct entries *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends one entry. Returns 0, or -1 (E unchanged) if it does not fit. */
static int entry_add(struct entries *e, const char *fmt, ...)
{
	size_t was = e->len;
	va_list ap;
	int n;

	if (e->len > 0 && e->len < sizeof(e->buf) - 1)
		e->buf[e->len++] = ';';
	va_start(ap, fmt);
	n = vsnprintf(e->buf + e->len, sizeof(e->buf) - e->len, fmt, ap);
	va_end(ap);
	if (n > 0 && e->len + (size_t)n < sizeof(e->buf)) {
		e->len += (size_t)n;
		return 0;
	}
	e->len = was;
	e->buf[was] = '\0';
	return -1;
}

/*
 * Entries for relayed and refused fds, kept for every later exec of this
 * process: execvp() implementations that try each PATH entry with execve()
 * (python's os.execvp) reach the hook once per try, and only the first try
 * finds the connection still wrapped. Stale entries are harmless: each names
 * a socket inode.
 */
static struct entries carried;
static pthread_mutex_t carried_lock = PTHREAD_MUTEX_INITIALIZER;

static void carry(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void carry(const char *fmt, ...)
{
	char one[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(one, sizeof(one), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&carried_lock);
	entry_add(&carried, "%s", one);
	pthread_mutex_unlock(&carried_lock);
}

/* Whether C's hand-over was logged already (one line per exec, not per execve try). */
static int handed_before(struct conn *c)
{
	static struct conn *seen[16];
	static unsigned next;

	for (unsigned i = 0; i < 16; i++)
		if (seen[i] == c)
			return 1;
	seen[next++ % 16] = c;
	return 0;
}

/* Every wrapped fd (all of them: one left out would reach the new program as a raw socket). */
struct collect {
	int *fds;
	int n, cap, oom;
};

static void collect_fd(int fd, struct conn *c, void *arg)
{
	struct collect *col = arg;

	(void)c;
	if (col->n == col->cap) {
		int cap = col->cap ? col->cap * 2 : 64;
		int *v = realloc(col->fds, (size_t)cap * sizeof(*v));

		if (v == NULL) {
			col->oom = 1;
			return;
		}
		col->fds = v;
		col->cap = cap;
	}
	col->fds[col->n++] = fd;
}

/* A copy of every fd of C (a new array of *N), or NULL (no memory). */
static int *conn_fds(struct conn *c, int *n)
{
	int *v;

	pthread_mutex_lock(&c->lock);
	*n = c->nfds;
	v = malloc((size_t)(c->nfds > 0 ? c->nfds : 1) * sizeof(*v));
	if (v != NULL)
		memcpy(v, c->fds, (size_t)c->nfds * sizeof(*v));
	pthread_mutex_unlock(&c->lock);
	return v;
}

/* The state says no TLS byte has been read or written yet: the new program can start afresh. */
static int not_started(struct conn *c)
{
	int yes;

	pthread_mutex_lock(&c->lock);
	switch (c->state) {
	case CONN_AUTO_DETECT:
	case CONN_FAILED:
		yes = 1;
		break;
	case CONN_PLAIN:
		yes = c->st == NULL; /* else bytes the shim read for the program go with it */
		break;
	case CONN_STARTTLS:
		yes = c->hs_deadline_ns == 0;
		break;
	case CONN_TCP_CONNECTING:
		yes = 0; /* may be unconnected: the relay finishes it */
		break;
	case CONN_HANDSHAKE:
		yes = c->hs_deadline_ns == 0;
		break;
	default:
		yes = 0;
		break;
	}
	pthread_mutex_unlock(&c->lock);
	return yes;
}

/*
 * Leaves G for the new program's shim to adopt, with a hint: how the program
 * set O_NONBLOCK and TCP_NODELAY (the socket has both on underneath, and its
 * open file description is shared, so it is not changed here), and for a
 * client, the name it was made for.
 */
static int hand_over(struct group *g, struct entries *e)
{
	struct conn *c = g->c;
	unsigned long ino = inherit_fd_ino(g->fds[0]);
	int mode = conn_nonblock(c) | conn_nodelay(c) << 1, rc = 0;
	size_t was = e->len;

	for (int i = 0; i < g->nfds && rc == 0; i++) {
		if (c->role == TLS_ROLE_CLIENT)
			rc = entry_add(e, "a %d %lu %d c %s", g->fds[i], ino, mode,
				       c->peer_name != NULL ? c->peer_name : "");
		else if (c->state == CONN_PLAIN)
			rc = entry_add(e, "a %d %lu %d p", g->fds[i], ino, mode);
		else
			rc = entry_add(e, "a %d %lu %d", g->fds[i], ino, mode);
	}
	if (rc != 0) {
		/* An fd not named would be a raw socket to the new program: none of them. */
		e->len = was;
		e->buf[was] = '\0';
		return -1;
	}
	if (!handed_before(c))
		log_debug("%s: handed over before its handshake (fd %d)", conn_desc(c), g->fds[0]);
	return 0;
}

/* Replaces every fd of G with a dead socket: the new program's I/O on it fails. */
static void refuse(struct group *g, const char *prog, const char *why)
{
	int sp[2], *fds, n;
	unsigned long ino;

	log_warn("%s: exec of %s: fd %d refused to the new program (%s): its TLS session "
		 "cannot follow, so its I/O fails",
		 conn_desc(g->c), prog, g->fds[0], why);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) {
		/* Still no cleartext: end the connection for everyone. */
		real.shutdown(g->c->fd, SHUT_RDWR);
		return;
	}
	fds = conn_fds(g->c, &n);
	if (fds == NULL) {
		real.close(sp[0]);
		real.close(sp[1]);
		real.shutdown(g->c->fd, SHUT_RDWR);
		return;
	}
	real.close(sp[1]);
	real.shutdown(sp[0], SHUT_RDWR);
	ino = inherit_fd_ino(sp[0]);
	for (int i = 0; i < n; i++) {
		int fl = real.fcntl(fds[i], F_GETFD);

		/* A vfork()ed child may have closed the number and reused it for another file. */
		if (fl >= 0 && !(fl & FD_CLOEXEC) && inherit_inet_stream(fds[i])) {
			real.dup2(sp[0], fds[i]);
			carry("x %lu", ino);
		}
	}
	/* A vfork()ed child's own copies are in G, not among the connection's fds. */
	for (int i = 0; i < g->nfds; i++) {
		if (inherit_inet_stream(g->fds[i])) {
			real.dup2(sp[0], g->fds[i]);
			carry("x %lu", ino);
		}
	}
	real.close(sp[0]);
	free(fds);
}

/* The address of SS (AF_INET or AF_INET6) as text. */
static void sa_text(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	const void *a = ss->ss_family == AF_INET6
			    ? (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr
			    : (const void *)&((const struct sockaddr_in *)ss)->sin_addr;

	if (inet_ntop(ss->ss_family == AF_INET6 ? AF_INET6 : AF_INET, a, buf, (socklen_t)len) ==
	    NULL)
		snprintf(buf, len, "0.0.0.0");
}

/* Keeps R's entry for every later exec (the new program's getpeername & co.). */
static void carry_relayed(const struct relayed *r, unsigned lport, unsigned pport)
{
	char la[64], pa[64];

	sa_text(&r->local, la, sizeof(la));
	sa_text(&r->peer, pa, sizeof(pa));
	carry("r %lu %d %s %u %s %u %d", r->ino, r->family == AF_INET6 ? 6 : 4, la, lport, pa,
	      pport, r->nodelay);
}

/* Moves G's session into a relay; the program's fds become a socketpair end. */
int inherit_relay(struct group *g, const char *what)
{
	struct conn *c = g->c;
	struct sockaddr_storage ls, ps;
	socklen_t ll = sizeof(ls), pl = sizeof(ps);
	struct ep local, peer;
	struct relayed r = {0};
	int sp[2], pid, *fds, n;

	if (real.getsockname(c->fd, (struct sockaddr *)&ls, &ll) != 0 ||
	    ep_from_sockaddr(&local, (struct sockaddr *)&ls, ll) != 0)
		return -ENOTCONN;
	if (real.getpeername(c->fd, (struct sockaddr *)&ps, &pl) != 0 ||
	    ep_from_sockaddr(&peer, (struct sockaddr *)&ps, pl) != 0) {
		/* Still connecting (the relay finishes it): the unspecified address. */
		memset(&peer, 0, sizeof(peer));
		memset(&ps, 0, sizeof(ps));
		ps.ss_family = (sa_family_t)ls.ss_family;
		pl = ll;
	}
	/* Every fd of the connection, inherited or not (the exec may fail). */
	fds = conn_fds(c, &n);
	if (fds == NULL)
		return -ENOMEM;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) {
		free(fds);
		return -errno;
	}
	pid = relay_start(c, sp[1]);
	real.close(sp[1]);
	if (pid < 0) {
		real.close(sp[0]);
		free(fds);
		return pid;
	}
	r.ino = inherit_fd_ino(sp[0]);
	r.family = ls.ss_family; /* as the socket says: AF_INET6 for a mapped IPv4 peer */
	r.nodelay = conn_nodelay(c);
	memcpy(&r.local, &ls, sizeof(ls));
	r.llen = ll;
	memcpy(&r.peer, &ps, sizeof(ps));
	r.plen = pl;
	log_info("%s: %s: its TLS session moved to relay process %d; the program gets fd %d as "
		 "a local socket",
		 conn_desc(c), what, pid, g->fds[0]);
	for (int i = 0; i < n; i++) {
		int fl = real.fcntl(fds[i], F_GETFD);

		fdclose_release(fds[i]); /* no I/O: the session is the relay's now */
		real.dup3(sp[0], fds[i], fl >= 0 && (fl & FD_CLOEXEC) ? O_CLOEXEC : 0);
	}
	free(fds);
	real.close(sp[0]);
	inherit_relayed_add(&r);
	carry_relayed(&r, local.port, peer.port);
	return 0;
}

/*
 * Groups the wrapped fds by connection: *OUT (a new array) gets one group
 * per connection, each with a reference. Returns how many, or -ENOMEM.
 */
/* Adds FD, a copy of the wrapped fd SRC, to its connection's group in GS (NG of them). */
static void gather_fd(struct group *gs, int *ng, int fd, int src)
{
	struct conn *c = fdtab_get(src);
	int k, fl;

	if (c == NULL)
		return;
	/* Replaced by an earlier try of this exec (in a vfork()ed child): not ours now. */
	if (!inherit_inet_stream(fd)) {
		conn_put(c);
		return;
	}
	for (k = 0; k < *ng && gs[k].c != c; k++)
		;
	if (k == *ng)
		gs[(*ng)++].c = c;
	else
		conn_put(c);
	fl = real.fcntl(fd, F_GETFD);
	if (fl >= 0 && !(fl & FD_CLOEXEC)) {
		gs[k].inherited = 1;
		if (gs[k].nfds < 8)
			gs[k].fds[gs[k].nfds++] = fd;
		else
			gs[k].overflow = 1;
	}
}

static int gather(struct group **out)
{
	struct collect col = {.n = 0};
	struct group *gs = NULL;
	int vfd[8], vsrc[8], nv = fdstate_vfork_dups(vfd, vsrc, 8), ng = 0;

	fdtab_foreach(collect_fd, &col);
	if (col.oom ||
	    (col.n + nv > 0 && (gs = calloc((size_t)col.n + (size_t)nv, sizeof(*gs))) == NULL)) {
		free(col.fds);
		return -ENOMEM;
	}
	for (int i = 0; i < col.n; i++)
		gather_fd(gs, &ng, col.fds[i], col.fds[i]);
	/* A vfork()ed child's copies (dup2(conn, 0)): in its fd table only. */
	for (int i = 0; i < nv; i++)
		gather_fd(gs, &ng, vfd[i], vsrc[i]);
	free(col.fds);
	*out = gs;
	return ng;
}

static void build_env(struct inherit_exec *x, char *const envp[], const struct entries *e)
{
	const char *old = inherit_env_get(envp, INHERIT_ENV);
	size_t n = 0, k = 0, vl;

	for (; envp != NULL && envp[n] != NULL; n++)
		;
	vl = strlen(INHERIT_ENV) + 2 + (old != NULL ? strlen(old) + 1 : 0) + e->len;
	x->alloc = malloc((n + 2) * sizeof(char *));
	x->var = malloc(vl);
	if (x->alloc == NULL || x->var == NULL) {
		free(x->alloc);
		free(x->var);
		x->alloc = NULL;
		x->var = NULL;
		return; /* the new program then decides by policy alone */
	}
	snprintf(x->var, vl, "%s=%s%s%s", INHERIT_ENV, old != NULL ? old : "",
		 old != NULL && old[0] != '\0' ? ";" : "", e->buf);
	for (size_t i = 0; i < n; i++)
		if (strncmp(envp[i], INHERIT_ENV "=", sizeof(INHERIT_ENV)) != 0)
			x->alloc[k++] = envp[i];
	x->alloc[k++] = x->var;
	x->alloc[k] = NULL;
	x->envp = x->alloc;
}

static void shut_down_fd(int fd, struct conn *c, void *arg)
{
	(void)c;
	(void)arg;
	real.shutdown(fd, SHUT_RDWR);
}

static const char *h_exec(char *buf, size_t len, const char *prog)
{
	snprintf(buf, len, "exec of %s", prog);
	return buf;
}

static const char *h_spawn(char *buf, size_t len, const char *prog)
{
	snprintf(buf, len, "spawn of %s", prog);
	return buf;
}

static void inherit_prepare(struct inherit_exec *x, const char *path, int search,
			    char *const argv[], char *const envp[], int spawn);

/*
 * A vfork()ed child hands C over to the new program: the parent (whose memory
 * this is) must then leave it alone as a forked parent would, neither reading
 * the client's handshake away nor sending close_notify when it closes its
 * copy: it loses the connection (its I/O gets ECONNRESET). Undone by
 * inherit_exec_done() if the exec fails. Only a conn never forked (no shared
 * claim word): one with contenders is settled by the claim itself.
 */
static void lend(struct inherit_exec *x, struct conn *c)
{
	int lent = 0;

	pthread_mutex_lock(&c->lock);
	if (c->claim == CLAIM_OWNER && c->claim_word == NULL && x->nlent < 8) {
		c->claim = CLAIM_LOST;
		lent = 1;
	}
	pthread_mutex_unlock(&c->lock);
	if (lent)
		x->lent[x->nlent++] = c->fd;
}

void inherit_exec_prepare(struct inherit_exec *x, const char *path, int search, char *const argv[],
			  char *const envp[])
{
	inherit_prepare(x, path, search, argv, envp, 0);
}

void inherit_spawn_prepare(struct inherit_exec *x, const char *path, char *const argv[],
			   char *const envp[])
{
	inherit_prepare(x, path, 0, argv, envp, 1);
}

static void inherit_prepare(struct inherit_exec *x, const char *path, int search,
			    char *const argv[], char *const envp[], int spawn)
{
	char what[300];
	struct group *gs = NULL;
	struct entries e = {.len = 0};
	const char *prog = argv != NULL && argv[0] != NULL ? argv[0] : path;
	int ng, adopts = -1, vforked;

	memset(x, 0, sizeof(*x));
	x->envp = (char **)envp;
	if (shim.policy == NULL)
		return;
	e.buf[0] = '\0';
	ng = fdtab_any() ? (real_init(), gather(&gs)) : 0;
	if (ng < 0) {
		/* Nothing may reach the new program unlooked at: end every wrapped connection. */
		log_error("exec of %s: out of memory: every TLS connection is shut down", prog);
		fdtab_foreach(shut_down_fd, NULL);
		ng = 0;
	}
	/* A vfork()ed child shares the parent's memory: the session must stay the parent's. */
	vforked = getpid() != inherit_self_pid;
	if (prog == NULL)
		prog = "a program";
	for (int i = 0; i < ng; i++) {
		struct group *g = &gs[i];

		if (g->inherited && spawn) {
			/* This process goes on with the connection: both use it through the relay.
			 */
			if (inherit_relay(g, h_spawn(what, sizeof(what), prog)) != 0) {
				/* The child would write cleartext on it: no one may. */
				log_error(
				    "%s: spawn of %s: no relay process: the connection is shut "
				    "down (the child would inherit fd %d without its TLS session)",
				    conn_desc(g->c), prog, g->fds[0]);
				real.shutdown(g->c->fd, SHUT_RDWR);
			}
		} else if (g->inherited) {
			if (adopts < 0)
				adopts = inherit_child_adopts(path, search, envp);
			/* Handed over only if every inherited fd can be named to the new program.
			 */
			int handed =
			    adopts && !g->overflow && not_started(g->c) && hand_over(g, &e) == 0;

			if (handed && vforked)
				lend(x, g->c);
			if (!handed && vforked)
				refuse(g, prog, "exec from a vfork()ed child");
			else if (!handed && inherit_relay(g, h_exec(what, sizeof(what), prog)) != 0)
				refuse(g, prog, "no relay process");
		}
		conn_put(g->c);
	}
	free(gs);
	pthread_mutex_lock(&carried_lock);
	if (carried.len > 0)
		entry_add(&e, "%s", carried.buf);
	pthread_mutex_unlock(&carried_lock);
	if (e.len > 0)
		build_env(x, envp, &e);
	inherit_listeners_prepare(x, path, search, prog, spawn);
}

void inherit_exec_done(struct inherit_exec *x)
{
	/* The exec failed: the connections lent are the parent's again. */
	for (int i = 0; i < x->nlent; i++) {
		struct conn *c = fdtab_get(x->lent[i]);

		if (c == NULL)
			continue;
		pthread_mutex_lock(&c->lock);
		if (c->claim == CLAIM_LOST && c->claim_word == NULL)
			c->claim = CLAIM_OWNER;
		pthread_mutex_unlock(&c->lock);
		conn_put(c);
	}
	x->nlent = 0;
	inherit_listeners_done(x);
	free(x->alloc);
	free(x->var);
	x->alloc = NULL;
	x->var = NULL;
}
