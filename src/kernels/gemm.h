// Single-threaded register-tiled matrix products C = A B (row-major, no packing) of the fused
// kernel, on the avx2 (6 rows x 2 vectors of 8 floats) or avx512 path (6 rows x 4 vectors of 16
// floats); the generic path has none and leaves its products to BLAS. Sized for the flow's
// first-layer products, whose inner dimension (d or B) is small and whose operands stay in cache.
// Torch-free.
#pragma once
#include <cstdint>

#include "src/kernels/isa.h"

namespace mmdflow {

// True when `isa` has product tiles (avx2, avx512).
bool gemm_supported(Isa isa);
// The same for the active path (active_isa()), and its float32 product.
bool gemm_f32_supported();
void gemm_f32(int64_t m, int64_t n, int64_t k, const float* A, int64_t lda, const float* B,
              int64_t ldb, float* C, int64_t ldc);

// C[m, n] = A[m, k] B[k, n] with the tiles of `isa`; lda, ldb, ldc are row strides in elements.
void gemm(Isa isa, int64_t m, int64_t n, int64_t k, const float* A, int64_t lda, const float* B,
          int64_t ldb, float* C, int64_t ldc);
void gemm(Isa isa, int64_t m, int64_t n, int64_t k, const double* A, int64_t lda, const double* B,
          int64_t ldb, double* C, int64_t ldc);

}  // namespace mmdflow
