// Devices, threads and seeded generators. Every random draw in mmdflow comes from a generator
// made here from the run's seed, never from the global one.
#pragma once
#include <ATen/core/Generator.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <string>

namespace mmdflow {

// "cpu" | "cuda" | "cuda:K"; throws ConfigError when this build or machine has no such device.
c10::Device resolve_device(const std::string& name);
// A new generator on `device` seeded with `seed`.
at::Generator make_generator(c10::Device device, uint64_t seed);
// Independent seeds for the run's streams (teacher, data, student, training).
uint64_t sub_seed(uint64_t seed, uint64_t stream);
// Sets intra-op threads (0: one per core) for ATen and OpenBLAS; returns the count in use.
int64_t set_threads(int64_t n);

}  // namespace mmdflow
