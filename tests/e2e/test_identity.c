/*
 * test_identity.c - end-to-end tests of the checks that must not be
 * sidestepped (issue 10): policies that would skip a check do not start,
 * pins count only keys the verification vouches for, client certificates
 * verify only against client-ca, a connection under an address rule never
 * verifies a guessed name, peer text cannot forge log lines, a
 * secure-execution process ignores TLSSHIM_*, key-log and log files stay
 * private, and the TLS 1.2 suites are ECDHE + AEAD only.
 *
 * Real peers (openssl s_server / s_client, curl, python3, tests/progs) with
 * certificates made at test time; where an attacker is the peer, a canary
 * the program sends must never reach it. Logs are checked line by line.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "e2e/harness.h"

#define CLIENT_MS 20000
#define CANARY    "canary-7f3a-must-not-leak"

/* ---- helpers ----------------------------------------------------------------------- */

TestSuite(identity_policy, .fini = h_teardown, .timeout = 60);
TestSuite(identity_pins, .fini = h_teardown, .timeout = 60);
TestSuite(identity_mtls, .fini = h_teardown, .timeout = 60);
TestSuite(identity_names, .fini = h_teardown, .timeout = 60);
TestSuite(identity_log, .fini = h_teardown, .timeout = 60);
TestSuite(identity_secure, .fini = h_teardown, .timeout = 60);
TestSuite(identity_files, .fini = h_teardown, .timeout = 60);
TestSuite(identity_ciphers, .fini = h_teardown, .timeout = 60);
TestSuite(identity_explain, .fini = h_teardown, .timeout = 60);

/* Starts ARGV (under the shim with POLICY unless NULL) and waits until it listens on PORT. */
static struct h_proc *start_server(char *const argv[], int port, const char *policy)
{
	struct h_proc *p;
	struct h_env env;

	h_env_init(&env);
	if (policy) {
		h_env_preload(&env);
		h_env_set(&env, "TLSSHIM_POLICY", "%s", policy);
		h_env_set(&env, "PYTHONUNBUFFERED", "1");
	}
	p = h_server(argv, &env, port, NULL);
	h_env_free(&env);
	return p;
}

/* tls_sink PORT CERT KEY (paths). */
static struct h_proc *start_sink(int port, const char *cert, const char *key)
{
	return start_server(
	    ARGV((char *)h_prog("tls_sink"), h_fmt("%d", port), (char *)cert, (char *)key), port,
	    NULL);
}

static int run_env(struct h_proc *p, struct h_env *e, char *const argv[])
{
	int rc = h_run(p, argv, e, CLIENT_MS);

	h_env_free(e);
	return rc;
}

/* tcpcat -h HOST PORT SEND under the shim with POLICY (LOG: TLSSHIM_LOG or NULL). */
static int tcpcat(struct h_proc *p, const char *policy, const char *log, const char *host, int port,
		  const char *send)
{
	struct h_env e;

	h_env_shim(&e, policy);
	if (log)
		h_env_set(&e, "TLSSHIM_LOG", "%s", log);
	return run_env(
	    p, &e,
	    ARGV((char *)h_prog("tcpcat"), "-h", (char *)host, h_fmt("%d", port), (char *)send));
}

/* A new file in a fresh directory holding the files A and B one after the other. */
static char *concat_files(const char *a, const char *b)
{
	char *path = h_fmt("%s/chain.pem", h_tmpdir());
	char *x = h_read_file(a, NULL), *y = h_read_file(b, NULL);
	char *both = h_fmt("%s%s", x, y);

	cr_assert_eq(h_write_file(path, both, strlen(both)), 0);
	free(x);
	free(y);
	return path;
}

/* Waits (up to 5 s) for NEEDLE in P's output. */
static int wait_for(struct h_proc *p, const char *needle)
{
	for (int i = 0; i < 250; i++) {
		h_collect(p, 0);
		if (strstr(p->out, needle) || strstr(p->err, needle))
			return 1;
		if (p->reaped)
			break;
		usleep(20000);
	}
	return 0;
}

/*
 * Every line of TEXT that starts like a log line must be one of PID's own
 * lines, and no control character but '\n' may appear at all: a peer's text
 * must not be able to start a line or drive a terminal. Returns the number of
 * tlsshim lines.
 */
static int check_log_lines(const char *text, pid_t pid)
{
	const char *own = h_fmt("tlsshim[%d]: ", (int)pid);
	int n = 0;

	for (const unsigned char *c = (const unsigned char *)text; *c; c++)
		cr_expect(*c == '\n' || (*c >= 0x20 && *c != 0x7f),
			  "expected no control byte in the log, found 0x%02x in:\n%s", *c, text);
	for (const char *l = text; *l;) {
		const char *end = strchr(l, '\n');
		size_t len = end ? (size_t)(end - l) : strlen(l);

		if (strncmp(l, "tlsshim", 7) == 0) {
			cr_expect(
			    strncmp(l, own, strlen(own)) == 0,
			    "expected every tlsshim line to be the server's own (%s), got: %.*s",
			    own, (int)len, l);
			n++;
		}
		l += len + (end ? 1 : 0);
	}
	return n;
}

/* ---- 1. policies that would skip a check do not start ------------------------------ */

Test(identity_policy, auto_with_client_ca_or_allow_does_not_start)
{
	const char *pol = h_fmt("accept 127.0.0.1:%d auto cert=%s key=%s client-ca=%s "
				"allow=dns:api.internal",
				h_free_port(), pki("server.pem"), pki("server.key"), pki("ca.pem"));
	unsigned col = (unsigned)(strstr(pol, "client-ca=") - pol) + 1;
	char *want = h_fmt("tlsshim: TLSSHIM_POLICY:1:%u: 'client-ca' cannot be used with 'auto' "
			   "(a cleartext client cannot be authenticated); use 'tls' to require "
			   "client certificates\n",
			   col);
	struct h_proc p;
	struct h_env e;
	int rc;

	h_env_shim(&e, pol);
	rc = run_env(&p, &e, ARGV("/usr/bin/python3", "-c", "print('" CANARY "')"));
	cr_expect_eq(rc, 78, "expected status 78 before main, got %d; stderr:\n%s", rc, p.err);
	cr_expect(!strstr(p.out, CANARY), "expected the program never to run, it printed:\n%s",
		  p.out);
	cr_expect(strstr(p.err, want), "expected\n%s\nin stderr:\n%s", want, p.err);
	cr_expect(strstr(p.err, "'allow' cannot be used with 'auto'"),
		  "expected the allow= error too, stderr:\n%s", p.err);
	h_proc_free(&p);
	/* check says the same, with exit status 2. */
	h_env_init(&e);
	rc = run_env(&p, &e, ARGV((char *)h_cmd(), "check", "-p", (char *)pol));
	cr_expect_eq(rc, 2, "expected check to exit 2, got %d", rc);
	cr_expect(strstr(p.err, want + strlen("tlsshim: ")), "expected check to say\n%s\ngot:\n%s",
		  want, p.err);
	h_proc_free(&p);
}

/* ---- 2. pins ------------------------------------------------------------------------- */

/*
 * The attacker's server: a self-signed leaf with the real CA appended. With
 * insecure, a pin of that CA must not match (only the end-entity key counts);
 * without insecure, the chain does not verify. The canary never arrives.
 */
Test(identity_pins, insecure_pin_never_matches_an_appended_ca)
{
	int port = h_free_port();
	char *chain = concat_files(pki("selfsigned.pem"), pki("ca.pem"));
	char *ca_pin = h_spki_pin(pki("ca.pem"));
	struct h_proc *sink = start_sink(port, chain, pki("selfsigned.key"));
	struct h_proc p;
	int rc;

	rc = tcpcat(&p, h_fmt("connect localhost:%d tls insecure pin=%s", port, ca_pin), NULL,
		    "localhost", port, CANARY);
	cr_expect_neq(rc, 0, "expected the connection to be refused, tcpcat got:\n%s", p.out);
	cr_expect(strstr(p.err, "connect: Connection refused"),
		  "expected connect() to fail with ECONNREFUSED, stderr:\n%s", p.err);
	cr_expect(strstr(p.err, h_fmt("tlsshim[%d]: error: connect localhost:%d", p.pid, port)) &&
		      strstr(p.err, "certificate pin mismatch"),
		  "expected an error line naming the pin mismatch, stderr:\n%s", p.err);
	h_proc_free(&p);
	rc = tcpcat(&p, h_fmt("connect localhost:%d tls ca=%s pin=%s", port, pki("ca.pem"), ca_pin),
		    NULL, "localhost", port, CANARY);
	cr_expect_neq(rc, 0, "expected the unverifiable chain to be refused, got:\n%s", p.out);
	h_proc_free(&p);
	h_collect(sink, 300);
	cr_expect(!strstr(sink->out, "received"),
		  "expected the canary never to reach the attacker, it said:\n%s", sink->out);
}

Test(identity_pins, insecure_pin_counts_only_the_end_entity_key)
{
	int port = h_free_port(), port2 = h_free_port();
	struct h_proc *sink;
	struct h_proc p;
	int rc;

	/* The genuine server, whose chain does include the CA: under insecure only its own key. */
	sink = start_sink(port, pki("server.pem"), pki("server.key"));
	rc = tcpcat(
	    &p, h_fmt("connect localhost:%d tls insecure pin=%s", port, h_spki_pin(pki("ca.pem"))),
	    NULL, "localhost", port, CANARY);
	cr_expect_neq(rc, 0, "expected a CA pin not to count under insecure, got:\n%s", p.out);
	h_proc_free(&p);
	rc = tcpcat(
	    &p,
	    h_fmt("connect localhost:%d tls insecure pin=%s", port, h_spki_pin(pki("server.pem"))),
	    NULL, "localhost", port, "ping");
	cr_expect_eq(rc, 0, "expected the end-entity pin to match under insecure, stderr:\n%s",
		     p.err);
	h_proc_free(&p);
	/* Verified: a pin of the trust anchor matches. */
	rc = tcpcat(&p,
		    h_fmt("connect localhost:%d tls ca=%s pin=%s", port, pki("ca.pem"),
			  h_spki_pin(pki("ca.pem"))),
		    NULL, "localhost", port, "ping");
	cr_expect_eq(rc, 0, "expected a CA pin to match the verified chain, stderr:\n%s", p.err);
	h_proc_free(&p);
	(void)sink;
	(void)port2;
}

/* ---- 3. client certificates verify only against client-ca -------------------------- */

Test(identity_mtls, ca_on_accept_does_not_start_and_other_ca_clients_are_refused)
{
	int port = h_free_port();
	const char *base = h_fmt("accept 127.0.0.1:%d tls cert=%s key=%s client-ca=%s", port,
				 pki("server.pem"), pki("server.key"), pki("ca.pem"));
	const char *widened = h_fmt("%s ca=%s", base, pki("other-ca.pem"));
	const char *dir = h_tmpdir();
	struct h_proc p, *srv;
	struct h_env e;
	int rc;

	cr_assert_eq(h_write_file(h_fmt("%s/secret", dir), CANARY, strlen(CANARY)), 0);
	/* ca= beside client-ca would let other-ca's clients in: refused at start. */
	h_env_shim(&e, widened);
	rc = run_env(&p, &e,
		     ARGV("/usr/bin/python3", "-m", "http.server", "-b", "127.0.0.1", "--directory",
			  (char *)dir, h_fmt("%d", port)));
	cr_expect_eq(rc, 78, "expected status 78, got %d; stderr:\n%s", rc, p.err);
	cr_expect(strstr(p.err, "'ca' applies to connect rules only: client certificates verify "
				"only against client-ca; did you mean 'client-ca='?"),
		  "expected the suggestion, stderr:\n%s", p.err);
	h_proc_free(&p);
	/* Under client-ca alone, a client certificate from another CA gets nothing. */
	srv = start_server(ARGV("/usr/bin/python3", "-m", "http.server", "-b", "127.0.0.1",
				"--directory", (char *)dir, h_fmt("%d", port)),
			   port, base);
	h_env_init(&e);
	rc = run_env(&p, &e,
		     ARGV("curl", "-sS", "--max-time", "10", "--cacert", pki("ca.pem"), "--cert",
			  pki("other-client.pem"), "--key", pki("other-client.key"),
			  h_fmt("https://localhost:%d/secret", port)));
	cr_expect_neq(rc, 0, "expected other-ca's client to be refused, got:\n%s", p.out);
	cr_expect(!strstr(p.out, CANARY), "expected no secret for other-ca's client");
	h_proc_free(&p);
	h_env_init(&e);
	rc = run_env(&p, &e,
		     ARGV("curl", "-sS", "--max-time", "10", "--cacert", pki("ca.pem"), "--cert",
			  pki("client.pem"), "--key", pki("client.key"),
			  h_fmt("https://localhost:%d/secret", port)));
	cr_expect(rc == 0 && strstr(p.out, CANARY),
		  "expected client-ca's client to be served, rc %d:\n%s%s", rc, p.out, p.err);
	h_proc_free(&p);
	(void)srv;
}

/* ---- 4. one name per connection ---------------------------------------------------- */

/*
 * A python3 program that resolves names on helper threads and connects from
 * the main thread to 127.0.0.1:PORT, where a private /etc/hosts (a mount
 * namespace of its own) says server.test and wrong.test are 127.0.0.1.
 * MODE: "both" (helpers resolve server.test, then wrong.test), "own" (main
 * resolves server.test, a helper wrong.test after it), "helper" (a helper
 * resolves server.test only). Prints "reply: ..." or "error: ERRNO-NAME".
 */
static const char *names_script =
    "import socket, sys, threading, errno\n"
    "mode, port = sys.argv[1], int(sys.argv[2])\n"
    "def res(n):\n"
    "    t = threading.Thread(target=socket.getaddrinfo, args=(n, port))\n"
    "    t.start(); t.join()\n"
    "if mode == 'both':\n"
    "    res('server.test'); res('wrong.test')\n"
    "elif mode == 'own':\n"
    "    socket.getaddrinfo('server.test', port); res('wrong.test')\n"
    "else:\n"
    "    res('server.test')\n"
    "s = socket.socket()\n"
    "try:\n"
    "    s.connect(('127.0.0.1', port))\n"
    "except OSError as e:\n"
    "    print('error: ' + errno.errorcode[e.errno]); sys.exit(1)\n"
    "s.sendall(b'" CANARY "'); s.shutdown(socket.SHUT_WR)\n"
    "print('reply: ' + s.makefile().read().strip())\n";

static int run_names(struct h_proc *p, const char *mode, int port)
{
	const char *dir = h_tmpdir();
	const char *hosts = h_fmt("%s/hosts", dir), *script = h_fmt("%s/names.py", dir);
	const char *text = "127.0.0.1 localhost\n127.0.0.1 server.test\n127.0.0.1 wrong.test\n";
	struct h_env e;

	if (geteuid() != 0)
		cr_skip_test("needs root for a private /etc/hosts (unshare -m)");
	cr_assert_eq(h_write_file(hosts, text, strlen(text)), 0);
	cr_assert_eq(h_write_file(script, names_script, strlen(names_script)), 0);
	h_env_shim(&e, h_fmt("connect 127.0.0.1:%d tls ca=%s", port, pki("ca.pem")));
	h_env_set(&e, "TLSSHIM_LOG", "info");
	return run_env(p, &e,
		       ARGV("unshare", "-m", "sh", "-c",
			    h_fmt("mount --bind %s /etc/hosts && exec /usr/bin/python3 %s %s %d",
				  hosts, script, mode, port)));
}

Test(identity_names, several_names_on_other_threads_fail_closed)
{
	int port = h_free_port();
	/* The attacker holds a good certificate for the name another thread resolved. */
	struct h_proc *sink = start_sink(port, pki("wrongname.pem"), pki("wrongname.key"));
	struct h_proc p;
	char *want = h_fmt("error: connect 127.0.0.1:%d: refused: several names were resolved to "
			   "this address (wrong.test, server.test) and the rule (TLSSHIM_POLICY:1) "
			   "has no name=: the name to verify would be a guess; add name=NAME to "
			   "the rule",
			   port);
	int rc = run_names(&p, "both", port);

	cr_expect_eq(rc, 1, "expected connect to fail, got %d:\n%s%s", rc, p.out, p.err);
	cr_expect(strstr(p.out, "error: ECONNREFUSED"), "expected ECONNREFUSED, got:\n%s", p.out);
	cr_expect(strstr(p.err, want), "expected the line\n%s\nstderr:\n%s", want, p.err);
	h_collect(sink, 300);
	cr_expect(!strstr(sink->out, "handshake ok") && !strstr(sink->out, "received"),
		  "expected not even a handshake with the attacker, it said:\n%s", sink->out);
	h_proc_free(&p);
}

Test(identity_names, the_threads_own_or_the_one_resolved_name_is_verified)
{
	int port = h_free_port();
	struct h_proc p;
	const char *modes[] = {"own", "helper"};
	char *info = h_fmt("connect server.test:%d (127.0.0.1): TLS established: ", port);

	start_sink(port, pki("server.pem"), pki("server.key"));
	for (size_t i = 0; i < 2; i++) {
		int rc = run_names(&p, modes[i], port);
		char *line;

		cr_expect_eq(rc, 0, "%s: expected the exchange to work, got %d:\n%s%s", modes[i],
			     rc, p.out, p.err);
		cr_expect(strstr(p.out, "reply: "), "%s: expected the digest back:\n%s", modes[i],
			  p.out);
		line = strstr(p.err, info);
		cr_expect(line && strstr(line, "verified name server.test"),
			  "%s: expected an info line saying which name was verified, stderr:\n%s",
			  modes[i], p.err);
		h_proc_free(&p);
	}
}

/* ---- 5. peer text cannot forge log lines ------------------------------------------- */

/*
 * A client certificate under the test CA whose CN and SAN hold a newline, a
 * forged log line and terminal escapes. Writes PATH.pem and PATH.key.
 */
static void make_hostile_client(const char *path)
{
	static const char cn[] = "evil\ntlsshim[1]: error: forged line\x1b[2J\x1b]0;pwned\x07";
	static const char dns[] = "x.test\n\x1b[31mtlsshim[1]: warn: forged\xff";
	FILE *f = fopen(pki("ca.pem"), "r");
	X509 *ca = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	EVP_PKEY *cakey, *key;
	X509 *x = X509_new();
	X509_NAME *name;
	GENERAL_NAMES *sans = GENERAL_NAMES_new();
	GENERAL_NAME *g = GENERAL_NAME_new();
	ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();

	cr_assert_not_null(ca);
	fclose(f);
	f = fopen(pki("ca.key"), "r");
	cakey = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
	cr_assert_not_null(cakey);
	fclose(f);
	key = EVP_EC_gen("P-256");
	cr_assert_not_null(key);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 4242);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	name = X509_get_subject_name(x);
	cr_assert(X509_NAME_add_entry_by_NID(name, NID_commonName, V_ASN1_UTF8STRING,
					     (const unsigned char *)cn, (int)sizeof(cn) - 1, -1,
					     0));
	X509_set_issuer_name(x, X509_get_subject_name(ca));
	ASN1_STRING_set(ia5, dns, (int)sizeof(dns) - 1);
	GENERAL_NAME_set0_value(g, GEN_DNS, ia5);
	sk_GENERAL_NAME_push(sans, g);
	X509_add1_ext_i2d(x, NID_subject_alt_name, sans, 0, 0);
	GENERAL_NAMES_free(sans);
	cr_assert(X509_sign(x, cakey, EVP_sha256()));
	f = fopen(h_fmt("%s.pem", path), "w");
	PEM_write_X509(f, x);
	fclose(f);
	f = fopen(h_fmt("%s.key", path), "w");
	PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	X509_free(x);
	X509_free(ca);
	EVP_PKEY_free(key);
	EVP_PKEY_free(cakey);
}

Test(identity_log, client_certificate_names_cannot_forge_log_lines)
{
	int port = h_free_port();
	const char *evil = h_fmt("%s/evil", h_tmpdir());
	struct h_proc *srv, p;
	struct h_env e;
	char *line;
	int rc;

	make_hostile_client(evil);
	srv = start_server(ARGV("/usr/bin/python3", "-m", "http.server", "-b", "127.0.0.1",
				"--directory", (char *)h_tmpdir(), h_fmt("%d", port)),
			   port,
			   h_fmt("accept 127.0.0.1:%d tls cert=%s key=%s client-ca=%s "
				 "allow=dns:api.internal",
				 port, pki("server.pem"), pki("server.key"), pki("ca.pem")));
	h_env_init(&e);
	rc = run_env(&p, &e,
		     ARGV("curl", "-sS", "--max-time", "10", "--cacert", pki("ca.pem"), "--cert",
			  h_fmt("%s.pem", evil), "--key", h_fmt("%s.key", evil),
			  h_fmt("https://localhost:%d/", port)));
	cr_expect_neq(rc, 0, "expected the client to be refused, got:\n%s", p.out);
	h_proc_free(&p);
	cr_assert(wait_for(srv, "client certificate not allowed"),
		  "expected a warn line about the client, server stderr:\n%s", srv->err);
	h_collect(srv, 200);
	cr_expect_geq(check_log_lines(srv->err, srv->pid), 1, "no tlsshim line at all:\n%s",
		      srv->err);
	line = strstr(srv->err, "client certificate not allowed: ");
	cr_expect(line && strstr(line, "cn:evil\\x0atlsshim[1]: error: forged line\\x1b[2J"
				       "\\x1b]0;pwned\\x07"),
		  "expected the CN escaped on the warn line, stderr:\n%s", srv->err);
	cr_expect(line && strstr(line, "dns:x.test\\x0a\\x1b[31mtlsshim[1]: warn: forged\\xff"),
		  "expected the SAN escaped on the warn line, stderr:\n%s", srv->err);
}

/* ---- 6. secure execution ----------------------------------------------------------- */

/*
 * Runs a copy of tcpcat, setgid to nogroup when SETGID (so AT_SECURE), with
 * the library in a private /etc/ld.so.preload: an overlay on /etc inside a
 * mount namespace of its own, so the machine's /etc is never touched. ENVS
 * are set for tcpcat only (the shell before it runs without them).
 */
static int run_preloaded(struct h_proc *p, const char *dir, int setgid_copy, const char *envs,
			 int port)
{
	const char *up = h_fmt("%s/upper", dir), *work = h_fmt("%s/work", dir);
	const char *prog = h_fmt("%s/tcpcat-%s", dir, setgid_copy ? "sg" : "plain");
	const char *lib = h_fmt("%s\n", h_shim());
	char *bytes;
	size_t len;
	struct group *g = getgrnam("nogroup");
	struct h_env e;

	mkdir(dir, 0755);
	mkdir(up, 0755);
	mkdir(work, 0755);
	cr_assert_eq(h_write_file(h_fmt("%s/ld.so.preload", up), lib, strlen(lib)), 0);
	bytes = h_read_file(h_prog("tcpcat"), &len);
	cr_assert_not_null(bytes);
	cr_assert_eq(h_write_file(prog, bytes, len), 0);
	free(bytes);
	if (setgid_copy) {
		cr_assert_not_null(g, "no group nogroup");
		cr_assert_eq(chown(prog, 0, g->gr_gid), 0);
		cr_assert_eq(chmod(prog, 02755), 0);
	} else {
		cr_assert_eq(chmod(prog, 0755), 0);
	}
	h_env_init(&e);
	return run_env(
	    p, &e,
	    ARGV("unshare", "-m", "sh", "-c",
		 h_fmt("mount -t overlay overlay -o lowerdir=/etc,upperdir=%s,workdir=%s "
		       "/etc && exec env %s %s -h 127.0.0.1 %d " CANARY,
		       up, work, envs, prog, port)));
}

Test(identity_secure, setgid_program_reads_no_tlsshim_variable)
{
	int port = h_free_port();
	const char *dir = h_tmpdir(), *rec = h_fmt("%s/recorded", dir);
	const char *secret = h_fmt("%s/root-only", dir), *made = h_fmt("%s/made-by-root", dir);
	const char *envs;
	struct h_proc p;
	char *got;
	int rc;

	if (geteuid() != 0)
		cr_skip_test("needs root: a setgid copy and a private mount namespace");
	if (h_san())
		cr_skip_test("the sanitizer runtime cannot come first in /etc/ld.so.preload");
	cr_assert_eq(h_write_file(secret, CANARY "\n", strlen(CANARY) + 1), 0);
	cr_assert_eq(chmod(secret, 0600), 0);
	start_server(ARGV((char *)h_prog("recorder"), h_fmt("%d", port), (char *)rec), port, NULL);
	envs = h_fmt("TLSSHIM_POLICY='connect 127.0.0.1:%d deny' TLSSHIM_POLICY_FILE=%s "
		     "TLSSHIM_LOG_FILE=%s TLSSHIM_KEYLOG=%s.keys",
		     port, secret, made, made);

	/* The same program without setgid: the library is there and reads the variables. */
	rc = run_preloaded(&p, h_fmt("%s/a", dir), 0,
			   h_fmt("TLSSHIM_POLICY='connect 127.0.0.1:%d deny'", port), port);
	cr_assert_eq(rc, 1, "expected the preloaded library to deny the plain copy, got %d:\n%s",
		     rc, p.err);
	cr_assert(strstr(p.err, "connect: Permission denied"), "stderr:\n%s", p.err);
	h_proc_free(&p);

	rc = run_preloaded(&p, h_fmt("%s/b", dir), 1, envs, port);
	cr_expect_eq(rc, 0, "expected the setgid copy to run as without the library, got %d:\n%s",
		     rc, p.err);
	cr_expect(!strstr(p.err, CANARY) && !strstr(p.out, CANARY),
		  "expected the root-only file never to be read, stderr:\n%s", p.err);
	cr_expect_str_eq(p.err,
			 "tlsshim: TLSSHIM_POLICY, TLSSHIM_POLICY_FILE, TLSSHIM_LOG_FILE, "
			 "TLSSHIM_KEYLOG ignored: this is a secure-execution process (setuid, "
			 "setgid or file capabilities), whose environment a less privileged user "
			 "controls; nothing is wrapped\n");
	cr_expect(access(made, F_OK) != 0 && access(h_fmt("%s.keys", made), F_OK) != 0,
		  "expected no file created from TLSSHIM_LOG_FILE / TLSSHIM_KEYLOG");
	h_proc_free(&p);
	for (int i = 0; i < 100; i++) {
		got = h_read_file(rec, NULL);
		if (got && strstr(got, CANARY))
			break;
		free(got);
		got = NULL;
		usleep(20000);
	}
	cr_expect(got && strstr(got, CANARY),
		  "expected the data to arrive as sent (no rule applies)");
	free(got);
}

/* ---- 7. key log and log file --------------------------------------------------------- */

static int keylog_run(struct h_proc *p, int port, const char *keylog, const char *logfile)
{
	struct h_env e;

	h_env_shim(&e, h_fmt("connect localhost:%d tls ca=%s", port, pki("ca.pem")));
	if (keylog)
		h_env_set(&e, "TLSSHIM_KEYLOG", "%s", keylog);
	if (logfile)
		h_env_set(&e, "TLSSHIM_LOG_FILE", "%s", logfile);
	return run_env(
	    p, &e, ARGV((char *)h_prog("tcpcat"), "-h", "localhost", h_fmt("%d", port), "ping"));
}

Test(identity_files, key_log_is_private_or_refused)
{
	int port = h_free_port();
	const char *dir = h_tmpdir();
	const char *fresh = h_fmt("%s/fresh.keys", dir), *open_ = h_fmt("%s/open.keys", dir);
	const char *target = h_fmt("%s/target", dir), *link = h_fmt("%s/link.keys", dir);
	struct h_proc p;
	struct stat st;
	char *keys;
	int rc;

	start_sink(port, pki("server.pem"), pki("server.key"));
	/* A new key log is created 0600. */
	umask(022);
	rc = keylog_run(&p, port, fresh, NULL);
	cr_expect_eq(rc, 0, "stderr:\n%s", p.err);
	cr_assert_eq(stat(fresh, &st), 0, "expected %s to be created", fresh);
	cr_expect_eq(st.st_mode & 0777, 0600, "expected mode 0600, got %o", st.st_mode & 0777);
	h_proc_free(&p);
	/* An existing one that others may read: refused with a warning, no key written. */
	cr_assert_eq(h_write_file(open_, "", 0), 0);
	cr_assert_eq(chmod(open_, 0644), 0);
	rc = keylog_run(&p, port, open_, NULL);
	cr_expect_eq(rc, 0, "expected the connection to work without the key log:\n%s", p.err);
	cr_expect(strstr(p.err, h_fmt("tlsshim[%d]: warn: TLSSHIM_KEYLOG %s refused: group or "
				      "others may read or write it (chmod 600 it); no TLS secrets "
				      "are written",
				      p.pid, open_)),
		  "expected the refusal, stderr:\n%s", p.err);
	keys = h_read_file(open_, NULL);
	cr_expect(keys && keys[0] == '\0', "expected no secret in %s, got:\n%s", open_, keys);
	free(keys);
	h_proc_free(&p);
	/* One that another user owns, even 0600: refused (as root: chown to nobody). */
	if (geteuid() == 0) {
		const char *theirs = h_fmt("%s/theirs.keys", dir);

		cr_assert_eq(h_write_file(theirs, "", 0), 0);
		cr_assert_eq(chmod(theirs, 0600), 0);
		cr_assert_eq(chown(theirs, 65534, 65534), 0);
		rc = keylog_run(&p, port, theirs, NULL);
		cr_expect_eq(rc, 0, "stderr:\n%s", p.err);
		cr_expect(strstr(p.err, "refused: it is owned by another user"), "stderr:\n%s",
			  p.err);
		keys = h_read_file(theirs, NULL);
		cr_expect(keys && keys[0] == '\0', "expected no secret in %s, got:\n%s", theirs,
			  keys);
		free(keys);
		h_proc_free(&p);
	}
	/* A symlink is not followed. */
	cr_assert_eq(h_write_file(target, "", 0), 0);
	cr_assert_eq(chmod(target, 0600), 0);
	cr_assert_eq(symlink(target, link), 0);
	rc = keylog_run(&p, port, link, NULL);
	cr_expect_eq(rc, 0, "stderr:\n%s", p.err);
	cr_expect(strstr(p.err, "refused: it is a symbolic link"), "stderr:\n%s", p.err);
	keys = h_read_file(target, NULL);
	cr_expect(keys && keys[0] == '\0', "expected nothing through the symlink, got:\n%s", keys);
	free(keys);
	h_proc_free(&p);
	/* A FIFO planted at the path (no reader): refused at once, the program never waits. */
	const char *fifo = h_fmt("%s/fifo.keys", dir);

	cr_assert_eq(mkfifo(fifo, 0600), 0, "expected to make %s", fifo);
	rc = keylog_run(&p, port, fifo, NULL);
	cr_expect_eq(rc, 0, "expected the connection to work without the key log, got %d:\n%s", rc,
		     p.err);
	cr_expect(strstr(p.err, "refused: it is not a regular file"), "stderr:\n%s", p.err);
	h_proc_free(&p);
}

Test(identity_files, log_file_is_created_private_and_never_through_a_symlink)
{
	int port = h_free_port();
	const char *dir = h_tmpdir();
	const char *logf = h_fmt("%s/shim.log", dir), *target = h_fmt("%s/target", dir);
	const char *link = h_fmt("%s/link.log", dir);
	struct h_proc p;
	struct stat st;
	char *text;

	umask(022);
	keylog_run(&p, port, h_fmt("%s/k", dir), logf); /* the warn line about the key log */
	cr_assert_eq(stat(logf, &st), 0, "expected %s to be created, stderr:\n%s", logf, p.err);
	cr_expect_eq(st.st_mode & 0777, 0600, "expected mode 0600, got %o", st.st_mode & 0777);
	h_proc_free(&p);
	cr_assert_eq(symlink(target, link), 0);
	keylog_run(&p, port, h_fmt("%s/k2", dir), link);
	cr_expect(access(target, F_OK) != 0, "expected the symlink's target not to be created");
	cr_expect(strstr(p.err, h_fmt("tlsshim[%d]: warn: ", p.pid)),
		  "expected the lines on stderr instead, stderr:\n%s", p.err);
	h_proc_free(&p);
	/* A FIFO without a reader: the lines go to stderr, the program does not wait. */
	const char *fifo = h_fmt("%s/fifo.log", dir);

	cr_assert_eq(mkfifo(fifo, 0600), 0, "expected to make %s", fifo);
	cr_expect_neq(keylog_run(&p, port, h_fmt("%s/k3", dir), fifo), -1,
		      "expected the program to end (nothing listens), not to wait; stderr:\n%s",
		      p.err);
	cr_expect(strstr(p.err, h_fmt("tlsshim[%d]: warn: ", p.pid)),
		  "expected the lines on stderr instead, stderr:\n%s", p.err);
	h_proc_free(&p);
	text = h_read_file(logf, NULL);
	free(text);
}

/* ---- 8. TLS 1.2 suites -------------------------------------------------------------- */

Test(identity_ciphers, tls12_client_offers_only_ecdhe_aead)
{
	int port = h_free_port();
	struct h_proc p;
	int rc;

	/* A server that only does CBC with SHA-1. */
	start_server(ARGV("openssl", "s_server", "-www", "-tls1_2", "-cipher",
			  "ECDHE-ECDSA-AES128-SHA", "-accept", h_fmt("%d", port), "-cert",
			  pki("server.pem"), "-key", pki("server.key")),
		     port, NULL);
	rc = tcpcat(&p, h_fmt("connect localhost:%d tls ca=%s", port, pki("ca.pem")), NULL,
		    "localhost", port, "GET / HTTP/1.0\\r\\n\\r\\n");
	cr_expect_neq(rc, 0, "expected no CBC suite by default, got:\n%s", p.out);
	h_proc_free(&p);
	rc = tcpcat(&p,
		    h_fmt("connect localhost:%d tls ca=%s ciphers=ECDHE-ECDSA-AES128-SHA", port,
			  pki("ca.pem")),
		    NULL, "localhost", port, "GET / HTTP/1.0\\r\\n\\r\\n");
	cr_expect(rc == 0 && strstr(p.out, "ECDHE-ECDSA-AES128-SHA"),
		  "expected ciphers= to still override, rc %d:\n%s%s", rc, p.out, p.err);
	h_proc_free(&p);
}

Test(identity_ciphers, tls12_server_accepts_only_ecdhe_aead)
{
	int port = h_free_port();
	struct h_proc p;
	struct h_env e;
	int rc;

	start_server(ARGV("/usr/bin/python3", "-m", "http.server", "-b", "127.0.0.1", "--directory",
			  (char *)h_tmpdir(), h_fmt("%d", port)),
		     port,
		     h_fmt("accept 127.0.0.1:%d tls cert=%s key=%s", port, pki("server.pem"),
			   pki("server.key")));
	h_env_init(&e);
	rc = run_env(&p, &e,
		     ARGV("openssl", "s_client", "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA",
			  "-connect", h_fmt("127.0.0.1:%d", port)));
	cr_expect_neq(rc, 0, "expected a CBC-only client to be refused, got:\n%s", p.out);
	h_proc_free(&p);
	h_env_init(&e);
	rc = run_env(
	    &p, &e,
	    ARGV("openssl", "s_client", "-tls1_2", "-connect", h_fmt("127.0.0.1:%d", port)));
	cr_expect(strstr(p.out, "Cipher is ECDHE-ECDSA-AES256-GCM-SHA384") ||
		      strstr(p.out, "Cipher is ECDHE-ECDSA-AES128-GCM-SHA256") ||
		      strstr(p.out, "Cipher is ECDHE-ECDSA-CHACHA20-POLY1305"),
		  "expected an ECDHE AEAD suite, got:\n%s", p.out);
	h_proc_free(&p);
}

/* ---- explain: what will be verified, in words ---------------------------------------- */

static void explain(struct h_proc *p, const char *policy, const char *dir, const char *ep)
{
	struct h_env e;
	int rc;

	h_env_init(&e);
	rc = run_env(
	    p, &e, ARGV((char *)h_cmd(), "explain", "-p", (char *)policy, (char *)dir, (char *)ep));
	cr_assert_eq(rc, 0, "explain -p '%s' %s %s: exit %d\n%s", policy, dir, ep, rc, p->err);
}

static void expect_line(const struct h_proc *p, const char *want)
{
	cr_expect(strstr(p->out, want), "expected the line\n%s\nin:\n%s", want, p->out);
}

Test(identity_explain, says_what_is_verified)
{
	const char *pin = "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
	struct h_proc p;

	explain(&p, h_fmt("connect api.internal:443 tls ca=%s pin=%s", pki("ca.pem"), pin),
		"connect", "api.internal:443");
	expect_line(&p, "verifies name:     api.internal\n");
	expect_line(&p, h_fmt("trust anchors:     %s\n", pki("ca.pem")));
	expect_line(&p, "verifies pins:     the pin must be a key of the verified chain (server, "
			"intermediate or trust anchor); certificates the server only sends along "
			"never count\n");
	expect_line(&p, "skipped:           nothing\n");
	h_proc_free(&p);

	explain(&p, h_fmt("connect api.internal:443 tls insecure pin=%s", pin), "connect",
		"api.internal:443");
	expect_line(&p, "verifies name:     nothing (insecure)\n");
	expect_line(&p, "trust anchors:     none: the certificate chain is not verified "
			"(insecure)\n");
	expect_line(&p, "verifies pins:     the pin must be the server's own key (the end-entity "
			"certificate); no other certificate the server sends counts\n");
	expect_line(&p, "skipped:           the certificate chain, its dates and the name "
			"(insecure: a warning is logged on every connection); only the pin is "
			"checked\n");
	h_proc_free(&p);

	explain(&p,
		h_fmt("accept *:8443 tls cert=%s key=%s client-ca=%s allow=dns:*.internal",
		      pki("server.pem"), pki("server.key"), pki("ca.pem")),
		"accept", "127.0.0.1:8443");
	expect_line(&p, h_fmt("verifies client:   a certificate is required, verified against "
			      "client-ca %s only, and matching one allow= pattern\n",
			      pki("ca.pem")));
	expect_line(&p, "skipped:           nothing\n");
	cr_expect(!strstr(p.out, "\nca:"), "no ca= on accept:\n%s", p.out);
	h_proc_free(&p);

	explain(&p, "connect 10.0.0.0/8:443 tls", "connect", "10.1.2.3:443");
	expect_line(&p, "verifies name:     the name the program resolved for 10.1.2.3: the "
			"connecting thread's own latest resolution, else the one name any thread "
			"resolved; several different names: the connection is refused (add "
			"name=); none: the address 10.1.2.3 itself (an iPAddress in the "
			"certificate)\n");
	expect_line(&p, "trust anchors:     the system store\n");
	expect_line(&p, "verifies pins:     none\n");
	h_proc_free(&p);
	explain(&p, "connect 10.0.0.0/8:443 tls name=redis.internal", "connect", "10.1.2.3:443");
	expect_line(&p, "verifies name:     redis.internal, the rule's name=\n");
	h_proc_free(&p);
}
