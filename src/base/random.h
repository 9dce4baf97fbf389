// Seeded generators. Every random draw in mmdflow comes from a generator made here from the run's
// seed, never from the global one; each use has a stream of its own, so that changing one part
// of a run (e.g. the student's size) leaves the draws of the others as they were.
#pragma once
#include <ATen/core/Generator.h>
#include <c10/core/Device.h>

#include <cstdint>

namespace mmdflow {

// The streams of a run: sub_seed(seed, stream) seeds each.
enum Stream : uint64_t {
  kTeacherStream = 0,  // the teacher's particles
  kDataStream = 1,     // training and validation inputs
  kStudentStream = 2,  // the student's initial particles
  kTrainStream = 3,    // minibatch order, each step's noise seed, fresh inputs on CPU
  kDeviceStream = 4,   // fresh inputs drawn on a GPU (reseeded from the step count)
  kCompareStream = 5,  // the fresh inputs of the final comparison
};

// A new generator on `device` seeded with `seed`.
at::Generator make_generator(c10::Device device, uint64_t seed);
// Independent seeds from one: splitmix64 of (seed, stream), below 2^63.
uint64_t sub_seed(uint64_t seed, uint64_t stream);
// The CPU generator of `stream` for a run seeded with `seed`.
at::Generator stream_generator(uint64_t seed, Stream stream);

}  // namespace mmdflow
