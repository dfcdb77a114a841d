/*
 * stats.c - the writer side of `tlsshim stats`: one file per process, mapped
 * at the first connection a rule takes over or denies (stats.h, and the
 * layout in stats_layout.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "env.h"
#include "log.h"
#include "real.h"
#include "shim.h"
#include "stats.h"

#define STATS_RUN_DIR     ENV_STATS_DIR_DEFAULT
#define STATS_EARLY_RULES 64 /* cleartext decisions kept before the file exists */

struct stats_rule *stats_base;
uint32_t stats_n;

enum { ST_UNTRIED = 0, ST_MAPPED, ST_NONE };

static int st_state SHIM_LOAD_DATA;     /* ST_*; guarded by st_lock for changes */
static int st_off SHIM_LOAD_DATA;       /* TLSSHIM_STATS=off */
static int st_secure SHIM_LOAD_DATA;    /* AT_SECURE: no variable was read */
static char *st_dir_env SHIM_LOAD_DATA; /* TLSSHIM_STATS_DIR (a copy), or NULL */
/* XDG_RUNTIME_DIR, copied into memory the loader already wrote (no malloc at start-up). */
static char st_xdg[128] SHIM_LOAD_DATA;
static unsigned st_gen SHIM_LOAD_DATA = 1; /* bumped in a fork child: marks of connections */
static atomic_int st_live; /* connections counted open in this process (stats_conn_new) */

static pthread_mutex_t st_lock = PTHREAD_MUTEX_INITIALIZER;
static char st_path[4096];
static size_t st_size;
static struct stats_head *st_head;
static _Atomic uint32_t st_plain_early[STATS_EARLY_RULES];

/* What the engine said about each rule's certificate, kept for a file made later (fork). */
struct cert_local {
	int set;
	int64_t not_after, loaded_at;
	uint64_t loads;
	char subject[STATS_SUBJECT];
};
static struct cert_local *st_certs; /* [stats_rules_total()], under st_lock */

void stats_init(int secure)
{
	const char *v;

	st_secure = secure;
	if (secure)
		return;
	v = shim_getenv(ENV_STATS);
	st_off = v != NULL && strcmp(v, ENV_STATS_OFF) == 0;
	v = shim_getenv(ENV_STATS_DIR);
	/* Set by the user: a copy is worth the malloc(). */
	if (v != NULL && v[0] != '\0')
		st_dir_env = strdup(v);
	v = shim_getenv("XDG_RUNTIME_DIR");
	if (v != NULL && v[0] == '/' && strlen(v) < sizeof(st_xdg))
		memcpy(st_xdg, v, strlen(v) + 1);
}

/* Rule ids run over the system policy's rules, then the process's own. */
static uint32_t rules_total(void)
{
	const struct policy *floor;

	if (shim.policy == NULL)
		return 0;
	floor = policy_floor(shim.policy);
	return (uint32_t)(policy_count(shim.policy) + (floor ? policy_count(floor) : 0));
}

/* Field 22 of /proc/self/stat: the start time, which with the PID names this process. */
static uint64_t self_starttime(void)
{
	char buf[1024], *p;
	ssize_t n;
	int fd = real_open("/proc/self/stat", O_RDONLY | O_CLOEXEC, 0), i;

	if (fd < 0)
		return 0;
	n = real.read(fd, buf, sizeof(buf) - 1);
	real.close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (p == NULL)
		return 0;
	/* After "comm)" come fields 3, 4, ...: skip 19 of them. */
	for (i = 0; i < 20 && p != NULL; i++)
		p = strchr(p + 1, ' ');
	return p != NULL ? strtoull(p + 1, NULL, 10) : 0;
}

/* Makes DIR (0700, or MODE) if missing; whether this process may create files in it. */
static int dir_usable(const char *dir, mode_t mode)
{
	struct stat st;

	if (mkdir(dir, mode) != 0 && errno != EEXIST)
		return 0;
	if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
		return 0;
	return access(dir, W_OK | X_OK) == 0;
}

/* The statistics directory into BUF, or -1 if there is none this process can use. */
static int pick_dir(char *buf, size_t len)
{
	if (st_dir_env != NULL) {
		if (!dir_usable(st_dir_env, 0700) || strlen(st_dir_env) >= len)
			return -1;
		snprintf(buf, len, "%s", st_dir_env);
		return 0;
	}
	if (dir_usable(STATS_RUN_DIR, 0755)) {
		snprintf(buf, len, "%s", STATS_RUN_DIR);
		return 0;
	}
	if (st_secure || st_xdg[0] == '\0')
		return -1;
	snprintf(buf, len, "%s/tlsshim", st_xdg);
	return dir_usable(buf, 0700) ? 0 : -1;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
	size_t n = src != NULL ? strlen(src) : 0;

	if (n >= cap)
		n = cap - 1;
	if (n > 0)
		memcpy(dst, src, n);
	dst[n] = '\0';
}

static void fill_rules(struct stats_rule *rules, uint32_t n)
{
	const struct policy *tabs[2] = {policy_floor(shim.policy), shim.policy};

	for (int t = 0; t < 2; t++) {
		if (tabs[t] == NULL)
			continue;
		for (size_t i = 0; i < policy_count(tabs[t]); i++) {
			const struct policy_rule *r = policy_rule_at(tabs[t], i);
			struct stats_rule *s;

			if (r->id >= n)
				continue;
			s = &rules[r->id];
			s->id = r->id;
			s->dir = (uint8_t)r->dir;
			s->action = (uint8_t)r->action;
			s->system = t == 0;
			copy_str(s->text, sizeof(s->text), r->text);
			if (r->id < STATS_EARLY_RULES)
				atomic_store_explicit(&s->plain,
						      atomic_load(&st_plain_early[r->id]),
						      memory_order_relaxed);
		}
	}
}

static void cert_publish(struct stats_cert *dst, const struct cert_local *c)
{
	uint32_t seq = atomic_load_explicit(&dst->seq, memory_order_relaxed);

	atomic_store_explicit(&dst->seq, seq + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	copy_str(dst->subject, sizeof(dst->subject), c->subject);
	atomic_store_explicit(&dst->not_after, c->not_after, memory_order_relaxed);
	atomic_store_explicit(&dst->loaded_at, c->loaded_at, memory_order_relaxed);
	atomic_store_explicit(&dst->loads, c->loads, memory_order_relaxed);
	atomic_store_explicit(&dst->seq, seq + 2, memory_order_release);
}

/* Makes and maps the file (st_lock held). Returns the new st_state: ST_MAPPED or ST_NONE. */
static int map_locked(void)
{
	char dir[4000];
	uint32_t n = rules_total();
	size_t size = sizeof(struct stats_head) + (size_t)n * sizeof(struct stats_rule);
	struct stats_head *h;
	struct stat exe;
	void *m;
	int fd, tries;

	if (st_off || n == 0 || pick_dir(dir, sizeof(dir)) != 0)
		return ST_NONE;
	snprintf(st_path, sizeof(st_path), "%s/%d", dir, (int)getpid());
	for (tries = 0;; tries++) {
		fd = real_open(st_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd >= 0 || errno != EEXIST || tries > 0)
			break;
		/* A file by this PID is a dead process's (or this one's before exec). */
		unlink(st_path);
	}
	if (fd < 0) {
		log_debug("statistics: cannot create %s: %s", st_path, strerror(errno));
		return ST_NONE;
	}
	if (ftruncate(fd, (off_t)size) != 0) {
		log_debug("statistics: cannot size %s: %s", st_path, strerror(errno));
		goto fail;
	}
	m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		log_debug("statistics: cannot map %s: %s", st_path, strerror(errno));
		goto fail;
	}
	real.close(fd);
	h = m;
	h->version = STATS_VERSION;
	h->head_size = sizeof(struct stats_head);
	h->rule_size = sizeof(struct stats_rule);
	h->n_rules = n;
	h->pid = (int32_t)getpid();
	h->uid = (uint32_t)getuid();
	h->starttime = self_starttime();
	h->created = (int64_t)time(NULL);
	if (stat("/proc/self/exe", &exe) == 0) {
		h->exe_dev = (uint64_t)exe.st_dev;
		h->exe_ino = (uint64_t)exe.st_ino;
	}
	copy_str(h->comm, sizeof(h->comm), program_invocation_short_name);
	fill_rules((struct stats_rule *)(h + 1), n);
	if (st_certs != NULL) {
		for (uint32_t i = 0; i < n; i++)
			if (st_certs[i].set)
				cert_publish(&((struct stats_rule *)(h + 1))[i].cert, &st_certs[i]);
	}
	atomic_store_explicit(&h->magic, STATS_MAGIC, memory_order_release);
	st_head = h;
	st_size = size;
	stats_n = n;
	__atomic_store_n(&stats_base, (struct stats_rule *)(h + 1), __ATOMIC_RELEASE);
	log_debug("statistics: %s", st_path);
	return ST_MAPPED;
fail:
	real.close(fd);
	unlink(st_path);
	return ST_NONE;
}

/* The rule's counters, making the file first if this process has none yet. */
static struct stats_rule *rule_mapped(const struct policy_rule *r)
{
	if (r == NULL || r->source == NULL) /* a stand-in rule (inherit.c) */
		return NULL;
	/* Set once under st_lock, read without it: a thread that sees it set sees the file. */
	if (__atomic_load_n(&st_state, __ATOMIC_ACQUIRE) == ST_UNTRIED) {
		pthread_mutex_lock(&st_lock);
		if (st_state == ST_UNTRIED)
			__atomic_store_n(&st_state, map_locked(), __ATOMIC_RELEASE);
		pthread_mutex_unlock(&st_lock);
	}
	return stats_rule_of(r);
}

#define ADD(field) atomic_fetch_add_explicit(&(field), 1, memory_order_relaxed)

unsigned stats_conn_new(const struct policy_rule *r)
{
	struct stats_rule *s = rule_mapped(r);

	if (s == NULL)
		return 0;
	ADD(s->conns);
	ADD(s->open);
	atomic_fetch_add_explicit(&st_live, 1, memory_order_relaxed);
	return st_gen;
}

void stats_conn_end(const struct policy_rule *r, unsigned mark)
{
	struct stats_rule *s;

	/* Only where it was counted open: not a fork child's inherited copy. */
	if (mark == 0 || mark != st_gen)
		return;
	s = stats_rule_of(r);
	if (s != NULL)
		atomic_fetch_sub_explicit(&s->open, 1, memory_order_relaxed);
	atomic_fetch_sub_explicit(&st_live, 1, memory_order_relaxed);
}

void stats_decided(const struct policy_rule *r, enum policy_action what)
{
	struct stats_rule *s;

	if (r == NULL || r->source == NULL)
		return;
	if (what == POLICY_DENY) {
		s = rule_mapped(r);
		if (s != NULL)
			ADD(s->denied);
		return;
	}
	/* Cleartext is not wrapping: counted, but no file is made for it. */
	s = stats_rule_of(r);
	if (s != NULL)
		ADD(s->plain);
	else if (r->id < STATS_EARLY_RULES)
		ADD(st_plain_early[r->id]);
}

void stats_handshake(const struct policy_rule *r, int version, const char *cipher, int resumed)
{
	struct stats_rule *s = stats_rule_of(r);
	int i;

	if (s == NULL)
		return;
	if (resumed)
		ADD(s->hs_resumed);
	else
		ADD(s->hs_full);
	ADD(s->version[version == POLICY_TLS1_3   ? STATS_VER_13
		       : version == POLICY_TLS1_2 ? STATS_VER_12
						  : STATS_VER_OTHER]);
	if (cipher == NULL)
		cipher = "(none)";
	for (i = 0; i < STATS_CIPHERS; i++) {
		struct stats_cipher *c = &s->cipher[i];
		uint32_t st = atomic_load_explicit(&c->state, memory_order_acquire), free_ = 0;

		if (st == 2 && strcmp(c->name, cipher) == 0) {
			ADD(c->n);
			return;
		}
		if (st != 0)
			continue;
		/* Claim the free slot for this suite; a thread that loses looks further on. */
		if (!atomic_compare_exchange_strong(&c->state, &free_, 1))
			continue;
		copy_str(c->name, sizeof(c->name), cipher);
		atomic_store_explicit(&c->n, 1, memory_order_relaxed);
		atomic_store_explicit(&c->state, 2, memory_order_release);
		return;
	}
	ADD(s->cipher_other);
}

int stats_fail_class(const char *reason)
{
	static const struct {
		const char *text;
		int cls;
	} map[] = {
	    {"timed out", STATS_FAIL_TIMEOUT},
	    {"sent nothing within", STATS_FAIL_TIMEOUT},
	    {"verify failed", STATS_FAIL_VERIFY},
	    {"not allowed", STATS_FAIL_VERIFY},
	    {"pin mismatch", STATS_FAIL_VERIFY},
	    {"did not send a certificate", STATS_FAIL_VERIFY},
	    {"not speaking TLS", STATS_FAIL_NOT_TLS},
	    {"alert", STATS_FAIL_ALERT},
	    {"closed", STATS_FAIL_CLOSED},
	    {"reset by peer", STATS_FAIL_CLOSED},
	    {"Broken pipe", STATS_FAIL_CLOSED},
	};

	if (reason == NULL)
		return STATS_FAIL_OTHER;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strstr(reason, map[i].text) != NULL)
			return map[i].cls;
	return STATS_FAIL_OTHER;
}

void stats_failed(const struct policy_rule *r, const char *reason)
{
	struct stats_rule *s = stats_rule_of(r);

	if (s != NULL)
		ADD(s->failed[stats_fail_class(reason)]);
}

void stats_cert_loaded(const struct policy_rule *r, const char *subject, int64_t not_after)
{
	uint32_t n = rules_total();
	struct cert_local *c;
	struct stats_rule *s;

	if (r == NULL || r->id >= n || st_off)
		return;
	pthread_mutex_lock(&st_lock);
	if (st_certs == NULL)
		st_certs = calloc(n, sizeof(*st_certs));
	if (st_certs != NULL) {
		c = &st_certs[r->id];
		c->set = 1;
		c->not_after = not_after;
		c->loaded_at = (int64_t)time(NULL);
		c->loads++;
		copy_str(c->subject, sizeof(c->subject), subject);
		s = stats_rule_of(r);
		if (s != NULL)
			cert_publish(&s->cert, c);
	}
	pthread_mutex_unlock(&st_lock);
}

void stats_fork_child(void)
{
	int inherited = atomic_exchange_explicit(&st_live, 0, memory_order_relaxed);

	/* The parent's file stays the parent's: the child counts in a file of its own. */
	pthread_mutex_init(&st_lock, NULL);
	st_gen++;
	if (st_state != ST_MAPPED)
		return; /* none (off, no directory): the child has none either */
	munmap(st_head, st_size);
	st_head = NULL;
	__atomic_store_n(&stats_base, NULL, __ATOMIC_RELEASE);
	__atomic_store_n(&st_state, ST_UNTRIED, __ATOMIC_RELEASE);
	for (int i = 0; i < STATS_EARLY_RULES; i++)
		atomic_store_explicit(&st_plain_early[i], 0, memory_order_relaxed);
	/*
	 * With connections open, the child may be the one to use them (a forking
	 * server's child runs the handshake and the I/O): its file is made now,
	 * before the program's code runs in the child (which may confine itself
	 * with seccomp), since handshakes and bytes never make one themselves.
	 */
	if (inherited > 0)
		__atomic_store_n(&st_state, map_locked(), __ATOMIC_RELEASE);
}
