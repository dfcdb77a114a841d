/*
 * log.c - "tlsshim[PID]: LEVEL: message" lines, to stderr or TLSSHIM_LOG_FILE.
 *
 * One write(2) per line (O_APPEND for the file), so lines from threads and
 * from processes sharing the file never interleave. The message is escaped
 * (log_escape): a peer cannot forge a line or send terminal controls. The file is opened on
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

#include "env.h"
#include "escape.h"
#include "log.h"
#include "real.h"
#include "shim.h"

static int log_level = LOG_LVL_WARN;
static const char *log_path SHIM_LOAD_DATA; /* TLSSHIM_LOG_FILE, or NULL for stderr */
static atomic_int log_file_fd = -1;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int log_init(void)
{
	const char *lvl = shim_getenv(ENV_LOG);
	const char *path = shim_getenv(ENV_LOG_FILE);
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
	/*
	 * Lines name peers and files: 0600, and never through a planted symlink.
	 * O_NONBLOCK: a FIFO without a reader must not stop the program at its
	 * first log line (the open fails, the line goes to stderr).
	 */
	nfd = real_open(log_path,
			O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
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

/*
 * log_escape, and CUT says IN is itself the start of a longer text: either
 * way a text not shown whole ends in "...", after whole units only (half an
 * escape or a lone backslash before the marker would read as other bytes).
 */
static size_t escape_text(char *out, size_t cap, const char *in, size_t n, int cut)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t o, used;

	if (cap == 0)
		return 0;
	o = text_escape_units(out, cap - 1, s, n, &used);
	if (used < n || cut) {
		/* With no room for text and marker, the marker alone (as much as fits). */
		o = cap > 4 ? text_escape_units(out, cap - 4, s, n, &used) : 0;
		memcpy(out + o, "...", cap > 4 ? 3 : cap - 1);
		o += cap > 4 ? 3 : cap - 1;
	}
	out[o] = '\0';
	return o;
}

/* Contract in log.h. */
size_t log_escape(char *out, size_t cap, const char *in, size_t n)
{
	return escape_text(out, cap, in, n, 0);
}

void log_msg(int level, const char *fmt, ...)
{
	char msg[LOG_MSG_MAX], line[LOG_LINE_MAX];
	int saved = errno;
	va_list ap;
	int n, m, cut;
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
	m = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	cut = m > (int)sizeof(msg) - 1; /* the message itself did not fit */
	if (cut)
		m = (int)sizeof(msg) - 1;
	/*
	 * The message carries peer- and file-supplied text (certificate names,
	 * reasons, paths): escaped as a whole, so that no byte of it can end this
	 * line, start a forged one or reach a terminal as a control sequence.
	 */
	n += (int)escape_text(line + n, sizeof(line) - (size_t)n - 1, msg, (size_t)m, cut);
	line[n++] = '\n';
	if (wr(log_path ? open_log_file() : 2, line, (size_t)n) < 0 && log_path) {
		/* Our fd may have been closed behind our back: reopen once. */
		log_forget_fd(atomic_load(&log_file_fd));
		wr(open_log_file(), line, (size_t)n);
	}
	errno = saved;
}
