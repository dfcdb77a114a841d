/*
 * scm.c - the SCM_RIGHTS scan of a message's control data (see scm.h).
 */
#include <string.h>

#include "conn.h"
#include "fdnew.h"
#include "log.h"
#include "scm.h"

/* Calls FN(ARG, fd) for each fd MSG carries over SCM_RIGHTS until it returns non-zero. */
static int each_passed_fd(const struct msghdr *msg, int (*fn)(void *arg, int fd), void *arg)
{
	for (struct cmsghdr *cm = CMSG_FIRSTHDR((struct msghdr *)msg); cm != NULL;
	     cm = CMSG_NXTHDR((struct msghdr *)msg, cm)) {
		size_t n;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd, rc;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			rc = fn(arg, fd);
			if (rc != 0)
				return rc;
		}
	}
	return 0;
}

static int received(void *arg, int fd)
{
	(void)arg;
	fd_new(fd);
	return 0;
}

void scm_received_scan(const struct msghdr *msg)
{
	each_passed_fd(msg, received, NULL);
}

static int refused(void *arg, int passed)
{
	struct conn *c = fdtab_maybe(passed) ? fdtab_get(passed) : NULL;

	if (c == NULL)
		return 0;
	log_error("%s: refused to pass it (fd %d) over SCM_RIGHTS on fd %d: its TLS "
		  "session cannot go with it, and the receiver would write cleartext",
		  conn_desc(c), passed, *(const int *)arg);
	conn_put(c);
	return 1;
}

int scm_passes_wrapped_scan(int fd, const struct msghdr *msg)
{
	return each_passed_fd(msg, refused, &fd);
}
