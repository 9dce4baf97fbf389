// Standard normal draws for noise injection: Philox4x32-10 (Salmon et al., SC 2011) turns
// (key, counter) into 4 uniform words, Box-Muller turns each pair into 2 normals. Counter-based,
// so any block of particles draws its own stream from its key, in parallel, and the loops
// vectorise. The avx2 and avx512 paths draw the same bits; the generic path (no FMA) rounds
// differently. Torch-free.
#pragma once
#include <cstdint>

#include "src/kernels/isa.h"

namespace mmdflow {

// out[i] ~ N(0, 1) for i < n: the stream of `key`, from its start, on the active path.
void fill_normal(float* out, int64_t n, uint64_t key);
// The same on path `isa`.
void fill_normal(Isa isa, float* out, int64_t n, uint64_t key);

}  // namespace mmdflow
