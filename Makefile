# Tuna-2 engine build.
#   make          libtuna.a + build/tuna
#   make test     build and run every test (prints "N passed, N failed")
#   make asan     the same tests under AddressSanitizer + UBSan (build-asan/)
#   make fuzz     libFuzzer targets with clang (build-fuzz/)
#   make fuzz-smoke  each fuzz target for FUZZ_SECONDS (10) from its seeds (CI)
#   make bench    benchmark binaries (build/bench/)
#
# Sources are found by wildcard: a new .c file under src/ is part of the library.
# ISA-specific kernels are named *_avx512.c and get AVX-512 flags on top of the
# x86-64-v3 baseline; the dispatcher picks them at run time (src/core/cpu_features.c).

BUILD    ?= build
CC       ?= cc
OPT      ?= -O2
SANITIZE ?=
BASE_ISA ?= -march=x86-64-v3 -mtune=generic
AVX512_ISA = -mavx512f -mavx512bw -mavx512vl -mavx512dq

CPPFLAGS += -Iinclude -Isrc -D_GNU_SOURCE
CFLAGS   += -std=c11 $(OPT) -g -Wall -Wextra -fopenmp -fPIC $(BASE_ISA) $(SANITIZE)
LDLIBS   += -lopenblas -lpng -ljpeg -lcjson -lpcre2-8 -lmicrohttpd -lz -lutf8proc -lm -lpthread
LDFLAGS  += -fopenmp $(SANITIZE)

LIB_SRC   := $(sort $(wildcard src/core/*.c src/ops/*.c src/ops/cpu/*.c src/io/*.c src/text/*.c \
               src/model/*.c src/infer/*.c src/train/*.c src/eval/*.c src/serve/*.c))
CLI_SRC   := $(sort $(wildcard src/cli/*.c))
TEST_SRC  := $(sort $(wildcard tests/test_*.c))
BENCH_SRC := $(sort $(wildcard bench/bench_*.c))
FUZZ_SRC  := $(sort $(wildcard fuzz/fuzz_*.c))

LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN  := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all test asan fuzz fuzz-smoke bench clean
all: $(BUILD)/libtuna.a $(BUILD)/tuna

$(BUILD)/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(AVX512_ISA) -MMD -MP -c $< -o $@

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

# the playground page is embedded by .incbin (src/serve/playground.c)
$(BUILD)/src/serve/playground.o: src/serve/playground.html

$(BUILD)/libtuna.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/tuna: $(CLI_OBJ) $(BUILD)/libtuna.a
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: tests/%.c tests/test.h $(BUILD)/libtuna.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests $(CFLAGS) $< $(BUILD)/libtuna.a $(LDFLAGS) $(LDLIBS) -o $@

$(BUILD)/bench/%: bench/%.c bench/bench_common.h $(BUILD)/libtuna.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Ibench $(CFLAGS) $< $(BUILD)/libtuna.a $(LDFLAGS) $(LDLIBS) -o $@

test: all $(TEST_BIN)
	@tests/run_tests.sh $(BUILD)

asan:
	$(MAKE) BUILD=build-asan OPT=-O1 SANITIZE="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" test

bench: all $(BENCH_BIN)

# libFuzzer targets: the library rebuilt with clang and the fuzzer's instrumentation.
FUZZ_BUILD := build-fuzz
fuzz:
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=clang OPT=-O1 SANITIZE="-fsanitize=fuzzer-no-link,address,undefined" $(FUZZ_BUILD)/libtuna.a
	@mkdir -p $(FUZZ_BUILD)/fuzz
	@for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  echo "clang $$f -> $(FUZZ_BUILD)/fuzz/$$n"; \
	  clang $(CPPFLAGS) -std=c11 -O1 -g -fopenmp -fsanitize=fuzzer,address,undefined $(BASE_ISA) $$f $(FUZZ_BUILD)/libtuna.a $(LDLIBS) -o $(FUZZ_BUILD)/fuzz/$$n || exit 1; done

# Each libFuzzer target for FUZZ_SECONDS on a scratch corpus grown from its seeds
# (fuzz/seeds-NAME: valid inputs of every kind it parses), as CI runs it.
FUZZ_SECONDS ?= 10
fuzz-smoke: SHELL := /bin/bash
fuzz-smoke: fuzz
	@for f in $(FUZZ_SRC); do n=$$(basename $$f .c); s=fuzz/seeds-$$(echo $${n#fuzz_} | tr _ -); \
	  [ -d $$s ] || s=fuzz/seeds-$$(echo $${n#fuzz_} | cut -d_ -f1); \
	  [ -d $$s ] || { echo "fuzz-smoke: no seed corpus for $$n"; exit 1; }; \
	  c=$$(mktemp -d); echo "fuzz-smoke: $$n, $(FUZZ_SECONDS) s from $$s ($$(ls $$s | wc -l) seeds)"; \
	  $(FUZZ_BUILD)/fuzz/$$n -max_total_time=$(FUZZ_SECONDS) -seed=1 -print_final_stats=1 $$c $$s > $$c.log 2>&1; \
	  rc=$$?; grep -E "INITED|DONE|stat::number_of_executed_units|ERROR|SUMMARY" $$c.log | tail -4; \
	  rm -rf $$c $$c.log; [ $$rc -eq 0 ] || { echo "fuzz-smoke: $$n failed ($$rc)"; exit 1; }; done; \
	  echo "fuzz-smoke: every target ran clean"

clean:
	rm -rf build build-asan build-fuzz

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
