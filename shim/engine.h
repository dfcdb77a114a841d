/*
 * engine.h - the TLS engine: one TLS session over one non-blocking socket.
 *
 * The engine lives in its own shared object, libtlsshim-tls.so, the only part
 * of tlsshim linked against libssl/libcrypto. libtlsshim.so dlopen()s it when
 * the first connection is wrapped, so a process that wraps nothing never loads
 * or initialises OpenSSL (LD_PRELOAD is inherited by every child of a wrapped
 * shell; each must stay cheap to start).
 *
 * The engine never blocks and never waits: every operation runs until it
 * needs the socket to become readable or writable and then says which. All
 * waiting, timeouts, blocking emulation, errno and locking belong to the
 * caller (shim/conn.c). A session is not thread-safe: the caller serialises
 * calls on one session (never holding its lock across a wait).
 *
 * Writes: the engine's BIO always accepts the ciphertext OpenSSL produces,
 * writing what the kernel takes and keeping the rest (at most about one
 * record) until tsess_flush(). tls_write() first flushes; if that cannot
 * finish, it accepts nothing and returns TS_WANT_WRITE. So bytes reported
 * written are committed, exactly like a socket's partial write, and OpenSSL's
 * "retry with the same buffer" rule never reaches the program.
 *
 * All socket I/O goes through the real_fns table given at init (never the
 * hooked libc names).
 */
#ifndef TLSSHIM_ENGINE_H
#define TLSSHIM_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "policy.h"

struct real_fns;
struct tsess; /* opaque: one TLS session */

#define ENGINE_ABI 4

/* Log levels, shared with shim/log.h. */
enum { LOG_LVL_ERROR = 0, LOG_LVL_WARN = 1, LOG_LVL_INFO = 2, LOG_LVL_DEBUG = 3 };

/* Negative results of session operations (never a valid byte count). */
enum {
	TS_WANT_READ = -1,  /* wait for the socket to be readable, then call again */
	TS_WANT_WRITE = -2, /* wait for writable (pending ciphertext), then call again */
	TS_CLOSED = -3,     /* the peer sent close_notify: end of data */
	TS_EOF = -4,        /* the peer closed the TCP stream without close_notify */
	TS_FATAL = -5,      /* TLS failure; tsess_reason() says why; the session is dead */
	TS_SYSERR = -6,     /* socket error; tsess_errno() has errno (ECONNRESET, EPIPE, ...) */
};

/*
 * Which system calls the engine's socket I/O uses: those of the program's own
 * call (read/write, readv/writev, recvfrom/sendto, recvmsg/sendmsg), so that a
 * seccomp filter allowing the program's calls allows ours (engine_ops.set_io).
 */
enum ts_io {
	TS_IO_SOCK = 0, /* recv/send (recvfrom/sendto): the default */
	TS_IO_RW = 1,   /* read/write */
	TS_IO_VEC = 2,  /* readv/writev */
	TS_IO_MSG = 3,  /* recvmsg/sendmsg */
	/*
	 * Or-ed in: the program's call is not a write, so a write the session
	 * makes now (a handshake flight, close_notify, a key-update reply) must
	 * not raise SIGPIPE, which write()/writev() cannot be told.
	 */
	TS_IO_QUIET = 0x10,
};

/* The most plaintext a peek decrypts ahead (kept in the session until read). */
#define TS_PEEK_MAX ((size_t)256 * 1024)

/* How far the peer got in the handshake (engine_ops.peer_progress). */
enum {
	TS_PEER_SILENT = 0,  /* it sent nothing at all */
	TS_PEER_PARTIAL = 1, /* bytes, but not one whole handshake message (or not TLS) */
	TS_PEER_SPOKE = 2,   /* at least one handshake message */
};

struct engine_host {
	const struct real_fns *real;
	/* printf-style logger; LEVEL is LOG_LVL_*. Thread-safe. */
	void (*log)(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
	const char *keylog_path; /* TLSSHIM_KEYLOG, or NULL */
	/*
	 * RULE's certificate (cert=) was (re)loaded: SUBJECT and NOT_AFTER (Unix
	 * time) of the certificate of the chain that expires first (statistics).
	 */
	void (*cert_loaded)(const struct policy_rule *rule, const char *subject, int64_t not_after);
};

/* What a completed handshake negotiated (engine_ops.info). */
struct ts_info {
	int version; /* 0x0303 TLS 1.2, 0x0304 TLS 1.3 */
	int resumed;
	char cipher[48];
};

enum tls_role { TLS_ROLE_CLIENT = 0, TLS_ROLE_SERVER = 1 };

struct tsess_params {
	int fd; /* connected, non-blocking TCP socket */
	enum tls_role role;
	const struct policy_rule *rule; /* options; outlives the session */
	/*
	 * Client: the name the program resolved (or the rule's matched name).
	 * It is the default SNI and verified name. NULL when the program used an
	 * IP literal: then no SNI is sent (RFC 6066 section 3 forbids literal
	 * addresses in server_name) and the address is verified instead.
	 */
	const char *peer_name;
	const char *peer_addr; /* numeric text of the destination/peer address */
	uint16_t port;         /* destination port (client session cache key) */
};

struct engine_ops {
	unsigned abi; /* ENGINE_ABI */

	/* Initialises OpenSSL once. Returns 0, or -1 with a message in ERR. */
	int (*init)(const struct engine_host *host, char *err, size_t errlen);

	/*
	 * Creates a session for P (building or reusing the rule's SSL_CTX,
	 * reloading its files if they changed on disk). Returns NULL with a
	 * message in ERR (e.g. "cannot load cert /x: no start line").
	 */
	struct tsess *(*sess_new)(const struct tsess_params *p, char *err, size_t errlen);

	/* Frees the session. No I/O is done (send close_notify first if wanted). */
	void (*sess_free)(struct tsess *s);

	/* Points the session at another fd of the same socket (after dup + close). */
	void (*set_fd)(struct tsess *s, int fd);

	/* Makes the session's socket I/O use the calls of FAMILY (enum ts_io) from now on. */
	void (*set_io)(struct tsess *s, int family);

	/* Advances the handshake: 0 when complete, TS_WANT_*, TS_FATAL, TS_SYSERR, TS_EOF. */
	int (*handshake)(struct tsess *s);

	/*
	 * Reads plaintext (PEEK: leave it queued). Returns bytes > 0, or
	 * TS_WANT_READ, TS_CLOSED, TS_EOF, TS_FATAL, TS_SYSERR. LEN 0 returns 0.
	 * A read returns at most one record's worth beyond what is queued; a peek
	 * decrypts every record that is here, up to LEN (at most TS_PEEK_MAX), so
	 * it shows what a read of LEN would return (a socket's MSG_PEEK). With
	 * PEEK, BUF may be NULL: decrypt ahead, copy nothing (FIONREAD).
	 */
	ssize_t (*read)(struct tsess *s, void *buf, size_t len, int peek);

	/* Encrypts up to LEN bytes: bytes accepted > 0, or TS_WANT_WRITE, TS_FATAL, TS_SYSERR. */
	ssize_t (*write)(struct tsess *s, const void *buf, size_t len);

	/* Sends pending ciphertext: 0 when none is left, TS_WANT_WRITE, TS_SYSERR. */
	int (*flush)(struct tsess *s);

	/* Queues close_notify and flushes: 0, TS_WANT_WRITE, TS_SYSERR. Idempotent. */
	int (*close_notify)(struct tsess *s);

	/* Decrypted plaintext bytes available without any socket I/O. */
	size_t (*pending)(const struct tsess *s);

	/* Whether undecrypted input is already buffered inside the engine. */
	int (*buffered_input)(const struct tsess *s);

	/*
	 * Whether a read may find more without waiting: plaintext or input is
	 * buffered in the engine, or the last socket read filled its buffer (the
	 * kernel may hold more). False means a read would now ask the kernel and
	 * find it empty, so a caller filling a buffer can stop without a syscall.
	 */
	int (*more_input)(const struct tsess *s);

	/*
	 * Whether ciphertext is waiting to be flushed: 0 none, 1 some, 2 so much
	 * that reading from the peer is held back until it drains (read then
	 * gives TS_WANT_WRITE): readiness must wait for POLLOUT, not POLLIN.
	 */
	int (*output_pending)(const struct tsess *s);

	/* Why the last TS_FATAL happened ("certificate verify failed: hostname mismatch"). */
	const char *(*reason)(const struct tsess *s);

	/* errno behind the last TS_SYSERR. */
	int (*sys_errno)(const struct tsess *s);

	/* One line for debug logs: "TLSv1.3 TLS_AES_128_GCM_SHA256 resumed alpn=h2". */
	void (*describe)(const struct tsess *s, char *buf, size_t len);

	/* TS_PEER_*: what the peer has sent so far (to log a failed handshake at its level). */
	int (*peer_progress)(const struct tsess *s);

	/* What the completed handshake negotiated. */
	void (*info)(const struct tsess *s, struct ts_info *out);
};

/* The only symbol libtlsshim-tls.so exports. */
extern const struct engine_ops tlsshim_engine_ops;

#endif
