/*
 * keylog.c - TLSSHIM_KEYLOG: TLS secrets in the NSS key-log format, for Wireshark.
 *
 * Off unless the variable is set (a warning is logged when it is). The file
 * holds secrets: append-only, created 0600, never opened through a symlink
 * nor waited on (a FIFO), and refused (no keys written) if others may read it or another user owns
 * it. It is opened for each line and closed again: a descriptor kept open could be closed by the
 * program (daemons close every fd above 2) and its number reused for a socket, which would then
 * receive the secrets. Each line is one write under a mutex, so lines from threads never
 * interleave.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "env.h"
#include "real.h"
#include "tls_int.h"

static const char *keylog_path;
static pthread_mutex_t keylog_lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * Opens PATH for appending: never through a symlink, created 0600, and
 * refused if it exists readable or writable by group or others or owned by
 * another user (the secrets would be readable by them, or the file theirs to
 * swap). Returns the fd, or -errno with WHY set.
 */
static int keylog_open(const char *path, const char **why)
{
	struct stat st;
	int fd;

	/*
	 * O_NONBLOCK: opening a FIFO planted at the path would wait for a reader
	 * (it fails with ENXIO instead); a regular file's writes do not block.
	 */
	/* Not through the open hook: see real_open() (resolved before any session). */
	errno = ENOSYS;
	fd = tls_host.real->openat == NULL
		 ? -1
		 : tls_host.real->openat(
		       AT_FDCWD, path,
		       O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
	if (fd < 0) {
		*why = errno == ELOOP   ? "it is a symbolic link"
		       : errno == ENXIO ? "it is not a regular file"
					: strerror(errno);
		return -errno;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		*why = "it is not a regular file";
		tls_host.real->close(fd);
		return -EINVAL;
	}
	if (st.st_uid != geteuid()) {
		*why = "it is owned by another user";
		tls_host.real->close(fd);
		return -EPERM;
	}
	if ((st.st_mode & 077) != 0) {
		*why = "group or others may read or write it (chmod 600 it)";
		tls_host.real->close(fd);
		return -EPERM;
	}
	return fd;
}

/*
 * Opens tls_host.keylog_path if set. A file that cannot be used safely turns
 * key logging off with a warning (no keys are written); the TLS engine still
 * works. Returns 0. Called once from init().
 */
int keylog_init(char *err, size_t errlen)
{
	const char *path = tls_host.keylog_path;
	const char *why = NULL;
	int fd;

	(void)err;
	(void)errlen;
	if (path == NULL || path[0] == '\0')
		return 0;
	fd = keylog_open(path, &why);
	if (fd < 0) {
		tls_log(LOG_LVL_WARN, ENV_KEYLOG " %s refused: %s; no TLS secrets are written",
			path, why);
		return 0;
	}
	tls_host.real->close(fd);
	keylog_path = path;
	tls_log(LOG_LVL_WARN, ENV_KEYLOG " is set: TLS secrets are written to %s", path);
	return 0;
}

/* Whether key logging is on. */
int keylog_enabled(void)
{
	return keylog_path != NULL;
}

/* Appends LINE and a newline to the key-log file (OpenSSL's keylog callback). */
void keylog_cb(const SSL *ssl, const char *line)
{
	const char *why = NULL;
	char buf[512];
	size_t len, off = 0;
	int saved = errno;
	int fd;

	(void)ssl;
	len = strlen(line);
	if (keylog_path == NULL || len + 1 > sizeof(buf))
		return;
	memcpy(buf, line, len);
	buf[len++] = '\n';
	pthread_mutex_lock(&keylog_lock);
	/* Checked at every line: the file may have been replaced since. */
	fd = keylog_open(keylog_path, &why);
	while (fd >= 0 && off < len) {
		ssize_t n = tls_host.real->write(fd, buf + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	if (fd >= 0)
		tls_host.real->close(fd);
	pthread_mutex_unlock(&keylog_lock);
	errno = saved;
}
