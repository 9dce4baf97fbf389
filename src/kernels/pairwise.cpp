#include "src/kernels/pairwise.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "src/kernels/isa.h"

namespace mmdflow {

// Each path's loops, from its pairwise_<isa>.cpp.
namespace generic {
extern const PairLoops kPairLoops;
}
#if defined(__x86_64__) || defined(__i386__)
namespace avx2 {
extern const PairLoops kPairLoops;
}
namespace avx512 {
extern const PairLoops kPairLoops;
}
#endif

namespace {

const PairLoops& pair_loops(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  if (isa == Isa::Avx512) return avx512::kPairLoops;
  if (isa == Isa::Avx2) return avx2::kPairLoops;
#endif
  return generic::kPairLoops;
}

void check(const PairKernelSpec& k, const at::Tensor& P, const at::Tensor& S) {
  TORCH_CHECK(P.dim() == 2 && S.dim() == 2 && P.size(1) == S.size(1) && P.size(1) > 0,
              "pair sums: P [n, d] and S [m, d] with d > 0 expected, got ", P.sizes(), " and ",
              S.sizes());
  TORCH_CHECK(P.scalar_type() == S.scalar_type() &&
                  (P.scalar_type() == at::kFloat || P.scalar_type() == at::kDouble),
              "pair sums: P and S must both be float32 or both float64, got ", P.scalar_type(),
              " and ", S.scalar_type());
  TORCH_CHECK(P.device() == S.device(), "pair sums: P is on ", P.device(), ", S on ", S.device());
  TORCH_CHECK(k.bandwidth > 0 && std::isfinite(k.bandwidth) && k.c > 0 && std::isfinite(k.c),
              "kernel ", name_of(k.kind), ": bandwidth and c must be positive and finite, got ",
              k.bandwidth, " and ", k.c);
}

// k(x, y) from the differences e = x - y [..., d] -> [...]; given coef, the c of
// grad_1 k = c direction(e) too.
at::Tensor kernel_of(const PairKernelSpec& k, const at::Tensor& e, at::Tensor* coef) {
  const double s = k.bandwidth, inv_s2 = 1 / (s * s);
  switch (k.kind) {
    case PairKernel::Gaussian: {
      at::Tensor v = at::exp(e.square().sum(-1) * (-0.5 * inv_s2));
      if (coef) *coef = v * -inv_s2;
      return v;
    }
    case PairKernel::Laplace: {
      at::Tensor v = at::exp(e.abs().sum(-1) * (-1 / s));
      if (coef) *coef = v * (-1 / s);
      return v;
    }
    case PairKernel::Imq: {
      at::Tensor v = at::rsqrt(e.square().sum(-1) * inv_s2 + k.c * k.c);
      if (coef) *coef = v.pow(3) * -inv_s2;
      return v;
    }
    case PairKernel::Energy: {
      // The norm's backward is 0 at x = y, as the fused path's gradient.
      at::Tensor r = at::linalg_vector_norm(e, 2, {-1});
      if (coef) *coef = at::where(r > 0, -r.reciprocal(), at::zeros_like(r));
      return -r;
    }
  }
  TORCH_CHECK(false, "unknown pair kernel");
}

at::Tensor direction(PairKernel kind, const at::Tensor& e) {
  return kind == PairKernel::Laplace ? e.sign() : e;
}

template <typename T>
auto rows_fn(const PairLoops& loops) {
  if constexpr (std::is_same_v<T, float>) {
    return loops.rows_f32;
  } else {
    return loops.rows_f64;
  }
}

}  // namespace

PairSums pair_sums(const PairKernelSpec& k, const at::Tensor& P, const at::Tensor& S,
                   bool with_grad) {
  check(k, P, S);
  if (!P.device().is_cpu()) return pair_sums_aten(k, P, S, with_grad);
  const at::Tensor p = P.contiguous();
  const int64_t n = P.size(0), m = S.size(0), d = P.size(1), ldS = (m + 15) / 16 * 16;
  // CPU storage is 64-byte aligned: every tile of every row of St starts on a 64-byte boundary.
  at::Tensor St = at::empty({d, ldS}, P.options());
  St.narrow(1, 0, m).copy_(S.t());
  TORCH_INTERNAL_ASSERT(reinterpret_cast<uintptr_t>(St.data_ptr()) % 64 == 0);
  PairSums out;
  out.value = at::empty({n}, P.options());
  if (with_grad) out.grad = at::empty({n, d}, P.options());
  const PairLoops& loops = pair_loops(active_isa());
  // At least ~2^15 pairs per task.
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(1, m * d));
  AT_DISPATCH_FLOATING_TYPES(P.scalar_type(), "pair_sums", [&] {
    const PairRows<scalar_t> a{p.data_ptr<scalar_t>(),
                               St.data_ptr<scalar_t>(),
                               m,
                               d,
                               ldS,
                               out.value.data_ptr<scalar_t>(),
                               with_grad ? out.grad.data_ptr<scalar_t>() : nullptr};
    const auto rows = rows_fn<scalar_t>(loops);
    at::parallel_for(0, n, grain, [&](int64_t i0, int64_t i1) { rows(k, a, i0, i1); });
  });
  return out;
}

PairSums pair_sums_aten(const PairKernelSpec& k, const at::Tensor& P, const at::Tensor& S,
                        bool with_grad) {
  check(k, P, S);
  const int64_t n = P.size(0), m = S.size(0), d = P.size(1), budget = int64_t(1) << 22;
  // Tiles of ni x nj pairs, ni nj d <= 2^22 (at least one pair); sums over tiles in float64.
  const int64_t nj = std::max<int64_t>(1, std::min(m, budget / d));
  const int64_t ni = std::max<int64_t>(1, budget / (nj * d));
  const auto acc = P.options().dtype(at::kDouble);
  at::Tensor V = at::zeros({n}, acc), G = with_grad ? at::zeros({n, d}, acc) : at::Tensor();
  for (int64_t i0 = 0; i0 < n; i0 += ni) {
    const int64_t ri = std::min(ni, n - i0);
    const at::Tensor p = P.narrow(0, i0, ri).unsqueeze(1);  // [ri, 1, d]
    for (int64_t j0 = 0; j0 < m; j0 += nj) {
      const at::Tensor e = p - S.narrow(0, j0, std::min(nj, m - j0)).unsqueeze(0);  // [ri, rj, d]
      at::Tensor c;
      V.narrow(0, i0, ri).add_(kernel_of(k, e, with_grad ? &c : nullptr).sum(1));
      if (with_grad) G.narrow(0, i0, ri).add_((c.unsqueeze(-1) * direction(k.kind, e)).sum(1));
    }
  }
  return {V.to(P.scalar_type()), with_grad ? G.to(P.scalar_type()) : at::Tensor()};
}

at::Tensor kernel_matrix(const PairKernelSpec& k, const at::Tensor& X, const at::Tensor& Y) {
  check(k, X, Y);
  return kernel_of(k, X.unsqueeze(1) - Y.unsqueeze(0), nullptr);
}

at::Tensor kernel_grad_matrix(const PairKernelSpec& k, const at::Tensor& X, const at::Tensor& Y) {
  check(k, X, Y);
  const at::Tensor e = X.unsqueeze(1) - Y.unsqueeze(0);  // [n, m, d]
  at::Tensor c;
  kernel_of(k, e, &c);
  return c.unsqueeze(-1) * direction(k.kind, e);
}

}  // namespace mmdflow
