/*
 * test_policy_mem.c - the table's arena (policy/mem.c) and tables built in the
 * caller's memory: alignment, zeroing, growth in place and by copy, spilling
 * past the first chunk, and a large policy in a small buffer that still
 * answers every look-up (ASan checks that releasing the table frees it all).
 */
#include <stdint.h>

#include "internal.h"
#include "test_policy_util.h"

Test(policy_mem, allocations_are_aligned_zeroed_and_distinct)
{
	static unsigned char buf[256];
	struct mem m;
	unsigned char *a, *b, *c;

	memset(buf, 0xa5, sizeof(buf));
	mem_init(&m, buf + 3, sizeof(buf) - 3); /* a misaligned buffer is aligned first */
	a = mem_alloc(&m, 5);
	b = mem_alloc(&m, 1);
	cr_assert(a != NULL && b != NULL);
	cr_expect_eq((uintptr_t)a % 16, 0, "first allocation aligned");
	cr_expect_eq((uintptr_t)b % 16, 0, "second allocation aligned");
	cr_expect(a >= buf && a + 5 <= buf + sizeof(buf), "first allocation in the buffer");
	cr_expect(b >= a + 5, "allocations do not overlap");
	for (int i = 0; i < 5; i++)
		cr_expect_eq(a[i], 0, "byte %d zeroed", i);
	/* Larger than what is left: a malloc()ed chunk, outside the buffer. */
	c = mem_alloc(&m, 1000);
	cr_assert_not_null(c);
	cr_expect(c < buf || c >= buf + sizeof(buf), "spilled to a chunk of its own");
	cr_expect_eq((uintptr_t)c % 16, 0, "chunk allocation aligned");
	for (int i = 0; i < 1000; i++)
		cr_assert_eq(c[i], 0, "chunk byte %d zeroed", i);
	mem_release(&m);
}

Test(policy_mem, grow_keeps_contents_in_place_or_by_copy)
{
	struct mem m;
	char *a, *g, *b, *h;

	mem_init(&m, NULL, 0);
	a = mem_alloc(&m, 8);
	cr_assert_not_null(a);
	memcpy(a, "abcdefg", 8);
	g = mem_grow(&m, a, 8, 40); /* the newest allocation grows where it is */
	cr_assert_eq(g, a, "grown in place");
	cr_expect_str_eq(g, "abcdefg");
	for (int i = 8; i < 40; i++)
		cr_expect_eq(g[i], 0, "new byte %d zeroed", i);
	b = mem_alloc(&m, 8);
	h = mem_grow(&m, g, 40, 80); /* no longer the newest: copied */
	cr_assert(h != NULL && h != g && h != b);
	cr_expect_str_eq(h, "abcdefg", "contents kept by the copy");
	cr_expect_eq(mem_grow(&m, h, 80, 10), h, "shrinking keeps the block");
	cr_expect_str_eq(mem_strndup(&m, "hello world", 5), "hello");
	cr_expect_str_eq(mem_strdup(&m, "tlsshim"), "tlsshim");
	/* Bigger than any chunk so far: one of its own. */
	cr_expect_not_null(mem_alloc(&m, 3u << 20));
	mem_release(&m);
}

Test(policy_mem, table_in_a_small_buffer_spills_and_answers)
{
	static unsigned char buf[512];
	struct policy_diags d = {0};
	struct policy *p = policy_new_in(buf, sizeof(buf));
	size_t len = 0, cap = 1 << 20, i;
	char *text = malloc(cap);

	cr_assert(p != NULL && text != NULL);
	cr_expect((unsigned char *)p >= buf && (unsigned char *)p < buf + sizeof(buf),
		  "the table itself is in the caller's buffer");
	for (i = 0; i < 2000; i++)
		len += (size_t)snprintf(text + len, cap - len, "connect host%zu.example:%zu tls\n",
					i, 1000 + i);
	cr_assert_eq(policy_add_text(p, "T", text, &d), 0);
	cr_assert_eq(policy_finish(p, &d), 0);
	cr_assert_eq(policy_count(p), 2000);
	for (i = 0; i < 2000; i += 97) {
		char name[64];
		struct policy_query q = {.dir = POLICY_CONNECT, .name = name, .port = 0};
		const struct policy_rule *r;

		snprintf(name, sizeof(name), "host%zu.example", i);
		q.port = (uint16_t)(1000 + i);
		q.family = AF_INET;
		r = policy_match(p, &q, NULL);
		cr_assert_not_null(r, "%s:%u has its rule", name, q.port);
		cr_expect_eq(r->id, i, "%s:%u matches rule %zu", name, q.port, i);
	}
	policy_free(p);
	free(text);
}

/*
 * Growing arrays must double, not grow by one: the arena keeps every old copy,
 * so growing by one costs O(n^2) memory (20,000 exact names once took 400 MB).
 */
Test(policy_mem, many_exact_names_stay_within_linear_memory)
{
	struct policy_diags d = {0};
	struct policy *p = policy_new();
	size_t len = 0, cap = 4 << 20, i, per_rule;
	char *text = malloc(cap);

	cr_assert(p != NULL && text != NULL);
	for (i = 0; i < 20000; i++)
		len += (size_t)snprintf(text + len, cap - len, "connect n%zu.example.com tls\n", i);
	cr_assert_eq(policy_add_text(p, "T", text, &d), 0);
	cr_assert_eq(policy_finish(p, &d), 0);
	per_rule = mem_size(&p->mem) / 20000;
	cr_expect_lt(per_rule, 1024, "arena bytes per exact-name rule: %zu", per_rule);
	policy_free(p);
	free(text);
}
