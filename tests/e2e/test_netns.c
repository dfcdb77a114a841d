/*
 * test_netns.c - a cluster in miniature (issue 15): two network namespaces
 * joined by a veth pair (made and removed here; addresses only inside them),
 * an unmodified server (python3 -m http.server) in one and an unmodified
 * cleartext client (python3 http.client) in the other, both under tlsshim,
 * with mutual TLS and a URI-SAN allow-list; their certificates are rotated
 * through the Kubernetes `..data` layout while requests flow. Every request
 * must succeed, the new certificate be served after the rotation, and
 * `tlsshim stats` count what happened.
 *
 * Needs root and permission to make network namespaces: skipped, saying why,
 * where the machine forbids them.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "e2e/harness.h"

#define PY       "/usr/bin/python3"
#define SRV_ADDR "10.231.0.1"
#define CLI_ADDR "10.231.0.2"
#define VERSIONS 3

static char ns_srv[32], ns_cli[32];
static struct h_proc server;
static int have_server;

static int sh(const char *script, char **out)
{
	struct h_env env;
	struct h_proc p;
	int rc;

	h_env_init(&env);
	rc = h_run(&p, ARGV("/bin/sh", "-c", (char *)script), &env, 30000);
	h_env_free(&env);
	if (out != NULL)
		*out = h_fmt("%s%s", p.out, p.err);
	h_proc_free(&p);
	return rc;
}

static void teardown(void)
{
	if (have_server)
		h_proc_free(&server);
	have_server = 0;
	if (ns_srv[0] != '\0')
		sh(h_fmt("ip netns del %s 2>/dev/null; ip netns del %s 2>/dev/null", ns_srv,
			 ns_cli),
		   NULL);
	ns_srv[0] = ns_cli[0] = '\0';
}

TestSuite(netns, .fini = teardown, .timeout = 180);

/* Two namespaces, a veth pair between them, SRV_ADDR and CLI_ADDR; skips if forbidden. */
static void make_namespaces(void)
{
	char *why;
	int id = (int)getpid() % 100000;

	if (geteuid() != 0)
		cr_skip_test("needs root to make network namespaces (ip netns)");
	if (h_san())
		cr_skip_test("a sanitizer build's library needs its runtime in every process");
	snprintf(ns_srv, sizeof(ns_srv), "tlsshim-s%d", id);
	snprintf(ns_cli, sizeof(ns_cli), "tlsshim-c%d", id);
	if (sh(h_fmt("set -e\n"
		     "ip netns add %s\n"
		     "ip netns add %s\n"
		     "ip link add ts%d type veth peer name tc%d\n"
		     "ip link set ts%d netns %s\n"
		     "ip link set tc%d netns %s\n"
		     "ip -n %s addr add " SRV_ADDR "/24 dev ts%d\n"
		     "ip -n %s addr add " CLI_ADDR "/24 dev tc%d\n"
		     "ip -n %s link set ts%d up; ip -n %s link set lo up\n"
		     "ip -n %s link set tc%d up; ip -n %s link set lo up\n",
		     ns_srv, ns_cli, id, id, id, ns_srv, id, ns_cli, ns_srv, id, ns_cli, id, ns_srv,
		     id, ns_srv, ns_cli, id, ns_cli),
	       &why) != 0) {
		char reason[300];

		snprintf(reason, sizeof(reason),
			 "network namespaces are not permitted on this machine: %.200s", why);
		teardown();
		cr_skip_test("%s", reason);
	}
}

/*
 * PKI for the test: in SRC, a CA (ca.pem) and for each version v a server
 * certificate for server.test (srvV) and client certificates with a SPIFFE ID
 * (webV: sa/web, allowed; dbV: sa/db, not allowed).
 */
static void make_pki(const char *src)
{
	char *out;
	const char *script = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
			     "-keyout ca.key -out ca.pem -subj /CN=netns-ca -days 30 2>/dev/null\n"
			     "cert() { # NAME CN SAN\n"
			     "  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 "
			     "-out $1.key\n"
			     "  openssl req -new -key $1.key -subj /CN=$2 -out $1.csr\n"
			     "  printf 'subjectAltName=%s\\n' \"$3\" > $1.ext\n"
			     "  openssl x509 -req -in $1.csr -CA ca.pem -CAkey ca.key "
			     "-set_serial 0x$(openssl rand -hex 8) -days 30 -extfile $1.ext "
			     "-out $1.pem 2>/dev/null\n"
			     "}\n"
			     "for v in 0 1 2; do\n"
			     "  cert srv$v server.test DNS:server.test\n"
			     "  cert web$v web URI:spiffe://example.org/ns/default/sa/web\n"
			     "done\n"
			     "cert db0 db URI:spiffe://example.org/ns/default/sa/db\n";

	cr_assert_eq(sh(h_fmt("set -e; cd '%s'\n%s", src, script), &out), 0,
		     "expected to make the PKI:\n%s", out);
}

/* DIR laid out as a Kubernetes Secret volume: tls.crt, tls.key, ca.crt -> ..data/... */
static void k8s_init(const char *dir, const char *src, const char *name)
{
	char *out;

	cr_assert_eq(sh(h_fmt("set -e; cd '%s'\n"
			      "mkdir ..v0; cp '%s/%s0.pem' ..v0/tls.crt; cp '%s/%s0.key' "
			      "..v0/tls.key; cp '%s/ca.pem' ..v0/ca.crt\n"
			      "ln -s ..v0 ..data\n"
			      "for f in tls.crt tls.key ca.crt; do ln -s ..data/$f $f; done\n",
			      dir, src, name, src, name, src),
			&out),
		     0, "expected the ..data layout:\n%s", out);
}

/* The kubelet's update: version V in a new directory, ..data swapped to it, the old one gone. */
static void k8s_rotate(const char *dir, const char *src, const char *name, int v)
{
	char *out;

	cr_assert_eq(sh(h_fmt("set -e; cd '%s'\n"
			      "mkdir ..v%d; cp '%s/%s%d.pem' ..v%d/tls.crt; cp '%s/%s%d.key' "
			      "..v%d/tls.key; cp '%s/ca.pem' ..v%d/ca.crt\n"
			      "ln -s ..v%d ..data_tmp; mv -T ..data_tmp ..data; rm -rf ..v%d\n",
			      dir, v, src, name, v, v, src, name, v, v, src, v, v, v - 1),
			&out),
		     0, "expected to rotate %s to version %d:\n%s", name, v, out);
}

static void env_ns(struct h_env *env, const char *stats, const char *policy)
{
	h_env_init(env);
	h_env_preload(env);
	h_env_set(env, "TLSSHIM_STATS_DIR", "%s", stats);
	h_env_set(env, "TLSSHIM_POLICY", "%s", policy);
	h_env_set(env, "PYTHONUNBUFFERED", "1");
}

/* The unmodified client: plain HTTP requests, one connection each, for SECONDS. */
static const char client_py[] =
    "import http.client, sys, time\n"
    "ok = bad = 0; end = time.time() + float(sys.argv[1])\n"
    "while time.time() < end:\n"
    "    try:\n"
    "        c = http.client.HTTPConnection('" SRV_ADDR "', 8443, timeout=10)\n"
    "        c.request('GET', '/')\n"
    "        r = c.getresponse(); r.read(); c.close()\n"
    "        if r.status != 200: raise Exception('status %d' % r.status)\n"
    "        ok += 1\n"
    "    except Exception as e:\n"
    "        bad += 1; print('error', repr(e), flush=True)\n"
    "    time.sleep(0.05)\n"
    "print('OK', ok, 'FAIL', bad)\n";

static char *stats_of(const char *stats, int pid)
{
	char *out;

	sh(h_fmt("TLSSHIM_STATS_DIR='%s' '%s' stats %d", stats, h_cmd(), pid), &out);
	return out;
}

Test(netns, mtls_across_namespaces_with_rotation_mid_traffic)
{
	const char *src = h_tmpdir(), *sdir = h_tmpdir(), *cdir = h_tmpdir(), *stats = h_tmpdir();
	struct h_proc client, bad;
	struct h_env env;
	char *out, *served, *want, *refused;

	make_namespaces();
	make_pki(src);
	k8s_init(sdir, src, "srv");
	k8s_init(cdir, src, "web");

	env_ns(&env, stats,
	       h_fmt("accept " SRV_ADDR ":8443 tls cert=%s/tls.crt key=%s/tls.key "
		     "client-ca=%s/ca.crt allow=uri:spiffe://example.org/ns/default/sa/web",
		     sdir, sdir, sdir));
	cr_assert_eq(h_spawn(&server,
			     ARGV("ip", "netns", "exec", ns_srv, PY, "-m", "http.server", "-b",
				  SRV_ADDR, "--directory", (char *)h_tmpdir(), "8443"),
			     &env, NULL, 0),
		     0, "expected the server to start");
	have_server = 1;
	h_env_free(&env);
	cr_assert_eq(h_wait_output(&server, "Serving HTTP", 10000), 0,
		     "expected http.server to listen in %s:\n%s%s", ns_srv, server.out, server.err);

	/* Client: the name verified is the server's certificate's, the address is all it dials. */
	env_ns(&env, stats,
	       h_fmt("connect " SRV_ADDR ":8443 tls name=server.test ca=%s/ca.crt cert=%s/tls.crt "
		     "key=%s/tls.key",
		     cdir, cdir, cdir));
	cr_assert_eq(h_spawn(&client,
			     ARGV("ip", "netns", "exec", ns_cli, PY, "-c", (char *)client_py, "8"),
			     &env, NULL, 0),
		     0, "expected the client to start");
	h_env_free(&env);
	for (int v = 1; v < VERSIONS; v++) {
		usleep(2000000);
		k8s_rotate(sdir, src, "srv", v);
		k8s_rotate(cdir, src, "web", v);
	}
	h_wait(&client, 60000);
	cr_expect(strstr(client.out, "FAIL 0") != NULL && strstr(client.out, "OK 0") == NULL,
		  "expected every request to succeed across the rotations, client said:\n%s%s",
		  client.out, client.err);

	/* The server now serves the last version (seen from the client's namespace). */
	sh(h_fmt("openssl x509 -in '%s/srv%d.pem' -noout -fingerprint -sha256", src, VERSIONS - 1),
	   &want);
	sh(h_fmt("ip netns exec %s openssl s_client -connect " SRV_ADDR ":8443 -servername "
		 "server.test -CAfile '%s/ca.pem' -cert '%s/web%d.pem' -key '%s/web%d.key' "
		 "</dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256",
		 ns_cli, src, src, VERSIONS - 1, src, VERSIONS - 1),
	   &served);
	cr_expect(strcmp(served, want) == 0 && strstr(want, "Fingerprint") != NULL,
		  "expected the rotated certificate served: want %s, got %s", want, served);

	/* A client whose SPIFFE ID is not allowed (sa/db) is refused. */
	env_ns(&env, stats,
	       h_fmt("connect " SRV_ADDR ":8443 tls name=server.test ca=%s/ca.pem cert=%s/db0.pem "
		     "key=%s/db0.key",
		     src, src, src));
	h_run(&bad, ARGV("ip", "netns", "exec", ns_cli, PY, "-c", (char *)client_py, "0.01"), &env,
	      30000);
	h_env_free(&env);
	cr_expect(strstr(bad.out, "OK 0 FAIL 1") != NULL,
		  "expected the sa/db client refused, it said:\n%s%s", bad.out, bad.err);
	h_collect(&server, 300);
	refused = strstr(server.err, "client certificate not allowed");
	cr_expect(refused != NULL && strstr(refused, "spiffe://example.org/ns/default/sa/db"),
		  "expected the server to say which identity it refused:\n%s", server.err);

	/* What tlsshim stats counted in the server. */
	out = stats_of(stats, server.pid);
	cr_expect(strstr(out, h_fmt("(%d loads)", VERSIONS)) != NULL,
		  "expected %d certificate loads in the server:\n%s", VERSIONS, out);
	cr_expect(strstr(out, "verify 1,") != NULL,
		  "expected the refused identity counted as a verify failure:\n%s", out);
	cr_expect(strstr(out, "TLSv1.3") != NULL && strstr(out, " 0 total") == NULL,
		  "expected the handshakes counted:\n%s", out);
	cr_expect(strstr(out, "certificate  /CN=server.test") != NULL,
		  "expected the server certificate's subject:\n%s", out);
	h_proc_free(&client);
	h_proc_free(&bad);
}
