/*
 * listeners.h - the TCP ports this process listens on, so that connect() can
 * tell a connection to its own listener (whose accept() may come only after
 * connect() returns) from one to another program.
 */
#ifndef TLSSHIM_LISTENERS_H
#define TLSSHIM_LISTENERS_H

#include "addr.h"

/* Notes that FD (on which listen() just succeeded) listens. Keeps errno. */
void listeners_note(int fd);

/*
 * Whether DST may be one of this process's listeners: a listener on DST's
 * address and port, or a wildcard listener on its port when DST is a
 * loopback address. A listener closed since may still match (harmless: the
 * caller only stops waiting for the handshake in connect()).
 */
int listeners_local(const struct ep *dst);

#endif
