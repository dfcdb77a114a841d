/*
 * log.h - tlsshim's log lines: "tlsshim[PID]: LEVEL: what happened".
 *
 * To stderr, or appended to TLSSHIM_LOG_FILE. Each line is written with one
 * write(2) so lines from threads and processes never interleave. Logging
 * preserves errno.
 */
#ifndef TLSSHIM_LOG_H
#define TLSSHIM_LOG_H

#include "engine.h" /* LOG_LVL_* */

/* Reads TLSSHIM_LOG / TLSSHIM_LOG_FILE. Returns 0, or -1 if TLSSHIM_LOG is invalid. */
int log_init(void);

#include <stddef.h>

#define LOG_MSG_MAX  1024 /* a message as formatted, before escaping */
#define LOG_LINE_MAX 2048 /* the whole line as written, escapes included */

/*
 * Copies IN[0..N) to OUT (CAP bytes, NUL-terminated) as log text: printable
 * ASCII and well-formed UTF-8 as they are; control characters (C0, DEL, C1),
 * bidirectional overrides and bytes that are not UTF-8 as \xNN; a backslash
 * as \\. Text that does not fit ends in "..." after whole escapes and
 * characters (with CAP under 5, it is dots only). Returns the length written.
 */
size_t log_escape(char *out, size_t cap, const char *in, size_t n);

/* Whether LEVEL would be written (to skip building expensive messages). */
int log_enabled(int level);

/* Writes one line at LEVEL. Thread- and async-signal-tolerant; preserves errno. */
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The arguments are evaluated only if the line is written (conn_desc() formats). */
#define log_at(level, ...)                             \
	do {                                           \
		if (log_enabled(level))                \
			log_msg((level), __VA_ARGS__); \
	} while (0)
#define log_error(...) log_at(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_at(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  log_at(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_at(LOG_LVL_DEBUG, __VA_ARGS__)

/* The fd log lines go to, or -1 (stderr, or the file is not open yet). */
int log_fd(void);

/* The program closed FD: if it was the log file, reopen it on the next line. */
void log_forget_fd(int fd);

#endif
