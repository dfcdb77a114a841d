/*
 * relay.h - a process that keeps a TLS session after the program exec()s.
 *
 * A wrapped connection that has carried data cannot be handed to a new
 * program image: its TLS state is in this one's memory. relay_start() forks
 * (twice, so the relay is nobody's child the program would wait for) a
 * process that keeps the session and copies plaintext between it and one end
 * of a socketpair; the exec'ing program then puts the other end on the
 * connection's fd numbers. Design: shim/DESIGN.md, "Inherited connections".
 */
#ifndef TLSSHIM_RELAY_H
#define TLSSHIM_RELAY_H

struct conn;

/*
 * Moves C's session into a new relay process that serves it over SP (one end
 * of an AF_UNIX stream socketpair; the caller closes its copy). From then on
 * this process never touches the session: C is failed here with EBADF, and
 * closing its fds sends nothing. Returns the relay's pid, or -errno (C is
 * then left as it was).
 */
int relay_start(struct conn *c, int sp) __attribute__((warn_unused_result));

#endif
