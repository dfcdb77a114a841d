/*
 * test_policy_system.c - the system policy: the floor rule that combines it
 * with a process's own policy (which table's rule applies, ids, names,
 * directions), deferred file checks, and which files may hold it
 * (policy_file_trusted: owner, modes, links, directories above).
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_policy_util.h"

/* A system table loaded under the name the library gives it. */
static struct policy *sys_must(const char *text)
{
	struct policy_diags d = {0};
	struct policy *p = policy_new();

	cr_assert_not_null(p);
	policy_add_text(p, "/etc/tlsshim/policy", text, &d);
	cr_assert_eq(policy_finish(p, &d), 0, "system policy %s: %s", text, tp_diags_str(&d));
	policy_diags_free(&d);
	return p;
}

struct floor_case {
	const char *sys, *own; /* one rule each, or NULL */
	const char *name;      /* the resolved name */
	uint16_t port;
	const char *want;     /* the rule that applies, or NULL */
	const char *want_src; /* its source */
};

/* Same target, every pair of actions: the stricter wins, the system on a tie. */
static const struct floor_case floor_cases[] = {
    {"connect db:5432 tls ca=/", "connect db:5432 plain", "db", 5432, "connect db:5432 tls ca=/",
     "/etc/tlsshim/policy"},
    {"connect db:5432 tls", "connect db:5432 tls insecure", "db", 5432, "connect db:5432 tls",
     "/etc/tlsshim/policy"},
    {"connect db:5432 tls", "connect db:5432 deny", "db", 5432, "connect db:5432 deny",
     "TLSSHIM_POLICY"},
    {"connect db:5432 plain", "connect db:5432 tls", "db", 5432, "connect db:5432 tls",
     "TLSSHIM_POLICY"},
    {"connect db:5432 deny", "connect db:5432 tls", "db", 5432, "connect db:5432 deny",
     "/etc/tlsshim/policy"},
    {"connect db:5432 deny", "connect db:5432 plain", "db", 5432, "connect db:5432 deny",
     "/etc/tlsshim/policy"},
    /* A more specific rule of the process does not carve an exception out of the system's. */
    {"connect *:5432 tls", "connect db:5432 plain", "db", 5432, "connect *:5432 tls",
     "/etc/tlsshim/policy"},
    {"connect *.corp:* tls", "connect db.corp:5432 plain", "db.corp", 5432, "connect *.corp:* tls",
     "/etc/tlsshim/policy"},
    /* Where the system has no rule, the process's own applies, and the other way round. */
    {"connect db:5432 tls", "connect web:443 plain", "web", 443, "connect web:443 plain",
     "TLSSHIM_POLICY"},
    {"connect db:5432 tls", "connect web:443 plain", "db", 5432, "connect db:5432 tls",
     "/etc/tlsshim/policy"},
    {"connect db:5432 tls", NULL, "other", 80, NULL, NULL},
    {NULL, "connect db:5432 plain", "db", 5432, "connect db:5432 plain", "TLSSHIM_POLICY"},
};

Test(policy_floor, stricter_action_wins_system_on_ties)
{
	for (size_t i = 0; i < sizeof(floor_cases) / sizeof(floor_cases[0]); i++) {
		const struct floor_case *c = &floor_cases[i];
		struct policy *sys = sys_must(c->sys ? c->sys : "");
		struct policy *own = tp_must(c->own ? c->own : "");
		struct policy_query q = tp_query(POLICY_CONNECT, c->name, "10.9.8.7", c->port);
		const struct policy_rule *r;

		cr_assert_eq(policy_set_floor(own, sys), 0);
		cr_assert_eq(policy_floor(own), sys);
		r = policy_match(own, &q, NULL);
		cr_expect_str_eq(tp_fmt(r), c->want ? c->want : "(none)",
				 "system '%s', own '%s', connect %s:%u", c->sys, c->own, c->name,
				 c->port);
		if (r && c->want_src)
			cr_expect_str_eq(r->source, c->want_src, "system '%s', own '%s': source",
					 c->sys, c->own);
		policy_free(own);
		policy_free(sys);
	}
}

Test(policy_floor, accept_auto_tls_order)
{
	struct policy *sys = sys_must("accept *:8443 auto cert=/etc/hostname key=/etc/hostname");
	struct policy *own = tp_must("accept *:8443 tls cert=/etc/hostname key=/etc/hostname");
	struct policy_query q = tp_query(POLICY_ACCEPT, NULL, "127.0.0.1", 8443);
	const struct policy_rule *r;

	cr_assert_eq(policy_set_floor(own, sys), 0);
	r = policy_match(own, &q, NULL);
	cr_assert_not_null(r);
	cr_expect_eq(r->action, POLICY_TLS, "tls tightens auto");
	cr_expect_str_eq(r->source, "TLSSHIM_POLICY");
	policy_free(own);
	policy_free(sys);

	sys = sys_must("accept *:8443 tls cert=/etc/hostname key=/etc/hostname");
	own = tp_must("accept *:8443 auto cert=/etc/hostname key=/etc/hostname");
	cr_assert_eq(policy_set_floor(own, sys), 0);
	r = policy_match(own, &q, NULL);
	cr_expect_eq(r->action, POLICY_TLS, "auto cannot weaken tls");
	cr_expect_str_eq(r->source, "/etc/tlsshim/policy");
	policy_free(own);
	policy_free(sys);
}

/* Rule ids key TLS contexts and resumable sessions: one rule, one id, across both tables. */
Test(policy_floor, ids_unique_names_and_dirs_cover_both)
{
	struct policy *sys = sys_must("connect db.corp:5432 tls\nconnect *:25 deny");
	struct policy *own = tp_must("connect api.local:443 tls\naccept *:8443 plain");
	const char *const *names;
	size_t n;

	cr_assert_eq(policy_has_dir(sys, POLICY_ACCEPT), 0);
	cr_assert_eq(policy_set_floor(own, sys), 0);
	cr_expect_eq(policy_set_floor(own, sys), -1, "a table gets one floor");
	cr_expect_eq(policy_rule_at(sys, 0)->id, 0);
	cr_expect_eq(policy_rule_at(sys, 1)->id, 1);
	cr_expect_eq(policy_rule_at(own, 0)->id, 2);
	cr_expect_eq(policy_rule_at(own, 1)->id, 3);
	cr_expect_eq(policy_count(own), 2, "count stays the table's own");
	n = policy_exact_names(own, POLICY_CONNECT, &names);
	cr_assert_eq(n, 2);
	cr_expect_str_eq(names[0], "db.corp");
	cr_expect_str_eq(names[1], "api.local");
	cr_expect(policy_has_dir(own, POLICY_CONNECT));
	cr_expect(policy_has_dir(own, POLICY_ACCEPT));
	policy_free(own);
	policy_free(sys);
}

/* ---- what a process's rule may add to the system rule that applies ------------------ */

#define PIN_A "sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
#define PIN_B "sha256/BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA="

/* The rule policy_match() gives for connect NAME:PORT with SYS under OWN. */
static const struct policy_rule *layered_match(struct policy **sys, struct policy **own,
					       const char *s, const char *o, const char *name,
					       uint16_t port)
{
	struct policy_query q;

	*sys = sys_must(s);
	*own = tp_must(o);
	cr_assert_eq(policy_set_floor(*own, *sys), 0);
	q = tp_query(POLICY_CONNECT, name, "10.9.8.7", port);
	return policy_match(*own, &q, NULL);
}

Test(policy_floor, adds_identity_and_checks_never_changes_them)
{
	struct policy *sys, *own;
	const struct policy_rule *r, *again;
	struct policy_query q = tp_query(POLICY_CONNECT, "db", "10.9.8.7", 5432);

	r = layered_match(&sys, &own, "connect db:5432 tls ca=/etc name=db.internal",
			  "connect db:5432 tls ca=/tmp name=evil insecure cert=/etc/hostname "
			  "key=/etc/hostname pin=" PIN_A " min-version=1.3 alpn=h2",
			  "db", 5432);
	cr_assert_not_null(r);
	cr_expect_str_eq(r->source, "/etc/tlsshim/policy");
	cr_expect_str_eq(r->opt.ca, "/etc", "the system's trust anchors stay");
	cr_expect_str_eq(r->opt.name, "db.internal", "the system's verified name stays");
	cr_expect_eq(r->opt.insecure, 0, "insecure cannot be added");
	cr_expect_str_eq(r->opt.cert, "/etc/hostname", "the process's client certificate");
	cr_expect_str_eq(r->opt.key, "/etc/hostname");
	cr_expect_eq(r->opt.n_pins, 1, "pins added where the system has none");
	cr_expect_eq(r->opt.min_version, POLICY_TLS1_3, "a higher min-version");
	cr_expect_str_eq(r->opt.alpn, "h2");
	cr_expect_neq(r, policy_rule_at(sys, 0), "a combined rule, not the system's own");
	cr_expect_geq(r->id, 2, "its id is none of the two tables' (%u)", r->id);
	again = policy_match(own, &q, NULL);
	cr_expect_eq(again, r, "the same combined rule every time");
	cr_expect_eq(policy_floor_merged(own, policy_rule_at(sys, 0), policy_rule_at(own, 0)), r);
	policy_free(own);
	policy_free(sys);
}

Test(policy_floor, system_pins_and_versions_are_kept)
{
	struct policy *sys, *own;
	const struct policy_rule *r;

	r = layered_match(&sys, &own, "connect db:5432 tls pin=" PIN_A " min-version=1.3",
			  "connect db:5432 tls pin=" PIN_B " min-version=1.2", "db", 5432);
	cr_assert_not_null(r);
	cr_expect_eq(r, policy_rule_at(sys, 0), "nothing to add: the system rule itself");
	cr_expect_eq(r->opt.n_pins, 1);
	cr_expect_eq(r->opt.pins[0].sha256[0], 0, "the system's pin, not the process's");
	cr_expect_eq(r->opt.min_version, POLICY_TLS1_3);
	policy_free(own);
	policy_free(sys);
}

struct meet_case {
	const char *sys, *own, *name;
	uint16_t port;
	int combined;
};

/* Which pairs of rules can meet on one connection (and so get a combined rule). */
static const struct meet_case meet_cases[] = {
    {"connect *.corp:* tls", "connect db.corp:5432 tls cert=/etc/hostname key=/etc/hostname",
     "db.corp", 5432, 1},
    {"connect *.corp:* tls", "connect *.db.corp:* tls cert=/etc/hostname key=/etc/hostname",
     "a.db.corp", 5432, 1},
    {"connect *.db.corp:* tls", "connect *.corp:* tls cert=/etc/hostname key=/etc/hostname",
     "a.db.corp", 5432, 1},
    {"connect *:5432 tls", "connect db:5432 tls cert=/etc/hostname key=/etc/hostname", "db", 5432,
     1},
    {"connect 10.0.0.0/8:5432 tls",
     "connect 10.9.8.7:5432 tls cert=/etc/hostname "
     "key=/etc/hostname",
     NULL, 5432, 1},
    {"connect 10.9.0.0/16:5432 tls", "connect db:5432 tls cert=/etc/hostname key=/etc/hostname",
     "db", 5432, 1},
    {"connect 10.9.8.7:5432-5440 tls",
     "connect 10.9.8.7:5433 tls cert=/etc/hostname "
     "key=/etc/hostname",
     NULL, 5433, 1},
    /* Same action only: a stricter action wins outright, a weaker one loses outright. */
    {"connect db:5432 tls", "connect db:5432 deny", "db", 5432, 0},
};

Test(policy_floor, combined_where_rules_can_meet)
{
	for (size_t i = 0; i < sizeof(meet_cases) / sizeof(meet_cases[0]); i++) {
		const struct meet_case *c = &meet_cases[i];
		struct policy *sys, *own;
		const struct policy_rule *r;

		r = layered_match(&sys, &own, c->sys, c->own, c->name, c->port);
		cr_assert_not_null(r, "'%s' / '%s'", c->sys, c->own);
		if (c->combined) {
			cr_expect_str_eq(r->source, "/etc/tlsshim/policy", "'%s' / '%s'", c->sys,
					 c->own);
			cr_expect(r->opt.cert != NULL, "'%s' / '%s': the certificate is added",
				  c->sys, c->own);
		} else {
			cr_expect(r == policy_rule_at(sys, 0) || r == policy_rule_at(own, 0),
				  "'%s' / '%s': one of the two rules", c->sys, c->own);
		}
		policy_free(own);
		policy_free(sys);
	}
}

Test(policy_floor, accept_adds_client_ca_keeps_server_identity)
{
	struct policy *sys = sys_must("accept *:8443 tls cert=/etc/hostname key=/etc/hostname");
	struct policy *own = tp_must("accept *:8443 tls cert=/etc/passwd key=/etc/passwd "
				     "client-ca=/etc/hostname allow=cn:svc");
	struct policy_query q = tp_query(POLICY_ACCEPT, NULL, "127.0.0.1", 8443);
	const struct policy_rule *r;

	cr_assert_eq(policy_set_floor(own, sys), 0);
	r = policy_match(own, &q, NULL);
	cr_assert_not_null(r);
	cr_expect_str_eq(r->opt.cert, "/etc/hostname", "the system's server certificate");
	cr_expect_str_eq(r->opt.client_ca, "/etc/hostname", "mutual TLS added");
	cr_expect_eq(r->opt.n_allow, 1);
	policy_free(own);
	policy_free(sys);
}

Test(policy_floor, unfinished_tables_refused)
{
	struct policy *sys = policy_new(), *own = tp_must("connect a:1 tls");

	cr_expect_eq(policy_set_floor(own, sys), -1);
	cr_expect_null(policy_floor(own));
	policy_free(own);
	policy_free(sys);
}

/* The system policy's files may be readable by some users only: checked on use. */
Test(policy_floor, deferred_file_checks)
{
	struct policy_diags d = {0};
	struct policy *p = policy_new();

	policy_defer_file_checks(p);
	policy_add_text(p, "/etc/tlsshim/policy",
			"connect db:5432 tls cert=/nonexistent/me.pem key=/nonexistent/me.key", &d);
	cr_expect_eq(policy_finish(p, &d), 0, "%s", tp_diags_str(&d));
	policy_diags_free(&d);
	policy_free(p);

	p = policy_new();
	policy_add_text(p, "TLSSHIM_POLICY",
			"connect db:5432 tls cert=/nonexistent/me.pem key=/nonexistent/me.key", &d);
	cr_expect_neq(policy_finish(p, &d), 0, "without deferring, a missing file is an error");
	policy_diags_free(&d);
	policy_free(p);
}

/* ---- policy_file_trusted ------------------------------------------------------------- */

static char base[64];

/* A fresh root-owned 0755 directory under /tmp (sticky: it counts as root's). */
static void mkbase(void)
{
	snprintf(base, sizeof(base), "/tmp/tlsshim-trust-XXXXXX");
	cr_assert_not_null(mkdtemp(base));
	cr_assert_eq(chmod(base, 0755), 0);
}

static void rmbase(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	cr_expect_eq(system(cmd), 0);
}

static char *in_base(const char *name)
{
	static char path[4][128];
	static int k;
	char *s = path[k++ % 4];

	snprintf(s, 128, "%s/%s", base, name);
	return s;
}

static void mkfile(const char *path, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	cr_assert_eq(write(fd, "connect a:1 tls\n", 16), 16);
	close(fd);
	cr_assert_eq(chmod(path, mode), 0);
}

struct trust_case {
	mode_t dir_mode, file_mode;
	uid_t dir_uid, file_uid;
	int want;        /* 0 or -EPERM */
	const char *why; /* substring of the reason */
};

static const struct trust_case trust_cases[] = {
    {0755, 0644, 0, 0, 0, NULL},
    {0755, 0600, 0, 0, 0, NULL},
    {0755, 0664, 0, 0, -EPERM, "is group-writable (mode 0664)"},
    {0755, 0646, 0, 0, -EPERM, "writable by others (mode 0646)"},
    {0775, 0644, 0, 0, -EPERM, "is group-writable (mode 0775)"},
    {0757, 0644, 0, 0, -EPERM, "writable by others (mode 0757)"},
    {0755, 0644, 0, 65534, -EPERM, "owned by uid 65534, not root"},
    {0755, 0644, 65534, 0, -EPERM, "owned by uid 65534, not root"},
    /* The sticky bit saves /tmp, not the directory holding the file. */
    {01777, 0644, 0, 0, -EPERM, "is group-writable (mode 1777)"},
};

Test(policy_file_trusted, owner_and_modes, .init = mkbase, .fini = rmbase)
{
	char why[600];

	if (geteuid() != 0)
		cr_skip_test("needs root (files owned by root and by another user)");
	for (size_t i = 0; i < sizeof(trust_cases) / sizeof(trust_cases[0]); i++) {
		const struct trust_case *c = &trust_cases[i];
		char *dir, *file;
		char name[32];
		int rc;

		snprintf(name, sizeof(name), "etc%zu", i);
		dir = in_base(name);
		cr_assert_eq(mkdir(dir, 0700), 0);
		file = in_base(strcat(name, "/policy"));
		mkfile(file, c->file_mode);
		cr_assert_eq(chown(file, c->file_uid, 0), 0);
		cr_assert_eq(chmod(file, c->file_mode), 0);
		cr_assert_eq(chown(dir, c->dir_uid, 0), 0);
		cr_assert_eq(chmod(dir, c->dir_mode), 0);
		why[0] = '\0';
		rc = policy_file_trusted(file, why, sizeof(why));
		cr_expect_eq(rc, c->want, "dir %04o uid %u, file %04o uid %u: %d (%s)",
			     (unsigned)c->dir_mode, (unsigned)c->dir_uid, (unsigned)c->file_mode,
			     (unsigned)c->file_uid, rc, why);
		if (c->why)
			cr_expect(strstr(why, c->why) != NULL, "dir %04o, file %04o: reason '%s'",
				  (unsigned)c->dir_mode, (unsigned)c->file_mode, why);
	}
}

Test(policy_file_trusted, links_absent_and_parents, .init = mkbase, .fini = rmbase)
{
	char why[600];

	if (geteuid() != 0)
		cr_skip_test("needs root");
	cr_assert_eq(mkdir(in_base("etc"), 0755), 0);
	mkfile(in_base("etc/real"), 0644);
	cr_assert_eq(symlink(in_base("etc/real"), in_base("etc/policy")), 0);
	cr_expect_eq(policy_file_trusted(in_base("etc/policy"), why, sizeof(why)), -EPERM);
	cr_expect(strstr(why, "symbolic link") != NULL, "%s", why);

	cr_expect_eq(policy_file_trusted(in_base("etc/none"), why, sizeof(why)), -ENOENT);
	/* No file is every process's start: nothing formatted (no strerror, no snprintf). */
	cr_expect_str_empty(why, "expected no message for a missing file, got '%s'", why);

	/* A directory link: whoever may change the link's target may swap the file. */
	cr_assert_eq(symlink(in_base("etc"), in_base("link")), 0);
	cr_expect_eq(policy_file_trusted(in_base("link/real"), why, sizeof(why)), -EPERM);
	cr_expect(strstr(why, "symbolic link") != NULL, "%s", why);

	/* A directory above that someone else may write. */
	cr_assert_eq(mkdir(in_base("open"), 0755), 0);
	cr_assert_eq(mkdir(in_base("open/etc"), 0755), 0);
	mkfile(in_base("open/etc/policy"), 0644);
	cr_expect_eq(policy_file_trusted(in_base("open/etc/policy"), why, sizeof(why)), 0, "%s",
		     why);
	cr_assert_eq(chmod(in_base("open"), 0757), 0);
	cr_expect_eq(policy_file_trusted(in_base("open/etc/policy"), why, sizeof(why)), -EPERM);
	cr_expect(strstr(why, "open is writable by others") != NULL, "%s", why);

	cr_expect_eq(policy_file_trusted("relative/policy", why, sizeof(why)), -ENOENT);
}
