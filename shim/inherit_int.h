/*
 * inherit_int.h - what the files of inherited connections share, and nothing
 * outside them includes (the rest of the shim uses inherit.h).
 *
 *   inherit.c          start-up: TLSSHIM_INHERIT, the candidate fds, the decision, adoption
 *   inherit_exec.c     exec and spawn: hand-over, refusal, the move into a relay
 *   inherit_relayed.c  relayed fds: getsockname/getsockopt & co. as on the TCP socket
 */
#ifndef TLSSHIM_INHERIT_INT_H
#define TLSSHIM_INHERIT_INT_H

#include <sys/socket.h>
#include <sys/types.h>

#include "conn.h"
#include "inherit.h"

#define MAX_CAND    64 /* candidate fds looked at start-up */
#define MAX_HINTS   16
#define MAX_RELAYED 32

/* What a relayed fd (an AF_UNIX socket) stands for: the TCP connection in the relay. */
struct relayed {
	unsigned long ino;
	struct sockaddr_storage local, peer;
	socklen_t llen, plen;
	int family;
	int nodelay;
};

/* The fds of one wrapped connection that a new program would inherit. */
struct group {
	struct conn *c;
	int fds[8];
	int nfds;
	int inherited; /* some fd has no FD_CLOEXEC */
	int overflow;  /* more than fds[] holds: they cannot all be named to the new program */
};

/*
 * On the page the loader wrote already (shim.h): this process's id, set by
 * inherit_fork_child() (at the first wrapped work and in a fork() child), and
 * the hashes of the policy variables the constructor loaded (inherit.c).
 */
extern pid_t inherit_self_pid;
extern unsigned long inherit_policy_hash, inherit_policy_file_hash;

/* FNV-1a: whether a child's environment carries the policy this process loaded. */
static inline unsigned long inherit_hash_str(const char *s)
{
	unsigned long h = 1469598103934665603ul;

	if (s == NULL)
		return 0;
	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ul;
	return h;
}

/* The socket inode of FD, or 0 if FD is not a socket (inherit_relayed.c). */
unsigned long inherit_fd_ino(int fd);

/* Whether FD is an AF_INET or AF_INET6 socket: one resolved symbol (inherit.c). */
int inherit_inet_stream(int fd);

/* KEY's value in ENVP, or NULL (inherit_exec.c). */
const char *inherit_env_get(char *const envp[], const char *key);

/*
 * Whether the program PATH (looked up in PATH when SEARCH) will honour
 * LD_PRELOAD and call libc: not static, setuid/setgid, with file
 * capabilities, nor Go (inherit_exec.c).
 */
int inherit_program_preloads(const char *path, int search);

/* Whether that program, given ENVP, will load this library with this policy (inherit_exec.c). */
int inherit_child_adopts(const char *path, int search, char *const envp[]);

/* Records R (a new relayed fd), if the table has room (inherit_relayed.c). */
void inherit_relayed_add(const struct relayed *r);

/*
 * Moves G's session into a relay; the program's fds become a socketpair end
 * (inherit_exec.c). WHAT says why, for the log line. Returns 0 or -errno.
 */
int inherit_relay(struct group *g, const char *what);

#endif
