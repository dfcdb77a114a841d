/*
 * fdstate.c - a wrapped fd's duplicates and flags (see fdstate.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "conn.h"
#include "epreg.h"
#include "fdclose.h"
#include "fdstate.h"
#include "fdtab.h"
#include "inherit.h"
#include "log.h"
#include "real.h"

/*
 * The copies of wrapped fds a vfork()ed child made. The child shares the
 * parent's memory but has its own fd table: recording them in the fd table
 * would give the parent entries under numbers that are other files there (its
 * stdout turned into the TLS session). Thread-local: the child runs on the
 * thread that called vfork(), suspended meanwhile, so no other thread sees
 * them; PID says which child they belong to (a later one starts afresh).
 */
#define VDUP_MAX 8
static __thread struct {
	pid_t pid;
	int n;
	int fd[VDUP_MAX], src[VDUP_MAX];
} vdup;

/* VDUP's slot for FD in this child, or -1; forgets another child's record. */
static int vdup_find(int fd)
{
	if (vdup.n == 0)
		return -1;
	if (vdup.pid != getpid()) {
		vdup.n = 0;
		return -1;
	}
	for (int i = 0; i < vdup.n; i++)
		if (vdup.fd[i] == fd)
			return i;
	return -1;
}

/* A vfork()ed child: NEWFD copies the parent's wrapped fd SRC. -EMFILE past VDUP_MAX. */
static int vdup_add(int src, int newfd)
{
	int i = vdup_find(newfd);

	if (i < 0) {
		if (vdup.n == 0)
			vdup.pid = getpid();
		if (vdup.n == VDUP_MAX)
			return -EMFILE;
		i = vdup.n++;
	}
	vdup.fd[i] = newfd;
	vdup.src[i] = src;
	return newfd;
}

static void vdup_forget(int fd)
{
	int i = vdup_find(fd);

	if (i >= 0) {
		vdup.n--;
		vdup.fd[i] = vdup.fd[vdup.n];
		vdup.src[i] = vdup.src[vdup.n];
	}
}

int fdstate_vfork_dups(int *fds, int *src, int max)
{
	int n = 0;

	if (vdup.n == 0 || vdup.pid != getpid())
		return 0;
	for (int i = 0; i < vdup.n && n < max; i++, n++) {
		fds[n] = vdup.fd[i];
		src[n] = vdup.src[i];
	}
	return n;
}

/* OLDFD's wrapped source in a vfork()ed child (itself, or the fd a copy was made of), or -1. */
static int vdup_source(int oldfd)
{
	int i = vdup_find(oldfd);

	if (i >= 0)
		return vdup.src[i];
	return fdtab_maybe(oldfd) && inherit_vforked() ? oldfd : -1;
}

int fdstate_dup(int oldfd, int newfd)
{
	struct conn *c;
	int rc, src;

	if (newfd < 0)
		return newfd;
	if (vdup.n > 0 || fdtab_maybe(oldfd)) {
		src = vdup_source(oldfd);
		if (src >= 0) {
			rc = vdup_add(src, newfd);
			if (rc < 0)
				real.close(newfd); /* never a raw copy the exec check cannot see */
			return rc;
		}
	}
	if (!fdtab_maybe(oldfd))
		return newfd;
	c = fdtab_get(oldfd);
	if (c == NULL)
		return newfd;
	rc = conn_add_fd(c, newfd);
	if (rc == 0 && (rc = fdtab_set(newfd, c)) != 0)
		conn_forget_fd(c, newfd);
	conn_put(c);
	if (rc != 0) {
		real.close(newfd);
		return rc;
	}
	return newfd;
}

void fdstate_dup_target(int oldfd, int newfd)
{
	int logged = newfd == log_fd() && oldfd != newfd;

	/* A copy a vfork()ed child made is being replaced (fdstate_dup records it again). */
	if (vdup.n > 0 && oldfd != newfd)
		vdup_forget(newfd);
	if (!logged && (oldfd == newfd || (!fdtab_maybe(newfd) && !epreg_fd_maybe(newfd))))
		return;
	/* A vfork()ed child replaces its own copy: the tables (shared memory) stay the parent's. */
	if (inherit_vforked())
		return;
	/* Our log file's descriptor is about to become something else. */
	if (logged)
		log_forget_fd(newfd);
	if (oldfd == newfd || (!fdtab_maybe(newfd) && !epreg_fd_maybe(newfd)) ||
	    real.fcntl(oldfd, F_GETFD) < 0)
		return;
	fdclose_release(newfd);
}

int fdstate_fl(struct conn *c, int (*fn)(int, int, ...), int fd, int cmd, void *arg)
{
	long fl = (long)arg;
	int r;

	if (cmd == F_GETFL) {
		r = fn(fd, F_GETFL);
		if (r < 0)
			return -errno;
		return conn_nonblock(c) ? (r | O_NONBLOCK) : (r & ~O_NONBLOCK);
	}
	/* The socket stays non-blocking underneath; the program's wish is emulated. */
	r = fn(fd, F_SETFL, fl | O_NONBLOCK);
	if (r < 0)
		return -errno;
	conn_set_nonblock(c, (fl & O_NONBLOCK) != 0);
	return r;
}

int fdstate_ioctl(struct conn *c, int fd, unsigned long req, void *arg)
{
	int r;

	if (arg == NULL)
		return -EFAULT;
	/* ARG may be unaligned (Python's fcntl.ioctl passes a byte string): copied, not cast. */
	if (req == FIONBIO) {
		memcpy(&r, arg, sizeof(r));
		conn_set_nonblock(c, r != 0);
		return 0;
	}
	r = conn_readable_bytes(c);
	/* Not a stream the shim reads (auto chose cleartext): the kernel's count. */
	if (r == -ENOTTY)
		return real.ioctl(fd, req, arg) < 0 ? -errno : 0;
	if (r < 0)
		return r;
	memcpy(arg, &r, sizeof(r));
	return 0;
}

void fdstate_release_range(unsigned int first, unsigned int last)
{
	unsigned int top = FDTAB_CHUNK * FDTAB_CHUNKS - 1;
	int lfd = log_fd();

	if (lfd >= 0 && (unsigned int)lfd >= first && (unsigned int)lfd <= last)
		log_forget_fd(lfd);
	if (last > top)
		last = top;
	for (unsigned int fd = first; fd <= last && fd >= first; fd++) {
		/* Skip chunks never allocated: a whole range costs little. */
		if (atomic_load(&fdtab_chunks[fd >> FDTAB_CHUNK_BITS]) == NULL) {
			fd |= FDTAB_CHUNK - 1;
			continue;
		}
		if (fdtab_maybe((int)fd) || epreg_fd_maybe((int)fd))
			fdclose_release((int)fd);
	}
}

int fdstate_aio_refused(int fd, const char *call)
{
	struct conn *c = fdtab_maybe(fd) ? fdtab_get(fd) : NULL;

	if (c == NULL)
		return 0;
	log_error("%s: %s on fd %d refused: POSIX AIO would move its bytes past TLS", conn_desc(c),
		  call, fd);
	conn_put(c);
	return 1;
}
