/*
 * test_conn_msg.c - unit tests of shim/conn_msg.c: the vectored and message
 * calls on a wrapped connection, and the kernel's argument checks before them.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "conn_msg.h"
#include "test_conn_util.h"

static char low[4];

/* ---- the kernel's checks, negative cases first ---- */

Test(conn_msg_iov_check, refuses_what_the_kernel_refuses_in_its_order)
{
	char b[4];
	void *gone = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct iovec neg[2] = {{b, 4}, {b, (size_t)-1}}, null[2] = {{b, 4}, {NULL, 1}};
	struct iovec past[1] = {{(void *)0x7ffffffff000ul, 1}};
	struct iovec wrap[2] = {{(void *)~0ul, 2}, {b, 1}};

	cr_assert(gone != MAP_FAILED);
	munmap(gone, 4096);
	cr_expect_eq(conn_msg_iov_check(neg, -1), -EINVAL, "a negative count");
	cr_expect_eq(conn_msg_iov_check(neg, IOV_MAX + 1), -EINVAL, "a count over UIO_MAXIOV");
	cr_expect_eq(conn_msg_iov_check(gone, 1), -EFAULT, "an unreadable array");
	cr_expect_eq(conn_msg_iov_check(neg, 2), -EINVAL, "a length negative as ssize_t");
	cr_expect_eq(conn_msg_iov_check(past, 1), -EFAULT, "a range past user space");
	cr_expect_eq(conn_msg_iov_check(wrap, 2), -EFAULT, "a range that wraps");
	cr_expect_eq(conn_msg_iov_check(null, 2), -EFAULT, "a NULL buffer with a length");
	/* Allowed: nothing, a NULL buffer of length 0, one huge buffer (capped first). */
	cr_expect_eq(conn_msg_iov_check(NULL, 0), 0);
	cr_expect_eq(conn_msg_iov_check((struct iovec[]){{NULL, 0}, {b, 4}}, 2), 0);
	/* (a static buffer: low in the address space, so its capped range fits) */
	cr_expect_eq(conn_msg_iov_check((struct iovec[]){{low, SSIZE_MAX}}, 1), 0);
}

Test(conn_msg, message_headers_are_checked_before_any_io)
{
	struct tc t = tc_buffered();
	struct conn *c = fdtab_get(t.fd);
	char b[8];
	struct iovec iov = {b, sizeof(b)};
	struct msghdr m = {
	    .msg_name = b, .msg_namelen = (socklen_t)-1, .msg_iov = &iov, .msg_iovlen = 1};

	cr_expect_eq(conn_recvmsg(c, &m, 0), -EINVAL, "a negative msg_namelen");
	m = (struct msghdr){.msg_iov = &iov, .msg_iovlen = IOV_MAX + 1};
	cr_expect_eq(conn_sendmsg(c, &m, 0), -EMSGSIZE, "msg_iovlen over UIO_MAXIOV");
	m = (struct msghdr){.msg_iov = &iov, .msg_iovlen = 1};
	cr_expect_eq(conn_sendmsg(c, &m, MSG_OOB), -EOPNOTSUPP, "MSG_OOB");
	cr_expect_eq(conn_recvmsg(c, (struct msghdr *)8, 0), -EFAULT, "an unreadable msghdr");
	cr_expect_eq(conn_rwv2(c, &iov, 1, 0x40 /* RWF_ATOMIC */, 0), -EOPNOTSUPP);
	iov.iov_len = 0;
	cr_expect_eq(conn_rwv2(c, &iov, 1, 0x40, 0), 0, "no bytes: flags not looked at");
	conn_put(c);
	tc_close(&t);
}

/* ---- the calls ---- */

Test(conn_msg, recvmsg_reports_no_address_control_data_or_flags)
{
	struct tc t = tc_buffered();
	struct conn *c = fdtab_get(t.fd);
	char b[8], name[16], ctl[64];
	struct iovec iov[2] = {{b, 3}, {b + 3, 5}};
	struct msghdr m = {.msg_name = name,
			   .msg_namelen = sizeof(name),
			   .msg_iov = iov,
			   .msg_iovlen = 2,
			   .msg_control = ctl,
			   .msg_controllen = sizeof(ctl),
			   .msg_flags = 0x7f};

	cr_expect_eq(conn_recvmsg(c, &m, 0), 8);
	cr_expect_arr_eq(b, tc_cleartext, 8);
	cr_expect_eq(m.msg_namelen, 0);
	cr_expect_eq(m.msg_controllen, 0);
	cr_expect_eq(m.msg_flags, 0);
	conn_put(c);
	tc_close(&t);
}

Test(conn_msg, mmsg_counts_messages_and_stops_without_waiting)
{
	struct tc t = tc_buffered();
	struct conn *c = fdtab_get(t.fd);
	char a[4], b[4], got[8];
	struct iovec ia = {a, 4}, ib = {b, 4}, out[2] = {{"abcd", 4}, {"efgh", 4}};
	struct mmsghdr v[2] = {{.msg_hdr = {.msg_iov = &ia, .msg_iovlen = 1}},
			       {.msg_hdr = {.msg_iov = &ib, .msg_iovlen = 1}}};
	struct mmsghdr w[2] = {{.msg_hdr = {.msg_iov = &out[0], .msg_iovlen = 1}},
			       {.msg_hdr = {.msg_iov = &out[1], .msg_iovlen = 1}}};

	cr_expect_eq(conn_recvmmsg(c, v, 2, 0), 2, "the 8 bytes the shim holds: two messages");
	cr_expect_eq(v[0].msg_len, 4);
	cr_expect_eq(v[1].msg_len, 4);
	cr_expect_eq(conn_recvmmsg(c, v, 2, MSG_DONTWAIT), -EAGAIN, "nothing: the first fails");
	cr_expect_eq(conn_sendmmsg(c, w, 2, 0), 2);
	cr_expect_eq(w[1].msg_len, 4);
	cr_assert_eq(recv(t.peer, got, 8, MSG_WAITALL), 8);
	cr_expect_arr_eq(got, "abcdefgh", 8);
	conn_put(c);
	tc_close(&t);
}

static int vdp(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int vdp(struct conn *c, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = conn_vdprintf(c, fmt, ap);
	va_end(ap);
	return r;
}

Test(conn_msg, dprintf_sends_the_text_as_one_write)
{
	struct tc t = tc_buffered();
	struct conn *c = fdtab_get(t.fd);
	char got[16] = "";

	cr_expect_eq(vdp(c, "%s=%d\n", "port", 443), 9);
	cr_expect_eq(vdp(c, "%s", ""), 0);
	cr_assert_eq(recv(t.peer, got, 9, MSG_WAITALL), 9);
	cr_expect_str_eq(got, "port=443\n");
	conn_put(c);
	tc_close(&t);
}
