// The BLAS the engine links: OpenBLAS on Linux (Debian's libopenblas-dev).
#ifndef DDPM_CBLAS_SHIM_H
#define DDPM_CBLAS_SHIM_H
#include <cblas.h>
#endif
