/*
 * test_decide.c - unit tests of shim/decide.c: the rule decision behind
 * connect() and accept(), against real sockets and the names table, with no
 * hook loaded. Nothing is connected: a decision makes no connection.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "decide.h"
#include "names.h"
#include "real.h"
#include "test_policy_util.h"

/* ep_text()'s buffer for the expectations below. */
static char ep_buf[EP_TEXT_MAX];

static struct sockaddr_in v4(const char *a, uint16_t port)
{
	struct sockaddr_in s = {.sin_family = AF_INET, .sin_port = htons(port)};

	cr_assert_eq(inet_pton(AF_INET, a, &s.sin_addr), 1, "%s", a);
	return s;
}

static struct sockaddr_in6 v6(const char *a, uint16_t port)
{
	struct sockaddr_in6 s = {.sin6_family = AF_INET6, .sin6_port = htons(port)};

	cr_assert_eq(inet_pton(AF_INET6, a, &s.sin6_addr), 1, "%s", a);
	return s;
}

/* Decides connecting a new socket of FAMILY/TYPE to SA under POLICY. */
static enum decide_outcome connect_under(const char *policy, int family, int type, const void *sa,
					 socklen_t len, struct decision *d)
{
	struct policy *p = tp_must(policy);
	int fd = socket(family, type, 0);
	enum decide_outcome o;

	real_init();
	cr_assert(fd >= 0);
	o = decide_connect(p, fd, sa, len, d);
	close(fd);
	/* D's rule points into P: kept for the test's life (each test is its own process). */
	return o;
}

static const char *outcome_str(enum decide_outcome o)
{
	switch (o) {
	case DECIDE_PASS:
		return "pass";
	case DECIDE_DENY:
		return "deny";
	case DECIDE_REFUSE:
		return "refuse";
	case DECIDE_WRAP:
		return "wrap";
	default:
		return "?";
	}
}

/* ---- connect: what is never the policy's ---- */

Test(decide_connect, leaves_what_the_kernel_would_not_try_undecided)
{
	const char *policy = "connect * deny";
	struct sockaddr_in a = v4("127.0.0.1", 443);
	struct sockaddr_in6 b = v6("::1", 443);
	struct decision d;

	/* UDP, a family other than the socket's, IPv6 shorter than 24 bytes, IPv4 short. */
	cr_expect_eq(connect_under(policy, AF_INET, SOCK_DGRAM, &a, sizeof(a), &d), DECIDE_PASS,
		     "UDP");
	cr_expect_not(d.matched);
	cr_expect_eq(connect_under(policy, AF_INET6, SOCK_STREAM, &a, sizeof(a), &d), DECIDE_PASS,
		     "IPv4 address on an IPv6 socket");
	cr_expect_not(d.matched);
	cr_expect_eq(connect_under(policy, AF_INET6, SOCK_STREAM, &b, 23, &d), DECIDE_PASS,
		     "IPv6 address of 23 bytes");
	cr_expect_not(d.matched);
	cr_expect_eq(connect_under(policy, AF_INET, SOCK_STREAM, &a, sizeof(a) - 1, &d),
		     DECIDE_PASS, "IPv4 address of 15 bytes");
	cr_expect_not(d.matched);
}

/* ---- connect: the outcomes, table-driven ---- */

Test(decide_connect, outcomes_by_rule)
{
	static const struct {
		const char *policy, *addr;
		int family;
		enum decide_outcome want;
		int has_rule;
	} cases[] = {
	    {"connect 10.0.0.0/8 deny", "127.0.0.1", AF_INET, DECIDE_PASS, 0},
	    {"connect 127.0.0.1:80 tls", "127.0.0.1", AF_INET, DECIDE_PASS, 0},
	    {"connect 127.0.0.1:443 plain", "127.0.0.1", AF_INET, DECIDE_PASS, 1},
	    {"connect 127.0.0.1:443 deny", "127.0.0.1", AF_INET, DECIDE_DENY, 1},
	    {"connect 127.0.0.1:443 tls", "127.0.0.1", AF_INET, DECIDE_WRAP, 1},
	    {"connect 127.0.0.0/8 tls\nconnect 127.0.0.1 deny", "127.0.0.1", AF_INET, DECIDE_DENY,
	     1},
	    {"connect [::1]:443 deny", "::1", AF_INET6, DECIDE_DENY, 1},
	    {"connect [::1]:443 tls", "::1", AF_INET6, DECIDE_WRAP, 1},
	    {"connect [2001:db8::]/32 tls", "::1", AF_INET6, DECIDE_PASS, 0},
	    {"connect 127.0.0.1:443 deny", "::1", AF_INET6, DECIDE_PASS, 0},
	    /* IPv4-mapped IPv6 is decided as the IPv4 address (the kernel connects to it). */
	    {"connect 127.0.0.1:443 deny", "::ffff:127.0.0.1", AF_INET6, DECIDE_DENY, 1},
	    {"connect 127.0.0.0/8 tls", "::ffff:127.0.0.9", AF_INET6, DECIDE_WRAP, 1},
	    {"connect [::ffff:127.0.0.1]:443 tls", "127.0.0.1", AF_INET, DECIDE_WRAP, 1},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_in a;
		struct sockaddr_in6 b;
		struct decision d;
		enum decide_outcome o;

		if (cases[i].family == AF_INET) {
			a = v4(cases[i].addr, 443);
			o = connect_under(cases[i].policy, AF_INET, SOCK_STREAM, &a, sizeof(a), &d);
		} else {
			b = v6(cases[i].addr, 443);
			o = connect_under(cases[i].policy, AF_INET6, SOCK_STREAM, &b, sizeof(b),
					  &d);
		}
		cr_expect_eq(o, cases[i].want, "`%s` for %s:443: %s, expected %s", cases[i].policy,
			     cases[i].addr, outcome_str(o), outcome_str(cases[i].want));
		cr_expect_eq(d.outcome, o);
		cr_expect(d.matched, "`%s` for %s: not looked up", cases[i].policy, cases[i].addr);
		cr_expect_eq(d.rule != NULL, cases[i].has_rule, "`%s` for %s: rule %p",
			     cases[i].policy, cases[i].addr, (void *)d.rule);
		cr_expect_eq(d.ep.port, 443);
	}
}

Test(decide_connect, v4_mapped_destination_is_decided_and_described_as_ipv4)
{
	struct sockaddr_in6 b = v6("::ffff:127.0.0.1", 8443);
	struct decision d;

	cr_assert_eq(
	    connect_under("connect 127.0.0.1:8443 tls", AF_INET6, SOCK_STREAM, &b, sizeof(b), &d),
	    DECIDE_WRAP);
	cr_expect_eq(d.ep.family, AF_INET);
	cr_expect_str_eq(ep_text(&d.ep, ep_buf), "127.0.0.1");
	cr_expect_null(d.peer, "an address rule with no resolved name verifies the address");
}

/* ---- connect: the name that is verified ---- */

Test(decide_connect, the_name_this_thread_resolved_is_the_peer)
{
	struct sockaddr_in a = v4("127.0.0.7", 443);
	struct decision d;

	cr_assert_eq(names_remember("API.Example.test.", (struct sockaddr *)&a), 1);
	cr_assert_eq(
	    connect_under("connect 127.0.0.7 tls", AF_INET, SOCK_STREAM, &a, sizeof(a), &d),
	    DECIDE_WRAP);
	cr_expect_str_eq(d.peer, "api.example.test");
	/* An exact-name rule matches by that name. */
	cr_assert_eq(connect_under("connect api.example.test:443 deny", AF_INET, SOCK_STREAM, &a,
				   sizeof(a), &d),
		     DECIDE_DENY);
}

/*
 * "redis", which the resolver completed with a search domain as
 * "redis.default.svc.cluster.local": rules for the complete name and its
 * suffixes match, and the name they verify is the complete one; other rules
 * verify the name as the program wrote it.
 */
Test(decide_connect, a_name_completed_by_a_search_domain_matches_rules_for_the_whole_name)
{
	struct sockaddr_in a = v4("127.0.0.9", 6379);
	struct addrinfo ai = {.ai_addr = (struct sockaddr *)&a};
	struct decision d;

	cr_assert_eq(names_remember_addrinfo("redis", "redis.default.svc.cluster.local", &ai), 1);
	cr_assert_eq(connect_under("connect *.svc.cluster.local:* tls", AF_INET, SOCK_STREAM, &a,
				   sizeof(a), &d),
		     DECIDE_WRAP);
	cr_expect_str_eq(d.peer, "redis.default.svc.cluster.local");
	cr_assert_eq(connect_under("connect redis.default.svc.cluster.local:6379 deny", AF_INET,
				   SOCK_STREAM, &a, sizeof(a), &d),
		     DECIDE_DENY);
	/* The name as written still matches, and is the one verified by other rules. */
	cr_assert_eq(
	    connect_under("connect redis:6379 deny", AF_INET, SOCK_STREAM, &a, sizeof(a), &d),
	    DECIDE_DENY);
	cr_assert_eq(
	    connect_under("connect 127.0.0.9 tls", AF_INET, SOCK_STREAM, &a, sizeof(a), &d),
	    DECIDE_WRAP);
	cr_expect_str_eq(d.peer, "redis");
	/* The most specific rule still wins: an exact name over the suffix. */
	cr_assert_eq(connect_under("connect *.cluster.local:* tls; connect redis:* plain", AF_INET,
				   SOCK_STREAM, &a, sizeof(a), &d),
		     DECIDE_PASS);
}

static void *remember(void *name)
{
	struct sockaddr_in a = v4("127.0.0.8", 443);

	names_remember(name, (struct sockaddr *)&a);
	return NULL;
}

/* Two other threads resolved two names to the address; this one resolved none. */
static void two_names_elsewhere(void)
{
	pthread_t t;

	cr_assert_eq(pthread_create(&t, NULL, remember, "one.test"), 0);
	pthread_join(t, NULL);
	cr_assert_eq(pthread_create(&t, NULL, remember, "two.test"), 0);
	pthread_join(t, NULL);
}

Test(decide_connect, refuses_to_guess_between_names)
{
	struct sockaddr_in a = v4("127.0.0.8", 443);
	struct decision d;

	two_names_elsewhere();
	cr_assert_eq(
	    connect_under("connect 127.0.0.8 tls", AF_INET, SOCK_STREAM, &a, sizeof(a), &d),
	    DECIDE_REFUSE);
	cr_expect_null(d.rule);
	cr_expect(strstr(d.why, "one.test") && strstr(d.why, "two.test") && strstr(d.why, "name="),
		  "why: %s", d.why);
}

Test(decide_connect, several_names_are_no_guess_when_the_rule_names_one)
{
	struct sockaddr_in a = v4("127.0.0.8", 443);
	struct decision d;

	two_names_elsewhere();
	cr_assert_eq(connect_under("connect 127.0.0.8 tls name=svc.test", AF_INET, SOCK_STREAM, &a,
				   sizeof(a), &d),
		     DECIDE_WRAP, "why: %s", d.why);
	cr_expect_str_eq(d.peer, "svc.test");
	/* Nor when every candidate is left alone or denied alike. */
	cr_expect_eq(
	    connect_under("connect 127.0.0.8 deny", AF_INET, SOCK_STREAM, &a, sizeof(a), &d),
	    DECIDE_DENY);
	cr_expect_eq(
	    connect_under("connect 127.0.0.9 tls", AF_INET, SOCK_STREAM, &a, sizeof(a), &d),
	    DECIDE_PASS);
}

/* ---- accept ---- */

static uint16_t port_of(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	cr_assert_eq(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
	return ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
					     : ((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* Connects to listener LFD over loopback of FAMILY and accepts; returns the accepted fd. */
static int accept_one(int lfd, int family)
{
	struct sockaddr_in a = v4("127.0.0.1", port_of(lfd));
	struct sockaddr_in6 b = v6("::1", port_of(lfd));
	int c = socket(family, SOCK_STREAM, 0), fd;

	cr_assert(c >= 0);
	if (family == AF_INET)
		cr_assert_eq(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
	else
		cr_assert_eq(connect(c, (struct sockaddr *)&b, sizeof(b)), 0);
	fd = accept(lfd, NULL, NULL);
	cr_assert(fd >= 0);
	close(c);
	return fd;
}

static int listener(int family, const void *sa, socklen_t len)
{
	int l = socket(family, SOCK_STREAM, 0);

	cr_assert(l >= 0);
	cr_assert_eq(bind(l, sa, len), 0);
	cr_assert_eq(listen(l, 4), 0);
	return l;
}

/* Decides FD, accepted on LFD, under "DIR HOST:PORT REST" with LFD's port. */
static enum decide_outcome accept_under(const char *dir, const char *host, const char *rest,
					int lfd, int fd, struct decision *d)
{
	char text[256];

	real_init();
	snprintf(text, sizeof(text), "%s %s:%u %s", dir, host, port_of(lfd), rest);
	return decide_accept(tp_must(text), lfd, fd, d);
}

Test(decide_accept, leaves_a_unix_connection_undecided)
{
	int sv[2];
	struct decision d;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	real_init();
	cr_expect_eq(decide_accept(tp_must("accept * deny"), sv[0], sv[1], &d), DECIDE_PASS);
	cr_expect_not(d.matched);
	cr_expect_null(d.rule);
}

Test(decide_accept, outcomes_by_rule)
{
	static const struct {
		const char *dir, *host, *rest;
		enum decide_outcome want;
	} cases[] = {
	    {"accept", "127.0.0.2", "deny", DECIDE_PASS},
	    {"accept", "127.0.0.1", "plain", DECIDE_PASS},
	    {"accept", "127.0.0.1", "deny", DECIDE_DENY},
	    {"accept", "127.0.0.1", "tls cert=/dev/null key=/dev/null", DECIDE_WRAP},
	    {"accept", "127.0.0.1", "auto cert=/dev/null key=/dev/null", DECIDE_WRAP},
	    {"connect", "127.0.0.1", "deny", DECIDE_PASS},
	};
	struct sockaddr_in a = v4("127.0.0.1", 0);
	int l = listener(AF_INET, &a, sizeof(a)), fd = accept_one(l, AF_INET);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct decision d;
		enum decide_outcome o =
		    accept_under(cases[i].dir, cases[i].host, cases[i].rest, l, fd, &d);

		cr_expect_eq(o, cases[i].want, "`%s %s %s`: %s, expected %s", cases[i].dir,
			     cases[i].host, cases[i].rest, outcome_str(o),
			     outcome_str(cases[i].want));
		cr_expect(d.matched);
		cr_expect_eq(d.nodelay, 0, "TCP_NODELAY %d", d.nodelay);
	}
	close(fd);
	close(l);
}

Test(decide_accept, a_wildcard_listener_is_decided_by_the_arrival_address)
{
	struct sockaddr_in a = v4("0.0.0.0", 0);
	int l = listener(AF_INET, &a, sizeof(a)), fd = accept_one(l, AF_INET), on = 1;
	struct decision d;

	cr_assert_eq(setsockopt(fd, IPPROTO_TCP, 1 /* TCP_NODELAY */, &on, sizeof(on)), 0);
	cr_expect_eq(accept_under("accept", "127.0.0.1", "deny", l, fd, &d), DECIDE_DENY);
	cr_expect_str_eq(ep_text(&d.ep, ep_buf), "127.0.0.1");
	cr_expect_eq(d.nodelay, 1);
	close(fd);
	close(l);
}

Test(decide_accept, ipv6_and_v4_mapped_arrivals)
{
	struct sockaddr_in6 b = v6("::1", 0), any = v6("::", 0);
	int l = listener(AF_INET6, &b, sizeof(b)), fd = accept_one(l, AF_INET6);
	struct decision d;

	cr_expect_eq(accept_under("accept", "[::1]", "deny", l, fd, &d), DECIDE_DENY);
	cr_expect_eq(d.ep.family, AF_INET6);
	cr_expect_eq(accept_under("accept", "127.0.0.1", "deny", l, fd, &d), DECIDE_PASS);
	close(fd);
	close(l);
	/* A dual-stack wildcard listener reached over IPv4: ::ffff:127.0.0.1 is 127.0.0.1. */
	l = listener(AF_INET6, &any, sizeof(any));
	fd = accept_one(l, AF_INET);
	cr_expect_eq(accept_under("accept", "127.0.0.1", "deny", l, fd, &d), DECIDE_DENY);
	cr_expect_eq(d.ep.family, AF_INET);
	close(fd);
	close(l);
}
