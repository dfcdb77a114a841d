/*
 * native_server - the benchmark server with OpenSSL in the process (the "native"
 * column of the server-side figures, and the peer of every client-side figure).
 *
 *   native_server --cert PEM --key KEY [--port P] [--mode echo|sink] [--no-tickets]
 *                 [--time-limit SECS]
 *
 * Prints "listening PORT" once it accepts. --no-tickets: no session tickets and no
 * session cache, so every handshake is a full one.
 */
#include "bench_tls.h"
#include "server.h"

int main(int argc, char **argv)
{
	struct srv_opts o;

	srv_parse(argc, argv, &o,
		  "--cert PEM --key KEY [--port P] [--mode echo|sink] "
		  "[--no-tickets] [--time-limit SECS]");
	if (!o.cert || !o.key)
		die("--cert and --key are required");
	tls_server_init(o.cert, o.key, o.no_tickets);
	return server_run(tls_transport(), o.mode, o.port, o.limit);
}
