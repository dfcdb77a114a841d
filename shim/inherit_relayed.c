/*
 * inherit_relayed.c - relayed fds: the AF_UNIX socket a program holds for a
 * TCP connection whose TLS session is in a relay process (relay.c). Its
 * getsockname, getpeername and TCP-level options answer as the TCP socket
 * would (see inherit.h and shim/DESIGN.md, "Inherited connections").
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "inherit.h"
#include "inherit_int.h"

atomic_int inherit_nrelayed;

static struct relayed relayed[MAX_RELAYED];
static pthread_mutex_t relayed_lock = PTHREAD_MUTEX_INITIALIZER;

unsigned long inherit_fd_ino(int fd)
{
	struct stat st;

	if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode))
		return 0;
	return (unsigned long)st.st_ino;
}

void inherit_relayed_add(const struct relayed *r)
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
	unsigned long ino = inherit_fd_ino(fd);
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
		else {
			int on;

			memcpy(&on, val, sizeof(on)); /* the program's buffer may be unaligned */
			relayed_set_nodelay(r.ino, on != 0);
		}
	}
	/* Others (IP_TOS, keep-alive timing) are accepted: the relay's socket keeps its own. */
	return 1;
}
