/*
 * parse.c - the policy language: text -> rules (see the contract's "Policy
 * language"), read line by line from a text or a file. Each rule is checked on
 * its own (parse.h says which file reads what); whole-table checks (ties) and
 * indexing are in index.c. Every error becomes a diagnostic and parsing goes
 * on, so that one `check` shows all of them.
 *
 * This library is linked into the preload library, whose hooks are named
 * read/close/...: file access here is stdio, stat() and access() only.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"
#include "parse.h"

void parse_report(struct pctx *c, unsigned col, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	policy_diag_add(c->d, c->source, c->line, col, "%s", msg);
	c->errors++;
}

unsigned parse_col(const struct pctx *c, const char *at)
{
	return (unsigned)(at - c->lstart) + 1;
}

/* Parses a decimal number of at most MAXDIGITS digits, all of [S, S+N). Returns it or -1. */
long parse_dec(const char *s, size_t n, size_t maxdigits)
{
	long v = 0;
	size_t i;

	if (n == 0 || n > maxdigits)
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* Puts the diagnostics of one line (D->v[FIRST..]) in column order, as a reader scans it. */
static void sort_line_diags(struct policy_diags *d, size_t first)
{
	size_t i, j;

	if (!d)
		return;
	for (i = first + 1; i < d->n; i++) {
		struct policy_diag x = d->v[i];

		for (j = i; j > first && d->v[j - 1].col > x.col; j--)
			d->v[j] = d->v[j - 1];
		d->v[j] = x;
	}
}

static int parse_buf(struct policy *p, const char *source, const char *text, struct policy_diags *d,
		     const char *base, size_t base_len)
{
	struct pctx c = {
	    .p = p, .d = d, .source = source, .line = 0, .base = base, .base_len = base_len};
	const char *s = text;

	if (p->finished) {
		policy_diag_add(d, source, 0, 0, "the policy is already finished");
		p->n_errors++;
		return -1;
	}
	while (s && *s) {
		const char *nl = strchr(s, '\n');
		size_t n = nl ? (size_t)(nl - s) : strlen(s);
		size_t first = d ? d->n : 0;

		c.line++;
		lex_line(&c, s, n, rules_parse);
		sort_line_diags(d, first);
		s = nl ? nl + 1 : NULL;
	}
	p->n_errors += c.errors;
	return c.errors ? -1 : 0;
}

int policy_add_text(struct policy *p, const char *source, const char *text, struct policy_diags *d)
{
	return parse_buf(p, source ? source : ENV_POLICY, text, d, NULL, 0);
}

int policy_add_file(struct policy *p, const char *path, struct policy_diags *d)
{
	char ebuf[128];
	char *buf = NULL, *line = NULL;
	const char *slash;
	size_t len = 0, cap = 0, lcap = 0;
	ssize_t n;
	FILE *f;
	int rc = -1;

	/* getenv() of an unset or empty TLSSHIM_POLICY_FILE: no file. */
	if (!path || !*path)
		return 0;
	f = fopen(path, "re");
	if (!f) {
		policy_diag_add(d, path, 0, 0, "cannot read the policy file: %s",
				strerror_r(errno, ebuf, sizeof(ebuf)));
		p->n_errors++;
		return -1;
	}
	while ((n = getline(&line, &lcap, f)) > 0) {
		if (memchr(line, '\0', (size_t)n)) {
			policy_diag_add(d, path, 0, 0, "the policy file holds a NUL byte");
			p->n_errors++;
			goto out;
		}
		if (len + (size_t)n + 1 > cap) {
			size_t ncap = 2 * (len + (size_t)n + 1);
			char *nb = realloc(buf, ncap);

			if (!nb) {
				policy_diag_add(d, path, 0, 0, "out of memory");
				p->n_errors++;
				goto out;
			}
			buf = nb;
			cap = ncap;
		}
		memcpy(buf + len, line, (size_t)n);
		len += (size_t)n;
		buf[len] = '\0';
	}
	if (ferror(f)) {
		policy_diag_add(d, path, 0, 0, "cannot read the policy file: %s",
				strerror_r(errno, ebuf, sizeof(ebuf)));
		p->n_errors++;
		goto out;
	}
	/* The file's directory: "a/b/policy" -> "a/b", "policy" -> "" (the working one). */
	slash = strrchr(path, '/');
	rc = parse_buf(p, path, buf, d, slash ? path : "",
		       slash ? (slash == path ? 1 : (size_t)(slash - path)) : 0);
out:
	free(line);
	free(buf);
	(void)fclose(f); /* read only: nothing to lose */
	return rc;
}
