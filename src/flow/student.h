// The trained measure in one of two layouts: `block`, N independent particles
// z_n = (A_n, a_n, B_n, b_n) (the mean-field network), or `dense`, the original code's network
// whose N*o output units all read the N*H hidden units (docs/math.md, "The original code's dense
// layout"). Flows only see this interface.
// A block student may hold a shard of the measure, particles [begin, end) of N: its sums run over
// the shard, the flow adds them up over the shards (src/flow/flow.h), the rest is local.
#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>

#include "models/measure.h"
#include "models/particle_net.h"
#include "models/weights.h"
#include "src/base/io.h"
#include "src/flow/choices.h"
#include "src/flow/tree_sum.h"
#include "src/kernels/features.h"

namespace mmdflow {

class Student : public Measure {
 public:
  // sum over the shard's n of phi_n(x_b): the shard's share of [B, o] (src/flow/tree_sum.h).
  virtual TreeShare feature_sum(const at::Tensor& X) const = 0;
  // theta <- theta - step g, g = grad_theta sum_b W_b^T sum_n phi_n(x_b) at theta + beta w
  // (W [B, o]). Returns the shard's share of ||g||^2 / N (block: sum_n ||g_n||^2 / N), [].
  virtual TreeShare descend(const at::Tensor& X, const at::Tensor& W, double step,
                            const Noise& noise) = 0;
  // The same share at the clean parameters, no update.
  virtual TreeShare grad_sq(const at::Tensor& X, const at::Tensor& W) const = 0;
  // sum over the shard's n of <J_{b,n}, J_{b',n}>, J_{b,n} = grad phi_n(x_b) (o = 1); dense: J_b =
  // grad of sum_n phi_n(x_b) over all weights, as the original code. The share of [B, B].
  virtual TreeShare jacobian_gram(const at::Tensor& X) const = 0;
  // theta <- theta + beta w.
  virtual void perturb_(const Noise& noise) = 0;
  // What differs between layouts in the flows (src/flow/flow.h). Diffusion: the noise after the
  // step (theta - gamma grad h(theta) + beta w), or first, the step then taken at the noisy
  // weights (the original code's network).
  virtual bool diffuses_first() const = 0;
  // DrMMD: the features of its target particles on X [B, d] (Y [B, o] its labels), [M, B, o],
  // and the c of K_XX + c lambda I for M of them.
  virtual at::Tensor drmmd_target(const ParticleNet& teacher, const at::Tensor& X,
                                  const at::Tensor& Y) const = 0;
  virtual double drmmd_ridge(int64_t M) const = 0;
  virtual const Particles* particles() const { return nullptr; }  // block layout: the shard's
  virtual Particles* mutable_particles() { return nullptr; }      // the same, for exact steps
};

// How a measure's tensors are stored (checkpoint shards, .pt files): the tensors of a shard of
// `rows` particles, and whether files split them by rows (block, points) or hold them whole
// (dense).
struct WeightSchema {
  ParticleFamily family;
  int64_t particles = 0;  // N of the whole measure
  bool by_rows = true;
  int64_t point_dim = 0;  // points of R^d (samples): Z [rows, d]
  std::vector<WeightSpec> specs(int64_t rows) const;
};
WeightSchema weight_schema(Layout layout, const ParticleFamily& fam, int64_t N);
WeightSchema point_schema(int64_t N, int64_t d);

// Block layout over a ParticleNet; `chunk` bounds the particles processed at once. `shard`: the
// net holds particles [begin, end) of `total` (begin a multiple of kNoiseBlock); default: all.
std::unique_ptr<Student> make_block_student(ParticleNet net, int64_t chunk, Impl impl = Impl::Auto,
                                            Shard shard = {});

// Dense layout: W1 [N H, d] (+ b1 [N H]), W2 [N o, N H] (+ b2 [N o]), every weight
// N(mean, std^2) drawn in double on CPU from gen; output unit k*N + n is (output k, particle n).
struct DenseWeights {
  at::Tensor W1, b1, W2, b2;
};
std::unique_ptr<Student> make_dense_student(const ParticleFamily& fam, int64_t N, double mean,
                                            double std, const at::TensorOptions& opts,
                                            at::Generator& gen);
std::unique_ptr<Student> make_dense_student(const ParticleFamily& fam, DenseWeights w);

}  // namespace mmdflow
