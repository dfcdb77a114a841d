/*
 * bench_policy.c - policy_match() cost by host class with 10 and 10,000 rules.
 * Look-ups must not grow with the table: exact names and addresses are one
 * hash probe, suffixes one per label, CIDRs one per prefix length present.
 * Prints ns/lookup for each class at both sizes and the 10k/10 ratio.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy.h"

#define N_QUERIES 1024 /* distinct queries cycled through, so one key does not stay cached */

enum { K_NAME, K_ADDR, K_SUFFIX, K_CIDR, K_COUNT };

static const char *const kind_names[K_COUNT] = {"exact name", "exact address", "suffix", "CIDR"};

struct qset {
	struct policy_query q[N_QUERIES];
	char names[N_QUERIES][64];
};

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Builds a table of N rules: a quarter each names, suffixes, addresses, CIDRs. */
static struct policy *build(unsigned n)
{
	size_t cap = (size_t)n * 64 + 64, o = 0;
	char *text = malloc(cap);
	struct policy_diags d = {0};
	struct policy *p = policy_new();
	unsigned i;

	if (!text || !p)
		goto fail;
	for (i = 0; i < n; i++) {
		unsigned k = i / 4;

		switch (i % 4) {
		case K_NAME:
			o += (size_t)snprintf(text + o, cap - o,
					      "connect host%u.example.com:443 tls\n", k);
			break;
		case K_SUFFIX:
			o += (size_t)snprintf(text + o, cap - o,
					      "connect *.zone%u.example.net plain\n", k);
			break;
		case K_ADDR:
			o += (size_t)snprintf(text + o, cap - o, "connect 10.%u.%u.1:443 tls\n",
					      k / 256, k % 256);
			break;
		default:
			/* Prefix lengths 16..24: up to nine tables probed per look-up. */
			o += (size_t)snprintf(text + o, cap - o, "connect %u.%u.%u.0/%u tls\n",
					      100 + k / 256, k % 256, 0u, 16 + k % 9);
			break;
		}
	}
	if (policy_add_text(p, "bench", text, &d) != 0 || policy_finish(p, &d) != 0) {
		fprintf(stderr, "bench: policy: %s:%u:%u: %s\n", d.n ? d.v[0].source : "",
			d.n ? d.v[0].line : 0, d.n ? d.v[0].col : 0, d.n ? d.v[0].msg : "?");
		goto fail;
	}
	free(text);
	return p;
fail:
	policy_diags_free(&d);
	policy_free(p);
	free(text);
	return NULL;
}

/* Queries of KIND that hit rules of a table of N rules, spread over all of them. */
static void make_queries(struct qset *s, int kind, unsigned n)
{
	unsigned per_kind = n / 4, i;

	memset(s, 0, sizeof(*s));
	for (i = 0; i < N_QUERIES; i++) {
		struct policy_query *q = &s->q[i];
		unsigned k = (i * 7919u) % per_kind;

		q->dir = POLICY_CONNECT;
		q->port = 443;
		switch (kind) {
		case K_NAME:
			snprintf(s->names[i], sizeof(s->names[i]), "host%u.example.com", k);
			q->name = s->names[i];
			break;
		case K_SUFFIX:
			snprintf(s->names[i], sizeof(s->names[i]), "api.v%u.zone%u.example.net", i,
				 k);
			q->name = s->names[i];
			break;
		case K_ADDR:
			q->family = AF_INET;
			q->addr[0] = 10;
			q->addr[1] = (unsigned char)(k / 256);
			q->addr[2] = (unsigned char)(k % 256);
			q->addr[3] = 1;
			break;
		default:
			q->family = AF_INET;
			q->addr[0] = (unsigned char)(100 + k / 256);
			q->addr[1] = (unsigned char)(k % 256);
			q->addr[2] = 0;
			q->addr[3] = (unsigned char)(1 + i % 200);
			break;
		}
	}
}

/* ns per policy_match() over S, run for about 0.3 s; -1 if a query misses. */
static double measure(const struct policy *p, const struct qset *s)
{
	unsigned long iters = 0, batch = 1 << 14, i;
	double t0, elapsed;
	const void *sink = NULL;

	for (i = 0; i < N_QUERIES; i++)
		if (!policy_match(p, &s->q[i], NULL))
			return -1;
	t0 = now_ns();
	do {
		for (i = 0; i < batch; i++)
			sink = policy_match(p, &s->q[i % N_QUERIES], NULL);
		iters += batch;
		elapsed = now_ns() - t0;
	} while (elapsed < 0.3e9);
	/* Keep the look-ups from being optimized away. */
	if (sink == (const void *)1)
		puts("");
	return elapsed / (double)iters;
}

int main(void)
{
	static const unsigned sizes[2] = {10, 10000};
	static struct qset set;
	double ns[2][K_COUNT];
	int s, k;

	for (s = 0; s < 2; s++) {
		struct policy *p = build(sizes[s]);

		if (!p)
			return 1;
		for (k = 0; k < K_COUNT; k++) {
			make_queries(&set, k, sizes[s]);
			ns[s][k] = measure(p, &set);
			if (ns[s][k] < 0) {
				fprintf(stderr, "bench: a %s query matched nothing\n",
					kind_names[k]);
				policy_free(p);
				return 1;
			}
		}
		policy_free(p);
	}
	printf("policy_match, ns/lookup\n");
	printf("%-14s %10s %12s %8s\n", "lookup", "10 rules", "10000 rules", "10k/10");
	for (k = 0; k < K_COUNT; k++)
		printf("%-14s %10.1f %12.1f %8.2f\n", kind_names[k], ns[0][k], ns[1][k],
		       ns[1][k] / ns[0][k]);
	return 0;
}
