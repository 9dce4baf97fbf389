// The population flows (docs/math.md, "The flow" and "Exact kernel"): for the family H = 1,
// s = ReLU, G = identity, no biases, the witness h and 1/2 MMD^2 are exact sums over particles
// (src/kernels/arccos.h), so a step needs no data: O(N (N + M) d) work, memory linear in N.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "data/input.h"
#include "src/flow/flow.h"

namespace mmdflow {

// One step on the student's particles z (A [N, 1, d], B [N, o, 1], updated in place) toward the
// teacher's, with h(z) = (1/N) sum_n k(z, z_n) - (1/M) sum_m k(z, u_m): the B -> infinity limit
// of flow_step on a block student with the same options, whose w (opt.noise_seed) it shares
// (`perturb`, as the CPU kernel draws it):
//   mmd:       z <- z - gamma grad h(z + beta w)
//   diffusion: z <- z - gamma grad h(z) + beta w
//   drmmd:     z <- z - gamma grad h_lambda(z + beta w), h_lambda(z) = ((1 + lambda) / lambda)
//              [h(z) - k(z, X) (K_XX + M lambda I)^{-1} h(X)], X the teacher's particles.
// Sobolev descent has no population form (its Gram is indexed by inputs): refused.
// Stats, float64 (the norms as whole shares): loss = 1/2 MMD^2 before the step (0-dim);
// noisy_grad_sq = mean_n ||g_n||^2 of
// the applied gradient (at z + beta w but for diffusion); grad_sq the same at the clean
// particles, always when it is the applied one (beta = 0, diffusion), else with
// opt.clean_grad_sq (a second pass over all pairs).
StepStats exact_step(Particles& z, const Particles& teacher, InputDist dist, const StepOptions& opt,
                     int64_t chunk = 0);

// The statistics of the theory (docs/theory.md) at z, no step: loss = 1/2 MMD^2,
// grad_sq = E_{z~nu} ||grad h(z)||^2 and noisy_grad_sq = E ||grad h(z + beta w)||^2 (w from
// opt.noise_seed, for every method: diffusion's too), h the flow's witness (h_lambda for DrMMD).
StepStats exact_stats(const Particles& z, const Particles& teacher, InputDist dist,
                      const StepOptions& opt, int64_t chunk = 0);

// E_{z~nu} ||grad h(z + beta w_k)||^2 as exact_stats' noisy_grad_sq, one w_k per seed in `seeds`
// (in their order; opt.noise_seed unused): [seeds.size()].
std::vector<double> exact_noisy_grad_sq(const Particles& z, const Particles& teacher,
                                        InputDist dist, const StepOptions& opt,
                                        const std::vector<uint64_t>& seeds, int64_t chunk = 0);

}  // namespace mmdflow
