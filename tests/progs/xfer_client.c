/*
 * xfer_client - a plain TCP client for the end-to-end tests that sends BYTES
 * of a deterministic pseudo-random stream, half-closes, and prints the
 * peer's reply (tls_sink answers with the SHA-256 of what it received).
 *
 *   xfer_client HOST PORT BYTES
 *
 * Prints "sent BYTES HEX" (HEX: SHA-256 of the stream) and "reply TEXT".
 * Exits 0 when the reply is HEX, 4 when it differs, 1 on a socket error
 * ("CALL: strerror (ENAME)" on stderr). Uses libcrypto only to hash.
 */
#include <errno.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "errname.h"

static void fail(const char *call, int e)
{
	fprintf(stderr, "%s: %s (%s)\n", call, strerror(e), errname(e));
	exit(1);
}

int main(int argc, char **argv)
{
	struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
	static unsigned char buf[1 << 16];
	unsigned char md[32];
	char hex[65], reply[256];
	unsigned long long total, sent = 0;
	uint64_t x = 0x9E3779B97F4A7C15ull;
	size_t rlen = 0;
	EVP_MD_CTX *ctx;
	int fd;

	if (argc != 4) {
		fprintf(stderr, "usage: xfer_client HOST PORT BYTES\n");
		return 2;
	}
	total = strtoull(argv[3], NULL, 10);
	if (getaddrinfo(argv[1], argv[2], &hints, &res) != 0) {
		fprintf(stderr, "getaddrinfo failed\n");
		return 2;
	}
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0)
		fail("connect", errno);
	freeaddrinfo(res);
	ctx = EVP_MD_CTX_new();
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	while (sent < total) {
		size_t chunk = total - sent < sizeof(buf) ? (size_t)(total - sent) : sizeof(buf);
		size_t off = 0;

		/* xorshift64: the same stream every run. */
		for (size_t i = 0; i < chunk; i += 8) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			memcpy(buf + i, &x, chunk - i < 8 ? chunk - i : 8);
		}
		EVP_DigestUpdate(ctx, buf, chunk);
		while (off < chunk) {
			ssize_t n = send(fd, buf + off, chunk - off, MSG_NOSIGNAL);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				fail("send", errno);
			off += (size_t)n;
		}
		sent += chunk;
	}
	EVP_DigestFinal_ex(ctx, md, NULL);
	EVP_MD_CTX_free(ctx);
	for (int i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", md[i]);
	printf("sent %llu %s\n", sent, hex);
	fflush(stdout);
	if (shutdown(fd, SHUT_WR) != 0)
		fail("shutdown", errno);
	for (;;) {
		ssize_t n = recv(fd, reply + rlen, sizeof(reply) - 1 - rlen, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fail("recv", errno);
		if (n == 0 || (rlen += (size_t)n) == sizeof(reply) - 1)
			break;
	}
	reply[rlen] = '\0';
	reply[strcspn(reply, "\r\n")] = '\0';
	printf("reply %s\n", reply);
	close(fd);
	return strcmp(reply, hex) == 0 ? 0 : 4;
}
