/*
 * starttls.h - the protocols' own upgrade to TLS (rule option starttls=), as
 * byte-level state machines that do no I/O.
 *
 * A machine reads what the peer sent from s->in and says what to do next:
 * send s->out, read more (at most s->read_max bytes: a server never reads
 * past the request it answers), start the TLS handshake, serve in cleartext,
 * or fail with s->why (the peer's answer quoted, escaped). conn.c does the
 * socket I/O (non-blocking, so the machines work under every I/O and
 * readiness call the program uses) and calls stls_step() again after each
 * read and each complete send. Unit-tested against recorded dialogues, one
 * byte at a time too (tests/unit/test_starttls.c).
 *
 * What the program reads first (s->greet): the synthesised SMTP/IMAP
 * greeting, PostgreSQL's 'N' to the program's own SSLRequest, or the bytes
 * a cleartext client sent (accept auto). conn.c hands them out before any
 * byte of the TLS session.
 */
#ifndef TLSSHIM_STARTTLS_H
#define TLSSHIM_STARTTLS_H

#include <stddef.h>

#include "engine.h" /* enum tls_role */
#include "policy.h" /* enum policy_starttls */

enum stls_rc {
	STLS_TLS = 0,        /* start the TLS handshake now (s->in is empty) */
	STLS_WANT_READ = 1,  /* read at most s->read_max bytes into s->in, then step again */
	STLS_WANT_WRITE = 2, /* send s->out (s->out_len bytes), then step again */
	STLS_PLAIN = 3,      /* accept auto: the client did not ask for TLS; serve cleartext */
	STLS_FAIL = -1,      /* s->why says why; fail the connection closed */
};

#define STLS_IN_MAX    4096 /* the longest answer (SMTP's EHLO reply) read whole */
#define STLS_OUT_MAX   2048 /* the program's EHLO answer, rewritten (SMTP server) */
#define STLS_GREET_MAX 1024
#define STLS_WHY_MAX   400

struct stls {
	unsigned char proto;       /* enum policy_starttls */
	unsigned char role;        /* enum tls_role */
	unsigned char allow_plain; /* accept auto: a client may stay in cleartext */
	unsigned char phase;       /* the protocol's own steps */
	unsigned char has_cap;     /* IMAP: the server listed STARTTLS */
	unsigned char pg_filter;   /* postgres client: the program's first message not seen yet */
	unsigned char srv_ehlo;    /* SMTP server: the program's EHLO answer is awaited */
	unsigned char srv_done;    /* SMTP server: no more filtering (TLS or cleartext chosen) */
	size_t rlen;               /* SMTP server: bytes of the program's EHLO answer kept */
	size_t read_max;
	size_t in_len, out_len;
	size_t greet_len, greet_off;
	size_t pbuf_len;
	unsigned char pbuf[8]; /* postgres client: the program's first bytes, up to a request */
	unsigned char in[STLS_IN_MAX];
	unsigned char out[STLS_OUT_MAX];
	unsigned char greet[STLS_GREET_MAX];
	unsigned char reply[STLS_OUT_MAX - 32]; /* SMTP server: the program's EHLO answer */
	char helo[64]; /* SMTP client: the EHLO argument (an address literal) */
	char why[STLS_WHY_MAX];
};

/* Sets S up for PROTO in ROLE; ALLOW_PLAIN for accept auto. HELO: the SMTP client's EHLO name. */
void stls_init(struct stls *s, int proto, enum tls_role role, int allow_plain, const char *helo);

/* Runs the machine on s->in (consuming what it uses). Returns enum stls_rc. */
int stls_step(struct stls *s);

/*
 * SMTP server side (accept ... starttls=smtp): the session starts in
 * cleartext with the program; these see both directions until the client's
 * STARTTLS. stls_smtp_srv_input() takes the client's bytes in s->in, one line
 * at a time, and only while s->greet is empty (the program has read the line
 * before): a line for the program goes to s->greet (STLS_WANT_READ after it);
 * an answer of the shim's own is in s->out (STLS_WANT_WRITE); STLS_TLS once
 * the 220 to STARTTLS is sent; STLS_PLAIN when the client goes on in
 * cleartext (auto); STLS_FAIL. stls_smtp_srv_output() takes the program's
 * bytes: returns how many it took; *SEND_DIRECT set when they go to the
 * client as they are (else they are kept, or rewritten into s->out, STARTTLS
 * added to its EHLO answer).
 */
int stls_smtp_srv_input(struct stls *s);
size_t stls_smtp_srv_output(struct stls *s, const void *buf, size_t len, int *send_direct);

/* The protocols (dispatched by stls_step). */
int stls_pg_step(struct stls *s);
int stls_smtp_step(struct stls *s);
int stls_imap_step(struct stls *s);

/*
 * postgres client: the program's write of BUF[0..LEN) while s->pg_filter is
 * set. Its first message may be an SSLRequest or GSSENCRequest (libpq's
 * sslmode=prefer, gssencmode=prefer): inside the TLS the shim made, the
 * answer a plain server gives, 'N', is queued for the program to read and
 * the request goes nowhere. Anything else ends the filter. Returns the
 * bytes of BUF taken; *FORWARD is set to the number of s->pbuf bytes that
 * must now be sent (in order, before the rest of BUF), 0 if none.
 */
size_t stls_pg_filter(struct stls *s, const void *buf, size_t len, size_t *forward);

/* Appends LEN bytes to what the program reads first. Returns 0 or -1 (full). */
int stls_greet_add(struct stls *s, const void *p, size_t len);

/* Drops the first N bytes of s->in. */
void stls_consume(struct stls *s, size_t n);

/* Sets s->out to TEXT. */
void stls_send(struct stls *s, const void *text, size_t len);

/* Fails with a message printf-style, returning STLS_FAIL. */
int stls_fail(struct stls *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Peer text for a log line: at most LIMIT bytes (then "..."), NUL as '.'; the
 * log escapes control bytes and backslashes itself (log.c).
 */
void stls_quote(const unsigned char *p, size_t n, size_t limit, char *out, size_t outlen);

/*
 * Line protocols: the length of the first complete line in s->in from OFF
 * (with its CRLF or LF), or 0 when none is complete yet.
 */
size_t stls_line(const struct stls *s, size_t off);

#endif
