/*
 * system.c - `tlsshim system enable|disable|status`: the system-wide mode.
 *
 * enable adds the preload library's absolute path to /etc/ld.so.preload, so
 * the loader maps it into every program started from then on (setuid ones
 * too, which ignore LD_PRELOAD) and the system policy applies everywhere;
 * disable removes exactly that line. A broken line there makes every program
 * print a loader error, so the file is replaced atomically (a temporary file
 * in the same directory, fsync, rename, fsync of the directory) and only after
 * the policy checks and the library is known to load.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cmd.h"
#include "env.h"
#include "load.h"
#include "util.h"

extern char **environ;

/* The whole file PATH in *BUF (malloc()ed, NUL-terminated) and *LEN. Returns 0 or -errno. */
static int read_all(const char *path, char **buf, size_t *len, mode_t *mode)
{
	struct stat st;
	char *b = NULL;
	size_t n = 0, cap = 0;
	ssize_t r;
	int fd, e;

	*buf = NULL;
	*len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) == 0 && mode)
		*mode = st.st_mode & 07777;
	for (;;) {
		if (n + 1 >= cap) {
			char *nb = realloc(b, cap ? 2 * cap : 4096);

			if (!nb) {
				e = -ENOMEM;
				goto fail;
			}
			b = nb;
			cap = cap ? 2 * cap : 4096;
		}
		r = read(fd, b + n, cap - n - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			e = -errno;
			goto fail;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	b[n] = '\0';
	*buf = b;
	*len = n;
	return 0;
fail:
	close(fd);
	free(b);
	return e;
}

/*
 * Finds the line of BUF (LEN bytes) that is exactly WORD (blanks around it
 * allowed). Returns its offset and sets *END past its newline (if any), or -1.
 */
static long find_line(const char *buf, size_t len, const char *word, size_t *end)
{
	size_t i = 0, wl = strlen(word);

	while (i < len) {
		size_t s = i, e, a, b;

		while (i < len && buf[i] != '\n')
			i++;
		e = i;
		if (i < len)
			i++;
		for (a = s; a < e && (buf[a] == ' ' || buf[a] == '\t'); a++)
			;
		for (b = e;
		     b > a && (buf[b - 1] == ' ' || buf[b - 1] == '\t' || buf[b - 1] == '\r'); b--)
			;
		if (b - a == wl && memcmp(buf + a, word, wl) == 0) {
			*end = i;
			return (long)s;
		}
	}
	return -1;
}

/* Another copy of the library named in BUF (not LIB): its path in OUT, or 0 if none. */
static int other_copy(const char *buf, const char *lib, char *out, size_t outlen)
{
	const char *p = buf;

	while (*p) {
		size_t n = strcspn(p, " \t\r\n:");

		if (n > 0) {
			const char *slash = memrchr(p, '/', n);
			const char *base = slash ? slash + 1 : p;
			size_t bl = (size_t)(p + n - base);

			if (bl == strlen("libtlsshim.so") &&
			    memcmp(base, "libtlsshim.so", bl) == 0 &&
			    !(n == strlen(lib) && memcmp(p, lib, n) == 0)) {
				snprintf(out, outlen, "%.*s", (int)n, p);
				return 1;
			}
		}
		p += n;
		if (*p)
			p++;
	}
	return 0;
}

/* Fsyncs the directory holding PATH, so a rename or unlink in it is durable. */
static int sync_dir(const char *path)
{
	char d[PATH_MAX];
	int fd, rc;

	snprintf(d, sizeof(d), "%s", path);
	fd = open(dirname(d), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	rc = fsync(fd) == 0 ? 0 : -errno;
	close(fd);
	return rc;
}

/* Replaces PATH with DATA (LEN bytes, MODE) atomically. Returns 0 or -errno. */
static int write_atomic(const char *path, const char *data, size_t len, mode_t mode)
{
	char tmp[PATH_MAX];
	size_t off = 0;
	int fd, e;

	snprintf(tmp, sizeof(tmp), "%s.tlsshim-XXXXXX", path);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fchmod(fd, mode) != 0)
		goto fail;
	while (off < len) {
		ssize_t w = write(fd, data + off, len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			goto fail;
		off += (size_t)w;
	}
	if (fsync(fd) != 0)
		goto fail;
	if (close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
		goto fail;
	return sync_dir(path);
fail:
	e = -errno;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return e;
}

/* The TLS engine beside LIB, in OUT. */
static void engine_path(const char *lib, char *out, size_t len)
{
	const char *slash = strrchr(lib, '/');

	snprintf(out, len, "%.*s/libtlsshim-tls.so", slash ? (int)(slash - lib) : 1,
		 slash ? lib : ".");
}

/*
 * Whether LIB and its TLS engine load: dlopen()ed in a child (their
 * constructor runs there, not here), with no TLSSHIM_* variable of ours.
 * Returns 0, or -1 after printing the loader's message.
 */
static int verify_loads(const char *lib)
{
	char engine[PATH_MAX];
	pid_t pid;
	int st;

	engine_path(lib, engine, sizeof(engine));
	(void)fflush(NULL); /* so the child does not print it again */
	pid = fork();
	if (pid < 0) {
		cmd_err("cannot check the library loads: fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		char **e = environ;

		/* The constructor reads TLSSHIM_*: check what every program will see. */
		while (*e) {
			if (strncmp(*e, ENV_PREFIX, strlen(ENV_PREFIX)) == 0) {
				char name[128];

				snprintf(name, sizeof(name), "%.*s", (int)strcspn(*e, "="), *e);
				unsetenv(name);
				e = environ;
				continue;
			}
			e++;
		}
		if (!dlopen(lib, RTLD_NOW | RTLD_LOCAL) || !dlopen(engine, RTLD_NOW | RTLD_LOCAL)) {
			cmd_err("the library does not load: %s", dlerror());
			_exit(1);
		}
		_exit(0);
	}
	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR) {
			cmd_err("cannot check the library loads: waitpid: %s", strerror(errno));
			return -1;
		}
	}
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	if (WIFSIGNALED(st))
		cmd_err("loading the library killed the test process (signal %d)", WTERMSIG(st));
	return -1;
}

/*
 * Whether every user's processes can read the system policy (the file, and its
 * directory searchable); if not, the reason in WHY. Root can read it anyway, so
 * a mode of 0600 would leave every other user's processes without its rules.
 */
static int readable_by_all(char *why, size_t len)
{
	char dir[PATH_MAX];
	struct stat st;

	snprintf(dir, sizeof(dir), "%s", CMD_SYSTEM_POLICY);
	if (stat(CMD_SYSTEM_POLICY, &st) == 0 && !(st.st_mode & S_IROTH)) {
		snprintf(why, len, "%s is not readable by other users (mode %04o)",
			 CMD_SYSTEM_POLICY, (unsigned)(st.st_mode & 07777));
		return 0;
	}
	if (stat(dirname(dir), &st) == 0 && !(st.st_mode & S_IXOTH)) {
		snprintf(why, len, "directory %s cannot be searched by other users (mode %04o)",
			 dir, (unsigned)(st.st_mode & 07777));
		return 0;
	}
	return 1;
}

/* Checks everything enable needs before writing. Returns 0 or an exit status. */
static int enable_checks(const char *lib)
{
	enum cmd_system_state state;
	struct policy *sys;
	char why[PATH_MAX + 100], engine[PATH_MAX];
	size_t n;

	sys = cmd_system_load(1, &state);
	if (state == CMD_SYSTEM_ABSENT) {
		cmd_err("there is no system policy (%s): write its rules there first (one a line, "
			"as for -f; see tlsshim-policy(7)), then enable",
			CMD_SYSTEM_POLICY);
		return CMD_EXIT_POLICY;
	}
	if (!sys) {
		cmd_err("not enabled: fix the system policy first (tlsshim check shows it)");
		return CMD_EXIT_POLICY;
	}
	n = policy_count(sys);
	policy_free(sys);
	if (!readable_by_all(why, sizeof(why))) {
		cmd_err("not enabled: %s; the processes of other users could not read it, and its "
			"rules would not apply to them (chmod o+r)",
			why);
		return CMD_EXIT_POLICY;
	}
	printf("system policy %s: %zu rule%s, no errors\n", CMD_SYSTEM_POLICY, n,
	       n == 1 ? "" : "s");
	/* It will run inside every program, setuid ones included: only root may change it. */
	engine_path(lib, engine, sizeof(engine));
	if (policy_file_trusted(lib, why, sizeof(why)) != 0 ||
	    policy_file_trusted(engine, why, sizeof(why)) != 0) {
		cmd_err("not enabled: %s; a library every program loads must be owned by root and "
			"writable by root only (install the package, or make install as root)",
			why);
		return CMD_EXIT_FAILED;
	}
	if (verify_loads(lib) != 0) {
		cmd_err("not enabled: %s would make every program print a loader error", lib);
		return CMD_EXIT_SOFTWARE;
	}
	return 0;
}

static int system_enable(const char *lib)
{
	char *old = NULL, *buf = NULL, other[PATH_MAX];
	size_t len = 0, end;
	mode_t mode = 0644;
	int rc, e;

	rc = enable_checks(lib);
	if (rc != 0)
		return rc;
	e = read_all(CMD_PRELOAD_FILE, &old, &len, &mode);
	if (e != 0 && e != -ENOENT) {
		cmd_err("cannot read %s: %s", CMD_PRELOAD_FILE, strerror(-e));
		return CMD_EXIT_FAILED;
	}
	if (old && find_line(old, len, lib, &end) >= 0) {
		printf("already enabled: %s preloads %s\n", CMD_PRELOAD_FILE, lib);
		rc = 0;
		goto out;
	}
	if (old && other_copy(old, lib, other, sizeof(other))) {
		cmd_err("not enabled: %s already preloads another copy of the library, %s; disable "
			"it first (tlsshim system disable, from that installation)",
			CMD_PRELOAD_FILE, other);
		rc = CMD_EXIT_FAILED;
		goto out;
	}
	buf = malloc(len + strlen(lib) + 3);
	if (!buf) {
		cmd_err("out of memory");
		rc = CMD_EXIT_FAILED;
		goto out;
	}
	/* A last line without a newline keeps it: disable then restores the same bytes. */
	if (len > 0 && old[len - 1] != '\n')
		snprintf(buf, len + strlen(lib) + 3, "%s\n%s", old, lib);
	else
		snprintf(buf, len + strlen(lib) + 3, "%s%s\n", old ? old : "", lib);
	e = write_atomic(CMD_PRELOAD_FILE, buf, strlen(buf), mode);
	if (e != 0) {
		cmd_err("cannot write %s: %s; nothing changed", CMD_PRELOAD_FILE, strerror(-e));
		rc = CMD_EXIT_FAILED;
		goto out;
	}
	printf("enabled: %s preloads %s into every program started from now on; the system "
	       "policy applies to each\n",
	       CMD_PRELOAD_FILE, lib);
	rc = 0;
out:
	free(old);
	free(buf);
	return rc;
}

static int system_disable(const char *lib)
{
	char *old = NULL;
	size_t len = 0, end;
	mode_t mode = 0644;
	long at;
	int e, rc = 0;

	e = read_all(CMD_PRELOAD_FILE, &old, &len, &mode);
	if (e != 0 && e != -ENOENT) {
		cmd_err("cannot read %s: %s", CMD_PRELOAD_FILE, strerror(-e));
		return CMD_EXIT_FAILED;
	}
	at = old ? find_line(old, len, lib, &end) : -1;
	if (at < 0) {
		printf("not enabled: %s does not preload %s\n", CMD_PRELOAD_FILE, lib);
		goto out;
	}
	/* The last line, without a newline: the newline before it was enable's. */
	if (end == len && (len == 0 || old[len - 1] != '\n') && at > 0)
		at--;
	memmove(old + at, old + end, len - end);
	len -= end - (size_t)at;
	/* Nothing else in it: no file, as before enable made one. */
	if (len == 0)
		e = unlink(CMD_PRELOAD_FILE) == 0 ? sync_dir(CMD_PRELOAD_FILE) : -errno;
	else
		e = write_atomic(CMD_PRELOAD_FILE, old, len, mode);
	if (e != 0) {
		cmd_err("cannot write %s: %s; nothing changed", CMD_PRELOAD_FILE, strerror(-e));
		rc = CMD_EXIT_FAILED;
		goto out;
	}
	printf("disabled: %s no longer preloads %s (programs already running keep it)\n",
	       CMD_PRELOAD_FILE, lib);
out:
	free(old);
	return rc;
}

static int system_status(const char *lib)
{
	enum cmd_system_state state;
	struct policy *sys;
	char *buf = NULL, other[PATH_MAX], why[PATH_MAX + 100];
	size_t len = 0, end;
	int e, rc = 0;

	printf("library:       %s\n", lib);
	e = read_all(CMD_PRELOAD_FILE, &buf, &len, NULL);
	if (e != 0 && e != -ENOENT)
		printf("preload:       cannot read %s: %s\n", CMD_PRELOAD_FILE, strerror(-e));
	else if (buf && find_line(buf, len, lib, &end) >= 0)
		printf("preload:       enabled (%s preloads the library into every program)\n",
		       CMD_PRELOAD_FILE);
	else if (buf && other_copy(buf, lib, other, sizeof(other)))
		printf("preload:       not enabled for this library; %s preloads another copy: "
		       "%s\n",
		       CMD_PRELOAD_FILE, other);
	else
		printf("preload:       not enabled (%s does not name the library)\n",
		       CMD_PRELOAD_FILE);
	free(buf);
	(void)fflush(stdout); /* before the checks' messages on stderr */
	/* Files are checked when root asks: a process of another user may not read them. */
	sys = cmd_system_load(geteuid() == 0, &state);
	switch (state) {
	case CMD_SYSTEM_ABSENT:
		printf("system policy: none (%s does not exist)\n", CMD_SYSTEM_POLICY);
		break;
	case CMD_SYSTEM_OK:
		printf("system policy: %s: %zu rule%s, no errors\n", CMD_SYSTEM_POLICY,
		       policy_count(sys), policy_count(sys) == 1 ? "" : "s");
		if (!readable_by_all(why, sizeof(why))) {
			printf("system policy: %s: its rules do not apply to other users' "
			       "processes\n",
			       why);
			rc = CMD_EXIT_POLICY;
		}
		break;
	case CMD_SYSTEM_REFUSED:
		printf("system policy: %s: refused (the reason is above); its rules apply "
		       "nowhere\n",
		       CMD_SYSTEM_POLICY);
		rc = CMD_EXIT_POLICY;
		break;
	case CMD_SYSTEM_ERRORS:
	default:
		printf("system policy: %s: has errors (above); its rules apply nowhere\n",
		       CMD_SYSTEM_POLICY);
		rc = CMD_EXIT_POLICY;
		break;
	}
	policy_free(sys);
	return rc;
}

int cmd_system(int argc, char **argv)
{
	char *lib;
	int rc;

	if (argc != 1 || (strcmp(argv[0], "enable") != 0 && strcmp(argv[0], "disable") != 0 &&
			  strcmp(argv[0], "status") != 0))
		return cmd_usage_error("'system' takes one of enable, disable, status");
	if (strcmp(argv[0], "status") != 0 && geteuid() != 0) {
		cmd_err("'system %s' changes %s: run it as root", argv[0], CMD_PRELOAD_FILE);
		return CMD_EXIT_FAILED;
	}
	lib = cmd_find_library();
	if (!lib)
		return CMD_EXIT_SOFTWARE;
	if (strcmp(argv[0], "enable") == 0)
		rc = system_enable(lib);
	else if (strcmp(argv[0], "disable") == 0)
		rc = system_disable(lib);
	else
		rc = system_status(lib);
	free(lib);
	return rc;
}
