/*
 * engine_load.c - dlopen() the TLS engine beside this library, once.
 *
 * libssl and libcrypto are loaded and initialised here, on the first
 * connection a tls rule wraps, never at start-up (see engine.h).
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "engine_load.h"
#include "log.h"
#include "real.h"
#include "shim.h"
#include "stats.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static const struct engine_ops *loaded;
static char load_error[512];

static void log_cb(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void log_cb(int level, const char *fmt, ...)
{
	char buf[900];
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log_msg(level, "%s", buf);
}

static void load(void)
{
	static struct engine_host host;
	char path[4096];
	const char *slash;
	Dl_info info;
	void *h;
	const struct engine_ops *ops;

	if (dladdr((void *)engine_load, &info) == 0 || info.dli_fname == NULL) {
		snprintf(load_error, sizeof(load_error), "cannot locate libtlsshim.so");
		return;
	}
	slash = strrchr(info.dli_fname, '/');
	snprintf(path, sizeof(path), "%.*slibtlsshim-tls.so",
		 slash ? (int)(slash - info.dli_fname + 1) : 0, info.dli_fname);
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		snprintf(load_error, sizeof(load_error), "cannot load the TLS engine: %s",
			 dlerror());
		return;
	}
	ops = dlsym(h, "tlsshim_engine_ops");
	if (ops == NULL || ops->abi != ENGINE_ABI) {
		snprintf(load_error, sizeof(load_error),
			 "%.400s: not a tlsshim TLS engine of ABI %d", path, ENGINE_ABI);
		return;
	}
	host.real = &real;
	host.log = log_cb;
	host.keylog_path = shim.keylog;
	host.cert_loaded = stats_cert_loaded;
	if (ops->init(&host, load_error, sizeof(load_error)) != 0)
		return;
	/* The engine says whether TLSSHIM_KEYLOG is in use or refused (keylog.c). */
	loaded = ops;
}

const struct engine_ops *engine_load(char *err, size_t errlen)
{
	pthread_once(&once, load);
	if (loaded == NULL)
		snprintf(err, errlen, "%s", load_error);
	return loaded;
}
