/*
 * plain_client - the benchmark load generator speaking plain TCP: the same code as
 * native_client without OpenSSL. It is what runs under the shim (`connect ... tls`)
 * and through stunnel in client mode. See client.h for the modes.
 *
 *   plain_client --port P [--max-secs S] MODE ARG
 */
#include "client.h"

int main(int argc, char **argv)
{
	struct cl_opts o;

	cl_parse(argc, argv, &o,
		 "--port P [--max-secs S] "
		 "throughput BYTES|rtt N|connrate N|idle N");
	if (o.ca || o.reuse)
		die("plain_client takes no TLS options");
	return client_run(plain_transport(), &o);
}
