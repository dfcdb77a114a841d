/*
 * shim.c - the process-wide state (shim.h). Set by the constructor in
 * hooks/init.c; kept here so that the core links without the hooks (tests).
 */
#include "shim.h"

struct shim_state shim SHIM_LOAD_DATA;
