// The exact kernel's bench (flow.kernel exact): its measures and the timing of exact_step.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>

#include "models/particle_net.h"
#include "src/flow/exact.h"

namespace mmdflow {

struct ExactBenchNets {
  ParticleNet teacher, student;
};

// M teacher then N student particles of the exact family (H = 1, o = 1, ReLU, identity, no
// biases) in d dimensions, drawn N(0, 1) in dtype from one generator seeded with `seed`.
ExactBenchNets exact_bench_nets(int64_t N, int64_t M, int64_t d, c10::ScalarType dtype,
                                uint64_t seed);

// Median ms per exact_step of z toward teacher over `repeats` steps after one warm-up; step r
// (the warm-up is step 0) draws its noise from sub_seed(seed, r).
double exact_step_ms(Particles& z, const Particles& teacher, InputDist dist, StepOptions opt,
                     int64_t repeats, uint64_t seed);

}  // namespace mmdflow
