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

StepStats mmd_step(const ParticleFamily& fam, Particles& z, const at::Tensor& X,
                   const at::Tensor& Y, const StepOptions& opt) {
  const int64_t Bt = X.size(0);
  StepStats st;
  at::Tensor r = residual(fam, z, X, Y, opt.chunk, opt.impl);  // [Bt, o], clean particles
  st.loss = r.square().sum() / (2.0 * Bt);
  at::Tensor W = r / double(Bt);  // grad h^(z) = grad_z sum_b phi_z(x_b)^T W_b
  if (opt.clean_grad_sq)  // before the step: the clean particles' gradient, for the log
    st.grad_sq = opt.beta == 0.0 ? at::Tensor()
                                 : mean_sq_norm(weighted_grad(fam, z, X, W, opt.chunk, opt.impl));
  st.noisy_grad_sq = descend(fam, z, X, W, opt.step_size, opt.chunk, opt.impl,
                             Noise{opt.beta, opt.noise_seed});
  if (opt.clean_grad_sq && opt.beta == 0.0) st.grad_sq = st.noisy_grad_sq;
  return st;
}

}  // namespace mmdflow
