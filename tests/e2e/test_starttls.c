/*
 * test_starttls.c - end-to-end tests of starttls= (issue 16): real servers and
 * clients from Debian on 127.0.0.1 with a PKI made at test time.
 *
 * PostgreSQL 15: a throwaway cluster (initdb into a temporary directory, run
 * as nobody), psql without TLS under `connect ... tls starttls=postgres`
 * (pg_stat_ssl must show the session encrypted), and the server without TLS
 * under `accept ... tls starttls=postgres` with psql sslmode=verify-full.
 * SMTP: aiosmtpd requiring STARTTLS, python's smtplib without starttls().
 * IMAP: dovecot (when installed) with STARTTLS required. Canaries: a server
 * that refuses the upgrade never receives the program's data.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "e2e/harness.h"

#define CLIENT_MS 30000
#define CANARY    "canary7f3a"
#define PG_BIN    "/usr/lib/postgresql/15/bin/"
#define PYTHON    "/usr/bin/python3"

/* h_run with a plain environment. */
static int run(struct h_proc *p, char *const argv[], int timeout_ms)
{
	return h_run_plain(p, argv, timeout_ms);
}

static struct h_proc *postmaster; /* the test's postgres, if it started one */
static char *work;                /* a directory nobody may enter, removed at the end */

static void teardown(void)
{
	/* postgres: immediate shutdown, its children with it, before the directory goes. */
	if (postmaster != NULL && !postmaster->reaped && kill(postmaster->pid, SIGQUIT) == 0)
		h_wait(postmaster, 10000);
	postmaster = NULL;
	h_teardown();
	if (work != NULL) {
		struct h_proc rm;

		run(&rm, ARGV("rm", "-rf", work), 10000);
		h_proc_free(&rm);
		free(work);
		work = NULL;
	}
}

TestSuite(starttls_pg, .fini = teardown, .timeout = 120);
TestSuite(starttls_smtp, .fini = teardown, .timeout = 60);
TestSuite(starttls_imap, .fini = teardown, .timeout = 60);
TestSuite(starttls_policy, .fini = teardown, .timeout = 30);

static void make_work(void)
{
	char t[] = "/tmp/tlsshim-starttls.XXXXXX";

	cr_assert(mkdtemp(t) != NULL);
	cr_assert_eq(chmod(t, 0755), 0);
	/* postgres runs as nobody: its data directory and socket go here. */
	cr_assert_eq(chown(t, getpwnam("nobody")->pw_uid, getpwnam("nobody")->pw_gid), 0);
	work = strdup(t);
}

/* The environment of a program under the shim with POLICY. */
static void shim_env(struct h_env *env, const char *policy, const char *log_file)
{
	h_env_init(env);
	h_env_preload(env);
	h_env_set(env, "TLSSHIM_POLICY", "%s", policy);
	if (log_file != NULL)
		h_env_set(env, "TLSSHIM_LOG_FILE", "%s", log_file);
}

/* Starts ARGV with ENV (NULL: a plain environment) and waits until PORT listens. */
static struct h_proc *start_server(char *const argv[], struct h_env *env, int port)
{
	return h_server(argv, env, port, NULL);
}

/* ---- PostgreSQL -------------------------------------------------------------------- */

/* initdb into WORK/data as nobody (trust authentication), with the test server cert inside. */
static const char *pg_initdb(void)
{
	struct passwd *pw = getpwnam("nobody");
	const char *data = h_fmt("%s/data", work);
	struct h_proc p;
	int rc;

	cr_assert(pw != NULL);
	rc = run(&p,
		 ARGV("setpriv", h_fmt("--reuid=%u", (unsigned)pw->pw_uid),
		      h_fmt("--regid=%u", (unsigned)pw->pw_gid), "--clear-groups", PG_BIN "initdb",
		      "-D", (char *)data, "-A", "trust", "-U", "postgres", "--no-sync"),
		 60000);
	cr_assert_eq(rc, 0, "initdb: %s %s", p.out, p.err);
	h_proc_free(&p);
	/* PostgreSQL wants its key owned by its user, mode 0600; so does the shim in it. */
	for (int i = 0; i < 2; i++) {
		const char *name = i ? "server.key" : "server.pem";
		size_t len;
		char *b = h_read_file(pki(name), &len);
		const char *dst = h_fmt("%s/%s", data, name);

		cr_assert(b != NULL);
		cr_assert_eq(h_write_file(dst, b, len), 0);
		free(b);
		cr_assert_eq(chown(dst, pw->pw_uid, pw->pw_gid), 0);
		cr_assert_eq(chmod(dst, 0600), 0);
	}
	return data;
}

/* Starts postgres on PORT as nobody, ssl on or off, under ENV (NULL: no shim). */
static struct h_proc *pg_start(const char *data, int port, int ssl, struct h_env *env)
{
	struct passwd *pw = getpwnam("nobody");

	postmaster =
	    start_server(ARGV("setpriv", h_fmt("--reuid=%u", (unsigned)pw->pw_uid),
			      h_fmt("--regid=%u", (unsigned)pw->pw_gid), "--clear-groups",
			      PG_BIN "postgres", "-D", (char *)data, "-p", h_fmt("%d", port), "-k",
			      work, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c",
			      ssl ? "ssl=on" : "ssl=off", "-c", "ssl_cert_file=server.pem", "-c",
			      "ssl_key_file=server.key", "-c", "log_connections=on"),
			 env, port);
	return postmaster;
}

/* psql CONNINFO -c SQL, under POLICY (NULL: none). Returns its exit status; output in *P. */
static int psql(struct h_proc *p, const char *policy, const char *conninfo, const char *sql)
{
	struct h_env env;
	int rc;

	if (policy)
		shim_env(&env, policy, NULL);
	else
		h_env_init(&env);
	h_env_set(&env, "PGCONNECT_TIMEOUT", "15");
	rc = h_run(p, ARGV("psql", "-X", "-At", (char *)conninfo, "-c", (char *)sql), &env,
		   CLIENT_MS);
	h_env_free(&env);
	return rc;
}

/*
 * psql and postgres run with the ASan runtime preloaded (SAN=asan: the shim is
 * ASan-built, these binaries are not) deadlock in a futex, with or without the
 * shim: postgres before it listens, psql at exit (checked with LD_PRELOAD of
 * libasan alone). Under SAN=asan the tests that load the shim into them skip.
 */
static void skip_if_asan_postgres(void)
{
	if (h_san() != NULL && strcmp(h_san(), "asan") == 0)
		cr_skip_test("psql and postgres deadlock with the ASan runtime preloaded "
			     "(without the shim too)");
}

#define SSL_OF_ME "select ssl, version from pg_stat_ssl where pid = pg_backend_pid()"

Test(starttls_pg, client_side_psql_without_tls_is_encrypted_to_the_server)
{
	int port = h_free_port();
	struct h_proc p;
	const char *policy;

	skip_if_asan_postgres();
	make_work();
	pg_start(pg_initdb(), port, 1, NULL);
	policy = h_fmt("connect 127.0.0.1:%d tls starttls=postgres ca=%s", port, pki("ca.pem"));
	/* sslmode=disable: the program speaks plain; prefer: it asks, the shim answers 'N'. */
	for (int i = 0; i < 2; i++) {
		const char *mode = i ? "prefer" : "disable";
		int rc = psql(&p, policy,
			      h_fmt("host=127.0.0.1 port=%d user=postgres dbname=postgres "
				    "sslmode=%s gssencmode=disable",
				    port, mode),
			      SSL_OF_ME "; select 6 * 7");

		cr_assert_eq(rc, 0, "sslmode=%s: psql failed: %s %s", mode, p.out, p.err);
		cr_assert(strstr(p.out, "t|TLSv1.3\n42\n") != NULL,
			  "sslmode=%s: the server sees TLS and the query runs: %s", mode, p.out);
		h_proc_free(&p);
	}
	/* Without the shim the same psql is in cleartext: the check above means something. */
	cr_assert_eq(psql(&p, NULL,
			  h_fmt("host=127.0.0.1 port=%d user=postgres dbname=postgres "
				"sslmode=disable",
				port),
			  SSL_OF_ME),
		     0, "%s", p.err);
	cr_assert(strncmp(p.out, "f|", 2) == 0, "plain psql: %s", p.out);
	h_proc_free(&p);
}

Test(starttls_pg, client_side_refuses_a_server_certificate_it_cannot_verify)
{
	int port = h_free_port();
	struct h_proc p, *pg;
	int rc;

	make_work();
	pg = pg_start(pg_initdb(), port, 1, NULL);
	rc = psql(
	    &p,
	    h_fmt("connect 127.0.0.1:%d tls starttls=postgres ca=%s", port, pki("other-ca.pem")),
	    h_fmt("host=127.0.0.1 port=%d user=" CANARY " dbname=postgres sslmode=disable", port),
	    "select 1");
	cr_assert_neq(rc, 0, "psql must fail: %s", p.out);
	cr_assert(strstr(p.err, "certificate verify failed") != NULL, "log: %s", p.err);
	h_proc_free(&p);
	/* The server never saw the program's startup message (its user name). */
	h_collect(pg, 300);
	cr_assert(strstr(pg->err, CANARY) == NULL, "server log: %s", pg->err);
}

/* A server that refuses the upgrade (ANSWER to the first thing it reads) on PORT. */
static struct h_proc *refusing_server(int port, const char *greeting, const char *answer)
{
	static const char script[] =
	    "import socket,sys\n"
	    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
	    "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(5)\n"
	    "g=sys.argv[2].encode().decode('unicode_escape').encode('latin1')\n"
	    "a=sys.argv[3].encode().decode('unicode_escape').encode('latin1')\n"
	    "while True:\n"
	    "  c,_=s.accept(); c.settimeout(5); got=b''\n"
	    "  try:\n"
	    "    if g: c.sendall(g)\n"
	    "    d=c.recv(4096); got+=d\n"
	    "    if d: c.sendall(a)\n"
	    "    while True:\n"
	    "      d=c.recv(4096)\n"
	    "      if not d: break\n"
	    "      got+=d\n"
	    "  except Exception: pass\n"
	    "  print('GOT:'+repr(got), flush=True); c.close()\n";

	return start_server(
	    ARGV(PYTHON, "-c", (char *)script, h_fmt("%d", port), (char *)greeting, (char *)answer),
	    NULL, port);
}

Test(starttls_pg, client_side_server_answering_N_never_gets_the_programs_data)
{
	int port = h_free_port();
	struct h_proc p, *srv;
	int rc;

	srv = refusing_server(port, "", "N");
	rc = psql(
	    &p, h_fmt("connect 127.0.0.1:%d tls starttls=postgres ca=%s", port, pki("ca.pem")),
	    h_fmt("host=127.0.0.1 port=%d user=" CANARY " dbname=postgres sslmode=disable", port),
	    "select 1");
	cr_assert_neq(rc, 0, "psql must fail");
	cr_assert(strstr(p.err, "starttls=postgres: the server refused TLS: it answered 'N'") !=
		      NULL,
		  "log: %s", p.err);
	h_proc_free(&p);
	cr_assert_eq(h_wait_output(srv, "GOT:", 10000), 0);
	/* Only the SSLRequest: Int32 8, Int32 80877103. */
	cr_assert(strstr(srv->out, "GOT:b'\\x00\\x00\\x00\\x08\\x04\\xd2\\x16/'\n") != NULL,
		  "the server got: %s", srv->out);
	cr_assert(strstr(srv->out, CANARY) == NULL);
}

Test(starttls_pg, server_side_serves_verify_full_clients_and_refuses_cleartext)
{
	int port = h_free_port();
	struct h_env env;
	struct h_proc p, *pg;
	const char *data, *log = h_fmt("%s/shim.log", (make_work(), work));
	int rc;

	skip_if_asan_postgres();
	data = pg_initdb();
	shim_env(&env,
		 h_fmt("accept 127.0.0.1:%d tls starttls=postgres cert=%s/server.pem "
		       "key=%s/server.key",
		       port, data, data),
		 log);
	h_env_set(&env, "TLSSHIM_LOG", "info");
	pg = pg_start(data, port, 0, &env);
	h_env_free(&env);
	rc = psql(&p, NULL,
		  h_fmt("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=verify-full "
			"sslrootcert=%s",
			port, pki("ca.pem")),
		  "select 6 * 7");
	cr_assert_eq(rc, 0, "psql verify-full: %s %s", p.out, p.err);
	cr_assert_str_eq(p.out, "42\n");
	h_proc_free(&p);
	/* A client that does not ask for TLS is refused with a message psql shows. */
	rc = psql(
	    &p, NULL,
	    h_fmt("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable", port),
	    "select 1");
	cr_assert_neq(rc, 0, "sslmode=disable must be refused: %s", p.out);
	cr_assert(strstr(p.err, "requires TLS") != NULL, "psql: %s", p.err);
	h_proc_free(&p);
	/* A client that does not trust the shim's certificate stops before its startup message. */
	rc = psql(&p, NULL,
		  h_fmt("host=127.0.0.1 port=%d user=" CANARY " dbname=postgres "
			"sslmode=verify-full sslrootcert=%s",
			port, pki("other-ca.pem")),
		  "select 1");
	cr_assert_neq(rc, 0);
	h_proc_free(&p);
	h_collect(pg, 300);
	cr_assert(strstr(pg->err, CANARY) == NULL, "server log: %s", pg->err);
	{
		char *l = h_read_file(log, NULL);

		cr_assert(l != NULL &&
			      strstr(l, "starttls=postgres: the client did not ask for TLS"),
			  "shim log: %s", l ? l : "(none)");
		free(l);
	}
}

Test(starttls_pg, server_side_auto_serves_cleartext_clients_too)
{
	int port = h_free_port();
	struct h_env env;
	struct h_proc p;
	const char *data;

	skip_if_asan_postgres();
	make_work();
	data = pg_initdb();
	shim_env(&env,
		 h_fmt("accept 127.0.0.1:%d auto starttls=postgres cert=%s/server.pem "
		       "key=%s/server.key",
		       port, data, data),
		 NULL);
	pg_start(data, port, 0, &env);
	h_env_free(&env);
	for (int i = 0; i < 2; i++) {
		const char *mode = i ? "disable" : "verify-full";
		int rc = psql(&p, NULL,
			      h_fmt("host=127.0.0.1 port=%d user=postgres dbname=postgres "
				    "sslmode=%s sslrootcert=%s",
				    port, mode, pki("ca.pem")),
			      "select 6 * 7");

		cr_assert_eq(rc, 0, "sslmode=%s: %s %s", mode, p.out, p.err);
		cr_assert_str_eq(p.out, "42\n");
		h_proc_free(&p);
	}
}

/* ---- policy ------------------------------------------------------------------------ */

Test(starttls_policy, check_and_explain_name_the_protocol_and_errors_point_at_it)
{
	struct h_proc p;
	int rc;

	rc = run(&p,
		 ARGV((char *)h_cmd(), "explain", "-p",
		      "connect 127.0.0.1:5432 tls starttls=postgres", "connect", "127.0.0.1:5432"),
		 10000);
	cr_assert_eq(rc, 0, "%s %s", p.out, p.err);
	cr_assert(strstr(p.out, "starttls:") && strstr(p.out, "postgres: tlsshim sends SSLRequest"),
		  "%s", p.out);
	h_proc_free(&p);
	rc = run(&p,
		 ARGV((char *)h_cmd(), "check", "-p",
		      "connect *:25 tls starttls=smtp; connect *:143 tls starttls=imap"),
		 10000);
	cr_assert_eq(rc, 0, "%s %s", p.out, p.err);
	cr_assert(strstr(p.out, "starttls=smtp") && strstr(p.out, "starttls=imap"), "%s", p.out);
	h_proc_free(&p);
	rc = run(&p,
		 ARGV((char *)h_cmd(), "explain", "-p",
		      h_fmt("accept 127.0.0.1:2525 tls starttls=smtp cert=%s key=%s",
			    pki("server.pem"), pki("server.key")),
		      "accept", "127.0.0.1:2525"),
		 10000);
	cr_assert_eq(rc, 0, "%s %s", p.out, p.err);
	cr_assert(strstr(p.out, "smtp: tlsshim adds STARTTLS to the program's EHLO answer"), "%s",
		  p.out);
	h_proc_free(&p);
	static const struct {
		const char *rule, *msg;
	} bad[] = {
	    {"connect *:25 tls starttls=pop3",
	     ":1:27: starttls: expected 'postgres', 'smtp' or 'imap', got 'pop3'"},
	    {"connect *:25 plain starttls=smtp", ":1:20: options have no effect on a 'plain'"},
	    {"accept *:143 tls cert=C key=K starttls=imap", "starttls=imap applies to connect"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rc = run(&p, ARGV((char *)h_cmd(), "check", "-p", (char *)bad[i].rule), 10000);
		cr_assert_eq(rc, 2, "%s: %s", bad[i].rule, p.out);
		cr_assert(strstr(p.err, bad[i].msg) != NULL, "%s: %s", bad[i].rule, p.err);
		h_proc_free(&p);
	}
}

/* ---- SMTP -------------------------------------------------------------------------- */

/* aiosmtpd requiring STARTTLS: prints each message with whether it came over TLS. */
static const char smtp_server_py[] =
    "import ssl, sys, time\n"
    "from aiosmtpd.controller import Controller\n"
    "class H:\n"
    "    async def handle_DATA(self, server, session, envelope):\n"
    "        print('GOT tls=%s helo=%s from=%s data=%r' % (session.ssl is not None,\n"
    "              session.host_name, envelope.mail_from, envelope.content), flush=True)\n"
    "        return '250 OK'\n"
    "ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)\n"
    "ctx.load_cert_chain(sys.argv[2], sys.argv[3])\n"
    "c = Controller(H(), hostname='127.0.0.1', port=int(sys.argv[1]), tls_context=ctx,\n"
    "               require_starttls=True)\n"
    "c.start(); print('READY', flush=True)\n"
    "time.sleep(3600)\n";

/* smtplib without starttls(): prints the greeting, whether STARTTLS is offered, and sends. */
static const char smtp_client_py[] =
    "import smtplib, sys\n"
    "s = smtplib.SMTP(timeout=20)\n"
    "code, msg = s.connect('127.0.0.1', int(sys.argv[1]))\n"
    "print('GREETING', code, msg.decode(), flush=True)\n"
    "s.ehlo('client.test')\n"
    "print('STARTTLS offered:', s.has_extn('starttls'), flush=True)\n"
    "s.sendmail('" CANARY "@client.test', ['to@x.test'], 'Subject: hi\\r\\n\\r\\nbody\\r\\n')\n"
    "s.quit()\n"
    "print('SENT', flush=True)\n";

/* Runs python3 program TEXT with PORT under the shim with POLICY; returns its exit code. */
static int py_client(struct h_proc *p, const char *text, int port, const char *policy)
{
	struct h_env env;
	int rc;

	shim_env(&env, policy, NULL);
	rc = h_run(p, ARGV(PYTHON, "-c", (char *)text, h_fmt("%d", port)), &env, CLIENT_MS);
	h_env_free(&env);
	return rc;
}

/* The SMTP server requiring STARTTLS (smtp_server_py) on PORT, with the test certificate. */
static struct h_proc *start_smtp(int port)
{
	return start_server(ARGV(PYTHON, "-c", (char *)smtp_server_py, h_fmt("%d", port),
				 pki("server.pem"), pki("server.key")),
			    NULL, port);
}

/*
 * The client rule for it. name=: smtplib resolves the machine's own name
 * before it connects (getfqdn).
 */
static const char *smtp_rule(int port)
{
	return h_fmt("connect 127.0.0.1:%d tls starttls=smtp ca=%s name=localhost", port,
		     pki("ca.pem"));
}

Test(starttls_smtp, client_side_smtplib_without_starttls_delivers_over_tls)
{
	int port = h_free_port();
	struct h_proc p, *srv;
	int rc;

	srv = start_smtp(port);
	rc = py_client(&p, smtp_client_py, port, smtp_rule(port));
	cr_assert_eq(rc, 0, "smtplib: %s %s", p.out, p.err);
	/* The greeting from before TLS; the EHLO answer from inside it (no STARTTLS). */
	cr_assert(strstr(p.out, "GREETING 220 localhost Python SMTP") != NULL, "%s", p.out);
	cr_assert(strstr(p.out, "STARTTLS offered: False\nSENT\n") != NULL, "%s", p.out);
	h_proc_free(&p);
	cr_assert_eq(h_wait_output(srv, "GOT ", 10000), 0, "%s", srv->err);
	cr_assert(strstr(srv->out, "GOT tls=True helo=client.test from=" CANARY "@client.test") !=
		      NULL,
		  "the server saw: %s", srv->out);
}

Test(starttls_smtp, client_side_server_without_starttls_never_gets_the_programs_data)
{
	int port = h_free_port();
	struct h_proc p, *srv;
	int rc;

	srv = refusing_server(port, "220 mx.test ESMTP\\r\\n", "250-mx.test\\r\\n250 SIZE\\r\\n");
	rc = py_client(&p, smtp_client_py, port, smtp_rule(port));
	cr_assert_neq(rc, 0, "smtplib must fail: %s", p.out);
	cr_assert(strstr(p.err, "starttls=smtp: the server does not offer STARTTLS; its EHLO "
				"answer: \"250-mx.test\\x0d\\x0a250 SIZE\\x0d\\x0a\"") != NULL,
		  "log: %s", p.err);
	h_proc_free(&p);
	cr_assert_eq(h_wait_output(srv, "GOT:", 10000), 0);
	cr_assert(strstr(srv->out, "GOT:b'EHLO [127.0.0.1]\\r\\n'\n") != NULL, "the server got: %s",
		  srv->out);
	cr_assert(strstr(srv->out, CANARY) == NULL && strstr(srv->out, "client.test") == NULL);
}

/* ---- IMAP -------------------------------------------------------------------------- */

/* dovecot with a throwaway configuration in WORK: STARTTLS required for LOGIN. */
static struct h_proc *dovecot(int port)
{
	const char *conf = h_fmt("%s/dovecot.conf", work);
	const char *text = h_fmt(
	    "base_dir = %s/run\nstate_dir = %s/state\nlog_path = /dev/stderr\n"
	    "info_log_path = /dev/stderr\nprotocols = imap\nlisten = 127.0.0.1\n"
	    "ssl = required\nssl_cert = <%s\nssl_key = <%s\ndisable_plaintext_auth = yes\n"
	    "auth_mechanisms = plain\n"
	    "passdb {\n  driver = static\n  args = password=secret\n}\n"
	    "userdb {\n  driver = static\n  args = uid=nobody gid=nogroup home=%s/home/%%u\n}\n"
	    "mail_location = maildir:~/Maildir\n"
	    "service imap-login {\n  chroot =\n  inet_listener imap {\n    address = 127.0.0.1\n"
	    "    port = %d\n  }\n  inet_listener imaps {\n    port = 0\n  }\n}\n"
	    "service anvil {\n  chroot =\n}\n",
	    work, work, pki("server.pem"), pki("server.key"), work, port);

	if (access("/usr/sbin/dovecot", X_OK) != 0)
		cr_skip_test(
		    "dovecot is not installed (scripts/setup-deps installs dovecot-imapd)");
	cr_assert_eq(h_write_file(conf, text, strlen(text)), 0);
	cr_assert_eq(mkdir(h_fmt("%s/home", work), 0755), 0);
	cr_assert_eq(chown(h_fmt("%s/home", work), getpwnam("nobody")->pw_uid, 0), 0);
	return start_server(ARGV("/usr/sbin/dovecot", "-F", "-c", (char *)conf), NULL, port);
}

static const char imap_client_py[] =
    "import imaplib, sys\n"
    "M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]), timeout=20)\n"
    "print('WELCOME', M.welcome.decode(), flush=True)\n"
    "print('CAPS', ' '.join(M.capabilities), flush=True)\n"
    "print('LOGIN', M.login('" CANARY "', 'secret')[0], flush=True)\n"
    "print('SELECT', M.select('INBOX')[0], flush=True)\n"
    "M.logout()\n";

Test(starttls_imap, client_side_imaplib_without_starttls_logs_in_over_tls)
{
	int port = h_free_port();
	struct h_proc p, *srv;
	int rc;

	make_work();
	srv = dovecot(port);
	rc = py_client(&p, imap_client_py, port,
		       h_fmt("connect 127.0.0.1:%d tls starttls=imap ca=%s name=localhost", port,
			     pki("ca.pem")));
	cr_assert_eq(rc, 0, "imaplib: %s %s", p.out, p.err);
	/* The greeting without its pre-TLS capabilities; those read inside TLS. */
	cr_assert(strstr(p.out, "WELCOME * OK Dovecot") != NULL, "%s", p.out);
	cr_assert(strstr(p.out, "CAPS IMAP4REV1") != NULL, "%s", p.out);
	cr_assert(strstr(p.out, "STARTTLS") == NULL && strstr(p.out, "LOGINDISABLED") == NULL,
		  "capabilities from before TLS: %s", p.out);
	cr_assert(strstr(p.out, "LOGIN OK\nSELECT OK\n") != NULL, "%s", p.out);
	h_proc_free(&p);
	h_collect(srv, 300);
	cr_assert(strstr(srv->err, "Login: user=<" CANARY ">") && strstr(srv->err, ", TLS, "),
		  "dovecot saw: %s", srv->err);
}

Test(starttls_imap, client_side_server_refusing_starttls_never_gets_the_programs_data)
{
	int port = h_free_port();
	struct h_proc p, *srv;
	int rc;

	srv = refusing_server(port, "* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\\r\\n",
			      "tlsshim2 NO \\x1b[31mnot now\\r\\n");
	rc = py_client(&p, imap_client_py, port,
		       h_fmt("connect 127.0.0.1:%d tls starttls=imap ca=%s name=localhost", port,
			     pki("ca.pem")));
	cr_assert_neq(rc, 0, "imaplib must fail: %s", p.out);
	cr_assert(strstr(p.err, "starttls=imap: the server refused STARTTLS: \"tlsshim2 NO "
				"\\x1b[31mnot now\\x0d\\x0a\"") != NULL,
		  "log (escaped): %s", p.err);
	h_proc_free(&p);
	cr_assert_eq(h_wait_output(srv, "GOT:", 10000), 0);
	cr_assert(strstr(srv->out, "GOT:b'tlsshim2 STARTTLS\\r\\n'\n") != NULL,
		  "the server got: %s", srv->out);
}

Test(starttls_smtp, blocking_and_nonblocking_programs_see_the_greeting_first)
{
	int port = h_free_port();
	const char *policy;

	start_smtp(port);
	policy = smtp_rule(port);
	/* Blocking I/O, then a non-blocking socket driven by poll() (tcpcat -N). */
	for (int nb = 0; nb < 2; nb++) {
		struct h_env env;
		struct h_proc p;
		int rc;

		shim_env(&env, policy, NULL);
		rc = h_run(&p,
			   nb ? ARGV((char *)h_prog("tcpcat"), "-N", "127.0.0.1", h_fmt("%d", port),
				     "EHLO prog.test\\r\\nQUIT\\r\\n")
			      : ARGV((char *)h_prog("tcpcat"), "127.0.0.1", h_fmt("%d", port),
				     "EHLO prog.test\\r\\nQUIT\\r\\n"),
			   &env, CLIENT_MS);
		h_env_free(&env);
		cr_assert_eq(rc, 0, "nb=%d: %s %s", nb, p.out, p.err);
		cr_assert(strncmp(p.out, "220 localhost Python SMTP", 25) == 0,
			  "nb=%d: the greeting comes first: %s", nb, p.out);
		cr_assert(strstr(p.out, "\r\n250-localhost\r\n") != NULL, "nb=%d: %s", nb, p.out);
		cr_assert(strstr(p.out, "STARTTLS") == NULL, "nb=%d: %s", nb, p.out);
		cr_assert(strstr(p.out, "\r\n221 ") != NULL, "nb=%d: %s", nb, p.out);
		h_proc_free(&p);
	}
}

/* A non-blocking client driven by SELECTOR (EpollSelector, SelectSelector, PollSelector). */
static const char selector_client_py[] = "import selectors, socket, sys\n"
					 "sel = getattr(selectors, sys.argv[2])()\n"
					 "s = socket.socket(); s.setblocking(False)\n"
					 "s.connect_ex(('127.0.0.1', int(sys.argv[1])))\n"
					 "sel.register(s, selectors.EVENT_WRITE)\n"
					 "assert sel.select(20), 'connect timed out'\n"
					 "sel.modify(s, selectors.EVENT_READ)\n"
					 "out = b''\n"
					 "while b'\\r\\n' not in out:\n"
					 "    assert sel.select(20), 'no greeting'\n"
					 "    out += s.recv(4096)\n"
					 "s.send(b'EHLO prog.test\\r\\nQUIT\\r\\n')\n"
					 "while True:\n"
					 "    assert sel.select(20), 'no answer'\n"
					 "    d = s.recv(4096)\n"
					 "    if not d: break\n"
					 "    out += d\n"
					 "sys.stdout.write(out.decode())\n";

Test(starttls_smtp, epoll_select_and_poll_programs_read_the_greeting_then_talk_in_tls)
{
	static const char *const selectors[] = {"EpollSelector", "SelectSelector", "PollSelector"};
	int port = h_free_port();
	const char *policy;

	start_smtp(port);
	policy = smtp_rule(port);
	for (size_t i = 0; i < 3; i++) {
		struct h_env env;
		struct h_proc p;
		int rc;

		shim_env(&env, policy, NULL);
		rc = h_run(&p,
			   ARGV(PYTHON, "-c", (char *)selector_client_py, h_fmt("%d", port),
				(char *)selectors[i]),
			   &env, CLIENT_MS);
		h_env_free(&env);
		cr_assert_eq(rc, 0, "%s: %s %s", selectors[i], p.out, p.err);
		cr_assert(strncmp(p.out, "220 localhost Python SMTP", 25) == 0, "%s: %s",
			  selectors[i], p.out);
		/* aiosmtpd offers STARTTLS before TLS only: its absence shows where EHLO went. */
		cr_assert(strstr(p.out, "\r\n250-localhost\r\n") && strstr(p.out, "\r\n221 ") &&
			      !strstr(p.out, "STARTTLS"),
			  "%s: the EHLO went inside TLS: %s", selectors[i], p.out);
		h_proc_free(&p);
	}
}

/* ---- SMTP, server side ------------------------------------------------------------- */

/* aiosmtpd without any TLS: it never offers or knows STARTTLS. */
static const char plain_smtp_server_py[] =
    "import sys, time\n"
    "from aiosmtpd.controller import Controller\n"
    "class H:\n"
    "    async def handle_DATA(self, server, session, envelope):\n"
    "        print('GOT helo=%s from=%s data=%r' % (session.host_name, envelope.mail_from,\n"
    "              envelope.content), flush=True)\n"
    "        return '250 OK'\n"
    "c = Controller(H(), hostname='127.0.0.1', port=int(sys.argv[1]))\n"
    "c.start(); print('READY', flush=True)\n"
    "time.sleep(3600)\n";

/* smtplib: EHLO, starttls() when argv[3] is "tls" (verifying argv[2]), EHLO, a message. */
static const char starttls_client_py[] =
    "import smtplib, ssl, sys\n"
    "s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=20)\n"
    "s.ehlo('client.test')\n"
    "print('OFFERED', s.has_extn('starttls'), flush=True)\n"
    "if sys.argv[3] == 'tls':\n"
    "    ctx = ssl.create_default_context(cafile=sys.argv[2])\n"
    "    ctx.check_hostname = False\n"
    "    print('STARTTLS', s.starttls(context=ctx)[0], s.sock.version(), flush=True)\n"
    "    s.ehlo('client.test')\n"
    "    print('OFFERED AFTER', s.has_extn('starttls'), flush=True)\n"
    "try:\n"
    "    s.sendmail('" CANARY "@client.test', ['to@x.test'], 'Subject: hi\\r\\n\\r\\nbody\\r\\n')\n"
    "    print('SENT', flush=True)\n"
    "except smtplib.SMTPException as e:\n"
    "    print('REFUSED', e, flush=True)\n"
    "s.quit()\n";

Test(starttls_smtp, server_side_plain_aiosmtpd_gets_mail_over_starttls)
{
	int port = h_free_port();
	struct h_env env;
	struct h_proc p, *srv;
	int rc;

	shim_env(&env,
		 h_fmt("accept 127.0.0.1:%d tls starttls=smtp cert=%s key=%s", port,
		       pki("server.pem"), pki("server.key")),
		 NULL);
	h_env_set(&env, "PYTHONUNBUFFERED", "1");
	srv = start_server(ARGV(PYTHON, "-c", (char *)plain_smtp_server_py, h_fmt("%d", port)),
			   &env, port);
	h_env_free(&env);
	/* A client that upgrades: the shim offered STARTTLS and answered it. */
	rc = run(
	    &p,
	    ARGV(PYTHON, "-c", (char *)starttls_client_py, h_fmt("%d", port), pki("ca.pem"), "tls"),
	    CLIENT_MS);
	cr_assert_eq(rc, 0, "%s %s", p.out, p.err);
	cr_assert(strstr(p.out,
			 "OFFERED True\nSTARTTLS 220 TLSv1.3\nOFFERED AFTER False\nSENT\n") != NULL,
		  "%s", p.out);
	h_proc_free(&p);
	cr_assert_eq(h_wait_output(srv, "GOT ", 10000), 0, "%s", srv->err);
	cr_assert(strstr(srv->out, "GOT helo=client.test from=" CANARY "@client.test") != NULL,
		  "%s", srv->out);
	/* A client that does not: its mail is refused (530) and never reaches the program. */
	rc = run(&p,
		 ARGV(PYTHON, "-c", (char *)starttls_client_py, h_fmt("%d", port), pki("ca.pem"),
		      "plain"),
		 CLIENT_MS);
	cr_assert_eq(rc, 0, "%s %s", p.out, p.err);
	cr_assert(strstr(p.out, "REFUSED (530, b'5.7.0 Must issue a STARTTLS command first'") !=
		      NULL,
		  "%s", p.out);
	h_proc_free(&p);
	h_collect(srv, 300);
	cr_assert(strstr(srv->out, "GOT ") == strrchr(srv->out, 'G') - 0 ||
		      strstr(strstr(srv->out, "GOT ") + 4, "GOT ") == NULL,
		  "one message only: %s", srv->out);
}
