/*
 * test_scm.c - unit tests of shim/scm.c: fds passed over SCM_RIGHTS.
 */
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "scm.h"
#include "test_conn_util.h"

/* A message carrying the N fds FDS over SCM_RIGHTS, in CBUF. */
static struct msghdr carrying(const int *fds, size_t n, char *cbuf, size_t cap)
{
	struct msghdr m = {.msg_control = cbuf, .msg_controllen = CMSG_SPACE(n * sizeof(int))};
	struct cmsghdr *cm;

	cr_assert(m.msg_controllen <= cap);
	memset(cbuf, 0, cap);
	cm = CMSG_FIRSTHDR(&m);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(n * sizeof(int));
	memcpy(CMSG_DATA(cm), fds, n * sizeof(int));
	return m;
}

Test(scm, passing_no_wrapped_fd_is_allowed)
{
	struct tc t = tc_auto(); /* the process has wrapped an fd */
	char cbuf[64];
	int fds[2] = {0, t.peer};
	struct msghdr m = carrying(fds, 2, cbuf, sizeof(cbuf));
	struct msghdr none = {0};

	cr_expect_eq(scm_passes_wrapped(t.peer, &m), 0);
	cr_expect_eq(scm_passes_wrapped(t.peer, &none), 0, "no control data");
	cr_expect_eq(scm_passes_wrapped(t.peer, NULL), 0, "no message");
	tc_close(&t);
}

Test(scm, passing_a_wrapped_fd_is_refused)
{
	struct tc t = tc_auto();
	char cbuf[64];
	int fds[3] = {0, 1, t.fd};
	struct msghdr m = carrying(fds, 3, cbuf, sizeof(cbuf));

	cr_expect_eq(scm_passes_wrapped(t.peer, &m), 1, "the wrapped fd as the third of three");
	m = carrying(&t.fd, 1, cbuf, sizeof(cbuf));
	cr_expect_eq(scm_passes_wrapped(t.peer, &m), 1);
	/* Other control messages are not fds. */
	((struct cmsghdr *)cbuf)->cmsg_type = SCM_CREDENTIALS;
	cr_expect_eq(scm_passes_wrapped(t.peer, &m), 0, "SCM_CREDENTIALS read as fds");
	tc_close(&t);
}

Test(scm, a_received_number_drops_its_stale_entry)
{
	struct tc t = tc_auto();
	char cbuf[64];
	struct msghdr m;

	/* Closed behind the shim's back: the entry stays until the number is handed out. */
	close(t.fd);
	cr_assert(fdtab_maybe(t.fd));
	m = carrying((int[]){t.peer}, 1, cbuf, sizeof(cbuf));
	scm_received(&m);
	cr_expect(fdtab_maybe(t.fd), "another number's entry was dropped");
	m = carrying(&t.fd, 1, cbuf, sizeof(cbuf));
	scm_received(&m);
	cr_expect_not(fdtab_maybe(t.fd), "the stale entry is still there");
	close(t.peer);
	policy_free(t.p);
}
