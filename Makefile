# pgsov — build, test, demo, bench.
# Outputs: bin/pgsov-proxy, bin/pgsov; objects under build/. `make asan` builds everything again
# with ASan+UBSan under build/asan/ and runs the whole suite against those binaries.

CC      ?= cc
BUILD   ?= build
BIN     ?= bin
OPT     ?= -O2
SAN     ?=
PKGS     = libevent_core libevent_openssl libevent_pthreads openssl libpq inih jansson
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) cmocka 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS  += -std=c11 -D_GNU_SOURCE $(OPT) -g -Wall -Wextra -Werror -Wshadow -Wformat=2 \
           -Wno-unused-parameter -Iinclude -I$(shell pg_config --includedir 2>/dev/null || echo /usr/include/postgresql) \
           $(PKG_CFLAGS) $(SAN) -fno-omit-frame-pointer
LDFLAGS += $(SAN)
LIBS     = $(PKG_LIBS) -lpg_query -lpthread -lm

COMMON_SRC := $(wildcard common/*.c)
PROXY_SRC  := $(filter-out proxy/main.c,$(wildcard proxy/*.c))
TOOLS_SRC  := $(filter-out tools/main.c,$(wildcard tools/*.c))
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
ITEST_SRC  := $(wildcard tests/integration/test_*.c)
ITEST_LIB  := $(wildcard tests/integration/harness*.c)
BENCH_SRC  := $(wildcard bench/*.c)

obj = $(patsubst %.c,$(BUILD)/%.o,$(1))

LIB_COMMON := $(BUILD)/libpgsov_common.a
LIB_PROXY  := $(BUILD)/libpgsov_proxy.a
LIB_TOOLS  := $(BUILD)/libpgsov_tools.a
UNIT_BINS  := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
ITEST_BINS := $(patsubst tests/integration/%.c,$(BUILD)/tests/%,$(ITEST_SRC))
BENCH_BINS := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))
DUP_TESTS  := $(filter $(notdir $(UNIT_BINS)),$(notdir $(ITEST_BINS)))
ifneq ($(DUP_TESTS),)
$(error unit and integration tests share names: $(DUP_TESTS); rename one of each pair)
endif

.SECONDARY:
.PHONY: all deps demo demo-check test unit integration asan bench clean fuzz check-deps
all: $(BIN)/pgsov-proxy $(BIN)/pgsov

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB_COMMON): $(call obj,$(COMMON_SRC))
	@mkdir -p $(dir $@); rm -f $@; ar rcs $@ $^
$(LIB_PROXY): $(call obj,$(PROXY_SRC))
	@mkdir -p $(dir $@); rm -f $@; ar rcs $@ $^
$(LIB_TOOLS): $(call obj,$(TOOLS_SRC))
	@mkdir -p $(dir $@); rm -f $@; ar rcs $@ $^

$(BIN)/pgsov-proxy: $(call obj,proxy/main.c) $(LIB_PROXY) $(LIB_COMMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)
$(BIN)/pgsov: $(call obj,tools/main.c) $(LIB_TOOLS) $(LIB_COMMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# Static pattern rules: a unit and an integration test never compete for one target.
$(UNIT_BINS): $(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(LIB_PROXY) $(LIB_TOOLS) $(LIB_COMMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) -lcmocka
$(ITEST_BINS): $(BUILD)/tests/%: $(BUILD)/tests/integration/%.o $(call obj,$(ITEST_LIB)) $(LIB_TOOLS) $(LIB_COMMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) -lcmocka
$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIB_PROXY) $(LIB_TOOLS) $(LIB_COMMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

deps:
	@scripts/deps.sh

# Unit tests: pure modules, no servers.
unit: $(UNIT_BINS)
	@scripts/run-unit.sh $(UNIT_BINS)

# Integration tests: start two PostgreSQL clusters, drive the real binaries with libpq.
integration: all $(ITEST_BINS)
	@PGSOV_BIN=$(abspath $(BIN)) PGSOV_BUILD=$(abspath $(BUILD)) tests/integration/run.sh $(ITEST_BINS)

# The README's `make demo`, driven as a user would: start it, paste its lines, stop it.
demo-check: all
	@tests/demo_check.sh

test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory integration
	@$(MAKE) --no-print-directory demo-check

asan: deps
	@$(MAKE) --no-print-directory BUILD=build/asan BIN=build/asan/bin OPT=-O1 \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" all unit integration

bench: deps all $(BENCH_BINS)
	@PGSOV_BIN=$(abspath $(BIN)) PGSOV_BUILD=$(abspath $(BUILD)) bench/run.sh

demo: deps all
	@scripts/demo.sh

# libFuzzer targets for the parsers (tests/fuzz/), built with clang, each run FUZZ_SECONDS.
# Not part of `make test` (coverage-guided runs are open-ended); corpora under build/fuzz/.
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_FLAGS    = -g -O1 -std=c11 -D_GNU_SOURCE -Iinclude -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=undefined
FUZZ_BINS     = $(BUILD)/fuzz/fuzz_wire $(BUILD)/fuzz/fuzz_rules $(BUILD)/fuzz/fuzz_sasl
$(BUILD)/fuzz/fuzz_wire: tests/fuzz/fuzz_wire.c proxy/wire.c common/err.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) $^ $(shell pkg-config --libs libevent_core) -o $@
$(BUILD)/fuzz/fuzz_rules: tests/fuzz/fuzz_rules.c proxy/rules.c common/config.c common/env.c \
                          common/err.c common/stmt_class.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) $^ $(shell pkg-config --libs inih) -lcrypto -o $@
$(BUILD)/fuzz/fuzz_sasl: tests/fuzz/fuzz_sasl.c proxy/scram.c proxy/users.c common/scram_verifier.c common/err.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) $^ -lssl -lcrypto -o $@
fuzz: deps
	@command -v $(FUZZ_CC) >/dev/null || { echo "fuzz: $(FUZZ_CC) not found (apt-get install clang)"; exit 1; }
	@$(MAKE) --no-print-directory $(FUZZ_BINS)
	@for f in $(FUZZ_BINS); do \
	    n=$$(basename $$f); mkdir -p $(BUILD)/fuzz/corpus-$$n; \
	    echo "== $$n ($(FUZZ_SECONDS) s)"; \
	    $$f -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -print_final_stats=1 $(BUILD)/fuzz/corpus-$$n \
	        2>$(BUILD)/fuzz/$$n.log || { tail -40 $(BUILD)/fuzz/$$n.log; exit 1; }; \
	    grep -E 'stat::number_of_executed_units|Done' $(BUILD)/fuzz/$$n.log | tail -2; \
	done

clean:
	rm -rf build bin

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
