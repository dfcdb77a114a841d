/*
 * inherit.c - connections a program did not make: start-up (see inherit.h
 * and shim/DESIGN.md, "Inherited connections"). The exec side is in
 * inherit_exec.c, relayed fds in inherit_relayed.c.
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
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "conn.h"
#include "env.h"
#include "errmap.h"
#include "fdtab.h"
#include "inherit.h"
#include "inherit_int.h"
#include "log.h"
#include "names.h"
#include "real.h"
#include "shim.h"

pid_t inherit_self_pid SHIM_LOAD_DATA;
unsigned long inherit_policy_hash SHIM_LOAD_DATA, inherit_policy_file_hash SHIM_LOAD_DATA;

struct hint {
	unsigned long ino;
	char kind; /* 'c' client (with name), 'p' auto-plain, 'x' refused, 0 */
	int mode;  /* -1, or the program's O_NONBLOCK (1) and TCP_NODELAY (2) */
	char name[NAMES_MAX_NAME];
};

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
			inherit_relayed_add(&r);
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
	else if (hint != NULL && hint[0] != '\0') {
		char t[EP_TEXT_MAX];

		log_warn("connect %s:%u: inherited with the name \"%s\", which does not resolve "
			 "to it: decided by address only",
			 ep_text(peer, t), peer->port, hint);
	}
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
	char l[80], p[NAMES_MAX_NAME + 80], desc[NAMES_MAX_NAME + 200], t[EP_TEXT_MAX];
	struct conn *c;
	int err = 0, fl = real.fcntl(fds[0], F_GETFL);

	ep_describe(local, NULL, l, sizeof(l));
	ep_describe(peer, client ? name : NULL, p, sizeof(p));
	if (client)
		snprintf(desc, sizeof(desc), "connect %s", p);
	else
		snprintf(desc, sizeof(desc), "accept %s from %s", l, p);
	if (client)
		c = conn_new_client(fds[0], r, name, ep_text(peer, t), peer->port, desc, &err);
	else
		c = conn_new_server(fds[0], r, desc, NULL, fl >= 0 && (fl & O_NONBLOCK), -1, &err);
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
		if (inherit_relay(&g, "inherited on standard input/output") != 0)
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
	c = conn_new_server(fds[0], &none, "inherited connection", NULL, 0, -1, &err);
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

int inherit_inet_stream(int fd)
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
	if (!inherit_inet_stream(fds[0]))
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
	inherit_policy_hash = inherit_hash_str(se.policy);
	inherit_policy_file_hash = inherit_hash_str(se.policy_file);
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
		ino[i] = inherit_fd_ino(fds[i]);
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
	inherit_self_pid = getpid();
}

int inherit_vforked(void)
{
	return inherit_self_pid != 0 && getpid() != inherit_self_pid;
}
