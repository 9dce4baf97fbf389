#include "data/dataset.h"

#include <ATen/ATen.h>

#include "models/particle_net.h"

namespace mmdflow {

at::Tensor sample_inputs(InputDist dist, int64_t n, int64_t d, at::Generator& gen,
                         const at::TensorOptions& opts) {
  auto x = at::normal(0.0, 1.0, {n, d}, gen,
                      at::TensorOptions().dtype(at::kDouble).device(gen.device()));
  if (dist == InputDist::Sphere) x = x / x.norm(2, {1}, /*keepdim=*/true);
  return x.to(opts);
}

Dataset make_dataset(InputDist dist, int64_t n, const ParticleNet& teacher, at::Generator& gen) {
  const auto& A = teacher.particles().A;
  Dataset ds;
  ds.X = sample_inputs(dist, n, teacher.family().dim, gen, A.options());
  ds.Y = teacher.forward(ds.X);
  return ds;
}

}  // namespace mmdflow
