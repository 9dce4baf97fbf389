#include "src/flow.h"

#include <ATen/ATen.h>

namespace mmdflow {

at::Tensor residual(const ParticleFamily& fam, const Particles& z, const at::Tensor& X,
                    const at::Tensor& Y, int64_t chunk, Impl impl) {
  return feature_sum(fam, z, X, chunk, impl) / double(z.size()) - Y;
}

at::Tensor half_mse(const ParticleFamily& fam, const Particles& z, const at::Tensor& X,
                    const at::Tensor& Y, int64_t batch, int64_t chunk) {
  const int64_t n = X.size(0);
  at::Tensor total = at::zeros({}, X.options().dtype(at::kDouble));
  for (int64_t lo = 0; lo < n; lo += batch) {
    const int64_t len = std::min(batch, n - lo);
    auto r = residual(fam, z, X.narrow(0, lo, len), Y.narrow(0, lo, len), chunk);
    total += r.to(at::kDouble).square().sum();
  }
  return total / (2.0 * n);
}

Particles perturb(const Particles& z, double beta, at::Generator& gen) {
  Particles zn;
  auto noisy = [&](const at::Tensor& t) {
    return t + beta * at::normal(0.0, 1.0, t.sizes(), gen, t.options());
  };
  zn.A = noisy(z.A);
  if (z.a.defined()) zn.a = noisy(z.a);
  zn.B = noisy(z.B);
  if (z.b.defined()) zn.b = noisy(z.b);
  return zn;
}

StepStats mmd_step(const ParticleFamily& fam, Particles& z, const at::Tensor& X,
                   const at::Tensor& Y, const StepOptions& opt, at::Generator& gen) {
  const int64_t Bt = X.size(0);
  StepStats st;
  at::Tensor r = residual(fam, z, X, Y, opt.chunk, opt.impl);  // [Bt, o], clean particles
  st.loss = r.square().sum() / (2.0 * Bt);
  at::Tensor W = r / double(Bt);  // grad h^(z) = grad_z sum_b phi_z(x_b)^T W_b
  Particles g;
  if (opt.beta == 0.0) {
    g = weighted_grad(fam, z, X, W, opt.chunk, opt.impl);
    st.noisy_grad_sq = mean_sq_norm(g);
    if (opt.clean_grad_sq) st.grad_sq = st.noisy_grad_sq;
  } else {
    g = weighted_grad(fam, perturb(z, opt.beta, gen), X, W, opt.chunk, opt.impl);
    st.noisy_grad_sq = mean_sq_norm(g);
    if (opt.clean_grad_sq) st.grad_sq = mean_sq_norm(weighted_grad(fam, z, X, W, opt.chunk, opt.impl));
  }
  auto gt = g.tensors();
  auto zt = z.tensors();
  for (size_t i = 0; i < zt.size(); ++i) zt[i]->add_(*gt[i], -opt.step_size);
  return st;
}

}  // namespace mmdflow
