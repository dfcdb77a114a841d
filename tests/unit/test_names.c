/*
 * test_names.c - unit tests of shim/names.c: which name the program resolved
 * for an address (thread-local, then global), bounded tables, and the shim's
 * own resolution of the policy's exact names.
 *
 * real.getaddrinfo is replaced by fake_gai(), which counts calls and answers
 * names under ".test" from a table, so no test depends on DNS; other names go
 * to libc.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "decide.h"
#include "names.h"
#include "policy.h"
#include "real.h"

/* ---- helpers ------------------------------------------------------------------------- */

static struct sockaddr_storage sa_make(const char *ip)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		cr_assert_eq(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1, "bad test address %s", ip);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		cr_assert_eq(inet_pton(AF_INET, ip, &s4->sin_addr), 1, "bad test address %s", ip);
	}
	return ss;
}

static int remember(const char *name, const char *ip)
{
	struct sockaddr_storage ss = sa_make(ip);

	return names_remember(name, (struct sockaddr *)&ss);
}

/* Looks IP up; returns the name or "" (a static buffer per thread). */
static const char *lookup(const char *ip)
{
	static __thread char out[NAMES_MAX_NAME];
	unsigned char a[16];
	int fam = strchr(ip, ':') ? AF_INET6 : AF_INET;

	cr_assert_eq(inet_pton(fam, ip, a), 1, "bad test address %s", ip);
	if (!names_lookup(fam, a, out))
		return "";
	return out;
}

static void v4(uint32_t host, char buf[INET_ADDRSTRLEN])
{
	struct in_addr in = {.s_addr = htonl(host)};

	inet_ntop(AF_INET, &in, buf, INET_ADDRSTRLEN);
}

/* Runs FN(ARG) on a new thread and waits for it (a thread with an empty table). */
static void *on_thread(void *(*fn)(void *), void *arg)
{
	pthread_t t;
	void *ret;

	cr_assert_eq(pthread_create(&t, NULL, fn, arg), 0);
	cr_assert_eq(pthread_join(t, &ret), 0);
	return ret;
}

struct pair {
	const char *name, *ip;
	char got[NAMES_MAX_NAME];
};

static void *remember_thread(void *arg)
{
	struct pair *p = arg;

	remember(p->name, p->ip);
	return NULL;
}

static void *lookup_thread(void *arg)
{
	struct pair *p = arg;

	snprintf(p->got, sizeof(p->got), "%s", lookup(p->ip));
	return NULL;
}

static const char *lookup_elsewhere(const char *ip)
{
	static struct pair p;

	p.ip = ip;
	on_thread(lookup_thread, &p);
	return p.got;
}

/* ---- the fake resolver --------------------------------------------------------------- */

static atomic_int gai_calls;
static atomic_int gai_delay_ms;
static atomic_int gai_reenter; /* call names_self from inside the resolver */
static atomic_size_t gai_reenter_result;
static const struct policy *gai_policy;
static int (*libc_gai)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

static const struct {
	const char *name, *ip;
} fake_dns[] = {
    {"svc.test", "10.9.8.7"},
    {"alias.test", "10.9.8.7"},
    {"v6.test", "2001:db8::7"},
    {"other.test", "10.9.8.8"},
};

static int fake_gai(const char *node, const char *service, const struct addrinfo *hints,
		    struct addrinfo **res)
{
	struct addrinfo h;
	size_t len = node ? strlen(node) : 0;

	atomic_fetch_add(&gai_calls, 1);
	if (atomic_load(&gai_delay_ms) > 0) {
		struct timespec ts = {0, atomic_load(&gai_delay_ms) * 1000000L};

		nanosleep(&ts, NULL);
	}
	if (atomic_load(&gai_reenter)) {
		static const unsigned char a[4] = {10, 9, 8, 7};
		const char *out[4];

		atomic_store(&gai_reenter_result,
			     names_self(gai_policy, POLICY_CONNECT, AF_INET, a, out, 4));
	}
	if (len < 5 || strcmp(node + len - 5, ".test") != 0)
		return libc_gai(node, service, hints, res);
	for (size_t i = 0; i < sizeof(fake_dns) / sizeof(fake_dns[0]); i++) {
		if (strcmp(node, fake_dns[i].name) != 0)
			continue;
		memset(&h, 0, sizeof(h));
		h.ai_socktype = SOCK_STREAM;
		h.ai_flags = AI_NUMERICHOST;
		return libc_gai(fake_dns[i].ip, service, &h, res);
	}
	if (strncmp(node, "n", 1) == 0) { /* "nNN.test": the many-names test */
		memset(&h, 0, sizeof(h));
		h.ai_flags = AI_NUMERICHOST;
		return libc_gai("10.7.7.7", service, &h, res);
	}
	return EAI_NONAME;
}

static void setup(void)
{
	real_init();
	if (!libc_gai) /* once: the TSan main() runs setup() again in one process */
		libc_gai = real.getaddrinfo;
	real.getaddrinfo = fake_gai;
	atomic_store(&gai_calls, 0);
	atomic_store(&gai_delay_ms, 0);
	atomic_store(&gai_reenter, 0);
	names_reset();
}

static struct policy *policy_of(const char *text)
{
	struct policy_diags d = {0};
	struct policy *p = policy_new();

	cr_assert_not_null(p);
	cr_assert_eq(policy_add_text(p, "test", text, &d), 0, "policy %s: %s", text,
		     d.n ? d.v[0].msg : "");
	cr_assert_eq(policy_finish(p, &d), 0, "policy %s: %s", text, d.n ? d.v[0].msg : "");
	policy_diags_free(&d);
	return p;
}

static size_t self_of(const struct policy *p, const char *ip, const char **out, size_t max)
{
	unsigned char a[16];
	int fam = strchr(ip, ':') ? AF_INET6 : AF_INET;

	cr_assert_eq(inet_pton(fam, ip, a), 1, "bad test address %s", ip);
	return names_self(p, POLICY_CONNECT, fam, a, out, max);
}

TestSuite(names, .init = setup);

/* ---- remember / lookup --------------------------------------------------------------- */

Test(names, finds_what_was_remembered)
{
	cr_assert_eq(remember("api.internal", "10.1.2.3"), 1);
	cr_assert_str_eq(lookup("10.1.2.3"), "api.internal");
	cr_assert_eq(remember("v6.internal", "2001:db8::1"), 1);
	cr_assert_str_eq(lookup("2001:db8::1"), "v6.internal");
	cr_assert_str_eq(lookup("10.1.2.4"), "");
	cr_assert_str_eq(lookup("2001:db8::2"), "");
}

Test(names, normalizes_case_and_one_trailing_dot)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
	    {"API.Internal", "api.internal"},
	    {"api.internal.", "api.internal"},
	    {"MiXeD.CaSe.", "mixed.case"},
	    {"a..", "a."},
	    {"caf\xc3\xa9.example", "caf\xc3\xa9.example"}, /* non-ASCII kept as is */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		names_reset();
		cr_assert_eq(remember(cases[i].in, "10.0.0.1"), 1, "remember %s", cases[i].in);
		cr_assert_str_eq(lookup("10.0.0.1"), cases[i].want, "name %s", cases[i].in);
	}
}

Test(names, ignores_numeric_and_invalid_names)
{
	char long254[255], long253[254], long253dot[255];
	const char *cases[] = {
	    "10.0.0.1",     "127.1",     "0x7f000001", "2130706433", "::1",      "::ffff:10.0.0.1",
	    "fe80::1%eth0", "10.0.0.1.", "",           ".",          "bad name", "a\nb",
	    "tab\there",    "del\x7f",   long254,      NULL,
	};

	memset(long254, 'a', 254);
	long254[254] = '\0';
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		names_reset();
		cr_assert_eq(remember(cases[i], "10.0.0.1"), 0, "remember \"%s\"",
			     cases[i] ? cases[i] : "(null)");
		cr_assert_str_eq(lookup("10.0.0.1"), "", "name \"%s\"",
				 cases[i] ? cases[i] : "(null)");
	}

	/* The longest DNS name is fine, with or without its trailing dot. */
	memset(long253, 'b', 253);
	long253[253] = '\0';
	memcpy(long253dot, long253, 253);
	strcpy(long253dot + 253, ".");
	cr_assert_eq(remember(long253, "10.0.0.2"), 1);
	cr_assert_str_eq(lookup("10.0.0.2"), long253);
	cr_assert_eq(remember(long253dot, "10.0.0.3"), 1);
	cr_assert_str_eq(lookup("10.0.0.3"), long253);
}

Test(names, ignores_other_families)
{
	struct sockaddr_un un = {.sun_family = AF_UNIX, .sun_path = "/tmp/x"};
	unsigned char a[16] = {0};
	char out[NAMES_MAX_NAME];

	cr_assert_eq(names_remember("unix.internal", (struct sockaddr *)&un), 0);
	cr_assert_eq(names_remember("null.internal", NULL), 0);
	cr_assert_eq(names_lookup(AF_UNIX, a, out), 0);
	cr_assert_eq(names_lookup(AF_INET, NULL, out), 0);
}

Test(names, most_recent_wins_on_the_resolving_thread)
{
	remember("first.internal", "10.0.0.1");
	remember("second.internal", "10.0.0.1");
	cr_assert_str_eq(lookup("10.0.0.1"), "second.internal");
	remember("first.internal", "10.0.0.1");
	cr_assert_str_eq(lookup("10.0.0.1"), "first.internal");
}

Test(names, another_thread_never_guesses_between_names)
{
	struct pair p = {.name = "only.internal", .ip = "10.0.0.2"};
	char cand[NAMES_MAX_CANDIDATES][NAMES_MAX_NAME];
	unsigned char a[4] = {10, 0, 0, 1};
	int own = 1;

	remember("first.internal", "10.0.0.1");
	remember("second.internal", "10.0.0.1");
	/* Two names for one address: no single name for a thread that resolved none. */
	cr_assert_str_eq(lookup_elsewhere("10.0.0.1"), "");
	cr_assert_eq(names_candidates(AF_INET, a, cand, NAMES_MAX_CANDIDATES, &own), 1);
	cr_assert_eq(own, 1, "this thread's own resolution");
	/* One name: found from any thread. */
	on_thread(remember_thread, &p);
	cr_assert_str_eq(lookup_elsewhere("10.0.0.2"), "only.internal");
	cr_assert_str_eq(lookup("10.0.0.2"), "only.internal");
}

Test(names, finds_another_threads_resolution)
{
	struct pair p = {.name = "helper.internal", .ip = "10.0.0.9"};

	on_thread(remember_thread, &p);
	cr_assert_str_eq(lookup("10.0.0.9"), "helper.internal");
}

static void *candidates_thread(void *arg)
{
	size_t *n = arg;
	char cand[NAMES_MAX_CANDIDATES][NAMES_MAX_NAME];
	unsigned char a[4] = {10, 0, 0, 1};
	int own = 1;

	n[0] = names_candidates(AF_INET, a, cand, NAMES_MAX_CANDIDATES, &own);
	n[1] = (size_t)own;
	n[2] = n[0] >= 2 && strcmp(cand[0], "theirs.internal") == 0 &&
	       strcmp(cand[1], "mine.internal") == 0;
	return NULL;
}

Test(names, own_thread_beats_more_recent_other_thread)
{
	struct pair p = {.name = "theirs.internal", .ip = "10.0.0.1"};
	size_t got[3];

	remember("mine.internal", "10.0.0.1");
	on_thread(remember_thread, &p); /* later, on another thread */
	cr_assert_str_eq(lookup("10.0.0.1"), "mine.internal");
	/* A third thread, with no resolution of its own, sees both, most recent first. */
	on_thread(candidates_thread, got);
	cr_assert_eq(got[0], 2, "candidates: %zu", got[0]);
	cr_assert_eq(got[1], 0, "not its own");
	cr_assert(got[2], "expected theirs.internal, then mine.internal");
}

/* decide_connect_rule() for a connect to 10.0.0.1:443 under POLICY, from a new thread. */
struct decide {
	const char *policy;
	struct policy *p; /* R and PEER point into it: freed with decided() */
	const struct policy_rule *r;
	const char *peer;
	char why[600];
};

static void *decide_thread(void *arg)
{
	struct decide *d = arg;
	struct policy_diags diags = {0};
	struct policy *p = policy_new();
	struct policy_query q = {.dir = POLICY_CONNECT, .family = AF_INET, .port = 443};
	struct policy_match m;
	static char namebuf[NAMES_MAX_NAME];

	q.addr[0] = 10, q.addr[3] = 1;
	policy_add_text(p, "T", d->policy, &diags);
	cr_assert_eq(policy_finish(p, &diags), 0, "%s", d->policy);
	d->r = decide_connect_rule(p, &q, &m, &d->peer, namebuf, d->why, sizeof(d->why));
	d->p = p;
	return NULL;
}

static void decided(struct decide *d)
{
	policy_free(d->p);
	d->p = NULL;
}

Test(names, several_candidates_refuse_a_rule_that_would_guess)
{
	struct pair a = {.name = "api.internal", .ip = "10.0.0.1"};
	struct pair b = {.name = "evil.example", .ip = "10.0.0.1"};
	struct decide d = {.policy = "connect 10.0.0.0/8:443 tls"};

	on_thread(remember_thread, &a);
	on_thread(remember_thread, &b);
	on_thread(decide_thread, &d);
	cr_assert_null(d.r);
	cr_assert_str_eq(d.why, "several names were resolved to this address (evil.example, "
				"api.internal) and the rule (T:1) has no name=: the name to verify "
				"would be a guess; add name=NAME to the rule");

	/* name= settles it; plain and deny need no name; one name is no guess. */
	decided(&d);
	d = (struct decide){.policy = "connect 10.0.0.0/8:443 tls name=api.internal"};
	on_thread(decide_thread, &d);
	cr_assert_not_null(d.r, "%s", d.why);
	cr_assert_str_eq(d.peer, "api.internal");
	decided(&d);
	d = (struct decide){.policy = "connect 10.0.0.0/8:443 plain"};
	on_thread(decide_thread, &d);
	cr_assert(d.r != NULL && d.r->action == POLICY_PLAIN && d.why[0] == '\0', "%s", d.why);
	decided(&d);
	d = (struct decide){.policy = "connect evil.example:443 plain; connect 192.0.2.0/24 tls"};
	on_thread(decide_thread, &d);
	cr_assert(d.r == NULL && d.why[0] == '\0', "no rule would wrap it: left alone, got %s",
		  d.why);
	decided(&d);
	d = (struct decide){.policy = "connect evil.example:443 plain; connect *:443 tls"};
	on_thread(decide_thread, &d);
	cr_assert_null(d.r, "candidates matching different rules must not pick one");
	cr_assert(strstr(d.why, "match different rules"), "%s", d.why);
	decided(&d);
}

Test(names, one_candidate_is_the_name)
{
	struct pair a = {.name = "api.internal", .ip = "10.0.0.1"};
	struct decide d = {.policy = "connect 10.0.0.0/8:443 tls"};

	on_thread(remember_thread, &a);
	on_thread(decide_thread, &d);
	cr_assert_not_null(d.r, "%s", d.why);
	cr_assert_str_eq(d.peer, "api.internal");
	cr_assert_str_eq(d.why, "");
	decided(&d);
}

Test(names, ipv4_mapped_ipv6_is_ipv4)
{
	remember("four.internal", "10.1.2.3");
	cr_assert_str_eq(lookup("::ffff:10.1.2.3"), "four.internal");
	cr_assert_str_eq(lookup_elsewhere("::ffff:10.1.2.3"), "four.internal");

	remember("mapped.internal", "::ffff:10.4.5.6");
	cr_assert_str_eq(lookup("10.4.5.6"), "mapped.internal");
	cr_assert_str_eq(lookup_elsewhere("10.4.5.6"), "mapped.internal");

	/* Not mapped: an IPv4-compatible-looking IPv6 address is its own key. */
	cr_assert_str_eq(lookup("::10.1.2.3"), "");
}

Test(names, preserves_errno)
{
	const char *out[2];
	struct policy *p = policy_of("connect svc.test:443 tls");
	unsigned char a[4] = {10, 0, 0, 1};
	char name[NAMES_MAX_NAME];

	errno = 4321;
	remember("x.internal", "10.0.0.1");
	cr_assert_eq(errno, 4321);
	remember("10.0.0.1", "10.0.0.1");
	cr_assert_eq(errno, 4321);
	names_lookup(AF_INET, a, name);
	cr_assert_eq(errno, 4321);
	h_errno = 77;
	self_of(p, "10.9.8.7", out, 2);
	cr_assert_eq(errno, 4321);
	cr_assert_eq(h_errno, 77);
	names_reset();
	cr_assert_eq(errno, 4321);
	policy_free(p);
}

/* ---- whole answers ------------------------------------------------------------------- */

Test(names, remembers_every_address_of_an_addrinfo_list)
{
	struct sockaddr_storage s[3] = {sa_make("10.0.0.1"), sa_make("10.0.0.1"),
					sa_make("2001:db8::5")};
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	struct addrinfo ai[4];

	memset(ai, 0, sizeof(ai));
	for (int i = 0; i < 3; i++) {
		ai[i].ai_addr = (struct sockaddr *)&s[i];
		ai[i].ai_next = &ai[i + 1];
	}
	ai[3].ai_addr = (struct sockaddr *)&un;
	/* Duplicates (one per socket type) count once; AF_UNIX is skipped. */
	cr_assert_eq(names_remember_addrinfo("Multi.Internal.", NULL, ai), 2);
	cr_assert_str_eq(lookup("10.0.0.1"), "multi.internal");
	cr_assert_str_eq(lookup("2001:db8::5"), "multi.internal");
	cr_assert_eq(names_remember_addrinfo("10.0.0.1", NULL, ai), 0);
	cr_assert_eq(names_remember_addrinfo("x.internal", NULL, NULL), 0);
}

Test(names, remembers_every_address_of_a_hostent)
{
	struct in_addr a1, a2;
	struct in6_addr a6;
	char *list4[] = {(char *)&a1, (char *)&a2, NULL};
	char *list6[] = {(char *)&a6, NULL};
	struct hostent he4 = {
	    .h_name = "canon.internal", .h_addrtype = AF_INET, .h_length = 4, .h_addr_list = list4};
	struct hostent he6 = {.h_addrtype = AF_INET6, .h_length = 16, .h_addr_list = list6};
	struct hostent bad = {.h_addrtype = AF_INET, .h_length = 16, .h_addr_list = list4};

	inet_pton(AF_INET, "10.0.0.1", &a1);
	inet_pton(AF_INET, "10.0.0.2", &a2);
	inet_pton(AF_INET6, "2001:db8::9", &a6);
	/* The name the program asked for is recorded. */
	cr_assert_eq(names_remember_hostent("alias.internal", NULL, &he4), 2);
	cr_assert_str_eq(lookup("10.0.0.1"), "alias.internal");
	cr_assert_str_eq(lookup("10.0.0.2"), "alias.internal");
	cr_assert_eq(names_remember_hostent("six.internal", NULL, &he6), 1);
	cr_assert_str_eq(lookup("2001:db8::9"), "six.internal");
	cr_assert_eq(names_remember_hostent("bad.internal", NULL, &bad), 0);
	cr_assert_eq(names_remember_hostent("null.internal", NULL, NULL), 0);
	/* A relative name the resolver completed: both names kept. */
	he4.h_name = "svc.default.svc.cluster.local";
	cr_assert_eq(names_remember_hostent("svc", he4.h_name, &he4), 2);
	cr_assert_str_eq(lookup("10.0.0.2"), "svc\x01"
					     "default.svc.cluster.local");
}

/*
 * A relative name the resolver completed with a search domain is kept with
 * the completion (names_split() gives both); an alias's target, or any
 * answer for an absolute name, is not a completion and changes nothing.
 */
Test(names, keeps_the_search_domain_completion_of_a_relative_name)
{
	struct sockaddr_storage s = sa_make("10.0.0.7"), t = sa_make("10.0.0.8");
	struct addrinfo ai = {.ai_addr = (struct sockaddr *)&s};
	struct addrinfo ai2 = {.ai_addr = (struct sockaddr *)&t};
	char name[NAMES_MAX_NAME], fqdn[NAMES_MAX_NAME];

	cr_assert_eq(names_remember_addrinfo("Redis", "redis.Default.svc.cluster.local.", &ai), 1);
	names_split(lookup("10.0.0.7"), name, fqdn);
	cr_expect_str_eq(name, "redis");
	cr_expect_str_eq(fqdn, "redis.default.svc.cluster.local");
	cr_assert_eq(
	    names_remember_addrinfo("redis.default", "redis.default.svc.cluster.local", &ai), 1);
	names_split(lookup("10.0.0.7"), name, fqdn);
	cr_expect_str_eq(name, "redis.default");
	cr_expect_str_eq(fqdn, "redis.default.svc.cluster.local");

	/* Not completions: an alias's target, a longer name, an absolute name, the same name. */
	static const char *const not_completions[][2] = {
	    {"db", "mydb.rds.example.com"},
	    {"db", "dbx.example.com"},
	    {"db.", "db.example.com"},
	    {"db.example.com", "db.example.com."},
	};
	for (size_t i = 0; i < sizeof(not_completions) / sizeof(not_completions[0]); i++) {
		names_reset();
		cr_assert_eq(
		    names_remember_addrinfo(not_completions[i][0], not_completions[i][1], &ai2), 1);
		names_split(lookup("10.0.0.8"), name, fqdn);
		cr_expect_eq(fqdn[0], '\0', "%s answered as %s: no completion, got %s",
			     not_completions[i][0], not_completions[i][1], fqdn);
		cr_expect_eq(strchr(lookup("10.0.0.8"), NAMES_SEARCH_MARK), NULL);
	}
}

/* ---- bounds -------------------------------------------------------------------------- */

Test(names, tables_stay_bounded_and_keep_recent_entries)
{
	enum { N = 100000 };
	struct names_stats st;
	char ip[INET_ADDRSTRLEN], name[64];

	for (uint32_t i = 0; i < N; i++) {
		v4(0x0a000000u + i, ip);
		snprintf(name, sizeof(name), "h%u.internal", i);
		cr_assert_eq(remember(name, ip), 1);
	}
	names_stats(&st);
	cr_assert_eq(st.thread_cap, NAMES_THREAD_CAP);
	cr_assert_eq(st.global_cap, NAMES_GLOBAL_CAP);
	cr_assert_leq(st.thread_used, st.thread_cap);
	cr_assert_leq(st.global_used, st.global_cap);
	cr_assert_geq(st.global_used, st.global_cap * 9 / 10, "global table used %zu",
		      st.global_used);

	/* This thread's most recent ones come from its own table ... */
	for (uint32_t i = N - NAMES_THREAD_CAP; i < N; i++) {
		v4(0x0a000000u + i, ip);
		snprintf(name, sizeof(name), "h%u.internal", i);
		cr_assert_str_eq(lookup(ip), name, "address %s", ip);
	}
	/* ... and the last few hundred from the global one, for any thread. */
	for (uint32_t i = N - 256; i < N; i++) {
		v4(0x0a000000u + i, ip);
		snprintf(name, sizeof(name), "h%u.internal", i);
		cr_assert_str_eq(lookup_elsewhere(ip), name, "address %s", ip);
	}
	/* The oldest are gone. */
	cr_assert_str_eq(lookup_elsewhere("10.0.0.0"), "");
	cr_assert_str_eq(lookup("10.0.0.0"), "");
}

Test(names, long_names_come_back_whole)
{
	char name[40][254], ip[INET_ADDRSTRLEN];
	struct names_stats st;

	/* Longest names push older ones out of this thread's table, never garble them. */
	for (int i = 0; i < 40; i++) {
		memset(name[i], 'a' + i % 26, 253);
		name[i][0] = (char)('0' + i / 26);
		name[i][253] = '\0';
		v4(0x0a000000u + (uint32_t)i, ip);
		cr_assert_eq(remember(name[i], ip), 1);
	}
	names_stats(&st);
	cr_assert_leq(st.thread_used, st.thread_cap);
	cr_assert_geq(st.thread_used, 8, "thread table keeps %zu long names", st.thread_used);
	for (int i = 0; i < 40; i++) {
		v4(0x0a000000u + (uint32_t)i, ip);
		cr_assert_str_eq(lookup(ip), name[i], "address %s", ip);
	}
}

Test(names, reset_forgets)
{
	struct names_stats st;

	remember("x.internal", "10.0.0.1");
	names_reset();
	cr_assert_str_eq(lookup("10.0.0.1"), "");
	names_stats(&st);
	cr_assert_eq(st.thread_used, 0);
	cr_assert_eq(st.global_used, 0);
}

/* ---- concurrency --------------------------------------------------------------------- */

/*
 * The run_*() checks return the number of failures and use no Criterion
 * assertion, so that a ThreadSanitizer build can run them without Criterion's
 * runner, which cannot start under TSan (Snaipe/Criterion#274): see main() at
 * the end of this file.
 */

enum { STRESS_THREADS = 8, STRESS_OPS = 200000, STRESS_SHARED = 64 };

static atomic_int stress_bad;

static void *stress_thread(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	struct sockaddr_in sa = {.sin_family = AF_INET};
	char name[64], out[NAMES_MAX_NAME], cand[NAMES_MAX_CANDIDATES][NAMES_MAX_NAME];
	unsigned char a[4];
	unsigned tid, thost;
	size_t n;
	int own;

	for (unsigned i = 0; i < STRESS_OPS; i++) {
		/* Half the traffic on addresses every thread shares, half on its own. */
		uint32_t host = (i & 1) ? 0x0a800000u + (i % STRESS_SHARED)
					: 0x0a000000u + (id << 16) + (i % 5000);

		sa.sin_addr.s_addr = htonl(host);
		memcpy(a, &sa.sin_addr, 4);
		if (i % 3 != 2) {
			snprintf(name, sizeof(name), "t%u-%u.internal", id, host);
			names_remember(name, (struct sockaddr *)&sa);
			continue;
		}
		/* Whatever thread wrote them, every candidate is whole and for this address. */
		n = names_candidates(AF_INET, a, cand, NAMES_MAX_CANDIDATES, &own);
		for (size_t k = 0; k < n; k++) {
			if (sscanf(cand[k], "t%u-%u.internal", &tid, &thost) != 2 ||
			    thost != host || tid >= STRESS_THREADS)
				atomic_fetch_add(&stress_bad, 1);
		}
		if (!names_lookup(AF_INET, a, out))
			continue;
		if (sscanf(out, "t%u-%u.internal", &tid, &thost) != 2 || thost != host ||
		    tid >= STRESS_THREADS)
			atomic_fetch_add(&stress_bad, 1);
	}
	return NULL;
}

static int run_stress(void)
{
	pthread_t t[STRESS_THREADS];
	struct names_stats st;

	for (uintptr_t i = 0; i < STRESS_THREADS; i++) {
		if (pthread_create(&t[i], NULL, stress_thread, (void *)i) != 0)
			return 1;
	}
	for (int i = 0; i < STRESS_THREADS; i++)
		pthread_join(t[i], NULL);
	names_stats(&st);
	return atomic_load(&stress_bad) + (st.global_used > st.global_cap);
}

Test(names, concurrent_remember_and_lookup, .timeout = 300)
{
	cr_assert_eq(run_stress(), 0, "%d torn or wrong names", stress_bad);
}

static atomic_int fork_stop;

static void *fork_hammer(void *arg)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x0a000001)};
	unsigned char a[4] = {10, 0, 0, 2};
	char out[NAMES_MAX_NAME];

	(void)arg;
	while (!atomic_load(&fork_stop)) {
		names_remember("hammer.internal", (struct sockaddr *)&sa);
		names_lookup(AF_INET, a, out);
	}
	return NULL;
}

static int run_fork(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x0a000001)};
	unsigned char a[4] = {10, 0, 0, 1};
	int failed = 0;
	pthread_t t;

	names_remember("hammer.internal", (struct sockaddr *)&sa); /* before the first fork */
	if (pthread_create(&t, NULL, fork_hammer, NULL) != 0)
		return 1;
	for (int i = 0; i < 50; i++) {
		char out[NAMES_MAX_NAME];
		int status;
		pid_t pid = fork();

		if (pid == -1) {
			failed++;
			break;
		}
		if (pid == 0) {
			/* Would hang on a lock the other thread held at fork(). */
			sa.sin_addr.s_addr = htonl(0x0a000003);
			names_remember("child.internal", (struct sockaddr *)&sa);
			if (!names_lookup(AF_INET, a, out) || strcmp(out, "hammer.internal") != 0)
				_exit(1);
			_exit(0);
		}
		if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0)
			failed++;
	}
	atomic_store(&fork_stop, 1);
	pthread_join(t, NULL);
	return failed;
}

Test(names, child_of_a_busy_parent_can_use_the_tables, .timeout = 60)
{
	cr_assert_eq(run_fork(), 0);
}

/* ---- the shim's own resolution ------------------------------------------------------- */

Test(names, self_finds_localhost_for_both_loopbacks)
{
	struct policy *p = policy_of("connect localhost:1 tls");
	const char *out[4];

	cr_assert_eq(self_of(p, "127.0.0.1", out, 4), 1);
	cr_assert_str_eq(out[0], "localhost");
	cr_assert_eq(self_of(p, "::1", out, 4), 1);
	cr_assert_str_eq(out[0], "localhost");
	cr_assert_eq(self_of(p, "::ffff:127.0.0.1", out, 4), 1);
	cr_assert_eq(self_of(p, "10.0.0.1", out, 4), 0);
	cr_assert_eq(atomic_load(&gai_calls), 1, "resolved %d times", gai_calls);
	policy_free(p);
}

Test(names, self_caches_until_reset)
{
	struct policy *p = policy_of("connect svc.test:443 tls");
	const char *out[4];

	for (int i = 0; i < 10; i++) {
		cr_assert_eq(self_of(p, "10.9.8.7", out, 4), 1);
		cr_assert_str_eq(out[0], "svc.test");
		cr_assert_eq(self_of(p, "10.9.8.8", out, 4), 0);
	}
	cr_assert_eq(atomic_load(&gai_calls), 1, "resolved %d times", gai_calls);
	names_reset();
	cr_assert_eq(self_of(p, "10.9.8.7", out, 4), 1);
	cr_assert_eq(atomic_load(&gai_calls), 2, "resolved %d times", gai_calls);
	policy_free(p);
}

Test(names, self_gives_every_name_of_an_address_in_rule_order)
{
	struct policy *p = policy_of("connect svc.test:443 tls; connect other.test:443 tls;"
				     "connect alias.test:443 tls; connect v6.test:443 tls;"
				     "connect gone.test:443 tls; connect *.test:443 plain");
	const char *out[4];

	cr_assert_eq(self_of(p, "10.9.8.7", out, 4), 2);
	cr_assert_str_eq(out[0], "svc.test");
	cr_assert_str_eq(out[1], "alias.test");
	cr_assert_eq(self_of(p, "10.9.8.7", out, 1), 1, "MAX is respected");
	cr_assert_eq(self_of(p, "::ffff:10.9.8.8", out, 4), 1);
	cr_assert_str_eq(out[0], "other.test");
	cr_assert_eq(self_of(p, "2001:db8::7", out, 4), 1);
	cr_assert_str_eq(out[0], "v6.test");
	/* Only exact names are resolved, each once, and a failed one is cached too. */
	cr_assert_eq(atomic_load(&gai_calls), 5, "resolved %d times", gai_calls);
	policy_free(p);
}

Test(names, self_resolves_nothing_without_exact_names)
{
	struct policy *p = policy_of("connect *.test:443 tls; connect 10.0.0.0/8:1 tls;"
				     "accept svc.test:443 tls cert=/dev/null key=/dev/null");
	const char *out[4];

	cr_assert_eq(self_of(p, "10.9.8.7", out, 4), 0);
	cr_assert_eq(atomic_load(&gai_calls), 0);
	policy_free(p);
}

Test(names, self_resolves_at_most_64_names)
{
	char text[70 * 40];
	size_t off = 0;
	struct policy *p;
	const char *out[4];

	for (int i = 0; i < 70; i++)
		off +=
		    (size_t)snprintf(text + off, sizeof(text) - off, "connect n%d.test:1 tls;", i);
	p = policy_of(text);
	cr_assert_eq(self_of(p, "10.7.7.7", out, 4), 4);
	cr_assert_eq(atomic_load(&gai_calls), NAMES_SELF_MAX_NAMES, "resolved %d times", gai_calls);
	policy_free(p);
}

static struct policy *race_policy;
static atomic_int race_wrong;

static void *self_race_thread(void *arg)
{
	static const unsigned char a[4] = {10, 9, 8, 7};
	const char *out[2];

	(void)arg;
	if (names_self(race_policy, POLICY_CONNECT, AF_INET, a, out, 2) != 1 ||
	    strcmp(out[0], "svc.test") != 0)
		atomic_fetch_add(&race_wrong, 1);
	return NULL;
}

/* Eight threads ask at once while the (slow) resolution runs; it must run once. */
static int run_self_race(void)
{
	struct policy_diags d = {0};
	pthread_t t[8];
	int failed;

	race_policy = policy_new();
	if (!race_policy || policy_add_text(race_policy, "test", "connect svc.test:443 tls", &d) ||
	    policy_finish(race_policy, &d))
		return 1;
	atomic_store(&gai_delay_ms, 200);
	for (int i = 0; i < 8; i++) {
		if (pthread_create(&t[i], NULL, self_race_thread, NULL) != 0)
			return 1;
	}
	for (int i = 0; i < 8; i++)
		pthread_join(t[i], NULL);
	failed = atomic_load(&race_wrong) + (atomic_load(&gai_calls) != 1);
	policy_free(race_policy);
	policy_diags_free(&d);
	return failed;
}

Test(names, self_concurrent_first_callers_resolve_once, .timeout = 60)
{
	cr_assert_eq(run_self_race(), 0, "%d threads got no answer; resolved %d times", race_wrong,
		     gai_calls);
}

Test(names, self_is_not_reentered_from_its_own_resolution, .timeout = 30)
{
	struct policy *p = policy_of("connect svc.test:443 tls");
	const char *out[2];

	gai_policy = p;
	atomic_store(&gai_reenter_result, 99);
	atomic_store(&gai_reenter, 1);
	cr_assert_eq(self_of(p, "10.9.8.7", out, 2), 1);
	cr_assert_eq(atomic_load(&gai_reenter_result), 0);
	policy_free(p);
}

Test(names, self_refreshes_for_another_policy)
{
	struct policy *p1 = policy_of("connect svc.test:443 tls");
	struct policy *p2 = policy_of("connect other.test:443 tls");
	const char *out[2];

	cr_assert_eq(self_of(p1, "10.9.8.7", out, 2), 1);
	cr_assert_eq(self_of(p2, "10.9.8.7", out, 2), 0);
	cr_assert_eq(self_of(p2, "10.9.8.8", out, 2), 1);
	cr_assert_str_eq(out[0], "other.test");
	cr_assert_eq(atomic_load(&gai_calls), 2);
	policy_free(p1);
	policy_free(p2);
}

/* ---- ThreadSanitizer ----------------------------------------------------------------- */

#if defined(__SANITIZE_THREAD__)
/*
 * Criterion's runner cannot start under TSan (Snaipe/Criterion#274), so a TSan
 * build runs the concurrency checks itself and reports like Criterion does,
 * for scripts/run-tests.
 */
int main(void)
{
	static const struct {
		const char *name;
		int (*fn)(void);
	} checks[] = {
	    {"concurrent_remember_and_lookup", run_stress},
	    {"child_of_a_busy_parent_can_use_the_tables", run_fork},
	    {"self_concurrent_first_callers_resolve_once", run_self_race},
	};
	int n = (int)(sizeof(checks) / sizeof(checks[0])), failed = 0;

	for (int i = 0; i < n; i++) {
		int bad;

		setup();
		bad = checks[i].fn();
		printf("[%s] names::%s\n", bad ? "FAIL" : "PASS", checks[i].name);
		failed += bad != 0;
	}
	printf("[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Crashing: 0 \n", n,
	       n - failed, failed);
	return failed != 0;
}
#endif
