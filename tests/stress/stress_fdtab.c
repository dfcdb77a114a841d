/*
 * stress_fdtab.c - the fd table's lifetime rule under contention: threads pin
 * and release conns while another thread maps, dups and unmaps them, as a
 * program's I/O threads race its close(). Runs without Criterion so that it
 * can run under ThreadSanitizer (Criterion cannot: Snaipe/Criterion#274).
 * Prints "stress: N passed, N failed" and exits non-zero on a failure.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "fdtab.h"
#include "real.h"

#define ROUNDS  20000
#define READERS 4

static int fds[2];
static atomic_int stop;
static atomic_long pins;
static struct policy_rule rule = {.action = POLICY_TLS};

static void *reader(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop)) {
		for (int i = 0; i < 2; i++) {
			struct conn *c = fdtab_get(fds[i]);

			if (c != NULL) {
				/* Touch it as a hook would, then unpin. */
				if (c->role != TLS_ROLE_SERVER)
					abort();
				atomic_fetch_add(&pins, 1);
				conn_put(c);
			}
		}
	}
	return NULL;
}

static int check(int ok, const char *what, int *failed)
{
	if (!ok) {
		fprintf(stderr, "stress_fdtab: FAIL: %s\n", what);
		(*failed)++;
	}
	return ok;
}

int main(void)
{
	pthread_t t[READERS];
	int failed = 0, passed = 0, err = 0;

	real_init();
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0)
		return perror("socketpair"), 2;
	for (int i = 0; i < READERS; i++)
		pthread_create(&t[i], NULL, reader, NULL);
	for (int r = 0; r < ROUNDS; r++) {
		struct conn *c = conn_new_server(fds[0], &rule, "stress", NULL, 0, -1, &err);
		struct conn *got;

		if (!check(c != NULL, "conn_new_server", &failed))
			break;
		check(fdtab_set(fds[0], c) == 0, "fdtab_set", &failed);
		check(fdtab_set(fds[1], c) == 0, "fdtab_set of a dup", &failed); /* as dup() does */
		check(conn_add_fd(c, fds[1]) == 0, "conn_add_fd", &failed);
		conn_put(c); /* the table now holds the only references */
		got = fdtab_take(fds[1]);
		check(got == c, "take returns the mapped conn", &failed);
		conn_close_fd(got, fds[1]);
		conn_put(got);
		got = fdtab_take(fds[0]);
		check(got == c, "take of the last fd", &failed);
		conn_close_fd(got, fds[0]);
		conn_put(got); /* freed here or by the last reader's put */
		check(fdtab_get(fds[0]) == NULL, "unmapped fd has no conn", &failed);
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < READERS; i++)
		pthread_join(t[i], NULL);
	passed += failed == 0;
	printf("stress_fdtab: %d rounds, %ld pins\n", ROUNDS, atomic_load(&pins));
	printf("stress: %d passed, %d failed\n", passed, failed > 0);
	return failed > 0;
}
