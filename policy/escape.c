/*
 * escape.c - the one rule for showing untrusted text (peer names, rule text
 * read back from a statistics file) on a line: printable ASCII and
 * well-formed UTF-8 as they are, a backslash doubled, anything else as \xNN.
 * Shared by the library's log lines and the command's output.
 */
#include <stddef.h>
#include <string.h>

#include "escape.h"

/* Length of the well-formed UTF-8 sequence at S (N bytes left), or 0 if there is none. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len, i;
	unsigned cp;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1fu;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, cp = s[0] & 0x0fu;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07u;
	else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3fu);
	}
	/* Overlong forms, surrogates, beyond U+10FFFF. */
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	/* C1 controls and the bidirectional overrides/isolates that reorder a line. */
	if (cp <= 0x9f || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069))
		return 0;
	return len;
}

/*
 * Escapes whole units of IN[0..N) (a byte, its escape, a UTF-8 sequence) into
 * OUT while they fit in ROOM bytes. Returns the bytes written; *USED is how
 * much of IN they stand for.
 */
size_t text_escape_units(char *out, size_t room, const unsigned char *s, size_t n, size_t *used)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, i = 0;

	while (i < n) {
		size_t u = s[i] >= 0x80 ? utf8_len(s + i, n - i) : 0;
		char esc[4];
		size_t elen;

		if (u > 0) {
			if (o + u > room)
				break;
			memcpy(out + o, s + i, u);
			o += u;
			i += u;
			continue;
		}
		if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\') {
			esc[0] = (char)s[i];
			elen = 1;
		} else if (s[i] == '\\') {
			esc[0] = '\\', esc[1] = '\\';
			elen = 2;
		} else {
			esc[0] = '\\', esc[1] = 'x', esc[2] = hex[s[i] >> 4],
			esc[3] = hex[s[i] & 15];
			elen = 4;
		}
		if (o + elen > room)
			break;
		memcpy(out + o, esc, elen);
		o += elen;
		i++;
	}
	*used = i;
	return o;
}
