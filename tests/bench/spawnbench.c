/*
 * spawnbench - the start-up cost the shim adds to a program that wraps nothing:
 * fork + execve + waitpid of /bin/true, N times without LD_PRELOAD and, given LIB,
 * N times with LD_PRELOAD=LIB and TLSSHIM_POLICY=$BENCH_SHIM_POLICY. The two kinds
 * run interleaved in batches of 50 (alternating which goes first) so that the
 * machine's drift touches both alike; each figure is the median batch mean.
 *
 *   spawnbench N [LIB]
 *
 * Prints "RESULT plain_us=US [shim_us=US ratio=R] batches=B". Stops early (with at
 * least two batches) after 120 s.
 */
#include <sys/wait.h>

#include "bench.h"

#define SB_BATCH       50
#define SB_MAX_BATCHES 1000

extern char **environ;

/* ENVIRON without the shim's variables, plus EXTRA (NULL-terminated, may be empty). */
static char **sb_env(char **extra)
{
	size_t n = 0, i, k = 0;
	char **e;

	while (environ[n])
		n++;
	for (i = 0; extra[i]; i++)
		n++;
	e = calloc(n + 1, sizeof(*e));
	if (!e)
		die("out of memory");
	for (i = 0; environ[i]; i++) {
		if (!strncmp(environ[i], "LD_PRELOAD=", 11) ||
		    !strncmp(environ[i], "TLSSHIM_", 8) ||
		    !strncmp(environ[i], "BENCH_SHIM_POLICY=", 18))
			continue;
		e[k++] = environ[i];
	}
	for (i = 0; extra[i]; i++)
		e[k++] = extra[i];
	e[k] = NULL;
	return e;
}

/* Runs /bin/true SB_BATCH times with ENV; returns the mean microseconds per run. */
static double sb_batch(char **env, const char *what)
{
	char *argv[] = {"/bin/true", NULL};
	double t0 = now_s();
	int i, st;
	pid_t pid;

	for (i = 0; i < SB_BATCH; i++) {
		pid = fork();
		if (pid < 0)
			die("fork: %s", strerror(errno));
		if (pid == 0) {
			execve(argv[0], argv, env);
			_exit(127);
		}
		if (waitpid(pid, &st, 0) != pid)
			die("waitpid: %s", strerror(errno));
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			die("/bin/true %s failed (wait status 0x%x)", what, st);
	}
	return (now_s() - t0) * 1e6 / SB_BATCH;
}

static int sb_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double sb_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), sb_cmp);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
	static double plain[SB_MAX_BATCHES], shim[SB_MAX_BATCHES];
	char preload[4096], policy[8192];
	char *none[] = {NULL}, *extra[] = {preload, policy, NULL};
	char **env_plain, **env_shim = NULL;
	double deadline = now_s() + 120, p, s;
	int batches, b;
	const char *pol;

	bench_prog = argv[0];
	if (argc != 2 && argc != 3)
		die("usage: %s N [LIB]", argv[0]);
	batches = (int)(arg_num(argv[1], "count", SB_BATCH, SB_BATCH * SB_MAX_BATCHES) / SB_BATCH);
	hard_limit(300);
	env_plain = sb_env(none);
	if (argc == 3) {
		pol = getenv("BENCH_SHIM_POLICY");
		if (!pol)
			die("BENCH_SHIM_POLICY is not set");
		snprintf(preload, sizeof(preload), "LD_PRELOAD=%s", argv[2]);
		snprintf(policy, sizeof(policy), "TLSSHIM_POLICY=%s", pol);
		env_shim = sb_env(extra);
	}
	for (b = 0; b < batches; b++) {
		if (b >= 2 && now_s() > deadline)
			break;
		if (env_shim && b % 2) {
			shim[b] = sb_batch(env_shim, "with the shim");
			plain[b] = sb_batch(env_plain, "without the shim");
		} else {
			plain[b] = sb_batch(env_plain, "without the shim");
			if (env_shim)
				shim[b] = sb_batch(env_shim, "with the shim");
		}
	}
	if (!env_shim) {
		printf("RESULT plain_us=%.1f batches=%d\n", sb_median(plain, b), b);
		return 0;
	}
	p = sb_median(plain, b);
	s = sb_median(shim, b);
	printf("RESULT plain_us=%.1f shim_us=%.1f ratio=%.3f batches=%d\n", p, s, s / p, b);
	return 0;
}
