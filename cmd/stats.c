/*
 * stats.c - `tlsshim stats`: reads the counters wrapped processes keep in
 * shared memory (shim/stats_layout.h) and prints a table of processes, one
 * process by rule, or the Prometheus text exposition format.
 *
 * The reader never waits for a writer: counters are read with relaxed loads
 * from a read-only mapping; a file whose process is gone (its PID absent, or
 * reused by a process that started at another time) is removed here.
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

#include "cmd.h"
#include "env.h"
#include "stats_layout.h"
#include "util.h"

#define STALE_UNSET_S 10 /* a file whose writer never finished it */

/*
 * Text a process wrote is printed escaped (text_escape): a file can say
 * anything, and root's `tlsshim stats` reads every user's. Escaped, a byte
 * takes at most 4.
 */
#define ESC_CAP(n) ((n)*4 + 4)

/* One rule's counters, copied out of the file. */
struct rule_snap {
	uint32_t id;
	int dir, action, system;
	char text[ESC_CAP(STATS_RULE_TEXT)];
	uint64_t conns, denied, plain, failed[STATS_FAIL_N], hs_full, hs_resumed;
	uint64_t version[STATS_VER_N], bytes_in, bytes_out, cipher_other;
	int64_t open;
	struct {
		char name[ESC_CAP(STATS_CIPHER_NAME)];
		uint64_t n;
	} cipher[STATS_CIPHERS];
	int n_cipher;
	int64_t not_after, loaded_at;
	uint64_t loads;
	char subject[ESC_CAP(STATS_SUBJECT)];
};

struct proc_snap {
	int pid;
	uint32_t uid;
	int64_t created;
	char comm[ESC_CAP(STATS_COMM)];
	uint32_t n_rules;
	struct rule_snap *rules;
};

struct snaps {
	struct proc_snap *v;
	size_t n, cap;
};

static const char *const fail_names[STATS_FAIL_N] = {"verify", "timeout", "not_tls",
						     "alert",  "closed",  "other"};
static const char *const ver_names[STATS_VER_N] = {"TLSv1.2", "TLSv1.3", "other"};

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

/* The process ID S spells (digits only, 1 to INT_MAX), or 0 (atoi wraps "4294967297" to 1). */
static int pid_of(const char *s)
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

/* Length of the well-formed UTF-8 sequence at S (N bytes), 0 if none or a control. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
	uint32_t cp;

	if (len == 0 || len > n || s[0] > 0xf4)
		return 0;
	cp = s[0] & (0x7fu >> len);
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3fu);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	/* C1 controls and the bidirectional overrides/isolates that reorder a line. */
	if (cp <= 0x9f || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069))
		return 0;
	return len;
}

/*
 * IN as printable text in OUT (CAP >= ESC_CAP(strlen(IN))): printable ASCII
 * and well-formed UTF-8 as they are, a backslash as \\, anything else
 * (terminal controls, bytes that are not UTF-8) as \xNN; the rules of the
 * library's log lines (shim/log.c, log_escape).
 */
static void text_escape(char *out, size_t cap, const char *in)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t n = strlen(in), o = 0;

	for (size_t i = 0; i < n && o + 5 <= cap;) {
		size_t u = s[i] >= 0x80 ? utf8_len(s + i, n - i) : 0;

		if (u > 0) {
			memcpy(out + o, s + i, u);
			o += u;
			i += u;
		} else if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\') {
			out[o++] = (char)s[i++];
		} else if (s[i] == '\\') {
			out[o++] = '\\';
			out[o++] = '\\';
			i++;
		} else {
			o += (size_t)snprintf(out + o, cap - o, "\\x%02x", s[i++]);
		}
	}
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

	*pid = pid_of(name);
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
 * Every directory a process may have written to: TLSSHIM_STATS_DIR,
 * /run/tlsshim, $XDG_RUNTIME_DIR/tlsshim, and for root every user's.
 */
static void read_all(int only_pid, struct snaps *out)
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

static void snaps_free(struct snaps *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i].rules);
	free(s->v);
}

/* ---- the table ------------------------------------------------------------------------ */

static void human_bytes(uint64_t n, char *buf, size_t len)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	double v = (double)n;
	int u = 0;

	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)n);
	else
		snprintf(buf, len, "%.1f %s", v, unit[u]);
}

static void utc(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t == 0 || gmtime_r(&tt, &tm) == NULL) {
		snprintf(buf, len, "-");
		return;
	}
	if (strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(buf, len, "-");
}

/* "2027-01-12 (37 days)", "2026-12-01 (EXPIRED)", or "-". */
static void expiry(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t, now = time(NULL);
	struct tm tm;
	char day[16];

	if (t == 0 || gmtime_r(&tt, &tm) == NULL) {
		snprintf(buf, len, "-");
		return;
	}
	if (strftime(day, sizeof(day), "%Y-%m-%d", &tm) == 0) {
		snprintf(buf, len, "-");
		return;
	}
	if (t <= now)
		snprintf(buf, len, "%s (EXPIRED)", day);
	else
		snprintf(buf, len, "%s (%lld days)", day, (long long)((t - now) / 86400));
}

static void resumed_rate(uint64_t full, uint64_t resumed, char *buf, size_t len)
{
	if (full + resumed == 0)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.0f%%", 100.0 * (double)resumed / (double)(full + resumed));
}

static uint64_t failed_sum(const struct rule_snap *r)
{
	uint64_t n = 0;

	for (int i = 0; i < STATS_FAIL_N; i++)
		n += r->failed[i];
	return n;
}

static void print_table(const struct snaps *s)
{
	printf("%-8s %-16s %6s %8s %7s %7s %8s %10s %10s  %s\n", "PID", "COMMAND", "OPEN", "TOTAL",
	       "FAILED", "DENIED", "RESUMED", "IN", "OUT", "NEAREST CERT EXPIRY");
	for (size_t i = 0; i < s->n; i++) {
		const struct proc_snap *p = &s->v[i];
		uint64_t conns = 0, failed = 0, denied = 0, full = 0, res = 0, in = 0, outb = 0;
		int64_t open = 0, nearest = 0;
		char rate[16], bin[32], bout[32], exp[48];

		for (uint32_t j = 0; j < p->n_rules; j++) {
			const struct rule_snap *r = &p->rules[j];

			conns += r->conns;
			open += r->open;
			failed += failed_sum(r);
			denied += r->denied;
			full += r->hs_full;
			res += r->hs_resumed;
			in += r->bytes_in;
			outb += r->bytes_out;
			if (r->not_after != 0 && (nearest == 0 || r->not_after < nearest))
				nearest = r->not_after;
		}
		resumed_rate(full, res, rate, sizeof(rate));
		human_bytes(in, bin, sizeof(bin));
		human_bytes(outb, bout, sizeof(bout));
		expiry(nearest, exp, sizeof(exp));
		printf("%-8d %-16s %6lld %8llu %7llu %7llu %8s %10s %10s  %s\n", p->pid, p->comm,
		       (long long)open, (unsigned long long)conns, (unsigned long long)failed,
		       (unsigned long long)denied, rate, bin, bout, exp);
	}
}

static void print_process(const struct proc_snap *p)
{
	char when[40], rate[16], bin[32], bout[32], exp[48];

	utc(p->created, when, sizeof(when));
	printf("process %d (%s), counting since %s\n", p->pid, p->comm, when);
	for (uint32_t j = 0; j < p->n_rules; j++) {
		const struct rule_snap *r = &p->rules[j];
		int i;

		printf("\nrule %s%s\n", r->text, r->system ? "  (system policy)" : "");
		printf("  connections  %llu total, %lld open, %llu denied, %llu plain\n",
		       (unsigned long long)r->conns, (long long)r->open,
		       (unsigned long long)r->denied, (unsigned long long)r->plain);
		resumed_rate(r->hs_full, r->hs_resumed, rate, sizeof(rate));
		printf("  handshakes   %llu full, %llu resumed (%s)\n",
		       (unsigned long long)r->hs_full, (unsigned long long)r->hs_resumed, rate);
		printf("  failed       %llu:", (unsigned long long)failed_sum(r));
		for (i = 0; i < STATS_FAIL_N; i++)
			printf(" %s %llu%s", fail_names[i], (unsigned long long)r->failed[i],
			       i + 1 < STATS_FAIL_N ? "," : "");
		printf("\n  versions    ");
		for (i = 0; i < STATS_VER_N; i++)
			if (r->version[i] != 0 || i < STATS_VER_OTHER)
				printf(" %s %llu", ver_names[i], (unsigned long long)r->version[i]);
		printf("\n  ciphers     ");
		if (r->n_cipher == 0)
			printf(" -");
		for (i = 0; i < r->n_cipher; i++)
			printf(" %s %llu%s", r->cipher[i].name, (unsigned long long)r->cipher[i].n,
			       i + 1 < r->n_cipher ? "," : "");
		if (r->cipher_other != 0)
			printf(", other %llu", (unsigned long long)r->cipher_other);
		human_bytes(r->bytes_in, bin, sizeof(bin));
		human_bytes(r->bytes_out, bout, sizeof(bout));
		printf("\n  bytes        in %s (%llu), out %s (%llu)\n", bin,
		       (unsigned long long)r->bytes_in, bout, (unsigned long long)r->bytes_out);
		if (r->not_after != 0) {
			expiry(r->not_after, exp, sizeof(exp));
			utc(r->loaded_at, when, sizeof(when));
			printf("  certificate  %s, expires %s, loaded %s (%llu load%s)\n",
			       r->subject, exp, when, (unsigned long long)r->loads,
			       r->loads == 1 ? "" : "s");
		}
	}
}

/* ---- Prometheus ------------------------------------------------------------------------ */

/* A label value: backslash, double quote and newline escaped (the exposition format). */
static void put_label(FILE *f, const char *name, const char *v)
{
	fprintf(f, "%s=\"", name);
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fprintf(f, "\\%c", *v);
		else if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
	fputc('"', f);
}

static void put_proc_labels(FILE *f, const struct proc_snap *p)
{
	fprintf(f, "pid=\"%d\",", p->pid);
	put_label(f, "command", p->comm);
}

static void put_rule_labels(FILE *f, const struct proc_snap *p, const struct rule_snap *r)
{
	put_proc_labels(f, p);
	fputc(',', f);
	put_label(f, "rule", r->text);
	fprintf(f, ",direction=\"%s\"", r->dir == 0 ? "connect" : "accept");
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One sample per rule of every process for which COND holds: NAME{labels} EXPR. */
#define PER_RULE_IF(f, s, name, expr, cond)                                 \
	do {                                                                \
		for (size_t i_ = 0; i_ < (s)->n; i_++) {                    \
			const struct proc_snap *p_ = &(s)->v[i_];           \
			for (uint32_t j_ = 0; j_ < p_->n_rules; j_++) {     \
				const struct rule_snap *r = &p_->rules[j_]; \
				if (!(cond))                                \
					continue;                           \
				fprintf(f, "%s{", name);                    \
				put_rule_labels(f, p_, r);                  \
				fprintf(f, "} %lld\n", (long long)(expr));  \
			}                                                   \
		}                                                           \
	} while (0)
#define PER_RULE(f, s, name, expr) PER_RULE_IF(f, s, name, expr, 1)

static uint64_t count_failed(const struct rule_snap *r, int k)
{
	return r->failed[k];
}

static uint64_t count_handshakes(const struct rule_snap *r, int k)
{
	return k ? r->hs_resumed : r->hs_full;
}

static uint64_t count_version(const struct rule_snap *r, int k)
{
	return r->version[k];
}

/*
 * One sample per rule of every process and per value of LABEL (VALUES[0..N)):
 * NAME{labels,LABEL="VALUES[k]"} COUNT(r, k).
 */
static void per_rule_by(FILE *f, const struct snaps *s, const char *name, const char *label,
			const char *const *values, int n,
			uint64_t (*count)(const struct rule_snap *r, int k))
{
	for (size_t i = 0; i < s->n; i++)
		for (uint32_t j = 0; j < s->v[i].n_rules; j++)
			for (int k = 0; k < n; k++) {
				const struct rule_snap *r = &s->v[i].rules[j];

				fprintf(f, "%s{", name);
				put_rule_labels(f, &s->v[i], r);
				fprintf(f, ",%s=\"%s\"} %llu\n", label, values[k],
					(unsigned long long)count(r, k));
			}
}

static void put_ciphers(FILE *f, const struct snaps *s)
{
	for (size_t i = 0; i < s->n; i++)
		for (uint32_t j = 0; j < s->v[i].n_rules; j++) {
			const struct rule_snap *r = &s->v[i].rules[j];

			for (int k = 0; k <= r->n_cipher; k++) {
				if (k == r->n_cipher && r->cipher_other == 0)
					break;
				fputs("tlsshim_tls_cipher_total{", f);
				put_rule_labels(f, &s->v[i], r);
				fputc(',', f);
				put_label(f, "cipher",
					  k < r->n_cipher ? r->cipher[k].name : "other");
				fprintf(f, "} %llu\n",
					(unsigned long long)(k < r->n_cipher ? r->cipher[k].n
									     : r->cipher_other));
			}
		}
}

/* The two certificate gauges of the rules that have a certificate. */
static void put_certificates(FILE *f, const struct snaps *s)
{
	family(f, "tlsshim_certificate_expiry_timestamp_seconds", "gauge",
	       "notAfter of the rule's certificate chain (the certificate that expires first).");
	for (size_t i = 0; i < s->n; i++)
		for (uint32_t j = 0; j < s->v[i].n_rules; j++) {
			const struct rule_snap *r = &s->v[i].rules[j];

			if (r->not_after == 0)
				continue;
			fputs("tlsshim_certificate_expiry_timestamp_seconds{", f);
			put_rule_labels(f, &s->v[i], r);
			fputc(',', f);
			put_label(f, "subject", r->subject);
			fprintf(f, "} %lld\n", (long long)r->not_after);
		}
	family(f, "tlsshim_certificate_loaded_timestamp_seconds", "gauge",
	       "When the rule's certificate was last (re)loaded.");
	PER_RULE_IF(f, s, "tlsshim_certificate_loaded_timestamp_seconds", r->loaded_at,
		    r->not_after != 0);
}

static void print_prometheus(FILE *f, const struct snaps *s)
{
	static const char *const resumed[] = {"false", "true"};

	family(f, "tlsshim_process_start_time_seconds", "gauge",
	       "When the process made its statistics file (its first wrapped connection).");
	for (size_t i = 0; i < s->n; i++) {
		fputs("tlsshim_process_start_time_seconds{", f);
		put_proc_labels(f, &s->v[i]);
		fprintf(f, "} %lld\n", (long long)s->v[i].created);
	}
	family(f, "tlsshim_connections_total", "counter",
	       "Connections a tls or auto rule took over.");
	PER_RULE(f, s, "tlsshim_connections_total", r->conns);
	family(f, "tlsshim_connections_open", "gauge",
	       "Connections taken over by this process and not yet closed.");
	PER_RULE(f, s, "tlsshim_connections_open", r->open);
	family(f, "tlsshim_connections_denied_total", "counter",
	       "Connections refused by a deny rule.");
	PER_RULE(f, s, "tlsshim_connections_denied_total", r->denied);
	family(f, "tlsshim_connections_plain_total", "counter",
	       "Connections passed in cleartext (a plain rule, or a cleartext client of auto).");
	PER_RULE(f, s, "tlsshim_connections_plain_total", r->plain);
	family(f, "tlsshim_connections_failed_total", "counter",
	       "Wrapped connections that failed, by reason.");
	per_rule_by(f, s, "tlsshim_connections_failed_total", "reason", fail_names, STATS_FAIL_N,
		    count_failed);
	family(f, "tlsshim_handshakes_total", "counter",
	       "Completed TLS handshakes, full or resuming a session.");
	per_rule_by(f, s, "tlsshim_handshakes_total", "resumed", resumed, 2, count_handshakes);
	family(f, "tlsshim_tls_version_total", "counter",
	       "Completed handshakes by negotiated TLS version.");
	per_rule_by(f, s, "tlsshim_tls_version_total", "version", ver_names, STATS_VER_N,
		    count_version);
	family(f, "tlsshim_tls_cipher_total", "counter",
	       "Completed handshakes by negotiated cipher suite.");
	put_ciphers(f, s);
	family(f, "tlsshim_received_bytes_total", "counter",
	       "Plaintext bytes the program read from wrapped connections.");
	PER_RULE(f, s, "tlsshim_received_bytes_total", r->bytes_in);
	family(f, "tlsshim_sent_bytes_total", "counter",
	       "Plaintext bytes the program wrote to wrapped connections.");
	PER_RULE(f, s, "tlsshim_sent_bytes_total", r->bytes_out);
	put_certificates(f, s);
}

/* Writes the exposition to PATH atomically: a temporary file beside it, fsync, rename. */
static int write_prometheus(const char *path, const struct snaps *s)
{
	char *tmp = NULL;
	FILE *f;
	int fd, rc = -1;

	if (asprintf(&tmp, "%s.%d.tmp", path, (int)getpid()) < 0) {
		cmd_err("out of memory");
		return -1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
		cmd_err("cannot create %s: %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		free(tmp);
		return -1;
	}
	print_prometheus(f, s);
	if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
		cmd_err("cannot write %s: %s", tmp, strerror(errno));
		(void)fclose(f); /* the error is reported */
		goto out;
	}
	if (fclose(f) != 0) {
		cmd_err("cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (rename(tmp, path) != 0) {
		cmd_err("cannot rename %s to %s: %s", tmp, path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (rc != 0)
		unlink(tmp);
	free(tmp);
	return rc;
}

int cmd_stats(int argc, char **argv)
{
	const char *output = NULL;
	int prom = 0, pid = 0, rc = CMD_EXIT_OK;
	struct snaps s = {0};

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--prometheus") == 0) {
			prom = 1;
		} else if (strcmp(argv[i], "--output") == 0 || strcmp(argv[i], "-o") == 0) {
			if (i + 1 >= argc || argv[i + 1][0] == '\0')
				return cmd_usage_error("%s needs a file name", argv[i]);
			output = argv[++i];
		} else if (pid_of(argv[i]) > 0 && pid == 0) {
			pid = pid_of(argv[i]);
		} else {
			return cmd_usage_error("stats: unexpected '%s' (usage: tlsshim stats [PID] "
					       "[--prometheus [--output FILE]])",
					       argv[i]);
		}
	}
	if (output != NULL && !prom)
		return cmd_usage_error("--output goes with --prometheus");
	read_all(pid, &s);
	if (prom) {
		if (output != NULL)
			rc = write_prometheus(output, &s) == 0 ? CMD_EXIT_OK : 1;
		else
			print_prometheus(stdout, &s);
	} else if (pid != 0) {
		if (s.n == 0) {
			cmd_err(
			    "no statistics for process %d: it is not running under tlsshim, has "
			    "not wrapped a connection yet, has " ENV_STATS "=" ENV_STATS_OFF
			    ", or its file "
			    "is in a directory this user cannot read",
			    pid);
			rc = 1;
		} else {
			print_process(&s.v[0]);
		}
	} else {
		print_table(&s);
	}
	snaps_free(&s);
	return rc;
}
