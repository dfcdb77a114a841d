/*
 * fuzz_policy.c - libFuzzer target for the policy language: parse the input as
 * TLSSHIM_POLICY text, finish, format every rule and parse that back, and run
 * look-ups, so that any input is either a clean error or a consistent table.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Look-ups that exercise every host class, with names taken from the rules too. */
static void run_matches(const struct policy *p)
{
	static const char *const names[] = {"a.example.com", "API.internal.", "x.y.z", NULL};
	static const unsigned char v4[4] = {10, 1, 2, 3};
	static const unsigned char mapped[16] = {0, 0, 0,    0,    0,  0, 0, 0,
						 0, 0, 0xff, 0xff, 10, 0, 0, 1};
	const struct policy_rule *out[8];
	size_t i, k;

	for (i = 0; i < policy_count(p) + 4; i++) {
		const struct policy_rule *r = i < policy_count(p) ? policy_rule_at(p, i) : NULL;
		struct policy_query q = {.dir = r ? r->dir : (enum policy_dir)(i % 2)};

		q.name = r && r->host_kind <= POLICY_HOST_SUFFIX ? r->host : names[i % 4];
		q.alt_names = names;
		q.n_alt = 3;
		q.port = r ? r->port_hi : (uint16_t)(i * 443);
		if (r && r->family) {
			q.family = r->family;
			memcpy(q.addr, r->addr, sizeof(q.addr));
		} else if (i % 2) {
			q.family = AF_INET;
			memcpy(q.addr, v4, sizeof(v4));
		} else {
			q.family = AF_INET6;
			memcpy(q.addr, mapped, sizeof(mapped));
		}
		r = policy_match(p, &q, NULL);
		k = policy_match_all(p, &q, out, 8);
		/* The two look-ups must agree on the winner. */
		if ((r == NULL) != (k == 0) || (r && out[0] != r))
			abort();
		if (i >= 64)
			break;
	}
}

/* The normalized text of every rule of P, one a line (malloc), or NULL. */
static char *format_all(const struct policy *p)
{
	char *all = calloc(1, 1);
	size_t i, len = 0;

	for (i = 0; all && i < policy_count(p); i++) {
		const struct policy_rule *r = policy_rule_at(p, i);
		int n = policy_format_rule(r, NULL, 0);
		char *na = realloc(all, len + (size_t)n + 2);

		if (!na) {
			free(all);
			return NULL;
		}
		all = na;
		policy_format_rule(r, all + len, (size_t)n + 1);
		len += (size_t)n;
		all[len++] = '\n';
		all[len] = '\0';
	}
	return all;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct policy_diags d = {0};
	struct policy *p = policy_new(), *again = NULL;
	char *text = malloc(size + 1), *once = NULL, *twice = NULL;

	if (!p || !text)
		goto out;
	memcpy(text, data, size);
	text[size] = '\0';
	policy_add_text(p, "TLSSHIM_POLICY", text, &d);
	if (policy_finish(p, &d) != 0)
		goto out;
	/* The normalized text must parse back to a table that prints the same. */
	once = format_all(p);
	again = policy_new();
	if (!once || !again)
		goto out;
	policy_diags_free(&d);
	policy_add_text(again, "formatted", once, &d);
	if (policy_finish(again, &d) != 0)
		abort();
	twice = format_all(again);
	if (twice && strcmp(once, twice) != 0)
		abort();
	run_matches(p);
out:
	policy_diags_free(&d);
	policy_free(p);
	policy_free(again);
	free(text);
	free(once);
	free(twice);
	return 0;
}
