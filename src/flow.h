// The MMD flow step with noise injection (MATH.md, "The flow"). Stateless: the caller owns the
// particles, the randomness (a noise seed per step) and the schedule. A step is two phases:
//   1. r_b = (1/N) sum_n phi_{z_n}(x_b) - y_b at the clean particles: each shard adds its [Bt, o]
//      feature_sum, the only quantity shards exchange;
//   2. z_n <- z_n - gamma grad h^(z_n + beta w_n), h^(z) = (1/Bt) sum_b phi_z(x_b)^T r_b: local.
#pragma once
#include <ATen/core/Tensor.h>

#include "models/particle_net.h"
#include "src/features.h"

namespace mmdflow {

struct StepOptions {
  double step_size = 0.1;  // gamma
  double beta = 0.0;       // noise level; 0 is the plain flow
  uint64_t noise_seed = 0; // w of this step (see Noise in features.h): a new one every step
  int64_t chunk = 0;       // particles per chunk (0: all at once)
  bool clean_grad_sq = false;
  Impl impl = Impl::Auto;
};

struct StepStats {
  at::Tensor loss;           // 1/2 (1/Bt) sum_b ||r_b||^2 before the step, 0-dim
  at::Tensor noisy_grad_sq;  // (1/N) sum_n ||grad h^(z_n + beta w_n)||^2, 0-dim
  at::Tensor grad_sq;        // the same at the clean particles (clean_grad_sq only)
};

// r = f_nu(X) - Y: [Bt, o].
at::Tensor residual(const ParticleFamily& fam, const Particles& z, const at::Tensor& X,
                    const at::Tensor& Y, int64_t chunk = 0, Impl impl = Impl::Auto);

// 1/2 (1/n) sum ||f_nu(x) - y||^2 over a whole set, in batches of `batch` inputs, 0-dim.
at::Tensor half_mse(const ParticleFamily& fam, const Particles& z, const at::Tensor& X,
                    const at::Tensor& Y, int64_t batch, int64_t chunk = 0);

// One Euler step on the batch (X [Bt, d], Y [Bt, o]); updates z in place.
StepStats mmd_step(const ParticleFamily& fam, Particles& z, const at::Tensor& X,
                   const at::Tensor& Y, const StepOptions& opt);

}  // namespace mmdflow
