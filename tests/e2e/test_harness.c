/*
 * test_harness.c - proves the end-to-end harness (harness.c) before the other
 * end-to-end tests depend on it: spawning, exit codes, time-outs, output
 * collection, environment isolation, ports and temporary files.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "e2e/harness.h"

static long long ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

Test(harness, runs_echo_and_collects_stdout, .timeout = 20)
{
	char *argv[] = {"/bin/echo", "hello", "world", NULL};
	struct h_env env;
	struct h_proc p;
	int rc;

	h_env_init(&env);
	rc = h_run(&p, argv, &env, 5000);
	cr_expect_eq(rc, 0, "expected echo to exit 0, got %d (stderr: %s)", rc, p.err);
	cr_expect_str_eq(p.out, "hello world\n",
			 "expected \"hello world\\n\" on stdout, got \"%s\"", p.out);
	cr_expect_eq(p.err_len, 0, "expected nothing on stderr, got \"%s\"", p.err);
	h_proc_free(&p);
	h_env_free(&env);
}

Test(harness, finds_programs_in_the_environments_path, .timeout = 20)
{
	char *argv[] = {"echo", "found", NULL};
	char *missing[] = {"no-such-program-tlsshim", NULL};
	struct h_env env;
	struct h_proc p;
	int rc;

	h_env_init(&env);
	rc = h_run(&p, argv, &env, 5000);
	cr_expect_eq(rc, 0, "expected `echo` found through PATH to exit 0, got %d (%s)", rc, p.err);
	cr_expect_str_eq(p.out, "found\n", "expected \"found\\n\", got \"%s\"", p.out);
	h_proc_free(&p);
	rc = h_spawn(&p, missing, &env, NULL, 0);
	cr_expect_eq(rc, -1, "expected h_spawn of a missing program to fail, got %d", rc);
	h_proc_free(&p);
	h_env_free(&env);
}

Test(harness, reports_exit_codes_and_signals, .timeout = 20)
{
	static const struct {
		const char *script;
		int code;
	} cases[] = {
	    {"exit 0", 0},
	    {"exit 3", 3},
	    {"exit 78", 78},
	    {"kill -9 $$", 128 + 9},
	    {"kill -TERM $$", 128 + 15},
	};
	struct h_env env;

	h_env_init(&env);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *argv[] = {"/bin/sh", "-c", (char *)cases[i].script, NULL};
		struct h_proc p;
		int rc = h_run(&p, argv, &env, 5000);

		cr_expect_eq(rc, cases[i].code, "expected `sh -c '%s'` to give %d, got %d",
			     cases[i].script, cases[i].code, rc);
		h_proc_free(&p);
	}
	h_env_free(&env);
}

Test(harness, kills_a_program_that_outlives_its_timeout, .timeout = 20)
{
	char *argv[] = {"/bin/sh", "-c", "echo started; exec sleep 30", NULL};
	struct h_env env;
	struct h_proc p;
	long long t0 = ms_now(), took;
	int rc;

	h_env_init(&env);
	rc = h_run(&p, argv, &env, 300);
	took = ms_now() - t0;
	cr_expect_eq(rc, -1, "expected -1 (timed out) for sleep 30 under a 300 ms limit, got %d",
		     rc);
	cr_expect(took < 3000, "expected h_wait to return soon after 300 ms, it took %lld ms",
		  took);
	cr_expect(p.reaped, "expected the killed program to be reaped");
	cr_expect_str_eq(p.out, "started\n", "expected the output before the kill, got \"%s\"",
			 p.out);
	h_proc_free(&p);
	h_env_free(&env);
}

Test(harness, returns_when_a_grandchild_keeps_the_pipes_open, .timeout = 20)
{
	char *argv[] = {"/bin/sh", "-c", "sleep 5 & echo parent done", NULL};
	struct h_env env;
	struct h_proc p;
	long long t0 = ms_now(), took;
	int rc;

	h_env_init(&env);
	rc = h_run(&p, argv, &env, 4000);
	took = ms_now() - t0;
	cr_expect_eq(rc, 0, "expected the shell to exit 0, got %d", rc);
	cr_expect(took < 2000, "expected h_wait to return when the shell exits, took %lld ms",
		  took);
	cr_expect_str_eq(p.out, "parent done\n", "expected \"parent done\\n\", got \"%s\"", p.out);
	h_proc_free(&p);
	h_env_free(&env);
}

Test(harness, separates_stdout_and_stderr, .timeout = 20)
{
	char *argv[] = {"/bin/sh", "-c", "echo out; echo err >&2", NULL};
	struct h_env env;
	struct h_proc p;

	h_env_init(&env);
	h_run(&p, argv, &env, 5000);
	cr_expect_str_eq(p.out, "out\n", "expected \"out\\n\" on stdout, got \"%s\"", p.out);
	cr_expect_str_eq(p.err, "err\n", "expected \"err\\n\" on stderr, got \"%s\"", p.err);
	h_proc_free(&p);
	h_env_free(&env);
}

Test(harness, feeds_large_stdin_without_deadlock, .timeout = 30)
{
	size_t len = 4 << 20;
	char *data = malloc(len);
	char *argv[] = {"/bin/cat", NULL};
	struct h_env env;
	struct h_proc p;
	int rc;

	for (size_t i = 0; i < len; i++)
		data[i] = (char)('a' + (i * 7 + i / 13) % 26);
	h_env_init(&env);
	cr_assert_eq(h_spawn(&p, argv, &env, data, len), 0, "expected cat to start");
	rc = h_wait(&p, 20000);
	cr_expect_eq(rc, 0, "expected cat to exit 0, got %d", rc);
	cr_expect_eq(p.out_len, len, "expected %zu bytes back from cat, got %zu", len, p.out_len);
	cr_expect(p.out_len == len && memcmp(p.out, data, len) == 0,
		  "expected cat to echo its stdin unchanged");
	h_proc_free(&p);
	h_env_free(&env);
	free(data);
}

Test(harness, gives_programs_only_the_explicit_environment, .timeout = 20)
{
	char *argv[] = {"/usr/bin/env", NULL};
	struct h_env env;
	struct h_proc p;

	setenv("TLSSHIM_HARNESS_LEAK", "1", 1);
	h_env_init(&env);
	h_env_set(&env, "FOO", "bar %d", 42);
	h_env_set(&env, "FOO", "baz");
	h_run(&p, argv, &env, 5000);
	cr_expect(strstr(p.out, "FOO=baz\n") != NULL, "expected FOO=baz (replaced), got:\n%s",
		  p.out);
	cr_expect(strstr(p.out, "FOO=bar") == NULL, "expected the old FOO gone, got:\n%s", p.out);
	cr_expect(
	    strstr(p.out, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"),
	    "expected the fixed PATH, got:\n%s", p.out);
	cr_expect(strstr(p.out, "LANG=C.UTF-8\n"), "expected LANG=C.UTF-8, got:\n%s", p.out);
	cr_expect(strstr(p.out, "HOME=/"), "expected a HOME, got:\n%s", p.out);
	cr_expect(strstr(p.out, "TLSSHIM_HARNESS_LEAK") == NULL,
		  "expected nothing from the test's own environment, got:\n%s", p.out);
	cr_expect(strstr(p.out, "TLSSHIM_E2E_ROOT") == NULL,
		  "expected the harness's own variable not passed on, got:\n%s", p.out);
	cr_expect(strstr(p.out, "LD_PRELOAD") == NULL,
		  "expected no LD_PRELOAD without h_env_preload, got:\n%s", p.out);
	h_proc_free(&p);
	h_env_unset(&env, "FOO");
	cr_expect_null(h_env_get(&env, "FOO"), "expected FOO unset, got %s",
		       h_env_get(&env, "FOO"));
	h_env_free(&env);
}

/*
 * ASan's runtime must come first; under TSan the shim comes first (harness.c
 * says why); otherwise the shim is the only entry.
 */
Test(harness, preloads_the_shim_in_sanitizer_order, .timeout = 20)
{
	struct h_env env;
	const char *v, *san = h_san();
	size_t vl, sl = strlen(h_shim());

	h_env_init(&env);
	h_env_preload(&env);
	v = h_env_get(&env, "LD_PRELOAD");
	cr_assert_not_null(v, "expected LD_PRELOAD set by h_env_preload");
	vl = strlen(v);
	if (san != NULL && strcmp(san, "tsan") == 0)
		cr_expect(strncmp(v, h_shim(), sl) == 0 && strstr(v, "libtsan") != NULL,
			  "expected LD_PRELOAD to start with %s and hold libtsan, got %s", h_shim(),
			  v);
	else
		cr_expect(vl >= sl && strcmp(v + vl - sl, h_shim()) == 0,
			  "expected LD_PRELOAD to end with %s, got %s", h_shim(), v);
	cr_expect(h_shim()[0] == '/', "expected an absolute shim path, got %s", h_shim());
	h_env_free(&env);
}

Test(harness, passes_only_stdio_descriptors_to_programs, .timeout = 20)
{
	char *argv[] = {"/bin/sh", "-c", "ls /proc/self/fd | wc -l", NULL};
	int extra = open("/dev/null", O_RDONLY); /* not O_CLOEXEC: must not leak */
	struct h_env env;
	struct h_proc p;

	h_env_init(&env);
	h_run(&p, argv, &env, 5000);
	/* 0, 1, 2 and the one ls opens on /proc/self/fd. */
	cr_expect_eq(atoi(p.out), 4, "expected only stdin/out/err in the child (+1 for ls), got %s",
		     p.out);
	close(extra);
	h_proc_free(&p);
	h_env_free(&env);
}

Test(harness, hands_out_distinct_bindable_ports, .timeout = 20)
{
	int ports[20];

	for (int i = 0; i < 20; i++) {
		struct sockaddr_in a = {.sin_family = AF_INET};
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		ports[i] = h_free_port();
		cr_assert(ports[i] > 0 && ports[i] < 65536, "expected a port, got %d", ports[i]);
		for (int j = 0; j < i; j++)
			cr_expect_neq(ports[i], ports[j], "expected distinct ports, got %d twice",
				      ports[i]);
		a.sin_port = htons(ports[i]);
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		cr_expect_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0,
			     "expected to bind port %d", ports[i]);
		close(fd);
	}
}

Test(harness, waits_for_a_listening_port, .timeout = 20)
{
	int port = h_free_port();
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	long long t0 = ms_now();
	int rc;

	rc = h_wait_port(port, 200);
	cr_expect_eq(rc, -1, "expected -1 for port %d nobody listens on, got %d", port, rc);
	cr_expect(ms_now() - t0 >= 200, "expected h_wait_port to wait its time-out");
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0, "expected to bind %d", port);
	cr_assert_eq(listen(fd, 1), 0, "expected to listen");
	rc = h_wait_port(port, 2000);
	cr_expect_eq(rc, 0, "expected 0 for listening port %d, got %d", port, rc);
	cr_expect(h_port_listening(port), "expected h_port_listening(%d)", port);
	close(fd);
}

Test(harness, waits_for_output_from_a_running_program, .timeout = 20)
{
	char *argv[] = {"/bin/sh", "-c", "sleep 0.2; echo READY; exec sleep 30", NULL};
	struct h_env env;
	struct h_proc p;

	h_env_init(&env);
	cr_assert_eq(h_spawn(&p, argv, &env, NULL, 0), 0, "expected sh to start");
	cr_expect_eq(h_wait_output(&p, "READY", 5000), 0, "expected READY, got \"%s\"", p.out);
	cr_expect(!p.reaped, "expected the program still running after READY");
	cr_expect_eq(h_wait_output(&p, "NEVER", 100), -1, "expected no NEVER, got \"%s\"", p.out);
	h_kill(&p);
	cr_expect(p.reaped, "expected h_kill to reap");
	h_kill(&p);
	h_proc_free(&p);
	h_env_free(&env);
}

Test(harness, makes_temporary_directories_and_files, .timeout = 20)
{
	const char *d = h_tmpdir();
	char path[4096];
	struct stat st;
	size_t len = 0;
	char *back;

	cr_assert(stat(d, &st) == 0 && S_ISDIR(st.st_mode), "expected directory %s", d);
	snprintf(path, sizeof(path), "%s/f", d);
	cr_assert_eq(h_write_file(path, "abc\0def", 7), 0, "expected to write %s", path);
	back = h_read_file(path, &len);
	cr_expect(back && len == 7 && memcmp(back, "abc\0def", 7) == 0,
		  "expected the 7 bytes back from %s, got %zu", path, len);
	free(back);
	cr_expect_null(h_read_file("/nonexistent/tlsshim", NULL),
		       "expected NULL for a missing file");
}

Test(harness, makes_the_test_pki, .timeout = 180)
{
	char mkpki[4096];
	const char *files[] = {"ca.pem", "server.pem", "server.key", "client.pem", "client.key"};

	snprintf(mkpki, sizeof(mkpki), "%s/scripts/mkpki", h_src());
	if (access(mkpki, X_OK) != 0)
		cr_skip_test("scripts/mkpki is not there yet");
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		cr_expect_eq(access(h_pki_file(files[i]), R_OK), 0, "expected %s from mkpki",
			     h_pki_file(files[i]));
}
