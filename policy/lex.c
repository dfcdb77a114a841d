/*
 * lex.c - cuts a line of policy into rules (separated by ';', up to a '#'
 * comment) and a rule into words (blank-separated; double quotes keep blanks,
 * ';' and '#' in a value). Knows nothing of what the words mean: rules.c does.
 */
#include <stdlib.h>
#include <string.h>

#include "parse.h"

static int is_space(char ch)
{
	return ch == ' ' || ch == '\t';
}

/*
 * Reads one word starting at S (before END) into T: up to a blank, ';' or '#'
 * outside double quotes. Inside quotes \" and \\ are escapes; other bytes are
 * literal. The value goes to V (room for END - S + 1 bytes). Returns the end
 * of the word, or NULL on an unterminated quote.
 */
static const char *lex_word(struct pctx *c, const char *s, const char *end, struct tok *t, char *v)
{
	const char *p = s;
	size_t n = 0;
	int quoted = 0;

	t->raw = s;
	t->col = parse_col(c, s);
	t->eq = NO_EQ;
	t->val = v;
	for (; p < end; p++) {
		if (quoted) {
			if (*p == '"') {
				quoted = 0;
			} else if (*p == '\\' && p + 1 < end && (p[1] == '"' || p[1] == '\\')) {
				v[n++] = *++p;
			} else {
				v[n++] = *p;
			}
			continue;
		}
		if (is_space(*p) || *p == ';' || *p == '#')
			break;
		if (*p == '"') {
			quoted = 1;
			continue;
		}
		if (*p == '=' && t->eq == NO_EQ) {
			t->eq = n;
			t->vcol = parse_col(c, p + 1);
		}
		v[n++] = *p;
	}
	v[n] = '\0';
	t->len = n;
	t->rawlen = (size_t)(p - s);
	return quoted ? NULL : p;
}

/*
 * lex_line() (parse.h). The words of a rule live in scratch memory until the rule is
 * built (it copies what it keeps): on the stack for lines of usual length.
 * A word's value is never longer than its text, so the values of one rule
 * fit in 2N + 1 bytes.
 */
void lex_line(struct pctx *c, const char *s, size_t n, lex_rule_fn *rule)
{
	const char *p = s, *end = s + n, *rstart = NULL, *rend = NULL;
	struct tok tstack[16], *t = tstack;
	char vstack[2048], *vbuf = vstack;
	size_t nt = 0, cap = sizeof(tstack) / sizeof(tstack[0]), voff = 0;

	c->lstart = s;
	if (n > 0 && s[n - 1] == '\r')
		end--; /* CRLF files */
	if (2 * n + 1 > sizeof(vstack)) {
		vbuf = malloc(2 * n + 1);
		if (!vbuf) {
			parse_report(c, 1, "out of memory");
			return;
		}
	}
	for (;;) {
		while (p < end && is_space(*p))
			p++;
		if (p == end || *p == ';' || *p == '#') {
			if (nt > 0)
				rule(c, t, nt, rstart, (size_t)(rend - rstart));
			nt = 0;
			voff = 0;
			if (p == end || *p == '#')
				break;
			p++;
			continue;
		}
		if (nt == cap) {
			struct tok *nv = malloc(2 * cap * sizeof(*nv));

			if (!nv) {
				parse_report(c, parse_col(c, p), "out of memory");
				break;
			}
			memcpy(nv, t, nt * sizeof(*nv));
			if (t != tstack)
				free(t);
			t = nv;
			cap *= 2;
		}
		if (nt == 0)
			rstart = p;
		memset(&t[nt], 0, sizeof(t[nt]));
		rend = lex_word(c, p, end, &t[nt], vbuf + voff);
		voff += t[nt].len + 1;
		nt++;
		if (!rend) {
			const char *q = memchr(p, '"', (size_t)(end - p));

			parse_report(
			    c, q ? parse_col(c, q) : parse_col(c, p),
			    "unterminated quote (a value in \"...\" must end on the same line)");
			break;
		}
		p = rend;
	}
	if (t != tstack)
		free(t);
	if (vbuf != vstack)
		free(vbuf);
}
