/*
 * inherit_listen.c - listening sockets across exec and spawn (inherit.h): a
 * TCP listener the policy wraps stays wrapped in the program that inherits
 * it. A server that re-executes itself on its listeners chooses the new
 * program's environment: nginx's binary upgrade (SIGUSR2) passes only TZ and
 * its own NGINX variable, so the new master would run without the library
 * and serve the port in cleartext. The library's variables go along instead;
 * a program that cannot load the library (static, setuid, Go) gets a dead
 * socket in the listener's place on exec, and a spawn of one is refused.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "decide.h"
#include "inherit.h"
#include "inherit_int.h"
#include "log.h"
#include "real.h"
#include "shim.h"

#define LISTEN_MAX 64 /* listeners looked at per exec */

extern char **environ;

struct listeners {
	int fds[LISTEN_MAX];
	struct ep eps[LISTEN_MAX];
	int n;
};

static void note_fd(struct listeners *l, int fd)
{
	int fl;

	if (l->n == LISTEN_MAX || fd < 0)
		return;
	fl = real.fcntl(fd, F_GETFD);
	if (fl < 0 || (fl & FD_CLOEXEC))
		return; /* the new program will not have it */
	if (decide_listener(shim.policy, fd, &l->eps[l->n]))
		l->fds[l->n++] = fd;
}

/*
 * The listeners a new program would inherit (no FD_CLOEXEC) that the policy
 * wraps or denies. Lists /proc/self/fd; without /proc, fds 0-1023.
 */
static void find_listeners(struct listeners *l)
{
	DIR *d = real.opendir("/proc/self/fd");
	struct dirent *de;

	l->n = 0;
	if (d == NULL) {
		for (int fd = 0; fd < 1024; fd++)
			note_fd(l, fd);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		char *end;
		long fd = strtol(de->d_name, &end, 10);

		if (end != de->d_name && *end == '\0' && fd >= 0 && fd <= 0x7fffffff &&
		    fd != dirfd(d))
			note_fd(l, (int)fd);
	}
	closedir(d);
}

/* This library's file as LD_PRELOAD names it here (with what precedes it: ASan's runtime). */
static const char *own_preload(const char **file)
{
	const char *pre = shim_getenv("LD_PRELOAD");
	Dl_info info;

	if (dladdr((void *)inherit_startup, &info) == 0 || info.dli_fname == NULL)
		return NULL;
	*file = info.dli_fname;
	return pre != NULL && strstr(pre, info.dli_fname) != NULL ? pre : info.dli_fname;
}

/* Whether this process still has, in its environment, the policy variables it loaded. */
static int own_policy_here(void)
{
	return inherit_hash_str(shim_getenv(ENV_POLICY)) == inherit_policy_hash &&
	       inherit_hash_str(shim_getenv(ENV_POLICY_FILE)) == inherit_policy_file_hash;
}

/* Whether ENVP sets KEY_EQ ("NAME=..." up to and including '='). */
static int env_has(char *const envp[], const char *key_eq, size_t kl)
{
	for (size_t i = 0; envp != NULL && envp[i] != NULL; i++)
		if (strncmp(envp[i], key_eq, kl) == 0)
			return 1;
	return 0;
}

/*
 * X->envp plus what loads this library with this process's policy: LD_PRELOAD
 * (PRELOAD first, the program's own entries after it) and each TLSSHIM_
 * variable of this process the environment lacks. Returns 0, or -ENOMEM.
 */
static int add_library_env(struct inherit_exec *x, const char *preload, const char *file)
{
	char **in = x->envp, **out;
	const char *theirs = inherit_env_get(in, "LD_PRELOAD");
	size_t n = 0, k = 0, extra = 1;

	for (; in != NULL && in[n] != NULL; n++)
		;
	for (char **e = environ; e != NULL && *e != NULL; e++)
		extra++;
	out = malloc((n + extra + 1) * sizeof(*out));
	if (out == NULL)
		return -ENOMEM;
	if (theirs == NULL || strstr(theirs, file) == NULL) {
		size_t len = strlen(preload) + (theirs != NULL ? strlen(theirs) : 0) + 13;

		x->lvar = malloc(len);
		if (x->lvar == NULL) {
			free(out);
			return -ENOMEM;
		}
		snprintf(x->lvar, len, "LD_PRELOAD=%s%s%s", preload, theirs != NULL ? ":" : "",
			 theirs != NULL ? theirs : "");
		out[k++] = x->lvar;
	}
	for (size_t i = 0; i < n; i++)
		if (x->lvar == NULL || strncmp(in[i], "LD_PRELOAD=", 11) != 0)
			out[k++] = in[i];
	for (char **e = environ; e != NULL && *e != NULL; e++) {
		const char *eq = strchr(*e, '=');

		if (eq == NULL || strncmp(*e, ENV_PREFIX, sizeof(ENV_PREFIX) - 1) != 0 ||
		    strncmp(*e, ENV_INHERIT "=", sizeof(ENV_INHERIT)) == 0 ||
		    env_has(in, *e, (size_t)(eq - *e) + 1))
			continue;
		out[k++] = *e;
	}
	out[k] = NULL;
	x->lalloc = out;
	x->envp = out;
	return 0;
}

/* Replaces FD with a dead socket for the new program; kept aside to put back if exec fails. */
static void deaden(struct inherit_exec *x, int fd)
{
	int sp[2], saved = real.fcntl(fd, F_DUPFD_CLOEXEC, 0);

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) {
		/* No dead socket to give: no listener either (lost here too if exec fails). */
		if (saved >= 0)
			real.close(saved);
		real.close(fd);
		return;
	}
	real.close(sp[1]);
	real.dup2(sp[0], fd); /* without FD_CLOEXEC, as the listener was */
	real.close(sp[0]);
	if (saved < 0)
		return;
	if (x->ndead < (int)(sizeof(x->dead) / sizeof(x->dead[0]))) {
		x->dead[x->ndead][0] = fd;
		x->dead[x->ndead++][1] = saved;
	} else {
		real.close(saved);
	}
}

/* What cannot go along: every listener refused (exec) or the spawn (X->refuse). */
static void refuse_all(struct inherit_exec *x, struct listeners *l, const char *prog,
		       const char *why, int spawn)
{
	for (int i = 0; i < l->n; i++) {
		char a[80];

		ep_describe(&l->eps[i], NULL, a, sizeof(a));
		log_error("%s of %s: listener %s (fd %d), which the policy wraps, %s: %s, so it "
			  "would serve the port in cleartext",
			  spawn ? "spawn" : "exec", prog, a, l->fds[i],
			  spawn ? "refuses the spawn" : "is a dead socket to the new program", why);
		if (!spawn)
			deaden(x, l->fds[i]);
	}
	if (spawn)
		x->refuse = EACCES;
}

void inherit_listeners_prepare(struct inherit_exec *x, const char *path, int search,
			       const char *prog, int spawn)
{
	struct listeners l;
	const char *preload, *file = NULL;
	char a[80];

	if (!shim.has_accept || inherit_child_adopts(path, search, x->envp))
		return;
	real_init(); /* the sockets are asked through the real functions */
	find_listeners(&l);
	if (l.n == 0)
		return;
	if (!inherit_program_preloads(path, search)) {
		refuse_all(x, &l, prog, "it cannot load the library (static, setuid or Go)", spawn);
		return;
	}
	preload = own_preload(&file);
	if (preload == NULL || !own_policy_here()) {
		refuse_all(x, &l, prog, "this process no longer has its policy variables", spawn);
		return;
	}
	if (add_library_env(x, preload, file) != 0) {
		refuse_all(x, &l, prog, "out of memory", spawn);
		return;
	}
	ep_describe(&l.eps[0], NULL, a, sizeof(a));
	log_info("%s of %s: it inherits listener %s (fd %d%s), which the policy wraps, with an "
		 "environment that would not load the library: LD_PRELOAD and the TLSSHIM_ "
		 "variables go along",
		 spawn ? "spawn" : "exec", prog, a, l.fds[0], l.n > 1 ? ", and others" : "");
}

void inherit_listeners_done(struct inherit_exec *x)
{
	for (int i = 0; i < x->ndead; i++) {
		real.dup2(x->dead[i][1], x->dead[i][0]); /* the exec failed: the listener is back */
		real.close(x->dead[i][1]);
	}
	x->ndead = 0;
	free(x->lalloc);
	free(x->lvar);
	x->lalloc = NULL;
	x->lvar = NULL;
}
