/*
 * env.h - the environment variables tlsshim reads and sets, each with what
 * applies when it is unset (the contract's "Configuration" table).
 *
 * One place for the names the preload library (shim/), the command (cmd/) and
 * the policy library (which names the diagnostics of TLSSHIM_POLICY after it)
 * must spell alike. Header only: nothing here adds code to the library's start.
 * A program running with AT_SECURE (setuid, file capabilities) gets none of
 * these read: the system policy alone applies.
 */
#ifndef TLSSHIM_ENV_H
#define TLSSHIM_ENV_H

/* The prefix of every variable below (`tlsshim system` and the exec hooks look for it). */
#define ENV_PREFIX "TLSSHIM_"

/* Rules, separated by newlines or ';'. Unset or empty: none. Also the SOURCE of
 * their diagnostics ("TLSSHIM_POLICY:2:9: ..."). */
#define ENV_POLICY "TLSSHIM_POLICY"
/* A file of rules, combined with ENV_POLICY into one table. Unset or empty: none. */
#define ENV_POLICY_FILE "TLSSHIM_POLICY_FILE"

/* error, warn, info or debug. Unset or empty: ENV_LOG_DEFAULT. */
#define ENV_LOG         "TLSSHIM_LOG"
#define ENV_LOG_DEFAULT "warn"
/* Log lines are appended there. Unset or empty: standard error. */
#define ENV_LOG_FILE "TLSSHIM_LOG_FILE"

/* TLS secrets in NSS key-log format are written there. Unset: none (the default). */
#define ENV_KEYLOG "TLSSHIM_KEYLOG"

/* ENV_STATS_OFF turns the shared-memory counters off; anything else (or unset): on. */
#define ENV_STATS     "TLSSHIM_STATS"
#define ENV_STATS_OFF "off"
/* Where the counters' files go (none if it is unusable). Unset or empty:
 * ENV_STATS_DIR_DEFAULT if it is usable, else $XDG_RUNTIME_DIR/tlsshim. */
#define ENV_STATS_DIR         "TLSSHIM_STATS_DIR"
#define ENV_STATS_DIR_DEFAULT "/run/tlsshim"

/* Set by the library itself across exec(): the wrapped connections a program hands
 * down (shim/inherit_exec.c writes it, shim/inherit.c reads it); never by users.
 * Unset: nothing handed down. */
#define ENV_INHERIT "TLSSHIM_INHERIT"

#endif
