/*
 * listeners.c - the TCP ports this process listens on (see listeners.h).
 *
 * A small ring, most recent first out: the question is asked once per wrapped
 * connect() and a test suite or server listens on a handful of ports at a
 * time. Entries are never removed on close; an old entry only makes a connect
 * to that port return before its handshake, which is always safe.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "listeners.h"
#include "real.h"

#define LISTENERS_MAX 64

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct ep ring[LISTENERS_MAX];
static unsigned n_noted;

void listeners_note(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct ep ep;
	int saved = errno;

	if (real.getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
	    ep_from_sockaddr(&ep, (struct sockaddr *)&ss, len) == 0 && fd_is_tcp(fd)) {
		pthread_mutex_lock(&lock);
		ring[n_noted % LISTENERS_MAX] = ep;
		n_noted++;
		pthread_mutex_unlock(&lock);
	}
	errno = saved;
}

static int is_loopback(const struct ep *e)
{
	static const unsigned char v6_loop[16] = {[15] = 1};

	if (e->family == AF_INET)
		return e->addr[0] == 127;
	return memcmp(e->addr, v6_loop, 16) == 0;
}

static int is_wildcard(const struct ep *e)
{
	static const unsigned char zero[16];

	return memcmp(e->addr, zero, e->family == AF_INET ? 4 : 16) == 0;
}

int listeners_local(const struct ep *dst)
{
	unsigned n;
	int found = 0;

	pthread_mutex_lock(&lock);
	n = n_noted < LISTENERS_MAX ? n_noted : LISTENERS_MAX;
	for (unsigned i = 0; i < n && !found; i++) {
		const struct ep *l = &ring[i];

		if (l->port != dst->port)
			continue;
		/* An IPv6 wildcard listener takes IPv4 connections too (dual stack). */
		if (is_wildcard(l))
			found =
			    is_loopback(dst) && (l->family == dst->family || l->family == AF_INET6);
		else
			found = l->family == dst->family &&
				memcmp(l->addr, dst->addr, l->family == AF_INET ? 4 : 16) == 0;
	}
	pthread_mutex_unlock(&lock);
	return found;
}
