/*
 * load.c - load the policy the way the preload library will, report its
 * errors as SOURCE:LINE:COL, and print the normalized rule table.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "env.h"
#include "load.h"

static void print_diags(const struct policy_diags *d)
{
	size_t i;

	for (i = 0; i < d->n; i++) {
		const struct policy_diag *g = &d->v[i];

		fprintf(stderr, "%s:%u:%u: %s\n", g->source ? g->source : "?", g->line, g->col,
			g->msg ? g->msg : "error");
	}
}

/* An empty variable is treated as unset, as a container's `ENV X=` means "none". */
static const char *env_nonempty(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

struct policy *cmd_policy_load(const struct cmd_policy_src *src)
{
	struct policy_diags d = {0};
	struct policy *p = policy_new();
	const char *text, *file;
	int bad = 0;

	if (!p) {
		cmd_err("out of memory");
		return NULL;
	}
	if (src->given) {
		text = src->text;
		file = src->file;
	} else {
		text = getenv(ENV_POLICY);
		file = env_nonempty(ENV_POLICY_FILE);
	}
	if (policy_add_text(p, ENV_POLICY, text, &d) != 0)
		bad = 1;
	if (file && policy_add_file(p, file, &d) != 0)
		bad = 1;
	/* Rules that parsed are still checked as a table, so one run shows every error. */
	if (policy_finish(p, &d) != 0)
		bad = 1;
	if (bad || d.n > 0) {
		if (d.n == 0)
			cmd_err("the policy was rejected, without a message (out of memory?)");
		print_diags(&d);
		policy_diags_free(&d);
		policy_free(p);
		return NULL;
	}
	policy_diags_free(&d);
	return p;
}

struct policy *cmd_system_load(int check_files, enum cmd_system_state *state)
{
	struct policy_diags d = {0};
	struct policy *p;
	char why[600];
	int rc;

	rc = policy_file_trusted(CMD_SYSTEM_POLICY, why, sizeof(why));
	*state = rc == -ENOENT ? CMD_SYSTEM_ABSENT : CMD_SYSTEM_REFUSED;
	if (rc == -ENOENT)
		return NULL;
	if (rc != 0) {
		cmd_err("system policy refused: %s (it must be a file owned by root and writable "
			"by root only, in a directory that is too); its rules do not apply",
			why);
		return NULL;
	}
	p = policy_new();
	if (!p) {
		cmd_err("out of memory");
		*state = CMD_SYSTEM_ERRORS;
		return NULL;
	}
	if (!check_files)
		policy_defer_file_checks(p);
	if (policy_add_file(p, CMD_SYSTEM_POLICY, &d) == 0)
		policy_finish(p, &d);
	if (d.n == 0) {
		*state = CMD_SYSTEM_OK;
		return p;
	}
	*state = CMD_SYSTEM_ERRORS;
	print_diags(&d);
	policy_diags_free(&d);
	policy_free(p);
	return NULL;
}

char *cmd_rule_text(const struct policy_rule *r)
{
	char probe[1];
	int n = policy_format_rule(r, probe, sizeof(probe));
	char *s;

	if (n < 0)
		return NULL;
	s = malloc((size_t)n + 1);
	if (!s)
		return NULL;
	policy_format_rule(r, s, (size_t)n + 1);
	return s;
}

/* Normalized rule text split at its first two spaces: direction, target, action + options. */
struct cols {
	const char *f[3];
	int len[3];
};

static void split_rule(const char *text, struct cols *c)
{
	const char *s = text;
	int i;

	for (i = 0; i < 3; i++) {
		c->f[i] = s;
		c->len[i] = (int)(i < 2 ? strcspn(s, " ") : strlen(s));
		s += c->len[i];
		if (*s == ' ')
			s++;
	}
}

void cmd_policy_print(const struct policy *p)
{
	size_t i, n = policy_count(p);
	int w[3] = {0, 0, 0}, k;
	struct cols c;
	char **texts;

	if (n == 0) {
		/* A comment, so the output stays a valid (empty) policy. */
		puts("# no rules: every connection is left alone");
		return;
	}
	texts = calloc(n, sizeof(*texts));
	if (!texts) {
		cmd_err("out of memory");
		return;
	}
	/* Align the columns; the widths come from the rules themselves. */
	for (i = 0; i < n; i++) {
		texts[i] = cmd_rule_text(policy_rule_at(p, i));
		if (!texts[i])
			continue;
		split_rule(texts[i], &c);
		for (k = 0; k < 3; k++)
			w[k] = c.len[k] > w[k] ? c.len[k] : w[k];
	}
	/* One rule with many options should not push every comment far right. */
	if (w[2] > 40)
		w[2] = 40;
	for (i = 0; i < n; i++) {
		const struct policy_rule *r = policy_rule_at(p, i);

		if (!texts[i]) {
			cmd_err("out of memory");
			continue;
		}
		split_rule(texts[i], &c);
		printf("%-*.*s %-*.*s %-*.*s  # %s:%u:%u\n", w[0], c.len[0], c.f[0], w[1], c.len[1],
		       c.f[1], w[2], c.len[2], c.f[2], r->source ? r->source : "?", r->line,
		       r->col);
		free(texts[i]);
	}
	free(texts);
}

char *cmd_policy_text_normalized(const char *text)
{
	struct cmd_policy_src src = {.text = (char *)text, .file = NULL, .given = 1};
	struct policy *p = cmd_policy_load(&src);
	char *all = p ? calloc(1, 1) : NULL;
	size_t len = 0, i;

	for (i = 0; all && i < policy_count(p); i++) {
		char *r = cmd_rule_text(policy_rule_at(p, i));
		char *n = r ? realloc(all, len + strlen(r) + 2) : NULL;

		if (!n) {
			free(all);
			all = NULL;
		} else {
			all = n;
			len += (size_t)sprintf(all + len, "%s%s", i ? "\n" : "", r);
		}
		free(r);
	}
	policy_free(p);
	return all;
}
