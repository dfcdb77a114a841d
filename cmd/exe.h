/*
 * exe.h - whether the dynamic loader would preload the library into a program
 * (exe.c). Linked into the command (`run` refuses such programs) and into the
 * preload library (the exec hooks hand connections across exec only to a
 * program that will load it): libc only, no message printed.
 */
#ifndef TLSSHIM_CMD_EXE_H
#define TLSSHIM_CMD_EXE_H

#include <stddef.h>

/*
 * Finds PROGRAM like execvp(3) does, searching PATH_ENV (NULL: the default
 * path) when PROGRAM has no '/'. Returns a malloc()ed path, or NULL with
 * errno ENOENT (not found) or EACCES (found, but none executable).
 */
char *exe_find(const char *program, const char *path_env);

/*
 * Decides whether the dynamic loader would honour LD_PRELOAD for PATH: not
 * statically linked, not setuid/setgid, no file capabilities; for a "#!"
 * script, the same for its interpreter. Returns 0 if it would, else -1 with a
 * reason in WHY ("statically linked", ...); -3 if the loader would, but the
 * program makes its socket calls without libc (Go; WHY says so); -2 if PATH
 * cannot be read or is not a program (WHY says why; exec would fail anyway).
 */
int exe_preloadable(const char *path, char *why, size_t whylen);

#endif
