# SwiftDDPM — the two commands a newcomer needs:
#   make demo   set up, build, train the 50-dim signal model and write its plots
#   make test   set up, build, run every test (Swift, C, Python)
# Also: make bench [BENCH_ARGS=--quick] (engine vs PyTorch), make install PREFIX=/usr/local, make clean,
#       make wheel (dist/swiftddpm-*.whl), make test-torch (PyTorch interop, in .bench-venv).
# MPI (data-parallel training, issue 12): make test also runs the MPI tests with mpirun -np 2.
# Not part of test: make fuzz [FUZZ_SECONDS=600] / make fuzz-smoke (libFuzzer over the checkpoint loader, fuzz/README.md);
# make test compiles the fuzzer's harness and runs its smoke pass over the plain library (test-fuzz-smoke).

PYTHON   ?= python3
SWIFT    ?= swift
CC       ?= cc
PREFIX   ?= /usr/local
BUILD    := .build/release
LIB      := $(BUILD)/libddpm.so
OUT      ?= examples/out
PY_DEPS  := numpy matplotlib tqdm scikit-learn pytest Pillow
export PYTHONPATH := $(CURDIR)/python
export SWIFTDDPM_LIBRARY := $(CURDIR)/$(LIB)
# MAJOR.MINOR.PATCH of include/ddpm_version.h (the one version source); the SONAME carries MAJOR.
VERSION  := $(shell sed -n 's/^\#define DDPM_VERSION_\(MAJOR\|MINOR\|PATCH\) *\([0-9]*\).*/\2/p' include/ddpm_version.h | paste -sd. -)
ABI_MAJOR := $(firstword $(subst ., ,$(VERSION)))

.PHONY: all setup setup-system setup-python build build-static demo test test-swift test-c test-c-hardening test-python bench install clean \
        wheel test-wheel test-wheel-source test-torch bench-venv \
        fuzz fuzz-setup fuzz-build fuzz-smoke test-fuzz-smoke
.PHONY: setup-mpi test-mpi

all: build

# ---- set-up: installs only what this machine lacks -------------------------------------
setup: setup-system setup-python setup-mpi

setup-system:
	@if ! pkg-config --exists openblas 2>/dev/null; then \
	  echo "installing libopenblas-dev (BLAS)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libopenblas-dev pkg-config >/dev/null; \
	fi

setup-python:
	@missing=$$($(PYTHON) -c 'import importlib.util as u; \
	  names = {"numpy": "numpy", "matplotlib": "matplotlib", "tqdm": "tqdm", "scikit-learn": "sklearn", "pytest": "pytest", \
	           "Pillow": "PIL"}; \
	  print(" ".join(p for p, m in names.items() if u.find_spec(m) is None))'); \
	if [ -n "$$missing" ]; then echo "installing Python packages: $$missing"; \
	  $(PYTHON) -m pip install -q $$missing; fi

# ---- build ---------------------------------------------------------------------------
build: setup-system
	$(SWIFT) build -c release --product ddpm
	@# The library's SONAME is libddpm.so.$(ABI_MAJOR): programs linked against the build folder look for it there.
	@ln -sf libddpm.so $(BUILD)/libddpm.so.$(ABI_MAJOR)

$(LIB): build

examples/c/swiss_roll: examples/c/swiss_roll.c examples/c/swiss_roll_data.h include/ddpm.h build
	$(CC) -O2 -Wall -Wextra -std=c11 -D_DEFAULT_SOURCE $< -Iinclude -L$(BUILD) -lddpm \
	  -Wl,-rpath,'$$ORIGIN/../../$(BUILD)' -lm -o $@

# ---- the main job ----------------------------------------------------------------------
demo: setup build
	$(PYTHON) examples/python/signals_1d.py --out $(OUT)/signals_1d

# ---- tests -----------------------------------------------------------------------------
test: setup build test-swift test-c test-c-hardening test-fuzz-smoke test-mpi test-python test-wheel

test-swift: setup-system
	$(SWIFT) test

# The C example built against `make install` into a temporary prefix with nothing but
# `pkg-config --cflags --libs ddpm` (the library found at run time through its SONAME), then
# run as on a machine without Swift (issue 22): the installed library has no NEEDED libswift*
# or libFoundation* and no RUNPATH into the toolchain, the program runs with LD_LIBRARY_PATH
# holding only the prefix's lib/, and ldd resolves nothing from the toolchain's library folder.
test-c: build-static
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(MAKE) --no-print-directory install PREFIX="$$tmp" >/dev/null && \
	toolchain=$$(dirname "$$(dirname "$$(readlink -f "$$(command -v $(SWIFT))")")")/lib/swift && \
	lib="$$tmp/lib/libddpm.so.$(VERSION)" && dyn=$$(readelf -d "$$lib") && \
	if echo "$$dyn" | grep -E 'NEEDED.*\[lib(swift|Foundation|dispatch|BlocksRuntime)' || \
	   echo "$$dyn" | grep -E "R(UN)?PATH.*$$toolchain"; then \
	  echo "test-c: the installed $$lib needs the Swift toolchain ($$toolchain) at run time"; exit 1; fi && \
	echo "installed libddpm: $$(echo "$$dyn" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p' | paste -sd' ' -); RUNPATH $$(echo "$$dyn" | sed -n 's/.*R.*PATH.*\[\(.*\)\]/\1/p')" && \
	flags=$$(PKG_CONFIG_PATH="$$tmp/lib/pkgconfig" pkg-config --cflags --libs ddpm) && \
	echo "pkg-config --cflags --libs ddpm: $$flags" && \
	$(CC) -O2 -Wall -Wextra -std=c11 -D_DEFAULT_SOURCE examples/c/swiss_roll.c -o "$$tmp/swiss_roll" $$flags -lm && \
	echo "swiss_roll needs: $$(readelf -d "$$tmp/swiss_roll" | sed -n 's/.*NEEDED.*\[\(libddpm[^]]*\)\]/\1/p')" && \
	resolved=$$(env -i PATH=/usr/bin:/bin LD_LIBRARY_PATH="$$tmp/lib" ldd "$$tmp/swiss_roll") && \
	if echo "$$resolved" | grep -E "libswift|libFoundation|not found|$$toolchain"; then \
	  echo "test-c: the installed swiss_roll resolves libraries from the Swift toolchain or misses some"; exit 1; fi && \
	env -i PATH=/usr/bin:/bin LD_LIBRARY_PATH="$$tmp/lib" "$$tmp/swiss_roll" 3000 "$$tmp/swiss_roll_c.safetensors"

# Issue 10: every export with every class of bad input, and a saved checkpoint damaged every
# way we could think of; each case in a forked child; any crash, hang or wrong status fails.
# Issue 19: thread_stress runs the header's threading rules at once (own models on a shared
# schedule, a shared model behind the caller's lock, ddpm_set_num_threads throughout) under
# an alarm() watchdog, every result checked bitwise against one thread's.
HARDENING := tests/c/bad_inputs tests/c/checkpoint_mutations tests/c/thread_stress
tests/c/%: tests/c/%.c tests/c/harness.h include/ddpm.h build
	$(CC) -O2 -g -Wall -Wextra -std=c11 -pthread $< -Iinclude -L$(BUILD) -lddpm -Wl,-rpath,'$$ORIGIN/../../$(BUILD)' -lm -o $@

test-c-hardening: $(HARDENING)
	rm -rf $(BUILD)/hardening && mkdir -p $(BUILD)/hardening
	OPENBLAS_NUM_THREADS=1 tests/c/bad_inputs $(BUILD)/hardening
	OPENBLAS_NUM_THREADS=1 tests/c/checkpoint_mutations $(BUILD)/hardening
	OPENBLAS_NUM_THREADS=1 tests/c/thread_stress $(BUILD)/hardening

test-python: setup-python setup-mpi build
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

# make test (issue 19: the harness had rotted unseen): fuzz/load_fuzzer.cc compiled against the
# plain library and run once on every seed and regression input, a few seconds. With libFuzzer
# and ASan where $(FUZZ_CXX) links them (the Swift toolchain's clang does); else with ASan alone,
# or plainly, through fuzz/standalone_main.cc (its own main() running each input once).
SMOKE := $(BUILD)/fuzz-smoke
test-fuzz-smoke: build setup-python
	@rm -rf $(SMOKE) && mkdir -p $(SMOKE) && $(PYTHON) fuzz/make_corpus.py $(SMOKE)/seeds && \
	cxx=$(FUZZ_CXX); command -v $$cxx >/dev/null 2>&1 || cxx=c++; \
	link="-Iinclude fuzz/load_fuzzer.cc -L$(BUILD) -lddpm -Wl,-rpath,$(CURDIR)/$(BUILD)"; \
	printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return 0; }\n' > $(SMOKE)/probe.cc; \
	if $$cxx -fsanitize=fuzzer,address $(SMOKE)/probe.cc -o $(SMOKE)/probe >/dev/null 2>&1; then \
	  echo "fuzz smoke: libFuzzer + ASan ($$cxx)"; flags="-fsanitize=fuzzer,address"; run="$(FUZZ_FLAGS) -runs=0"; \
	else \
	  printf 'int main() { return 0; }\n' > $(SMOKE)/probe.cc; flags=; run=; \
	  $$cxx -fsanitize=address $(SMOKE)/probe.cc -o $(SMOKE)/probe >/dev/null 2>&1 && flags=-fsanitize=address; \
	  echo "fuzz smoke: no libFuzzer runtime for $$cxx: fuzz/standalone_main.cc, $${flags:-no sanitizer}"; \
	  link="$$link fuzz/standalone_main.cc"; \
	fi; \
	$$cxx -std=c++17 -O1 -g $$flags $$link -o $(SMOKE)/load_fuzzer > $(SMOKE)/build.log 2>&1 \
	  || { cat $(SMOKE)/build.log; exit 1; }; \
	$(SMOKE)/load_fuzzer $$run $(SMOKE)/seeds fuzz/regressions > $(SMOKE)/run.log 2>&1 \
	  && tail -2 $(SMOKE)/run.log || { cat $(SMOKE)/run.log; exit 1; }

# ---- install ---------------------------------------------------------------------------
# lib/libddpm.so.X.Y.Z with its SONAME link libddpm.so.X and the dev link libddpm.so,
# include/ddpm.h + ddpm_version.h, lib/pkgconfig/ddpm.pc.
# The installed library is self-contained like the wheel's: the Swift runtime linked in
# (-Xswiftc -static-stdlib, the wheel's build command and scratch folder, so the two share one
# incremental build), its RUNPATH $$ORIGIN, stripped of symbol tables; at run time it needs libc,
# libstdc++, libgcc_s, libm and OpenBLAS, never a Swift toolchain. ($(LIB), which the tests and
# SWIFTDDPM_LIBRARY use, keeps the toolchain's shared runtime: a quicker build for development.)
STATIC_BUILD := .build-wheel
STATIC_LIB   := $(STATIC_BUILD)/release/libddpm.so

build-static: setup-system
	$(SWIFT) build -c release --product ddpm --scratch-path $(STATIC_BUILD) -Xswiftc -static-stdlib

install: build-static
	@soname=$$(readelf -d $(STATIC_LIB) 2>/dev/null | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p'); \
	if command -v readelf >/dev/null && [ "$$soname" != "libddpm.so.$(ABI_MAJOR)" ]; then \
	  echo "$(STATIC_LIB) has SONAME '$$soname', expected libddpm.so.$(ABI_MAJOR) (Package.swift vs ddpm_version.h)"; exit 1; fi
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 $(STATIC_LIB) $(DESTDIR)$(PREFIX)/lib/libddpm.so.$(VERSION)
	@if command -v strip >/dev/null; then strip --strip-unneeded $(DESTDIR)$(PREFIX)/lib/libddpm.so.$(VERSION); fi
	ln -sf libddpm.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libddpm.so.$(ABI_MAJOR)
	ln -sf libddpm.so.$(ABI_MAJOR) $(DESTDIR)$(PREFIX)/lib/libddpm.so
	install -m 644 include/ddpm.h include/ddpm_version.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' ddpm.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/ddpm.pc

# ---- Python packaging ------------------------------------------------------------------
# make wheel: dist/swiftddpm-X.Y.Z-py3-none-<platform>.whl, libddpm built from source
# (static Swift runtime) by python/build_backend/swiftddpm_build.py.
wheel: setup-system
	$(PYTHON) -m pip wheel --no-deps -w dist ./python

# make test (fast): a fresh venv, `pip install ./python` offline shipping the library already
# built in $(BUILD) (SWIFTDDPM_PREBUILT_LIBRARY), then installed_smoke.py from outside the checkout.
test-wheel: build
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m venv --system-site-packages "$$tmp/venv" && \
	env -u PYTHONPATH -u SWIFTDDPM_LIBRARY SWIFTDDPM_PREBUILT_LIBRARY=$(CURDIR)/$(LIB) \
	  "$$tmp/venv/bin/pip" install -q --no-index ./python && \
	cd "$$tmp" && env -u PYTHONPATH -u SWIFTDDPM_LIBRARY "$$tmp/venv/bin/python" $(CURDIR)/python/tests/installed_smoke.py

# The same from source, as a user runs it (builds libddpm with the static Swift runtime: minutes).
test-wheel-source: setup-system
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m venv --system-site-packages "$$tmp/venv" && \
	env -u PYTHONPATH -u SWIFTDDPM_LIBRARY "$$tmp/venv/bin/pip" install -q --no-index ./python && \
	cd "$$tmp" && env -u PYTHONPATH -u SWIFTDDPM_LIBRARY "$$tmp/venv/bin/python" $(CURDIR)/python/tests/installed_smoke.py

# PyTorch interop (swiftddpm.torch, Model.export/from_export) and diffusers (swiftddpm.diffusers
# against diffusers itself, live) in make bench's venv.
bench-venv:
	@bash bench/run.sh --setup-only

test-torch: build bench-venv
	@.bench-venv/bin/python -c 'import pytest' 2>/dev/null || .bench-venv/bin/pip install -q pytest
	@.bench-venv/bin/python -c 'import diffusers' 2>/dev/null || .bench-venv/bin/pip install -q diffusers
	.bench-venv/bin/python -m pytest -q python/tests/test_torch.py python/tests/test_export.py python/tests/test_diffusers_live.py

clean:
	rm -rf .build .build-wheel $(FUZZ_BUILD) dist examples/c/swiss_roll examples/c/mpi_train $(HARDENING) $(OUT)

# ---- MPI: data-parallel training and sharded sampling (issue 12) ---------------------------
# mpirun on localhost: --oversubscribe (more ranks than free cores), --allow-run-as-root as root;
# one BLAS thread per rank (the ranks are the parallelism); ranks yield the core while waiting.
MPIRUN   ?= mpirun
MPIRUN_FLAGS ?= --oversubscribe $(shell [ "$$(id -u)" = 0 ] && echo --allow-run-as-root) \
  --mca mpi_yield_when_idle 1 -x OPENBLAS_NUM_THREADS=1

setup-mpi:
	@if ! command -v mpicc >/dev/null 2>&1 || ! command -v mpirun >/dev/null 2>&1; then \
	  echo "installing openmpi-bin libopenmpi-dev (MPI)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq openmpi-bin libopenmpi-dev >/dev/null; \
	fi
	@if ! $(PYTHON) -c 'import mpi4py' 2>/dev/null; then echo "installing Python package: mpi4py"; \
	  $(PYTHON) -m pip install -q mpi4py; fi

examples/c/mpi_train: examples/c/mpi_train.c examples/c/swiss_roll_data.h include/ddpm.h build setup-mpi
	mpicc -O2 -Wall -Wextra -std=c11 -D_DEFAULT_SOURCE $< -Iinclude -L$(BUILD) -lddpm \
	  -Wl,-rpath,'$$ORIGIN/../../$(BUILD)' -lm -o $@

test-mpi: examples/c/mpi_train
	$(MPIRUN) $(MPIRUN_FLAGS) -np 2 examples/c/mpi_train 300
