/*
 * fdclose.h - the close path: the one place that unmaps an fd of a wrapped
 * connection, forgets its epoll registrations and ends its session, in that
 * order (fdclose.c says why there is one). Called by the hooks.
 */
#ifndef TLSSHIM_FDCLOSE_H
#define TLSSHIM_FDCLOSE_H

struct conn;

/*
 * The program is closing FD (close, dup2 onto it, fclose of its stream):
 * unmaps it, forgets its epoll registrations, and ends the TLS session if it
 * was the conn's last fd (conn_close_fd). Safe for an fd that is not wrapped.
 * The caller then closes FD itself.
 */
void fdclose_release(int fd);

/*
 * FD has just been handed out by the kernel (open, socket, accept, pipe, dup,
 * ...): an entry under its number is stale (its socket was closed behind the
 * shim's back). Drops it and its epoll registrations without any I/O on FD,
 * and logs it at debug. errno is preserved. Callers test fdtab_maybe(FD) or
 * epreg_fd_maybe() first (fd_new() in fdnew.h).
 */
void fdclose_stale(int fd);

/*
 * connect(AF_UNSPEC) succeeded on C's socket: the connection is gone (reset,
 * no close_notify) and the socket may connect again. Every fd of it is
 * unwrapped, with the program's blocking mode, TCP_NODELAY and TCP_CORK restored.
 */
void fdclose_disconnect(struct conn *c);

#endif
