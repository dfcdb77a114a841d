/*
 * test_system.c - the system-wide mode as an administrator meets it: a system
 * policy in /etc/tlsshim/policy and the library in /etc/ld.so.preload.
 *
 * Each test runs a shell script inside its own private mount namespace
 * (unshare -m) whose /etc is an overlay with its writable layer in a
 * temporary directory: the script writes /etc/tlsshim/policy and
 * /etc/ld.so.preload there, and the machine's own files are never touched.
 * Programs in the script start with no TLSSHIM_* variable unless a test sets
 * one. Needs root (mount namespaces, setuid files); the plain build only: a
 * sanitizer build's library needs its runtime first in every process.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "e2e/harness.h"

#define T_MS 60000

TestSuite(system_mode, .fini = h_teardown);

static void skip_unless_usable(void)
{
	if (geteuid() != 0)
		cr_skip_test("needs root: mount namespaces and setuid files");
	if (h_san())
		cr_skip_test("a sanitizer build's library needs its runtime in every process");
}

/*
 * Skips the test unless it can run, then starts openssl s_server -www on a
 * free port with the test PKI's server certificate (requiring a client
 * certificate from the test CA if CLIENT_CERTS); returns the port.
 */
static int start_tls_server(int client_certs)
{
	int port;

	skip_unless_usable();
	port = h_free_port();
	if (client_certs)
		h_server(ARGV("openssl", "s_server", "-www", "-accept", h_fmt("%d", port), "-cert",
			      pki("server.pem"), "-key", pki("server.key"), "-Verify", "1",
			      "-CAfile", pki("ca.pem")),
			 NULL, port, NULL);
	else
		h_server(ARGV("openssl", "s_server", "-www", "-accept", h_fmt("%d", port), "-cert",
			      pki("server.pem"), "-key", pki("server.key")),
			 NULL, port, NULL);
	return port;
}

/* The system rule most tests install: TLS to the server on PORT, verified by the test CA. */
static const char *tls_rule(int port)
{
	return h_fmt("connect localhost:%d tls ca=%s\n", port, pki("ca.pem"));
}

/*
 * Runs SCRIPT with /bin/sh in a private mount namespace. Before it: /etc is an
 * overlay on a tmpfs, /etc/tlsshim exists (0755) holding POLICY (NULL: no
 * file) with mode 0644, and /etc/ld.so.preload names the library when
 * PRELOAD is set. In SCRIPT: $T is a temporary directory, $LIB the library,
 * $TLSSHIM the command. Returns the script's exit status.
 */
static int in_namespace(struct h_proc *p, const char *policy, int preload, const char *script)
{
	const char *t = h_tmpdir();
	char *file = h_fmt("%s/script", t);
	struct h_env env;
	char *text;
	int rc;

	if (policy)
		cr_assert_eq(h_write_file(h_fmt("%s/policy", t), policy, strlen(policy)), 0);
	text = h_fmt("set -u\n"
		     "T=%s LIB=%s TLSSHIM=%s\n"
		     "mkdir \"$T/ov\" && mount -t tmpfs -o mode=0700 tlsshim-test \"$T/ov\" &&\n"
		     "mkdir \"$T/ov/up\" \"$T/ov/work\" &&\n"
		     "mount -t overlay overlay -o lowerdir=/etc,upperdir=$T/ov/up,"
		     "workdir=$T/ov/work /etc || exit 100\n"
		     "rm -rf /etc/tlsshim /etc/ld.so.preload\n"
		     "mkdir -m 0755 /etc/tlsshim\n"
		     "%s"
		     "%s"
		     "%s\n",
		     t, h_shim(), h_cmd(),
		     policy ? "cp \"$T/policy\" /etc/tlsshim/policy && chmod 0644 "
			      "/etc/tlsshim/policy\n"
			    : "",
		     preload ? "echo \"$LIB\" > /etc/ld.so.preload\n" : "", script);
	cr_assert_eq(h_write_file(file, text, strlen(text)), 0);
	h_env_init(&env);
	rc = h_run(p, ARGV("unshare", "--mount", "--propagation", "private", "/bin/sh", file), &env,
		   T_MS);
	h_env_free(&env);
	cr_assert_neq(rc, 100, "the namespace could not be set up: %s", p->err);
	return rc;
}

static const char *page_marker = "s_server -www";

/* ---- a program with no TLSSHIM_* at all ---------------------------------------------- */

Test(system_mode, plain_curl_is_wrapped_by_the_system_policy)
{
	int port = start_tls_server(0);
	struct h_proc p;
	int rc;

	rc = in_namespace(
	    &p, tls_rule(port), 1,
	    h_fmt("env -i PATH=/usr/bin:/bin curl -sS -m 15 http://localhost:%d/", port));
	cr_expect_eq(rc, 0, "curl exited %d: %s", rc, p.err);
	cr_expect(strstr(p.out, page_marker), "expected the TLS server's page, got:\n%.400s",
		  p.out);
	cr_expect(strstr(p.out, "TLSv1.3") || strstr(p.out, "TLSv1.2"), "%.400s", p.out);
	cr_expect_eq(p.err_len, 0, "expected a quiet stderr, got:\n%s", p.err);
	h_proc_free(&p);

	/* The same namespace without the preload line: curl speaks cleartext and fails. */
	rc = in_namespace(
	    &p, tls_rule(port), 0,
	    h_fmt("env -i PATH=/usr/bin:/bin curl -sS -m 15 http://localhost:%d/", port));
	cr_expect_neq(rc, 0, "without the system mode curl should fail against a TLS server");
	cr_expect(!strstr(p.out, page_marker), "%.400s", p.out);
	h_proc_free(&p);
}

/* ---- the floor ----------------------------------------------------------------------- */

Test(system_mode, user_policy_cannot_weaken_a_system_tls_rule)
{
	int port = start_tls_server(0);
	struct h_proc p;
	int rc;

	rc =
	    in_namespace(&p,
			 h_fmt("# the database\nconnect *:1 deny\nconnect localhost:%d tls ca=%s\n",
			       port, h_pki_file("ca.pem")),
			 1,
			 h_fmt("export TLSSHIM_POLICY='connect localhost:%d plain'\n"
			       "curl -sS -m 15 http://localhost:%d/; echo \"== curl $?\"\n"
			       "$TLSSHIM explain connect localhost:%d; echo \"== explain $?\"\n"
			       "TLSSHIM_POLICY='connect localhost:%d deny' curl -sS -m 15 "
			       "http://localhost:%d/ 2>&1; echo \"== deny $?\"\n",
			       port, port, port, port, port));
	cr_assert_eq(rc, 0, "%s", p.err);
	cr_expect(strstr(p.out, page_marker), "a plain rule of the user must not turn TLS off:\n%s",
		  p.out);
	cr_expect(strstr(p.out, "== curl 0"), "%s", p.out);
	cr_expect(strstr(p.out, "/etc/tlsshim/policy:3:1 (the system policy)"),
		  "explain must name the system rule's line:\n%s", p.out);
	cr_expect(strstr(p.out, h_fmt("`connect localhost:%d plain` (TLSSHIM_POLICY:1) cannot "
				      "weaken it",
				      port)),
		  "explain must say the user's rule cannot weaken it:\n%s", p.out);
	cr_expect(strstr(p.out, "== explain 0"), "%s", p.out);
	/* Tightening is allowed: deny over tls. */
	cr_expect(strstr(p.out, "denied by policy (TLSSHIM_POLICY:1)"), "%s", p.out);
	cr_expect(!strstr(p.out, "== deny 0"), "curl should fail on a denied connect:\n%s", p.out);
	h_proc_free(&p);
}

/* ---- a policy someone else could have written ---------------------------------------- */

Test(system_mode, group_writable_policy_is_refused_with_the_reason)
{
	int port = start_tls_server(0);
	struct h_proc p;
	int rc;

	rc = in_namespace(
	    &p, tls_rule(port), 0,
	    h_fmt("chmod 0664 /etc/tlsshim/policy\n"
		  "cp /etc/ld.so.preload $T/preload.before 2>/dev/null\n"
		  "$TLSSHIM system enable; echo \"== enable $?\"\n"
		  "[ -e /etc/ld.so.preload ] && echo '== preload written'\n"
		  "$TLSSHIM system status; echo \"== status $?\"\n"
		  "echo \"$LIB\" > /etc/ld.so.preload\n"
		  "env -i PATH=/usr/bin:/bin curl -sS -m 15 http://localhost:%d/ 2>&1\n"
		  "echo \"== curl $?\"\n"
		  "chmod 0644 /etc/tlsshim/policy; chmod 0775 /etc/tlsshim\n"
		  "env -i PATH=/usr/bin:/bin /bin/true 2>&1; echo \"== true $?\"\n",
		  port));
	cr_assert_eq(rc, 0, "%s", p.err);
	cr_expect(strstr(p.out, "== enable 2"), "enable must refuse:\n%s", p.out);
	cr_expect(!strstr(p.out, "== preload written"), "enable must not write:\n%s", p.out);
	cr_expect(strstr(p.err, "file /etc/tlsshim/policy is group-writable (mode 0664)"), "%s",
		  p.err);
	cr_expect(strstr(p.out, "== status 2"), "%s", p.out);
	cr_expect(strstr(p.out, "tlsshim[") &&
		      strstr(p.out, "error: system policy refused: file /etc/tlsshim/policy is "
				    "group-writable (mode 0664); its rules do not apply"),
		  "each process must say why the system policy is refused:\n%s", p.out);
	/* Its rules apply nowhere: curl speaks cleartext to the TLS server and fails. */
	cr_expect(!strstr(p.out, page_marker), "%s", p.out);
	cr_expect(!strstr(p.out, "== curl 0"), "%s", p.out);
	/* The program itself still runs. */
	cr_expect(strstr(p.out, "directory /etc/tlsshim is group-writable (mode 0775)"), "%s",
		  p.out);
	cr_expect(strstr(p.out, "== true 0"), "%s", p.out);
	h_proc_free(&p);
}

/* ---- setuid programs ----------------------------------------------------------------- */

Test(system_mode, setuid_client_gets_only_the_system_policy)
{
	int port = start_tls_server(0);
	struct h_proc p;
	int rc;

	rc = in_namespace(
	    &p, tls_rule(port), 1,
	    h_fmt(
		"mkdir -m 0755 $T/bin && cp %s $T/bin/client && chmod 4755 $T/bin/client\n"
		"cp %s $T/bin/plain && chmod 0755 $T/bin/plain\n"
		"chmod 0711 $T $(dirname $T)\n"
		/* What a user would try: turn TLS off, break the policy, write a root file. */
		"run() { setpriv --reuid=65534 --regid=65534 --clear-groups env -i "
		"PATH=/usr/bin:/bin TLSSHIM_POLICY='connect localhost:%d plain; not a rule' "
		"TLSSHIM_LOG_FILE=$T/by-root.log \"$@\"; }\n"
		"run $T/bin/client localhost %d 'GET / HTTP/1.0\\r\\n\\r\\n'; echo \"== suid $?\"\n"
		"[ -e $T/by-root.log ] && echo '== log file created'\n"
		"run $T/bin/plain localhost %d 'x' 2>&1; echo \"== plain $?\"\n",
		h_prog("tcpcat"), h_prog("tcpcat"), port, port, port));
	cr_assert_eq(rc, 0, "%s", p.err);
	cr_expect(strstr(p.out, page_marker),
		  "the setuid client must be wrapped by the system policy:\n%s\n%s", p.out, p.err);
	cr_expect(strstr(p.out, "== suid 0"), "%s\n%s", p.out, p.err);
	cr_expect(!strstr(p.out, "== log file created"),
		  "a secure-execution process must not open TLSSHIM_LOG_FILE:\n%s", p.out);
	/* The same client without setuid reads the user's environment: its policy is broken. */
	cr_expect(strstr(p.out, "== plain 78"), "%s", p.out);
	h_proc_free(&p);
}

/* ---- tlsshim system enable | disable | status ---------------------------------------- */

Test(system_mode, enable_disable_round_trip_is_byte_identical)
{
	struct h_proc p;
	int rc;

	skip_unless_usable();
	rc = in_namespace(
	    &p, "connect *:5432 tls\n", 0,
	    "lm=$(ls /lib/*/libm.so.6 /usr/lib/*/libm.so.6 2>/dev/null | head -n 1)\n"
	    /* Another line, and no newline at the end. */
	    "printf '%s\\n%s' \"$lm\" \"$lm\" > /etc/ld.so.preload\n"
	    "cp -p /etc/ld.so.preload $T/before\n"
	    "$TLSSHIM system enable; echo \"== enable $?\"\n"
	    "grep -qx \"$LIB\" /etc/ld.so.preload && echo '== line added'\n"
	    "grep -c \"$lm\" /etc/ld.so.preload\n"
	    "grep -q libtlsshim /proc/self/maps && echo '== loaded'\n"
	    "sh -c 'grep -q libtlsshim /proc/self/maps' && echo '== new process loads it'\n"
	    "$TLSSHIM system enable; echo \"== again $?\"\n"
	    "$TLSSHIM system status; echo \"== status $?\"\n"
	    "$TLSSHIM system disable; echo \"== disable $?\"\n"
	    "cmp /etc/ld.so.preload $T/before && echo '== identical'\n"
	    "ls /etc/ld.so.preload.tlsshim-* 2>/dev/null && echo '== temp file left'\n"
	    "rm /etc/ld.so.preload\n"
	    "$TLSSHIM system enable >/dev/null && $TLSSHIM system disable >/dev/null\n"
	    "[ -e /etc/ld.so.preload ] && echo '== preload file left'\n"
	    "chmod 0600 /etc/tlsshim/policy\n"
	    "$TLSSHIM system enable; echo \"== root-only $?\"\n"
	    "[ -e /etc/ld.so.preload ] && echo '== preload written'\n"
	    "chmod 0644 /etc/tlsshim/policy\n"
	    "echo 'connect *:5432 tls nonsense=1' > /etc/tlsshim/policy\n"
	    "$TLSSHIM system enable; echo \"== broken $?\"\n"
	    "[ -e /etc/ld.so.preload ] && echo '== preload written'\n"
	    "echo end\n");
	cr_assert_eq(rc, 0, "%s", p.err);
	cr_expect(strstr(p.out, "== enable 0"), "%s\n%s", p.out, p.err);
	cr_expect(strstr(p.out, "== line added"), "%s", p.out);
	cr_expect(strstr(p.out, "\n2\n"), "the other lines are kept:\n%s", p.out);
	cr_expect(strstr(p.out, "== new process loads it"), "%s", p.out);
	cr_expect(strstr(p.out, "already enabled"), "%s", p.out);
	cr_expect(strstr(p.out, "preload:       enabled"), "%s", p.out);
	cr_expect(strstr(p.out, "system policy: /etc/tlsshim/policy: 1 rule, no errors"), "%s",
		  p.out);
	cr_expect(strstr(p.out, "== status 0"), "%s", p.out);
	cr_expect(strstr(p.out, "== disable 0"), "%s", p.out);
	cr_expect(strstr(p.out, "== identical"), "disable must restore the same bytes:\n%s", p.out);
	cr_expect(!strstr(p.out, "== temp file left"), "%s", p.out);
	cr_expect(!strstr(p.out, "== preload file left"),
		  "enable then disable with no preload file must leave none:\n%s", p.out);
	cr_expect(strstr(p.out, "== root-only 2"),
		  "enable must refuse a policy other users cannot read:\n%s", p.out);
	cr_expect(strstr(p.err, "is not readable by other users (mode 0600)"), "%s", p.err);
	cr_expect(strstr(p.out, "== broken 2"), "enable must refuse a policy with errors:\n%s",
		  p.out);
	cr_expect(strstr(p.err, "/etc/tlsshim/policy:1:"), "%s", p.err);
	cr_expect(!strstr(p.out, "== preload written"), "%s", p.out);
	h_proc_free(&p);
}

/* ---- files of system rules --------------------------------------------------------- */

/* A CA only root may read: the user's process starts, and its connection fails closed. */
Test(system_mode, unreadable_file_of_a_system_rule_fails_closed)
{
	int port = start_tls_server(0);
	struct h_proc p;
	int rc;

	rc = in_namespace(
	    &p, NULL, 1,
	    h_fmt("cp %s $T/root-only-ca.pem && chmod 0600 $T/root-only-ca.pem\n"
		  "echo \"connect localhost:%d tls ca=$T/root-only-ca.pem\" > "
		  "/etc/tlsshim/policy\n"
		  "chmod 0711 $T $(dirname $T)\n"
		  "setpriv --reuid=65534 --regid=65534 --clear-groups env -i PATH=/usr/bin:/bin "
		  "curl -sS -m 15 http://localhost:%d/ 2>&1; echo \"== user $?\"\n"
		  "env -i PATH=/usr/bin:/bin curl -sS -m 15 http://localhost:%d/ 2>&1\n"
		  "echo \"== root $?\"\n",
		  h_pki_file("ca.pem"), port, port, port));
	cr_assert_eq(rc, 0, "%s", p.err);
	cr_expect(strstr(p.out, "root-only-ca.pem"),
		  "the user's process must say which file it cannot load:\n%s", p.out);
	cr_expect(strstr(p.out, "== user 7"), "curl must fail to connect (exit 7):\n%s", p.out);
	cr_expect(strstr(p.out, "== root 0"), "root reads the CA and gets the page:\n%s", p.out);
	cr_expect(strstr(p.out, page_marker), "%s", p.out);
	h_proc_free(&p);
}

/* ---- two copies of the library in one process -------------------------------------- */

/*
 * The system-wide mode's copy plus another in LD_PRELOAD (a build tree's, another
 * install's): only the first wraps, or the server would get TLS inside TLS.
 */
Test(system_mode, second_copy_of_the_library_stays_out_of_the_way)
{
	int port = start_tls_server(0);
	struct h_proc p;
	int rc;

	rc = in_namespace(
	    &p, tls_rule(port), 1,
	    h_fmt("mkdir $T/lib2 && cp $LIB $(dirname $LIB)/libtlsshim-tls.so $T/lib2/\n"
		  "env -i PATH=/usr/bin:/bin LD_PRELOAD=$T/lib2/libtlsshim.so "
		  "curl -sS -m 15 http://localhost:%d/; echo \"== curl $?\"\n"
		  "env -i PATH=/usr/bin:/bin LD_PRELOAD=$T/lib2/libtlsshim.so "
		  "TLSSHIM_POLICY='connect localhost:%d plain' "
		  "curl -sS -m 15 http://localhost:%d/; echo \"== weaken $?\"\n",
		  port, port, port));
	cr_assert_eq(rc, 0, "%s", p.err);
	cr_expect(strstr(p.out, "== curl 0"), "one TLS layer, not two:\n%s\n%s", p.out, p.err);
	cr_expect(strstr(p.out, "== weaken 0"), "the copy that wraps keeps the floor:\n%s\n%s",
		  p.out, p.err);
	h_proc_free(&p);
}

/* ---- what a process may add: its client certificate ------------------------------- */

/* A server that requires client certificates; the system rule names none. */
Test(system_mode, user_client_certificate_added_to_a_system_rule)
{
	int port = start_tls_server(1);
	struct h_proc p;
	int rc;

	rc = in_namespace(
	    &p, tls_rule(port), 1,
	    h_fmt("curl -sS -m 15 http://localhost:%d/ 2>&1; echo \"== nocert $?\"\n"
		  "export TLSSHIM_POLICY='connect localhost:%d tls cert=%s key=%s insecure'\n"
		  "curl -sS -m 15 http://localhost:%d/; echo \"== cert $?\"\n"
		  "$TLSSHIM explain connect localhost:%d\n",
		  port, port, h_pki_file("client.pem"), h_pki_file("client.key"), port, port));
	cr_assert_eq(rc, 0, "%s", p.err);
	cr_expect(!strstr(p.out, "== nocert 0"), "the server requires a certificate:\n%s", p.out);
	cr_expect(strstr(p.out, "== cert 0"), "the user's certificate must be presented:\n%s\n%s",
		  p.out, p.err);
	cr_expect(strstr(p.out, page_marker), "%s", p.out);
	cr_expect(strstr(p.out, "adds: cert, key"), "explain must say what was added:\n%s", p.out);
	cr_expect(strstr(p.out, "verification:      on") || strstr(p.out, "verifies name:"),
		  "insecure must not be taken from the user's rule:\n%s", p.out);
	cr_expect(!strstr(p.out, "insecure:") && !strstr(p.out, "OFF"),
		  "verification stays on:\n%s", p.out);
	h_proc_free(&p);
}
