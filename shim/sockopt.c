/*
 * sockopt.c - socket options of a wrapped connection (see sockopt.h).
 */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include "conn.h"
#include "sockopt.h"

/* The program's option values may be unaligned: copied, never dereferenced as int. */
static int int_of(const void *val)
{
	int v;

	memcpy(&v, val, sizeof(v));
	return v;
}

static void int_to(void *val, int v)
{
	memcpy(val, &v, sizeof(v));
}

int sockopt_set(struct conn *c, int opt, const void *val, socklen_t len)
{
	if (val == NULL || len < (socklen_t)sizeof(int))
		return -EINVAL;
	if (opt == TCP_CORK)
		return conn_set_cork(c, int_of(val) != 0);
	conn_set_nodelay(c, int_of(val) != 0);
	return 0;
}

int sockopt_get(struct conn *c, int level, int opt, void *val, socklen_t *len)
{
	short kev;
	int v;

	if (level == IPPROTO_TCP) {
		if (val == NULL || len == NULL || *len < (socklen_t)sizeof(int))
			return -EINVAL;
		int_to(val, opt == TCP_CORK ? conn_cork(c) : conn_nodelay(c));
		*len = sizeof(int);
		return 0;
	}
	/* Let a connect in progress learn its outcome first, as the kernel would. */
	conn_poll_prepare(c, POLLOUT, &kev);
	v = conn_take_so_error(c);
	if (val == NULL || len == NULL || *len < (socklen_t)sizeof(int))
		return -EINVAL;
	int_to(val, v);
	*len = sizeof(int);
	return 0;
}
