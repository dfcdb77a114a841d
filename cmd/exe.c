/*
 * exe.c - find PROGRAM as execvp(3) would, and tell whether the dynamic loader
 * would honour LD_PRELOAD for it. If it would not (static, setuid/setgid, file
 * capabilities), or the program would bypass libc (Go), `run` must refuse:
 * the program would talk in cleartext.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "exe.h"

/* The kernel allows this many nested "#!" interpreters (fs/exec.c). */
#define EXE_MAX_DEPTH 5
/* The kernel reads at most this much of a "#!" line (BINPRM_BUF_SIZE). */
#define EXE_SHEBANG_MAX 256

/* Whether PATH is a regular file we may execute. */
static int runnable(const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
		return 0;
	return access(path, X_OK) == 0;
}

char *exe_find(const char *program, const char *path_env)
{
	const char *dir, *end;
	int saw_eacces = 0;
	size_t plen = strlen(program);
	char *cand;

	if (!*program) {
		errno = ENOENT;
		return NULL;
	}
	if (strchr(program, '/')) {
		if (access(program, F_OK) != 0)
			return NULL;
		return strdup(program);
	}
	/* execvp's default when PATH is unset (glibc: confstr(_CS_PATH)). */
	if (!path_env)
		path_env = "/bin:/usr/bin";
	for (dir = path_env;; dir = end + 1) {
		size_t dlen;

		end = strchr(dir, ':');
		if (!end)
			end = dir + strlen(dir);
		dlen = (size_t)(end - dir);
		/* An empty element means the current directory, as for execvp. */
		cand = malloc(dlen + plen + 3);
		if (!cand)
			return NULL;
		if (dlen == 0)
			snprintf(cand, plen + 3, "./%s", program);
		else
			snprintf(cand, dlen + plen + 2, "%.*s/%s", (int)dlen, dir, program);
		if (runnable(cand))
			return cand;
		if (access(cand, F_OK) == 0)
			saw_eacces = 1;
		free(cand);
		if (!*end)
			break;
	}
	errno = saw_eacces ? EACCES : ENOENT;
	return NULL;
}

/* ELF fields in the file's byte order. */
static uint16_t rd16(const unsigned char *b, int be)
{
	return be ? (uint16_t)(b[0] << 8 | b[1]) : (uint16_t)(b[1] << 8 | b[0]);
}

static uint32_t rd32(const unsigned char *b, int be)
{
	return be ? (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]
		  : (uint32_t)b[3] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[1] << 8 | b[0];
}

static uint64_t rd64(const unsigned char *b, int be)
{
	return be ? (uint64_t)rd32(b, 1) << 32 | rd32(b + 4, 1)
		  : (uint64_t)rd32(b + 4, 0) << 32 | rd32(b, 0);
}

static int read_at(int fd, void *buf, size_t len, uint64_t off)
{
	ssize_t n;

	if (off > (uint64_t)INT64_MAX)
		return -1;
	n = pread(fd, buf, len, (off_t)off);
	return n == (ssize_t)len ? 0 : -1;
}

/* What the program headers of an ELF file say about how it will run. */
struct elf_facts {
	int interp; /* has PT_INTERP: a dynamic loader that reads LD_PRELOAD */
	int go;     /* built by the Go toolchain (its build ID note) */
};

/* The Go linker's build ID note (cmd/link: ".note.go.buildid", owner "Go", type 4). */
#define GO_NOTE_BUILD_ID 4
#define NOTE_SEGMENT_MAX 65536 /* larger PT_NOTE segments are not looked into */

/* Whether the PT_NOTE segment at OFF (LEN bytes) holds the Go build ID note. */
static int notes_have_go(int fd, uint64_t off, uint64_t len, int be)
{
	unsigned char *buf;
	size_t pos = 0;
	int found = 0;

	if (len < 12 || len > NOTE_SEGMENT_MAX)
		return 0;
	buf = malloc((size_t)len);
	if (buf == NULL || read_at(fd, buf, (size_t)len, off) != 0) {
		free(buf);
		return 0;
	}
	/* Each note: namesz, descsz, type, then name and desc, each padded to 4 bytes. */
	while (!found && pos + 12 <= len) {
		uint32_t namesz = rd32(buf + pos, be), descsz = rd32(buf + pos + 4, be);
		uint32_t type = rd32(buf + pos + 8, be);
		uint64_t name_pad = ((uint64_t)namesz + 3) & ~3ull,
			 desc_pad = ((uint64_t)descsz + 3) & ~3ull;

		if (pos + 12 + name_pad + desc_pad > len)
			break;
		/* Go writes the name as "Go\0\0" (namesz 4); "Go\0" is the usual ELF form. */
		found = type == GO_NOTE_BUILD_ID && (namesz == 3 || namesz == 4) &&
			memcmp(buf + pos + 12, "Go", 3) == 0;
		pos += 12 + (size_t)name_pad + (size_t)desc_pad;
	}
	free(buf);
	return found;
}

/* Reads the program headers of the ELF file FD into F. Returns 0, or -1 if they are broken. */
static int elf_inspect(int fd, struct elf_facts *f)
{
	unsigned char eh[64], ph[56], sh[64];
	int is64, be;
	uint64_t phoff, shoff;
	uint32_t phnum, i;
	uint16_t phentsize, shentsize;

	memset(f, 0, sizeof(*f));
	if (read_at(fd, eh, 52, 0) != 0)
		return -1;
	is64 = eh[EI_CLASS] == ELFCLASS64;
	be = eh[EI_DATA] == ELFDATA2MSB;
	if (!is64 && eh[EI_CLASS] != ELFCLASS32)
		return -1;
	if (eh[EI_DATA] != ELFDATA2LSB && !be)
		return -1;
	if (is64) {
		if (read_at(fd, eh, 64, 0) != 0)
			return -1;
		phoff = rd64(eh + 32, be);
		shoff = rd64(eh + 40, be);
		phentsize = rd16(eh + 54, be);
		phnum = rd16(eh + 56, be);
		shentsize = rd16(eh + 58, be);
	} else {
		phoff = rd32(eh + 28, be);
		shoff = rd32(eh + 32, be);
		phentsize = rd16(eh + 42, be);
		phnum = rd16(eh + 44, be);
		shentsize = rd16(eh + 46, be);
	}
	if (phentsize < (is64 ? 56 : 32))
		return -1;
	/* More than 0xfffe headers: the real count is section 0's sh_info (elf(5)). */
	if (phnum == PN_XNUM) {
		if (shentsize < (is64 ? 64 : 40) ||
		    read_at(fd, sh, shentsize < 64 ? shentsize : 64, shoff) != 0)
			return -1;
		phnum = rd32(sh + (is64 ? 44 : 28), be);
	}
	for (i = 0; i < phnum; i++) {
		uint32_t type;

		if (read_at(fd, ph, is64 ? 56 : 32, phoff + (uint64_t)i * phentsize) != 0)
			return -1;
		type = rd32(ph, be);
		if (type == PT_INTERP)
			f->interp = 1;
		if (type == PT_NOTE && !f->go) {
			uint64_t off = is64 ? rd64(ph + 8, be) : rd32(ph + 4, be);
			uint64_t len = is64 ? rd64(ph + 32, be) : rd32(ph + 16, be);

			f->go = notes_have_go(fd, off, len, be);
		}
	}
	return 0;
}

/*
 * The dynamic loader run directly ("ld.so PROGRAM") has no PT_INTERP, but it
 * is the loader and honours LD_PRELOAD.
 */
static int is_loader(const char *path)
{
	const char *base = strrchr(path, '/');

	base = base ? base + 1 : path;
	return strncmp(base, "ld-", 3) == 0 && strstr(base, ".so") != NULL;
}

static int check(const char *path, char *why, size_t whylen, int depth);

/*
 * Checks the interpreter of the "#!" line in HEAD (N bytes) of PATH. The
 * kernel runs the interpreter, so its setuid bit and linkage are what count;
 * "#!/usr/bin/env PROG" is followed to PROG, found on PATH.
 */
static int check_script(const char *path, const unsigned char *head, size_t n, char *why,
			size_t whylen, int depth)
{
	char interp[EXE_SHEBANG_MAX + 1], arg[EXE_SHEBANG_MAX + 1];
	const char *base;
	char *found;
	size_t i, j;
	int rc;

	for (i = 2; i < n && (head[i] == ' ' || head[i] == '\t'); i++)
		;
	for (j = 0; i < n && head[i] != ' ' && head[i] != '\t' && head[i] != '\n'; i++)
		interp[j++] = (char)head[i];
	interp[j] = '\0';
	if (j == 0) {
		snprintf(why, whylen, "%s: its '#!' line names no interpreter", path);
		return -2;
	}
	for (; i < n && (head[i] == ' ' || head[i] == '\t'); i++)
		;
	for (j = 0; i < n && head[i] != ' ' && head[i] != '\t' && head[i] != '\n'; i++)
		arg[j++] = (char)head[i];
	arg[j] = '\0';
	rc = check(interp, why, whylen, depth + 1);
	if (rc != 0)
		return rc;
	base = strrchr(interp, '/');
	base = base ? base + 1 : interp;
	if (strcmp(base, "env") != 0 || !arg[0] || arg[0] == '-')
		return 0;
	found = exe_find(arg, getenv("PATH"));
	if (!found)
		return 0; /* env will say it is not found */
	rc = check(found, why, whylen, depth + 1);
	free(found);
	return rc;
}

/* exe_preloadable() for the ELF file PATH open on FD (no setuid bit, no capabilities). */
static int check_elf(int fd, const char *path, char *why, size_t whylen)
{
	struct elf_facts f;

	if (elf_inspect(fd, &f) != 0) {
		snprintf(why, whylen, "%s: broken ELF headers", path);
		return -2;
	}
	/* Go's runtime makes its system calls itself, with or without cgo. */
	if (f.go) {
		snprintf(why, whylen,
			 "%s is a Go program: Go makes its socket system calls directly, "
			 "not through libc: tlsshim would never see its connections, "
			 "and they would go out in cleartext",
			 path);
		return -3;
	}
	if (!f.interp && !is_loader(path)) {
		snprintf(why, whylen, "%s is statically linked (it has no ELF interpreter)", path);
		return -1;
	}
	return 0;
}

/* exe_preloadable() for PATH, DEPTH interpreters deep. */
static int check(const char *path, char *why, size_t whylen, int depth)
{
	unsigned char head[EXE_SHEBANG_MAX + 1];
	struct stat st;
	ssize_t n;
	int fd, rc = -2;

	if (depth > EXE_MAX_DEPTH) {
		snprintf(why, whylen, "%s: too many levels of '#!' interpreters", path);
		return -2;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, whylen,
			 "%s: cannot read it to check that the loader would preload tlsshim: %s",
			 path, strerror(errno));
		return -2;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "%s: not a regular file", path);
		goto out;
	}
	n = pread(fd, head, EXE_SHEBANG_MAX, 0);
	if (n < 0) {
		snprintf(why, whylen, "%s: %s", path, strerror(errno));
		goto out;
	}
	head[n] = '\0';
	/* Linux ignores setuid on scripts: only the interpreter matters. */
	if (n >= 2 && head[0] == '#' && head[1] == '!') {
		rc = check_script(path, head, (size_t)n, why, whylen, depth);
		goto out;
	}
	/* A setgid bit without group execute is mandatory locking, not setgid. */
	if ((st.st_mode & S_ISUID) || ((st.st_mode & S_ISGID) && (st.st_mode & S_IXGRP))) {
		snprintf(why, whylen, "%s is %s", path,
			 (st.st_mode & S_ISUID) ? "setuid" : "setgid");
		rc = -1;
		goto out;
	}
	/* File capabilities also put the loader in secure-execution mode (ld.so(8)). */
	if (fgetxattr(fd, "security.capability", NULL, 0) > 0) {
		snprintf(why, whylen, "%s has file capabilities (security.capability)", path);
		rc = -1;
		goto out;
	}
	if (n >= SELFMAG && memcmp(head, ELFMAG, SELFMAG) == 0) {
		rc = check_elf(fd, path, why, whylen);
		goto out;
	}
	/* Not ELF and not a script: execv fails with ENOEXEC and says so. */
	rc = 0;
out:
	close(fd);
	return rc;
}

int exe_preloadable(const char *path, char *why, size_t whylen)
{
	if (whylen)
		why[0] = '\0';
	return check(path, why, whylen, 0);
}
