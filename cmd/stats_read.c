/*
 * stats_read.c - reads the counters wrapped processes keep in shared memory
 * (shim/stats_layout.h) for `tlsshim stats` (stats_read.h).
 *
 * The reader never waits for a writer: counters are read with relaxed loads
 * from a read-only mapping; a file whose process is gone (its PID absent, or
 * reused by a process that started at another time) is removed here. A file
 * truncated under us faults (SIGBUS): caught, and that file is skipped.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "env.h"
#include "escape.h"
#include "stats_read.h"

#define STALE_UNSET_S 10 /* a file whose writer never finished it */

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

/* Field 22 of /proc/PID/stat, or 0 if the process does not exist. */
static uint64_t proc_starttime(int pid)
{
	char path[64], buf[1024], *p;
	ssize_t n;
	int fd, i;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	for (i = 0; i < 20 && p != NULL; i++)
		p = strchr(p + 1, ' ');
	return p != NULL ? strtoull(p + 1, NULL, 10) : 0;
}

/*
 * Whether process PID now runs another program than the one that made H (it
 * called exec: the counters were that program's). Unknown (no permission to
 * look) counts as no.
 */
static int exec_since(int pid, const struct stats_head *h)
{
	char path[64];
	struct stat st;

	if (h->exe_ino == 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/exe", pid);
	if (stat(path, &st) != 0)
		return 0;
	return (uint64_t)st.st_dev != h->exe_dev || (uint64_t)st.st_ino != h->exe_ino;
}

int stats_pid_of(const char *s)
{
	long v = 0;

	if (*s == '\0')
		return 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return 0;
		v = v * 10 + (*s - '0');
		if (v > INT_MAX)
			return 0;
	}
	return (int)v;
}

/*
 * IN as printable text in OUT (CAP >= ESC_CAP(strlen(IN))), by the rules of
 * the library's log lines (policy/escape.c).
 */
static void text_escape(char *out, size_t cap, const char *in)
{
	size_t used,
	    o = text_escape_units(out, cap - 1, (const unsigned char *)in, strlen(in), &used);

	out[o] = '\0';
}

/* A text field of the file (CAP bytes there), escaped into DST (ESC_CAP(CAP) bytes). */
static void copy_text(char *dst, const char *src, size_t cap)
{
	char raw[STATS_RULE_TEXT];

	cap = cap < sizeof(raw) ? cap : sizeof(raw);
	memcpy(raw, src, cap);
	raw[cap - 1] = '\0';
	text_escape(dst, ESC_CAP(cap), raw);
}

/* copy_text for a field guarded by a sequence number: each byte an acquire load. */
static void copy_text_acquire(char *dst, const char *src, size_t cap)
{
	char raw[STATS_RULE_TEXT];

	cap = cap < sizeof(raw) ? cap : sizeof(raw);
	for (size_t i = 0; i < cap; i++)
		raw[i] = __atomic_load_n(&src[i], __ATOMIC_ACQUIRE);
	raw[cap - 1] = '\0';
	text_escape(dst, ESC_CAP(cap), raw);
}

static void snap_rule(struct rule_snap *d, struct stats_rule *s)
{
	int i, tries;

	d->id = s->id;
	d->dir = s->dir;
	d->action = s->action;
	d->system = s->system;
	copy_text(d->text, s->text, sizeof(s->text));
	d->conns = LOAD(s->conns);
	d->denied = LOAD(s->denied);
	d->plain = LOAD(s->plain);
	d->open = LOAD(s->open);
	for (i = 0; i < STATS_FAIL_N; i++)
		d->failed[i] = LOAD(s->failed[i]);
	d->hs_full = LOAD(s->hs_full);
	d->hs_resumed = LOAD(s->hs_resumed);
	for (i = 0; i < STATS_VER_N; i++)
		d->version[i] = LOAD(s->version[i]);
	d->bytes_in = LOAD(s->bytes_in);
	d->bytes_out = LOAD(s->bytes_out);
	d->cipher_other = LOAD(s->cipher_other);
	d->n_cipher = 0;
	for (i = 0; i < STATS_CIPHERS; i++) {
		if (atomic_load_explicit(&s->cipher[i].state, memory_order_acquire) != 2)
			continue;
		copy_text(d->cipher[d->n_cipher].name, s->cipher[i].name,
			  sizeof(s->cipher[0].name));
		d->cipher[d->n_cipher++].n = LOAD(s->cipher[i].n);
	}
	/*
	 * The certificate's fields change together: read until the sequence is
	 * even and unchanged. Each field is an acquire load, so the sequence is
	 * read again after all of them (an acquire fence would do the same, but
	 * ThreadSanitizer does not support fences).
	 */
	for (tries = 0; tries < 100; tries++) {
		uint32_t a = atomic_load_explicit(&s->cert.seq, memory_order_acquire), b;

		if (a & 1)
			continue;
		copy_text_acquire(d->subject, s->cert.subject, sizeof(s->cert.subject));
		d->not_after = atomic_load_explicit(&s->cert.not_after, memory_order_acquire);
		d->loaded_at = atomic_load_explicit(&s->cert.loaded_at, memory_order_acquire);
		d->loads = atomic_load_explicit(&s->cert.loads, memory_order_acquire);
		b = atomic_load_explicit(&s->cert.seq, memory_order_relaxed);
		if (a == b)
			break;
	}
}

/* A directory of statistics files, opened once: every file is looked up in it. */
struct sdir {
	int fd;
	int others; /* another user's (root reads every user's): read, never prune */
	uid_t owner;
};

/* A file of a process that is gone: removed (when we may), never shown. */
static void prune(const struct sdir *d, const char *name)
{
	if (!d->others)
		unlinkat(d->fd, name, 0);
}

/* The owner of process PID (of /proc/PID), or (uid_t)-1. */
static uid_t proc_owner(int pid)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d", pid);
	return stat(path, &st) == 0 ? st.st_uid : (uid_t)-1;
}

/*
 * A mapped file that shrinks while we read it (its writer, or another user
 * truncating it on purpose) faults with SIGBUS: that file's read is given up.
 */
static sigjmp_buf bus_env;
static volatile sig_atomic_t bus_armed;

static void on_sigbus(int sig)
{
	if (bus_armed)
		siglongjmp(bus_env, 1);
	(void)signal(sig, SIG_DFL);
	(void)raise(sig);
}

/*
 * Maps D's file NAME read-only if it is the file of process PID (ONLY_PID, if
 * not 0) it should be: a regular file big enough for a header, and in another
 * user's directory that user's file about that user's process. NULL if not.
 */
static void *map_file(const struct sdir *d, const char *name, int only_pid, int *pid,
		      struct stat *st)
{
	void *m;
	int fd;

	*pid = stats_pid_of(name);
	if (*pid <= 0)
		return NULL;
	if (only_pid > 0 && *pid != only_pid)
		return NULL;
	fd = openat(d->fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return NULL; /* another user's, or gone */
	if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode) ||
	    (size_t)st->st_size < sizeof(struct stats_head) ||
	    (d->others && (st->st_uid != d->owner || proc_owner(*pid) != d->owner))) {
		close(fd);
		return NULL;
	}
	m = mmap(NULL, (size_t)st->st_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	return m == MAP_FAILED ? NULL : m;
}

/*
 * Whether the header H of D's file NAME (ST: its stat) is complete, of this
 * version and of the live process PID; *N_RULES gets its rule count. A file
 * whose process is gone (or made by a dead writer, or before an exec) is
 * pruned. May fault (SIGBUS) on a file truncated under us: the caller catches it.
 */
static int head_usable(const struct sdir *d, const char *name, const struct stats_head *h, int pid,
		       const struct stat *st, uint32_t *n_rules)
{
	uint64_t start = proc_starttime(pid);

	if (atomic_load_explicit(&h->magic, memory_order_acquire) != STATS_MAGIC) {
		/* Being made (show it next time), or left half made by a dead writer. */
		if (start == 0 || time(NULL) - st->st_mtime > STALE_UNSET_S)
			prune(d, name);
		return 0;
	}
	/* Read once: the file's writer may change it while we look (never trust a second read). */
	*n_rules = __atomic_load_n(&h->n_rules, __ATOMIC_RELAXED);
	if (h->version != STATS_VERSION || h->head_size != sizeof(struct stats_head) ||
	    h->rule_size != sizeof(struct stats_rule) || h->pid != pid ||
	    (uint64_t)st->st_size <
		sizeof(struct stats_head) + (uint64_t)*n_rules * sizeof(struct stats_rule)) {
		/* Another version's file: left to its process while it lives. */
		if (start == 0)
			prune(d, name);
		return 0;
	}
	if (start == 0 || (h->starttime != 0 && start != h->starttime) || exec_since(pid, h)) {
		prune(d, name);
		return 0;
	}
	return 1;
}

/*
 * Copies the N_RULES rules after header H (mapped at M) into a new entry of
 * OUT. *PENDING is 1 while the entry holds rules not yet counted (a SIGBUS
 * then frees them).
 */
static void snap_proc(struct snaps *out, const struct stats_head *h, void *m, int pid,
		      uint32_t n_rules, volatile int *pending)
{
	struct proc_snap *p;

	if (out->n == out->cap) {
		size_t cap = out->cap ? out->cap * 2 : 16;
		struct proc_snap *v = realloc(out->v, cap * sizeof(*v));

		if (v == NULL)
			return;
		out->v = v;
		out->cap = cap;
	}
	p = &out->v[out->n];
	memset(p, 0, sizeof(*p));
	p->rules = calloc(n_rules ? n_rules : 1, sizeof(*p->rules));
	if (p->rules == NULL)
		return;
	*pending = 1;
	p->pid = pid;
	p->uid = h->uid;
	p->created = h->created;
	copy_text(p->comm, h->comm, sizeof(h->comm));
	p->n_rules = n_rules;
	for (uint32_t i = 0; i < n_rules; i++)
		snap_rule(&p->rules[i],
			  (struct stats_rule *)((char *)m + sizeof(struct stats_head) +
						(size_t)i * sizeof(struct stats_rule)));
	out->n++;
	*pending = 0;
}

/* Reads D's file NAME into OUT->v (a new entry) if it belongs to a live process. */
static void read_one(const struct sdir *d, const char *name, int only_pid, struct snaps *out)
{
	struct sigaction bus = {.sa_handler = on_sigbus}, old_bus;
	volatile int pending = 0; /* out->v[out->n] holds rules not yet counted */
	struct stat st;
	uint32_t n_rules = 0;
	void *m;
	int pid;

	m = map_file(d, name, only_pid, &pid, &st);
	if (m == NULL)
		return;
	sigaction(SIGBUS, &bus, &old_bus);
	if (sigsetjmp(bus_env, 1) != 0) {
		if (pending) /* the entry being filled: not counted */
			free(out->v[out->n].rules);
		goto out;
	}
	bus_armed = 1;
	if (head_usable(d, name, m, pid, &st, &n_rules))
		snap_proc(out, m, m, pid, n_rules, &pending);
out:
	bus_armed = 0;
	sigaction(SIGBUS, &old_bus, NULL);
	munmap(m, (size_t)st.st_size);
}

/*
 * Reads the files of DIR. OTHERS: a directory of another user's processes
 * (root reads every user's): its files are only read, never removed, so that
 * a directory swapped for a link while we look cannot make root delete
 * files elsewhere, and only its owner's files about its owner's processes count.
 */
static void read_dir(const char *dir, int others, int only_pid, struct snaps *out, char **seen,
		     size_t *nseen)
{
	char *real_dir = realpath(dir, NULL);
	struct sdir sd = {.others = others};
	struct stat st;
	DIR *d;
	struct dirent *e;

	if (real_dir == NULL)
		return;
	for (size_t i = 0; i < *nseen; i++) {
		if (strcmp(seen[i], real_dir) == 0) {
			free(real_dir);
			return;
		}
	}
	if (*nseen < 64)
		seen[(*nseen)++] = real_dir;
	sd.fd = open(real_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sd.fd >= 0 && fstat(sd.fd, &st) == 0) {
		sd.owner = st.st_uid;
		if (st.st_uid != geteuid())
			sd.others = 1;
	}
	d = sd.fd >= 0 ? fdopendir(dup(sd.fd)) : NULL;
	if (d != NULL) {
		while ((e = readdir(d)) != NULL)
			if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
				read_one(&sd, e->d_name, only_pid, out);
		closedir(d);
	}
	if (sd.fd >= 0)
		close(sd.fd);
	if (*nseen >= 64)
		free(real_dir);
}

static int by_pid(const void *a, const void *b)
{
	const struct proc_snap *x = a, *y = b;

	return (x->pid > y->pid) - (x->pid < y->pid);
}

/*
 * stats_read_all(): every directory a process may have written to: TLSSHIM_STATS_DIR,
 * /run/tlsshim, $XDG_RUNTIME_DIR/tlsshim, and for root every user's.
 */
void stats_read_all(int only_pid, struct snaps *out)
{
	char *seen[64], buf[4200];
	size_t nseen = 0;
	const char *v = getenv(ENV_STATS_DIR);
	glob_t g;

	if (v != NULL && v[0] != '\0')
		read_dir(v, 0, only_pid, out, seen, &nseen);
	read_dir(ENV_STATS_DIR_DEFAULT, 0, only_pid, out, seen, &nseen);
	v = getenv("XDG_RUNTIME_DIR");
	if (v != NULL && v[0] == '/') {
		snprintf(buf, sizeof(buf), "%s/tlsshim", v);
		read_dir(buf, 0, only_pid, out, seen, &nseen);
	}
	if (geteuid() == 0 && glob("/run/user/*/tlsshim", GLOB_NOSORT, NULL, &g) == 0) {
		for (size_t i = 0; i < g.gl_pathc; i++)
			read_dir(g.gl_pathv[i], 1, only_pid, out, seen, &nseen);
		globfree(&g);
	}
	for (size_t i = 0; i < nseen; i++)
		free(seen[i]);
	if (out->n > 1) /* out->v is NULL when nothing was found */
		qsort(out->v, out->n, sizeof(*out->v), by_pid);
}

void stats_snaps_free(struct snaps *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i].rules);
	free(s->v);
}
