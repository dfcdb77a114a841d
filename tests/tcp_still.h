/*
 * tcp_still.h - for tests that fill a socket and then expect writes to be
 * refused: whether the connection is certain to stay full until the peer reads.
 */
#ifndef TLSSHIM_TESTS_TCP_STILL_H
#define TLSSHIM_TESTS_TCP_STILL_H

#include <linux/sockios.h>
#include <linux/tcp.h> /* tcp_info with tcpi_snd_wnd */
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

/*
 * Whether FD's connection cannot move before the peer reads: bytes wait in
 * the send queue, none is in flight (SIOCOUTQ == SIOCOUTQNSD) and the peer's
 * receive window is closed, so no ACK can free room in the send buffer. A
 * first "would block" is not that: ACKs and window probes the kernel has not
 * handled yet (late on a loaded machine) make room after it, and data held
 * back from a window open by less than a segment goes out with a later probe.
 */
static inline int tcp_standing_still(int fd)
{
	struct tcp_info ti = {0};
	socklen_t len = sizeof(ti);
	int queued = 0, unsent = 0;

	if (ioctl(fd, SIOCOUTQ, &queued) != 0 || ioctl(fd, SIOCOUTQNSD, &unsent) != 0 ||
	    getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
		return 0;
	return unsent > 0 && queued == unsent && ti.tcpi_snd_wnd == 0;
}

#endif
