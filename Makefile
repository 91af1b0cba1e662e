# SwiftDDPM — the two commands a newcomer needs:
#   make demo   set up, build, train the 50-dim signal model and write its plots
#   make test   set up, build, run every test (Swift, C, Python)
# Also: make bench [BENCH_ARGS=--quick] (engine vs PyTorch), make install PREFIX=/usr/local, make clean.

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

.PHONY: all setup setup-system setup-python build demo test test-swift test-c test-c-hardening test-python bench install clean

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
test: setup build test-swift test-c test-c-hardening test-python

test-swift: setup-system
	$(SWIFT) test

test-c: examples/c/swiss_roll
	cd examples/c && ./swiss_roll 3000 $(CURDIR)/$(BUILD)/swiss_roll_c.safetensors

# Issue 10: every export with every class of bad input, and a saved checkpoint damaged every
# way we could think of; each case in a forked child; any crash, hang or wrong status fails.
HARDENING := tests/c/bad_inputs tests/c/checkpoint_mutations
tests/c/%: tests/c/%.c tests/c/harness.h include/ddpm.h build
	$(CC) -O2 -g -Wall -Wextra -std=c11 $< -Iinclude -L$(BUILD) -lddpm -Wl,-rpath,'$$ORIGIN/../../$(BUILD)' -lm -o $@

test-c-hardening: $(HARDENING)
	rm -rf $(BUILD)/hardening && mkdir -p $(BUILD)/hardening
	OPENBLAS_NUM_THREADS=1 tests/c/bad_inputs $(BUILD)/hardening
	OPENBLAS_NUM_THREADS=1 tests/c/checkpoint_mutations $(BUILD)/hardening

test-python: setup-python build
	$(PYTHON) -m pytest -q python/tests

# ---- benchmark (not part of test or CI) ------------------------------------------------
bench: setup build
	bash bench/run.sh $(BENCH_ARGS)

# ---- install ---------------------------------------------------------------------------
install: build
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include
	install -m 755 $(LIB) $(DESTDIR)$(PREFIX)/lib/libddpm.so
	install -m 644 include/ddpm.h $(DESTDIR)$(PREFIX)/include/ddpm.h

clean:
	rm -rf .build examples/c/swiss_roll $(HARDENING) $(OUT)
