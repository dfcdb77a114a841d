# tlsshim - one non-recursive Makefile.
#
#   make                 build/libtlsshim.so, build/libtlsshim-tls.so, build/tlsshim
#   make test            install missing Debian packages, build, run every test
#   make SAN=asan test   the same under AddressSanitizer + UBSan, in build-asan/
#   make SAN=tsan test   the same under ThreadSanitizer, in build-tsan/
#   make bench           benchmarks (ratios against native OpenSSL, stunnel, libpq's TLS)
#   make bench-apps      nginx and redis: native TLS, the shim, hitch, haproxy, stunnel
#   make bench-instr     instructions per request in nginx's worker: native TLS vs the shim
#   make fuzz            run the fuzzers for FUZZ_SECONDS each
#   make demo            an unmodified plaintext client made to speak TLS
#   make audit           testssl.sh against a server under the shim (slow)
#   make install PREFIX=/usr/local DESTDIR=
#   make deb             build/tlsshim_VERSION_ARCH.deb (lintian-clean); deb-test tests it
#   make compdb          compile_commands.json for clangd / clang-tidy
#   V=1                  show the commands
#   WERROR=1             warnings are errors (as in CI)

SAN        ?=
BUILD      ?= build$(if $(SAN),-$(SAN))
PREFIX     ?= /usr/local
DESTDIR    ?=
LIBDIR     ?= $(PREFIX)/lib
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
# Where the system policy lives (SYSCONFDIR/tlsshim/policy): fixed at build time.
SYSCONFDIR ?= /etc
# Installs the packages the build and the tests need; debian/rules sets it to `true`
# (the package's Build-Depends are the build's dependencies).
SETUP_DEPS ?= scripts/setup-deps
FUZZ_SECONDS ?= 60
VERSION    := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

CC         ?= cc
OPT        ?= -O2 -g
WARN       := -Wall -Wextra -Wformat=2 -Wshadow -Wpointer-arith -Wvla -Wstrict-prototypes \
              -Wmissing-prototypes -Wno-missing-field-initializers
# WERROR=1 (CI: .ci/run) makes every warning an error; a developer's build only warns.
ifeq ($(WERROR),1)
WARN       += -Werror
endif
CPPFLAGS   += -D_GNU_SOURCE -DTLSSHIM_VERSION='"$(VERSION)"' -DTLSSHIM_LIBDIR='"$(LIBDIR)"' \
              -DTLSSHIM_SYSCONFDIR='"$(SYSCONFDIR)"' \
              -Ipolicy -Ishim
CFLAGS_ALL := -std=gnu11 $(OPT) $(WARN) -fPIC -fvisibility=hidden -pthread $(CFLAGS)
LDLIBS_SSL := -lssl -lcrypto

ifeq ($(SAN),asan)
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else ifeq ($(SAN),tsan)
SANFLAGS := -fsanitize=thread -fno-omit-frame-pointer
else ifneq ($(SAN),)
$(error SAN must be asan or tsan)
endif

ifeq ($(V),1)
Q :=
else
Q := @
endif

# ---- sources -------------------------------------------------------------------------
POLICY_SRC := $(sort $(wildcard policy/*.c))
CMD_SRC    := $(sort $(wildcard cmd/*.c))
SHIM_SRC   := $(sort $(wildcard shim/*.c))
HOOK_SRC   := $(sort $(wildcard shim/hooks/*.c))
TLS_SRC    := $(sort $(wildcard shim/tls/*.c))
UNIT_SRC   := $(sort $(wildcard tests/unit/test_*.c))
E2E_SRC    := $(sort $(wildcard tests/e2e/test_*.c))
E2E_LIB    := $(sort $(filter-out $(E2E_SRC),$(wildcard tests/e2e/*.c)))
PROG_SRC   := $(sort $(wildcard tests/progs/*.c))
CONF_SRC   := $(sort $(wildcard tests/conformance/*.c))
BENCH_SRC  := $(sort $(wildcard tests/bench/*.c))
FUZZ_SRC   := $(sort $(wildcard tests/fuzz/fuzz_*.c))
STRESS_SRC := $(sort $(wildcard tests/stress/stress_*.c))

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

POLICY_OBJ := $(call obj,$(POLICY_SRC))
CMD_OBJ    := $(call obj,$(CMD_SRC))
# cmd/exe.c too: the exec hooks ask, as `run` does, whether a program will load the library.
SHIM_OBJ   := $(call obj,$(SHIM_SRC) cmd/exe.c)
HOOK_OBJ   := $(call obj,$(HOOK_SRC))
TLS_OBJ    := $(call obj,$(TLS_SRC))
E2E_LIBOBJ := $(call obj,$(E2E_LIB))

LIBPOLICY  := $(BUILD)/libpolicy.a
LIBCORE    := $(BUILD)/libshimcore.a
LIBENGINE  := $(BUILD)/libtlsengine.a
SHIM_SO    := $(BUILD)/libtlsshim.so
TLS_SO     := $(BUILD)/libtlsshim-tls.so
CMD_BIN    := $(BUILD)/tlsshim

UNIT_BIN   := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRC))
E2E_BIN    := $(patsubst tests/e2e/%.c,$(BUILD)/tests/e2e/%,$(E2E_SRC))
PROG_BIN   := $(patsubst tests/progs/%.c,$(BUILD)/tests/progs/%,$(PROG_SRC))
CONF_BIN   := $(patsubst tests/conformance/%.c,$(BUILD)/tests/conformance/%,$(CONF_SRC))
BENCH_BIN  := $(patsubst tests/bench/%.c,$(BUILD)/tests/bench/%,$(BENCH_SRC))
FUZZ_BIN   := $(patsubst tests/fuzz/%.c,build-fuzz/%,$(FUZZ_SRC))
STRESS_BIN := $(patsubst tests/stress/%.c,$(BUILD)/tests/stress/%,$(STRESS_SRC))

# Criterion cannot start under ThreadSanitizer (Snaipe/Criterion#274). Under SAN=tsan the
# Criterion binaries are built plain: the e2e tests run the TSan-built shim inside real
# programs, and the stress programs (no Criterion) exercise the threaded modules, as does
# test_names, which has its own main() under TSan.
ifeq ($(SAN),tsan)
CRIT_SANFLAGS :=
TEST_BIN    = $(STRESS_BIN) $(filter %/test_names,$(UNIT_BIN)) \
	      $(filter %/test_conformance %/test_transparency %/test_harness,$(E2E_BIN))
else
CRIT_SANFLAGS = $(SANFLAGS)
TEST_BIN    = $(UNIT_BIN) $(STRESS_BIN) $(E2E_BIN)
endif

.PHONY: all deps test test-peers unit e2e asan tsan bench bench-apps bench-instr bench-pg fuzz demo audit install compdb \
        lint format format-check check-exports clean deb deb-test

all: $(SHIM_SO) $(TLS_SO) $(CMD_BIN)

# Debian packages the build needs, installed once per build directory (and again when
# scripts/setup-deps changes); every compile waits for it, so `make` on a fresh
# machine is the whole set-up.
DEPS_STAMP := $(BUILD)/.deps-installed
$(DEPS_STAMP): scripts/setup-deps
	@mkdir -p $(@D)
	$(Q)$(SETUP_DEPS)
	@touch $@

deps: $(DEPS_STAMP)

# ---- compile -------------------------------------------------------------------------
$(BUILD)/obj/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS_ALL) $(SANFLAGS) -MMD -MP -c $< -o $@

-include $(wildcard $(BUILD)/obj/*/*.d $(BUILD)/obj/*/*/*.d $(BUILD)/obj/*/*/*/*.d)

$(LIBPOLICY): $(POLICY_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^
$(LIBCORE): $(SHIM_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^
$(LIBENGINE): $(TLS_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^

# ---- the artifacts -------------------------------------------------------------------
# The preload library: hooks + core + policy; libc only (no libssl: see shim/engine.h).
# It is mapped into every process under LD_PRELOAD, so its layout is chosen for start-up
# (make bench, "start-up"; measured on /bin/true):
#  - lazy binding (no -z now): eager binding of ~160 symbols most processes never call;
#  - -z noseparate-code: two LOAD segments instead of four (two fewer mmaps and VMAs;
#    -0.02x). Headers and read-only data become executable: a few KB more gadget bytes;
#  - -z norelro: the writable data fits one page (one fault, one mprotect and a VMA split
#    fewer; -0.02x). Partial RELRO would only guard .got/.data.rel.ro: with lazy binding
#    .got.plt, and our table of real libc pointers, are writable whatever we choose.
# The layout comes after $(LDFLAGS), so distribution defaults (dpkg-buildflags' -z relro)
# do not undo it: in the system-wide mode this library starts with every process.
# The TLS engine below keeps the default hardening: it is loaded once, when wrapping.
SHIM_LAYOUT := -Wl,-z,noseparate-code -Wl,-z,norelro
$(SHIM_SO): $(HOOK_OBJ) $(SHIM_OBJ) $(LIBPOLICY) shim/exports.map
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared $(CFLAGS_ALL) $(SANFLAGS) -Wl,--version-script=shim/exports.map \
	   -o $@ $(HOOK_OBJ) $(SHIM_OBJ) $(LIBPOLICY) -ldl $(LDFLAGS) $(SHIM_LAYOUT)

# The TLS engine, dlopen()ed by the preload library on the first wrapped connection.
$(TLS_SO): $(TLS_OBJ) $(LIBPOLICY) shim/tls/exports.map
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared $(CFLAGS_ALL) $(SANFLAGS) -Wl,--version-script=shim/tls/exports.map \
	   -Wl,-z,relro -o $@ $(TLS_OBJ) $(LIBPOLICY) $(LDLIBS_SSL) $(LDFLAGS)

# The command links the policy library, never the hooks.
$(CMD_BIN): $(CMD_OBJ) $(LIBPOLICY)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS_ALL) $(SANFLAGS) -o $@ $(CMD_OBJ) $(LIBPOLICY) $(LDFLAGS)

# ---- tests ---------------------------------------------------------------------------
# Unit tests link the modules directly; the hooks are never loaded into them.
$(BUILD)/tests/unit/%: tests/unit/%.c tests/tcp_still.h $(LIBCORE) $(LIBENGINE) $(LIBPOLICY) | $(DEPS_STAMP)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  TEST    $@")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS_ALL) $(SANFLAGS) -Itests -o $@ $< $(LIBCORE) $(LIBENGINE) \
	   $(LIBPOLICY) -lcriterion $(LDLIBS_SSL) -ldl $(LDFLAGS)

$(BUILD)/tests/e2e/%: tests/e2e/%.c $(E2E_LIBOBJ) | $(DEPS_STAMP)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  TEST    $@")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS_ALL) $(CRIT_SANFLAGS) -Itests -o $@ $< $(E2E_LIBOBJ) -lcriterion \
	   $(LDLIBS_SSL) $(LDFLAGS)

# Objects of the e2e harness follow the Criterion binaries' flags.
$(BUILD)/obj/tests/e2e/%.o: tests/e2e/%.c | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS_ALL) $(CRIT_SANFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/tests/stress/%: tests/stress/%.c $(LIBCORE) $(LIBENGINE) $(LIBPOLICY) | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS_ALL) $(SANFLAGS) -Itests -o $@ $< $(LIBCORE) $(LIBENGINE) \
	   $(LIBPOLICY) $(LDLIBS_SSL) -ldl $(LDFLAGS)

# Helper programs the e2e tests run (plain clients/servers that know nothing of TLS).
$(BUILD)/tests/progs/seccomp_io: PROG_LDLIBS := -lseccomp
$(BUILD)/tests/progs/%: tests/progs/%.c | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS_ALL) $(SANFLAGS) -o $@ $< $(LDLIBS_SSL) $(PROG_LDLIBS) $(LDFLAGS)

$(BUILD)/tests/conformance/%: tests/conformance/%.c tests/tcp_still.h | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS_ALL) $(SANFLAGS) -o $@ $< $(LDFLAGS)

$(BUILD)/tests/bench/%: tests/bench/%.c $(wildcard tests/bench/*.h) $(LIBPOLICY) | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS_ALL) $(SANFLAGS) -o $@ $< $(LIBPOLICY) $(LDLIBS_SSL) $(LDFLAGS)

test: deps
	$(Q)$(MAKE) --no-print-directory all $(TEST_BIN) $(PROG_BIN) $(CONF_BIN)
	$(Q)scripts/check-exports $(SHIM_SO) shim/exports.map
	$(Q)scripts/check-exports $(TLS_SO) shim/tls/exports.map
	$(Q)scripts/check-hooks
	$(Q)scripts/check-fd-surface
	$(Q)BUILD=$(BUILD) SAN=$(SAN) scripts/run-tests $(TEST_BIN)

# CPython's own socket test suites, plain and under the shim: the same tests must pass
# and be skipped (scripts/test-peers; about 1.5 minutes, so not part of `make test`).
test-peers: deps all
	$(Q)BUILD=$(BUILD) scripts/test-peers

unit: deps
	$(Q)$(MAKE) --no-print-directory $(filter-out %/test_conformance %/test_transparency \
	   %/test_harness $(E2E_BIN),$(TEST_BIN))
	$(Q)BUILD=$(BUILD) SAN=$(SAN) scripts/run-tests $(filter-out $(E2E_BIN),$(TEST_BIN))

e2e: deps
	$(Q)$(MAKE) --no-print-directory all $(E2E_BIN) $(PROG_BIN) $(CONF_BIN)
	$(Q)BUILD=$(BUILD) SAN=$(SAN) scripts/run-tests $(E2E_BIN)

asan:
	$(Q)$(MAKE) --no-print-directory SAN=asan test
tsan:
	$(Q)$(MAKE) --no-print-directory SAN=tsan test

# The start-up figure's floor: an empty library with the preload library's layout.
EMPTY_SO := $(BUILD)/tests/bench/empty_preload.so
$(EMPTY_SO): tests/bench/preload/empty_preload.c Makefile | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(Q)$(CC) -shared $(CFLAGS_ALL) $(SHIM_LAYOUT) -o $@ $<

bench: deps
	$(Q)$(MAKE) --no-print-directory all $(BENCH_BIN) $(PROG_BIN) $(EMPTY_SO)
	$(Q)BUILD=$(BUILD) tests/bench/run

# PostgreSQL pgbench -S through starttls=postgres vs libpq's own TLS (tests/bench/pgbench;
# make bench runs it too): PG_REPS rounds of PG_SECONDS each way.
bench-pg: all
	$(Q)BUILD=$(BUILD) tests/bench/pgbench

# Real servers (nginx, redis) side by side under wrk and redis-benchmark (~8 min; quick
# ~2 with BENCH_QUICK=1); installs the servers, terminators and load generators it needs.
bench-apps: all
	$(Q)TLSSHIM_BENCH_APPS=1 scripts/setup-deps && BUILD=$(BUILD) tests/bench/apps

# Instructions per keep-alive request and per connection in nginx's worker (callgrind):
# exact where timing on a shared machine is not (~1 min).
bench-instr: all
	$(Q)TLSSHIM_BENCH_INSTR=1 scripts/setup-deps && BUILD=$(BUILD) tests/bench/instructions

# libFuzzer needs clang; fuzzers always build with ASan + UBSan in build-fuzz/.
FUZZ_CFLAGS := -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Ipolicy -Ishim
build-fuzz/%: tests/fuzz/%.c $(POLICY_SRC)
	@mkdir -p $(@D)
	$(Q)clang $(FUZZ_CFLAGS) -o $@ $< $(POLICY_SRC)

fuzz: deps $(FUZZ_BIN)
	$(Q)for f in $(FUZZ_BIN); do \
	  n=$$(basename $$f); mkdir -p build-fuzz/corpus-$$n; \
	  echo "fuzz: $$n for $(FUZZ_SECONDS)s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	      build-fuzz/corpus-$$n tests/fuzz/corpus/$${n#fuzz_} || exit 1; \
	done

demo: deps all
	$(Q)scripts/demo

# testssl.sh against a server under the shim; fails on a HIGH/CRITICAL finding (slow: not in test).
audit: all
	$(Q)TLSSHIM_AUDIT=1 scripts/setup-deps && BUILD=$(BUILD) scripts/audit

# The Debian package, built from a copy of the tree (dpkg-buildpackage writes next to
# the source): build/tlsshim_VERSION_ARCH.deb, checked with lintian.
deb:
	$(Q)TLSSHIM_DEB=1 scripts/setup-deps
	$(Q)scripts/build-deb

# The package installed, used and purged inside a private mount namespace (root).
deb-test: deb
	$(Q)scripts/test-deb

check-exports: all
	$(Q)scripts/check-exports $(SHIM_SO) shim/exports.map
	$(Q)scripts/check-exports $(TLS_SO) shim/tls/exports.map

# The export lists, the hooked-name and fd-surface checks, the size bounds (no .c file
# over 700 lines, no function over 70), and clang-tidy (.clang-tidy).
lint: check-exports
	$(Q)scripts/check-hooks
	$(Q)scripts/check-size
	$(Q)scripts/check-fd-surface
	$(Q)scripts/check-tidy

# Every C file of the tree, the tests too (tests/fuzz/corpus holds inputs, not C).
FORMAT_SRC  = $(POLICY_SRC) $(CMD_SRC) $(SHIM_SRC) $(HOOK_SRC) $(TLS_SRC) \
	      $(wildcard policy/*.h cmd/*.h shim/*.h shim/*/*.h) \
	      $(sort $(wildcard tests/*/*.[ch] tests/bench/*/*.[ch]))
format:
	$(Q)clang-format -i $(FORMAT_SRC)
format-check:
	$(Q)clang-format --dry-run --Werror $(FORMAT_SRC)

compdb:
	$(Q)$(MAKE) clean && bear -- $(MAKE) all $(UNIT_BIN) $(E2E_BIN)

install: all
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 \
	   $(DESTDIR)$(MANDIR)/man7
	install -m 0755 $(SHIM_SO) $(TLS_SO) $(DESTDIR)$(LIBDIR)/
	install -m 0755 $(CMD_BIN) $(DESTDIR)$(BINDIR)/
	install -m 0644 doc/tlsshim.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 doc/tlsshim-policy.7 $(DESTDIR)$(MANDIR)/man7/

clean:
	rm -rf build build-asan build-tsan build-fuzz compile_commands.json

