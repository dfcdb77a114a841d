/*
 * plain_server - the benchmark server speaking plain TCP: the same single-threaded
 * epoll server as native_server without OpenSSL. It is what runs under the shim
 * (`accept ... tls`) and behind stunnel in server mode.
 *
 *   plain_server [--port P] [--mode echo|sink] [--time-limit SECS]
 *
 * Prints "listening PORT" once it accepts.
 */
#include "server.h"

int main(int argc, char **argv)
{
	struct srv_opts o;

	srv_parse(argc, argv, &o, "[--port P] [--mode echo|sink] [--time-limit SECS]");
	if (o.cert || o.key || o.no_tickets)
		die("plain_server takes no TLS options");
	return server_run(plain_transport(), o.mode, o.port, o.limit);
}
