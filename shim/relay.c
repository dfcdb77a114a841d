/*
 * relay.c - the relay process behind a connection handed across exec (see
 * relay.h). Two threads copy plaintext: TLS -> socketpair and socketpair ->
 * TLS, using the same conn code (blocking emulation, close_notify) as a
 * program under the shim; the relay ends when both directions have ended.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conn.h"
#include "fdtab.h"
#include "log.h"
#include "real.h"
#include "relay.h"
#include "sigpipe.h"

struct relay {
	struct conn *c;
	int tcp, sp;
};

/* TLS -> program. */
static void *relay_down(void *arg)
{
	struct relay *r = arg;
	char buf[16384];

	for (;;) {
		ssize_t n = conn_recv(r->c, buf, sizeof(buf), 0), off = 0;

		if (n == -EAGAIN || n == -EINTR)
			continue;
		if (n <= 0)
			break;
		while (off < n) {
			ssize_t w = real.send(r->sp, buf + off, (size_t)(n - off), MSG_NOSIGNAL);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				goto out; /* the program is gone: nothing reads what follows */
			off += w;
		}
	}
out:
	real.shutdown(r->sp, SHUT_WR);
	return NULL;
}

/* Program -> TLS. */
static void *relay_up(void *arg)
{
	struct relay *r = arg;
	struct pollfd p = {.fd = r->sp, .events = 0};
	char buf[16384];

	for (;;) {
		ssize_t n = real.read(r->sp, buf, sizeof(buf)), off = 0;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		while (off < n) {
			ssize_t w = conn_send(r->c, buf + off, (size_t)(n - off), MSG_NOSIGNAL);

			if (w == -EAGAIN || w == -EINTR)
				continue;
			if (w <= 0)
				goto out;
			off += w;
		}
	}
out:
	/* The program shut down its writing side (or closed): close_notify, then FIN. */
	if (conn_shutdown(r->c, SHUT_WR) != 0)
		log_debug("relay: close_notify could not be sent; the peer sees the session end");
	/*
	 * Once the program has closed its end entirely (POLLHUP, not just a
	 * shutdown), nothing will read what the peer still sends: stop reading,
	 * which ends the other direction as the plain socket's close would.
	 */
	while (real.poll(&p, 1, -1) < 0 && errno == EINTR)
		;
	/* As the program's close would: TLS records it never asked for do not turn into a reset. */
	conn_close_fd(r->c, r->tcp);
	real.shutdown(r->tcp, SHUT_RD);
	return NULL;
}

static void drop_table_entry(int fd, struct conn *c, void *arg)
{
	(void)c;
	(void)arg;
	/* The program's mappings mean nothing here; the relay uses conn calls only. */
	fdtab_take(fd);
}

/* Closes every fd but KEEP[0..N) (sorted ascending). */
static void close_others(const int *keep, int n)
{
	unsigned first = 0;

	for (int i = 0; i <= n; i++) {
		unsigned last = i < n ? (unsigned)keep[i] : ~0u;

		if (last > first) {
			if (real.close_range == NULL || real.close_range(first, last - 1, 0) != 0) {
				for (unsigned fd = first; fd < last && fd < 65536; fd++)
					real.close((int)fd);
			}
		}
		if (i < n)
			first = (unsigned)keep[i] + 1;
	}
}

static unsigned long ino_of(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 ? (unsigned long)st.st_ino : 0;
}

static __attribute__((noreturn)) void relay_main(struct conn *c, int sp)
{
	struct relay r = {.c = c, .tcp = c->fd, .sp = sp};
	struct sigaction dfl = {.sa_handler = SIG_DFL}, ign = {.sa_handler = SIG_IGN};
	int keep[4], nk = 0, lfd = log_fd();
	pthread_t up;
	sigset_t none;

	/* Named for ps/top: otherwise it shows as a copy of the program. */
	prctl(PR_SET_NAME, "tlsshim-relay", 0, 0, 0);
	/* The program's handlers are its code, not ours. */
	for (int s = 1; s < NSIG; s++)
		real.sigaction(s, s == SIGPIPE ? &ign : &dfl, NULL);
	sigpipe_forget();
	sigemptyset(&none);
	pthread_sigmask(SIG_SETMASK, &none, NULL);
	/* Stderr for log lines, unless it is this very connection. */
	if (ino_of(2) != 0 && ino_of(2) != ino_of(r.tcp) && r.tcp != 2 && sp != 2)
		keep[nk++] = 2;
	keep[nk++] = r.tcp;
	keep[nk++] = sp;
	if (lfd >= 0 && lfd != 2 && lfd != r.tcp && lfd != sp)
		keep[nk++] = lfd;
	for (int i = 1; i < nk; i++)
		for (int j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
			int t = keep[j];

			keep[j] = keep[j - 1];
			keep[j - 1] = t;
		}
	close_others(keep, nk);
	fdtab_foreach(drop_table_entry, NULL);
	conn_set_nonblock(c, 0);
	if (pthread_create(&up, NULL, relay_up, &r) != 0) {
		relay_down(&r);
		_exit(0);
	}
	relay_down(&r);
	pthread_join(up, NULL);
	_exit(0);
}

int relay_start(struct conn *c, int sp)
{
	enum conn_state saved;
	int saved_err, pfd[2], pid, relay_pid = -1;

	if (pipe2(pfd, O_CLOEXEC) != 0)
		return -errno;
	/* From here no thread of this process advances the session: the relay owns it. */
	pthread_mutex_lock(&c->lock);
	saved = c->state;
	saved_err = c->err;
	c->state = CONN_FAILED;
	c->err = EBADF;
	pthread_mutex_unlock(&c->lock);
	pid = fork();
	if (pid == 0) {
		int g;

		real.close(pfd[0]);
		g = fork();
		if (g == 0) {
			real.close(pfd[1]);
			c->state = saved;
			c->err = saved_err;
			relay_main(c, sp);
		}
		real.write(pfd[1], &g, sizeof(g));
		_exit(0);
	}
	real.close(pfd[1]);
	if (pid > 0) {
		while (real.read(pfd[0], &relay_pid, sizeof(relay_pid)) < 0 && errno == EINTR)
			;
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	real.close(pfd[0]);
	if (relay_pid <= 0) {
		pthread_mutex_lock(&c->lock);
		c->state = saved;
		c->err = saved_err;
		pthread_mutex_unlock(&c->lock);
		return -EAGAIN;
	}
	return relay_pid;
}
