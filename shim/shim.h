/*
 * shim.h - process-wide state of the preload library, set up once before main.
 */
#ifndef TLSSHIM_SHIM_H
#define TLSSHIM_SHIM_H

#include "policy.h"

/*
 * For the variables the constructor writes: .data, on the page the loader has
 * already written (GOT, relocations), rather than .bss pages that would each
 * cost a page fault in every process the shim is loaded into.
 */
#define SHIM_LOAD_DATA __attribute__((section(".data.load")))

struct shim_state {
	struct policy *policy; /* immutable after load; NULL when no policy is set */
	int has_connect;       /* the policy has connect rules */
	int has_accept;        /* the policy has accept rules */
	const char *keylog;    /* TLSSHIM_KEYLOG or NULL */
};

/* Valid once the library constructor ran (before the program's main). */
extern struct shim_state shim;

#endif
