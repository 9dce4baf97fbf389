// Single-threaded float32 matrix products for the fused kernel: C = A B, row-major, register-tiled
// (6 rows x 16 columns a tile, AVX2 + FMA), no packing. Sized for the flow's first-layer products,
// whose inner dimension (d or B) is small and whose operands stay in cache. Torch-free.
#pragma once
#include <cstdint>

namespace mmdflow {

// True when this build and this CPU run the kernel (AVX2 and FMA); callers use BLAS otherwise.
bool gemm_f32_supported();

// C[m, n] = A[m, k] B[k, n]; lda, ldb, ldc are row strides in elements.
void gemm_f32(int64_t m, int64_t n, int64_t k, const float* A, int64_t lda, const float* B,
              int64_t ldb, float* C, int64_t ldc);

}  // namespace mmdflow
