/*
 * inherit.c - connections a program did not make (see inherit.h and
 * shim/DESIGN.md, "Inherited connections").
 *
 * Start-up adoption: a connected TCP socket on fd 0-2, on systemd's
 * LISTEN_FDS, or listed by a parent's shim is decided by this process's own
 * policy, as accept() (local address) or connect() (peer) would have been.
 *
 * exec: TLSSHIM_INHERIT carries, from the exec'ing shim to the new one,
 * entries separated by ';', fields by ' ':
 *   a FD INO [c NAME | p]   adopt FD (socket inode INO): a client connection
 *                           the parent made for NAME, or one `auto` let
 *                           through in cleartext
 *   r INO FAM LADDR LPORT PADDR PPORT NODELAY
 *                           the AF_UNIX socket INO stands for that TCP
 *                           connection (its TLS session is in a relay)
 *   x INO                   refused: the TLS session could not follow
 * Nothing in it can weaken a check: the new program decides by its own
 * policy; NAME is believed only if it resolves to the peer's address; `p`
 * only where the rule is `auto` (which lets cleartext through anyway);
 * `r` and `x` concern AF_UNIX sockets, which the policy never wraps.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../cmd/exe.h"
#include "addr.h"
#include "conn.h"
#include "env.h"
#include "errmap.h"
#include "fdclose.h"
#include "fdtab.h"
#include "inherit.h"
#include "log.h"
#include "names.h"
#include "real.h"
#include "relay.h"
#include "shim.h"

#define MAX_CAND    64 /* candidate fds looked at start-up */
#define MAX_HINTS   16
#define MAX_RELAYED 32

atomic_int inherit_nrelayed;

struct relayed {
	unsigned long ino;
	struct sockaddr_storage local, peer;
	socklen_t llen, plen;
	int family;
	int nodelay;
};

static struct relayed relayed[MAX_RELAYED];
static pthread_mutex_t relayed_lock = PTHREAD_MUTEX_INITIALIZER;

/* Written by the constructor: on the page the loader wrote already (shim.h). */
static pid_t self_pid SHIM_LOAD_DATA;
static unsigned long policy_hash SHIM_LOAD_DATA, policy_file_hash SHIM_LOAD_DATA;

struct hint {
	unsigned long ino;
	char kind; /* 'c' client (with name), 'p' auto-plain, 'x' refused, 0 */
	int mode;  /* -1, or the program's O_NONBLOCK (1) and TCP_NODELAY (2) */
	char name[NAMES_MAX_NAME];
};

/* FNV-1a: whether a child's environment carries the policy this process loaded. */
static unsigned long hash_str(const char *s)
{
	unsigned long h = 1469598103934665603ul;

	if (s == NULL)
		return 0;
	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ul;
	return h;
}

static unsigned long fd_ino(int fd)
{
	struct stat st;

	if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode))
		return 0;
	return (unsigned long)st.st_ino;
}

/* ---- relayed fds ----------------------------------------------------------------- */

static void relayed_add(const struct relayed *r)
{
	int n;

	pthread_mutex_lock(&relayed_lock);
	n = atomic_load(&inherit_nrelayed);
	if (n < MAX_RELAYED) {
		relayed[n] = *r;
		atomic_store(&inherit_nrelayed, n + 1);
	}
	pthread_mutex_unlock(&relayed_lock);
}

/* Copies FD's entry to OUT. Returns 1 if FD is a relayed connection. */
static int relayed_find(int fd, struct relayed *out)
{
	unsigned long ino = fd_ino(fd);
	int found = 0;

	if (ino == 0)
		return 0;
	pthread_mutex_lock(&relayed_lock);
	for (int i = 0; i < atomic_load(&inherit_nrelayed); i++) {
		if (relayed[i].ino == ino) {
			*out = relayed[i];
			found = 1;
			break;
		}
	}
	pthread_mutex_unlock(&relayed_lock);
	return found;
}

static void relayed_set_nodelay(unsigned long ino, int on)
{
	pthread_mutex_lock(&relayed_lock);
	for (int i = 0; i < atomic_load(&inherit_nrelayed); i++)
		if (relayed[i].ino == ino)
			relayed[i].nodelay = on;
	pthread_mutex_unlock(&relayed_lock);
}

int inherit_sockname(int fd, int peer, struct sockaddr *sa, socklen_t *len, int *rc)
{
	struct relayed r;
	const struct sockaddr_storage *src;
	socklen_t slen;
	int saved = errno;

	if (!relayed_find(fd, &r)) {
		errno = saved;
		return 0;
	}
	errno = saved;
	src = peer ? &r.peer : &r.local;
	slen = peer ? r.plen : r.llen;
	if (sa == NULL || len == NULL) {
		*rc = -EFAULT;
		return 1;
	}
	memcpy(sa, src, *len < slen ? *len : slen);
	*len = slen;
	*rc = 0;
	return 1;
}

static int int_out(void *val, socklen_t *len, int v)
{
	if (val == NULL || len == NULL || *len < (socklen_t)sizeof(int))
		return -EINVAL;
	memcpy(val, &v, sizeof(v));
	*len = sizeof(int);
	return 0;
}

int inherit_getsockopt(int fd, int level, int opt, void *val, socklen_t *len, int *rc)
{
	struct relayed r;
	int saved = errno;

	if (level == SOL_SOCKET && opt != SO_DOMAIN && opt != SO_PROTOCOL && opt != SO_PEERCRED)
		return 0;
	if (level != SOL_SOCKET && level != IPPROTO_TCP && level != IPPROTO_IP &&
	    level != IPPROTO_IPV6)
		return 0;
	if (!relayed_find(fd, &r)) {
		errno = saved;
		return 0;
	}
	errno = saved;
	if (level == SOL_SOCKET && opt == SO_DOMAIN) {
		*rc = int_out(val, len, r.family);
	} else if (level == SOL_SOCKET && opt == SO_PROTOCOL) {
		*rc = int_out(val, len, IPPROTO_TCP);
	} else if (level == SOL_SOCKET) {
		/* A TCP socket has no peer credentials: pid 0, the overflow ids. */
		struct ucred u = {.pid = 0, .uid = 65534, .gid = 65534};

		if (val == NULL || len == NULL) {
			*rc = -EFAULT;
			return 1;
		}
		memcpy(val, &u, *len < sizeof(u) ? *len : sizeof(u));
		*len = *len < sizeof(u) ? *len : sizeof(u);
		*rc = 0;
	} else if (level == IPPROTO_TCP && opt == TCP_NODELAY) {
		*rc = int_out(val, len, r.nodelay);
	} else {
		*rc = -ENOPROTOOPT; /* the TCP socket is in the relay */
	}
	return 1;
}

int inherit_setsockopt(int fd, int level, int opt, const void *val, socklen_t len, int *rc)
{
	struct relayed r;
	int saved = errno;

	if (level != IPPROTO_TCP && level != IPPROTO_IP && level != IPPROTO_IPV6)
		return 0;
	if (!relayed_find(fd, &r)) {
		errno = saved;
		return 0;
	}
	errno = saved;
	*rc = 0;
	if (level == IPPROTO_TCP && opt == TCP_NODELAY) {
		if (val == NULL || len < (socklen_t)sizeof(int))
			*rc = -EINVAL;
		else
			relayed_set_nodelay(r.ino, *(const int *)val != 0);
	}
	/* Others (IP_TOS, keep-alive timing) are accepted: the relay's socket keeps its own. */
	return 1;
}

/* ---- TLSSHIM_INHERIT ------------------------------------------------------------- */

static int parse_sockaddr(int family, const char *addr, const char *port,
			  struct sockaddr_storage *ss, socklen_t *len)
{
	unsigned long p = strtoul(port, NULL, 10);

	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)ss;

		s->sin_family = AF_INET;
		s->sin_port = htons((uint16_t)p);
		*len = sizeof(*s);
		return inet_pton(AF_INET, addr, &s->sin_addr) == 1 ? 0 : -1;
	}
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

	s6->sin6_family = AF_INET6;
	s6->sin6_port = htons((uint16_t)p);
	*len = sizeof(*s6);
	return inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1 ? 0 : -1;
}

/* One entry (fields split on spaces, at most 9). */
static void parse_entry(char *e, int *fds, size_t *nfd, struct hint *h, size_t *nh)
{
	char *f[9];
	int n = 0;

	for (char *save = NULL, *t = strtok_r(e, " ", &save); t != NULL && n < 9;
	     t = strtok_r(NULL, " ", &save))
		f[n++] = t;
	if (n >= 4 && strcmp(f[0], "a") == 0) {
		long fd = strtol(f[1], NULL, 10);

		if (fd >= 0 && fd < 1048576 && *nfd < MAX_CAND)
			fds[(*nfd)++] = (int)fd;
		if (*nh < MAX_HINTS) {
			h[*nh].ino = strtoul(f[2], NULL, 10);
			h[*nh].mode = (int)strtol(f[3], NULL, 10);
			h[*nh].kind = n >= 5 && (f[4][0] == 'c' || f[4][0] == 'p') ? f[4][0] : 0;
			snprintf(h[*nh].name, sizeof(h[*nh].name), "%s", n >= 6 ? f[5] : "");
			(*nh)++;
		}
	} else if (n >= 2 && strcmp(f[0], "x") == 0 && *nh < MAX_HINTS) {
		h[*nh].ino = strtoul(f[1], NULL, 10);
		h[*nh].kind = 'x';
		h[*nh].mode = -1;
		h[*nh].name[0] = '\0';
		(*nh)++;
	} else if (n >= 8 && strcmp(f[0], "r") == 0) {
		struct relayed r = {.ino = strtoul(f[1], NULL, 10)};

		r.family = strcmp(f[2], "6") == 0 ? AF_INET6 : AF_INET;
		r.nodelay = strcmp(f[7], "1") == 0;
		if (parse_sockaddr(r.family, f[3], f[4], &r.local, &r.llen) == 0 &&
		    parse_sockaddr(r.family, f[5], f[6], &r.peer, &r.plen) == 0)
			relayed_add(&r);
	}
}

static void parse_env(const char *v, int *fds, size_t *nfd, struct hint *h, size_t *nh)
{
	char *copy = strdup(v);

	if (copy == NULL)
		return;
	for (char *save = NULL, *e = strtok_r(copy, ";", &save); e != NULL;
	     e = strtok_r(NULL, ";", &save))
		parse_entry(e, fds, nfd, h, nh);
	free(copy);
}

/* The variables start-up reads, found in one pass over the environment. */
struct start_env {
	const char *policy, *policy_file, *inherit, *listen_pid, *listen_fds;
	int ucspi_tcp; /* PROTO=TCP: started by a UCSPI tool (tcpclient: fds 6 and 7) */
};

extern char **environ;

/* The rest of S after PREFIX, or NULL (no libc call: start-up binds as few symbols as it can). */
static const char *after(const char *s, const char *prefix)
{
	for (; *prefix != '\0'; s++, prefix++)
		if (*s != *prefix)
			return NULL;
	return s;
}

static void start_env_scan(struct start_env *se)
{
	memset(se, 0, sizeof(*se));
	for (char **e = environ; e != NULL && *e != NULL; e++) {
		const char *v, *t = *e;

		if (t[0] == 'T' && (v = after(t, ENV_PREFIX)) != NULL) {
			const char *w;

			if ((w = after(v, "POLICY=")) != NULL)
				se->policy = w;
			else if ((w = after(v, "POLICY_FILE=")) != NULL)
				se->policy_file = w;
			else if ((w = after(v, "INHERIT=")) != NULL)
				se->inherit = w;
		} else if (t[0] == 'P' && after(t, "PROTO=TCP") != NULL) {
			se->ucspi_tcp = 1;
		} else if (t[0] == 'L' && (v = after(t, "LISTEN_")) != NULL) {
			const char *w;

			if ((w = after(v, "PID=")) != NULL)
				se->listen_pid = w;
			else if ((w = after(v, "FDS=")) != NULL)
				se->listen_fds = w;
		}
	}
}

/* systemd socket activation: LISTEN_FDS sockets from fd 3, if LISTEN_PID is us. */
static void listen_fds(const struct start_env *se, int *fds, size_t *nfd)
{
	const char *pid = se->listen_pid, *n = se->listen_fds;
	long count;

	if (pid == NULL || n == NULL || strtol(pid, NULL, 10) != (long)getpid())
		return;
	count = strtol(n, NULL, 10);
	for (long i = 0; i < count && *nfd < MAX_CAND; i++)
		fds[(*nfd)++] = 3 + (int)i;
}

/* ---- deciding an inherited connection ------------------------------------------- */

/* The fds of one wrapped connection that a new program would inherit. */
struct group {
	struct conn *c;
	int fds[8];
	int nfds;
	int inherited; /* some fd has no FD_CLOEXEC */
	int overflow;  /* more than fds[] holds: they cannot all be named to the new program */
};

static int relay(struct group *g, const char *what);

static const struct policy_rule *match_accept(const struct ep *local)
{
	struct policy_query q = {.dir = POLICY_ACCEPT};
	const char *alt[8];

	if (!shim.has_accept)
		return NULL;
	q.family = local->family;
	memcpy(q.addr, local->addr, sizeof(q.addr));
	q.port = local->port;
	q.alt_names = alt;
	q.n_alt = names_self(shim.policy, POLICY_ACCEPT, local->family, local->addr, alt, 8);
	return policy_match(shim.policy, &q, NULL);
}

/* Whether NAME resolves (by our own look-up) to PEER's address. */
static int name_is_peer(const char *name, const struct ep *peer)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
	int ok = 0;

	if (name[0] == '\0' || real.getaddrinfo(name, NULL, &hints, &res) != 0)
		return 0;
	for (struct addrinfo *a = res; a != NULL && !ok; a = a->ai_next) {
		struct ep e;

		ok = ep_from_sockaddr(&e, a->ai_addr, a->ai_addrlen) == 0 &&
		     e.family == peer->family &&
		     memcmp(e.addr, peer->addr, e.family == AF_INET ? 4 : 16) == 0;
	}
	freeaddrinfo(res);
	return ok;
}

/* The connect rule for PEER; *NAME is the name it is about (SNI, verification) or NULL. */
static const struct policy_rule *match_connect(const struct ep *peer, const char *hint,
					       const char **name)
{
	struct policy_query q = {.dir = POLICY_CONNECT};
	struct policy_match m;
	const struct policy_rule *r;
	const char *alt[8];

	*name = NULL;
	if (!shim.has_connect)
		return NULL;
	q.family = peer->family;
	memcpy(q.addr, peer->addr, sizeof(q.addr));
	q.port = peer->port;
	if (hint != NULL && name_is_peer(hint, peer))
		q.name = hint;
	else if (hint != NULL && hint[0] != '\0')
		log_warn("connect %s:%u: inherited with the name \"%s\", which does not resolve "
			 "to it: decided by address only",
			 peer->text, peer->port, hint);
	q.alt_names = alt;
	q.n_alt = names_self(shim.policy, POLICY_CONNECT, peer->family, peer->addr, alt, 8);
	r = policy_match(shim.policy, &q, &m);
	*name = (m.host_kind == POLICY_HOST_NAME && m.name != NULL) ? m.name : q.name;
	return r;
}

/* Whether PORT is in the kernel's ephemeral range (a connection this side made). */
static int port_ephemeral(uint16_t port)
{
	char buf[64] = "", *end;
	unsigned long lo = 32768, hi = 60999; /* the kernel's default */
	int fd = real_open("/proc/sys/net/ipv4/ip_local_port_range", O_RDONLY | O_CLOEXEC, 0);

	if (fd >= 0) {
		ssize_t n = real.read(fd, buf, sizeof(buf) - 1);

		real.close(fd);
		if (n > 0) {
			unsigned long a, b;

			buf[n] = '\0';
			a = strtoul(buf, &end, 10);
			b = strtoul(end, NULL, 10);
			if (a > 0 && a <= b && b <= 65535) { /* else the default */
				lo = a;
				hi = b;
			}
		}
	}
	return port >= lo && port <= hi;
}

/* Wraps the inherited socket FDS[0..N) (one socket) by R; see inherit_startup. */
static void wrap(const int *fds, size_t n, const struct policy_rule *r, int client,
		 const char *name, const struct ep *local, const struct ep *peer,
		 const struct hint *h)
{
	char l[80], p[NAMES_MAX_NAME + 80], desc[NAMES_MAX_NAME + 200];
	struct conn *c;
	int err = 0, fl = real.fcntl(fds[0], F_GETFL);

	ep_describe(local, NULL, l, sizeof(l));
	ep_describe(peer, client ? name : NULL, p, sizeof(p));
	if (client)
		snprintf(desc, sizeof(desc), "connect %s", p);
	else
		snprintf(desc, sizeof(desc), "accept %s from %s", l, p);
	if (client)
		c = conn_new_client(fds[0], r, name, peer->text, peer->port, desc, &err);
	else
		c = conn_new_server(fds[0], r, desc, fl >= 0 && (fl & O_NONBLOCK), -1, &err);
	if (c == NULL) {
		/* Never leave in cleartext a connection we could not protect. */
		log_error("%s: cannot wrap the inherited connection (fd %d): %s", desc, fds[0],
			  strerror(err ? err : ENOMEM));
		real.shutdown(fds[0], SHUT_RDWR);
		return;
	}
	if (r->action == POLICY_DENY) {
		log_warn("%s: inherited connection denied by policy (%s:%u)", desc, r->source,
			 r->line);
		c->state = CONN_FAILED;
		c->err = outcome_errno(OUTCOME_RESET);
		real.shutdown(fds[0], SHUT_RDWR);
	} else {
		if (h != NULL && h->kind == 'p' && r->action == POLICY_AUTO)
			c->state = CONN_PLAIN;
		/* As the parent's program had set them (the flags underneath are ours). */
		if (h != NULL && h->mode >= 0) {
			conn_set_nonblock(c, h->mode & 1);
			conn_set_nodelay(c, (h->mode & 2) != 0);
		}
		log_info("%s: inherited connection on fd %d adopted (%s:%u)", desc, fds[0],
			 r->source, r->line);
	}
	if (fdtab_set(fds[0], c) != 0)
		real.shutdown(fds[0], SHUT_RDWR);
	for (size_t i = 1; i < n; i++)
		if (conn_add_fd(c, fds[i]) != 0 || fdtab_set(fds[i], c) != 0)
			real.shutdown(fds[0], SHUT_RDWR);
	/*
	 * On standard input/output the program's stdio streams write through
	 * glibc's internal calls, past every hook: the session goes to a relay
	 * and the program gets a local socket, so those bytes are encrypted too.
	 */
	if (fds[0] <= 2 && r->action != POLICY_DENY) {
		struct group g = {.c = c, .nfds = 0, .inherited = 1};

		for (size_t i = 0; i < n && i < 8; i++)
			g.fds[g.nfds++] = fds[i];
		if (relay(&g, "inherited on standard input/output") != 0)
			log_warn("%s: no relay process: served in this process (bytes the program "
				 "writes through stdio would bypass TLS)",
				 desc);
	}
	conn_put(c);
}

/* An fd whose TLS session could not follow the exec: every I/O fails, once logged. */
static void refused(const int *fds, size_t n)
{
	static const struct policy_rule none = {.action = POLICY_TLS};
	struct conn *c;
	int err = 0;

	log_error("fd %d: inherited a connection whose TLS session stayed in the parent: "
		  "its I/O fails with ECONNRESET",
		  fds[0]);
	c = conn_new_server(fds[0], &none, "inherited connection", 0, -1, &err);
	if (c == NULL)
		return;
	c->state = CONN_FAILED;
	c->err = outcome_errno(OUTCOME_RESET);
	for (size_t i = 0; i < n; i++)
		if (i == 0 ? fdtab_set(fds[i], c) != 0
			   : (conn_add_fd(c, fds[i]) != 0 || fdtab_set(fds[i], c) != 0))
			break;
	conn_put(c);
}

static const struct hint *hint_for(const struct hint *h, size_t nh, unsigned long ino)
{
	for (size_t i = 0; i < nh; i++)
		if (h[i].ino == ino)
			return &h[i];
	return NULL;
}

static int inet_stream(int fd)
{
	int dom = 0;
	socklen_t len = sizeof(dom);

	real_resolve((void **)&real.getsockopt, "getsockopt", 1);
	return real.getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &len) == 0 &&
	       (dom == AF_INET || dom == AF_INET6);
}

/* Decides one inherited socket (all its fds FDS[0..N)) and wraps it if a rule says so. */
static void adopt(const int *fds, size_t n, const struct hint *h)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct ep local, peer;
	const struct policy_rule *ra, *rc;
	const char *name = NULL;

	if (h != NULL && h->kind == 'x') {
		real_init();
		refused(fds, n);
		return;
	}
	/*
	 * Most sockets found here are AF_UNIX (a service's journal, a relayed
	 * connection): told apart with one resolved symbol, not the whole table.
	 */
	if (!inet_stream(fds[0]))
		return;
	real_init(); /* wrapped work may follow */
	if (!fd_is_tcp(fds[0]) || real.getsockname(fds[0], (struct sockaddr *)&ss, &len) != 0 ||
	    ep_from_sockaddr(&local, (struct sockaddr *)&ss, len) != 0)
		return;
	len = sizeof(ss);
	if (real.getpeername(fds[0], (struct sockaddr *)&ss, &len) != 0 ||
	    ep_from_sockaddr(&peer, (struct sockaddr *)&ss, len) != 0)
		return; /* a listening or unconnected socket: accept/connect decide later */
	/*
	 * The parent's shim made it as a client: its connect rule, if that still
	 * wraps here. Otherwise as an accepted connection (the local address),
	 * and only then as one this side made (an ephemeral local port).
	 */
	if (h != NULL && h->kind == 'c') {
		rc = match_connect(&peer, h->name, &name);
		if (rc != NULL && rc->action != POLICY_PLAIN) {
			wrap(fds, n, rc, 1, name, &local, &peer, h);
			return;
		}
	}
	ra = match_accept(&local);
	if (ra != NULL && ra->action != POLICY_PLAIN) {
		wrap(fds, n, ra, 0, NULL, &local, &peer, h);
		return;
	}
	if (ra == NULL && shim.has_connect && port_ephemeral(local.port)) {
		rc = match_connect(&peer, NULL, &name);
		if (rc != NULL && rc->action != POLICY_PLAIN)
			wrap(fds, n, rc, 1, name, &local, &peer, h);
	}
}

void inherit_startup(void)
{
	int fds[MAX_CAND];
	unsigned long ino[MAX_CAND];
	struct hint h[MAX_HINTS];
	size_t nfd = 0, nh = 0;
	struct start_env se;

	start_env_scan(&se);
	policy_hash = hash_str(se.policy);
	policy_file_hash = hash_str(se.policy_file);
	for (int fd = 0; fd < 3; fd++)
		fds[nfd++] = fd;
	/* ucspi-tcp's tcpclient runs its program with the connection on fds 6 and 7. */
	if (se.ucspi_tcp) {
		fds[nfd++] = 6;
		fds[nfd++] = 7;
	}
	listen_fds(&se, fds, &nfd);
	if (se.inherit != NULL && !getauxval(AT_SECURE))
		parse_env(se.inherit, fds, &nfd, h, &nh);
	/* One fstat() per candidate: a process with no socket there stops here. */
	for (size_t i = 0; i < nfd; i++) {
		ino[i] = fd_ino(fds[i]);
		for (size_t j = 0; j < i && ino[i] != 0; j++)
			if (fds[j] == fds[i])
				ino[i] = 0;
	}
	for (size_t i = 0; i < nfd; i++) {
		int group[MAX_CAND];
		size_t ng = 0;

		if (ino[i] == 0)
			continue;
		/* Every candidate fd of the same socket (dup'ed onto 0 and 1) is one connection. */
		for (size_t j = i; j < nfd; j++) {
			if (ino[j] == ino[i] && (j == i || ino[j] != 0)) {
				group[ng++] = fds[j];
				if (j != i)
					ino[j] = 0;
			}
		}
		adopt(group, ng, hint_for(h, nh, ino[i]));
		ino[i] = 0;
	}
}

void inherit_fork_child(void)
{
	self_pid = getpid();
}

/* ---- exec ------------------------------------------------------------------------ */

static const char *env_get(char *const envp[], const char *key)
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
static int program_preloads(const char *path, int search)
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
 * the loader preloads into and that calls libc (program_preloads).
 */
static int child_adopts(const char *path, int search, char *const envp[])
{
	const char *pre = env_get(envp, "LD_PRELOAD");
	Dl_info info;

	if (pre == NULL || dladdr((void *)inherit_startup, &info) == 0 || info.dli_fname == NULL ||
	    strstr(pre, info.dli_fname) == NULL)
		return 0;
	if (hash_str(env_get(envp, ENV_POLICY)) != policy_hash ||
	    hash_str(env_get(envp, ENV_POLICY_FILE)) != policy_file_hash)
		return 0;
	return program_preloads(path, search);
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
	unsigned long ino = fd_ino(g->fds[0]);
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
		log_debug("%s: handed over before its handshake (fd %d)", c->desc, g->fds[0]);
	return 0;
}

/* Replaces every fd of G with a dead socket: the new program's I/O on it fails. */
static void refuse(struct group *g, const char *prog, const char *why)
{
	int sp[2], *fds, n;
	unsigned long ino;

	log_warn("%s: exec of %s: fd %d refused to the new program (%s): its TLS session "
		 "cannot follow, so its I/O fails",
		 g->c->desc, prog, g->fds[0], why);
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
	ino = fd_ino(sp[0]);
	for (int i = 0; i < n; i++) {
		int fl = real.fcntl(fds[i], F_GETFD);

		if (fl >= 0 && !(fl & FD_CLOEXEC)) {
			real.dup2(sp[0], fds[i]);
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
static int relay(struct group *g, const char *what)
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
	r.ino = fd_ino(sp[0]);
	r.family = ls.ss_family; /* as the socket says: AF_INET6 for a mapped IPv4 peer */
	r.nodelay = conn_nodelay(c);
	memcpy(&r.local, &ls, sizeof(ls));
	r.llen = ll;
	memcpy(&r.peer, &ps, sizeof(ps));
	r.plen = pl;
	log_info("%s: %s: its TLS session moved to relay process %d; the program gets fd %d as "
		 "a local socket",
		 c->desc, what, pid, g->fds[0]);
	for (int i = 0; i < n; i++) {
		int fl = real.fcntl(fds[i], F_GETFD);

		fdclose_release(fds[i]); /* no I/O: the session is the relay's now */
		real.dup3(sp[0], fds[i], fl >= 0 && (fl & FD_CLOEXEC) ? O_CLOEXEC : 0);
	}
	free(fds);
	real.close(sp[0]);
	relayed_add(&r);
	carry_relayed(&r, local.port, peer.port);
	return 0;
}

/*
 * Groups the wrapped fds by connection: *OUT (a new array) gets one group
 * per connection, each with a reference. Returns how many, or -ENOMEM.
 */
static int gather(struct group **out)
{
	struct collect col = {.n = 0};
	struct group *gs = NULL;
	int ng = 0;

	fdtab_foreach(collect_fd, &col);
	if (col.oom || (col.n > 0 && (gs = calloc((size_t)col.n, sizeof(*gs))) == NULL)) {
		free(col.fds);
		return -ENOMEM;
	}
	for (int i = 0; i < col.n; i++) {
		struct conn *c = fdtab_get(col.fds[i]);
		int k, fl;

		if (c == NULL)
			continue;
		/* Replaced by an earlier try of this exec (in a vfork()ed child): not ours now. */
		if (!inet_stream(col.fds[i])) {
			conn_put(c);
			continue;
		}
		for (k = 0; k < ng && gs[k].c != c; k++)
			;
		if (k == ng)
			gs[ng++].c = c;
		else
			conn_put(c);
		fl = real.fcntl(col.fds[i], F_GETFD);
		if (fl >= 0 && !(fl & FD_CLOEXEC)) {
			gs[k].inherited = 1;
			if (gs[k].nfds < 8)
				gs[k].fds[gs[k].nfds++] = col.fds[i];
			else
				gs[k].overflow = 1;
		}
	}
	free(col.fds);
	*out = gs;
	return ng;
}

static void build_env(struct inherit_exec *x, char *const envp[], const struct entries *e)
{
	const char *old = env_get(envp, INHERIT_ENV);
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
	vforked = getpid() != self_pid;
	if (prog == NULL)
		prog = "a program";
	for (int i = 0; i < ng; i++) {
		struct group *g = &gs[i];

		if (g->inherited && spawn) {
			/* This process goes on with the connection: both use it through the relay.
			 */
			if (relay(g, h_spawn(what, sizeof(what), prog)) != 0) {
				/* The child would write cleartext on it: no one may. */
				log_error(
				    "%s: spawn of %s: no relay process: the connection is shut "
				    "down (the child would inherit fd %d without its TLS session)",
				    g->c->desc, prog, g->fds[0]);
				real.shutdown(g->c->fd, SHUT_RDWR);
			}
		} else if (g->inherited) {
			if (adopts < 0)
				adopts = child_adopts(path, search, envp);
			/* Handed over only if every inherited fd can be named to the new program.
			 */
			int handed =
			    adopts && !g->overflow && not_started(g->c) && hand_over(g, &e) == 0;

			if (!handed && vforked)
				refuse(g, prog, "exec from a vfork()ed child");
			else if (!handed && relay(g, h_exec(what, sizeof(what), prog)) != 0)
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
}

void inherit_exec_done(struct inherit_exec *x)
{
	free(x->alloc);
	free(x->var);
	x->alloc = NULL;
	x->var = NULL;
}
