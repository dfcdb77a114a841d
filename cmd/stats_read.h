/*
 * stats_read.h - the counters of wrapped processes as `tlsshim stats` reads
 * them (stats_read.c): copied out of each live process's shared-memory file
 * (shim/stats_layout.h), their text escaped. stats.c prints them.
 */
#ifndef TLSSHIM_CMD_STATS_READ_H
#define TLSSHIM_CMD_STATS_READ_H

#include <stddef.h>
#include <stdint.h>

#include "stats_layout.h"

/*
 * Text a process wrote is printed escaped (text_escape): a file can say
 * anything, and root's `tlsshim stats` reads every user's. Escaped, a byte
 * takes at most 4.
 */
#define ESC_CAP(n) ((n)*4 + 4)

/* One rule's counters, copied out of the file. */
struct rule_snap {
	uint32_t id;
	int dir, action, system;
	char text[ESC_CAP(STATS_RULE_TEXT)];
	uint64_t conns, denied, plain, failed[STATS_FAIL_N], hs_full, hs_resumed;
	uint64_t version[STATS_VER_N], bytes_in, bytes_out, cipher_other;
	int64_t open;
	struct {
		char name[ESC_CAP(STATS_CIPHER_NAME)];
		uint64_t n;
	} cipher[STATS_CIPHERS];
	int n_cipher;
	int64_t not_after, loaded_at;
	uint64_t loads;
	char subject[ESC_CAP(STATS_SUBJECT)];
};

struct proc_snap {
	int pid;
	uint32_t uid;
	int64_t created;
	char comm[ESC_CAP(STATS_COMM)];
	uint32_t n_rules;
	struct rule_snap *rules;
};

struct snaps {
	struct proc_snap *v;
	size_t n, cap;
};

/*
 * Reads the file of every live process (only ONLY_PID's, if not 0) from every
 * directory one may have written to, into OUT (zeroed by the caller), sorted
 * by PID. Removes the files of processes that are gone. Free with
 * stats_snaps_free().
 */
void stats_read_all(int only_pid, struct snaps *out);
void stats_snaps_free(struct snaps *s);

/* The process ID S spells (digits only, 1 to INT_MAX), or 0 (atoi wraps "4294967297" to 1). */
int stats_pid_of(const char *s);

#endif
