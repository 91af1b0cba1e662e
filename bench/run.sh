#!/usr/bin/env bash
# make bench: SwiftDDPM against a PyTorch reference, same run, same machine.
#
#   bash bench/run.sh [--quick] [--config NAME] [--threads 1,2] [--engines torch,ours]
#   bash bench/run.sh --setup-only    (only create .bench-venv with PyTorch: make test-torch)
#
# Installs what it needs, once, into .bench-venv/ at the repository root (git-ignored):
# a virtual environment seeing the system's site-packages (numpy), plus PyTorch for CPU.
# PyTorch is tried, in order:
#   1. a CPU build (torch-*+cpu wheel) in a folder pip is configured to look in (find-links);
#   2. PyPI's torch (a CPU build on aarch64 Linux and macOS; skipped on Linux x86_64, where
#      PyPI's wheel needs the multi-GB CUDA libraries and does not import without them);
#   3. Debian's python3-torch (CPU; 1.13, older), with a venv over /usr/bin/python3.
# Override the venv with BENCH_VENV=, the library with SWIFTDDPM_LIBRARY= (default:
# .build/release/libddpm.so, built with `swift build -c release --product ddpm` if missing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BENCH_VENV:-$ROOT/.bench-venv}"
LIB="${SWIFTDDPM_LIBRARY:-$ROOT/.build/release/libddpm.so}"
PY_DEPS="filelock typing-extensions sympy networkx jinja2 fsspec setuptools>=77"

say() { echo "bench: $*" >&2; }

has_torch() { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import torch, numpy; torch.ones(2) @ torch.ones(2)' >/dev/null 2>&1; }

make_venv() {  # make_venv PYTHON
    say "creating $VENV with $1"
    rm -rf "$VENV"
    "$1" -m venv --system-site-packages "$VENV"
    "$VENV/bin/python" -c 'import numpy' 2>/dev/null || "$VENV/bin/pip" install -q numpy
}

pip_find_links() {  # folders pip is configured to search (find-links), one a line
    "$VENV/bin/pip" config list 2>/dev/null | sed -n "s/^[^=]*find-links='\{0,1\}\([^']*\)'\{0,1\}$/\1/p" | tr ' ' '\n'
}

install_torch() {
    [ -x "$VENV/bin/python" ] || make_venv python3
    local tag
    tag="cp$("$VENV/bin/python" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')"
    # 1. A local CPU wheel.
    local wheel=""
    for dir in $(pip_find_links); do
        [ -d "$dir" ] || continue
        wheel="$(ls -1 "$dir"/torch-*+cpu-"$tag"-*"$(uname -m)"*.whl 2>/dev/null | sort -V | tail -1 || true)"
        [ -n "$wheel" ] && break
    done
    if [ -n "$wheel" ]; then
        say "installing PyTorch CPU from $wheel"
        "$VENV/bin/pip" install -q --no-deps "$wheel" && "$VENV/bin/pip" install -q $PY_DEPS
        has_torch && return 0
        "$VENV/bin/pip" uninstall -q -y torch || true
    fi
    # 2. PyPI's wheel, which is CPU-only except on Linux x86_64 (there it needs CUDA's libraries).
    if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
        say "installing torch from PyPI"
        if "$VENV/bin/pip" install -q --no-cache-dir --no-deps torch && "$VENV/bin/pip" install -q $PY_DEPS && has_torch; then
            return 0
        fi
        "$VENV/bin/pip" uninstall -q -y torch || true
    fi
    # 3. Debian's CPU build.
    say "no CPU wheel of PyTorch found; installing Debian's python3-torch"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq && $sudo apt-get install -y -qq python3-torch python3-venv >/dev/null
    make_venv /usr/bin/python3
    has_torch
}

PY="$VENV/bin/python"
case " $* " in
    *" --engines ours "*|*" --engines=ours "*) need_torch=0 ;;
    *) need_torch=1 ;;
esac
if [ "$need_torch" = 0 ] && ! has_torch; then
    [ -x "$PY" ] || PY=python3
elif ! has_torch; then
    install_torch || { say "could not install PyTorch; run with --engines ours to bench the engine alone"; exit 1; }
    say "PyTorch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)') in $VENV ($(du -sh "$VENV" | cut -f1))"
fi

case " $* " in *" --setup-only "*) exit 0 ;; esac

if [ ! -f "$LIB" ]; then
    say "building $LIB"
    (cd "$ROOT" && swift build -c release --product ddpm)
fi

# The library's SONAME (libddpm.so.N) is what the C driver, linked against it, looks for beside
# it; `make build` makes that link, a plain `swift build` does not.
soname="$(readelf -d "$LIB" 2>/dev/null | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p' || true)"
if [ -n "$soname" ] && [ ! -e "$(dirname "$LIB")/$soname" ] && [ -w "$(dirname "$LIB")" ]; then
    ln -sf "$(basename "$LIB")" "$(dirname "$LIB")/$soname"
fi

export PYTHONPATH="$ROOT/python${PYTHONPATH:+:$PYTHONPATH}"
export SWIFTDDPM_LIBRARY="$LIB"
exec "$PY" "$ROOT/bench/bench.py" "$@"
