#include "src/kernels/gemm.h"

#include <stdexcept>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define MMDFLOW_GEMM_AVX2 1
#endif

namespace mmdflow {

#ifdef MMDFLOW_GEMM_AVX2
namespace {

// One tile: rows [0, MR) x vectors [0, NV) of 8 columns, accumulated in registers over k. Tail:
// the last vector is partial and loaded and stored under `mask`. MR x NV <= 12 accumulators, so
// it fits AVX2's 16 registers.
template <int MR, int NV, bool Tail>
inline void tile(int64_t k, const float* __restrict A, int64_t lda, const float* __restrict B,
                 int64_t ldb, float* __restrict C, int64_t ldc, __m256i mask) {
  __m256 acc[MR * NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR * NV; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t kk = 0; kk < k; ++kk) {
    const float* bk = B + kk * ldb;
    __m256 b[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV - Tail; ++j) b[j] = _mm256_loadu_ps(bk + 8 * j);
    if constexpr (Tail) b[NV - 1] = _mm256_maskload_ps(bk + 8 * (NV - 1), mask);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m256 a = _mm256_broadcast_ss(A + r * lda + kk);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[r * NV + j] = _mm256_fmadd_ps(a, b[j], acc[r * NV + j]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 4
    for (int j = 0; j < NV - Tail; ++j) _mm256_storeu_ps(C + r * ldc + 8 * j, acc[r * NV + j]);
    if constexpr (Tail) _mm256_maskstore_ps(C + r * ldc + 8 * (NV - 1), mask, acc[r * NV + NV - 1]);
  }
}

constexpr int kRows = 6;

// Every row of one column panel: tiles of kRows rows, then one tile of the remaining rows.
template <int NV, bool Tail>
void panel(int64_t m, int64_t k, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
           int64_t ldc, __m256i mask) {
  for (; m >= kRows; m -= kRows, A += kRows * lda, C += kRows * ldc)
    tile<kRows, NV, Tail>(k, A, lda, B, ldb, C, ldc, mask);
  switch (m) {
    case 1: return tile<1, NV, Tail>(k, A, lda, B, ldb, C, ldc, mask);
    case 2: return tile<2, NV, Tail>(k, A, lda, B, ldb, C, ldc, mask);
    case 3: return tile<3, NV, Tail>(k, A, lda, B, ldb, C, ldc, mask);
    case 4: return tile<4, NV, Tail>(k, A, lda, B, ldb, C, ldc, mask);
    case 5: return tile<5, NV, Tail>(k, A, lda, B, ldb, C, ldc, mask);
    default: return;
  }
}

}  // namespace

bool gemm_f32_supported() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}

void gemm_f32(int64_t m, int64_t n, int64_t k, const float* A, int64_t lda, const float* B,
              int64_t ldb, float* C, int64_t ldc) {
  const __m256i all = _mm256_set1_epi32(-1);
  int64_t c = 0;
  for (; c + 16 <= n; c += 16) panel<2, false>(m, k, A, lda, B + c, ldb, C + c, ldc, all);
  const int64_t rest = n - c;  // 0..15 columns: one or two vectors, the last one partial
  if (rest == 0) return;
  const int last = int(rest % 8 == 0 ? 8 : rest % 8);
  const __m256i mask =
      _mm256_cmpgt_epi32(_mm256_set1_epi32(last), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  if (rest > 8) return panel<2, true>(m, k, A, lda, B + c, ldb, C + c, ldc, mask);
  panel<1, true>(m, k, A, lda, B + c, ldb, C + c, ldc, mask);
}

#else  // no AVX2 + FMA in this build: BLAS does the products

bool gemm_f32_supported() { return false; }

void gemm_f32(int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t, float*,
              int64_t) {
  throw std::logic_error("gemm_f32: built without AVX2 and FMA");
}

#endif

}  // namespace mmdflow
