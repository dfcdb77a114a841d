/*
 * system.c - the system policy: whether its file can be trusted, and the floor
 * rule that combines it with a process's own policy.
 *
 * The system policy applies to every process that loads the library, setuid
 * ones included, so only root may be able to write it: the file, its
 * directory and every directory above. The floor rule: for a connection, the
 * process's own rule applies only where it is stricter than the system's
 * (deny over tls over auto over plain); otherwise the system rule applies as
 * written, its checks included.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

/* Why ST (of PATH) may be written by someone other than root, in WHY; 0 if it cannot. */
static int writable_by_others(const struct stat *st, const char *path, int sticky_ok, char *why,
			      size_t len)
{
	const char *what = S_ISDIR(st->st_mode) ? "directory" : "file";

	if (st->st_uid != 0) {
		snprintf(why, len, "%s %s is owned by uid %u, not root", what, path,
			 (unsigned)st->st_uid);
		return 1;
	}
	/* A sticky directory (/tmp) lets others add entries, never replace root's. */
	if (sticky_ok && (st->st_mode & S_ISVTX))
		return 0;
	if (st->st_mode & S_IWGRP) {
		snprintf(why, len, "%s %s is group-writable (mode %04o)", what, path,
			 (unsigned)(st->st_mode & 07777));
		return 1;
	}
	if (st->st_mode & S_IWOTH) {
		snprintf(why, len, "%s %s is writable by others (mode %04o)", what, path,
			 (unsigned)(st->st_mode & 07777));
		return 1;
	}
	return 0;
}

int policy_file_trusted(const char *path, char *why, size_t len)
{
	char dir[PATH_MAX];
	struct stat st;
	char *slash;
	int e;

	/*
	 * The common case, no system policy: one system call, and no message (every
	 * process start takes this path; strerror() and snprintf() would fault in
	 * half a dozen pages of libc that /bin/true never touches).
	 */
	if (lstat(path, &st) != 0) {
		e = errno;
		if (e == ENOENT) {
			if (len > 0)
				why[0] = '\0';
			return -e;
		}
		snprintf(why, len, "%s: %s", path, strerror(e));
		return -e;
	}
	if (S_ISLNK(st.st_mode)) {
		snprintf(why, len, "%s is a symbolic link (it must be the file itself)", path);
		return -EPERM;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, len, "%s is not a regular file", path);
		return -EPERM;
	}
	if (writable_by_others(&st, path, 0, why, len))
		return -EPERM;
	if (path[0] != '/' || strlen(path) >= sizeof(dir)) {
		snprintf(why, len, "%s is not an absolute path", path);
		return -EPERM;
	}
	/* The directory holding it, then each one above: whoever can write one can swap
	 * what is below it. Only the directory holding the file may not be a link. */
	strcpy(dir, path);
	for (int first = 1; (slash = strrchr(dir, '/')) != NULL; first = 0) {
		*slash = '\0';
		if (dir[0] == '\0') {
			if (stat("/", &st) != 0 || writable_by_others(&st, "/", 1, why, len))
				return -EPERM;
			break;
		}
		if ((first ? lstat(dir, &st) : stat(dir, &st)) != 0) {
			e = errno;
			snprintf(why, len, "%s: %s", dir, strerror(e));
			return -e;
		}
		if (!S_ISDIR(st.st_mode)) {
			snprintf(why, len, "%s is %s", dir,
				 S_ISLNK(st.st_mode) ? "a symbolic link (it must be the directory "
						       "itself)"
						     : "not a directory");
			return -EPERM;
		}
		if (writable_by_others(&st, dir, !first, why, len))
			return -EPERM;
	}
	return 0;
}

void policy_defer_file_checks(struct policy *p)
{
	if (p)
		p->defer_file_checks = 1;
}

void policy_quick_file_checks(struct policy *p)
{
	if (p)
		p->quick_file_checks = 1;
}

/* Appends the exact names of SRC to the layered list of P. Returns 0, or -1 out of memory. */
static int add_names(struct policy *p, enum policy_dir dir, const struct policy *src)
{
	const struct dir_index *x = &src->idx[dir];
	size_t n = p->n_layered_names[dir];
	const char **v;

	if (x->n_exact == 0)
		return 0;
	v = mem_grow(&p->mem, p->layered_names[dir], n * sizeof(*v), (n + x->n_exact) * sizeof(*v));
	if (!v)
		return -1;
	memcpy(v + n, x->exact_names, x->n_exact * sizeof(*v));
	p->layered_names[dir] = v;
	p->n_layered_names[dir] = n + x->n_exact;
	return 0;
}

int policy_set_floor(struct policy *p, const struct policy *floor)
{
	size_t i;

	if (!p || !floor || p->finished != 1 || floor->finished != 1 || p->floor || floor->floor)
		return -1;
	for (int dir = POLICY_CONNECT; dir <= POLICY_ACCEPT; dir++) {
		if (add_names(p, dir, floor) != 0 || add_names(p, dir, p) != 0)
			return -1;
	}
	/* Rule ids key TLS contexts and session caches: one numbering for both tables. */
	for (i = 0; i < p->n; i++)
		p->rules[i]->id = (unsigned)(floor->n + i);
	p->floor = floor;
	return 0;
}

const struct policy *policy_floor(const struct policy *p)
{
	return p ? p->floor : NULL;
}

/* How strict an action is: a process may only move a connection up this scale. */
static int strictness(enum policy_action a)
{
	switch (a) {
	case POLICY_PLAIN:
		return 0;
	case POLICY_AUTO:
		return 1;
	case POLICY_TLS:
		return 2;
	case POLICY_DENY:
		return 3;
	default:
		return 3;
	}
}

int policy_floor_wins(const struct policy_rule *floor_rule, const struct policy_rule *own)
{
	if (!floor_rule)
		return 0;
	if (!own)
		return 1;
	return strictness(own->action) <= strictness(floor_rule->action);
}

const struct policy_rule *policy_match(const struct policy *p, const struct policy_query *q,
				       struct policy_match *m)
{
	struct policy_match fm;
	const struct policy_rule *own, *fr;

	own = policy_match_own(p, q, m);
	if (!p || !p->floor)
		return own;
	fr = policy_match_own(p->floor, q, &fm);
	if (!policy_floor_wins(fr, own))
		return own;
	if (m)
		*m = fm;
	return fr;
}
