/*
 * harness.c - end-to-end test support (see harness.h): paths, the test PKI,
 * explicit environments, spawning and reaping programs, loopback ports.
 *
 * Criterion runs every test in its own process. So that the PKI is made once
 * per test binary and every temporary file goes away with it, the first
 * process (the runner) makes one root directory before main, publishes it in
 * its own environment (inherited by the test processes, never by the programs
 * the tests spawn: they get an explicit envp), and removes it at exit. The
 * test processes share it: the PKI is made under a lock by whichever test
 * needs it first.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define ROOT_ENV  "TLSSHIM_E2E_ROOT"
#define PORT_DIR  "/tmp/tlsshim-e2e-ports"
#define PORT_LO   20000 /* below the kernel's ephemeral range (32768-60999) */
#define PORT_HI   32767
#define SAFE_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static char root_dir[PATH_MAX];
static pid_t root_owner; /* the process that made root_dir and removes it */

static void die(const char *what)
{
	fprintf(stderr, "harness: %s: %s\n", what, strerror(errno));
	abort();
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		die("malloc");
	return p;
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s);

	if (!p)
		die("strdup");
	return p;
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		die("vasprintf");
	va_end(ap);
	return s;
}

/* ---- the root directory ---------------------------------------------------------- */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if (flag == FTW_DP || flag == FTW_D)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

static void rm_tree(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void root_cleanup(void)
{
	/* Forked test processes inherit this handler: only the owner removes the root. */
	if (root_owner && getpid() == root_owner)
		rm_tree(root_dir);
}

/*
 * Removes the roots of test binaries that died without cleaning up (killed
 * by a time-out): their owner process is gone.
 */
static void remove_stale_roots(void)
{
	DIR *d = opendir("/tmp");
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		char path[PATH_MAX], *held;
		pid_t owner;

		if (strncmp(de->d_name, "tlsshim-e2e.", 12) != 0)
			continue;
		snprintf(path, sizeof(path), "/tmp/%s/owner", de->d_name);
		held = h_read_file(path, NULL);
		owner = held ? (pid_t)atoi(held) : 0;
		free(held);
		if (owner <= 0 || (kill(owner, 0) != 0 && errno == ESRCH)) {
			snprintf(path, sizeof(path), "/tmp/%s", de->d_name);
			if (owner > 0)
				rm_tree(path);
		}
	}
	closedir(d);
}

__attribute__((constructor)) static void root_init(void)
{
	const char *r = getenv(ROOT_ENV);
	char owner[PATH_MAX + 8], pid[32];
	struct stat st;

	if (r && r[0] == '/' && strlen(r) < sizeof(root_dir) && stat(r, &st) == 0 &&
	    S_ISDIR(st.st_mode)) {
		strcpy(root_dir, r);
		return;
	}
	snprintf(root_dir, sizeof(root_dir), "/tmp/tlsshim-e2e.XXXXXX");
	if (!mkdtemp(root_dir))
		die("mkdtemp");
	root_owner = getpid();
	setenv(ROOT_ENV, root_dir, 1);
	atexit(root_cleanup);
	snprintf(owner, sizeof(owner), "%s/owner", root_dir);
	snprintf(pid, sizeof(pid), "%d\n", (int)root_owner);
	h_write_file(owner, pid, strlen(pid));
	remove_stale_roots();
}

/* ---- paths ----------------------------------------------------------------------- */

static char *exe_dir_up(int levels)
{
	char buf[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);

	if (n <= 0)
		return NULL;
	buf[n] = '\0';
	for (int i = 0; i < levels; i++) {
		char *slash = strrchr(buf, '/');

		if (!slash || slash == buf)
			return NULL;
		*slash = '\0';
	}
	return xstrdup(buf);
}

static int is_src_top(const char *dir)
{
	char p[PATH_MAX];

	snprintf(p, sizeof(p), "%s/Makefile", dir);
	if (access(p, R_OK) != 0)
		return 0;
	snprintf(p, sizeof(p), "%s/tests/e2e/harness.h", dir);
	return access(p, R_OK) == 0;
}

const char *h_src(void)
{
	static char *src;
	char cwd[PATH_MAX];

	if (src)
		return src;
	if (getenv("TLSSHIM_SRC") && getenv("TLSSHIM_SRC")[0]) {
		src = realpath(getenv("TLSSHIM_SRC"), NULL);
		if (src)
			return src;
	}
	/* The binary is SRC/BUILD/tests/e2e/NAME. */
	src = exe_dir_up(4);
	if (src && is_src_top(src))
		return src;
	free(src);
	if (!getcwd(cwd, sizeof(cwd)))
		die("getcwd");
	src = xstrdup(cwd);
	return src;
}

const char *h_build(void)
{
	static char *build;
	const char *b = getenv("BUILD");

	if (build)
		return build;
	if (b && b[0] == '/') {
		build = xstrdup(b);
	} else if (b && b[0]) {
		build = xasprintf("%s/%s", h_src(), b);
	} else {
		/* The binary is BUILD/tests/e2e/NAME. */
		build = exe_dir_up(3);
		if (!build || strncmp(build, h_src(), strlen(h_src())) != 0) {
			free(build);
			build = xasprintf("%s/build", h_src());
		}
	}
	return build;
}

const char *h_shim(void)
{
	static char *p;

	if (!p)
		p = xasprintf("%s/libtlsshim.so", h_build());
	return p;
}

const char *h_cmd(void)
{
	static char *p;

	if (!p)
		p = xasprintf("%s/tlsshim", h_build());
	return p;
}

/* Returned strings are kept for the life of the process (a handful per test). */
const char *h_prog(const char *name)
{
	return xasprintf("%s/tests/progs/%s", h_build(), name);
}

const char *h_tmpdir(void)
{
	char *d = xasprintf("%s/tmp.XXXXXX", root_dir);

	if (!mkdtemp(d))
		die("mkdtemp");
	return d;
}

const char *h_pki(void)
{
	static char *dir;
	char *lock, *done;
	int fd;

	if (dir)
		return dir;
	lock = xasprintf("%s/pki.lock", root_dir);
	done = xasprintf("%s/pki/.done", root_dir);
	fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || flock(fd, LOCK_EX) != 0)
		die("pki lock");
	if (access(done, F_OK) != 0) {
		char *pki = xasprintf("%s/pki", root_dir);
		char *mkpki = xasprintf("%s/scripts/mkpki", h_src());
		char *argv[] = {mkpki, pki, NULL};
		struct h_env env;
		struct h_proc p;
		int rc;

		rm_tree(pki);
		h_env_init(&env);
		rc = h_run(&p, argv, &env, 180000);
		if (rc != 0) {
			fprintf(stderr, "harness: %s %s failed (%d):\n%s%s", mkpki, pki, rc,
				p.out ? p.out : "", p.err ? p.err : "");
			cr_assert_fail(
			    "expected scripts/mkpki to make the test PKI, it exited %d:\n%s%s", rc,
			    p.out ? p.out : "", p.err ? p.err : "");
		}
		h_proc_free(&p);
		h_env_free(&env);
		close(open(done, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
		free(mkpki);
		free(pki);
	}
	flock(fd, LOCK_UN);
	close(fd);
	free(lock);
	free(done);
	dir = xasprintf("%s/pki", root_dir);
	return dir;
}

const char *h_pki_file(const char *name)
{
	return xasprintf("%s/%s", h_pki(), name);
}

char *pki(const char *name)
{
	return (char *)h_pki_file(name);
}

/* ---- environments ---------------------------------------------------------------- */

/* Which sanitizer the tests (and so the shim) were built with. */
const char *h_san(void)
{
#if defined(__SANITIZE_ADDRESS__)
	return "asan";
#elif defined(__SANITIZE_THREAD__)
	return "tsan";
#else
	const char *s = getenv("SAN");

	return s && s[0] ? s : NULL;
#endif
}

void h_env_init(struct h_env *e)
{
	const char *s = h_san();
	char *home = xasprintf("%s/home", root_dir);

	e->n = 0;
	e->cap = 16;
	e->v = xmalloc(e->cap * sizeof(*e->v));
	e->v[0] = NULL;
	mkdir(home, 0700);
	h_env_set(e, "PATH", "%s", SAFE_PATH);
	h_env_set(e, "HOME", "%s", home);
	h_env_set(e, "LANG", "C.UTF-8");
	if (s && strcmp(s, "asan") == 0) {
		/*
		 * A 16 MB quarantine instead of 256: freed memory ASan holds back stays
		 * resident, and the memory-bound tests (a KeyUpdate flood) would measure
		 * the quarantine instead of the shim.
		 */
		h_env_set(e, "ASAN_OPTIONS",
			  "detect_leaks=0:verify_asan_link_order=0:quarantine_size_mb=16");
		h_env_set(e, "UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1");
	} else if (s && strcmp(s, "tsan") == 0) {
		h_env_set(e, "TSAN_OPTIONS",
			  "report_signal_unsafe=0:exitcode=66:suppressions=%s/tests/tsan.supp",
			  h_src());
	}
	free(home);
}

void h_env_set(struct h_env *e, const char *key, const char *fmt, ...)
{
	size_t klen = strlen(key);
	va_list ap;
	char *val, *kv;

	va_start(ap, fmt);
	if (vasprintf(&val, fmt, ap) < 0)
		die("vasprintf");
	va_end(ap);
	kv = xasprintf("%s=%s", key, val);
	free(val);
	for (size_t i = 0; i < e->n; i++) {
		if (strncmp(e->v[i], key, klen) == 0 && e->v[i][klen] == '=') {
			free(e->v[i]);
			e->v[i] = kv;
			return;
		}
	}
	if (e->n + 2 > e->cap) {
		e->cap *= 2;
		e->v = realloc(e->v, e->cap * sizeof(*e->v));
		if (!e->v)
			die("realloc");
	}
	e->v[e->n++] = kv;
	e->v[e->n] = NULL;
}

void h_env_unset(struct h_env *e, const char *key)
{
	size_t klen = strlen(key);

	for (size_t i = 0; i < e->n; i++) {
		if (strncmp(e->v[i], key, klen) == 0 && e->v[i][klen] == '=') {
			free(e->v[i]);
			memmove(&e->v[i], &e->v[i + 1], (e->n - i) * sizeof(*e->v));
			e->n--;
			return;
		}
	}
}

const char *h_env_get(const struct h_env *e, const char *key)
{
	size_t klen = strlen(key);

	for (size_t i = 0; i < e->n; i++)
		if (strncmp(e->v[i], key, klen) == 0 && e->v[i][klen] == '=')
			return e->v[i] + klen + 1;
	return NULL;
}

/* `gcc -print-file-name=LIB`, once per LIB. */
static const char *san_runtime(const char *lib)
{
	static char path[2][PATH_MAX];
	int slot = strcmp(lib, "libasan.so") == 0 ? 0 : 1;
	char *cmd;
	FILE *f;

	if (path[slot][0])
		return path[slot];
	cmd = xasprintf("${CC:-gcc} -print-file-name=%s 2>/dev/null", lib);
	f = popen(cmd, "r");
	free(cmd);
	if (f) {
		if (fgets(path[slot], sizeof(path[slot]), f))
			path[slot][strcspn(path[slot], "\n")] = '\0';
		pclose(f);
	}
	if (!path[slot][0] || path[slot][0] != '/')
		snprintf(path[slot], sizeof(path[slot]), "%s", lib);
	return path[slot];
}

void h_env_preload(struct h_env *e)
{
	const char *s = h_san();

	if (s && strcmp(s, "asan") == 0)
		h_env_set(e, "LD_PRELOAD", "%s %s", san_runtime("libasan.so"), h_shim());
	else if (s && strcmp(s, "tsan") == 0)
		/*
		 * The shim first: the program's calls then reach our hooks, which call
		 * TSan's interceptors. With TSan first, our hooks ran inside its
		 * blocking interceptors (poll), where it does not record the locks we
		 * take, and it reported races on data those locks protect.
		 */
		h_env_set(e, "LD_PRELOAD", "%s %s", h_shim(), san_runtime("libtsan.so"));
	else
		h_env_set(e, "LD_PRELOAD", "%s", h_shim());
}

void h_env_free(struct h_env *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->v[i]);
	free(e->v);
	e->v = NULL;
	e->n = e->cap = 0;
}

/* ---- processes ------------------------------------------------------------------- */

/* Looks NAME up in ENV's PATH the way execvp would. Returns a new string or NULL. */
static char *find_exe(const char *name, const struct h_env *e)
{
	const char *path = h_env_get(e, "PATH");
	char *copy, *dir, *save = NULL, *found = NULL;

	if (strchr(name, '/'))
		return xstrdup(name);
	copy = xstrdup(path ? path : SAFE_PATH);
	for (dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
		char *cand = xasprintf("%s/%s", dir[0] ? dir : ".", name);

		if (access(cand, X_OK) == 0) {
			found = cand;
			break;
		}
		free(cand);
	}
	free(copy);
	return found;
}

struct feeder {
	int fd;
	char *data;
	size_t len;
};

/* Writes a child's stdin data and closes it, on its own thread so a full pipe can't block. */
static void *feed(void *arg)
{
	struct feeder *f = arg;
	sigset_t pipe_set;
	size_t off = 0;

	/* A child that exits early makes write fail with EPIPE, not kill us. */
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);
	while (off < f->len) {
		ssize_t n = write(f->fd, f->data + off, f->len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	close(f->fd);
	free(f->data);
	free(f);
	return NULL;
}

static void child_exec(const char *exe, char *const argv[], char *const envp[], int in, int out,
		       int err, pid_t parent)
{
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	sigset_t none;

	/* Die with the test process, even one killed by its time-out. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
		_exit(125);
	setpgid(0, 0);
	if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
		_exit(126);
	/* Criterion's own fds (and anything else inherited) stay out of the program. */
	if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0)
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
	for (int sig = 1; sig < NSIG; sig++)
		sigaction(sig, &dfl, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execve(exe, argv, envp);
	_exit(127);
}

int h_spawn(struct h_proc *p, char *const argv[], const struct h_env *env, const void *stdin_data,
	    size_t stdin_len)
{
	int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
	pid_t pid, parent = getpid();
	char *exe;

	memset(p, 0, sizeof(*p));
	p->pid = -1;
	p->in_fd = p->out_fd = p->err_fd = -1;
	p->out = xmalloc(1);
	p->err = xmalloc(1);
	p->out[0] = p->err[0] = '\0';
	exe = find_exe(argv[0], env);
	if (!exe) {
		errno = ENOENT;
		return -1;
	}
	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
		goto fail;
	pid = fork();
	if (pid < 0)
		goto fail;
	if (pid == 0)
		child_exec(exe, argv, env->v, in[0], out[1], err[1], parent);
	setpgid(pid, pid); /* also in the child: whichever runs first */
	free(exe);
	close(in[0]);
	close(out[1]);
	close(err[1]);
	p->pid = pid;
	p->out_fd = out[0];
	p->err_fd = err[0];
	fcntl(p->out_fd, F_SETFL, O_NONBLOCK);
	fcntl(p->err_fd, F_SETFL, O_NONBLOCK);
	if (stdin_data && stdin_len) {
		struct feeder *f = xmalloc(sizeof(*f));
		pthread_t t;

		f->fd = in[1];
		f->len = stdin_len;
		f->data = xmalloc(stdin_len);
		memcpy(f->data, stdin_data, stdin_len);
		if (pthread_create(&t, NULL, feed, f) != 0)
			die("pthread_create");
		pthread_detach(t);
	} else {
		close(in[1]);
	}
	return 0;
fail:
	free(exe);
	for (int i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (out[i] >= 0)
			close(out[i]);
		if (err[i] >= 0)
			close(err[i]);
	}
	return -1;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Appends what FD has now to BUF. Closes FD (sets -1) at EOF. */
static void drain(int *fd, char **buf, size_t *len)
{
	char chunk[65536];

	while (*fd >= 0) {
		ssize_t n = read(*fd, chunk, sizeof(chunk));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return; /* EAGAIN: nothing more now */
		if (n == 0) {
			close(*fd);
			*fd = -1;
			return;
		}
		*buf = realloc(*buf, *len + (size_t)n + 1);
		if (!*buf)
			die("realloc");
		memcpy(*buf + *len, chunk, (size_t)n);
		*len += (size_t)n;
		(*buf)[*len] = '\0';
	}
}

static int try_reap(struct h_proc *p)
{
	int st;

	if (p->reaped)
		return 1;
	if (p->pid <= 0)
		return 0;
	if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
		p->status = st;
		p->reaped = 1;
		return 1;
	}
	return 0;
}

static int exit_code(const struct h_proc *p)
{
	if (WIFEXITED(p->status))
		return WEXITSTATUS(p->status);
	if (WIFSIGNALED(p->status))
		return 128 + WTERMSIG(p->status);
	return -1;
}

/*
 * Collects output for up to TIMEOUT_MS, returning early when the process
 * has exited (and its pipes are drained) or, with NEEDLE, when its stdout or
 * stderr contains NEEDLE. Returns 1 when the stop condition was met, 0 on
 * time-out.
 */
static int pump(struct h_proc *p, int timeout_ms, const char *needle)
{
	long long deadline = now_ms() + timeout_ms;
	int pidfd = -1;

	if (!p->reaped && p->pid > 0)
		pidfd = (int)syscall(SYS_pidfd_open, p->pid, 0);
	for (;;) {
		struct pollfd fds[3];
		int nfds = 0;
		long long left;

		drain(&p->out_fd, &p->out, &p->out_len);
		drain(&p->err_fd, &p->err, &p->err_len);
		if (needle && (strstr(p->out, needle) || strstr(p->err, needle)))
			break;
		if (try_reap(p)) {
			/* What the process wrote is in the pipes; a grandchild may keep them open.
			 */
			drain(&p->out_fd, &p->out, &p->out_len);
			drain(&p->err_fd, &p->err, &p->err_len);
			if (!needle || strstr(p->out, needle) || strstr(p->err, needle))
				break;
			if (pidfd >= 0)
				close(pidfd);
			return 0;
		}
		left = deadline - now_ms();
		if (left <= 0) {
			if (pidfd >= 0)
				close(pidfd);
			return 0;
		}
		if (p->out_fd >= 0)
			fds[nfds++] = (struct pollfd){.fd = p->out_fd, .events = POLLIN};
		if (p->err_fd >= 0)
			fds[nfds++] = (struct pollfd){.fd = p->err_fd, .events = POLLIN};
		if (pidfd >= 0)
			fds[nfds++] = (struct pollfd){.fd = pidfd, .events = POLLIN};
		poll(fds, (nfds_t)nfds, pidfd >= 0 ? (int)left : (int)(left < 20 ? left : 20));
	}
	if (pidfd >= 0)
		close(pidfd);
	return 1;
}

int h_wait(struct h_proc *p, int timeout_ms)
{
	if (p->pid <= 0)
		return -1;
	if (!pump(p, timeout_ms, NULL)) {
		kill(-p->pid, SIGKILL);
		kill(p->pid, SIGKILL);
		if (waitpid(p->pid, &p->status, 0) == p->pid)
			p->reaped = 1;
		drain(&p->out_fd, &p->out, &p->out_len);
		drain(&p->err_fd, &p->err, &p->err_len);
		return -1;
	}
	return exit_code(p);
}

int h_wait_output(struct h_proc *p, const char *needle, int timeout_ms)
{
	return pump(p, timeout_ms, needle) ? 0 : -1;
}

void h_collect(struct h_proc *p, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;

	do {
		drain(&p->out_fd, &p->out, &p->out_len);
		drain(&p->err_fd, &p->err, &p->err_len);
		if (timeout_ms > 0)
			usleep(10000);
	} while (now_ms() < deadline);
}

int h_run(struct h_proc *p, char *const argv[], const struct h_env *env, int timeout_ms)
{
	if (h_spawn(p, argv, env, NULL, 0) != 0) {
		char *msg = xasprintf("harness: cannot start %s: %s\n", argv[0], strerror(errno));

		free(p->err);
		p->err = msg;
		p->err_len = strlen(msg);
		return -1;
	}
	return h_wait(p, timeout_ms);
}

int h_run_plain(struct h_proc *p, char *const argv[], int timeout_ms)
{
	struct h_env e;
	int rc;

	h_env_init(&e);
	rc = h_run(p, argv, &e, timeout_ms);
	h_env_free(&e);
	return rc;
}

void h_kill(struct h_proc *p)
{
	if (p->pid <= 0 || p->reaped) {
		drain(&p->out_fd, &p->out, &p->out_len);
		drain(&p->err_fd, &p->err, &p->err_len);
		return;
	}
	kill(-p->pid, SIGTERM);
	kill(p->pid, SIGTERM);
	if (!pump(p, 1000, NULL)) {
		kill(-p->pid, SIGKILL);
		kill(p->pid, SIGKILL);
		if (waitpid(p->pid, &p->status, 0) == p->pid)
			p->reaped = 1;
		drain(&p->out_fd, &p->out, &p->out_len);
		drain(&p->err_fd, &p->err, &p->err_len);
	}
	/* Anything the process left behind in its group goes too. */
	kill(-p->pid, SIGKILL);
}

void h_proc_free(struct h_proc *p)
{
	if (p->pid > 0 && !p->reaped)
		h_kill(p);
	if (p->in_fd >= 0)
		close(p->in_fd);
	if (p->out_fd >= 0)
		close(p->out_fd);
	if (p->err_fd >= 0)
		close(p->err_fd);
	free(p->out);
	free(p->err);
	p->in_fd = p->out_fd = p->err_fd = -1;
	p->out = p->err = NULL;
	p->out_len = p->err_len = 0;
}

/* ---- network --------------------------------------------------------------------- */

static int port_bindable(int family, int port)
{
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int ok;

	if (fd < 0)
		return family == AF_INET6; /* no IPv6 here: only IPv4 matters */
	if (family == AF_INET) {
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};

		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	} else {
		struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port)};

		a.sin6_addr = in6addr_loopback;
		ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 || errno == EADDRNOTAVAIL;
	}
	close(fd);
	return ok;
}

/*
 * Reserves PORT for this process across every test process on the machine
 * (tests of several binaries and several checkouts run at once): a file named
 * for the port holding our pid. A reservation whose owner is gone, or older
 * than ten minutes, is taken over.
 */
static int port_reserve(int port)
{
	char path[64], buf[32];
	struct stat st;
	int fd, len;

	mkdir(PORT_DIR, 01777);
	snprintf(path, sizeof(path), PORT_DIR "/%d", port);
	for (int tries = 0; tries < 2; tries++) {
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (fd >= 0) {
			len = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
			if (write(fd, buf, (size_t)len) != len) {
				close(fd);
				return 0;
			}
			close(fd);
			return 1;
		}
		if (errno != EEXIST || stat(path, &st) != 0)
			return 0;
		char *held = h_read_file(path, NULL);
		pid_t owner = held ? (pid_t)atoi(held) : 0;

		free(held);
		if (owner > 0 && kill(owner, 0) == 0 && time(NULL) - st.st_mtime < 600)
			return 0;
		unlink(path);
	}
	return 0;
}

int h_free_port(void)
{
	static unsigned seq;
	unsigned span = PORT_HI - PORT_LO + 1;
	unsigned start = ((unsigned)getpid() * 7919u + (unsigned)time(NULL)) % span;

	for (unsigned i = 0; i < span; i++) {
		int port = PORT_LO + (int)((start + (seq++) * 37u) % span);

		if (!port_bindable(AF_INET, port) || !port_bindable(AF_INET6, port))
			continue;
		if (port_reserve(port))
			return port;
	}
	fprintf(stderr, "harness: no free port in %d-%d\n", PORT_LO, PORT_HI);
	return -1;
}

/* Whether /proc/net/FILE lists a listening socket on PORT; -1 if unreadable. */
static int proc_listening(const char *file, int port)
{
	char line[512];
	FILE *f = fopen(file, "re");
	int found = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned lport, st;
		char laddr[64];

		if (sscanf(line, " %*d: %63[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x", laddr, &lport,
			   &st) == 3 &&
		    (int)lport == port && st == 0x0A) {
			found = 1;
			break;
		}
	}
	fclose(f);
	return found;
}

static int connect_probe(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int ok;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

int h_wait_port(int port, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;

	/*
	 * Looking for a listening socket, rather than connecting, keeps probes out
	 * of servers that count or log their connections.
	 */
	for (;;) {
		int v4 = proc_listening("/proc/net/tcp", port);
		int v6 = proc_listening("/proc/net/tcp6", port);

		if (v4 > 0 || v6 > 0)
			return 0;
		if (v4 < 0 && v6 < 0 && connect_probe(port))
			return 0;
		if (now_ms() >= deadline)
			return -1;
		usleep(10000);
	}
}

int h_port_listening(int port)
{
	return proc_listening("/proc/net/tcp", port) > 0 ||
	       proc_listening("/proc/net/tcp6", port) > 0;
}

char *h_read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t n = 0, cap = 4096;
	char *buf;

	if (fd < 0)
		return NULL;
	buf = xmalloc(cap + 1);
	for (;;) {
		ssize_t r;

		if (n == cap) {
			cap *= 2;
			buf = realloc(buf, cap + 1);
			if (!buf)
				die("realloc");
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			free(buf);
			close(fd);
			return NULL;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

int h_write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	size_t off = 0;

	if (fd < 0)
		return -1;
	while (off < len) {
		ssize_t w = write(fd, (const char *)data + off, len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			close(fd);
			return -1;
		}
		off += (size_t)w;
	}
	return close(fd);
}

/*
 * Under ASan, the test binaries' own deliberate process-lifetime strings
 * (paths, formatted arguments) are not leaks worth reporting; leaks in
 * tlsshim's code are found by the unit tests. The runtime reads this hook
 * from the executable.
 */
__attribute__((visibility("default"), used)) const char *__asan_default_options(void);
__attribute__((visibility("default"), used)) const char *__asan_default_options(void)
{
	return "detect_leaks=0";
}

char *h_fmt(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	va_end(ap);
	return s;
}

/* ---- servers ------------------------------------------------------------------------- */

#define H_MAX_PROCS 8 /* servers one test starts, at most */

static struct h_proc procs[H_MAX_PROCS];
static int n_procs;

struct h_proc *h_proc_slot(void)
{
	cr_assert(n_procs < H_MAX_PROCS, "more than %d servers in one test", H_MAX_PROCS);
	memset(&procs[n_procs], 0, sizeof(procs[0]));
	procs[n_procs].in_fd = procs[n_procs].out_fd = procs[n_procs].err_fd = -1;
	return &procs[n_procs++];
}

struct h_proc *h_server(char *const argv[], const struct h_env *env, int port, const char *needle)
{
	struct h_proc *p = h_proc_slot();
	struct h_env plain;
	int rc, e;

	if (env == NULL)
		h_env_init(&plain);
	rc = h_spawn(p, argv, env != NULL ? env : &plain, NULL, 0);
	e = errno;
	if (env == NULL)
		h_env_free(&plain);
	cr_assert_eq(rc, 0, "expected %s to start, got: %s", argv[0], strerror(e));
	if (needle == NULL && port <= 0)
		return p;
	if ((needle != NULL ? h_wait_output(p, needle, 20000) : h_wait_port(port, 20000)) != 0) {
		const char *policy = env != NULL ? h_env_get(env, "TLSSHIM_POLICY") : NULL;

		h_kill(p);
		cr_assert_fail("expected %s to %s%s within 20 s%s%s%s; it exited %d saying:\n%s%s",
			       argv[0], needle != NULL ? "print " : "listen on port ",
			       needle != NULL ? needle : h_fmt("%d", port),
			       policy ? " under policy \"" : "", policy ? policy : "",
			       policy ? "\"" : "", WEXITSTATUS(p->status), p->out ? p->out : "",
			       p->err ? p->err : "");
	}
	return p;
}

void h_teardown(void)
{
	for (int i = 0; i < n_procs; i++)
		h_proc_free(&procs[i]);
	n_procs = 0;
}

/* ---- text ---------------------------------------------------------------------------- */

int h_count(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

char *h_line_with(const char *text, const char *needle)
{
	const char *hit = strstr(text, needle), *start, *end;

	if (!hit)
		return NULL;
	for (start = hit; start > text && start[-1] != '\n'; start--)
		;
	end = strchr(hit, '\n');
	return strndup(start, end ? (size_t)(end - start) : strlen(start));
}

char *h_spki_pin(const char *path)
{
	FILE *f = fopen(path, "r");
	X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	unsigned char *der = NULL, md[32], b64[64];
	int len;

	cr_assert_not_null(x, "expected to read certificate %s", path);
	fclose(f);
	len = i2d_PUBKEY(X509_get0_pubkey(x), &der);
	EVP_Digest(der, (size_t)len, md, NULL, EVP_sha256(), NULL);
	EVP_EncodeBlock(b64, md, 32);
	OPENSSL_free(der);
	X509_free(x);
	return h_fmt("sha256/%s", b64);
}

void h_env_shim(struct h_env *e, const char *policy)
{
	h_env_init(e);
	h_env_preload(e);
	h_env_set(e, "TLSSHIM_POLICY", "%s", policy);
}
