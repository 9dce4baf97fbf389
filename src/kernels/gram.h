// The random-feature kernel k(z, z') = E_x[phi_z(x)^T phi_z'(x)] and MMD^2 (docs/math.md,
// "Kernel and MMD"), for diagnostics and tests: Gram blocks are O(N^2) and never used by a step.
#pragma once
#include <ATen/core/Tensor.h>

#include "models/particle_net.h"

namespace mmdflow {

struct GramBlocks {
  at::Tensor nn;  // [N, N] K_{nu nu}
  at::Tensor nm;  // [N, M] K_{nu nu*}
  at::Tensor mm;  // [M, M] K_{nu* nu*}
};

// k^(z, z') = (1/B) sum_b phi_z(x_b)^T phi_z'(x_b) between the particles of two measures.
at::Tensor gram(const ParticleFamily& f1, const Particles& z1, const ParticleFamily& f2,
                const Particles& z2, const at::Tensor& X);  // -> [N1, N2]
GramBlocks gram_blocks(const ParticleFamily& fs, const Particles& student, const ParticleFamily& ft,
                       const Particles& teacher, const at::Tensor& X);
// MMD^2 = mean(K_nn) - 2 mean(K_nm) + mean(K_mm), a 0-dim tensor.
at::Tensor mmd2(const GramBlocks& K);

}  // namespace mmdflow
