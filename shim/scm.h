/*
 * scm.h - fds passed over SCM_RIGHTS: those received are new numbers (a
 * stale entry under one is dropped), and a wrapped one is never sent.
 */
#ifndef TLSSHIM_SCM_H
#define TLSSHIM_SCM_H

#include <sys/socket.h>

#include "epreg.h"
#include "fdtab.h"

void scm_received_scan(const struct msghdr *msg);
int scm_passes_wrapped_scan(int fd, const struct msghdr *msg);

/*
 * MSG was just received (recvmsg, recvmmsg): every fd it carries over
 * SCM_RIGHTS is a number the kernel handed out (fd_new()). Looked at only for
 * messages with control data, in a process that has wrapped an fd or keeps
 * epoll registrations.
 */
static inline void scm_received(const struct msghdr *msg)
{
	if (__builtin_expect(msg->msg_controllen == 0 || (!fdtab_any() && !epreg_active()), 1))
		return;
	scm_received_scan(msg);
}

/*
 * Whether MSG (may be NULL), about to be sent on FD, passes a wrapped fd over
 * SCM_RIGHTS (logged). Its TLS session cannot go with it (a known limit): the
 * receiver would read raw records and write cleartext into a connection the
 * policy says is TLS. So, like a connection the policy denies, the send is
 * refused with EACCES. Looked at only for messages with control data, in a
 * process that has wrapped an fd.
 */
static inline int scm_passes_wrapped(int fd, const struct msghdr *msg)
{
	if (__builtin_expect(msg == NULL || msg->msg_controllen == 0 || !fdtab_any(), 1))
		return 0;
	return scm_passes_wrapped_scan(fd, msg);
}

#endif
