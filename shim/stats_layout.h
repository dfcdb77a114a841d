/*
 * stats_layout.h - the layout of a process's statistics file, shared by the
 * writer (the preload library, shim/stats.c) and the reader (`tlsshim stats`,
 * cmd/stats.c).
 *
 * Varnish's shared-memory statistics are the model: one small file per
 * process under the statistics directory, named by its PID, mapped
 * MAP_SHARED; a fixed layout decided when the file is made (the rule table
 * is immutable after load); counters updated with relaxed atomic adds, read
 * with relaxed loads. No lock is shared between the two sides, so a reader
 * never waits for a writer and a writer that dies leaves a file the reader
 * can still read (then recognise as stale, by PID, start time and program
 * file, and prune). The writer makes no system call at exit or exec: a
 * program that confined itself with seccomp after connecting would be killed
 * by one; removing the files of processes that are gone is the reader's job.
 *
 * A file is valid once MAGIC reads STATS_MAGIC (stored last, with release
 * order); a reader skips it until then. Strings are NUL-terminated within
 * their arrays. A certificate slot's strings are guarded by a sequence
 * counter (odd while the writer changes them).
 */
#ifndef TLSSHIM_STATS_LAYOUT_H
#define TLSSHIM_STATS_LAYOUT_H

#include <stdatomic.h>
#include <stdint.h>

#define STATS_MAGIC   0x31746174736c7374ULL /* "tslstat1" */
#define STATS_VERSION 1

/* Why a wrapped connection failed (conn.c's reasons, classified by stats_fail_class()). */
enum stats_fail {
	STATS_FAIL_VERIFY = 0, /* a certificate, name, pin or allow= check */
	STATS_FAIL_TIMEOUT,    /* handshake-timeout (or auto's first bytes) */
	STATS_FAIL_NOT_TLS,    /* the peer sent bytes that are not TLS */
	STATS_FAIL_ALERT,      /* the peer sent a fatal alert */
	STATS_FAIL_CLOSED,     /* the peer closed or reset during the handshake */
	STATS_FAIL_OTHER,      /* anything else (no shared cipher, version, files, ...) */
	STATS_FAIL_N
};

/* TLS versions negotiated. */
enum stats_ver { STATS_VER_12 = 0, STATS_VER_13, STATS_VER_OTHER, STATS_VER_N };

#define STATS_CIPHERS     8 /* distinct cipher suites counted per rule; more go to "other" */
#define STATS_CIPHER_NAME 48
#define STATS_RULE_TEXT   256
#define STATS_SUBJECT     192
#define STATS_COMM        32

/* One cipher suite's handshake count; NAME is set once (STATE 0 free, 1 writing, 2 set). */
struct stats_cipher {
	_Atomic uint32_t state;
	uint32_t pad;
	char name[STATS_CIPHER_NAME];
	_Atomic uint64_t n;
};

/* The rule's own certificate (cert=), as last loaded. */
struct stats_cert {
	_Atomic uint32_t seq;        /* odd while the fields below change */
	uint32_t pad;                /* */
	_Atomic int64_t not_after;   /* Unix time; 0: no certificate loaded */
	_Atomic int64_t loaded_at;   /* Unix time of the last (re)load */
	_Atomic uint64_t loads;      /* how many times it was (re)loaded */
	char subject[STATS_SUBJECT]; /* of the certificate that expires first in the chain */
};

/* Counters of one rule (and so one direction), in policy rule id order. */
struct stats_rule {
	uint32_t id;    /* policy rule id */
	uint8_t dir;    /* enum policy_dir */
	uint8_t action; /* enum policy_action */
	uint8_t system; /* from the system policy */
	uint8_t pad;
	char text[STATS_RULE_TEXT]; /* the rule as written */
	_Atomic uint64_t conns;     /* connections a tls/auto rule took over */
	_Atomic uint64_t denied;    /* refused by a deny rule */
	_Atomic uint64_t plain;     /* passed in cleartext (plain rule, or auto's cleartext) */
	_Atomic int64_t open;       /* connections taken over and not yet closed */
	_Atomic uint64_t failed[STATS_FAIL_N];
	_Atomic uint64_t hs_full;    /* handshakes completed without resumption */
	_Atomic uint64_t hs_resumed; /* ... resuming a session */
	_Atomic uint64_t version[STATS_VER_N];
	_Atomic uint64_t bytes_in;     /* plaintext read by the program */
	_Atomic uint64_t bytes_out;    /* plaintext written by the program */
	_Atomic uint64_t cipher_other; /* handshakes whose suite found no free slot */
	struct stats_cipher cipher[STATS_CIPHERS];
	struct stats_cert cert;
};

struct stats_head {
	_Atomic uint64_t magic; /* STATS_MAGIC once the file is complete */
	uint32_t version;       /* STATS_VERSION */
	uint32_t head_size;     /* sizeof(struct stats_head) */
	uint32_t rule_size;     /* sizeof(struct stats_rule) */
	uint32_t n_rules;
	int32_t pid;
	uint32_t uid;
	uint64_t starttime; /* field 22 of /proc/PID/stat: with PID, names the process */
	int64_t created;    /* Unix time the file was made */
	uint64_t exe_dev;   /* the program's file (/proc/PID/exe): an exec changes it */
	uint64_t exe_ino;
	char comm[STATS_COMM];
	/* struct stats_rule rules[n_rules] follows, at head_size */
};

_Static_assert(sizeof(struct stats_head) % 8 == 0, "rules must be 8-byte aligned");
_Static_assert(sizeof(struct stats_rule) % 8 == 0, "rules must be 8-byte aligned");

#endif
