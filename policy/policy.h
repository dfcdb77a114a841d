/*
 * policy.h - tlsshim's policy language: parse rules, answer "which rule applies".
 *
 * A pure library: no OpenSSL, no hooks, no global state. The preload library,
 * the TLS engine and the command all use it through this header only (and
 * env.h, the environment's names, shared with them).
 *
 * Life cycle:
 *   struct policy *p = policy_new();
 *   policy_add_text(p, ENV_POLICY, getenv(ENV_POLICY), &d);       (the names: env.h)
 *   policy_add_file(p, getenv(ENV_POLICY_FILE), &d);
 *   if (policy_finish(p, &d) != 0) { print d.v[i] as SOURCE:LINE:COL: msg; }
 *   const struct policy_rule *r = policy_match(p, &query, &m);
 *
 * After policy_finish() succeeds the table is immutable, so lookups need no
 * lock and may run from any thread.
 */
#ifndef TLSSHIM_POLICY_H
#define TLSSHIM_POLICY_H

#include <stddef.h>
#include <stdint.h>

enum policy_dir { POLICY_CONNECT = 0, POLICY_ACCEPT = 1 };

enum policy_action { POLICY_TLS = 0, POLICY_PLAIN, POLICY_DENY, POLICY_AUTO };

/* Host classes, in precedence order: a lower value is more specific. */
enum policy_host_kind {
	POLICY_HOST_NAME = 0, /* exact DNS name, lower-case, no trailing dot */
	POLICY_HOST_SUFFIX,   /* "*.suffix": host holds "suffix" (no "*.") */
	POLICY_HOST_ADDR,     /* exact IPv4 / IPv6 address */
	POLICY_HOST_CIDR,     /* address/prefix; host bits are zero */
	POLICY_HOST_ANY,      /* "*" */
};

/* Port classes, in precedence order. */
enum policy_port_kind { POLICY_PORT_ONE = 0, POLICY_PORT_RANGE, POLICY_PORT_ANY };

/* TLS versions, numerically equal to OpenSSL's TLS1_2_VERSION/TLS1_3_VERSION. */
#define POLICY_TLS1_2 0x0303
#define POLICY_TLS1_3 0x0304

#define POLICY_DEFAULT_HANDSHAKE_TIMEOUT_MS 10000u
#define POLICY_DEFAULT_EXPIRY_WARN_DAYS     14u
#define POLICY_MAX_EXPIRY_WARN_DAYS         3650u

/* starttls=: the protocol's own upgrade before the TLS handshake. */
enum policy_starttls {
	POLICY_STARTTLS_NONE = 0,
	POLICY_STARTTLS_POSTGRES,
	POLICY_STARTTLS_SMTP,
	POLICY_STARTTLS_IMAP,
};

/* "postgres", "smtp", "imap" (NULL for NONE). */
const char *policy_starttls_str(enum policy_starttls s);

struct policy_pin {
	unsigned char sha256[32]; /* SHA-256 of the DER SubjectPublicKeyInfo */
};

/* The options, in the order the contract lists them (and `check` prints them). */
enum policy_opt {
	POLICY_OPT_CA = 0,
	POLICY_OPT_CERT,
	POLICY_OPT_KEY,
	POLICY_OPT_SNI,
	POLICY_OPT_NAME,
	POLICY_OPT_INSECURE,
	POLICY_OPT_CLIENT_CA,
	POLICY_OPT_ALLOW,
	POLICY_OPT_PIN,
	POLICY_OPT_ALPN,
	POLICY_OPT_MIN_VERSION,
	POLICY_OPT_CIPHERS,
	POLICY_OPT_CIPHERSUITES,
	POLICY_OPT_HANDSHAKE_TIMEOUT,
	POLICY_OPT_STARTTLS,
	POLICY_OPT_EXPIRY_WARN,
	POLICY_OPT_COUNT
};

/*
 * Every option of a rule. NULL / 0 means "not given" (the default applies),
 * except min_version, handshake_timeout_ms and expiry_warn_days, which always hold the value to
 * use (the default when not given); GIVEN says what the rule wrote.
 */
struct policy_opts {
	char *ca;        /* file or directory */
	char *cert;      /* chain, PEM */
	char *key;       /* PEM */
	char *sni;       /* connect */
	char *name;      /* connect: name the server certificate must carry */
	char *client_ca; /* accept */
	char **allow;    /* accept: "cn:PAT" / "dns:PAT" / "uri:PAT", prefix kept */
	size_t n_allow;
	struct policy_pin *pins; /* connect: any one must be in the chain */
	size_t n_pins;
	char *alpn_wire; /* ALPN in wire format (length-prefixed), NULL if none */
	size_t alpn_wire_len;
	char *alpn;                    /* ALPN as written, comma-separated, for display */
	char *ciphers;                 /* TLS <= 1.2 cipher string */
	char *ciphersuites;            /* TLS 1.3 suites */
	int insecure;                  /* connect: skip verification */
	int min_version;               /* POLICY_TLS1_2 (default) or POLICY_TLS1_3 */
	unsigned handshake_timeout_ms; /* default POLICY_DEFAULT_HANDSHAKE_TIMEOUT_MS */
	int starttls;                  /* enum policy_starttls */
	unsigned expiry_warn_days;     /* default POLICY_DEFAULT_EXPIRY_WARN_DAYS; 0: never warn */
	unsigned given;                /* bit (1u << POLICY_OPT_x) for each option the rule wrote */
};

struct policy_rule {
	unsigned id; /* dense index 0..n-1 in load order; stable for the table's life */
	enum policy_dir dir;
	enum policy_host_kind host_kind;
	char *host;             /* normalized: name/suffix lower-case; address as inet_ntop text */
	int family;             /* AF_INET / AF_INET6 for ADDR and CIDR, else 0 */
	unsigned char addr[16]; /* network order; IPv4 in the first 4 bytes */
	unsigned prefix;        /* CIDR prefix length (32/128 for ADDR) */
	enum policy_port_kind port_kind;
	uint16_t port_lo, port_hi; /* inclusive; 1..65535; ANY: 1..65535 */
	enum policy_action action;
	struct policy_opts opt;
	/* Where it came from, for diagnostics and `explain`. */
	char *source; /* "TLSSHIM_POLICY", "-p #1", or the file path */
	unsigned line, col;
	char *text; /* the rule as written, trimmed */
};

struct policy_diag {
	char *source;
	unsigned line, col; /* 1-based; col counts bytes */
	char *msg;          /* no trailing newline, no "SOURCE:LINE:COL: " prefix */
};

struct policy_diags {
	struct policy_diag *v;
	size_t n, cap;
};

struct policy; /* opaque */

/* Returns a new empty table, or NULL on allocation failure. */
struct policy *policy_new(void);

/*
 * As policy_new(), with the table's memory starting in BUF (LEN bytes, which
 * must outlive the table; more comes from malloc() once it is full). The
 * preload library passes static memory, so that parsing a small policy at
 * every process start does not initialise malloc.
 */
struct policy *policy_new_in(void *buf, size_t len);

/* Frees the table and every rule (all of its memory at once). NULL is allowed. */
void policy_free(struct policy *p);

/*
 * Parses rules separated by newlines or ';' ('#' starts a comment to the end
 * of the line) and adds them. SOURCE names the text in diagnostics. Every
 * error found is appended to D; parsing goes on after an error so that all are
 * reported. Returns 0 if no error was added, -1 otherwise. TEXT NULL is empty.
 * Must be called before policy_finish().
 */
int policy_add_text(struct policy *p, const char *source, const char *text, struct policy_diags *d);

/*
 * As policy_add_text() for the contents of the file PATH, one rule a line
 * (';' also separates). A file that cannot be read is one diagnostic at
 * PATH:0:0. Returns 0 or -1 as above.
 */
int policy_add_file(struct policy *p, const char *path, struct policy_diags *d);

/*
 * Ends loading: checks what needs the whole table (rules that tie and overlap)
 * and builds the look-up indexes. Unreadable cert/key/CA files are reported
 * while parsing, at the option's column. Returns 0, or -1 with diagnostics
 * appended to D, also when an earlier policy_add_*() call reported an error
 * (the table must then only be freed).
 */
int policy_finish(struct policy *p, struct policy_diags *d);

/* Number of rules, and rule I in load order (I < policy_count()). */
size_t policy_count(const struct policy *p);
const struct policy_rule *policy_rule_at(const struct policy *p, size_t i);

/* Whether any rule has direction DIR (lets the shim skip work entirely). */
int policy_has_dir(const struct policy *p, enum policy_dir dir);

/*
 * The exact DNS names of DIR rules (for the shim's own resolution of those
 * names). Returns the count; *NAMES points into the table (do not free).
 */
size_t policy_exact_names(const struct policy *p, enum policy_dir dir, const char *const **names);

/* A connection to be classified. */
struct policy_query {
	enum policy_dir dir;
	const char *name; /* the name the program resolved, or NULL */
	const char *fqdn; /* NAME as the resolver completed it with a search domain, or NULL */
	const char *const *alt_names; /* more exact names for this address, or NULL */
	size_t n_alt;
	int family; /* AF_INET / AF_INET6; IPv4-mapped IPv6 is treated as IPv4 */
	unsigned char addr[16];
	uint16_t port;
};

/* How a rule matched, for SNI and for `explain`. */
struct policy_match {
	const char *name; /* the name that matched (query name, fqdn or an alt name), or NULL */
	enum policy_host_kind host_kind;
	enum policy_port_kind port_kind;
};

/*
 * Returns the rule that applies to Q by the contract's precedence, or NULL if
 * none does (the connection is left alone); with a floor (policy_set_floor()),
 * the floor rule decides between the two tables' matches. M, if not NULL, is
 * filled in.
 * Lock-free; cost independent of the number of rules for exact names and
 * addresses, O(labels) for suffixes, O(distinct prefix lengths) for CIDRs.
 */
const struct policy_rule *policy_match(const struct policy *p, const struct policy_query *q,
				       struct policy_match *m);

/*
 * Every rule that matches Q, most specific first (the first is what
 * policy_match() returns). Writes at most MAX pointers to OUT and returns the
 * total number of matching rules.
 */
size_t policy_match_all(const struct policy *p, const struct policy_query *q,
			const struct policy_rule **out, size_t max);

/* ---- the system policy (system.c) ---------------------------------------------------- */

/*
 * Whether the file PATH may hold the system policy: a regular file (not a
 * symbolic link) owned by root and writable by no one else, in a directory
 * with the same properties, under directories only root can change (a
 * sticky directory such as /tmp counts). Returns 0; -ENOENT (WHY left empty)
 * or another -errno if PATH cannot be examined; -EPERM if it must not be
 * trusted. WHY gets the reason ("file /etc/tlsshim/policy is group-writable
 * (mode 0664)"). stat() only; the common case, no file, costs one lstat() and
 * calls nothing else.
 */
int policy_file_trusted(const char *path, char *why, size_t len);

/*
 * Makes P skip the readability check of cert/key/CA files at load (call it
 * before adding rules): for the system policy, read by every process, whose
 * files (a client key) may be readable by some users only. A connection whose
 * rule names a file this process cannot read then fails closed.
 */
void policy_defer_file_checks(struct policy *p);

/*
 * Makes P check each cert/key/CA file with one access(R_OK) at load instead
 * of stat() + access() (call it before adding rules): for the library, which
 * loads the policy before main in every process that inherits it. A missing
 * or unreadable file still fails the load. Not seen this way: a directory
 * where a file belongs, a CA directory without search permission; the full
 * check (`tlsshim check`, `tlsshim run`) reports those, and a connection
 * whose rule names one fails closed.
 */
void policy_quick_file_checks(struct policy *p);

/*
 * Puts FLOOR (the system policy) under P (a process's own policy); both must
 * be finished, and FLOOR must outlive P (policy_free(P) does not free it).
 * From then on policy_match(P) decides by the floor rule (policy_floor_wins,
 * policy_floor_merged), policy_has_dir() and policy_exact_names() cover both
 * tables, and P's rule ids follow FLOOR's, then those of the combined rules
 * (ids stay unique across all). policy_count(),
 * policy_rule_at() and policy_match_all() still see P's own rules only.
 * Returns 0, or -1 (not finished, already layered, out of memory).
 */
int policy_set_floor(struct policy *p, const struct policy *floor);

/* The table under P (policy_set_floor()), or NULL. */
const struct policy *policy_floor(const struct policy *p);

/*
 * The floor rule, for one connection matched by FLOOR_RULE in the system
 * policy and by OWN in the process's own (either may be NULL): whether the
 * system rule applies. The process's rule applies only when it is stricter:
 * deny over tls over auto over plain. With the same action the system rule
 * applies, so its checks (ca, name, insecure, ciphers...) cannot be changed
 * by the process; it may only add to them (policy_floor_merged).
 */
int policy_floor_wins(const struct policy_rule *floor_rule, const struct policy_rule *own);

/*
 * When the system rule applies over a process's rule with the same action
 * (tls, auto), the process's rule may still add what weakens no check: a
 * client certificate (cert, key) or a client-ca with its allow list where the
 * system rule has none, pins where it has none, a higher min-version, ALPN
 * where it has none. This returns that combined rule (FLOOR_RULE with those
 * options; its source is FLOOR_RULE's, its id its own), or NULL when OWN adds
 * nothing; policy_match() returns it in place of FLOOR_RULE. P is the layered
 * table (policy_set_floor()).
 */
const struct policy_rule *policy_floor_merged(const struct policy *p,
					      const struct policy_rule *floor_rule,
					      const struct policy_rule *own);

/*
 * Writes the normalized form of R ("connect *.example.com:443 tls ca=/x") to
 * BUF (always NUL-terminated). Returns the length it needed, like snprintf.
 */
int policy_format_rule(const struct policy_rule *r, char *buf, size_t len);

/* Short words for enums: "connect", "tls", "exact name", "port range", ... */
const char *policy_dir_str(enum policy_dir d);
const char *policy_action_str(enum policy_action a);
const char *policy_host_kind_str(enum policy_host_kind k);
const char *policy_port_kind_str(enum policy_port_kind k);
const char *policy_opt_str(enum policy_opt o); /* "ca", "client-ca", ... */

/*
 * The part of CANON after NAME and a dot, when CANON could be the relative
 * NAME (no trailing dot) completed with a search domain, compared without
 * case; else NULL. The cheap half of policy_search_completion().
 */
const char *policy_search_domain(const char *name, const char *canon);

/*
 * CANON, the resolver's canonical name for NAME, if it is NAME (relative: no
 * trailing dot) completed with one of the search domains DOMAINS
 * (NULL-terminated, at most MAX; resolv.conf `search`), compared without case
 * and trailing dots; else NULL. An alias's target that happens to start with
 * NAME ("db" -> "db.elsewhere.example") is no completion.
 */
const char *policy_search_completion(const char *name, const char *canon,
				     const char *const *domains, size_t max);

/*
 * Parses "HOST:PORT" as `explain` takes it (HOST a name, an IPv4 address or a
 * bracketed IPv6 address) into Q's name or address and port. Returns 0, or -1
 * with a message in ERR. A name is written lower-case, without a trailing dot,
 * to NAMEBUF and Q->name points to it (Q->family 0); an address sets
 * Q->family and Q->addr (Q->name NULL). Q->dir and the alt names are untouched.
 */
int policy_parse_endpoint(const char *s, struct policy_query *q, char *namebuf, size_t namelen,
			  char *err, size_t errlen);

/* Appends a diagnostic (the message is formatted); used by the parser and callers. */
void policy_diag_add(struct policy_diags *d, const char *source, unsigned line, unsigned col,
		     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void policy_diags_free(struct policy_diags *d);

#endif
