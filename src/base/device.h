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
// Sets ATen's intra-op threads (0: one per core) and single-threaded BLAS calls, as the fused
// kernels parallelise over particle blocks themselves; returns the count in use.
int64_t set_threads(int64_t n);
// Threads of OpenBLAS's own pool (where OpenBLAS is the BLAS in use), e.g. for a reference
// matrix product.
void set_blas_threads(int64_t n);

}  // namespace mmdflow
