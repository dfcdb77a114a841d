/*
 * spawnbench - the start-up cost the shim adds to a program that wraps nothing:
 * fork + execve + waitpid of /bin/true without LD_PRELOAD, with LD_PRELOAD=LIB and
 * TLSSHIM_POLICY=$BENCH_SHIM_POLICY, and (given FLOOR) with LD_PRELOAD=FLOOR, an
 * empty library: what preloading any library costs on this machine.
 *
 *   spawnbench N [LIB [FLOOR]]
 *
 * The kinds run in rounds of one batch each (SB_BATCH runs), the order rotating
 * from round to round, so that the machine's drift touches all alike. On this
 * kind of VM one kind's batch means move by 10% from run to run, more than the
 * differences measured, so every ratio is the median of per-round ratios, kinds
 * of the same round compared, never medians of separate runs.
 *
 * Prints "RESULT plain_us=US [shim_us=US ratio=R [floor_us=US floor_ratio=R
 * over_floor=D]] batches=B", where over_floor is the median of the per-round
 * (shim - floor) / plain. Stops early (with at least two rounds) after 120 s.
 */
#include <sys/wait.h>

#include "bench.h"

#define SB_BATCH       25
#define SB_MAX_BATCHES 2000
#define SB_KINDS       3 /* plain, shim, floor */

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

/* Median of the per-round A[i]/C[i] (B NULL) or (A[i] - B[i])/C[i], over N rounds. */
static double sb_paired(const double *a, const double *b, const double *c, int n)
{
	static double r[SB_MAX_BATCHES];

	for (int i = 0; i < n; i++)
		r[i] = (a[i] - (b != NULL ? b[i] : 0)) / c[i];
	return sb_median(r, n);
}

int main(int argc, char **argv)
{
	static double t[SB_KINDS][SB_MAX_BATCHES];
	static const char *what[SB_KINDS] = {"without the shim", "with the shim",
					     "with the empty library"};
	char preload[4096], policy[8192], floor_preload[4096];
	char *none[] = {NULL}, *extra[] = {preload, policy, NULL},
	     *floor_extra[] = {floor_preload, NULL};
	char **env[SB_KINDS] = {NULL, NULL, NULL};
	double deadline = now_s() + 120, p, s;
	int rounds, r, nk = 1;
	const char *pol;

	bench_prog = argv[0];
	if (argc < 2 || argc > 4)
		die("usage: %s N [LIB [FLOOR]]", argv[0]);
	rounds =
	    (int)(arg_num(argv[1], "count", SB_BATCH * 2, SB_BATCH * SB_MAX_BATCHES) / SB_BATCH);
	hard_limit(300);
	env[0] = sb_env(none);
	if (argc >= 3) {
		pol = getenv("BENCH_SHIM_POLICY");
		if (!pol)
			die("BENCH_SHIM_POLICY is not set");
		snprintf(preload, sizeof(preload), "LD_PRELOAD=%s", argv[2]);
		snprintf(policy, sizeof(policy), "TLSSHIM_POLICY=%s", pol);
		env[1] = sb_env(extra);
		nk = 2;
	}
	if (argc == 4) {
		snprintf(floor_preload, sizeof(floor_preload), "LD_PRELOAD=%s", argv[3]);
		env[2] = sb_env(floor_extra);
		nk = 3;
	}
	for (r = 0; r < rounds; r++) {
		if (r >= 2 && now_s() > deadline)
			break;
		for (int j = 0; j < nk; j++) {
			int k = (j + r) % nk;

			t[k][r] = sb_batch(env[k], what[k]);
		}
	}
	if (nk == 1) {
		printf("RESULT plain_us=%.1f batches=%d\n", sb_median(t[0], r), r);
		return 0;
	}
	/* The paired ratios first: sb_median() sorts its array. */
	double ratio = sb_paired(t[1], NULL, t[0], r), floor_ratio = 0, over = 0;

	if (nk == 3) {
		floor_ratio = sb_paired(t[2], NULL, t[0], r);
		over = sb_paired(t[1], t[2], t[0], r);
	}
	p = sb_median(t[0], r);
	s = sb_median(t[1], r);
	printf("RESULT plain_us=%.1f shim_us=%.1f ratio=%.3f", p, s, ratio);
	if (nk == 3)
		printf(" floor_us=%.1f floor_ratio=%.3f over_floor=%.3f", sb_median(t[2], r),
		       floor_ratio, over);
	printf(" batches=%d\n", r);
	return 0;
}
