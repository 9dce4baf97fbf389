// The dense layout's CPU step (the original code's network, docs/math.md): W1 [N H, d]
// (+ b1 [N H]), W2 [N o, N H] (+ b2 [N o]); output unit k N + n is (output k, particle n).
// Forward: H1 = X W1^T + b1 [B, N H], S1 = s(H1), U = S1 W2^T + b2 [B, N o], phi = G(U).
// The output units are cut into blocks, processed in parallel, each on the active instruction-set
// path's kernels (blocks.h): per block, its rows of W2 (+ noise), U^T for them, E = dL/dU, the
// block's gradient of W2, applied at once. No [N o, N H] gradient is ever held; the noisy W2 is
// kept in a buffer reused from step to step. Results do not depend on the number of threads.
#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <atomic>

#include "models/particle_net.h"
#include "src/kernels/features.h"

namespace mmdflow {

// The weights, contiguous, on CPU; b1 and b2 undefined without biases.
struct DenseParams {
  at::Tensor W1, b1, W2, b2;
};

// Holds the step's buffers, sized on first use and reused.
class DenseCpu {
 public:
  // sum_n phi_n(x_b): [B, o], in X's dtype. X [B, d].
  at::Tensor feature_sum(const ParticleFamily& fam, const DenseParams& w, const at::Tensor& X);

  // g = grad of sum_b W_b^T sum_n phi_n(x_b) at w + beta eps (W [B, o]), eps ~ N(0, I) drawn in
  // float32 by at::normal from a CPU generator seeded with noise.seed, for W1, b1, W2, b2 in that
  // order (the original code's draws); with `update`, w -= step g. Returns ||g||^2.
  double grad(const ParticleFamily& fam, DenseParams& w, const at::Tensor& X, const at::Tensor& W,
              const Noise& noise, double step, bool update);

  // w += beta eps in place, eps drawn as for grad.
  void perturb(DenseParams& w, const Noise& noise);

 private:
  // The noise of W1 and b1 into eps_ (and eps_ sized for W2 and b2), from gen.
  void draw_first(const DenseParams& w, at::Generator& gen);
  // Then W2's, publishing in `drawn` the rows drawn so far, and b2's (drawn = N o + 1).
  void draw_second(const DenseParams& w, at::Generator& gen, std::atomic<int64_t>& drawn);
  // H1 and S1 [B, N H], S1T [N H, B] at (W1, b1).
  void hidden(const ParticleFamily& fam, const at::Tensor& W1, const at::Tensor& b1,
              const at::Tensor& X);

  DenseParams eps_;           // float32 noise
  at::Tensor W1n_, b1n_;      // noisy first layer
  at::Tensor W2n_, b2n_;      // noisy second layer (or a copy of it)
  at::Tensor W1t_;            // [d, N H]
  at::Tensor H1_, S1_, S1t_;  // [B, N H], [B, N H], [N H, B]
  at::Tensor E_;              // [N o, B]: U^T, then dL/dU^T
  at::Tensor dS1_, gW1_, gb1_, gb2_;
};

}  // namespace mmdflow
