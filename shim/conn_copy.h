/*
 * conn_copy.h - sendfile() and splice() through a wrapped connection: bytes
 * that would otherwise move past TLS are read, encrypted and sent (or
 * received, decrypted and written). Functions return a count or -errno.
 */
#ifndef TLSSHIM_CONN_COPY_H
#define TLSSHIM_CONN_COPY_H

#include <stddef.h>
#include <sys/types.h>

struct conn;

/* What one splice() into a wrapped socket moves at most (a socket's splice moves less too). */
#define CONN_COPY_CHUNK 65536
/* What a non-blocking copy from a pipe or socket reads at a time: one TLS record. */
#define CONN_COPY_RECORD 16384

/*
 * Copies COUNT bytes of fd IN (from *OFF, advanced, when OFF is not NULL; else
 * from IN's position) into C, as sendfile() into the plain socket would.
 * Stops early at IN's end. From a file (not consumed) C takes what it accepts:
 * non-blocking, now; blocking, until its SO_SNDTIMEO expires. A non-blocking C
 * never waits for the peer: from a pipe or a socket it reads one record only
 * when the connection can take a write (-EAGAIN otherwise). Returns the bytes
 * sent (bytes read from a pipe or socket are sent whole), or -errno when none
 * were.
 */
ssize_t conn_copy_in(struct conn *c, int in, off64_t *off, size_t count)
    __attribute__((warn_unused_result));

/*
 * Receives at most LEN bytes (one read's worth) from C and writes them all to
 * fd OUT (at *OUTOFF, advanced, when OUTOFF is not NULL), as splice() from
 * the plain socket would; NONBLOCK: SPLICE_F_NONBLOCK. Returns the count
 * received, 0 at end of stream, or -errno.
 */
ssize_t conn_copy_out(struct conn *c, int out, off64_t *outoff, size_t len, int nonblock)
    __attribute__((warn_unused_result));

#endif
