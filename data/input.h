// The input law rho of a run (MATH.md, "Particles and networks").
#pragma once
#include "src/base/names.h"

namespace mmdflow {

enum class InputDist { Sphere, Gaussian };  // uniform on S^{d-1} | N(0, I_d)

template <>
struct Names<InputDist> {
  static constexpr const char* what = "input distribution";
  static constexpr std::array<std::pair<InputDist, const char*>, 2> table{
      {{InputDist::Sphere, "sphere"}, {InputDist::Gaussian, "gaussian"}}};
};

}  // namespace mmdflow
