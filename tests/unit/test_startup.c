/*
 * test_startup.c - unit tests of shim/startup.c: which policy a process
 * starts with (startup_policy(); the rest of start-up registers handlers
 * and adopts inherited sockets, which only a real program under the shim
 * shows: tests/e2e).
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include "shim.h"
#include "startup.h"

/* The system policy, if this machine has one, would be the floor of every result. */
static void no_system_policy(void)
{
	if (access(TLSSHIM_SYSCONFDIR "/tlsshim/policy", F_OK) == 0)
		cr_skip_test("this machine has a system policy");
}

Test(startup_policy, a_policy_with_errors_stops_the_program, .init = cr_redirect_stderr)
{
	setenv("TLSSHIM_POLICY", "connect 127.0.0.1:443 tls\nconnect example.test tsl", 1);
	cr_expect_eq(startup_policy(0), -1);
	cr_expect_null(shim.policy);
	fflush(stderr);
	cr_expect_stderr_eq_str(
	    "tlsshim: TLSSHIM_POLICY:2:22: expected 'tls', 'plain', 'deny' or 'auto', got 'tsl'\n");
}

Test(startup_policy, a_secure_execution_process_reads_no_environment)
{
	no_system_policy();
	setenv("TLSSHIM_POLICY", "connect * deny", 1);
	setenv("TLSSHIM_POLICY_FILE", "/nonexistent", 1);
	cr_expect_eq(startup_policy(1), 0);
	cr_expect_null(shim.policy, "the environment's policy applied in a secure process");
}

Test(startup_policy, no_policy_wraps_nothing)
{
	no_system_policy();
	unsetenv("TLSSHIM_POLICY");
	unsetenv("TLSSHIM_POLICY_FILE");
	cr_expect_eq(startup_policy(0), 0);
	cr_expect_null(shim.policy);
}

Test(startup_policy, the_environments_policy_and_file_are_read)
{
	char path[] = "/tmp/tlsshim-startup.XXXXXX";
	int fd = mkstemp(path);

	no_system_policy();
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, "accept 127.0.0.1:8443 deny\n", 27), 27);
	close(fd);
	setenv("TLSSHIM_POLICY", "connect 10.0.0.0/8 deny", 1);
	setenv("TLSSHIM_POLICY_FILE", path, 1);
	cr_expect_eq(startup_policy(0), 0);
	unlink(path);
	cr_assert_not_null(shim.policy);
	cr_expect(shim.has_connect);
	cr_expect(shim.has_accept, "the file's accept rule was not read");
}
