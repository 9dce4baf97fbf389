#include "src/flow/samples.h"

#include <ATen/ATen.h>

#include <vector>

#include "src/base/random.h"
#include "src/kernels/features.h"
#include "src/kernels/normal.h"
#include "src/kernels/sliced.h"

namespace mmdflow {
namespace {

constexpr int64_t kPairTile =
    1 << 15;  // pair entries of a [rows, M, d] block: small, cache-resident
// The sliced directions' stream of a step's noise seed: past any noise block's index (point_noise
// keys block b with stream b).
constexpr uint64_t kSliceStream = uint64_t(1) << 62;

// sum_m a_m grad_1 k(p_i, u_m) [n, d] in blocks of rows: O(rows M d) memory at once.
at::Tensor weighted_grad(const PairKernelSpec& k, const at::Tensor& P, const at::Tensor& U,
                         const at::Tensor& a) {  // P [n, d], U [M, d], a [M]
  at::Tensor out = at::zeros_like(P);
  const int64_t n = P.size(0), M = U.size(0), d = P.size(1);
  const int64_t rows = std::max<int64_t>(1, kPairTile / std::max<int64_t>(1, M * d));
  const at::Tensor w = a.to(P.scalar_type()).view({1, M, 1});
  for (int64_t i = 0; i < n; i += rows) {
    const int64_t len = std::min(rows, n - i);
    out.narrow(0, i, len).copy_((kernel_grad_matrix(k, P.narrow(0, i, len), U) * w).sum(1));
  }
  return out;
}

// Sobolev descent in sample space (docs/math.md): the dictionary x_b = (Z; U), B = N + M;
// r_b = h(x_b); J_{b,n} = grad_1 k(z_n, x_b); S = (1/(N B)) sum_n J_{., n} J_{., n}^T;
// alpha = (S + eps I)^{-1} r; g_n = (1/B) sum_b alpha_b J_{b, n}, for the shard's rows n.
// Every process builds S whole from Z (no sum across processes: the same bits everywhere).
at::Tensor sobolev_grad(const SampleTarget& t, const at::Tensor& Z, const Shard& rows, double eps) {
  const int64_t N = Z.size(0), M = t.size(), d = Z.size(1), B = N + M;
  const at::Tensor X = at::cat({Z, t.U.to(Z.scalar_type())});                    // [B, d]
  const at::Tensor r = mmd_row_terms(t, X, Z);                                   // [B, 2]
  const at::Tensor h = r.select(1, 0) / double(N) - r.select(1, 1) / double(M);  // [B]
  const at::Tensor J = kernel_grad_matrix(t.kernel, Z, X).to(at::kDouble);       // [N, B, d]
  const at::Tensor Jb = J.permute({1, 0, 2}).reshape({B, N * d});                // [B, N d]
  const at::Tensor S =
      at::mm(Jb, Jb.t()) / double(N * B) + eps * at::eye(B, Jb.options());        // [B, B]
  const at::Tensor alpha = at::linalg_solve(S, h.unsqueeze(1));                   // [B, 1]
  const at::Tensor Js = J.narrow(0, rows.begin, rows.size());                     // [n, B, d]
  return (Js * alpha.view({1, B, 1})).sum(1).div(double(B)).to(Z.scalar_type());  // [n, d]
}

}  // namespace

SampleTarget make_sample_target(at::Tensor U, const PairKernelSpec& k, Method method,
                                double drmmd_lambda) {
  SampleTarget t;
  t.U = std::move(U);
  t.kernel = k;
  const int64_t M = t.size();
  const at::Tensor uu = pair_sums(k, t.U, t.U, false).value.to(at::kDouble);  // [M]
  t.uu = uu.sum().item<double>() / (double(M) * double(M));
  if (method == Method::DrMMD) {
    t.drmmd_lambda = drmmd_lambda;
    t.kU = uu / double(M);
    const at::Tensor K = kernel_matrix(k, t.U, t.U).to(at::kDouble);
    t.drmmd_chol = at::linalg_cholesky(K + double(M) * drmmd_lambda * at::eye(M, K.options()));
  }
  return t;
}

at::Tensor mmd_row_terms(const SampleTarget& t, const at::Tensor& P, const at::Tensor& Z) {
  const at::Tensor zz = pair_sums(t.kernel, P, Z, false).value;
  const at::Tensor zu = pair_sums(t.kernel, P, t.U, false).value;
  return at::stack({zz, zu}, 1).to(at::kDouble);
}

double half_mmd2_of(const SampleTarget& t, const at::Tensor& terms) {
  const double N = double(terms.size(0)), M = double(t.size());
  const at::Tensor s = terms.to(at::kDouble).contiguous().cpu();
  const double* p = s.data_ptr<double>();
  double zz = 0, zu = 0;
  for (int64_t i = 0; i < s.size(0); ++i) zz += p[2 * i], zu += p[2 * i + 1];
  return 0.5 * (zz / (N * N) - 2 * zu / (N * M) + t.uu);
}

at::Tensor point_noise(const Shard& rows, int64_t d, uint64_t seed, const at::TensorOptions& o) {
  at::Tensor w = at::empty({rows.size(), d}, at::TensorOptions().dtype(at::kFloat));
  float* out = w.data_ptr<float>();
  for (int64_t i = rows.begin; i < rows.end;) {
    const int64_t block = i / kNoiseBlock,
                  block_end = std::min((block + 1) * kNoiseBlock, rows.total);
    std::vector<float> draw(size_t((block_end - block * kNoiseBlock) * d));
    fill_normal(draw.data(), int64_t(draw.size()), sub_seed(seed, uint64_t(block)));
    const int64_t end = std::min(block_end, rows.end);
    std::copy(draw.begin() + (i - block * kNoiseBlock) * d,
              draw.begin() + (end - block * kNoiseBlock) * d, out + (i - rows.begin) * d);
    i = end;
  }
  return w.to(o);
}

at::Tensor drmmd_alpha(const SampleTarget& t, const at::Tensor& Z) {
  const double N = double(Z.size(0));
  const at::Tensor hU =
      pair_sums(t.kernel, t.U.to(Z.scalar_type()), Z, false).value.to(at::kDouble) / N - t.kU;
  return at::cholesky_solve(hU.unsqueeze(1), t.drmmd_chol).squeeze(1);
}

at::Tensor slice_directions(const SampleTarget& t, int64_t d, uint64_t noise_seed,
                            const at::TensorOptions& o) {
  return random_directions(t.slices, d, sub_seed(noise_seed, kSliceStream), o);
}

at::Tensor witness_grad(const SampleTarget& t, const at::Tensor& P, const at::Tensor& Z,
                        Method method, const at::Tensor& alpha, uint64_t noise_seed) {
  const double N = double(Z.size(0)), M = double(t.size());
  const at::Tensor U = t.U.to(P.scalar_type());
  at::Tensor g =
      t.slices > 0
          ? sliced_energy_grad(P, Z, U, slice_directions(t, P.size(1), noise_seed, P.options()))
          : pair_sums(t.kernel, P, Z, true).grad / N - pair_sums(t.kernel, P, U, true).grad / M;
  if (method != Method::DrMMD) return g;
  const double lambda = t.drmmd_lambda;
  return (g - weighted_grad(t.kernel, P, U, alpha)) * (2 * (1 + lambda) / lambda);
}

StepStats samples_step(Points& p, const SampleTarget& t, const StepOptions& opt) {
  const at::Tensor& Z = p.whole();
  at::Tensor z = p.rows();  // [n, d], a view: moved in place
  const Shard rows = p.shard();
  const double N = double(p.size());
  // The rows' share of ||g||^2 / N, per block of rows (src/flow/tree_sum.h).
  auto share = [&](const at::Tensor& g) {
    return tree_share(block_rows(g.to(at::kDouble).square().sum(1)) / N, rows.begin / kNoiseBlock,
                      (rows.total + kNoiseBlock - 1) / kNoiseBlock);
  };
  StepStats st;
  if (opt.method == Method::Sobolev) {
    const at::Tensor g = sobolev_grad(t, Z, rows, opt.sobolev_eps);
    st.noisy_grad_sq = share(g);
    if (opt.clean_grad_sq) st.grad_sq = st.noisy_grad_sq;
    z.sub_(g, opt.step_size);
    return st;
  }
  const at::Tensor alpha = opt.method == Method::DrMMD ? drmmd_alpha(t, Z) : at::Tensor();
  const bool noisy = opt.beta != 0;
  const at::Tensor w =
      noisy ? point_noise(rows, p.dim(), opt.noise_seed, z.options()) : at::Tensor();
  const bool injected = noisy && opt.method != Method::Diffusion;
  const at::Tensor g =
      witness_grad(t, injected ? z + opt.beta * w : z, Z, opt.method, alpha, opt.noise_seed);
  st.noisy_grad_sq = share(g);
  if (opt.clean_grad_sq)
    st.grad_sq = injected ? share(witness_grad(t, z, Z, opt.method, alpha, opt.noise_seed))
                          : st.noisy_grad_sq;
  z.sub_(g, opt.step_size);
  if (noisy && opt.method == Method::Diffusion) z.add_(w, opt.beta);
  return st;
}

}  // namespace mmdflow
