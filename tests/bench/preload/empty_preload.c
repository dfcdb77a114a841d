/*
 * empty_preload.c - a preload library that does nothing, linked as libtlsshim.so is.
 *
 * make bench preloads it into /bin/true beside the shim: what merely mapping one more
 * library costs on this machine, the floor under the shim's start-up figure.
 */
int tlsshim_bench_empty_preload;
