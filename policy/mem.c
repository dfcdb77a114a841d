/*
 * mem.c - a table's memory: one arena per policy, released all at once.
 *
 * A table is built once and then only read, so its rules, strings and index
 * are carved front to back from chunks and never freed one by one. The first
 * chunk may be the caller's: the preload library parses the policy at the
 * start of every process it is loaded into, and with static memory there a
 * process that wraps nothing never initialises malloc on our account (about
 * 2% of /bin/true's start-up, measured: tests/bench).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define MEM_ALIGN     16u
#define MEM_FIRST     4096u
#define MEM_MAX_CHUNK (1u << 20)

struct mem_chunk {
	struct mem_chunk *next;
	size_t size;
};

static size_t round_up(size_t n)
{
	return (n + MEM_ALIGN - 1) & ~(size_t)(MEM_ALIGN - 1);
}

void mem_init(struct mem *m, void *buf, size_t len)
{
	uintptr_t lo = ((uintptr_t)buf + MEM_ALIGN - 1) & ~(uintptr_t)(MEM_ALIGN - 1);

	memset(m, 0, sizeof(*m));
	m->next_size = MEM_FIRST;
	if (buf == NULL || lo >= (uintptr_t)buf + len)
		return;
	m->cur = (unsigned char *)lo;
	m->end = (unsigned char *)buf + len;
}

/* Adds a chunk with room for at least N bytes. Returns 0, or -1 (no memory). */
static int mem_more(struct mem *m, size_t n)
{
	size_t head = round_up(sizeof(struct mem_chunk)), size = m->next_size;
	struct mem_chunk *c;

	while (size - head < n)
		size *= 2;
	c = malloc(size);
	if (c == NULL)
		return -1;
	c->next = m->chunks;
	c->size = size;
	m->chunks = c;
	m->cur = (unsigned char *)c + head;
	m->end = (unsigned char *)c + size;
	if (m->next_size < MEM_MAX_CHUNK)
		m->next_size *= 2;
	return 0;
}

void *mem_alloc(struct mem *m, size_t n)
{
	size_t need = round_up(n ? n : 1);
	void *p;

	if (need < n)
		return NULL;
	if ((size_t)(m->end - m->cur) < need && mem_more(m, need) != 0)
		return NULL;
	p = m->cur;
	m->cur += need;
	m->last = p;
	memset(p, 0, n);
	return p;
}

void *mem_grow(struct mem *m, void *old, size_t old_n, size_t n)
{
	void *p;

	if (old == NULL)
		return mem_alloc(m, n);
	if (n <= old_n)
		return old;
	/* The newest allocation grows in place while its chunk has room. */
	if (old == m->last && round_up(n) >= n &&
	    (size_t)(m->end - (unsigned char *)old) >= round_up(n)) {
		memset((unsigned char *)old + old_n, 0, n - old_n);
		m->cur = (unsigned char *)old + round_up(n);
		return old;
	}
	p = mem_alloc(m, n);
	if (p != NULL)
		memcpy(p, old, old_n);
	return p;
}

char *mem_strndup(struct mem *m, const char *s, size_t n)
{
	char *d = mem_alloc(m, n + 1);

	if (d != NULL)
		memcpy(d, s, n);
	return d;
}

char *mem_strdup(struct mem *m, const char *s)
{
	return mem_strndup(m, s, strlen(s));
}

size_t mem_size(const struct mem *m)
{
	size_t n = 0;

	for (const struct mem_chunk *c = m->chunks; c != NULL; c = c->next)
		n += c->size;
	return n;
}

void mem_release(struct mem *m)
{
	struct mem_chunk *c = m->chunks, *next;

	for (; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	memset(m, 0, sizeof(*m));
}
