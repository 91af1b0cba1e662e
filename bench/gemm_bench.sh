#!/bin/sh
# Builds bench/gemm_bench.c with the engine's kernels (the flags of Package.swift's DDPMKernels
# target, no -march) and runs it twice: OpenBLAS as it picks its kernels, then with its AVX-512
# (Cooperlake) kernels. Arguments go to gemm_bench (--isa, --quick, --only). Run it under `nice`
# on a quiet machine; it prints the load first.
set -e
cd "$(dirname "$0")/.."
out=${TMPDIR:-/tmp}/gemm_bench.$$
${CC:-clang} -O3 ${CFLAGS:-} -ffp-contract=off -fno-math-errno -std=gnu11 -ISources/DDPMKernels/include -ISources/DDPMKernels \
  bench/gemm_bench.c Sources/DDPMKernels/*.c $(pkg-config --cflags --libs openblas) -lpthread -lm -o "$out"
echo "# $(uptime)"
"$out" "$@"
OPENBLAS_CORETYPE=Cooperlake "$out" "$@"
echo "# $(uptime)"
rm -f "$out"
