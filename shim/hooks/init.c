/*
 * init.c - the library constructor: in the first copy of the library a
 * process loaded, startup() (startup.c) reads the policy before main(); a
 * policy that does not parse stops the program with status 78 (EX_CONFIG).
 */
#include <sys/auxv.h>
#include <unistd.h>

#include "startup.h"

/*
 * One copy of the library per process. With the system-wide mode on, a program
 * started with another copy in LD_PRELOAD (a build tree's, another install's)
 * has two: the first copy's hooks reach the second's through their table of
 * real libc functions, and both would wrap each connection (TLS inside TLS;
 * the peer sees garbage). Every copy's reference to this exported marker
 * resolves to the first copy's definition (the loader's symbol order, the same
 * order that decides whose hooks the program calls), so a later copy knows it
 * is not first and passes everything through.
 */
__attribute__((visibility("default"))) const unsigned char tlsshim_instance = 1;
extern const unsigned char tlsshim_instance_own
    __attribute__((alias("tlsshim_instance"), visibility("hidden")));

static int first_copy(void)
{
	/* Volatile: the comparison must use the loader's answer, not be folded. */
	const unsigned char *volatile seen = &tlsshim_instance;

	return seen == &tlsshim_instance_own;
}

__attribute__((constructor)) static void tlsshim_init(void)
{
	/*
	 * A secure-execution process (setuid, setgid, file capabilities) got its
	 * environment from a less privileged user: only the system policy applies.
	 */
	int secure = getauxval(AT_SECURE) != 0;

	/* No real_init() here: symbols are resolved on first use (real.c). */
	if (!first_copy())
		return;
	if (startup(secure) != 0)
		_exit(STARTUP_EX_CONFIG);
}
