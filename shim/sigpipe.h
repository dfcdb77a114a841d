/*
 * sigpipe.h - whether SIGPIPE is ignored, known without a system call.
 *
 * The session's writes the program did not make (a record sealed at uncork,
 * close_notify at close) must not raise SIGPIPE; through write()/writev(),
 * which cannot say MSG_NOSIGNAL, the engine blocks SIGPIPE around them (two
 * rt_sigprocmask calls). A program that ignores SIGPIPE (nginx, redis, most
 * servers) needs none of that: this cache says so. The hooks that change a
 * disposition (hooks/signal.c, syscall(SYS_rt_sigaction)) forget it, and it
 * is asked of the kernel again at the next use.
 */
#ifndef TLSSHIM_SIGPIPE_H
#define TLSSHIM_SIGPIPE_H

/*
 * 1 when SIGPIPE's disposition is SIG_IGN, else 0. Asks the kernel once after
 * each change (rt_sigaction); errno is kept. Thread-safe, lock-free.
 */
int sigpipe_ignored(void);

/* SIGPIPE's disposition is changing: called before and after the change. */
void sigpipe_forget(void);

#endif
