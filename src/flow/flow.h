// The flows of docs/math.md ("The flow"), stateless: the caller owns the student, the randomness
// (a noise seed per step) and the schedules. A step is two phases:
//   1. r_b = (1/N) sum_n phi_n(x_b) - y_b at the clean particles: each shard of particles adds
//      its share of the [B, o] feature sum, the only quantity shards exchange (Sobolev descent
//      also adds its [B, B] Jacobian Gram, in the same sum), along the block tree of
//      src/flow/tree_sum.h, so that the sum's bits do not depend on the sharding;
//   2. a weight W [B, o] built from r, then theta <- theta - gamma grad sum_b W_b^T sum_n phi_n,
//      local to each particle (block layout), at the noisy particles for noise injection.
#pragma once
#include <ATen/core/Tensor.h>

#include "src/flow/choices.h"
#include "src/flow/student.h"
#include "src/flow/tree_sum.h"

namespace mmdflow {

struct StepOptions {
  Method method = Method::MMD;
  double step_size = 0.1;   // gamma
  double beta = 0.0;        // noise level (noise injection, or diffusion)
  uint64_t noise_seed = 0;  // w of this step (see Noise in features.h): a new one every step
  double sobolev_eps = 1e-6;
  double drmmd_lambda = 1.0;
  bool clean_grad_sq = false;
};

struct StepStats {
  at::Tensor loss;          // 1/2 (1/B) sum_b ||r_b||^2 before the step, 0-dim
  TreeShare noisy_grad_sq;  // ||g||^2 / N of the applied gradient (at the noisy particles)
  TreeShare grad_sq;        // the same at the clean particles (clean_grad_sq only)
  // Shares of the measure's sums: whole() for a whole measure, else added up by a Reducer.
};

// Adds tensors up over the shards of the measure: all that shards exchange. A whole measure's
// is local().
class Reducer {
 public:
  virtual ~Reducer() = default;
  virtual void sum(at::Tensor& t) = 0;  // t contiguous, in place
  virtual int rank() const { return 0; }
  virtual int world() const { return 1; }
  // The whole's sum of every shard's share, in the block tree's order: one sum().
  at::Tensor add_up(const TreeShare& s);
  static Reducer& local();  // nothing to add
};

// r = f_nu(X) - Y: [B, o].
at::Tensor residual(const Student& s, const at::Tensor& X, const at::Tensor& Y,
                    Reducer& reduce = Reducer::local());
// The shard's share of the feature sums on a whole set, in batches of `batch` inputs: nodes
// [k, n o] (the whole's sum viewed as [n, o]).
TreeShare feature_sums(const Student& s, const at::Tensor& X, int64_t batch);
// 1/2 (1/n) sum ||F/N - y||^2 from the feature sums F [n, o] of all N particles, in the batches
// of feature_sums, 0-dim float64.
at::Tensor half_mse_of(const at::Tensor& F, const at::Tensor& Y, int64_t N, int64_t batch);
// 1/2 (1/n) sum ||f_nu(x) - y||^2 over a whole set: the two above around one sum, 0-dim.
at::Tensor half_mse(const Student& s, const at::Tensor& X, const at::Tensor& Y, int64_t batch,
                    Reducer& reduce = Reducer::local());

// One step on the batch (X [B, d], Y [B, o]); updates the student in place. DrMMD needs the
// features of its target particles on X: Phi_X [M, B, o], from s.drmmd_target, with
// K_XX + s.drmmd_ridge(M) lambda I.
StepStats flow_step(Student& s, const at::Tensor& X, const at::Tensor& Y, const StepOptions& opt,
                    const at::Tensor& target_features = {}, Reducer& reduce = Reducer::local());

}  // namespace mmdflow
