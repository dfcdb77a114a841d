/*
 * startup.c - the library's start-up before main() (see startup.h): the
 * policy read, the fork handlers registered, inherited connections adopted.
 * hooks/init.c's constructor calls startup() once, in the first copy of the
 * library a process loaded.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "env.h"
#include "epreg.h"
#include "fdtab.h"
#include "inherit.h"
#include "log.h"
#include "policy.h"
#include "real.h"
#include "shim.h"
#include "startup.h"
#include "stats.h"

#ifndef TLSSHIM_SYSCONFDIR
#define TLSSHIM_SYSCONFDIR "/etc"
#endif
/* The system policy: fixed at build time, so no environment can point elsewhere. */
#define SYSTEM_POLICY TLSSHIM_SYSCONFDIR "/tlsshim/policy"

/* Writes "tlsshim: WHAT" on stderr in one write, WHAT escaped (it quotes files). */
static void die_config(const char *what)
{
	char buf[LOG_LINE_MAX];
	size_t n;

	real_init();
	memcpy(buf, "tlsshim: ", 10); /* log_escape writes from the NUL on */
	n = 9 + log_escape(buf + 9, sizeof(buf) - 10, what, strlen(what));
	buf[n++] = '\n';
	real.write(2, buf, n);
}

/*
 * A secure-execution process (setuid, setgid, file capabilities): its
 * environment comes from a less privileged user, so none of TLSSHIM_* is read;
 * only the system policy applies (SYSTEM_APPLIES), else nothing is wrapped, as
 * the loader itself ignores LD_PRELOAD there. Says so on stderr, in one line,
 * if any TLSSHIM_* variable was set.
 */
static void secure_exec_note(int system_applies)
{
	char names[512], line[LOG_LINE_MAX];
	size_t used = 0, n;

	names[0] = '\0';
	for (char **e = environ; e != NULL && *e != NULL; e++) {
		const char *eq;
		size_t nlen;
		int w;

		if (strncmp(*e, ENV_PREFIX, sizeof(ENV_PREFIX) - 1) != 0)
			continue;
		eq = strchr(*e, '=');
		nlen = eq != NULL ? (size_t)(eq - *e) : strlen(*e);
		w = snprintf(names + used, sizeof(names) - used, "%s%.*s", used ? ", " : "",
			     (int)(nlen < 64 ? nlen : 64), *e);
		if (w < 0 || (size_t)w >= sizeof(names) - used)
			break;
		used += (size_t)w;
	}
	if (used == 0)
		return;
	n = (size_t)snprintf(line, sizeof(line), "%s ignored: ", names);
	if (n > sizeof(line) - 1)
		n = sizeof(line) - 1;
	snprintf(line + n, sizeof(line) - n,
		 "this is a secure-execution process (setuid, setgid or file capabilities), "
		 "whose environment a less privileged user controls; %s",
		 system_applies ? "only the system policy applies" : "nothing is wrapped");
	die_config(line);
}

static void fork_prepare(void)
{
	epreg_fork_prepare();
	conn_fork_prepare();
	fdtab_fork_prepare();
}

static void fork_parent(void)
{
	fdtab_fork_parent();
	conn_fork_parent();
	epreg_fork_parent();
}

static void fork_child(void)
{
	fdtab_fork_child();
	conn_fork_child();
	epreg_fork_child();
	inherit_fork_child();
	stats_fork_child();
}

static void fork_register(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
	inherit_fork_child(); /* this process's pid, as a child's handler notes it */
}

/*
 * The fork handlers guard wrapped state (connections, epoll registrations,
 * counters), which only exists after real_init(): registered then, once, so a
 * process that wraps nothing never calls pthread_atfork (two page faults of
 * libc's) nor getpid.
 */
static void wrap_start(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, fork_register);
}

/*
 * Where the table lives (more is malloc()ed for large policies): a process that
 * wraps nothing then starts without initialising malloc on our account.
 */
static unsigned char policy_mem[16384] __attribute__((aligned(64)));
static unsigned char system_mem[8192] __attribute__((aligned(64)));

/*
 * The system policy, or NULL when there is none or it cannot be used. A file
 * someone other than root could have written, or one with errors, is refused
 * with an error line, and its rules do not apply in this process: stopping
 * here would stop every program on the machine (sudo and sshd included), and
 * rules from an untrusted file could point connections anywhere. Its files
 * (a client key readable by some users only) are checked when a connection
 * uses them: such a connection fails closed.
 */
static struct policy *load_system_policy(void)
{
	struct policy_diags d = {0};
	struct policy *p;
	char why[600];
	int rc;

	rc = policy_file_trusted(SYSTEM_POLICY, why, sizeof(why));
	if (rc == -ENOENT)
		return NULL;
	if (rc != 0) {
		log_error("system policy refused: %s; its rules do not apply in this process", why);
		return NULL;
	}
	p = policy_new_in(system_mem, sizeof(system_mem));
	if (p == NULL) {
		log_error("system policy %s: out of memory; its rules do not apply", SYSTEM_POLICY);
		return NULL;
	}
	policy_defer_file_checks(p);
	if (policy_add_file(p, SYSTEM_POLICY, &d) == 0)
		policy_finish(p, &d);
	if (d.n == 0)
		return p;
	for (size_t i = 0; i < d.n; i++)
		log_error("system policy refused: %s:%u:%u: %s; its rules do not apply in this "
			  "process",
			  d.v[i].source, d.v[i].line, d.v[i].col, d.v[i].msg);
	policy_diags_free(&d);
	policy_free(p);
	return NULL;
}

static void set_policy(struct policy *p)
{
	shim.policy = p;
	shim.has_connect = policy_has_dir(p, POLICY_CONNECT);
	shim.has_accept = policy_has_dir(p, POLICY_ACCEPT);
}

int startup_policy(int secure)
{
	const char *text = secure ? NULL : shim_getenv(ENV_POLICY);
	const char *file = secure ? NULL : shim_getenv(ENV_POLICY_FILE);
	struct policy *sys = load_system_policy();
	struct policy_diags d = {0};
	struct policy *p;
	char msg[1100];

	if ((text == NULL || text[0] == '\0') && (file == NULL || file[0] == '\0')) {
		if (sys != NULL)
			set_policy(sys);
		return 0;
	}
	p = policy_new_in(policy_mem, sizeof(policy_mem));
	if (p == NULL) {
		die_config("out of memory reading the policy");
		return -1;
	}
	policy_quick_file_checks(p);
	policy_add_text(p, ENV_POLICY, text, &d);
	if (file != NULL && file[0] != '\0')
		policy_add_file(p, file, &d);
	if (d.n == 0)
		policy_finish(p, &d);
	if (d.n > 0) {
		for (size_t i = 0; i < d.n; i++) {
			snprintf(msg, sizeof(msg), "%s:%u:%u: %s", d.v[i].source, d.v[i].line,
				 d.v[i].col, d.v[i].msg);
			die_config(msg);
			if (!secure && shim_getenv(ENV_LOG_FILE) != NULL)
				log_error("%s", msg);
		}
		policy_diags_free(&d);
		policy_free(p);
		return -1;
	}
	if (sys != NULL && policy_set_floor(p, sys) != 0) {
		die_config("out of memory combining the policy with the system policy");
		return -1;
	}
	set_policy(p);
	return 0;
}

int startup(int secure)
{
	if (!secure && log_init() != 0) {
		die_config(ENV_LOG ": expected error, warn, info or debug");
		return -1;
	}
	if (startup_policy(secure) != 0)
		return -1;
	if (secure)
		secure_exec_note(shim.policy != NULL);
	if (shim.policy == NULL)
		return 0;
	/* Copied: programs that set their process title (redis) overwrite environ. */
	shim.keylog = secure ? NULL : shim_getenv(ENV_KEYLOG);
	shim.keylog = (shim.keylog != NULL && shim.keylog[0] != '\0') ? strdup(shim.keylog) : NULL;
	stats_init(secure);
	shim.wrap_start = wrap_start;
	if (real_ready()) /* a log line above resolved the table already */
		wrap_start();
	inherit_startup();
	return 0;
}
