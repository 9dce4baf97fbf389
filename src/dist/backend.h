// The collective library of a sharded run (leaf: no Torch).
#pragma once
#include "src/base/names.h"

namespace mmdflow {

// auto: NCCL when the run's device is CUDA, Gloo otherwise.
enum class Backend { Auto, Gloo, Nccl };

template <>
struct Names<Backend> {
  static constexpr const char* what = "dist backend";
  static constexpr std::array<std::pair<Backend, const char*>, 3> table{
      {{Backend::Auto, "auto"}, {Backend::Gloo, "gloo"}, {Backend::Nccl, "nccl"}}};
};

}  // namespace mmdflow
