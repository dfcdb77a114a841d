/*
 * test_log.c - unit tests of shim/log.c: log lines and the escaping of the
 * text in them. Peers choose much of that text (certificate names, alerts,
 * reasons), so nothing they send may end a line, start a forged one, reach a
 * terminal as a control sequence, reorder the line (bidirectional controls) or
 * pass a cut text off as whole. Negative cases first.
 *
 * unescape() is the reader's side: "\\" is a backslash, "\xNN" a byte, any
 * other byte itself, and a final "..." says the text was cut. Each test
 * decodes what was written and compares it with what was sent.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* ---- helpers ------------------------------------------------------------------------- */

/*
 * Decodes OUT (escaped log text) into DEC (room for LEN bytes); returns the
 * decoded length, or -1 if OUT holds a byte or escape the escaper never
 * writes (a lone backslash, a bad hex digit).
 */
static long unescape(const char *out, size_t len, unsigned char *dec)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		if (out[i] != '\\') {
			dec[o++] = (unsigned char)out[i];
			continue;
		}
		if (i + 1 < len && out[i + 1] == '\\') {
			dec[o++] = '\\';
			i++;
			continue;
		}
		if (i + 3 < len && out[i + 1] == 'x' && out[i + 2] && out[i + 3] &&
		    strchr(hex, out[i + 2]) && strchr(hex, out[i + 3])) {
			dec[o++] = (unsigned char)((strchr(hex, out[i + 2]) - hex) << 4 |
						   (strchr(hex, out[i + 3]) - hex));
			i += 3;
			continue;
		}
		return -1;
	}
	return (long)o;
}

/* Whether OUT[0..LEN) holds only what may reach a terminal: no C0, DEL, C1 or ESC byte. */
static int terminal_safe(const char *out, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)out[i];

		if (c < 0x20 || c == 0x7f)
			return 0;
		/* U+0080..U+009F (C1, CSI among them) would be c2 80..c2 9f. */
		if (c == 0xc2 && i + 1 < len && (unsigned char)out[i + 1] <= 0x9f)
			return 0;
		/* The bidirectional embeddings/overrides e2 80 aa..ae, isolates e2 81 a6..a9. */
		if (c == 0xe2 && i + 2 < len &&
		    (((unsigned char)out[i + 1] == 0x80 && (unsigned char)out[i + 2] >= 0xaa &&
		      (unsigned char)out[i + 2] <= 0xae) ||
		     ((unsigned char)out[i + 1] == 0x81 && (unsigned char)out[i + 2] >= 0xa6 &&
		      (unsigned char)out[i + 2] <= 0xa9)))
			return 0;
	}
	return 1;
}

/*
 * Escapes IN[0..N) into a buffer of CAP bytes and checks what a reader relies
 * on: NUL-terminated within CAP, no byte past it written, terminal-safe, and
 * decoding to IN exactly when the whole escape fits; when it does not, ending
 * in "..." after whole escapes that decode to a proper prefix of IN (with CAP
 * under 5, dots only). Returns whether it was cut.
 */
static int check_escape(const char *what, const char *in, size_t n, size_t cap)
{
	size_t full_cap = 4 * n + 8, len, full_len;
	char *out = malloc(cap + 16), *full = malloc(full_cap);
	unsigned char *dec = malloc(cap + 16);
	long d;
	int cut;

	cr_assert(out != NULL && dec != NULL && full != NULL);
	full_len = log_escape(full, full_cap, in, n);
	memset(out, 'Z', cap + 16);
	len = log_escape(out, cap, in, n);
	cr_assert_lt(len, cap, "%s (cap %zu): length %zu does not leave room for the NUL", what,
		     cap, len);
	cr_assert_eq(out[len], '\0', "%s (cap %zu): not NUL-terminated", what, cap);
	for (size_t i = cap; i < cap + 16; i++)
		cr_assert_eq(out[i], 'Z', "%s (cap %zu): wrote past the buffer at %zu", what, cap,
			     i);
	cr_assert(terminal_safe(out, len), "%s (cap %zu): a control reached the line: \"%s\"", what,
		  cap, out);
	cut = full_len > cap - 1;
	if (!cut) {
		d = unescape(out, len, dec);
		cr_assert_eq(d, (long)n,
			     "%s (cap %zu): \"%s\" does not decode to the %zu bytes sent", what,
			     cap, out, n);
	} else if (cap < 5) {
		cr_assert_eq(strspn(out, "."), cap - 1, "%s (cap %zu): cut, \"%s\" is not dots",
			     what, cap, out);
		d = 0;
	} else {
		cr_assert(len >= 3 && memcmp(out + len - 3, "...", 3) == 0,
			  "%s (cap %zu): cut without \"...\": \"%s\"", what, cap, out);
		d = unescape(out, len - 3, dec);
		cr_assert_geq(d, 0, "%s (cap %zu): before \"...\", \"%s\" is no whole escape", what,
			      cap, out);
		cr_assert_lt((size_t)d, n, "%s (cap %zu): \"%s\" cut but not shorter", what, cap,
			     out);
	}
	cr_assert(memcmp(dec, in, (size_t)d) == 0,
		  "%s (cap %zu): \"%s\" decodes to other bytes than were sent", what, cap, out);
	free(out);
	free(full);
	free(dec);
	return cut;
}

/* log_escape of the C string IN with plenty of room (one of four static buffers). */
static const char *esc(const char *in)
{
	static char bufs[4][1024];
	static int next;
	char *out = bufs[next++ % 4];

	log_escape(out, sizeof(bufs[0]), in, strlen(in));
	return out;
}

/* ---- escaping: what must not pass ---------------------------------------------------- */

Test(log_escape, line_ends_cannot_start_a_forged_line)
{
	const char *in = "evil.example\ntlsshim[1]: info: connect 10.0.0.1:443: verified\r";

	cr_expect_str_eq(esc(in),
			 "evil.example\\x0atlsshim[1]: info: connect 10.0.0.1:443: verified\\x0d");
	check_escape("line ends", in, strlen(in), 1024);
}

Test(log_escape, every_c0_control_and_del_is_hex)
{
	for (int c = 1; c < 0x20; c++) {
		char in[2] = {(char)c, 0}, want[8];

		snprintf(want, sizeof(want), "\\x%02x", c);
		cr_expect_str_eq(esc(in), want, "byte 0x%02x", c);
	}
	cr_expect_str_eq(esc("\x7f"), "\\x7f");
	/* NUL inside the text (a name with an embedded NUL) is shown, not a terminator. */
	char out[64];
	log_escape(out, sizeof(out), "good\0.evil", 10);
	cr_expect_str_eq(out, "good\\x00.evil");
}

Test(log_escape, ansi_escape_sequences_are_defused)
{
	/* Colour, cursor movement, erase line, a window title (OSC ... BEL). */
	const char *in = "\x1b[31mred\x1b[0m\x1b[2K\x1b[1A\x1b]0;title\x07";

	cr_expect_str_eq(esc(in), "\\x1b[31mred\\x1b[0m\\x1b[2K\\x1b[1A\\x1b]0;title\\x07");
	check_escape("ansi", in, strlen(in), 1024);
}

Test(log_escape, c1_controls_in_utf8_are_hex)
{
	/* U+009B is CSI on a terminal that takes C1 in UTF-8; U+0085 is NEL (a line end). */
	cr_expect_str_eq(esc("a\xc2\x9b"
			     "31mb"),
			 "a\\xc2\\x9b31mb");
	cr_expect_str_eq(esc("a\xc2\x85"
			     "b"),
			 "a\\xc2\\x85b");
	cr_expect_str_eq(esc("\xc2\x80"), "\\xc2\\x80");
	cr_expect_str_eq(esc("\xc2\x9f"), "\\xc2\\x9f");
}

Test(log_escape, bidirectional_controls_are_hex)
{
	/* U+202E RIGHT-TO-LEFT OVERRIDE would show "gpj.exe" as "exe.jpg". */
	cr_expect_str_eq(esc("x\xe2\x80\xae"
			     "gpj.exe"),
			 "x\\xe2\\x80\\xaegpj.exe");
	static const char *const bidi[] = {"\xe2\x80\xaa", "\xe2\x80\xab", "\xe2\x80\xac",
					   "\xe2\x80\xad", "\xe2\x80\xae", "\xe2\x81\xa6",
					   "\xe2\x81\xa7", "\xe2\x81\xa8", "\xe2\x81\xa9"};
	for (size_t i = 0; i < sizeof(bidi) / sizeof(bidi[0]); i++) {
		cr_expect_eq(strchr(esc(bidi[i]), '\xe2'), NULL, "bidi control %zu passed", i);
		check_escape("bidi", bidi[i], 3, 64);
	}
}

Test(log_escape, invalid_utf8_is_hex_byte_by_byte)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
	    {"\x80", "\\x80"},            /* a lone continuation byte */
	    {"a\xe2\x82", "a\\xe2\\x82"}, /* a sequence cut short at the end */
	    {"\xe2\x82"
	     "b",
	     "\\xe2\\x82b"},                              /* ... or by an ASCII byte */
	    {"\xc0\xaf", "\\xc0\\xaf"},                   /* overlong '/' */
	    {"\xe0\x80\xaf", "\\xe0\\x80\\xaf"},          /* overlong '/', three bytes */
	    {"\xf0\x80\x80\xaf", "\\xf0\\x80\\x80\\xaf"}, /* overlong, four bytes */
	    {"\xe0\x83\xa9", "\\xe0\\x83\\xa9"},          /* overlong U+00E9 */
	    {"\xf0\x82\x82\xac", "\\xf0\\x82\\x82\\xac"}, /* overlong U+20AC */
	    {"\xed\xa0\x80", "\\xed\\xa0\\x80"},          /* a UTF-16 surrogate */
	    {"\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"}, /* past U+10FFFF */
	    {"\xf5\x80\x80\x80", "\\xf5\\x80\\x80\\x80"},
	    {"\xfe\xff", "\\xfe\\xff"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_expect_str_eq(esc(cases[i].in), cases[i].want, "case %zu", i);
		check_escape("invalid utf-8", cases[i].in, strlen(cases[i].in), 64);
	}
}

Test(log_escape, a_backslash_cannot_forge_an_escape)
{
	/* The text "\x0a" sent as is must read back as those four characters, not a line end. */
	cr_expect_str_eq(esc("\\x0a"), "\\\\x0a");
	cr_expect_str_neq(esc("\\x0a"), esc("\n"));
	cr_expect_str_eq(esc("a\\b\\\\"), "a\\\\b\\\\\\\\");
}

Test(log_escape, a_cut_text_says_so_and_never_splits_an_escape)
{
	char big[600];

	/* Every kind of unit (plain, escaped, doubled backslash, UTF-8) cut at every place. */
	static const char *const units[] = {
	    "a", "\n", "\\", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x94\x92", "\x1b"};
	for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
		size_t ul = strlen(units[u]), n = 0;

		while (n + ul <= 40) {
			memcpy(big + n, units[u], ul);
			n += ul;
		}
		for (size_t cap = 1; cap < 200; cap++)
			check_escape(units[u], big, n, cap);
	}
	/* What fits is whole, with no marker. */
	cr_expect_eq(check_escape("fits", "abcd", 4, 5), 0);
	cr_expect_eq(check_escape("cut", "abcde", 5, 5), 1);
}

Test(log_escape, a_cut_text_ends_in_the_marker)
{
	char out[8];

	cr_expect_eq(log_escape(out, sizeof(out), "abcdefghijkl", 12), 7);
	cr_expect_str_eq(out, "abcd...");
	cr_expect_eq(log_escape(out, sizeof(out), "\n\n\n", 3), 7);
	cr_expect_str_eq(out, "\\x0a...", "an escape is kept whole or dropped");
	cr_expect_eq(log_escape(out, sizeof(out), "\\\\\\\\", 4), 7);
	cr_expect_str_eq(out, "\\\\\\\\...");
	cr_expect_eq(log_escape(out, 0, "x", 1), 0, "no room: nothing written");
	cr_expect_eq(log_escape(out, 3, "abc", 3), 2);
	cr_expect_str_eq(out, "..", "no room for text and marker: the marker alone");
}

Test(log_escape, random_bytes_never_make_a_line_lie)
{
	unsigned seed = 12345;
	char in[300];

	for (int round = 0; round < 3000; round++) {
		size_t n = (size_t)(rand_r(&seed) % (int)sizeof(in));

		for (size_t i = 0; i < n; i++) {
			/* Biased to the interesting bytes: controls, '\\', UTF-8 lead/continuation.
			 */
			static const unsigned char pick[] = {0x00, 0x0a, 0x0d, 0x1b, 0x5c, 0x7f,
							     0x80, 0x9b, 0xc2, 0xe2, 0xf0, 0xff};
			int r = rand_r(&seed);

			in[i] =
			    (char)(r % 3 == 0 ? pick[(r >> 4) % sizeof(pick)] : (r >> 8) & 0xff);
		}
		check_escape("random", in, n, 1 + (size_t)(rand_r(&seed) % 700));
	}
}

/* ---- escaping: what passes as it is -------------------------------------------------- */

Test(log_escape, printable_ascii_and_utf8_pass_unchanged)
{
	const char *ascii = " !\"#$%&'()*+,-./0123456789:;<=>?@ABCXYZ[]^_`abcxyz{|}~";

	cr_expect_str_eq(esc(ascii), ascii);
	/* é, €, CJK, an emoji, U+00A0 (the first code point past C1), U+10FFFF. */
	const char *utf8 = "caf\xc3\xa9 \xe2\x82\xac \xe4\xb8\xad \xf0\x9f\x94\x92 \xc2\xa0 "
			   "\xf4\x8f\xbf\xbf";
	cr_expect_str_eq(esc(utf8), utf8);
	/* U+2028 LINE SEPARATOR is no terminal control: it passes. */
	cr_expect_str_eq(esc("\xe2\x80\xa8"), "\xe2\x80\xa8");
}

/* ---- log lines ----------------------------------------------------------------------- */

/* A fresh log file (its name: removed when made); TLSSHIM_LOG_FILE names it. One a test. */
static char *log_to_file(const char *level)
{
	static char path[] = "/tmp/tlsshim-test-log-XXXXXX";
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0, "mkstemp: %s", strerror(errno));
	close(fd);
	unlink(path);
	setenv("TLSSHIM_LOG_FILE", path, 1);
	if (level != NULL)
		setenv("TLSSHIM_LOG", level, 1);
	else
		unsetenv("TLSSHIM_LOG");
	cr_assert_eq(log_init(), 0);
	return path;
}

/* The file's contents (a new string). */
static char *slurp(const char *path)
{
	static char buf[16384];
	int fd = open(path, O_RDONLY);
	ssize_t n = fd < 0 ? 0 : read(fd, buf, sizeof(buf) - 1);

	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static int count_char(const char *s, char c)
{
	int n = 0;

	for (; *s; s++)
		n += *s == c;
	return n;
}

Test(log_msg, an_invalid_level_is_refused)
{
	setenv("TLSSHIM_LOG", "verbose", 1);
	cr_expect_eq(log_init(), -1);
	setenv("TLSSHIM_LOG", "WARN", 1);
	cr_expect_eq(log_init(), -1, "levels are lower case");
}

Test(log_msg, levels_below_the_threshold_write_nothing)
{
	char *path = log_to_file("warn");

	cr_expect(log_enabled(LOG_LVL_ERROR));
	cr_expect(log_enabled(LOG_LVL_WARN));
	cr_expect(!log_enabled(LOG_LVL_INFO));
	log_info("not written");
	log_debug("not written");
	cr_expect_str_eq(slurp(path), "");
	log_error("written");
	cr_expect_eq(count_char(slurp(path), '\n'), 1);
	unlink(path);
}

Test(log_msg, a_hostile_peer_text_stays_on_one_line)
{
	char *path = log_to_file("debug");
	char line[64], *got;
	const char *evil = "x\n"
			   "tlsshim[1]: info: connect 10.0.0.1:443: verified\r\x1b[2K\x1b[1A"
			   "\xe2\x80\xae\xc2\x9b";

	log_warn("certificate name %s", evil);
	got = slurp(path);
	snprintf(line, sizeof(line), "tlsshim[%d]: warn: certificate name x", (int)getpid());
	cr_expect_eq(strncmp(got, line, strlen(line)), 0, "got: %s", got);
	cr_expect_eq(count_char(got, '\n'), 1, "one line, got: %s", got);
	cr_expect(got[strlen(got) - 1] == '\n');
	cr_expect(terminal_safe(got, strlen(got) - 1), "a control reached the file: %s", got);
	cr_expect(strstr(got, "\\x0atlsshim[1]: info: connect 10.0.0.1:443: verified\\x0d") != NULL,
		  "got: %s", got);
	unlink(path);
}

Test(log_msg, a_message_longer_than_a_line_says_it_was_cut)
{
	char *path = log_to_file("info");
	char name[3000], *got;
	size_t len;

	/* Escaped, 600 control bytes need 2400 bytes: more than a line holds. */
	memset(name, 1, 600);
	memcpy(name + 600, ".evil.test", 11);
	log_info("peer %s", name);
	got = slurp(path);
	len = strlen(got);
	cr_assert_gt(len, 40);
	cr_expect_leq(len, LOG_LINE_MAX);
	cr_expect_eq(count_char(got, '\n'), 1);
	cr_expect(memcmp(got + len - 4, "...\n", 4) == 0, "a cut line must end in \"...\": %.40s",
		  got + len - 40);
	cr_expect(strstr(got, "evil") == NULL);
	unlink(path);
}

/*
 * Cut by the message buffer (LOG_MSG_MAX) though its escape would fit the
 * line: what a peer put last (the part that would tell) is not shown, and the
 * line must not pass for the whole name.
 */
Test(log_msg, a_message_longer_than_its_buffer_says_it_was_cut)
{
	char *path = log_to_file("info");
	char name[3000], *got;
	size_t len;

	memset(name, 'b', sizeof(name));
	memcpy(name + LOG_MSG_MAX + 10, ".evil.test", 11);
	log_info("%s", name);
	got = slurp(path);
	len = strlen(got);
	cr_assert_gt(len, 40);
	cr_expect(memcmp(got + len - 4, "...\n", 4) == 0,
		  "a message cut to LOG_MSG_MAX must end in \"...\": %.40s", got + len - 40);
	unlink(path);
}

Test(log_msg, errno_is_preserved)
{
	char *path = log_to_file("info");

	errno = EADDRINUSE;
	log_info("a line");
	cr_expect_eq(errno, EADDRINUSE);
	errno = ENOTCONN;
	log_debug("filtered out");
	cr_expect_eq(errno, ENOTCONN);
	unlink(path);
}

Test(log_msg, a_closed_log_fd_is_reopened)
{
	char *path = log_to_file("info");

	log_info("first");
	cr_assert_geq(log_fd(), 0);
	close(log_fd()); /* a daemon closing every fd above 2 */
	log_forget_fd(log_fd());
	log_info("second");
	cr_expect_eq(count_char(slurp(path), '\n'), 2, "got: %s", slurp(path));
	unlink(path);
}
