/*
 * fdio - the cost of read/write on fds the shim does not wrap: 1-byte writes to
 * /dev/null, 1-byte reads from /dev/zero, and 1-byte write+read pairs through a
 * pipe, N of each. The driver runs it with and without LD_PRELOAD=libtlsshim.so
 * (and a policy with connect and accept rules) and compares the means.
 *
 *   fdio N
 *
 * Prints "RESULT ns_per_call=MEAN devnull_write=NS devzero_read=NS pipe=NS preloaded=0|1",
 * MEAN being over all 4N calls and preloaded whether libtlsshim is mapped in the
 * process (so a preload the loader ignored cannot pass for a measurement).
 */
#include <fcntl.h>

#include "bench.h"

static double fdio_devnull(long long n)
{
	int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	double t0, t1;
	char c = 'x';
	long long i;

	if (fd < 0)
		die("/dev/null: %s", strerror(errno));
	t0 = now_s();
	for (i = 0; i < n; i++)
		if (write(fd, &c, 1) != 1)
			die("write /dev/null: %s", strerror(errno));
	t1 = now_s();
	close(fd);
	return (t1 - t0) * 1e9 / (double)n;
}

static double fdio_devzero(long long n)
{
	int fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	double t0, t1;
	char c;
	long long i;

	if (fd < 0)
		die("/dev/zero: %s", strerror(errno));
	t0 = now_s();
	for (i = 0; i < n; i++)
		if (read(fd, &c, 1) != 1)
			die("read /dev/zero: %s", strerror(errno));
	t1 = now_s();
	close(fd);
	return (t1 - t0) * 1e9 / (double)n;
}

/* Returns ns per call (each round is one write and one read). */
static double fdio_pipe(long long n)
{
	double t0, t1;
	char c = 'x';
	long long i;
	int p[2];

	if (pipe2(p, O_CLOEXEC) != 0)
		die("pipe: %s", strerror(errno));
	t0 = now_s();
	for (i = 0; i < n; i++) {
		if (write(p[1], &c, 1) != 1)
			die("write pipe: %s", strerror(errno));
		if (read(p[0], &c, 1) != 1)
			die("read pipe: %s", strerror(errno));
	}
	t1 = now_s();
	close(p[0]);
	close(p[1]);
	return (t1 - t0) * 1e9 / (double)(2 * n);
}

static int fdio_preloaded(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[4096];
	int found = 0;

	if (!f)
		die("/proc/self/maps: %s", strerror(errno));
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, "libtlsshim") != NULL;
	fclose(f);
	return found;
}

int main(int argc, char **argv)
{
	double w, r, p;
	long long n;

	bench_prog = argv[0];
	if (argc != 2)
		die("usage: %s N", argv[0]);
	n = arg_num(argv[1], "count", 1000, 100000000);
	hard_limit(300);
	w = fdio_devnull(n);
	r = fdio_devzero(n);
	p = fdio_pipe(n);
	printf("RESULT ns_per_call=%.2f devnull_write=%.2f devzero_read=%.2f pipe=%.2f "
	       "preloaded=%d\n",
	       (w + r + 2 * p) / 4, w, r, p, fdio_preloaded());
	return 0;
}
