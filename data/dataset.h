// Input distributions rho and teacher-labelled datasets (MATH.md, "Particles and networks").
#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include "data/input.h"

namespace mmdflow {

class ParticleNet;

// n inputs [n, d], drawn in double on gen's device, then converted: the same seed gives the same
// inputs for every dtype, and a CPU generator the same for every device.
at::Tensor sample_inputs(InputDist dist, int64_t n, int64_t d, at::Generator& gen,
                         const at::TensorOptions& opts);

struct Dataset {
  at::Tensor X;  // [n, d]
  at::Tensor Y;  // [n, o] = f_teacher(X)
  int64_t size() const { return X.size(0); }
};

Dataset make_dataset(InputDist dist, int64_t n, const ParticleNet& teacher, at::Generator& gen);

}  // namespace mmdflow
