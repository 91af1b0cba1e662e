# SwiftDDPM — the two commands a newcomer needs:
#   make demo   set up, build, train the 50-dim signal model and write its plots
#   make test   set up, build, run every test (Swift, C, Python)
# Also: make bench [BENCH_ARGS=--quick] (engine vs PyTorch), make install PREFIX=/usr/local, make clean.
# Not part of test: make fuzz [FUZZ_SECONDS=600] / make fuzz-smoke (libFuzzer over the checkpoint loader, fuzz/README.md).

PYTHON   ?= python3
SWIFT    ?= swift
CC       ?= cc
PREFIX   ?= /usr/local
BUILD    := .build/release
LIB      := $(BUILD)/libddpm.so
OUT      ?= examples/out
PY_DEPS  := numpy matplotlib tqdm scikit-learn pytest
export PYTHONPATH := $(CURDIR)/python
export SWIFTDDPM_LIBRARY := $(CURDIR)/$(LIB)

.PHONY: all setup setup-system setup-python build demo test test-swift test-c test-python bench install clean \
        fuzz fuzz-setup fuzz-build fuzz-smoke

all: build

# ---- set-up: installs only what this machine lacks -------------------------------------
setup: setup-system setup-python

setup-system:
	@if ! pkg-config --exists openblas 2>/dev/null; then \
	  echo "installing libopenblas-dev (BLAS)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libopenblas-dev pkg-config >/dev/null; \
	fi

setup-python:
	@missing=$$($(PYTHON) -c 'import importlib.util as u; \
	  names = {"numpy": "numpy", "matplotlib": "matplotlib", "tqdm": "tqdm", "scikit-learn": "sklearn", "pytest": "pytest"}; \
	  print(" ".join(p for p, m in names.items() if u.find_spec(m) is None))'); \
	if [ -n "$$missing" ]; then echo "installing Python packages: $$missing"; \
	  $(PYTHON) -m pip install -q $$missing; fi

# ---- build ---------------------------------------------------------------------------
build: setup-system
	$(SWIFT) build -c release --product ddpm

$(LIB): build

examples/c/swiss_roll: examples/c/swiss_roll.c include/ddpm.h build
	$(CC) -O2 -Wall -Wextra -std=c11 -D_DEFAULT_SOURCE $< -Iinclude -L$(BUILD) -lddpm \
	  -Wl,-rpath,'$$ORIGIN/../../$(BUILD)' -lm -o $@

# ---- the main job ----------------------------------------------------------------------
demo: setup build
	$(PYTHON) examples/python/signals_1d.py --out $(OUT)/signals_1d

# ---- tests -----------------------------------------------------------------------------
test: setup build test-swift test-c test-python

test-swift: setup-system
	$(SWIFT) test

test-c: examples/c/swiss_roll
	cd examples/c && ./swiss_roll 3000 $(CURDIR)/$(BUILD)/swiss_roll_c.safetensors

test-python: setup-python build
	$(PYTHON) -m pytest -q python/tests

# ---- benchmark (not part of test or CI) ------------------------------------------------
bench: setup build
	bash bench/run.sh $(BENCH_ARGS)

# ---- fuzzing the checkpoint loader (not part of test or CI; see fuzz/README.md) ---------
# make fuzz [FUZZ_SECONDS=600] [FUZZ_JOBS=1]: libFuzzer + ASan over ddpm_model_load, with the
# structure-aware mutator of fuzz/load_fuzzer.cc; the Swift library is built with
# -sanitize=fuzzer,address in $(FUZZ_BUILD) so that its own code feeds coverage. Crashes are
# written to $(FUZZ_OUT)/artifacts and the run goes on (fork mode). make fuzz-smoke runs every
# seed and every fuzz/regressions input once.
FUZZ_SECONDS ?= 600
FUZZ_JOBS    ?= 1
FUZZ_CXX     ?= clang++
FUZZ_BUILD   := .build-fuzz
FUZZ_OUT     := $(FUZZ_BUILD)/run
FUZZER       := $(FUZZ_BUILD)/load_fuzzer
FUZZ_FLAGS   := -timeout=10 -rss_limit_mb=4096 -max_len=300000

fuzz-setup:
	@mkdir -p $(FUZZ_BUILD) && \
	printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return 0; }\n' \
	  > $(FUZZ_BUILD)/probe.cc; \
	if ! $(FUZZ_CXX) -fsanitize=fuzzer,address $(FUZZ_BUILD)/probe.cc -o $(FUZZ_BUILD)/probe >/dev/null 2>&1; then \
	  echo "installing clang with libFuzzer (clang, libclang-rt-dev)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq clang >/dev/null; \
	  $$SUDO apt-get install -y -qq libclang-rt-dev >/dev/null 2>&1 || true; \
	  if ! $(FUZZ_CXX) -fsanitize=fuzzer,address $(FUZZ_BUILD)/probe.cc -o $(FUZZ_BUILD)/probe >/dev/null 2>&1; then \
	    echo "error: $(FUZZ_CXX) cannot link -fsanitize=fuzzer,address; try make fuzz FUZZ_CXX=/usr/bin/clang++"; \
	    exit 1; fi; \
	fi; rm -f $(FUZZ_BUILD)/probe.cc $(FUZZ_BUILD)/probe

fuzz-build: setup fuzz-setup build
	@if $(SWIFT) build -c release --product ddpm --build-path $(FUZZ_BUILD) -Xswiftc -sanitize=fuzzer,address; then \
	  libdir=$(FUZZ_BUILD)/release; \
	else \
	  echo "warning: the Swift library cannot be built with -sanitize=fuzzer,address here;"; \
	  echo "         fuzzing the plain build: coverage comes from the harness only"; libdir=$(BUILD); \
	fi; \
	rm -f $(FUZZER); $(FUZZ_CXX) -std=c++17 -g -O1 -fsanitize=fuzzer,address -Iinclude fuzz/load_fuzzer.cc \
	  -L$$libdir -lddpm -Wl,-rpath,$(CURDIR)/$$libdir -o $(FUZZER) 2>&1 | grep -v 'Cannot export local symbol' || true; \
	test -x $(FUZZER)
	@rm -rf $(FUZZ_OUT)/seeds && $(PYTHON) fuzz/make_corpus.py $(FUZZ_OUT)/seeds
	@mkdir -p $(FUZZ_OUT)/corpus $(FUZZ_OUT)/artifacts

fuzz: fuzz-build
	cd $(FUZZ_OUT) && nice $(CURDIR)/$(FUZZER) $(FUZZ_FLAGS) -max_total_time=$(FUZZ_SECONDS) \
	  -fork=$(FUZZ_JOBS) -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 \
	  -artifact_prefix=artifacts/ -print_final_stats=1 corpus seeds $(CURDIR)/fuzz/regressions
	@echo "crashes, OOMs and timeouts (if any): $(FUZZ_OUT)/artifacts"; ls -l $(FUZZ_OUT)/artifacts

fuzz-smoke: fuzz-build
	cd $(FUZZ_OUT) && $(CURDIR)/$(FUZZER) $(FUZZ_FLAGS) -runs=0 seeds $(CURDIR)/fuzz/regressions

# ---- install ---------------------------------------------------------------------------
install: build
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include
	install -m 755 $(LIB) $(DESTDIR)$(PREFIX)/lib/libddpm.so
	install -m 644 include/ddpm.h $(DESTDIR)$(PREFIX)/include/ddpm.h

clean:
	rm -rf .build $(FUZZ_BUILD) examples/c/swiss_roll $(OUT)
