/*
 * conn.h - one wrapped connection, as the program sees it.
 *
 * A conn owns the TLS session of one TCP socket and makes it behave like the
 * plain socket: it emulates blocking on a socket that is always non-blocking
 * underneath, honours O_NONBLOCK / MSG_DONTWAIT / SO_RCVTIMEO / SO_SNDTIMEO,
 * and answers readiness questions with what the program could actually read
 * or write in plaintext. Functions return a count or 0, or -errno; the hooks
 * set errno.
 *
 * Locking: c->lock serialises engine calls and state changes; it is never
 * held across a wait, so one thread can read while another writes (struct
 * conn says which fields need it). Lifetime: reference counted; each fd
 * mapping in fdtab holds one reference, and every hook pins the conn for the
 * duration of its call (fdtab_get/conn_put). Closing goes through fdclose.h.
 */
#ifndef TLSSHIM_CONN_H
#define TLSSHIM_CONN_H

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "addr.h"
#include "engine.h"
#include "policy.h"

enum conn_state {
	CONN_TCP_CONNECTING, /* client: TCP connect in progress */
	CONN_STARTTLS,       /* starttls=: the protocol's own upgrade, before the handshake */
	CONN_HANDSHAKE,      /* TLS handshake to do or in progress */
	CONN_AUTO_DETECT,    /* accept auto: waiting for the client's first bytes */
	CONN_OPEN,           /* handshake done: plaintext flows */
	CONN_PLAIN,          /* accept auto chose cleartext: pass through */
	CONN_FAILED,         /* handshake or TLS failure: every I/O gets c->err */
};

/*
 * Who may touch what. (I) immutable once the conn is published in fdtab;
 * (A) atomic, read and written without the lock; (L) c->lock held; the
 * bitfields share words, so every one of them is (L). Lock order: c->lock,
 * then conn_wait.c's own_lock, or epreg's lock; never two conns' locks.
 */
struct conn {
	pthread_mutex_t lock;
	atomic_int refs;          /* (A) conn_ref/conn_put; each fdtab mapping holds one */
	atomic_int n_epregs;      /* (A, epreg's lock to change) epoll sets it is in (epreg.c) */
	atomic_int ep_queued;     /* (A) 1: all its registrations are queued dirty (epreg_touch) */
	atomic_int hs_settled;    /* (A) 1: can have no deadline again (conn_deadline) */
	enum tls_role role;       /* (I) */
	enum conn_state state;    /* (L) */
	int fd;                   /* (L) the fd the session does I/O on */
	int *fds;                 /* (L) every fd of this process mapped here */
	int nfds, capfds;         /* (L) */
	int fds_inline[2];        /* (L) */
	atomic_int user_nonblock; /* (A) O_NONBLOCK as the program believes it is set */
	atomic_int user_nodelay;  /* (A) TCP_NODELAY as the program believes it is set */
	atomic_uint rd_eagain;    /* (A) reads ending in EAGAIN or short, FIONREADs (ET epoll) */
	atomic_uint wr_eagain;    /* (A) writes that ended in EAGAIN or short */
	atomic_int et_rearm;      /* (A) FIONREAD told less than the kernel may hold */
	atomic_int io_family; /* (A) enum ts_io of the program's latest I/O call (conn_set_io) */
	int err;              /* (L) errno of I/O once FAILED */
	int so_error;         /* (L) pending SO_ERROR (cleared when read), like a socket */
	unsigned rd_eof : 1;  /* the peer ended the stream (read gives 0) */
	unsigned rd_shut : 1; /* program did shutdown(SHUT_RD) */
	unsigned wr_shut : 1; /* program did shutdown(SHUT_WR): close_notify sent */
	unsigned notify_sent : 1;
	unsigned closed : 1;          /* last fd closed; the socket is gone */
	unsigned tls_failed : 1;      /* FAILED because of TLS (not a TCP error) */
	unsigned connect_told : 1;    /* connect() has reported success once (then EISCONN) */
	unsigned own_listener : 1;    /* client: the destination is this process's listener */
	unsigned own_listed : 1;      /* in conn_wait.c's list of handshakes any waiter moves on */
	unsigned early_open : 1;      /* client: connected for the program, handshake going on */
	unsigned shut_pending : 1;    /* shutdown(SHUT_WR) waits for the handshake and early */
	unsigned hs_hangup : 1;       /* the peer left during the handshake: reads see EOF */
	unsigned hangup_wrote : 1;    /* ... and the program's first write since was dropped */
	unsigned corked : 1;          /* TCP_CORK as the program set it (conn_set_cork) */
	unsigned kcorked : 1;         /* ... and passed to the kernel (a cleartext socket) */
	unsigned epipe_signalled : 1; /* the kernel raised SIGPIPE for the last write's EPIPE */
	unsigned hs_peer_turn : 1;    /* server handshake: OpenSSL waits for the client's bytes */
	unsigned char claim;          /* (L) CLAIM_*: may this process use the session (fork) */
	uint64_t claim_gen;           /* (L) the fork generation this process contends in */
	_Atomic uint64_t *claim_word; /* (L) to set; the word (A) is shared with forked processes */
	uint64_t hs_deadline_ns;      /* (L) CLOCK_MONOTONIC; 0 until the handshake starts */
	unsigned stats_mark;          /* (I) stats_conn_new()'s mark, for stats_conn_end() */
	uint64_t connect_wait_ns;     /* (L) client: until when connect waits for the handshake */
	unsigned char *early;         /* (L) plaintext written before the handshake completed */
	size_t early_len, early_off;  /* (L) early[early_off..early_len) is not yet encrypted */
	const struct policy_rule *rule; /* (I) */
	struct tsess *ts;  /* (L) the engine's session; NULL until made (a server's at first use) */
	struct stls *st;   /* (L) starttls=: the dialogue, then what the program reads first */
	size_t st_out_off; /* (L) bytes of st->out already sent */
	unsigned char *hold; /* (L) plaintext gathered for one record (TCP_CORK, MSG_MORE) */
	size_t hold_len;     /* (L) */
	char *peer_name;     /* (I) client: SNI / verified name, or NULL */
	/* (A) "connect api.internal:443 (10.1.2.3)" for log lines; read with conn_desc() */
	_Atomic(char *) desc;
	struct ep
	    ends[2]; /* (I) accepted without a DESC: local and peer address, for conn_desc() */
	char peer_addr[48]; /* (I) */
	uint16_t port;      /* (I) */
};

/* How long a connect waits for the handshake after TCP has connected. */
#define CONN_CONNECT_WAIT_MS 1000
/* Plaintext a client may write before its handshake completes. */
#define CONN_EARLY_MAX ((size_t)64 * 1024)

/*
 * One owner per TLS session across fork(): a process seals and opens records
 * of a session only while it holds the claim. A conn created in this process
 * is its OWNER. At fork() an owner's conn gets a shared word (MAP_SHARED,
 * created at its first fork) and parent and child become CONTENDERs of a new
 * generation: the first of them to do I/O (or readiness) on it claims it;
 * the others are LOST: I/O gives ECONNRESET, close sends no close_notify.
 */
enum { CLAIM_OWNER = 0, CLAIM_CONTENDER = 1, CLAIM_LOST = 2 };

void conn_ref(struct conn *c);
/* Drops a reference; frees the conn (and its session) at zero. */
void conn_put(struct conn *c);

/*
 * A client connection on socket FD for RULE. NAME is the SNI/verify name or
 * NULL; DESC the log prefix. The socket is made non-blocking (the program's
 * O_NONBLOCK is remembered). Returns the conn with one reference, or NULL
 * (errno-style code in *ERR).
 */
struct conn *conn_new_client(int fd, const struct policy_rule *rule, const char *name,
			     const char *addr, uint16_t port, const char *desc, int *err);

/*
 * A server connection on an accepted socket; the handshake waits for the first
 * I/O. DESC is its log prefix, or NULL to make "accept LOCAL from PEER" from
 * ENDS when a line first needs it. USER_NONBLOCK: the socket already has
 * O_NONBLOCK (accept4 with SOCK_NONBLOCK); USER_NODELAY: its TCP_NODELAY, or
 * -1 if not known.
 */
struct conn *conn_new_server(int fd, const struct policy_rule *rule, const char *desc,
			     const struct ep ends[2], int user_nonblock, int user_nodelay,
			     int *err);

/* C's log prefix ("connect api.internal:443 (10.1.2.3)", "accept A from B"). */
const char *conn_desc(struct conn *c);

/* "accept LOCAL from PEER" of ENDS (a peer of family 0: "?") into BUF, returned. */
#define CONN_ACCEPT_DESC_MAX 200
const char *conn_accept_desc(const struct ep ends[2], char *buf);

/*
 * Connects the client socket. A blocking connect returns when TCP has
 * connected and then the handshake has completed, or failed, or not ended
 * within the connect wait (CONN_CONNECT_WAIT_MS, capped by the rule's
 * handshake-timeout; none when the destination is this process's own
 * listener). In the last case the handshake goes on inside the program's
 * next I/O and readiness calls, and what it writes meanwhile is kept
 * (CONN_EARLY_MAX bytes at most) and encrypted once the keys exist. A
 * non-blocking connect completes (POLLOUT, SO_ERROR) by the same rule.
 * Returns 0, -EINPROGRESS, or -errno (-ECONNREFUSED when the handshake fails
 * within the wait: nothing was sent in cleartext).
 */
int conn_connect(struct conn *c, const struct sockaddr *sa, socklen_t len)
    __attribute__((warn_unused_result));

/*
 * For connect() on a socket already being wrapped: -EALREADY, -EISCONN, 0
 * (the first call after completion, as Linux) or the failure. After a failure
 * at the TCP level it is the pending error (ECONNABORTED once SO_ERROR was
 * read), the socket is left unconnected and *AFRESH set: the caller unwraps
 * it, and the next connect() starts afresh, as on Linux.
 */
int conn_connect_again(struct conn *c, int *afresh) __attribute__((warn_unused_result));

/*
 * The program's I/O call on C is of FAMILY (enum ts_io: read/write, readv/writev,
 * recv/send, recvmsg/sendmsg). The hooks say so before conn_recv/conn_send;
 * the shim's own socket calls for C then use the same family, so a seccomp
 * filter that allows the program's calls allows ours. Readiness and close use
 * the family of the latest call.
 */
static inline void conn_set_io(struct conn *c, int family)
{
	atomic_store_explicit(&c->io_family, family, memory_order_relaxed);
}

/* recv() semantics, FLAGS: MSG_PEEK, MSG_WAITALL, MSG_DONTWAIT, MSG_TRUNC. */
ssize_t conn_recv(struct conn *c, void *buf, size_t len, int flags)
    __attribute__((warn_unused_result));
/* send() semantics, FLAGS: MSG_DONTWAIT, MSG_NOSIGNAL (SIGPIPE otherwise, like a socket). */
ssize_t conn_send(struct conn *c, const void *buf, size_t len, int flags)
    __attribute__((warn_unused_result));
/*
 * conn_send() of bytes already consumed from elsewhere (sendfile, splice):
 * waits until all of LEN is taken, even on a non-blocking socket and past
 * SO_SNDTIMEO; returns less only on a failure (or -errno when nothing went).
 */
ssize_t conn_send_all(struct conn *c, const void *buf, size_t len, int flags)
    __attribute__((warn_unused_result));
ssize_t conn_recvv(struct conn *c, const struct iovec *iov, int iovcnt, int flags)
    __attribute__((warn_unused_result));
ssize_t conn_sendv(struct conn *c, const struct iovec *iov, int iovcnt, int flags)
    __attribute__((warn_unused_result));

/* shutdown(): SHUT_WR sends close_notify first. Returns 0 or -errno. */
int conn_shutdown(struct conn *c, int how) __attribute__((warn_unused_result));

/* Registers another fd (dup) of this conn. Returns 0 or -ENOMEM. */
int conn_add_fd(struct conn *c, int fd) __attribute__((warn_unused_result));
/*
 * The program closes FD (already taken out of fdtab). When it was this
 * process's last fd of the conn, close_notify is sent (unless this process
 * has not used the connection since a fork) and the session is ended.
 * Returns 1 when that was the last fd, else 0.
 */
int conn_close_fd(struct conn *c, int fd);

/*
 * FD's number now names another file (fdclose_stale): unmaps it from C
 * without a byte of I/O; when it was C's last fd the session ends silently.
 * Returns 1 when it was the last.
 */
int conn_forget_fd(struct conn *c, int fd);

/*
 * connect(AF_UNSPEC) succeeded (fdclose_disconnect): C fails as a reset
 * connection, without close_notify. Copies up to MAX of its fds into FDS and
 * returns their count; conn_unwrap_fd() then gives each back the program's
 * blocking mode, TCP_NODELAY and TCP_CORK.
 */
int conn_disconnect(struct conn *c, int *fds, int max);
void conn_unwrap_fd(struct conn *c, int fd);

/* The program's view of TCP_NODELAY (the socket always has it: see conn.c). */
int conn_nodelay(const struct conn *c);
void conn_set_nodelay(struct conn *c, int on);

/*
 * TCP_CORK. On a TLS connection it is not passed to the kernel: the program's
 * bytes are gathered into one record while it is set (and for MSG_MORE), and
 * sealed when the record is full, at uncork, at the first write without the
 * hint, and before the program reads, waits for readiness, shuts down or
 * closes. Records are sent at once, so the kernel has nothing to hold back.
 * Returns 0 or -errno.
 */
int conn_cork(const struct conn *c);
int conn_set_cork(struct conn *c, int on) __attribute__((warn_unused_result));

/* The program's view of O_NONBLOCK. */
int conn_nonblock(const struct conn *c);
void conn_set_nonblock(struct conn *c, int on);

/* Plaintext bytes a read would return now without blocking (FIONREAD). */
int conn_readable_bytes(struct conn *c);

/* getsockopt(SO_ERROR): the pending error (cleared), or 0. */
int conn_take_so_error(struct conn *c);

/*
 * Readiness, for poll/select/epoll. conn_poll_prepare() returns the user
 * events that are ready without asking the kernel and sets *KEV to the events
 * to ask the kernel for. conn_poll_result() turns the kernel's answer into
 * user events (doing the TLS work it allows: handshake steps, flushing,
 * decrypting a record to see if it holds data). Both never block.
 */
short conn_poll_prepare(struct conn *c, short uev, short *kev);
short conn_poll_result(struct conn *c, short uev, short krev);

/*
 * Client connections to this process's own listener may be let go by
 * connect() before their handshake completed; their peer is a thread of this
 * process, maybe one that waits for that very handshake. So every wait on a
 * wrapped fd (conn.c's blocking emulation, poll, select) also moves them on:
 * conn_own_collect() takes (references) up to MAX of them that are not in
 * SKIP[0..NSKIP), advances each and sets P[i] to what it waits for (fd -1
 * when nothing); the caller adds P to its wait, then conn_own_release()
 * advances those the wait answered for and drops the references. Returns
 * the number taken; 0 at the cost of one atomic load when there are none.
 */
#define CONN_OWN_DRIVE 4 /* taken per wait */
int conn_own_collect(struct conn *const *skip, size_t nskip, struct conn **o, struct pollfd *p,
		     int max);
void conn_own_release(struct conn **o, const struct pollfd *p, int n);
/*
 * For waits that cannot add fds (epoll_wait): advances them once; returns how
 * many are pending, and the caller looks again within CONN_OWN_RECHECK_NS.
 */
int conn_own_poke(void);
#define CONN_OWN_RECHECK_NS ((int64_t)5 * 1000000)

/*
 * The CLOCK_MONOTONIC time (ns) by which the handshake (or auto's first
 * bytes) must be done, or a pending connect stops waiting for it, or 0 if
 * none is pending. Readiness calls cap their waits with it, so a silent peer
 * is cut off, and a connect completes, even when nothing else happens.
 */
uint64_t conn_deadline(struct conn *c);

/* fork() handlers: hold the conn list still; the child re-initialises the locks; both bump the
 * generation. */
void conn_fork_prepare(void);
void conn_fork_parent(void);
void conn_fork_child(void);

#endif
