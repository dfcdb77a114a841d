#ifndef POLICY_ESCAPE_H
#define POLICY_ESCAPE_H

#include <stddef.h>

/*
 * Escapes whole units of S[0..N) (a byte, its escape, a UTF-8 sequence) into
 * OUT while they fit in ROOM bytes: printable ASCII and well-formed UTF-8
 * (no C1 controls, no bidirectional overrides) as they are, a backslash as
 * \\, any other byte as \xNN. Returns the bytes written (no terminator);
 * *USED is how much of S they stand for.
 */
size_t text_escape_units(char *out, size_t room, const unsigned char *s, size_t n, size_t *used);

#endif
