// The input law rho of a run (docs/math.md, "Particles and networks").
#pragma once
#include "src/base/names.h"

namespace mmdflow {

// uniform on S^{d-1} | N(0, I_d) | the rows of data files (data.train_file, data.valid_file): no
// law to draw from
enum class InputDist { Sphere, Gaussian, File };

template <>
struct Names<InputDist> {
  static constexpr const char* what = "input distribution";
  static constexpr std::array<std::pair<InputDist, const char*>, 3> table{
      {{InputDist::Sphere, "sphere"},
       {InputDist::Gaussian, "gaussian"},
       {InputDist::File, "file"}}};
};

}  // namespace mmdflow
