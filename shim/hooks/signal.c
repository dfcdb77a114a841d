/*
 * signal.c - hooks: the calls that change a signal's disposition. Only
 * SIGPIPE's matters to the shim (sigpipe.h): a change forgets what is known
 * of it; everything else goes to libc untouched.
 */
#include <signal.h>

#include "hook.h"
#include "sigpipe.h"

HOOK int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	int rc;

	NEED_REAL(sigaction);
	if (sig != SIGPIPE || act == NULL)
		return real.sigaction(sig, act, old);
	sigpipe_forget();
	rc = real.sigaction(sig, act, old);
	sigpipe_forget();
	return rc;
}
HOOK_ALIAS(sigaction, __sigaction)

HOOK sighandler_t signal(int sig, sighandler_t handler)
{
	sighandler_t r;

	NEED_REAL(signal);
	if (sig != SIGPIPE)
		return real.signal(sig, handler);
	sigpipe_forget();
	r = real.signal(sig, handler);
	sigpipe_forget();
	return r;
}
HOOK_ALIAS(signal, bsd_signal)
HOOK_ALIAS(signal, ssignal)

HOOK sighandler_t sysv_signal(int sig, sighandler_t handler)
{
	sighandler_t r;

	NEED_REAL(sysv_signal);
	if (sig != SIGPIPE)
		return real.sysv_signal(sig, handler);
	sigpipe_forget();
	r = real.sysv_signal(sig, handler);
	sigpipe_forget();
	return r;
}
HOOK_ALIAS(sysv_signal, __sysv_signal)

HOOK sighandler_t sigset(int sig, sighandler_t disp)
{
	sighandler_t r;

	NEED_REAL_OPT(sigset);
	if (real.sigset == NULL) {
		errno = ENOSYS;
		return SIG_ERR;
	}
	if (sig != SIGPIPE)
		return real.sigset(sig, disp);
	sigpipe_forget();
	r = real.sigset(sig, disp);
	sigpipe_forget();
	return r;
}

HOOK int sigignore(int sig)
{
	int rc;

	NEED_REAL_OPT(sigignore);
	if (real.sigignore == NULL) {
		errno = ENOSYS;
		return -1;
	}
	if (sig != SIGPIPE)
		return real.sigignore(sig);
	sigpipe_forget();
	rc = real.sigignore(sig);
	sigpipe_forget();
	return rc;
}
