// bench for problem samples: ms per flow step at each N against the config's target (M =
// target.size samples of its law, d its dimension; kernel.slices: the sliced step), the kernel
// pairs evaluated per second (exact sums), and, for the gaussian kernel, the same step written in
// plain ATen eager ops on the dense N x (N + M) matrices (products for the distances, the
// gradient by hand), timed in the same run.
#pragma once
#include "src/cli/bench.h"

namespace mmdflow {

void run_samples_bench(const Config& cfg, const BenchOptions& opt, Comm& comm);

// The eager reference step's witness gradient at Z [N, d] toward U [M, d] (gaussian kernel of
// bandwidth s): dense matrices, O(N (N + M)) memory.
at::Tensor eager_gaussian_grad(const at::Tensor& Z, const at::Tensor& U, double s);

}  // namespace mmdflow
