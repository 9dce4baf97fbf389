// Input distributions rho and labelled datasets (docs/math.md, "Particles and networks"). The
// labels come from a function of the inputs (the teacher network: models/particle_net.h).
#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <functional>

#include "data/input.h"

namespace mmdflow {

// n inputs [n, d], drawn in double on gen's device, then converted: the same seed gives the same
// inputs for every dtype, and a CPU generator the same for every device.
at::Tensor sample_inputs(InputDist dist, int64_t n, int64_t d, at::Generator& gen,
                         const at::TensorOptions& opts);

struct Dataset {
  at::Tensor X;  // [n, d]
  at::Tensor Y;  // [n, o] = f_teacher(X)
  int64_t size() const { return X.size(0); }
};

// n inputs [n, d] of the given options, drawn from gen, and their labels label(X).
using Labels = std::function<at::Tensor(const at::Tensor& X)>;
Dataset make_dataset(InputDist dist, int64_t n, int64_t d, const Labels& label, at::Generator& gen,
                     const at::TensorOptions& opts);

}  // namespace mmdflow
