#include "src/kernels/gram.h"

#include <ATen/ATen.h>

namespace mmdflow {

at::Tensor gram(const ParticleFamily& f1, const Particles& z1, const ParticleFamily& f2,
                const Particles& z2, const at::Tensor& X) {
  TORCH_CHECK(f1.outputs == f2.outputs, "output sizes differ: ", f1.outputs, " vs ", f2.outputs);
  auto F1 = particle_features(f1, z1, X).reshape({z1.size(), -1});  // [N1, Bt o]
  auto F2 = particle_features(f2, z2, X).reshape({z2.size(), -1});  // [N2, Bt o]
  return at::mm(F1, F2.t()) / X.size(0);
}

GramBlocks gram_blocks(const ParticleFamily& fs, const Particles& student, const ParticleFamily& ft,
                       const Particles& teacher, const at::Tensor& X) {
  return {gram(fs, student, fs, student, X), gram(fs, student, ft, teacher, X),
          gram(ft, teacher, ft, teacher, X)};
}

at::Tensor mmd2(const GramBlocks& K) { return K.nn.mean() - 2 * K.nm.mean() + K.mm.mean(); }

}  // namespace mmdflow
