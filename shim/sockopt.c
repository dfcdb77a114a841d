/*
 * sockopt.c - socket options of a wrapped connection (see sockopt.h).
 */
#include <errno.h>
#include <poll.h>

#include "conn.h"
#include "sockopt.h"

int sockopt_set(struct conn *c, int opt, const void *val, socklen_t len)
{
	if (val == NULL || len < (socklen_t)sizeof(int))
		return -EINVAL;
	if (opt == TCP_CORK)
		return conn_set_cork(c, *(const int *)val != 0);
	conn_set_nodelay(c, *(const int *)val != 0);
	return 0;
}

int sockopt_get(struct conn *c, int level, int opt, void *val, socklen_t *len)
{
	short kev;
	int v;

	if (level == IPPROTO_TCP) {
		if (val == NULL || len == NULL || *len < (socklen_t)sizeof(int))
			return -EINVAL;
		*(int *)val = opt == TCP_CORK ? conn_cork(c) : conn_nodelay(c);
		*len = sizeof(int);
		return 0;
	}
	/* Let a connect in progress learn its outcome first, as the kernel would. */
	conn_poll_prepare(c, POLLOUT, &kev);
	v = conn_take_so_error(c);
	if (val == NULL || len == NULL || *len < (socklen_t)sizeof(int))
		return -EINVAL;
	*(int *)val = v;
	*len = sizeof(int);
	return 0;
}
