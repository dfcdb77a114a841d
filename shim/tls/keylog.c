/*
 * keylog.c - TLSSHIM_KEYLOG: TLS secrets in the NSS key-log format, for Wireshark.
 *
 * Off unless the variable is set (the caller logs a warning when it is). The
 * file is append-only and 0600 (it holds secrets). It is opened for each line
 * and closed again: a descriptor kept open could be closed by the program
 * (daemons close every fd above 2) and its number reused for a socket, which
 * would then receive the secrets. Each line is one write under a mutex, so
 * lines from threads never interleave.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "real.h"
#include "tls_int.h"

static const char *keylog_path;
static pthread_mutex_t keylog_lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * Opens tls_host.keylog_path if set. Returns 0 (also when key logging is off),
 * or -1 with a message in ERR. Called once from init().
 */
int keylog_init(char *err, size_t errlen)
{
	const char *path = tls_host.keylog_path;
	int fd;

	if (path == NULL || path[0] == '\0')
		return 0;
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open key log %s: %s", path, strerror(errno));
		return -1;
	}
	tls_host.real->close(fd);
	keylog_path = path;
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
	fd = open(keylog_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
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
