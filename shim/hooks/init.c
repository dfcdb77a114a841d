/*
 * init.c - the library constructor: read the policy before main().
 *
 * A policy that does not parse stops the program here, with the contract's
 * message and status 78 (EX_CONFIG): running it would silently send in
 * cleartext what the user asked to protect. Nothing else happens at load
 * (OpenSSL is loaded on the first wrapped connection), so a process that
 * wraps nothing starts as fast as without the shim.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#include "conn.h"
#include "epreg.h"
#include "fdtab.h"
#include "log.h"
#include "policy.h"
#include "real.h"
#include "shim.h"

#define EX_CONFIG 78

/* Writes "tlsshim: WHAT" on stderr in one write, WHAT escaped (it quotes files). */
static void die_config(const char *what)
{
	char buf[LOG_LINE_MAX];
	size_t n;

	real_init();
	memcpy(buf, "tlsshim: ", 9);
	n = 9 + log_escape(buf + 9, sizeof(buf) - 10, what, strlen(what));
	buf[n++] = '\n';
	real.write(2, buf, n);
}

/*
 * A secure-execution process (setuid, setgid, file capabilities): its
 * environment comes from a less privileged user, so none of TLSSHIM_* is read
 * and nothing is wrapped, as the loader itself ignores LD_PRELOAD there. Says
 * so on stderr, in one line, if any TLSSHIM_* variable was set.
 */
static void secure_exec_note(void)
{
	char names[512], line[LOG_LINE_MAX];
	size_t used = 0, n;

	names[0] = '\0';
	for (char **e = environ; e != NULL && *e != NULL; e++) {
		const char *eq;
		size_t nlen;
		int w;

		if (strncmp(*e, "TLSSHIM_", 8) != 0)
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
		 "whose environment a less privileged user controls; nothing is wrapped");
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
}

/*
 * Where the table lives (more is malloc()ed for large policies): a process that
 * wraps nothing then starts without initialising malloc on our account.
 */
static unsigned char policy_mem[16384] __attribute__((aligned(64)));

static int load_policy(void)
{
	const char *text = getenv("TLSSHIM_POLICY");
	const char *file = getenv("TLSSHIM_POLICY_FILE");
	struct policy_diags d = {0};
	struct policy *p;
	char msg[1100];

	if ((text == NULL || text[0] == '\0') && (file == NULL || file[0] == '\0'))
		return 0;
	p = policy_new_in(policy_mem, sizeof(policy_mem));
	if (p == NULL) {
		die_config("out of memory reading the policy");
		return -1;
	}
	policy_add_text(p, "TLSSHIM_POLICY", text, &d);
	if (file != NULL && file[0] != '\0')
		policy_add_file(p, file, &d);
	if (d.n == 0)
		policy_finish(p, &d);
	if (d.n > 0) {
		for (size_t i = 0; i < d.n; i++) {
			snprintf(msg, sizeof(msg), "%s:%u:%u: %s", d.v[i].source, d.v[i].line,
				 d.v[i].col, d.v[i].msg);
			die_config(msg);
			if (getenv("TLSSHIM_LOG_FILE") != NULL)
				log_error("%s", msg);
		}
		policy_diags_free(&d);
		policy_free(p);
		return -1;
	}
	shim.policy = p;
	shim.has_connect = policy_has_dir(p, POLICY_CONNECT);
	shim.has_accept = policy_has_dir(p, POLICY_ACCEPT);
	return 0;
}

__attribute__((constructor)) static void tlsshim_init(void)
{
	/* No real_init() here: symbols are resolved on first use (real.c). */
	if (getauxval(AT_SECURE) != 0) {
		secure_exec_note();
		return;
	}
	if (log_init() != 0) {
		die_config("TLSSHIM_LOG: expected error, warn, info or debug");
		_exit(EX_CONFIG);
	}
	if (load_policy() != 0)
		_exit(EX_CONFIG);
	if (shim.policy == NULL)
		return;
	/* Copied: programs that set their process title (redis) overwrite environ. */
	shim.keylog = getenv("TLSSHIM_KEYLOG");
	shim.keylog = (shim.keylog != NULL && shim.keylog[0] != '\0') ? strdup(shim.keylog) : NULL;
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}
