/*
 * engine_load.h - load the TLS engine (libtlsshim-tls.so) on first use.
 */
#ifndef TLSSHIM_ENGINE_LOAD_H
#define TLSSHIM_ENGINE_LOAD_H

#include <stddef.h>

#include "engine.h"

/*
 * Returns the initialised engine, loading it from the directory this library
 * was loaded from the first time (thread-safe, once). NULL with a message in
 * ERR if it cannot be loaded: the caller then fails the connection (never
 * falls back to cleartext).
 */
const struct engine_ops *engine_load(char *err, size_t errlen);

#endif
