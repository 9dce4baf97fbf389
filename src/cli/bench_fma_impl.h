// The multiply-add loop of one instruction-set path, compiled by bench_fma_<isa>.cpp, which
// defines
//   MMDFLOW_ISA_NS      the path's namespace (generic, avx2, avx512)
//   MMDFLOW_ISA_TARGET  the target of its code, as in kernels_<isa>.cpp (none for generic)
//   MMDFLOW_FMA_LANES   float32 lanes of its widest vectors.
// Only the loop is built for the target (a function attribute): nothing else of the file is.
#pragma once
#include <cstdint>

#include "src/cli/bench_fma.h"

#ifdef MMDFLOW_ISA_TARGET
#define MMDFLOW_FMA_TARGET __attribute__((target(MMDFLOW_ISA_TARGET)))
#else
#define MMDFLOW_FMA_TARGET
#endif

namespace mmdflow {
namespace MMDFLOW_ISA_NS {
namespace {

constexpr int kLanes = MMDFLOW_FMA_LANES;

// 12 independent chains of acc = acc x + y on the path's widest float vectors: enough to cover
// two FMA pipes of latency 4 and more, few enough for 16 registers.
MMDFLOW_FMA_TARGET double fma_loop(int64_t iters) {
  typedef float F __attribute__((vector_size(4 * kLanes)));
  constexpr int kChains = 12;
  F acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = F{} + float(c) * 1e-3f;
  F x = F{} + 0.999f, y = F{} + 1e-3f;
  asm volatile("" : "+x"(x), "+x"(y));  // not constants: no folding across rounds
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int c = 0; c < kChains; ++c) acc[c] = acc[c] * x + y;
  }
  F sum = F{};
  for (int c = 0; c < kChains; ++c) sum += acc[c];
  volatile float sink = sum[0];
  (void)sink;
  return 2.0 * double(kChains) * double(kLanes) * double(iters);
}

}  // namespace

extern const FmaLoop kFmaLoop;
const FmaLoop kFmaLoop = {kLanes, &fma_loop};

}  // namespace MMDFLOW_ISA_NS
}  // namespace mmdflow
