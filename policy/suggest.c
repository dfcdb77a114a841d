/*
 * suggest.c - "did you mean": the option name a misspelt one most likely meant,
 * by edit distance, for the parser's "unknown option" message.
 */
#include <string.h>

#include "parse.h"

/* Optimal-string-alignment distance (a swap counts as one edit), for "did you mean". */
static size_t edit_distance(const char *a, size_t n, const char *b)
{
	size_t m = strlen(b), i, j;
	size_t d[24][24];

	if (n >= 24 || m >= 24)
		return (size_t)-1;
	for (i = 0; i <= n; i++)
		d[i][0] = i;
	for (j = 0; j <= m; j++)
		d[0][j] = j;
	for (i = 1; i <= n; i++) {
		for (j = 1; j <= m; j++) {
			size_t cost = a[i - 1] != b[j - 1];
			size_t v = d[i - 1][j] + 1;

			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (d[i - 1][j - 1] + cost < v)
				v = d[i - 1][j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	}
	return d[n][m];
}

const char *suggest_option(const char *name, size_t n)
{
	const char *best = NULL;
	size_t best_d = 3, i; /* farther than 2 edits is not a typo */

	for (i = 0; i < POLICY_OPT_COUNT; i++) {
		const char *opt = policy_opt_str((enum policy_opt)i);
		size_t dist = edit_distance(name, n, opt);

		if (dist < best_d && dist < n) {
			best_d = dist;
			best = opt;
		}
	}
	return best;
}
