/*
 * parse.h - what the files of the parser share and nothing else sees.
 *
 * parse.c reads a text or a file line by line; lex.c cuts a line into rules and
 * a rule into words; rules.c reads a rule's direction and action, hosts.c its
 * HOST[:PORTS] word, options.c its options (files.c checks the files they
 * name; suggest.c finds the option a typo meant). Every error is reported at its SOURCE:LINE:COL
 * and parsing goes on.
 */
#ifndef TLSSHIM_POLICY_PARSE_H
#define TLSSHIM_POLICY_PARSE_H

#include <stddef.h>

#include "internal.h"

/* One parse: where diagnostics go and which line we are on. */
struct pctx {
	struct policy *p;
	struct policy_diags *d;
	const char *source;
	unsigned line;
	const char *lstart; /* start of the current line, for columns */
	unsigned errors;
	/* Relative file paths are relative to this directory (a policy file's), or, if
	 * NULL, to the working directory; relative BASE is itself relative to it. */
	const char *base;
	size_t base_len;
	char *source_copy; /* SOURCE in the table's arena, made with the first rule */
};

/* One word of a rule. */
struct tok {
	const char *raw; /* as written, in the line */
	size_t rawlen;
	unsigned col;
	char *val;     /* unquoted and unescaped (scratch memory of lex_line()) */
	size_t len;    /* strlen(val) (a value cannot hold NUL: the text is a C string) */
	size_t eq;     /* offset in val of the first unquoted '=', or NO_EQ */
	unsigned vcol; /* column of the value after '=' */
};

#define NO_EQ ((size_t)-1)

/* parse.c */
/* Adds an error at column COL of the current line and counts it. */
void parse_report(struct pctx *c, unsigned col, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The 1-based column of AT, a pointer into the current line. */
unsigned parse_col(const struct pctx *c, const char *at);
/* The decimal number of at most MAXDIGITS digits that is all of [S, S+N), or -1. */
long parse_dec(const char *s, size_t n, size_t maxdigits);

/* lex.c */
/* Called with the words T[0..N) of one rule, whose text is [TEXT, TEXT+TLEN). */
typedef void lex_rule_fn(struct pctx *c, struct tok *t, size_t n, const char *text, size_t tlen);
/*
 * Cuts the line [S, S+N) (no newline) into rules separated by ';', up to a '#'
 * comment, and each rule into words, and calls RULE for each rule. Sets
 * C->lstart. The words live only during the call. Reports an unterminated
 * quote (ending the line) and allocation failures.
 */
void lex_line(struct pctx *c, const char *s, size_t n, lex_rule_fn *rule);

/* rules.c */
/* Builds a rule from its words and adds it to C->p if it has no error (a lex_rule_fn). */
void rules_parse(struct pctx *c, struct tok *t, size_t n, const char *text, size_t tlen);

/* hosts.c */
/* Reads the HOST[:PORTS] word T into R (host, family, prefix, ports). 0, or -1 (reported). */
int hosts_target(struct pctx *c, struct policy_rule *r, const struct tok *t);
/* The IPv6 address in the C string Z into OUT: 0, or -1 if it is not one (or has a zone). */
int hosts_ipv6_parse(const char *z, unsigned char out[16]);

/* options.c */
/*
 * Reads the option words T[0..N) into R; *SEEN gets a bit for each option
 * named, valid or not. DIR_OK: R->dir is known (else the checks that depend on
 * it are left out). Returns 0, or -1 (errors reported).
 */
int options_parse(struct pctx *c, struct policy_rule *r, const struct tok *t, size_t n, int dir_ok,
		  unsigned *seen);

/* files.c */
/*
 * The file option T with value V into *DST, made absolute, and checked
 * readable (a directory too if DIR_OK) unless the table defers file checks.
 * Returns 0, or -1: reported, or (*DST NULL, nothing reported) out of memory.
 */
int files_option(struct pctx *c, char **dst, const struct tok *t, const char *v, int dir_ok);

/* suggest.c */
/* The option name [NAME, NAME+N) is likely a typo of (at most 2 edits away), or NULL. */
const char *suggest_option(const char *name, size_t n);

#endif
