// The CPU's multiply-add peak for the bench: a loop of independent multiply-adds, compiled once
// per instruction-set path (bench_fma_<isa>.cpp, on the targets of kernels_<isa>.cpp). Torch-free.
#pragma once
#include <cstdint>

#include "src/kernels/isa.h"

namespace mmdflow {

struct FmaLoop {
  int lanes_f32;  // float32 lanes of the path's widest vectors
  // Runs `iters` rounds of independent multiply-adds on one thread; returns the floating-point
  // operations done.
  double (*run)(int64_t iters);
};

const FmaLoop& fma_loop(Isa isa);

}  // namespace mmdflow
