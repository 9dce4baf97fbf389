// Shared fixtures for the tests: small families and random particles in float64.
#pragma once
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "models/particle_net.h"
#include "src/flow/student.h"

namespace mmdflow::test {

inline at::Generator gen(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

inline ParticleFamily family(int64_t d, int64_t H, int64_t o, Activation s, OutputKind g,
                             double param, bool hb, bool ob) {
  ParticleFamily f;
  f.dim = d;
  f.hidden = H;
  f.outputs = o;
  f.activation = s;
  f.out = {g, param};
  f.hidden_bias = hb;
  f.output_bias = ob;
  return f;
}

inline ParticleNet random_net(const ParticleFamily& f, int64_t N, uint64_t seed,
                              c10::ScalarType dtype = at::kDouble, double std = 1.0) {
  at::Generator g = gen(seed);
  return ParticleNet(ParticleNetOptions(N, f).init_std(std).dtype(dtype), g);
}

inline at::Tensor inputs(int64_t B, int64_t d, uint64_t seed, c10::ScalarType dtype = at::kDouble) {
  at::Generator g = gen(seed);
  return at::normal(0, 1, {B, d}, g, at::TensorOptions().dtype(at::kDouble)).to(dtype);
}

// A student-teacher problem in float64: N student particles, 2 teacher particles, B inputs
// labelled by the teacher.
struct Problem {
  ParticleFamily f;
  Particles z, teacher;
  at::Tensor X, Y;
  Problem(const ParticleFamily& fam, int64_t N, int64_t B)
      : f(fam),
        z(random_net(f, N, 1).particles()),
        teacher(random_net(f, 2, 2).particles()),
        X(inputs(B, f.dim, 3)),
        Y(particle_features(f, teacher, X).mean(0)) {}
};

// A block-layout student over these particles (shares their storage).
inline std::unique_ptr<Student> block(const ParticleFamily& f, const Particles& z,
                                      Impl impl = Impl::Auto, int64_t chunk = 0) {
  return make_block_student(ParticleNet(f, z), chunk, impl);
}

inline double max_abs_diff(const Particles& x, const Particles& y) {
  double m = 0;
  auto xt = x.tensors();
  auto yt = y.tensors();
  EXPECT_EQ(xt.size(), yt.size());
  for (size_t i = 0; i < xt.size(); ++i)
    m = std::max(m, (xt[i]->to(at::kDouble) - yt[i]->to(at::kDouble)).abs().max().item<double>());
  return m;
}

inline bool bit_equal(const Particles& x, const Particles& y) {
  auto xt = x.tensors();
  auto yt = y.tensors();
  if (xt.size() != yt.size()) return false;
  for (size_t i = 0; i < xt.size(); ++i)
    if (!at::equal(*xt[i], *yt[i])) return false;
  return true;
}

}  // namespace mmdflow::test
