#include "src/kernels/gram.h"

#include <ATen/ATen.h>

#include <cmath>

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

at::Tensor arccos_kernel(const at::Tensor& w1, const at::Tensor& v1, const at::Tensor& w2,
                         const at::Tensor& v2, InputDist dist) {
  auto n1 = w1.norm(2, {1}, true);  // [N, 1]
  auto n2 = w2.norm(2, {1}, true);  // [M, 1]
  auto nn = n1 * n2.t();            // [N, M]
  auto cos = (at::mm(w1, w2.t()) / nn).clamp(-1.0, 1.0);
  auto theta = at::acos(cos);
  auto J = at::sin(theta) + (M_PI - theta) * cos;
  auto k = at::mm(v1, v2.t()) * nn * J / (2 * M_PI);
  return dist == InputDist::Sphere ? k / w1.size(1) : k;
}

at::Tensor exact_mmd2(const Particles& student, const Particles& teacher, InputDist dist) {
  TORCH_CHECK(student.A.size(1) == 1 && teacher.A.size(1) == 1 && !student.a.defined() &&
                  !student.b.defined() && !teacher.a.defined() && !teacher.b.defined(),
              "the exact kernel needs H = 1 and no biases");
  auto ws = student.A.squeeze(1), vs = student.B.squeeze(2);
  auto wt = teacher.A.squeeze(1), vt = teacher.B.squeeze(2);
  return arccos_kernel(ws, vs, ws, vs, dist).mean() -
         2 * arccos_kernel(ws, vs, wt, vt, dist).mean() +
         arccos_kernel(wt, vt, wt, vt, dist).mean();
}

}  // namespace mmdflow
