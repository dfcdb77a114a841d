/*
 * test_policy_lex.c - the policy lexer on its own (lex_line()): where a line
 * is cut into rules and words, what quotes and escapes make of a value, and
 * the exact SOURCE:LINE:COL of its one error, an unterminated quote.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"

/* What lex_line() handed to the rule callback, as text: "rule [w1|w2|...] text=..." lines. */
static char got[32768];

static void record(struct pctx *c, struct tok *t, size_t n, const char *text, size_t tlen)
{
	size_t o = strlen(got);

	(void)c;
	o += (size_t)snprintf(got + o, sizeof(got) - o, "[");
	for (size_t i = 0; i < n && o < sizeof(got); i++)
		o += (size_t)snprintf(got + o, sizeof(got) - o, "%s%s@%u", i ? "|" : "", t[i].val,
				      t[i].col);
	if (o < sizeof(got))
		snprintf(got + o, sizeof(got) - o, "] text=%.*s\n", (int)tlen, text);
}

/* Lexes LINE as line 7 of "f.policy"; returns the diagnostics (caller frees). */
static struct policy_diags lex(const char *line)
{
	struct policy_diags d = {0};
	struct pctx c = {.d = &d, .source = "f.policy", .line = 7};

	got[0] = '\0';
	lex_line(&c, line, strlen(line), record);
	cr_assert_eq(c.errors, d.n, "%s: errors counted as reported", line);
	return d;
}

Test(policy_lex, reports_an_unterminated_quote_at_the_quote)
{
	static const struct {
		const char *in;
		unsigned col;
		const char *rules; /* the rules handed over before it */
	} cases[] = {
	    {"a \"b", 3, ""},
	    {"\"", 1, ""},
	    {"a b=\"c d", 5, ""},
	    {"a \"b\" \"c", 7, ""},
	    {"x y; a \"b", 8, "[x@1|y@3] text=x y\n"},
	    {"a b=\"c\\\"", 5, ""}, /* \" inside quotes is an escape, not the end */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct policy_diags d = lex(cases[i].in);

		cr_expect_eq(d.n, 1, "%s: one error, got %zu", cases[i].in, d.n);
		if (d.n == 1) {
			cr_expect_str_eq(d.v[0].source, "f.policy", "%s", cases[i].in);
			cr_expect_eq(d.v[0].line, 7, "%s", cases[i].in);
			cr_expect_eq(d.v[0].col, cases[i].col, "%s: col %u", cases[i].in,
				     d.v[0].col);
			cr_expect_str_eq(d.v[0].msg,
					 "unterminated quote (a value in \"...\" must end on the "
					 "same line)",
					 "%s", cases[i].in);
		}
		cr_expect_str_eq(got, cases[i].rules, "%s", cases[i].in);
		policy_diags_free(&d);
	}
}

Test(policy_lex, cuts_rules_at_semicolons_and_stops_at_comments)
{
	static const struct {
		const char *in, *rules;
	} cases[] = {
	    {"", ""},
	    {"   \t ", ""},
	    {"# all comment ; x", ""},
	    {";;  ;", ""},
	    {"a b c", "[a@1|b@3|c@5] text=a b c\n"},
	    {"  a\tb  ", "[a@3|b@5] text=a\tb\n"},
	    {"a b;c d", "[a@1|b@3] text=a b\n[c@5|d@7] text=c d\n"},
	    {"a b ; c d # e f", "[a@1|b@3] text=a b\n[c@7|d@9] text=c d\n"},
	    {"a b#c", "[a@1|b@3] text=a b\n"},
	    {"a b\r", "[a@1|b@3] text=a b\n"}, /* CRLF files */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct policy_diags d = lex(cases[i].in);

		cr_expect_eq(d.n, 0, "%s: no error", cases[i].in);
		cr_expect_str_eq(got, cases[i].rules, "%s", cases[i].in);
		policy_diags_free(&d);
	}
}

Test(policy_lex, unquotes_values_and_keeps_what_quotes_protect)
{
	static const struct {
		const char *in, *rules;
	} cases[] = {
	    {"k=\"a b\"", "[k=a b@1] text=k=\"a b\"\n"},
	    {"k=\"a;b#c\" z", "[k=a;b#c@1|z@11] text=k=\"a;b#c\" z\n"},
	    {"\"a\\\"b\\\\c\"", "[a\"b\\c@1] text=\"a\\\"b\\\\c\"\n"},
	    {"\"a\\nb\"", "[a\\nb@1] text=\"a\\nb\"\n"}, /* other escapes are literal */
	    {"a\\b", "[a\\b@1] text=a\\b\n"},            /* outside quotes a backslash is literal */
	    {"a\"b c\"d", "[ab cd@1] text=a\"b c\"d\n"}, /* quotes may open mid-word */
	    {"\"\"", "[@1] text=\"\"\n"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct policy_diags d = lex(cases[i].in);

		cr_expect_str_eq(got, cases[i].rules, "%s", cases[i].in);
		policy_diags_free(&d);
	}
}

/* '=' splits name and value only outside quotes, and only the first one. */
static size_t first_eq;
static unsigned first_vcol;

static void keep_first(struct pctx *c, struct tok *t, size_t n, const char *text, size_t tlen)
{
	(void)c;
	(void)n;
	(void)text;
	(void)tlen;
	first_eq = t[0].eq;
	first_vcol = t[0].vcol;
}

Test(policy_lex, finds_the_first_unquoted_equals_sign)
{
	static const struct {
		const char *in;
		size_t eq;
		unsigned vcol;
	} cases[] = {
	    {"name", NO_EQ, 0},    {"k=v", 1, 3},     {"k=v=w", 1, 3},        {"k==", 1, 3},
	    {"\"k=v\"", NO_EQ, 0}, {"\"k\"=v", 1, 5}, {"  ab=\"x y\"", 2, 6},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct policy_diags d = {0};
		struct pctx c = {.d = &d, .source = "f", .line = 1};

		first_eq = 12345;
		first_vcol = 0;
		lex_line(&c, cases[i].in, strlen(cases[i].in), keep_first);
		cr_expect_eq(first_eq, cases[i].eq, "%s: eq %zu", cases[i].in, first_eq);
		if (cases[i].eq != NO_EQ)
			cr_expect_eq(first_vcol, cases[i].vcol, "%s: vcol %u", cases[i].in,
				     first_vcol);
		policy_diags_free(&d);
	}
}

/* More words than the stack holds, and a line longer than the stack buffer for values. */
Test(policy_lex, takes_lines_of_any_length_and_word_count)
{
	char line[20000], want[40000];
	size_t o = 0, w = 0;

	w += (size_t)snprintf(want + w, sizeof(want) - w, "[");
	for (int i = 0; i < 100; i++) {
		o += (size_t)snprintf(line + o, sizeof(line) - o, "%sw%d", i ? " " : "", i);
		w += (size_t)snprintf(want + w, sizeof(want) - w, "%sw%d@%zu", i ? "|" : "", i,
				      o - (size_t)snprintf(NULL, 0, "w%d", i) + 1);
	}
	memset(line + o, 'x', 5000);
	line[o] = ' ';
	line[o + 5000] = '\0';
	w += (size_t)snprintf(want + w, sizeof(want) - w, "|%s@%zu] text=%s\n", line + o + 1, o + 2,
			      line);
	{
		struct policy_diags d = lex(line);

		cr_expect_eq(d.n, 0);
		cr_expect_eq(strlen(got), strlen(want));
		cr_expect(strcmp(got, want) == 0, "the 101 words of a 5 KB line");
		policy_diags_free(&d);
	}
}
