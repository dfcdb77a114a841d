/*
 * test_policy_util.h - helpers shared by the policy unit tests: load a policy
 * from text, look rules up by address or name, format a rule.
 */
#ifndef TLSSHIM_TEST_POLICY_UTIL_H
#define TLSSHIM_TEST_POLICY_UTIL_H

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

/* Parses TEXT as TLSSHIM_POLICY and finishes. Returns the table, or NULL (diags in *D). */
static inline struct policy *tp_load(const char *text, struct policy_diags *d)
{
	struct policy *p = policy_new();

	cr_assert_not_null(p);
	policy_add_text(p, "TLSSHIM_POLICY", text, d);
	if (policy_finish(p, d) != 0) {
		policy_free(p);
		return NULL;
	}
	return p;
}

/* As tp_load() for a policy that must load; fails the test with its diagnostics otherwise. */
static inline struct policy *tp_must(const char *text)
{
	struct policy_diags d = {0};
	struct policy *p = tp_load(text, &d);

	cr_assert_not_null(p, "policy %s: %s:%u:%u: %s", text, d.n ? d.v[0].source : "",
			   d.n ? d.v[0].line : 0, d.n ? d.v[0].col : 0, d.n ? d.v[0].msg : "");
	cr_assert_eq(d.n, 0, "policy %s: unexpected diagnostics", text);
	policy_diags_free(&d);
	return p;
}

/* "SOURCE:LINE:COL: msg" of every diagnostic, one a line, in a static buffer. */
static inline const char *tp_diags_str(const struct policy_diags *d)
{
	static char buf[8192];
	size_t i, o = 0;

	buf[0] = '\0';
	for (i = 0; i < d->n && o < sizeof(buf); i++)
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s:%u:%u: %s\n", d->v[i].source,
				      d->v[i].line, d->v[i].col, d->v[i].msg);
	return buf;
}

/*
 * Builds a query: HOST is an IPv4 or IPv6 address (no brackets), or NULL;
 * NAME the resolved name or NULL.
 */
static inline struct policy_query tp_query(enum policy_dir dir, const char *name, const char *addr,
					   uint16_t port)
{
	struct policy_query q = {.dir = dir, .name = name, .port = port};

	if (addr && inet_pton(AF_INET, addr, q.addr) == 1)
		q.family = AF_INET;
	else if (addr && inet_pton(AF_INET6, addr, q.addr) == 1)
		q.family = AF_INET6;
	else if (addr)
		cr_assert_fail("bad test address %s", addr);
	return q;
}

/* The normalized text of R in a static buffer ("(none)" for NULL). */
static inline const char *tp_fmt(const struct policy_rule *r)
{
	static char buf[2048];

	if (!r)
		return "(none)";
	policy_format_rule(r, buf, sizeof(buf));
	return buf;
}

#endif
