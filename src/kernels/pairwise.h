// Pairwise kernel sums of the samples family: for evaluation points p_i and sources s_j,
//   V[i] = sum_j k(p_i, s_j),   G[i] = sum_j grad_1 k(p_i, s_j),
// in tiles, never an n x m matrix (memory linear in n + m). Kernels, bandwidth s, imq's c:
//   gaussian  exp(-|x - y|^2 / (2 s^2)),             grad -(x - y) / s^2 k
//   laplace   exp(-|x - y|_1 / s), kwgflows' (DrMMD) L1 form,
//             grad -sign(x - y) / s k (sign(0) = 0, autograd's subgradient)
//   imq       (c^2 + |x - y|^2 / s^2)^(-1/2),        grad -(x - y) / s^2 k^3
//   energy    -|x - y| (Riesz, r = 1),               grad -(x - y) / |x - y|, 0 at x = y
// The fused CPU path is deterministic per row: row i's results depend only on p_i and S (a fixed
// order over j), so any split of P's rows, over calls, processes or threads, gives the same bits.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>

#include "src/base/names.h"

namespace mmdflow {

enum class PairKernel { Gaussian, Laplace, Imq, Energy };
template <>
struct Names<PairKernel> {
  static constexpr const char* what = "kernel";
  static constexpr std::array<std::pair<PairKernel, const char*>, 4> table{
      {{PairKernel::Gaussian, "gaussian"},
       {PairKernel::Laplace, "laplace"},
       {PairKernel::Imq, "imq"},
       {PairKernel::Energy, "energy"}}};
};

struct PairKernelSpec {
  PairKernel kind = PairKernel::Gaussian;
  double bandwidth = 1.0;  // s > 0 (unused by energy)
  double c = 1.0;          // imq's c > 0
};

struct PairSums {
  at::Tensor value;  // [n]
  at::Tensor grad;   // [n, d], undefined unless asked
};

// P [n, d], S [m, d]: one dtype (float32 or float64), one device; m = 0 gives zeros. CPU: the fused
// loops of the active instruction-set path (isa.h); other devices: pair_sums_aten.
PairSums pair_sums(const PairKernelSpec& k, const at::Tensor& P, const at::Tensor& S,
                   bool with_grad);
// The same by ATen ops on any device, in tiles of at most ~2^22 pair entries (pairs times d).
PairSums pair_sums_aten(const PairKernelSpec& k, const at::Tensor& P, const at::Tensor& S,
                        bool with_grad);
// k(x_i, y_j) by ATen ops, autograd-friendly: X [n, d], Y [m, d] -> [n, m]. Tests and small
// diagnostics only.
at::Tensor kernel_matrix(const PairKernelSpec& k, const at::Tensor& X, const at::Tensor& Y);
// grad_1 k(x_i, y_j) by ATen ops: [n, m, d] (Sobolev descent's Jacobians, DrMMD's weighted sums:
// O(n m d) memory, small measures only).
at::Tensor kernel_grad_matrix(const PairKernelSpec& k, const at::Tensor& X, const at::Tensor& Y);

// ---- the fused loops of one instruction-set path (pairwise_<isa>.cpp) -------------------------

template <typename T>
struct PairRows {
  const T* P;   // [n, d]
  const T* St;  // [d, ldS]: S transposed, 64-byte aligned, ldS a multiple of 16
  int64_t m, d, ldS;
  T* value;  // [n]
  T* grad;   // [n, d]; null: values only
};

struct PairLoops {
  // Rows [i0, i1) of P, on the calling thread.
  void (*rows_f32)(const PairKernelSpec& k, const PairRows<float>& a, int64_t i0, int64_t i1);
  void (*rows_f64)(const PairKernelSpec& k, const PairRows<double>& a, int64_t i0, int64_t i1);
};

}  // namespace mmdflow
