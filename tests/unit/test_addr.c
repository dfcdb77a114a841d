/*
 * test_addr.c - unit tests of shim/addr.c: the socket addresses a connection
 * is decided on. Every length and family the kernel would refuse is left to
 * the kernel (so the program gets the kernel's own EINVAL or EAFNOSUPPORT), an
 * address the shim cannot read is EFAULT rather than a crash, IPv4-mapped IPv6
 * is decided as the IPv4 address it is. Negative cases first.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "addr.h"
#include "real.h"

/* ep_text()'s buffer for the expectations below. */
static char ep_buf[EP_TEXT_MAX];

static void setup(void)
{
	real_init();
}

TestSuite(ep_from_sockaddr, .init = setup);
TestSuite(ep_describe, .init = setup);
TestSuite(sockaddr_copy, .init = setup);
TestSuite(user_readable, .init = setup);
TestSuite(tcp_destination, .init = setup);

static struct sockaddr_in sin4(const char *ip, uint16_t port)
{
	struct sockaddr_in s = {.sin_family = AF_INET, .sin_port = htons(port)};

	cr_assert_eq(inet_pton(AF_INET, ip, &s.sin_addr), 1, "bad test address %s", ip);
	return s;
}

static struct sockaddr_in6 sin6(const char *ip, uint16_t port)
{
	struct sockaddr_in6 s = {.sin6_family = AF_INET6, .sin6_port = htons(port)};

	cr_assert_eq(inet_pton(AF_INET6, ip, &s.sin6_addr), 1, "bad test address %s", ip);
	return s;
}

/* ---- ep_from_sockaddr: what is left to the kernel ------------------------------------ */

Test(ep_from_sockaddr, short_lengths_are_not_decided)
{
	struct sockaddr_in s4 = sin4("192.0.2.1", 443);
	struct sockaddr_in6 s6 = sin6("2001:db8::1", 443);
	struct ep ep;

	/* connect(2) gives EINVAL for these: the shim must not decide on a partial address. */
	for (socklen_t len = 0; len < sizeof(s4); len++)
		cr_expect_eq(ep_from_sockaddr(&ep, (struct sockaddr *)&s4, len), -1,
			     "AF_INET, %u bytes", (unsigned)len);
	for (socklen_t len = 0; len < 24; len++)
		cr_expect_eq(ep_from_sockaddr(&ep, (struct sockaddr *)&s6, len), -1,
			     "AF_INET6, %u bytes", (unsigned)len);
}

Test(ep_from_sockaddr, too_long_and_null_are_not_decided)
{
	struct sockaddr_storage ss[2];
	struct sockaddr_in s4 = sin4("192.0.2.1", 443);
	struct ep ep;

	memset(ss, 0, sizeof(ss));
	memcpy(ss, &s4, sizeof(s4));
	cr_expect_eq(ep_from_sockaddr(&ep, (struct sockaddr *)ss, sizeof(ss[0]) + 1), -1);
	cr_expect_eq(ep_from_sockaddr(&ep, NULL, sizeof(s4)), -1);
	/* The longest the kernel accepts still is an address. */
	cr_expect_eq(ep_from_sockaddr(&ep, (struct sockaddr *)ss, sizeof(ss[0])), 0);
}

Test(ep_from_sockaddr, other_families_are_not_decided)
{
	struct sockaddr_storage ss;
	struct sockaddr_un *un = (struct sockaddr_un *)&ss;
	struct ep ep;
	static const int families[] = {AF_UNSPEC, AF_UNIX, AF_NETLINK, AF_PACKET, 255};

	memset(&ss, 0, sizeof(ss));
	strcpy(un->sun_path, "/tmp/x");
	for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
		ss.ss_family = (sa_family_t)families[i];
		cr_expect_eq(ep_from_sockaddr(&ep, (struct sockaddr *)&ss, sizeof(ss)), -1,
			     "family %d", families[i]);
	}
}

/* ---- ep_from_sockaddr: what is decided ----------------------------------------------- */

Test(ep_from_sockaddr, ipv4)
{
	struct sockaddr_in s4 = sin4("192.0.2.1", 8443);
	struct ep ep;

	cr_assert_eq(ep_from_sockaddr(&ep, (struct sockaddr *)&s4, sizeof(s4)), 0);
	cr_expect_eq(ep.family, AF_INET);
	cr_expect_eq(ep.port, 8443, "port in host order, got %u", ep.port);
	cr_expect_arr_eq(ep.addr, &s4.sin_addr, 4);
	cr_expect_str_eq(ep_text(&ep, ep_buf), "192.0.2.1");
}

Test(ep_from_sockaddr, ipv6_in_the_24_byte_form)
{
	/* RFC 2133's sockaddr_in6 has no sin6_scope_id: 24 bytes, which Linux accepts. */
	struct sockaddr_in6 s6 = sin6("2001:db8::1", 443);
	struct ep ep;

	cr_assert_eq(offsetof(struct sockaddr_in6, sin6_scope_id), 24);
	cr_assert_eq(ep_from_sockaddr(&ep, (struct sockaddr *)&s6, 24), 0);
	cr_expect_eq(ep.family, AF_INET6);
	cr_expect_eq(ep.port, 443);
	cr_expect_arr_eq(ep.addr, &s6.sin6_addr, 16);
	cr_expect_str_eq(ep_text(&ep, ep_buf), "2001:db8::1");
	cr_assert_eq(ep_from_sockaddr(&ep, (struct sockaddr *)&s6, sizeof(s6)), 0);
	cr_expect_str_eq(ep_text(&ep, ep_buf), "2001:db8::1");
}

Test(ep_from_sockaddr, ipv4_mapped_ipv6_is_decided_as_ipv4)
{
	/* A rule for 192.0.2.1 must apply to ::ffff:192.0.2.1 (one host, one decision). */
	struct sockaddr_in6 s6 = sin6("::ffff:192.0.2.1", 443);
	struct ep ep;

	cr_assert_eq(ep_from_sockaddr(&ep, (struct sockaddr *)&s6, sizeof(s6)), 0);
	cr_expect_eq(ep.family, AF_INET);
	cr_expect_str_eq(ep_text(&ep, ep_buf), "192.0.2.1");
	cr_expect_eq(ep.addr[0], 192);
	cr_expect_eq(ep.addr[3], 1);
	cr_expect_eq(ep.port, 443);

	/* Not mapped: the deprecated IPv4-compatible form and NAT64 stay IPv6. */
	s6 = sin6("::192.0.2.1", 443);
	cr_assert_eq(ep_from_sockaddr(&ep, (struct sockaddr *)&s6, sizeof(s6)), 0);
	cr_expect_eq(ep.family, AF_INET6);
	s6 = sin6("64:ff9b::c000:201", 443);
	cr_assert_eq(ep_from_sockaddr(&ep, (struct sockaddr *)&s6, sizeof(s6)), 0);
	cr_expect_eq(ep.family, AF_INET6);
	cr_expect_str_eq(ep_text(&ep, ep_buf), "64:ff9b::c000:201");
}

Test(ep_from_sockaddr, nothing_of_a_previous_address_is_left)
{
	struct sockaddr_in6 s6 = sin6("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 1);
	struct sockaddr_in s4 = sin4("10.0.0.1", 2);
	struct ep ep;

	cr_assert_eq(ep_from_sockaddr(&ep, (struct sockaddr *)&s6, sizeof(s6)), 0);
	cr_assert_eq(ep_from_sockaddr(&ep, (struct sockaddr *)&s4, sizeof(s4)), 0);
	for (int i = 4; i < 16; i++)
		cr_expect_eq(ep.addr[i], 0, "byte %d of an IPv4 address", i);
	cr_expect_str_eq(ep_text(&ep, ep_buf), "10.0.0.1");
}

/* ---- ep_describe --------------------------------------------------------------------- */

Test(ep_describe, a_small_buffer_is_cut_and_terminated)
{
	struct sockaddr_in6 s6 = sin6("2001:db8::1", 443);
	struct ep ep;
	char buf[8];

	cr_assert_eq(ep_from_sockaddr(&ep, (struct sockaddr *)&s6, sizeof(s6)), 0);
	memset(buf, 'Z', sizeof(buf));
	ep_describe(&ep, NULL, buf, sizeof(buf));
	cr_expect_eq(buf[7], '\0');
	cr_expect_str_eq(buf, "[2001:d");
}

Test(ep_describe, brackets_ipv6_and_names_the_host)
{
	struct sockaddr_in s4 = sin4("192.0.2.1", 443);
	struct sockaddr_in6 s6 = sin6("2001:db8::1", 8443);
	struct ep e4, e6;
	char buf[128];

	cr_assert_eq(ep_from_sockaddr(&e4, (struct sockaddr *)&s4, sizeof(s4)), 0);
	cr_assert_eq(ep_from_sockaddr(&e6, (struct sockaddr *)&s6, sizeof(s6)), 0);
	ep_describe(&e4, NULL, buf, sizeof(buf));
	cr_expect_str_eq(buf, "192.0.2.1:443");
	ep_describe(&e6, NULL, buf, sizeof(buf));
	cr_expect_str_eq(buf, "[2001:db8::1]:8443");
	ep_describe(&e4, "api.example", buf, sizeof(buf));
	cr_expect_str_eq(buf, "api.example:443 (192.0.2.1)");
}

/* ---- sockaddr_copy and user_readable ------------------------------------------------- */

/* Two pages: the first readable, the second not. Returns the start of the second. */
static char *guarded_page(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	char *p =
	    mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	cr_assert_neq(p, MAP_FAILED);
	cr_assert_eq(mprotect(p + pg, (size_t)pg, PROT_NONE), 0);
	return p + pg;
}

Test(sockaddr_copy, an_unreadable_address_is_efault_not_a_crash)
{
	char *bad = guarded_page();
	struct sockaddr_storage ss;

	errno = EADDRINUSE;
	cr_expect_eq(sockaddr_copy(&ss, (struct sockaddr *)bad, sizeof(struct sockaddr_in)),
		     -EFAULT);
	cr_expect_eq(errno, EADDRINUSE, "errno preserved");
	/* Half on the readable page, half past it. */
	cr_expect_eq(sockaddr_copy(&ss, (struct sockaddr *)(bad - 8), sizeof(struct sockaddr_in)),
		     -EFAULT);
	/* Wholly on the readable page, ending at its last byte. */
	struct sockaddr_in s4 = sin4("192.0.2.1", 443);
	memcpy(bad - sizeof(s4), &s4, sizeof(s4));
	cr_expect_eq(sockaddr_copy(&ss, (struct sockaddr *)(bad - sizeof(s4)), sizeof(s4)), 0);
	cr_expect_arr_eq(&ss, &s4, sizeof(s4));
}

Test(sockaddr_copy, null_and_oversized_are_efault)
{
	struct sockaddr_storage ss;
	char big[sizeof(ss) + 1];

	memset(big, 0, sizeof(big));
	cr_expect_eq(sockaddr_copy(&ss, NULL, sizeof(struct sockaddr_in)), -EFAULT);
	cr_expect_eq(sockaddr_copy(&ss, (struct sockaddr *)big, sizeof(big)), -EFAULT);
}

Test(sockaddr_copy, copies_and_zero_fills)
{
	struct sockaddr_storage ss;
	struct sockaddr_in s4 = sin4("192.0.2.1", 443);
	const unsigned char *b = (const unsigned char *)&ss;

	memset(&ss, 0xa5, sizeof(ss));
	cr_assert_eq(sockaddr_copy(&ss, (struct sockaddr *)&s4, sizeof(s4)), 0);
	cr_expect_arr_eq(&ss, &s4, sizeof(s4));
	for (size_t i = sizeof(s4); i < sizeof(ss); i++)
		cr_expect_eq(b[i], 0, "byte %zu left over", i);
	/* Length 0 (connect(fd, NULL, 0)): nothing to read, nothing copied. */
	memset(&ss, 0xa5, sizeof(ss));
	cr_expect_eq(sockaddr_copy(&ss, NULL, 0), 0);
	cr_expect_eq(b[0], 0);
}

Test(user_readable, answers_without_reading)
{
	char *bad = guarded_page();
	long pg = sysconf(_SC_PAGESIZE);

	cr_expect_eq(user_readable(NULL, 1), 0);
	cr_expect_eq(user_readable(bad, 1), 0);
	cr_expect_eq(user_readable(bad - 1, 2), 0, "the last byte is on the unreadable page");
	cr_expect_eq(user_readable((void *)(uintptr_t)-16, 64), 0,
		     "wraps around the address space");
	cr_expect_eq(user_readable(bad - pg, (size_t)pg), 1);
	cr_expect_eq(user_readable(bad - 3, 3), 1, "a span not aligned to a word");
}

/* ---- tcp_destination ----------------------------------------------------------------- */

Test(tcp_destination, what_the_kernel_refuses_is_left_to_it)
{
	int tcp4 = socket(AF_INET, SOCK_STREAM, 0), tcp6 = socket(AF_INET6, SOCK_STREAM, 0);
	int udp = socket(AF_INET, SOCK_DGRAM, 0), un = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_in s4 = sin4("127.0.0.1", 9);
	struct sockaddr_in6 s6 = sin6("::1", 9);
	struct ep ep;

	cr_assert(tcp4 >= 0 && tcp6 >= 0 && udp >= 0 && un >= 0);
	errno = EADDRINUSE;
	cr_expect_eq(tcp_destination(tcp4, (struct sockaddr *)&s4, sizeof(s4) - 1, &ep), -1,
		     "short length (the kernel's EINVAL)");
	cr_expect_eq(tcp_destination(tcp4, (struct sockaddr *)&s6, sizeof(s6), &ep), -1,
		     "IPv6 address on an IPv4 socket (the kernel's EAFNOSUPPORT)");
	cr_expect_eq(tcp_destination(tcp6, (struct sockaddr *)&s4, sizeof(s4), &ep), -1,
		     "IPv4 address on an IPv6 socket (the kernel's EINVAL)");
	cr_expect_eq(tcp_destination(udp, (struct sockaddr *)&s4, sizeof(s4), &ep), -1, "UDP");
	cr_expect_eq(tcp_destination(un, (struct sockaddr *)&s4, sizeof(s4), &ep), -1, "UNIX");
	cr_expect_eq(tcp_destination(-1, (struct sockaddr *)&s4, sizeof(s4), &ep), -1, "no fd");
	cr_expect_eq(errno, EADDRINUSE, "errno preserved");
	/* What the program then gets from the kernel for the short length. */
	cr_expect_eq(connect(tcp4, (struct sockaddr *)&s4, sizeof(s4) - 1), -1);
	cr_expect_eq(errno, EINVAL);
	close(tcp4);
	close(tcp6);
	close(udp);
	close(un);
}

Test(tcp_destination, tcp_sockets_of_the_address_family)
{
	int tcp4 = socket(AF_INET, SOCK_STREAM, 0), tcp6 = socket(AF_INET6, SOCK_STREAM, 0);
	struct sockaddr_in s4 = sin4("127.0.0.1", 9);
	struct sockaddr_in6 m6 = sin6("::ffff:127.0.0.1", 9);
	struct ep ep;

	cr_assert(tcp4 >= 0 && tcp6 >= 0);
	cr_expect_eq(tcp_destination(tcp4, (struct sockaddr *)&s4, sizeof(s4), &ep), 0);
	cr_expect_str_eq(ep_text(&ep, ep_buf), "127.0.0.1");
	cr_expect_eq(tcp_destination(tcp6, (struct sockaddr *)&m6, 24, &ep), 0);
	cr_expect_eq(ep.family, AF_INET, "v4-mapped on an IPv6 socket is decided as IPv4");
	cr_expect_str_eq(ep_text(&ep, ep_buf), "127.0.0.1");
	close(tcp4);
	close(tcp6);
}

Test(tcp_destination, fd_is_tcp_and_nodelay)
{
	int tcp = socket(AF_INET, SOCK_STREAM, 0), udp = socket(AF_INET, SOCK_DGRAM, 0);
	int sp[2], one = 1;

	cr_assert(tcp >= 0 && udp >= 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	errno = EADDRINUSE;
	cr_expect_eq(fd_is_tcp(udp), 0);
	cr_expect_eq(fd_is_tcp(sp[0]), 0);
	cr_expect_eq(fd_is_tcp(-1), 0);
	cr_expect_eq(fd_tcp_nodelay(udp), -1);
	cr_expect_eq(fd_tcp_nodelay(sp[0]), -1);
	cr_expect_eq(errno, EADDRINUSE, "errno preserved");
	cr_expect_eq(fd_is_tcp(tcp), 1);
	cr_expect_eq(fd_tcp_nodelay(tcp), 0);
	cr_assert_eq(setsockopt(tcp, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
	cr_expect_eq(fd_tcp_nodelay(tcp), 1);
	close(tcp);
	close(udp);
	close(sp[0]);
	close(sp[1]);
}
