/*
 * native_client - the benchmark load generator with OpenSSL in the process (the
 * "native" column of every figure). See client.h for the modes.
 *
 *   native_client --port P --ca CA [--name NAME] [--reuse] [--max-secs S] MODE ARG
 *
 * Verifies the server's chain against CA and NAME (default localhost); sends no
 * SNI (the shim sends none for an IP literal either). --reuse resumes the newest
 * session (TLS 1.3 ticket) on each new connection.
 */
#include "bench_tls.h"
#include "client.h"

int main(int argc, char **argv)
{
	struct cl_opts o;

	cl_parse(argc, argv, &o,
		 "--port P --ca CA [--name NAME] [--reuse] [--max-secs S] "
		 "throughput BYTES|rtt N|connrate N|idle N");
	if (!o.ca)
		die("--ca is required");
	tls_client_init(o.ca, o.name, o.reuse);
	return client_run(tls_transport(), &o);
}
