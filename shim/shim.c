/*
 * shim.c - the process-wide state (shim.h). Set by the constructor in
 * hooks/init.c; kept here so that the core links without the hooks (tests).
 */
#include "shim.h"

extern char **environ;

struct shim_state shim SHIM_LOAD_DATA;

const char *shim_getenv(const char *name)
{
	for (char **e = environ; e != NULL && *e != NULL; e++) {
		const char *a = *e, *b = name;

		while (*b != '\0' && *a == *b)
			a++, b++;
		if (*b == '\0' && *a == '=')
			return a + 1;
	}
	return NULL;
}
