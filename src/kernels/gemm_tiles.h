// Register-tiled products C = A B (row-major, no packing) for one instruction-set path: included by
// the path's kernels_<isa>.cpp and compiled with its flags. A tile keeps kRows x NV vectors of C in
// registers over k: each k broadcasts kRows values of A and loads NV vectors of B's row. The last
// vector of a panel may be partial: loaded and stored under a mask. Sized for the flow's
// first-layer products, whose inner dimension (d or B) is small and whose operands stay in cache.
// Included below kernels_impl.h's target switch: the path's macro (MMDFLOW_ISA_AVX512 or
// MMDFLOW_ISA_AVX2) picks the tiles, since the compiler's own ISA macros do not follow the switch.
#pragma once
#include <cstdint>
#if defined(MMDFLOW_ISA_AVX512) || defined(MMDFLOW_ISA_AVX2)
#include <immintrin.h>
#endif

namespace mmdflow {
namespace MMDFLOW_ISA_NS {

#if defined(MMDFLOW_ISA_AVX512)
#define MMDFLOW_TILES 1
// 6 x 4 vectors: 24 accumulators, 4 rows of B and a broadcast in 32 registers.
constexpr int kTileVectors = 4;
template <typename T>
struct Vec;
template <>
struct Vec<float> {
  using R = __m512;
  using Mask = __mmask16;
  static constexpr int kLanes = 16;
  static Mask mask(int n) { return Mask((1u << n) - 1); }
  static R zero() { return _mm512_setzero_ps(); }
  static R set1(float v) { return _mm512_set1_ps(v); }
  static R load(const float* p) { return _mm512_loadu_ps(p); }
  static R load(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
  static void store(float* p, R v) { _mm512_storeu_ps(p, v); }
  static void store(float* p, R v, Mask m) { _mm512_mask_storeu_ps(p, m, v); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
};
template <>
struct Vec<double> {
  using R = __m512d;
  using Mask = __mmask8;
  static constexpr int kLanes = 8;
  static Mask mask(int n) { return Mask((1u << n) - 1); }
  static R zero() { return _mm512_setzero_pd(); }
  static R set1(double v) { return _mm512_set1_pd(v); }
  static R load(const double* p) { return _mm512_loadu_pd(p); }
  static R load(const double* p, Mask m) { return _mm512_maskz_loadu_pd(m, p); }
  static void store(double* p, R v) { _mm512_storeu_pd(p, v); }
  static void store(double* p, R v, Mask m) { _mm512_mask_storeu_pd(p, m, v); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_pd(a, b, c); }
};
#elif defined(MMDFLOW_ISA_AVX2)
#define MMDFLOW_TILES 1
// 6 x 2 vectors: 12 accumulators, 2 rows of B and a broadcast in 16 registers.
constexpr int kTileVectors = 2;
template <typename T>
struct Vec;
template <>
struct Vec<float> {
  using R = __m256;
  using Mask = __m256i;
  static constexpr int kLanes = 8;
  static Mask mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static R zero() { return _mm256_setzero_ps(); }
  static R set1(float v) { return _mm256_set1_ps(v); }
  static R load(const float* p) { return _mm256_loadu_ps(p); }
  static R load(const float* p, Mask m) { return _mm256_maskload_ps(p, m); }
  static void store(float* p, R v) { _mm256_storeu_ps(p, v); }
  static void store(float* p, R v, Mask m) { _mm256_maskstore_ps(p, m, v); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
};
template <>
struct Vec<double> {
  using R = __m256d;
  using Mask = __m256i;
  static constexpr int kLanes = 4;
  static Mask mask(int n) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
  }
  static R zero() { return _mm256_setzero_pd(); }
  static R set1(double v) { return _mm256_set1_pd(v); }
  static R load(const double* p) { return _mm256_loadu_pd(p); }
  static R load(const double* p, Mask m) { return _mm256_maskload_pd(p, m); }
  static void store(double* p, R v) { _mm256_storeu_pd(p, v); }
  static void store(double* p, R v, Mask m) { _mm256_maskstore_pd(p, m, v); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_pd(a, b, c); }
};
#endif

#ifdef MMDFLOW_TILES
constexpr int kTileRows = 6;

// How a product reads and writes: op(A)[r, kk] is A[r lda + kk], or A[kk lda + r] with TransA; Acc
// adds to C instead of overwriting it.
template <bool TransA, bool Acc>
struct Op {
  static constexpr bool kTransA = TransA, kAcc = Acc;
  static int64_t at(int64_t r, int64_t kk, int64_t lda) {
    return TransA ? kk * lda + r : r * lda + kk;
  }
  static int64_t row_step(int64_t lda) { return TransA ? 1 : lda; }
};

// Rows [0, MR) x vectors [0, NV) of C, accumulated over k; with Tail the last vector is partial.
template <typename T, typename O, int MR, int NV, bool Tail>
inline void tile(int64_t k, const T* __restrict A, int64_t lda, const T* __restrict B, int64_t ldb,
                 T* __restrict C, int64_t ldc, typename Vec<T>::Mask mask) {
  using V = Vec<T>;
  constexpr int L = V::kLanes;
  typename V::R acc[MR * NV];
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      if constexpr (O::kAcc) {
        acc[r * NV + j] =
            Tail && j == NV - 1 ? V::load(C + r * ldc + L * j, mask) : V::load(C + r * ldc + L * j);
      } else {
        acc[r * NV + j] = V::zero();
      }
    }
  }
  for (int64_t kk = 0; kk < k; ++kk) {
    const T* bk = B + kk * ldb;
    typename V::R b[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV - Tail; ++j) b[j] = V::load(bk + L * j);
    if constexpr (Tail) b[NV - 1] = V::load(bk + L * (NV - 1), mask);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const typename V::R a = V::set1(A[O::at(r, kk, lda)]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[r * NV + j] = V::fma(a, b[j], acc[r * NV + j]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 4
    for (int j = 0; j < NV - Tail; ++j) V::store(C + r * ldc + L * j, acc[r * NV + j]);
    if constexpr (Tail) V::store(C + r * ldc + L * (NV - 1), acc[r * NV + NV - 1], mask);
  }
}

// Every row of one column panel: tiles of kTileRows rows, then one tile of the remaining rows.
template <typename T, typename O, int NV, bool Tail>
void panel(int64_t m, int64_t k, const T* A, int64_t lda, const T* B, int64_t ldb, T* C,
           int64_t ldc, typename Vec<T>::Mask mask) {
  const int64_t step = kTileRows * O::row_step(lda);
  for (; m >= kTileRows; m -= kTileRows, A += step, C += kTileRows * ldc)
    tile<T, O, kTileRows, NV, Tail>(k, A, lda, B, ldb, C, ldc, mask);
  switch (m) {
    case 1: return tile<T, O, 1, NV, Tail>(k, A, lda, B, ldb, C, ldc, mask);
    case 2: return tile<T, O, 2, NV, Tail>(k, A, lda, B, ldb, C, ldc, mask);
    case 3: return tile<T, O, 3, NV, Tail>(k, A, lda, B, ldb, C, ldc, mask);
    case 4: return tile<T, O, 4, NV, Tail>(k, A, lda, B, ldb, C, ldc, mask);
    case 5: return tile<T, O, 5, NV, Tail>(k, A, lda, B, ldb, C, ldc, mask);
    default: return;
  }
}

// The last panel: NV - 1 whole vectors and a partial one.
template <typename T, typename O, int NV>
void tail_panel(int nv, int64_t m, int64_t k, const T* A, int64_t lda, const T* B, int64_t ldb,
                T* C, int64_t ldc, typename Vec<T>::Mask mask) {
  if constexpr (NV > 1) {
    if (nv < NV) return tail_panel<T, O, NV - 1>(nv, m, k, A, lda, B, ldb, C, ldc, mask);
  }
  panel<T, O, NV, true>(m, k, A, lda, B, ldb, C, ldc, mask);
}

// C[m, n] (+)= op(A)[m, k] B[k, n] (Op); lda, ldb, ldc are row strides in elements.
template <typename T, typename O>
void gemm_op(int64_t m, int64_t n, int64_t k, const T* A, int64_t lda, const T* B, int64_t ldb,
             T* C, int64_t ldc) {
  using V = Vec<T>;
  constexpr int64_t kPanel = int64_t(kTileVectors) * V::kLanes;
  int64_t c = 0;
  for (; c + kPanel <= n; c += kPanel)
    panel<T, O, kTileVectors, false>(m, k, A, lda, B + c, ldb, C + c, ldc, V::mask(V::kLanes));
  const int64_t rest = n - c;  // 0 .. kPanel - 1 columns, the last vector partial
  if (rest == 0) return;
  const int nv = int((rest + V::kLanes - 1) / V::kLanes);
  const int last = int(rest - int64_t(nv - 1) * V::kLanes);
  tail_panel<T, O, kTileVectors>(nv, m, k, A, lda, B + c, ldb, C + c, ldc, V::mask(last));
}

// C[m, n] = A[m, k] B[k, n].
template <typename T>
void gemm_tiles(int64_t m, int64_t n, int64_t k, const T* A, int64_t lda, const T* B, int64_t ldb,
                T* C, int64_t ldc) {
  gemm_op<T, Op<false, false>>(m, n, k, A, lda, B, ldb, C, ldc);
}

// C[m, n] (+)= op(A)[m, k] B[k, n], op(A) = A or A^T, by the flags.
template <typename T>
void gemm_flags(bool trans_a, bool accumulate, int64_t m, int64_t n, int64_t k, const T* A,
                int64_t lda, const T* B, int64_t ldb, T* C, int64_t ldc) {
  if (trans_a) {
    if (accumulate) return gemm_op<T, Op<true, true>>(m, n, k, A, lda, B, ldb, C, ldc);
    return gemm_op<T, Op<true, false>>(m, n, k, A, lda, B, ldb, C, ldc);
  }
  if (accumulate) return gemm_op<T, Op<false, true>>(m, n, k, A, lda, B, ldb, C, ldc);
  gemm_op<T, Op<false, false>>(m, n, k, A, lda, B, ldb, C, ldc);
}
#endif

}  // namespace MMDFLOW_ISA_NS
}  // namespace mmdflow
