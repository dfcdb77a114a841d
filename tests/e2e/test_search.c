/*
 * test_search.c - names a search domain completes. In Kubernetes, and on any
 * host whose resolv.conf has a `search` line, programs connect to "redis" and
 * the resolver finds "redis.default.svc.cluster.local"; the policy names the
 * complete names (`connect *.svc.cluster.local:* tls`). Each test runs in a
 * private mount and network namespace: its own loopback, a resolv.conf with
 * search domains bind-mounted over /etc/resolv.conf, and dnsmasq answering
 * for the cluster names. The programs are unmodified curl and python3.
 *
 * Needs root and permission to make namespaces: skipped, saying why, where
 * the machine forbids them.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "e2e/harness.h"

TestSuite(search_domain, .fini = h_teardown, .timeout = 120);

/*
 * Runs BODY (sh) inside new mount and network namespaces where "redis" and
 * "web" resolve, through the search domain default.svc.cluster.local, to
 * 127.0.0.1, and "db" the same way to an alias of db.elsewhere.test. BODY
 * sees $SHIM (the LD_PRELOAD value), $PKI, $T (a scratch directory) and $PY.
 * Returns its exit status; OUT gets its output.
 */
static int in_cluster(const char *body, char **out)
{
	struct h_env env, shim;
	struct h_proc p;
	const char *t = h_tmpdir();
	int rc;

	if (geteuid() != 0)
		cr_skip_test("needs root to make mount and network namespaces");
	/* LD_PRELOAD=libasan.so curl http://... deadlocks in setlocale, shim or not. */
	if (h_san())
		cr_skip_test("curl does not run with a sanitizer runtime preloaded");
	h_env_init(&env);
	if (h_run(&p, ARGV("unshare", "-m", "-n", "true"), &env, 10000) != 0) {
		char reason[300];

		snprintf(reason, sizeof(reason), "namespaces are not permitted here: %.200s",
			 p.err);
		h_proc_free(&p);
		h_env_free(&env);
		cr_skip_test("%s", reason);
	}
	h_proc_free(&p);
	h_env_init(&shim);
	h_env_preload(&shim);
	h_env_set(&env, "SHIM", "%s", h_env_get(&shim, "LD_PRELOAD"));
	h_env_free(&shim);
	h_env_set(&env, "PKI", "%s", h_pki());
	h_env_set(&env, "T", "%s", t);
	h_env_set(&env, "PY", "/usr/bin/python3");
	rc = h_run(&p,
		   ARGV("unshare", "-m", "-n", "/bin/sh", "-c",
			h_fmt("set -eu\n"
			      "ip link set lo up\n"
			      "printf 'nameserver 127.0.0.1\\nsearch default.svc.cluster.local "
			      "svc.cluster.local cluster.local\\noptions ndots:5 attempts:1 "
			      "timeout:2\\n' >\"$T/resolv.conf\"\n"
			      "mount --bind \"$T/resolv.conf\" /etc/resolv.conf\n"
			      "dnsmasq --port=53 --listen-address=127.0.0.1 --bind-interfaces "
			      "--no-resolv --no-hosts --pid-file=\"$T/dns.pid\" "
			      "--address=/redis.default.svc.cluster.local/127.0.0.1 "
			      "--address=/web.default.svc.cluster.local/127.0.0.1 "
			      "--host-record=db.elsewhere.test,127.0.0.1 "
			      "--cname=db.default.svc.cluster.local,db.elsewhere.test\n"
			      "trap 'kill $(cat \"$T/dns.pid\")' EXIT\n"
			      "%s\n",
			      body)),
		   &env, 60000);
	*out = h_fmt("%s%s", p.out, p.err);
	h_proc_free(&p);
	h_env_free(&env);
	return rc;
}

/*
 * What a listener on 127.0.0.1:16379 receives first (hex, "first bytes: ..."
 * in the output) when curl asks for http://HOST:16379/ under POLICY.
 */
static char *first_bytes(const char *policy, const char *host)
{
	static const char *listener = "import socket\n"
				      "s = socket.socket(); s.bind(('127.0.0.1', 16379)); "
				      "s.listen()\n"
				      "print('ready', flush=True)\n"
				      "c, _ = s.accept(); c.settimeout(10)\n"
				      "print('first bytes:', c.recv(5).hex(), flush=True)\n";
	char *out;
	int rc = in_cluster(
	    h_fmt("$PY -c \"%s\" >\"$T/srv.out\" &\n"
		  "for i in $(seq 50); do grep -q ready \"$T/srv.out\" && break; sleep 0.1; done\n"
		  "LD_PRELOAD=\"$SHIM\" TLSSHIM_POLICY='%s' "
		  "curl -sS --max-time 5 http://%s:16379/ || true\n"
		  "wait\n"
		  "cat \"$T/srv.out\"\n",
		  listener, policy, host),
	    &out);

	cr_assert_eq(rc, 0, "expected the namespace script to run, it exited %d:\n%s", rc, out);
	return out;
}

/*
 * Not one cleartext byte: curl asks for http://redis:16379/ under a policy
 * that says TLS for every *.svc.cluster.local name; the listener must see a
 * TLS record (0x16 0x03), never "GET ".
 */
Test(search_domain, a_short_name_completed_by_the_search_list_is_covered_by_the_rule)
{
	char *out =
	    first_bytes(h_fmt("connect *.svc.cluster.local:* tls ca=%s", pki("ca.pem")), "redis");

	cr_expect(strstr(out, "first bytes: 1603") != NULL,
		  "expected the server to see a TLS record first (16 03), got:\n%s", out);
	cr_expect(strstr(out, "first bytes: 47455420") == NULL,
		  "cleartext \"GET \" reached the server:\n%s", out);
}

/*
 * An alias is not a completion: "db" completes to db.default.svc.cluster.local,
 * a CNAME to db.elsewhere.test. A DNS answer must not carry the connection
 * into the rule for the alias's name (here `plain`): the catch-all TLS rule
 * applies, and the listener sees a TLS record.
 */
Test(search_domain, an_alias_target_does_not_choose_the_rule)
{
	char *out = first_bytes(
	    h_fmt("connect *.elsewhere.test:* plain; connect *:16379 tls ca=%s", pki("ca.pem")),
	    "db");

	cr_expect(strstr(out, "first bytes: 1603") != NULL,
		  "expected the catch-all TLS rule (a TLS record, 16 03), got:\n%s", out);
}

/*
 * End to end: curl http://web:PORT/ under `connect *.svc.cluster.local:* tls`
 * reaches a native TLS server whose certificate names only
 * web.default.svc.cluster.local, so the connection verifies the complete name
 * the search list produced; python's socket.create_connection("web") alike.
 * getaddrinfo() still answers as asked (no canonical name unless requested).
 */
Test(search_domain, the_complete_name_is_sent_and_verified)
{
	char *out;
	int rc = in_cluster(
	    h_fmt("cd \"$T\"\n"
		  "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
		  "-keyout web.key -out web.pem -days 2 -subj /CN=web.default.svc.cluster.local "
		  "-addext subjectAltName=DNS:web.default.svc.cluster.local "
		  "-CA \"$PKI/ca.pem\" -CAkey \"$PKI/ca.key\" 2>/dev/null\n"
		  "openssl s_server -www -accept 127.0.0.1:18443 -cert web.pem -key web.key "
		  "-servername web.default.svc.cluster.local -servername_fatal "
		  "-cert2 web.pem -key2 web.key >s_server.out 2>&1 &\n"
		  "srv=$!\n"
		  "for i in $(seq 50); do grep -q ACCEPT s_server.out && break; sleep 0.1; done\n"
		  "export LD_PRELOAD=\"$SHIM\" "
		  "TLSSHIM_POLICY='connect *.svc.cluster.local:* tls ca=%s'\n"
		  "curl -sS --max-time 10 http://web:18443/ | head -c 100; echo\n"
		  "$PY -c \"import socket; c = socket.create_connection(('web', 18443)); "
		  "c.sendall(b'GET / HTTP/1.0\\\\r\\\\n\\\\r\\\\n'); "
		  "print('python got:', c.recv(15))\"\n"
		  "$PY -c \"import socket; g = socket.getaddrinfo; "
		  "print('canonname:', repr(g('web', 80, 0, 1)[0][3]), "
		  "repr(g('web', 80, 0, 1, 0, socket.AI_CANONNAME)[0][3]))\"\n"
		  "unset LD_PRELOAD\n"
		  "kill $srv\n",
		  pki("ca.pem")),
	    &out);

	cr_assert_eq(rc, 0, "expected the namespace script to run, it exited %d:\n%s", rc, out);
	cr_expect(strstr(out, "HTTP/1.0 200 ok") != NULL,
		  "expected curl to get s_server's page over TLS, got:\n%s", out);
	cr_expect(strstr(out, "python got: b'HTTP/1.0 200 ok'") != NULL,
		  "expected python to get s_server's page over TLS, got:\n%s", out);
	/* What getaddrinfo() returns is what the program asked for. */
	cr_expect(strstr(out, "canonname: '' 'web.default.svc.cluster.local'") != NULL,
		  "expected no canonical name unless asked for, got:\n%s", out);
}

/* `tlsshim explain` decides as the library does, and says why. */
Test(search_domain, explain_shows_the_completed_name_and_its_rule)
{
	char *out;
	int rc = in_cluster(h_fmt("%s explain -p 'connect *.svc.cluster.local:* tls' connect "
				  "redis:6379\n",
				  h_cmd()),
			    &out);

	cr_assert_eq(rc, 0, "expected explain to exit 0, it exited %d:\n%s", rc, out);
	cr_expect(strstr(out, "note: redis is redis.default.svc.cluster.local here") != NULL,
		  "expected explain to name the completion, got:\n%s", out);
	cr_expect(strstr(out, "rule:              connect *.svc.cluster.local:* tls") != NULL,
		  "expected the suffix rule to apply, got:\n%s", out);
	cr_expect(strstr(out, "verifies name:     redis.default.svc.cluster.local") != NULL,
		  "expected the complete name to be verified, got:\n%s", out);
}
