/*
 * inherit.h - connections a program did not make itself: inherited sockets
 * adopted by policy at start-up, and wrapped connections handed across exec
 * (before the handshake: the new program's shim adopts them; after it: a relay
 * process keeps the TLS session). Design: shim/DESIGN.md, "Inherited
 * connections".
 */
#ifndef TLSSHIM_INHERIT_H
#define TLSSHIM_INHERIT_H

#include <stdatomic.h>
#include <sys/socket.h>

#include "env.h"

/* The environment variable the shim sets across exec (internal; never a user's). */
#define INHERIT_ENV ENV_INHERIT

/*
 * Start-up (the constructor, when a policy is set): decides the connected TCP
 * sockets on fds 0-2, on systemd's LISTEN_FDS and on the fds a parent under
 * the shim listed in TLSSHIM_INHERIT, as their accept (or connect) would have
 * been decided, and wraps those a rule covers. A process without such sockets
 * pays one fstat() per fd 0-2.
 */
void inherit_startup(void);

/* fork() child handler: the process id the exec hooks compare against. */
void inherit_fork_child(void);

/*
 * Whether this process is a vfork()ed child (posix_spawn's, subprocess's,
 * the JDK's VFORK launcher): it shares the parent's memory, so the shim's
 * tables it sees are the parent's, while its fd table is its own. Closing or
 * replacing its copies of fds must leave those tables alone. One getpid()
 * system call: for paths that already know a wrapped fd or the log file is
 * involved.
 */
int inherit_vforked(void);

/* Relayed fds (AF_UNIX sockets standing for a TCP connection) known here. */
extern atomic_int inherit_nrelayed;

static inline int inherit_any_relayed(void)
{
	return atomic_load_explicit(&inherit_nrelayed, memory_order_relaxed) != 0;
}

/*
 * getsockname (PEER 0) / getpeername (PEER 1) for FD if it is a relayed
 * connection: the TCP connection's address. Returns 1 with the result in *RC
 * (0 or -errno), or 0 if FD is not relayed.
 */
int inherit_sockname(int fd, int peer, struct sockaddr *sa, socklen_t *len, int *rc);

/* getsockopt/setsockopt on a relayed FD as on the TCP socket; same convention. */
int inherit_getsockopt(int fd, int level, int opt, void *val, socklen_t *len, int *rc);
int inherit_setsockopt(int fd, int level, int opt, const void *val, socklen_t len, int *rc);

/*
 * exec: what an exec hook does before and (if exec returned) after the call.
 * inherit_exec_prepare() looks at every wrapped connection the new program
 * would inherit: one whose handshake has not started is left for the new
 * program's shim to adopt (same policy) or relayed; one that has carried data
 * is moved into a relay process and the program's fds are replaced by a
 * socketpair end; what cannot follow is refused (the fd becomes a dead
 * socket, logged). PATH is the file (looked up in PATH when SEARCH, as
 * execvp does; NULL if unknown), ARGV[0] names the program in log lines. Returns the environment to
 * pass: ENVP itself, or a new array (freed by inherit_exec_done()).
 */
struct inherit_exec {
	char **envp;  /* what to pass to the real exec */
	char **alloc; /* a new environment array, or NULL */
	char *var;    /* its TLSSHIM_INHERIT=... string */
	int nrestore; /* handed-over connections to make non-blocking again */
	int restore[8];
	char **lalloc;  /* the environment with the library's variables added, or NULL */
	char *lvar;     /* its LD_PRELOAD=... string */
	int dead[8][2]; /* listeners replaced by a dead socket: fd, and a copy to put back */
	int ndead;
	int refuse; /* spawn: an errno to fail it with (a listener cannot go along), or 0 */
	int nlent;  /* vfork()ed child: connections handed over, the parent's fd of each */
	int lent[8];
};
void inherit_exec_prepare(struct inherit_exec *x, const char *path, int search, char *const argv[],
			  char *const envp[]);
/*
 * posix_spawn/system/popen: glibc execs inside them, past the exec hooks, and
 * this process goes on. Every wrapped connection the child would inherit
 * moves into a relay first, which both then use through a local socket.
 * Same contract as inherit_exec_prepare() otherwise.
 */
void inherit_spawn_prepare(struct inherit_exec *x, const char *path, char *const argv[],
			   char *const envp[]);
/* The exec returned (it failed): undoes what only the new program needed. */
void inherit_exec_done(struct inherit_exec *x);

/*
 * Part of the two above (inherit_listen.c): a TCP listener the new program
 * inherits and the policy wraps stays wrapped. If X->envp would not load this
 * library with this policy (nginx's binary upgrade passes only TZ and NGINX),
 * LD_PRELOAD and this process's TLSSHIM_ variables are added to it; if the
 * program cannot load the library, the listener becomes a dead socket for it
 * (exec; put back by inherit_listeners_done() if the exec fails), or the
 * spawn is refused (X->refuse). Logged. SPAWN: a spawn, else an exec.
 */
void inherit_listeners_prepare(struct inherit_exec *x, const char *path, int search,
			       const char *prog, int spawn);
void inherit_listeners_done(struct inherit_exec *x);

#endif
