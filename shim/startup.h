/*
 * startup.h - the library's start-up, before the program's main(): the
 * policy, the fork handlers, inherited connections. A policy that does not
 * parse stops the program (status 78, EX_CONFIG): running it would silently
 * send in cleartext what the user asked to protect. Nothing else happens at
 * load (OpenSSL is loaded on the first wrapped connection), so a process that
 * wraps nothing starts as fast as without the shim.
 */
#ifndef TLSSHIM_STARTUP_H
#define TLSSHIM_STARTUP_H

#define STARTUP_EX_CONFIG 78

/*
 * Everything the constructor does. SECURE: a secure-execution process
 * (getauxval(AT_SECURE)), whose environment is not read: only the system
 * policy applies. Returns 0, or -1 when the program must not run (the reason
 * printed on stderr): the caller exits with STARTUP_EX_CONFIG.
 */
int startup(int secure);

/*
 * Sets shim.policy: the system policy, and unless SECURE the process's own
 * (TLSSHIM_POLICY, TLSSHIM_POLICY_FILE) on top of it as a floor. Returns 0,
 * or -1 when the process's own policy has errors (each printed as
 * "tlsshim: SOURCE:LINE:COL: message").
 */
int startup_policy(int secure);

#endif
