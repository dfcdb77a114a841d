/*
 * aio.c - hooks: POSIX AIO (aio_read, aio_write, lio_listio) on a wrapped fd.
 *
 * glibc runs AIO requests on its own threads with its internal read/write
 * (pwrite, and write after the ESPIPE a socket gives): on a wrapped fd that
 * would put cleartext on the wire and hand the program raw TLS records. The
 * shim cannot carry a request there, so it refuses it at submission: -1,
 * EOPNOTSUPP, and an error line naming the connection (a known limit,
 * README). Requests on other fds go to libc untouched.
 */
#include <aio.h>
#include <errno.h>

#include "fdstate.h"
#include "hook.h"

/* Whether CB moves bytes on a wrapped fd (logged). */
static int refused(const struct aiocb *cb, const char *call)
{
	return cb != NULL && fdstate_aio_refused(cb->aio_fildes, call);
}

static int shim_aio_read(struct aiocb *cb)
{
	NEED_REAL_OPT(aio_read);
	if (real.aio_read == NULL || refused(cb, "aio_read")) {
		errno = real.aio_read == NULL ? ENOSYS : EOPNOTSUPP;
		return -1;
	}
	return real.aio_read(cb);
}

static int shim_aio_write(struct aiocb *cb)
{
	NEED_REAL_OPT(aio_write);
	if (real.aio_write == NULL || refused(cb, "aio_write")) {
		errno = real.aio_write == NULL ? ENOSYS : EOPNOTSUPP;
		return -1;
	}
	return real.aio_write(cb);
}

static int shim_lio_listio(int mode, struct aiocb *const list[], int n, struct sigevent *sig)
{
	NEED_REAL_OPT(lio_listio);
	if (real.lio_listio == NULL) {
		errno = ENOSYS;
		return -1;
	}
	for (int i = 0; i < n; i++) {
		if (list[i] != NULL && list[i]->aio_lio_opcode != LIO_NOP &&
		    refused(list[i], "lio_listio")) {
			errno = EOPNOTSUPP;
			return -1;
		}
	}
	return real.lio_listio(mode, list, n, sig);
}

HOOK int aio_read(struct aiocb *cb)
{
	return shim_aio_read(cb);
}

HOOK int aio_write(struct aiocb *cb)
{
	return shim_aio_write(cb);
}

HOOK int lio_listio(int mode, struct aiocb *const list[], int n, struct sigevent *sig)
{
	return shim_lio_listio(mode, list, n, sig);
}

/* The 64-bit-offset names: the same structure on 64-bit systems. */
HOOK int aio_read64(struct aiocb64 *cb)
{
	return shim_aio_read((struct aiocb *)cb);
}

HOOK int aio_write64(struct aiocb64 *cb)
{
	return shim_aio_write((struct aiocb *)cb);
}

HOOK int lio_listio64(int mode, struct aiocb64 *const list[], int n, struct sigevent *sig)
{
	return shim_lio_listio(mode, (struct aiocb *const *)list, n, sig);
}
