/*
 * log.c - "tlsshim[PID]: LEVEL: message" lines, to stderr or TLSSHIM_LOG_FILE.
 *
 * One write(2) per line (O_APPEND for the file), so lines from threads and
 * from processes sharing the file never interleave. The file is opened on
 * first use and reopened if the program closes our descriptor (daemons often
 * close every fd above 2).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "real.h"
#include "shim.h"

static int log_level = LOG_LVL_WARN;
static const char *log_path SHIM_LOAD_DATA; /* TLSSHIM_LOG_FILE, or NULL for stderr */
static atomic_int log_file_fd = -1;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int log_init(void)
{
	const char *lvl = getenv("TLSSHIM_LOG");
	const char *path = getenv("TLSSHIM_LOG_FILE");
	/* A copy: programs that set their process title (redis) overwrite environ. */
	log_path = (path != NULL && path[0] != '\0') ? strdup(path) : NULL;
	if (lvl == NULL || lvl[0] == '\0')
		return 0;
	for (int i = 0; i < 4; i++) {
		if (strcmp(lvl, level_names[i]) == 0) {
			log_level = i;
			return 0;
		}
	}
	return -1;
}

int log_enabled(int level)
{
	return level <= log_level;
}

static int open_log_file(void)
{
	int fd = atomic_load(&log_file_fd);
	int nfd;

	if (fd >= 0)
		return fd;
	nfd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (nfd < 0)
		return 2; /* fall back to stderr rather than lose the line */
	fd = -1;
	if (!atomic_compare_exchange_strong(&log_file_fd, &fd, nfd)) {
		real.close(nfd);
		return fd;
	}
	return nfd;
}

int log_fd(void)
{
	return atomic_load(&log_file_fd);
}

void log_forget_fd(int fd)
{
	int cur = fd;

	if (fd >= 0)
		atomic_compare_exchange_strong(&log_file_fd, &cur, -1);
}

void log_msg(int level, const char *fmt, ...)
{
	char line[1024];
	int saved = errno;
	va_list ap;
	int n, m;
	ssize_t (*wr)(int, const void *, size_t);

	if (level > log_level)
		return;
	if (real.write == NULL)
		real_init();
	wr = real.write;
	if (level < 0 || level > LOG_LVL_DEBUG)
		level = LOG_LVL_ERROR;
	n = snprintf(line, sizeof(line), "tlsshim[%d]: %s: ", (int)getpid(), level_names[level]);
	va_start(ap, fmt);
	m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += m;
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	if (wr(log_path ? open_log_file() : 2, line, (size_t)n) < 0 && log_path) {
		/* Our fd may have been closed behind our back: reopen once. */
		log_forget_fd(atomic_load(&log_file_fd));
		wr(open_log_file(), line, (size_t)n);
	}
	errno = saved;
}
