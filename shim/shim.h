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
	/*
	 * Called once, when the process first does wrapped work (real_init()
	 * resolves the whole table): what only a process with wrapped state
	 * needs (fork handlers) is set up then, not at every process start.
	 */
	void (*wrap_start)(void);
};

/* Valid once the library constructor ran (before the program's main). */
extern struct shim_state shim;

/*
 * getenv(NAME), read from environ by our own code: at start-up, libc's getenv
 * would cost a page fault of its code (and a symbol binding) in every process.
 */
const char *shim_getenv(const char *name);

#endif
