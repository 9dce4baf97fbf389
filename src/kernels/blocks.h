// The fused kernels, compiled once per instruction-set path (kernels_<isa>.cpp) and reached
// through that path's table (path_kernels): the work on one block of particles, whose caller
// (features.cpp) cuts the particles into blocks and runs them in parallel, and the dense layout's
// pieces (dense.cpp). Torch-free.
#pragma once
#include <cstdint>
#include <vector>

#include "models/activation.h"
#include "src/kernels/isa.h"

namespace mmdflow {

// Particles per block: P for one block ([kBlock H, Bt]) stays in cache. Noise is drawn per block.
constexpr int64_t kBlock = 128;

struct Dims {
  int64_t H, d, o;
};

// Raw pointers to contiguous particles; a and b are null without biases.
template <typename T>
struct View {
  T *A, *a, *B, *b;  // [n, H, d], [n, H], [n, o, H], [n, o]

  View shift(const Dims& s, int64_t i) const {  // from particle i on
    auto at = [](T* p, int64_t k) { return p ? p + k : nullptr; };
    return {A + i * s.H * s.d, at(a, i * s.H), B + i * s.o * s.H, at(b, i * s.o)};
  }
};

// C[m, n] = A[m, k] B[k, n], contiguous, on the calling thread: the products a path does not tile
// itself (BLAS).
template <typename T>
using Product = void (*)(const T* A, const T* B, T* C, int64_t m, int64_t n, int64_t k);

// The operands every block of one call shares.
template <typename T>
struct BlockArgs {
  Dims s;
  int64_t Bt;
  const T* X;     // [Bt, d]
  const T* Xt;    // [d, Bt]
  const T* W;     // [o, Bt], gradients only
  double gparam;  // the parameter of G
  double beta;    // noise scale: gradients at z + beta w when non-zero
  double step;    // descent: z -= step g
  Product<T> product;
};

// Per-thread storage, sized on first use.
template <typename T>
struct BlockScratch {
  std::vector<T> P, E, D, noisy, grad;
  std::vector<float> w;
};

// keys[j]: the noise stream of the block's j-th tensor among A, a, B, b (those present).
template <typename T>
struct BlockKernels {
  // out[k, b] += sum over the n particles of z of G(u_k(x_b)); out [o, Bt].
  void (*feature_sum)(const BlockArgs<T>& args, const View<T>& z, int64_t n,
                      BlockScratch<T>& scratch, double* out);
  // The gradient at z (+ beta w) of sum_b W_b^T phi(x_b), into g when g.A is set; else applied at
  // once, z -= step g, and not kept. Returns the block's sum of squared gradient coordinates.
  double (*grad)(const BlockArgs<T>& args, const View<T>& z, const View<T>& g, int64_t n,
                 const uint64_t* keys, BlockScratch<T>& scratch);
};

// dst = src + beta w for n particles (dst may be src).
template <typename T>
using Perturb = void (*)(const View<T>& src, const View<T>& dst, const Dims& s, int64_t n,
                         double beta, const uint64_t* keys, std::vector<float>& w);

// The dense layout's pieces (dense.cpp), row-major, on the calling thread.
template <typename T>
struct DenseKernels {
  // C[m, n] (+)= op(A)[m, k] B[k, n]: op(A) = A [m, k] or, with trans_a, A^T for A [k, m]; row
  // strides lda, ldb, ldc. Null on the generic path (BLAS).
  void (*gemm)(bool trans_a, bool accumulate, int64_t m, int64_t n, int64_t k, const T* A,
               int64_t lda, const T* B, int64_t ldb, T* C, int64_t ldc);
  // Output units r0 .. r0 + rows - 1 (unit r is output r / N of particle r % N) at B inputs:
  // u = UT[r, b] + bias[r]. fs[k, b] += G(u) when fs is set; E[r, b] = Wt[k, b] G'(u) (may be
  // UT) and gb[r] = sum_b E[r, b] when E is set. UT, E [rows, B]; Wt, fs [o, B]; bias, gb [rows].
  void (*outputs)(const OutputFn& g, int64_t rows, int64_t B, int64_t r0, int64_t N, const T* UT,
                  const T* bias, const T* Wt, T* E, T* gb, double* fs);
  // S = s(H), len elements.
  void (*activate)(Activation s, const T* H, T* S, int64_t len);
  // Columns [0, cols) of rows [0, rows) (row stride ld): D = D s'(H), colsum[j] = sum over rows.
  void (*backprop)(Activation s, int64_t rows, int64_t cols, int64_t ld, const T* H, T* D,
                   T* colsum);
  // dst = src + beta w (w drawn in float32), len elements; dst may be src.
  void (*add_noise)(const T* src, const float* w, double beta, T* dst, int64_t len);
  // Returns sum_k g_k^2 and, given z, applies z -= step g.
  double (*sq_then_step)(const T* g, T* z, int64_t len, double step);
};

// One path's kernels. gemm_f32 and gemm_f64 are null on the generic path (BLAS does its products).
struct PathKernels {
  void (*gemm_f32)(int64_t m, int64_t n, int64_t k, const float* A, int64_t lda, const float* B,
                   int64_t ldb, float* C, int64_t ldc);
  void (*gemm_f64)(int64_t m, int64_t n, int64_t k, const double* A, int64_t lda, const double* B,
                   int64_t ldb, double* C, int64_t ldc);
  void (*fill_normal)(float* out, int64_t n, uint64_t key);
  // The block kernels of (H, s, G), H in 1..kFusedHidden.
  BlockKernels<float> (*blocks_f32)(int H, Activation s, OutputKind g);
  BlockKernels<double> (*blocks_f64)(int H, Activation s, OutputKind g);
  Perturb<float> perturb_f32;
  Perturb<double> perturb_f64;
  DenseKernels<float> dense_f32;
  DenseKernels<double> dense_f64;
};

// The fused kernel's loops take H as a compile-time constant, up to this.
constexpr int kFusedHidden = 4;

// The table of `isa` (blocks.cpp).
const PathKernels& path_kernels(Isa isa);

}  // namespace mmdflow
