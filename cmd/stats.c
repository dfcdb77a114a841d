/*
 * stats.c - `tlsshim stats`: prints the counters of wrapped processes
 * (stats_read.c reads them) as a table of processes, one process by rule, or
 * the Prometheus text exposition format.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "env.h"
#include "stats_read.h"
#include "util.h"

static const char *const fail_names[STATS_FAIL_N] = {"verify", "timeout", "not_tls",
						     "alert",  "closed",  "other"};
static const char *const ver_names[STATS_VER_N] = {"TLSv1.2", "TLSv1.3", "other"};

/* ---- the table ------------------------------------------------------------------------ */

static void human_bytes(uint64_t n, char *buf, size_t len)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	double v = (double)n;
	int u = 0;

	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)n);
	else
		snprintf(buf, len, "%.1f %s", v, unit[u]);
}

static void utc(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t == 0 || gmtime_r(&tt, &tm) == NULL) {
		snprintf(buf, len, "-");
		return;
	}
	if (strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(buf, len, "-");
}

/* "2027-01-12 (37 days)", "2026-12-01 (EXPIRED)", or "-". */
static void expiry(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t, now = time(NULL);
	struct tm tm;
	char day[16];

	if (t == 0 || gmtime_r(&tt, &tm) == NULL) {
		snprintf(buf, len, "-");
		return;
	}
	if (strftime(day, sizeof(day), "%Y-%m-%d", &tm) == 0) {
		snprintf(buf, len, "-");
		return;
	}
	if (t <= now)
		snprintf(buf, len, "%s (EXPIRED)", day);
	else
		snprintf(buf, len, "%s (%lld days)", day, (long long)((t - now) / 86400));
}

static void resumed_rate(uint64_t full, uint64_t resumed, char *buf, size_t len)
{
	if (full + resumed == 0)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.0f%%", 100.0 * (double)resumed / (double)(full + resumed));
}

static uint64_t failed_sum(const struct rule_snap *r)
{
	uint64_t n = 0;

	for (int i = 0; i < STATS_FAIL_N; i++)
		n += r->failed[i];
	return n;
}

static void print_table(const struct snaps *s)
{
	printf("%-8s %-16s %6s %8s %7s %7s %8s %10s %10s  %s\n", "PID", "COMMAND", "OPEN", "TOTAL",
	       "FAILED", "DENIED", "RESUMED", "IN", "OUT", "NEAREST CERT EXPIRY");
	for (size_t i = 0; i < s->n; i++) {
		const struct proc_snap *p = &s->v[i];
		uint64_t conns = 0, failed = 0, denied = 0, full = 0, res = 0, in = 0, outb = 0;
		int64_t open = 0, nearest = 0;
		char rate[16], bin[32], bout[32], exp[48];

		for (uint32_t j = 0; j < p->n_rules; j++) {
			const struct rule_snap *r = &p->rules[j];

			conns += r->conns;
			open += r->open;
			failed += failed_sum(r);
			denied += r->denied;
			full += r->hs_full;
			res += r->hs_resumed;
			in += r->bytes_in;
			outb += r->bytes_out;
			if (r->not_after != 0 && (nearest == 0 || r->not_after < nearest))
				nearest = r->not_after;
		}
		resumed_rate(full, res, rate, sizeof(rate));
		human_bytes(in, bin, sizeof(bin));
		human_bytes(outb, bout, sizeof(bout));
		expiry(nearest, exp, sizeof(exp));
		printf("%-8d %-16s %6lld %8llu %7llu %7llu %8s %10s %10s  %s\n", p->pid, p->comm,
		       (long long)open, (unsigned long long)conns, (unsigned long long)failed,
		       (unsigned long long)denied, rate, bin, bout, exp);
	}
}

static void print_process(const struct proc_snap *p)
{
	char when[40], rate[16], bin[32], bout[32], exp[48];

	utc(p->created, when, sizeof(when));
	printf("process %d (%s), counting since %s\n", p->pid, p->comm, when);
	for (uint32_t j = 0; j < p->n_rules; j++) {
		const struct rule_snap *r = &p->rules[j];
		int i;

		printf("\nrule %s%s\n", r->text, r->system ? "  (system policy)" : "");
		printf("  connections  %llu total, %lld open, %llu denied, %llu plain\n",
		       (unsigned long long)r->conns, (long long)r->open,
		       (unsigned long long)r->denied, (unsigned long long)r->plain);
		resumed_rate(r->hs_full, r->hs_resumed, rate, sizeof(rate));
		printf("  handshakes   %llu full, %llu resumed (%s)\n",
		       (unsigned long long)r->hs_full, (unsigned long long)r->hs_resumed, rate);
		printf("  failed       %llu:", (unsigned long long)failed_sum(r));
		for (i = 0; i < STATS_FAIL_N; i++)
			printf(" %s %llu%s", fail_names[i], (unsigned long long)r->failed[i],
			       i + 1 < STATS_FAIL_N ? "," : "");
		printf("\n  versions    ");
		for (i = 0; i < STATS_VER_N; i++)
			if (r->version[i] != 0 || i < STATS_VER_OTHER)
				printf(" %s %llu", ver_names[i], (unsigned long long)r->version[i]);
		printf("\n  ciphers     ");
		if (r->n_cipher == 0)
			printf(" -");
		for (i = 0; i < r->n_cipher; i++)
			printf(" %s %llu%s", r->cipher[i].name, (unsigned long long)r->cipher[i].n,
			       i + 1 < r->n_cipher ? "," : "");
		if (r->cipher_other != 0)
			printf(", other %llu", (unsigned long long)r->cipher_other);
		human_bytes(r->bytes_in, bin, sizeof(bin));
		human_bytes(r->bytes_out, bout, sizeof(bout));
		printf("\n  bytes        in %s (%llu), out %s (%llu)\n", bin,
		       (unsigned long long)r->bytes_in, bout, (unsigned long long)r->bytes_out);
		if (r->not_after != 0) {
			expiry(r->not_after, exp, sizeof(exp));
			utc(r->loaded_at, when, sizeof(when));
			printf("  certificate  %s, expires %s, loaded %s (%llu load%s)\n",
			       r->subject, exp, when, (unsigned long long)r->loads,
			       r->loads == 1 ? "" : "s");
		}
	}
}

/* ---- Prometheus ------------------------------------------------------------------------ */

/* A label value: backslash, double quote and newline escaped (the exposition format). */
static void put_label(FILE *f, const char *name, const char *v)
{
	fprintf(f, "%s=\"", name);
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fprintf(f, "\\%c", *v);
		else if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
	fputc('"', f);
}

static void put_proc_labels(FILE *f, const struct proc_snap *p)
{
	fprintf(f, "pid=\"%d\",", p->pid);
	put_label(f, "command", p->comm);
}

static void put_rule_labels(FILE *f, const struct proc_snap *p, const struct rule_snap *r)
{
	put_proc_labels(f, p);
	fputc(',', f);
	put_label(f, "rule", r->text);
	fprintf(f, ",direction=\"%s\"", r->dir == 0 ? "connect" : "accept");
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One sample per rule of every process for which COND holds: NAME{labels} EXPR. */
#define PER_RULE_IF(f, s, name, expr, cond)                                 \
	do {                                                                \
		for (size_t i_ = 0; i_ < (s)->n; i_++) {                    \
			const struct proc_snap *p_ = &(s)->v[i_];           \
			for (uint32_t j_ = 0; j_ < p_->n_rules; j_++) {     \
				const struct rule_snap *r = &p_->rules[j_]; \
				if (!(cond))                                \
					continue;                           \
				fprintf(f, "%s{", name);                    \
				put_rule_labels(f, p_, r);                  \
				fprintf(f, "} %lld\n", (long long)(expr));  \
			}                                                   \
		}                                                           \
	} while (0)
#define PER_RULE(f, s, name, expr) PER_RULE_IF(f, s, name, expr, 1)

static uint64_t count_failed(const struct rule_snap *r, int k)
{
	return r->failed[k];
}

static uint64_t count_handshakes(const struct rule_snap *r, int k)
{
	return k ? r->hs_resumed : r->hs_full;
}

static uint64_t count_version(const struct rule_snap *r, int k)
{
	return r->version[k];
}

/*
 * One sample per rule of every process and per value of LABEL (VALUES[0..N)):
 * NAME{labels,LABEL="VALUES[k]"} COUNT(r, k).
 */
static void per_rule_by(FILE *f, const struct snaps *s, const char *name, const char *label,
			const char *const *values, int n,
			uint64_t (*count)(const struct rule_snap *r, int k))
{
	for (size_t i = 0; i < s->n; i++)
		for (uint32_t j = 0; j < s->v[i].n_rules; j++)
			for (int k = 0; k < n; k++) {
				const struct rule_snap *r = &s->v[i].rules[j];

				fprintf(f, "%s{", name);
				put_rule_labels(f, &s->v[i], r);
				fprintf(f, ",%s=\"%s\"} %llu\n", label, values[k],
					(unsigned long long)count(r, k));
			}
}

static void put_ciphers(FILE *f, const struct snaps *s)
{
	for (size_t i = 0; i < s->n; i++)
		for (uint32_t j = 0; j < s->v[i].n_rules; j++) {
			const struct rule_snap *r = &s->v[i].rules[j];

			for (int k = 0; k <= r->n_cipher; k++) {
				if (k == r->n_cipher && r->cipher_other == 0)
					break;
				fputs("tlsshim_tls_cipher_total{", f);
				put_rule_labels(f, &s->v[i], r);
				fputc(',', f);
				put_label(f, "cipher",
					  k < r->n_cipher ? r->cipher[k].name : "other");
				fprintf(f, "} %llu\n",
					(unsigned long long)(k < r->n_cipher ? r->cipher[k].n
									     : r->cipher_other));
			}
		}
}

/* The two certificate gauges of the rules that have a certificate. */
static void put_certificates(FILE *f, const struct snaps *s)
{
	family(f, "tlsshim_certificate_expiry_timestamp_seconds", "gauge",
	       "notAfter of the rule's certificate chain (the certificate that expires first).");
	for (size_t i = 0; i < s->n; i++)
		for (uint32_t j = 0; j < s->v[i].n_rules; j++) {
			const struct rule_snap *r = &s->v[i].rules[j];

			if (r->not_after == 0)
				continue;
			fputs("tlsshim_certificate_expiry_timestamp_seconds{", f);
			put_rule_labels(f, &s->v[i], r);
			fputc(',', f);
			put_label(f, "subject", r->subject);
			fprintf(f, "} %lld\n", (long long)r->not_after);
		}
	family(f, "tlsshim_certificate_loaded_timestamp_seconds", "gauge",
	       "When the rule's certificate was last (re)loaded.");
	PER_RULE_IF(f, s, "tlsshim_certificate_loaded_timestamp_seconds", r->loaded_at,
		    r->not_after != 0);
}

static void print_prometheus(FILE *f, const struct snaps *s)
{
	static const char *const resumed[] = {"false", "true"};

	family(f, "tlsshim_process_start_time_seconds", "gauge",
	       "When the process made its statistics file (its first wrapped connection).");
	for (size_t i = 0; i < s->n; i++) {
		fputs("tlsshim_process_start_time_seconds{", f);
		put_proc_labels(f, &s->v[i]);
		fprintf(f, "} %lld\n", (long long)s->v[i].created);
	}
	family(f, "tlsshim_connections_total", "counter",
	       "Connections a tls or auto rule took over.");
	PER_RULE(f, s, "tlsshim_connections_total", r->conns);
	family(f, "tlsshim_connections_open", "gauge",
	       "Connections taken over by this process and not yet closed.");
	PER_RULE(f, s, "tlsshim_connections_open", r->open);
	family(f, "tlsshim_connections_denied_total", "counter",
	       "Connections refused by a deny rule.");
	PER_RULE(f, s, "tlsshim_connections_denied_total", r->denied);
	family(f, "tlsshim_connections_plain_total", "counter",
	       "Connections passed in cleartext (a plain rule, or a cleartext client of auto).");
	PER_RULE(f, s, "tlsshim_connections_plain_total", r->plain);
	family(f, "tlsshim_connections_failed_total", "counter",
	       "Wrapped connections that failed, by reason.");
	per_rule_by(f, s, "tlsshim_connections_failed_total", "reason", fail_names, STATS_FAIL_N,
		    count_failed);
	family(f, "tlsshim_handshakes_total", "counter",
	       "Completed TLS handshakes, full or resuming a session.");
	per_rule_by(f, s, "tlsshim_handshakes_total", "resumed", resumed, 2, count_handshakes);
	family(f, "tlsshim_tls_version_total", "counter",
	       "Completed handshakes by negotiated TLS version.");
	per_rule_by(f, s, "tlsshim_tls_version_total", "version", ver_names, STATS_VER_N,
		    count_version);
	family(f, "tlsshim_tls_cipher_total", "counter",
	       "Completed handshakes by negotiated cipher suite.");
	put_ciphers(f, s);
	family(f, "tlsshim_received_bytes_total", "counter",
	       "Plaintext bytes the program read from wrapped connections.");
	PER_RULE(f, s, "tlsshim_received_bytes_total", r->bytes_in);
	family(f, "tlsshim_sent_bytes_total", "counter",
	       "Plaintext bytes the program wrote to wrapped connections.");
	PER_RULE(f, s, "tlsshim_sent_bytes_total", r->bytes_out);
	put_certificates(f, s);
}

/* Writes the exposition to PATH atomically: a temporary file beside it, fsync, rename. */
static int write_prometheus(const char *path, const struct snaps *s)
{
	char *tmp = NULL;
	FILE *f;
	int fd, rc = -1;

	if (asprintf(&tmp, "%s.%d.tmp", path, (int)getpid()) < 0) {
		cmd_err("out of memory");
		return -1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
		cmd_err("cannot create %s: %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		free(tmp);
		return -1;
	}
	print_prometheus(f, s);
	if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
		cmd_err("cannot write %s: %s", tmp, strerror(errno));
		(void)fclose(f); /* the error is reported */
		goto out;
	}
	if (fclose(f) != 0) {
		cmd_err("cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (rename(tmp, path) != 0) {
		cmd_err("cannot rename %s to %s: %s", tmp, path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (rc != 0)
		unlink(tmp);
	free(tmp);
	return rc;
}

int cmd_stats(int argc, char **argv)
{
	const char *output = NULL;
	int prom = 0, pid = 0, rc = CMD_EXIT_OK;
	struct snaps s = {0};

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--prometheus") == 0) {
			prom = 1;
		} else if (strcmp(argv[i], "--output") == 0 || strcmp(argv[i], "-o") == 0) {
			if (i + 1 >= argc || argv[i + 1][0] == '\0')
				return cmd_usage_error("%s needs a file name", argv[i]);
			output = argv[++i];
		} else if (stats_pid_of(argv[i]) > 0 && pid == 0) {
			pid = stats_pid_of(argv[i]);
		} else {
			return cmd_usage_error("stats: unexpected '%s' (usage: tlsshim stats [PID] "
					       "[--prometheus [--output FILE]])",
					       argv[i]);
		}
	}
	if (output != NULL && !prom)
		return cmd_usage_error("--output goes with --prometheus");
	stats_read_all(pid, &s);
	if (prom) {
		if (output != NULL)
			rc = write_prometheus(output, &s) == 0 ? CMD_EXIT_OK : 1;
		else
			print_prometheus(stdout, &s);
	} else if (pid != 0) {
		if (s.n == 0) {
			cmd_err(
			    "no statistics for process %d: it is not running under tlsshim, has "
			    "not wrapped a connection yet, has " ENV_STATS "=" ENV_STATS_OFF
			    ", or its file "
			    "is in a directory this user cannot read",
			    pid);
			rc = 1;
		} else {
			print_process(&s.v[0]);
		}
	} else {
		print_table(&s);
	}
	stats_snaps_free(&s);
	return rc;
}
