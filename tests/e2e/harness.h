/*
 * harness.h - end-to-end test support: spawn real programs with an explicit
 * environment, collect their output, find free loopback ports, and make the
 * test PKI (scripts/mkpki) once per test binary.
 *
 * The shim is never loaded into a test binary: programs under test get it in
 * their own environment through h_env_preload().
 */
#ifndef TLSSHIM_E2E_HARNESS_H
#define TLSSHIM_E2E_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

/* ---- paths (absolute; owned by the harness, valid for the process) ---- */
const char *h_build(void);            /* $BUILD from the Makefile, default "build" */
const char *h_shim(void);             /* BUILD/libtlsshim.so */
const char *h_cmd(void);              /* BUILD/tlsshim */
const char *h_prog(const char *name); /* BUILD/tests/progs/NAME */
const char *h_src(void);              /* the source tree's top directory */
/* The test PKI directory, made on first use by scripts/mkpki into a fresh temp dir. */
const char *h_pki(void);
/* "h_pki()/NAME", e.g. h_pki_file("server.pem"). Valid for the process. */
const char *h_pki_file(const char *name);
/* h_pki_file(NAME) as the char * an ARGV() list takes: pki("ca.pem"). */
char *pki(const char *name);
/* "asan" or "tsan" when the tests (and so the shim) are built with that sanitizer, else NULL. */
const char *h_san(void);
/* A new temporary directory, removed at exit. */
const char *h_tmpdir(void);

/* ---- environments: nothing is inherited from the test's own environment ---- */
struct h_env {
	char **v; /* "KEY=VALUE", NULL-terminated */
	size_t n, cap;
};
/* PATH, HOME, LANG=C.UTF-8, and the sanitizer options when SAN is set. */
void h_env_init(struct h_env *e);
/* Sets (or replaces) KEY to the formatted value. */
void h_env_set(struct h_env *e, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* LD_PRELOAD = [the sanitizer runtime under SAN=asan/tsan] + h_shim(). */
void h_env_preload(struct h_env *e);
void h_env_free(struct h_env *e);
/* Removes KEY if set. */
void h_env_unset(struct h_env *e, const char *key);
/* KEY's value, or NULL. Valid until E changes. */
const char *h_env_get(const struct h_env *e, const char *key);
/* A program under the shim: h_env_init, h_env_preload and TLSSHIM_POLICY=POLICY. */
void h_env_shim(struct h_env *e, const char *policy);

/* ---- processes ---- */
struct h_proc {
	pid_t pid;
	int in_fd, out_fd, err_fd; /* our ends of the pipes; -1 once closed */
	char *out, *err;           /* collected output, NUL-terminated */
	size_t out_len, err_len;
	int status; /* wait status once reaped */
	int reaped;
};

/*
 * Starts ARGV[0] (looked up in ENV's PATH) with exactly ENV's environment.
 * STDIN_DATA (may be NULL) is written to its stdin, which is then closed.
 * Returns 0, or -1 with errno.
 */
int h_spawn(struct h_proc *p, char *const argv[], const struct h_env *env, const void *stdin_data,
	    size_t stdin_len);
/*
 * Collects output until the process exits or TIMEOUT_MS passes (then it is
 * killed with SIGKILL and -1 is returned). Returns the exit code (128+signal
 * if killed by a signal).
 */
int h_wait(struct h_proc *p, int timeout_ms);
/* h_spawn + h_wait. */
int h_run(struct h_proc *p, char *const argv[], const struct h_env *env, int timeout_ms);
/* h_run with the harness's plain environment: no shim (a real TLS client or server). */
int h_run_plain(struct h_proc *p, char *const argv[], int timeout_ms);
/* SIGTERM, then SIGKILL after a second; reaps. Safe to call twice. */
void h_kill(struct h_proc *p);
void h_proc_free(struct h_proc *p);
/*
 * Collects output until the running process's stdout or stderr contains
 * NEEDLE (0), or TIMEOUT_MS passes or the process exits without it (-1).
 * The process is left running. For servers: wait for "ACCEPT", a log line...
 */
int h_wait_output(struct h_proc *p, const char *needle, int timeout_ms);
/* Collects whatever output arrives for TIMEOUT_MS (0: what is there now). */
void h_collect(struct h_proc *p, int timeout_ms);

/* ---- servers: processes that live until the test ends ---- */
/* An argv for h_spawn and friends: ARGV("curl", "-s", url). */
#define ARGV(...) ((char *[]){__VA_ARGS__, NULL})
/*
 * Starts ARGV with ENV (NULL: h_env_init's, no shim) and waits up to 20 s
 * until 127.0.0.1:PORT accepts connections, or, with NEEDLE, until its
 * output contains NEEDLE (with neither, PORT 0, not at all); fails the test
 * with what it said otherwise. The process is stopped and freed by
 * h_teardown().
 */
struct h_proc *h_server(char *const argv[], const struct h_env *env, int port, const char *needle);
/* A process slot h_teardown() stops and frees, for a server started another way. */
struct h_proc *h_proc_slot(void);
/* Stops (SIGTERM, then SIGKILL) and frees every h_server/h_proc_slot process: a suite's .fini. */
void h_teardown(void);

/* ---- network (127.0.0.1 only) ---- */
/* A TCP port nothing listens on now, on 127.0.0.1. */
int h_free_port(void);
/* Waits until 127.0.0.1:PORT accepts connections. Returns 0, or -1 on time-out. */
int h_wait_port(int port, int timeout_ms);
/* Whether something listens on PORT now (any local address). */
int h_port_listening(int port);

/* ---- text ---- */
/* Occurrences of NEEDLE in HAY, overlapping ones included. */
int h_count(const char *hay, const char *needle);
/* The first line of TEXT that contains NEEDLE (a new string, without its newline), or NULL. */
char *h_line_with(const char *text, const char *needle);
/* pin= for the certificate in PEM file PATH: "sha256/" + base64 of its SubjectPublicKeyInfo's
 * SHA-256. */
char *h_spki_pin(const char *path);

/* A formatted string that lives as long as the test process (aborts if out of memory). */
char *h_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Reads a whole file into a NUL-terminated buffer (caller frees); NULL on error. */
char *h_read_file(const char *path, size_t *len);
/* Creates or truncates PATH with DATA. Returns 0, or -1 with errno. */
int h_write_file(const char *path, const void *data, size_t len);

#endif
