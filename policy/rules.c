/*
 * rules.c - one rule: DIRECTION HOST[:PORTS] ACTION [OPTION...] from its
 * words (hosts.c reads the target, options.c the options), checked on its own
 * and appended to the table if it has no error.
 */
#include <string.h>

#include "parse.h"

int policy_append_rule(struct policy *p, struct policy_rule *r)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 16;
		struct policy_rule **v =
		    mem_grow(&p->mem, p->rules, p->cap * sizeof(*v), cap * sizeof(*v));

		if (!v)
			return -1;
		p->rules = v;
		p->cap = cap;
	}
	r->id = (unsigned)p->n;
	p->rules[p->n++] = r;
	return 0;
}

static int parse_word(const struct tok *t, const char *const *words, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strlen(words[i]) == t->rawlen && memcmp(words[i], t->raw, t->rawlen) == 0)
			return (int)i;
	return -1;
}

/* Reads the tokens T[0..N) of one rule into R, reporting every error found. */
static void read_rule(struct pctx *c, struct policy_rule *r, const struct tok *t, size_t n,
		      const char *text, size_t tlen)
{
	static const char *const dirs[] = {"connect", "accept"};
	static const char *const acts[] = {"tls", "plain", "deny", "auto"};
	char shown[96];
	unsigned seen = 0;
	int dir, act;

	dir = parse_word(&t[0], dirs, 2);
	if (dir < 0)
		parse_report(c, t[0].col, "expected 'connect' or 'accept', got '%s'",
			     policy_shown(t[0].raw, t[0].rawlen, shown, sizeof(shown)));
	else
		r->dir = (enum policy_dir)dir;
	if (n < 2) {
		parse_report(c, parse_col(c, text + tlen), "expected a host[:ports] after '%s'",
			     policy_shown(t[0].raw, t[0].rawlen, shown, sizeof(shown)));
		return;
	}
	hosts_target(c, r, &t[1]);
	if (n < 3) {
		parse_report(c, parse_col(c, text + tlen),
			     "expected an action ('tls', 'plain', 'deny' or 'auto') after '%s'",
			     policy_shown(t[1].raw, t[1].rawlen, shown, sizeof(shown)));
		return;
	}
	act = parse_word(&t[2], acts, 4);
	if (act < 0) {
		parse_report(c, t[2].col, "expected 'tls', 'plain', 'deny' or 'auto', got '%s'",
			     policy_shown(t[2].raw, t[2].rawlen, shown, sizeof(shown)));
	} else {
		r->action = (enum policy_action)act;
		if (r->action == POLICY_AUTO && dir == POLICY_CONNECT)
			parse_report(
			    c, t[2].col,
			    "'auto' applies to accept rules only (it detects a client's TLS)");
	}
	if (n > 3 && (act == POLICY_PLAIN || act == POLICY_DENY)) {
		parse_report(c, t[3].col, "options have no effect on a '%s' rule", acts[act]);
		return;
	}
	options_parse(c, r, t + 3, n - 3, dir >= 0, &seen);
	if (dir == POLICY_ACCEPT && (act == POLICY_TLS || act == POLICY_AUTO) &&
	    !(seen & (1u << POLICY_OPT_CERT | 1u << POLICY_OPT_KEY)))
		parse_report(c, t[2].col,
			     "'accept %s' needs cert= and key= (the server's certificate)",
			     acts[act]);
}

/*
 * Builds a rule from its tokens T[0..N) and adds it if it has no error (a
 * rule with errors leaves its memory in the arena: the table is then only
 * freed).
 */
void rules_parse(struct pctx *c, struct tok *t, size_t n, const char *text, size_t tlen)
{
	struct policy_rule *r = mem_alloc(&c->p->mem, sizeof(*r));
	unsigned before = c->errors;

	if (!r) {
		parse_report(c, t[0].col, "out of memory");
		return;
	}
	r->opt.min_version = POLICY_TLS1_2;
	r->opt.handshake_timeout_ms = POLICY_DEFAULT_HANDSHAKE_TIMEOUT_MS;
	r->opt.expiry_warn_days = POLICY_DEFAULT_EXPIRY_WARN_DAYS;
	read_rule(c, r, t, n, text, tlen);
	if (c->errors != before)
		return;
	/* One copy of the source name for all the rules of one text. */
	if (!c->source_copy)
		c->source_copy = mem_strdup(&c->p->mem, c->source);
	r->source = c->source_copy;
	r->text = mem_strndup(&c->p->mem, text, tlen);
	r->line = c->line;
	r->col = t[0].col;
	if (!r->source || !r->text || policy_append_rule(c->p, r) < 0)
		parse_report(c, t[0].col, "out of memory");
}
