/*
 * forkwrite - a plain TCP client for the end-to-end tests whose connection
 * is used by two processes after fork(): both write to it.
 *
 *   forkwrite child-first|parent-first PORT
 *
 * Connects to 127.0.0.1:PORT, writes "before\n", forks. The first process
 * (as named) writes "child\n" or "parent\n"; then, while the first still has
 * the connection open, the second writes its line and tries a read. Then the
 * second closes its copy, and the first closes its own. Prints one line per
 * call on stdout: "child write: ok" or "parent write: ECONNRESET", ...
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "errname.h"

static void report(const char *who, const char *call, ssize_t r)
{
	printf("%s %s: %s\n", who, call, r >= 0 ? "ok" : errname(errno));
	fflush(stdout);
}

static void wait_for(int fd)
{
	char b;

	if (read(fd, &b, 1) != 1)
		_exit(3);
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	int first_is_child, to_child[2], to_parent[2], fd, st;
	const char *first, *second;
	char b[16];
	pid_t pid;

	if (argc != 3) {
		fprintf(stderr, "usage: forkwrite child-first|parent-first PORT\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	first_is_child = strcmp(argv[1], "child-first") == 0;
	first = first_is_child ? "child" : "parent";
	second = first_is_child ? "parent" : "child";
	a.sin_port = htons((uint16_t)atoi(argv[2]));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		fprintf(stderr, "connect: %s (%s)\n", strerror(errno), errname(errno));
		return 1;
	}
	report("parent", "write before fork", write(fd, "before\n", 7));
	if (pipe(to_child) != 0 || pipe(to_parent) != 0)
		return 1;
	pid = fork();
	if (pid < 0)
		return 1;
	if ((pid == 0) == first_is_child) {
		/* The first: write, let the second try, then close. */
		int peer = pid == 0 ? to_parent[1] : to_child[1];
		int mine = pid == 0 ? to_child[0] : to_parent[0];
		char line[16];

		snprintf(line, sizeof(line), "%s\n", first);
		report(first, "write", write(fd, line, strlen(line)));
		if (write(peer, "g", 1) != 1)
			_exit(3);
		wait_for(mine);
		report(first, "close", close(fd));
	} else {
		int peer = pid == 0 ? to_parent[1] : to_child[1];
		int mine = pid == 0 ? to_child[0] : to_parent[0];
		char line[16];

		wait_for(mine);
		snprintf(line, sizeof(line), "%s\n", second);
		report(second, "write", write(fd, line, strlen(line)));
		report(second, "read", read(fd, b, sizeof(b)));
		report(second, "close", close(fd));
		if (write(peer, "g", 1) != 1)
			_exit(3);
	}
	if (pid == 0)
		_exit(0);
	waitpid(pid, &st, 0);
	return 0;
}
