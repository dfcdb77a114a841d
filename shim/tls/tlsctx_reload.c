/*
 * tlsctx_reload.c - one SSL_CTX per (rule, role), built lazily (tlsctx.c),
 * rebuilt when the rule's files change on disk; the certificates' expiry
 * warnings and what is reported to the host about them.
 *
 * Rotation: sessions ask for their rule's SSL_CTX; at most once a second that
 * stats the rule's files (cert, key, ca, client-ca). On a change it builds a
 * new SSL_CTX from one version of them (symbolic links resolved first, so
 * Kubernetes' `..data` swap cannot pair a key of one version with a
 * certificate of another: ctx_build_snapshot()); if that fails (a
 * half-written file, a key that does not match the cert) the last good one
 * stays and one warning per change is logged.
 * SSL_CTX is reference counted, so live sessions keep the one they started
 * with. Server ticket keys are carried over so clients resume across a
 * rotation.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/err.h>

#include "clock.h"
#include "tls_int.h"

#define CTX_FILES       4 /* cert, key, ca, client-ca */
#define CTX_RECHECK_NS  1000000000LL
#define CTX_BUILD_TRIES 3 /* reads of a rule's files that were replaced meanwhile */

struct file_stamp {
	int err; /* stat()'s errno, or 0 */
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};

/* The certificate of one source (our chain, the trust anchors) that expires first. */
struct expiry {
	int64_t not_after; /* Unix time; 0: none loaded from this source */
	const char *what;  /* "cert", "ca", "client-ca" */
	const char *path;
	char subject[160];
};

#define EXPIRY_SOURCES   2     /* our chain; the trust anchors from a ca/client-ca file */
#define EXPIRY_RECHECK_S 86400 /* a process that runs for months warns again each day */

struct ctx_entry {
	struct ctx_entry *next;
	const struct policy_rule *rule;
	enum tls_role role;
	SSL_CTX *ctx; /* the last good one, or NULL if the files never loaded */
	int tried;    /* a build was attempted */
	long long checked_ns;
	struct file_stamp stamp[CTX_FILES]; /* as at the last build attempt */
	char err[256];                      /* why the last build failed */
	struct expiry exp[EXPIRY_SOURCES];  /* of the current SSL_CTX */
	int64_t exp_next;                   /* when to look at the expiry dates again */
};

static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ctx_entry *ctx_list;

static void stamp_files(const struct policy_rule *r, struct file_stamp st[CTX_FILES])
{
	const char *paths[CTX_FILES] = {r->opt.cert, r->opt.key, r->opt.ca, r->opt.client_ca};
	struct stat sb;
	int i;

	memset(st, 0, sizeof(*st) * CTX_FILES);
	for (i = 0; i < CTX_FILES; i++) {
		if (paths[i] == NULL)
			continue;
		if (stat(paths[i], &sb) != 0) {
			st[i].err = errno;
			continue;
		}
		st[i].dev = sb.st_dev;
		st[i].ino = sb.st_ino;
		st[i].size = sb.st_size;
		st[i].mtime = sb.st_mtim;
	}
}

/* Whether the first N stamps of A and B are the same. */
static int stamps_equal(const struct file_stamp *a, const struct file_stamp *b, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		if (a[i].err != b[i].err || a[i].dev != b[i].dev || a[i].ino != b[i].ino ||
		    a[i].size != b[i].size || a[i].mtime.tv_sec != b[i].mtime.tv_sec ||
		    a[i].mtime.tv_nsec != b[i].mtime.tv_nsec)
			return 0;
	}
	return 1;
}

/* The rule's files (as stamp_files() orders them) with every symbolic link resolved. */
static void resolve_files(const struct policy_rule *r, char *out[CTX_FILES])
{
	const char *paths[CTX_FILES] = {r->opt.cert, r->opt.key, r->opt.ca, r->opt.client_ca};
	int i;

	for (i = 0; i < CTX_FILES; i++)
		out[i] = paths[i] != NULL ? realpath(paths[i], NULL) : NULL;
}

static int resolved_equal(char *const a[CTX_FILES], char *const b[CTX_FILES])
{
	int i;

	for (i = 0; i < CTX_FILES; i++) {
		if ((a[i] == NULL) != (b[i] == NULL))
			return 0;
		if (a[i] != NULL && strcmp(a[i], b[i]) != 0)
			return 0;
	}
	return 1;
}

/*
 * tlsctx_build() from one version of the rule's files. Kubernetes (Secret and
 * projected volumes, cert-manager's csi driver) updates them by writing a new
 * timestamped directory and swapping the `..data` symbolic link to it; each
 * user-visible name (tls.crt) is a link through `..data`, and the old
 * directory is removed after the swap. Opening cert, key and CA one after the
 * other through those links could read a key of one version and a
 * certificate of the other. So the links are resolved first, twice (a swap
 * between resolving the cert and the key shows as a difference), and every
 * file is read through its resolved path: a directory whose files no longer
 * change. *MOVED is set when the links changed before the build (nothing is
 * read), or during a build that failed (the old directory went away): the
 * caller reads the new version. Without links this is tlsctx_build() on the
 * paths as given.
 */
static SSL_CTX *ctx_build_snapshot(const struct policy_rule *rule, enum tls_role role, SSL_CTX *old,
				   char *err, size_t errlen, int *moved)
{
	char *before[CTX_FILES], *after[CTX_FILES];
	struct policy_rule r = *rule;
	SSL_CTX *n;
	int i;

	resolve_files(rule, before);
	resolve_files(rule, after);
	*moved = !resolved_equal(before, after);
	for (i = 0; i < CTX_FILES; i++)
		free(after[i]);
	if (*moved) {
		n = NULL;
		goto out;
	}
	/* Nothing keeps a pointer to R: callbacks find the rule through the session. */
	if (before[0] != NULL)
		r.opt.cert = before[0];
	if (before[1] != NULL)
		r.opt.key = before[1];
	if (before[2] != NULL)
		r.opt.ca = before[2];
	if (before[3] != NULL)
		r.opt.client_ca = before[3];
	n = tlsctx_build(&r, role, old, err, errlen);
	if (n == NULL) {
		resolve_files(rule, after);
		*moved = !resolved_equal(before, after);
		for (i = 0; i < CTX_FILES; i++)
			free(after[i]);
	}
out:
	if (*moved)
		snprintf(err, errlen, "the files were replaced while being read");
	for (i = 0; i < CTX_FILES; i++)
		free(before[i]);
	return n;
}

static const char *rule_text(const struct policy_rule *r)
{
	return r->text != NULL ? r->text : "?";
}

/* NOT_AFTER of X as Unix time, or 0 if it cannot be read. */
static int64_t cert_not_after(const X509 *x)
{
	struct tm tm;

	if (!ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm))
		return 0;
	return (int64_t)timegm(&tm);
}

/* Keeps X in EX if it expires before what EX holds. */
static void expiry_note(struct expiry *ex, X509 *x)
{
	int64_t t = cert_not_after(x);

	if (t == 0 || (ex->not_after != 0 && t >= ex->not_after))
		return;
	ex->not_after = t;
	X509_NAME_oneline(X509_get_subject_name(x), ex->subject, sizeof(ex->subject));
}

/*
 * Records in E the certificates of CTX that expire first: of our chain
 * (cert=), and of the trust anchors read from a ca=/client-ca= file (a
 * directory's certificates are read only when a handshake needs them, and the
 * system store is the system's to keep).
 */
static void expiry_collect(struct ctx_entry *e, SSL_CTX *ctx)
{
	const struct policy_opts *o = &e->rule->opt;
	const char *trust = e->role == TLS_ROLE_SERVER ? o->client_ca : o->ca;
	STACK_OF(X509) *chain = NULL;
	STACK_OF(X509_OBJECT) * objs;
	X509 *leaf = SSL_CTX_get0_certificate(ctx);
	struct stat st;
	int i;

	memset(e->exp, 0, sizeof(e->exp));
	e->exp[0].what = "cert";
	e->exp[0].path = o->cert;
	e->exp[1].what = e->role == TLS_ROLE_SERVER ? "client-ca" : "ca";
	e->exp[1].path = trust;
	if (leaf != NULL) {
		expiry_note(&e->exp[0], leaf);
		if (SSL_CTX_get0_chain_certs(ctx, &chain) && chain != NULL)
			for (i = 0; i < sk_X509_num(chain); i++)
				expiry_note(&e->exp[0], sk_X509_value(chain, i));
	}
	if (trust != NULL && stat(trust, &st) == 0 && S_ISREG(st.st_mode)) {
		objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx));
		for (i = 0; i < sk_X509_OBJECT_num(objs); i++) {
			X509 *x = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));

			if (x != NULL)
				expiry_note(&e->exp[1], x);
		}
	}
	e->exp_next = 0;
	ERR_clear_error();
}

/*
 * An error line for each source whose certificate has expired, a warn line
 * for each that expires within the rule's expiry-warn days; again every day
 * for as long as the process runs (looked at when a connection is made).
 */
static void expiry_check(struct ctx_entry *e)
{
	int64_t now = (int64_t)time(NULL), left;
	unsigned days = e->rule->opt.expiry_warn_days;
	char when[32];
	struct tm tm;
	time_t t;
	int i;

	if (now < e->exp_next)
		return;
	e->exp_next = now + EXPIRY_RECHECK_S;
	for (i = 0; i < EXPIRY_SOURCES; i++) {
		const struct expiry *x = &e->exp[i];

		if (x->not_after == 0)
			continue;
		t = (time_t)x->not_after;
		if (gmtime_r(&t, &tm) == NULL)
			continue;
		if (strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
			continue;
		left = x->not_after - now;
		if (left <= 0)
			tls_log(
			    LOG_LVL_ERROR,
			    "rule \"%s\": %s %s: certificate %s expired on %s; peers will refuse "
			    "it",
			    rule_text(e->rule), x->what, x->path, x->subject, when);
		else if (days > 0 && left <= (int64_t)days * 86400)
			tls_log(LOG_LVL_WARN,
				"rule \"%s\": %s %s: certificate %s expires in %s%lld day%s, on %s",
				rule_text(e->rule), x->what, x->path, x->subject,
				left < 86400 ? "less than " : "",
				(long long)(left < 86400 ? 1 : left / 86400),
				left / 86400 == 1 || left < 86400 ? "" : "s", when);
	}
}

/*
 * Tells the host about the certificates CTX now serves for E's rule: the one
 * of the chain that expires first (statistics).
 */
static void cert_report(const struct ctx_entry *e, SSL_CTX *ctx)
{
	X509 *leaf = SSL_CTX_get0_certificate(ctx), *first = leaf;
	STACK_OF(X509) *chain = NULL;
	int64_t when = leaf != NULL ? cert_not_after(leaf) : 0;
	char subject[256] = "";
	int i;

	if (leaf == NULL || tls_host.cert_loaded == NULL)
		return;
	if (SSL_CTX_get0_chain_certs(ctx, &chain) && chain != NULL) {
		for (i = 0; i < sk_X509_num(chain); i++) {
			X509 *x = sk_X509_value(chain, i);
			int64_t t = cert_not_after(x);

			if (t != 0 && (when == 0 || t < when)) {
				when = t;
				first = x;
			}
		}
	}
	X509_NAME_oneline(X509_get_subject_name(first), subject, sizeof(subject));
	tls_host.cert_loaded(e->rule, subject, when);
	ERR_clear_error();
}

/* Builds or rebuilds E's SSL_CTX if due. Called with ctx_lock held. */
static void ctx_refresh(struct ctx_entry *e)
{
	struct file_stamp st[CTX_FILES];
	long long now = clock_ns();
	char why[sizeof(e->err)];
	int trust_changed, tries, moved;
	SSL_CTX *n;

	if (e->tried && now - e->checked_ns < CTX_RECHECK_NS)
		return;
	e->checked_ns = now;
	if (e->ctx != NULL)
		expiry_check(e);
	/* Stat before reading: a change during the build shows up at the next check. */
	stamp_files(e->rule, st);
	if (e->tried && stamps_equal(st, e->stamp, CTX_FILES))
		return;
	for (tries = 1;; tries++) {
		/* ca is index 2, client-ca 3: see stamp_files(). */
		trust_changed = !stamps_equal(st + 2, e->stamp + 2, 2);
		/*
		 * Server ticket keys carry over only when the trust anchors are
		 * unchanged: a resumed session skips client certificate verification.
		 */
		n = ctx_build_snapshot(e->rule, e->role, trust_changed ? NULL : e->ctx, why,
				       sizeof(why), &moved);
		if (!moved || tries == CTX_BUILD_TRIES)
			break;
		/* Swapped to a new version while we read (Kubernetes' ..data): read that one. */
		stamp_files(e->rule, st);
	}
	memcpy(e->stamp, st, sizeof(st));
	if (n == NULL) {
		memcpy(e->err, why, sizeof(why));
		if (e->ctx != NULL)
			tls_log(LOG_LVL_WARN, "rule \"%s\": keeping the previous certificates: %s",
				rule_text(e->rule), why);
		e->tried = 1;
		return;
	}
	if (e->ctx != NULL) {
		tls_log(LOG_LVL_INFO, "rule \"%s\": certificates reloaded", rule_text(e->rule));
		SSL_CTX_free(e->ctx);
		/* Sessions verified under the old trust anchors must not skip the new ones. */
		if (trust_changed && e->role == TLS_ROLE_CLIENT)
			tlsctx_session_forget(e->rule->id);
	}
	e->ctx = n;
	e->err[0] = '\0';
	e->tried = 1;
	cert_report(e, n);
	expiry_collect(e, n);
	expiry_check(e);
}

/*
 * Returns a new reference to the current SSL_CTX for (RULE, ROLE), building
 * it on first use and rebuilding it when the rule's files changed (checked at
 * most once a second). NULL with a message in ERR if the rule's files never
 * loaded. Thread-safe (one mutex; builds are rare). The caller frees the
 * reference with SSL_CTX_free().
 */
SSL_CTX *tlsctx_get(const struct policy_rule *rule, enum tls_role role, char *err, size_t errlen)
{
	struct ctx_entry *e;
	SSL_CTX *ctx = NULL;

	pthread_mutex_lock(&ctx_lock);
	for (e = ctx_list; e != NULL; e = e->next) {
		if (e->rule == rule && e->role == role)
			break;
	}
	if (e == NULL) {
		e = calloc(1, sizeof(*e));
		if (e == NULL) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		e->rule = rule;
		e->role = role;
		e->next = ctx_list;
		ctx_list = e;
	}
	ctx_refresh(e);
	if (e->ctx == NULL) {
		snprintf(err, errlen, "%s", e->err[0] != '\0' ? e->err : "no TLS context");
		goto out;
	}
	if (SSL_CTX_up_ref(e->ctx))
		ctx = e->ctx;
	else
		snprintf(err, errlen, "cannot reference SSL_CTX");
out:
	pthread_mutex_unlock(&ctx_lock);
	ERR_clear_error();
	return ctx;
}
