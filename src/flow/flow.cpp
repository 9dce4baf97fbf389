#include "src/flow/flow.h"

#include <ATen/ATen.h>

#include <tuple>

namespace mmdflow {

Reducer& Reducer::local() {
  struct Local : Reducer {
    void sum(at::Tensor&) override {}
  };
  static Local none;
  return none;
}

at::Tensor Reducer::add_up(const TreeShare& s) {
  if (world() == 1) return s.whole();
  at::Tensor table = tree_table(s, rank(), world());
  sum(table);
  return tree_root(table, s, world());
}

at::Tensor residual(const Student& s, const at::Tensor& X, const at::Tensor& Y, Reducer& reduce) {
  const at::Tensor F = reduce.add_up(s.feature_sum(X)).to(X.scalar_type());
  return F / double(s.size()) - Y;
}

TreeShare feature_sums(const Student& s, const at::Tensor& X, int64_t batch) {
  const int64_t n = X.size(0);
  std::vector<TreeShare> parts;
  for (int64_t lo = 0; lo < n; lo += batch)
    parts.push_back(s.feature_sum(X.narrow(0, lo, std::min(batch, n - lo))));
  return side_by_side(parts);
}

at::Tensor half_mse_of(const at::Tensor& F, const at::Tensor& Y, int64_t N, int64_t batch) {
  const int64_t n = F.size(0);
  at::Tensor total = at::zeros({}, F.options().dtype(at::kDouble));
  for (int64_t lo = 0; lo < n; lo += batch) {
    const int64_t len = std::min(batch, n - lo);
    total +=
        (F.narrow(0, lo, len) / double(N) - Y.narrow(0, lo, len)).to(at::kDouble).square().sum();
  }
  return total / (2.0 * n);
}

at::Tensor half_mse(const Student& s, const at::Tensor& X, const at::Tensor& Y, int64_t batch,
                    Reducer& reduce) {
  const at::Tensor F = reduce.add_up(feature_sums(s, X, batch)).view({X.size(0), -1});
  return half_mse_of(F.to(X.scalar_type()), Y, s.size(), batch);
}

namespace {

// A^{-1} B. linalg_solve reads the factorisation's status on the host, on a GPU a synchronisation
// every step; unchecked, a singular A gives non-finite values, which end the run (exit 3).
at::Tensor solve(const at::Tensor& A, const at::Tensor& B) {
  return std::get<0>(at::linalg_solve_ex(A, B, /*left=*/true, /*check_errors=*/false));
}

// W of the DrMMD flow: ((1 + lambda) / lambda) (r - sum_m beta_m phi_m) / B, with
// beta = (K_XX + c lambda I)^{-1} h(X), h(X)_m = (1/B) sum_b phi_m(x_b)^T r_b.
at::Tensor drmmd_weight(const at::Tensor& r, const at::Tensor& Phi, double lambda, double c) {
  const int64_t M = Phi.size(0), B = r.size(0);
  TORCH_CHECK(Phi.dim() == 3 && Phi.size(1) == B && Phi.size(2) == r.size(1),
              "DrMMD target features must be [M, ", B, ", ", r.size(1), "], got ", Phi.sizes());
  at::Tensor F = Phi.reshape({M, -1});                     // [M, B o]
  at::Tensor hX = at::mv(F, r.reshape({-1})) / double(B);  // [M]
  at::Tensor K = at::mm(F, F.t()) / double(B);             // [M, M]
  K = K + c * lambda * at::eye(M, K.options());
  at::Tensor beta = solve(K, hX.unsqueeze(1)).squeeze(1);  // [M]
  at::Tensor target = at::tensordot(beta, Phi, {0}, {0});  // [B, o]
  return (1.0 + lambda) / lambda * (r - target) / double(B);
}

}  // namespace

StepStats flow_step(Student& s, const at::Tensor& X, const at::Tensor& Y, const StepOptions& opt,
                    const at::Tensor& target_features, Reducer& reduce) {
  const int64_t B = X.size(0);
  const Noise noise{opt.beta, opt.noise_seed};
  StepStats st;
  at::Tensor r, gram;                   // [B, o] at the clean particles; Sobolev descent: [B, B]
  if (opt.method == Method::Sobolev) {  // both sums in one
    const at::Tensor both = reduce.add_up(side_by_side({s.feature_sum(X), s.jacobian_gram(X)}));
    const int64_t Bo = Y.numel();
    r = both.narrow(0, 0, Bo).view(Y.sizes()).to(X.scalar_type()) / double(s.size()) - Y;
    gram = both.narrow(0, Bo, B * B).view({B, B}).to(X.scalar_type());
  } else {
    r = residual(s, X, Y, reduce);
  }
  st.loss = r.square().sum() / (2.0 * B);
  at::Tensor W;
  Noise inject;  // noise at which the gradient is taken
  switch (opt.method) {
    case Method::MMD:
      W = r / double(B);
      inject = noise;
      break;
    case Method::Diffusion:
      if (s.diffuses_first() && opt.beta != 0.0) {
        s.perturb_(noise);
        r = residual(s, X, Y, reduce);
      }
      W = r / double(B);
      break;
    case Method::Sobolev: {
      TORCH_CHECK(r.size(1) == 1, "Sobolev descent needs o = 1, got o = ", r.size(1));
      at::Tensor S = gram / double(s.size() * B);
      S = S + opt.sobolev_eps * at::eye(B, S.options());
      W = solve(S, r) / double(B);  // alpha / B
      break;
    }
    case Method::DrMMD: {
      TORCH_CHECK(target_features.defined(), "the DrMMD flow needs its target's features");
      W = drmmd_weight(r, target_features, opt.drmmd_lambda,
                       s.drmmd_ridge(target_features.size(0)));
      inject = noise;
      break;
    }
  }
  if (opt.clean_grad_sq && inject.beta != 0.0) st.grad_sq = s.grad_sq(X, W);
  st.noisy_grad_sq = s.descend(X, W, opt.step_size, inject);
  if (opt.clean_grad_sq && inject.beta == 0.0) st.grad_sq = st.noisy_grad_sq;
  if (opt.method == Method::Diffusion && !s.diffuses_first() && opt.beta != 0.0) s.perturb_(noise);
  return st;
}

}  // namespace mmdflow
