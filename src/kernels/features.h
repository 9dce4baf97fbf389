// The flow's hot path: sums of particle features and weighted feature gradients.
// Every flow step is built from these two primitives, each linear in N, never O(N^2):
//   feature_sum   S(x_b) = sum_n phi_{z_n}(x_b)                      -> [Bt, o]
//   weighted_grad g_n    = grad_z sum_b W_b^T phi_z(x_b) at z = z_n   -> shaped like z
// A shard (chunk, device, process) of particles only contributes its [Bt, o] partial sum to S;
// weighted_grad is local to each particle. Gradients are derived by hand (see features.cpp).
#pragma once
#include <ATen/core/Tensor.h>

#include "models/particle_net.h"

namespace mmdflow {

// Fused: hand-written CPU kernel around two BLAS products. Generic: ATen ops, any device.
// Auto: Fused on CPU, Generic elsewhere.
enum class Impl { Auto, Fused, Generic };

// Noise injection z + beta w, w ~ N(0, I). On CPU the particles are cut into blocks of
// kNoiseBlock and block k draws its w with fill_normal (src/kernels/normal.h) keyed by
// sub_seed(seed, k), so the noise is a function of (seed, particle) alone: the same for any chunk
// size or thread count, and drawn inside the fused kernel, block by block, in parallel. Elsewhere
// it is drawn by the device's generator seeded with `seed`. w is drawn in float32 (the fast path)
// whatever the particles' dtype, so float32 and float64 runs see the same noise. A shard of a
// measure starts at block `block0` of the whole, so on CPU each particle's noise is the same
// whatever the sharding.
struct Noise {
  double beta = 0.0;
  uint64_t seed = 0;
  int64_t block0 = 0;  // global index of the particles' first block of kNoiseBlock
};
constexpr int64_t kNoiseBlock = 128;

// z + beta w as tensors (the fused kernel draws the same w on CPU).
Particles perturb(const Particles& z, const Noise& noise);

at::Tensor feature_sum(const ParticleFamily& fam, const Particles& z, const at::Tensor& X,
                       int64_t chunk = 0, Impl impl = Impl::Auto);  // X [Bt, d] -> [Bt, o]
// The feature sums per block of kNoiseBlock particles (z's first block a block of the measure):
// [nblocks, Bt, o] float64, each block's the same wherever it lies (src/flow/tree_sum.h).
at::Tensor feature_block_sums(const ParticleFamily& fam, const Particles& z, const at::Tensor& X,
                              int64_t chunk = 0, Impl impl = Impl::Auto);

// The gradients at the noisy particles z + beta w when noise.beta > 0 (shaped like z).
Particles weighted_grad(const ParticleFamily& fam, const Particles& z, const at::Tensor& X,
                        const at::Tensor& W, int64_t chunk = 0, Impl impl = Impl::Auto,
                        const Noise& noise = {});  // X [Bt, d], W [Bt, o]

// One descent step z <- z - step g, g = weighted_grad(...), without storing g whole on CPU.
// Returns sum_n ||g_n||^2 per block: [nblocks] float64.
at::Tensor descend(const ParticleFamily& fam, Particles& z, const at::Tensor& X,
                   const at::Tensor& W, double step, int64_t chunk = 0, Impl impl = Impl::Auto,
                   const Noise& noise = {});

// Jacobian Gram of Sobolev descent per block: sum_n <J_{b,n}, J_{b',n}> over each block's n,
// J_{b,n} = grad_z phi_{z_n}(x_b), for o = 1: [nblocks, B, B] float64, one product per block.
// ATen ops, any device; the caller bounds the particles per call.
at::Tensor jacobian_gram_blocks(const ParticleFamily& fam, const Particles& z, const at::Tensor& X);

// sum_n ||g_n||^2 over every coordinate, per block: [nblocks] float64 on g's device.
at::Tensor block_sq_norms(const Particles& g);
// The sums of kNoiseBlock consecutive rows of t [n, ...], in row order: [ceil(n / kNoiseBlock),
// ...] float64.
at::Tensor block_rows(const at::Tensor& t);

}  // namespace mmdflow
