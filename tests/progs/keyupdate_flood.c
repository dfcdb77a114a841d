/*
 * keyupdate_flood - a hostile TLS 1.3 client for the end-to-end tests: it
 * completes the handshake, then sends KeyUpdate messages with
 * update_requested (each one asks the server for a KeyUpdate in reply,
 * RFC 8446 section 4.6.3) as fast as the socket takes them, and never reads.
 *
 *   keyupdate_flood SECONDS PORT CA [DATA_EVERY]
 *
 * With DATA_EVERY, one byte of application data goes after every DATA_EVERY
 * key updates (a flood that tries to pass for a peer with traffic).
 *
 * Connects to 127.0.0.1:PORT, verifies the server against CA, floods for
 * SECONDS (or until the server closes the connection), then prints
 * "sent N key updates" and exits 0 (1 if the handshake failed). A server that answered every
 * request into an unbounded buffer would spend CPU and memory without limit; one that applies
 * back-pressure stops reading, and this client's sends then block.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits until FD is writable or END passes. Returns 0 if writable. */
static int wait_writable(int fd, double end)
{
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	double left = end - now_s();

	if (left <= 0)
		return -1;
	return poll(&p, 1, (int)(left * 1000) + 1) > 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	unsigned long sent = 0, every = 0;
	double end;
	SSL_CTX *ctx;
	SSL *ssl;
	int fd, rc;

	if (argc != 4 && argc != 5) {
		fprintf(stderr, "usage: keyupdate_flood SECONDS PORT CA [DATA_EVERY]\n");
		return 2;
	}
	if (argc == 5)
		every = strtoul(argv[4], NULL, 10);
	signal(SIGPIPE, SIG_IGN); /* a server that gives up on us resets the connection */
	ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	if (SSL_CTX_load_verify_locations(ctx, argv[3], NULL) != 1) {
		fprintf(stderr, "keyupdate_flood: cannot load %s\n", argv[3]);
		return 2;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	a.sin_port = htons((unsigned short)atoi(argv[2]));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		perror("keyupdate_flood: connect");
		return 1;
	}
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	SSL_set1_host(ssl, "localhost");
	if (SSL_connect(ssl) != 1) {
		fprintf(stderr, "keyupdate_flood: handshake failed\n");
		ERR_print_errors_fp(stderr);
		return 1;
	}
	printf("handshake ok\n");
	fflush(stdout);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	end = now_s() + atof(argv[1]);
	while (now_s() < end) {
		if (SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED) != 1)
			break;
		/* SSL_do_handshake() sends the pending KeyUpdate now. */
		while ((rc = SSL_do_handshake(ssl)) != 1) {
			if (SSL_get_error(ssl, rc) != SSL_ERROR_WANT_WRITE ||
			    wait_writable(fd, end) != 0)
				goto out;
		}
		sent++;
		while (every > 0 && sent % every == 0 && (rc = SSL_write(ssl, "d", 1)) != 1) {
			if (SSL_get_error(ssl, rc) != SSL_ERROR_WANT_WRITE ||
			    wait_writable(fd, end) != 0)
				goto out;
		}
	}
out:
	printf("sent %lu key updates\n", sent);
	return 0;
}
