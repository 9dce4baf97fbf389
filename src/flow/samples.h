// The flows of docs/math.md ("Samples") for points z_n in R^d flowing toward target samples u_m
// along an explicit kernel k, stateless: the caller owns the points, each step's noise seed and
// the schedules. Every sum is exact (no sampling) but the energy kernel's sliced gradient
// (SampleTarget::slices), along random directions drawn from the step's noise seed. Sharded, each
// process moves its rows of the measure and reads all of it (models/points.h): a row's sums
// depend on that row and the whole measure only, so the trajectory is the same bits at any
// process count.
#pragma once
#include <ATen/core/Tensor.h>

#include "models/points.h"
#include "src/flow/flow.h"
#include "src/kernels/pairwise.h"

namespace mmdflow {

// What a samples flow runs against, fixed for a run.
struct SampleTarget {
  at::Tensor U;  // [M, d]
  PairKernelSpec kernel;
  double uu = 0;  // mean_{m,m'} k(u_m, u_m'), added in row order
  // drmmd: the Cholesky factor L of K_UU + M lambda I [M, M] (float64) and
  // kU = (1/M) sum_m' k(u_m, u_m') [M] (float64)
  at::Tensor drmmd_chol, kU;
  double drmmd_lambda = 0;
  // energy: > 0, the witness gradient is the sliced estimate with this many random directions a
  // step (src/kernels/sliced.h); 0: the exact sums
  int64_t slices = 0;
  int64_t size() const { return U.size(0); }
};
// The target's constant terms (drmmd's factor too when method is DrMMD): O(M^2) kernel sums,
// O(M) memory (DrMMD: M^2).
SampleTarget make_sample_target(at::Tensor U, const PairKernelSpec& k, Method method,
                                double drmmd_lambda);

// The terms of 1/2 MMD^2 of the rows P [n, d] of the measure Z [N, d]: [n, 2], float64:
// sum_n' k(p_i, z_n') and sum_m k(p_i, u_m).
at::Tensor mmd_row_terms(const SampleTarget& t, const at::Tensor& P, const at::Tensor& Z);
// 1/2 MMD^2 = 1/2 [mean k(Z, Z) - 2 mean k(Z, U) + mean k(U, U)] from every row's terms [N, 2],
// added in row order.
double half_mmd2_of(const SampleTarget& t, const at::Tensor& terms);

// The noise w [rows, d] of rows [begin, end) for seed: per block of kNoiseBlock rows, the block's
// own normal stream (keyed by seed and the block's index), so any split of the rows draws the
// same w.
at::Tensor point_noise(const Shard& rows, int64_t d, uint64_t seed, const at::TensorOptions& o);

// The directions of a step's sliced witness (t.slices > 0): [t.slices, d], random_directions of a
// seed drawn from the step's noise seed by a stream of their own (independent of point_noise's w).
at::Tensor slice_directions(const SampleTarget& t, int64_t d, uint64_t noise_seed,
                            const at::TensorOptions& o);

// The gradient of the flow's witness at P [n, d] (MMD: grad h; DrMMD: grad h_lambda), Z [N, d]
// the measure: [n, d]. DrMMD's alpha [M] is drmmd_alpha(t, Z). t.slices > 0: grad h is the sliced
// estimate along slice_directions(t, d, noise_seed).
at::Tensor witness_grad(const SampleTarget& t, const at::Tensor& P, const at::Tensor& Z,
                        Method method, const at::Tensor& alpha = {}, uint64_t noise_seed = 0);
// DrMMD: alpha = (K_UU + M lambda I)^{-1} h(U), h(U)_m = mean_n k(u_m, z_n) - kU_m: [M], float64.
at::Tensor drmmd_alpha(const SampleTarget& t, const at::Tensor& Z);

// One step of p's rows (p.whole() as before it): they move in place, p.whole() is then stale
// until the caller gathers the rows. Returns the shard's shares of the gradient norms
// (sum over its rows of ||g_n||^2 / N); loss is left undefined (the caller's).
StepStats samples_step(Points& p, const SampleTarget& t, const StepOptions& opt);

}  // namespace mmdflow
