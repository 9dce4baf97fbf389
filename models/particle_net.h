// A measure of N particles z_n = (A_n, a_n, B_n, b_n), i.e. a two-layer network
// f(x) = (1/N) sum_n G(B_n s(A_n x + a_n) + b_n)  (docs/math.md, "Particles and networks").
#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "models/family.h"
#include "src/base/io.h"

namespace mmdflow {

// Particle coordinates. Undefined a / b mean "no bias".
struct Particles {
  at::Tensor A;  // [N, H, d]
  at::Tensor a;  // [N, H]
  at::Tensor B;  // [N, o, H]
  at::Tensor b;  // [N, o]

  int64_t size() const { return A.size(0); }
  std::vector<at::Tensor*> tensors();  // the defined ones, in the order A, a, B, b
  std::vector<const at::Tensor*> tensors() const;
  Particles slice(int64_t begin, int64_t end) const;  // a view of particles [begin, end)
  Particles clone() const;
  Particles to(const at::TensorOptions& opts) const;
  at::Tensor flat() const;  // [N, particle_size]
};

// The block layout's tensors by name (A, a, B, b; biases when present; models/weights.h).
Particles particles_of(const NamedTensors& w);

struct ParticleNetOptions {
  ParticleNetOptions(int64_t particles, ParticleFamily family)
      : particles_(particles), family_(family) {}
#define MMDFLOW_ARG(T, name)                \
  ParticleNetOptions& name(const T& v) {    \
    name##_ = v;                            \
    return *this;                           \
  }                                         \
  const T& name() const { return name##_; } \
  T name##_
  MMDFLOW_ARG(int64_t, particles);  // N of the whole measure
  MMDFLOW_ARG(ParticleFamily, family);
  // The particles [first, last) of the N held here (a shard): drawn as the whole measure draws
  // them from the same generator. last = -1: up to N.
  MMDFLOW_ARG(int64_t, first) = 0;
  MMDFLOW_ARG(int64_t, last) = -1;
  MMDFLOW_ARG(double, init_mean) = 0.0;
  MMDFLOW_ARG(double, init_std) = 1.0;
  MMDFLOW_ARG(c10::ScalarType, dtype) = c10::kFloat;
  MMDFLOW_ARG(c10::Device, device) = c10::Device(c10::kCPU);
#undef MMDFLOW_ARG
};

class ParticleNet {
 public:
  // Allocates and draws every coordinate i.i.d. N(init_mean, init_std^2) from gen (the
  // options' particles [first, last) of them).
  ParticleNet(const ParticleNetOptions& options, at::Generator& gen);
  // From explicit weights (tests, checkpoints).
  ParticleNet(const ParticleFamily& family, Particles z);

  void reset(at::Generator& gen);
  const ParticleFamily& family() const { return family_; }
  Particles& particles() { return z_; }
  const Particles& particles() const { return z_; }
  int64_t size() const { return z_.size(); }

  at::Tensor forward(const at::Tensor& X) const;  // [Bt, d] -> [Bt, o]
  // Named tensors for saving (models/weights.h's block_weights), CPU copies.
  NamedTensors named_tensors() const;

 private:
  ParticleNetOptions options_{0, ParticleFamily{}};
  ParticleFamily family_;
  Particles z_;
};

// n inputs drawn from gen, labelled by the teacher: X in the teacher's dtype and device.
Dataset make_dataset(InputDist dist, int64_t n, const ParticleNet& teacher, at::Generator& gen);

// Reference (autograd-friendly, any device) features of each particle: [N, Bt, o].
at::Tensor particle_features(const ParticleFamily& fam, const Particles& z, const at::Tensor& X);

}  // namespace mmdflow
