/*
 * diag.c - policy diagnostics: SOURCE:LINE:COL plus a message, collected as data
 * so that every error of a policy is reported, not just the first.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

void policy_diag_add(struct policy_diags *d, const char *source, unsigned line, unsigned col,
		     const char *fmt, ...)
{
	struct policy_diag *e;
	va_list ap;
	char *msg = NULL;
	char *src = NULL;

	if (!d)
		return;
	if (d->n == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 8;
		struct policy_diag *v = realloc(d->v, cap * sizeof(*v));

		if (!v)
			return;
		d->v = v;
		d->cap = cap;
	}
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	src = strdup(source ? source : "");
	if (!msg || !src)
		goto fail;
	e = &d->v[d->n++];
	e->source = src;
	e->line = line;
	e->col = col;
	e->msg = msg;
	return;
fail:
	/* Out of memory: the caller still fails by its return value. */
	free(msg);
	free(src);
}

void policy_diags_free(struct policy_diags *d)
{
	size_t i;

	if (!d)
		return;
	for (i = 0; i < d->n; i++) {
		free(d->v[i].source);
		free(d->v[i].msg);
	}
	free(d->v);
	d->v = NULL;
	d->n = 0;
	d->cap = 0;
}
