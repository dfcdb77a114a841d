/*
 * tlsctx_scache.c - the client session cache: resumable sessions kept per
 * (rule, peer, port) key (tsess.c makes the key), least recently used
 * evicted, forgotten when the rule's trust anchors change.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls_int.h"

#define SCACHE_SIZE 64 /* client sessions kept, least recently used evicted */

struct scache_slot {
	char *key;
	SSL_SESSION *sess;
	unsigned long used;
};

static pthread_mutex_t scache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct scache_slot scache[SCACHE_SIZE];
static unsigned long scache_clock;

/* Drops every cached client session of rule ID. */
void tlsctx_session_forget(unsigned id)
{
	char prefix[16];
	size_t plen;
	int i;

	plen = (size_t)snprintf(prefix, sizeof(prefix), "%u|", id);
	pthread_mutex_lock(&scache_lock);
	for (i = 0; i < SCACHE_SIZE; i++) {
		if (scache[i].key == NULL || strncmp(scache[i].key, prefix, plen) != 0)
			continue;
		free(scache[i].key);
		SSL_SESSION_free(scache[i].sess);
		scache[i].key = NULL;
		scache[i].sess = NULL;
	}
	pthread_mutex_unlock(&scache_lock);
}

/*
 * Returns a new reference to the resumable session cached under KEY, or
 * NULL. Thread-safe.
 */
SSL_SESSION *tlsctx_session_get(const char *key)
{
	SSL_SESSION *sess = NULL;
	int i;

	pthread_mutex_lock(&scache_lock);
	for (i = 0; i < SCACHE_SIZE; i++) {
		struct scache_slot *sl = &scache[i];

		if (sl->key == NULL || strcmp(sl->key, key) != 0)
			continue;
		if (SSL_SESSION_is_resumable(sl->sess) && SSL_SESSION_up_ref(sl->sess)) {
			sess = sl->sess;
			sl->used = ++scache_clock;
		}
		break;
	}
	pthread_mutex_unlock(&scache_lock);
	return sess;
}

/*
 * Caches SESS under KEY (copied), replacing what KEY had, else the least
 * recently used entry. Takes over the caller's reference to SESS (freed here
 * on failure). Thread-safe.
 */
void tlsctx_session_put(const char *key, SSL_SESSION *sess)
{
	struct scache_slot *victim = NULL, *empty = NULL, *lru = NULL;
	int i;

	pthread_mutex_lock(&scache_lock);
	for (i = 0; i < SCACHE_SIZE && victim == NULL; i++) {
		struct scache_slot *sl = &scache[i];

		if (sl->key == NULL) {
			if (empty == NULL)
				empty = sl;
		} else if (strcmp(sl->key, key) == 0) {
			victim = sl;
		} else if (lru == NULL || sl->used < lru->used) {
			lru = sl;
		}
	}
	if (victim == NULL)
		victim = empty != NULL ? empty : lru;
	if (victim->key == NULL || strcmp(victim->key, key) != 0) {
		char *k = strdup(key);

		if (k == NULL) {
			SSL_SESSION_free(sess);
			goto out;
		}
		free(victim->key);
		victim->key = k;
	}
	if (victim->sess != NULL)
		SSL_SESSION_free(victim->sess);
	victim->sess = sess;
	victim->used = ++scache_clock;
out:
	pthread_mutex_unlock(&scache_lock);
}
