#include "src/base/random.h"

#include <ATen/CPUGeneratorImpl.h>

#include "src/base/errors.h"
#ifdef MMDFLOW_CUDA
#include <ATen/cuda/CUDAGeneratorImpl.h>
#endif

namespace mmdflow {

at::Generator make_generator(c10::Device device, uint64_t seed) {
  if (device.is_cpu()) return at::make_generator<at::CPUGeneratorImpl>(seed);
#ifdef MMDFLOW_CUDA
  at::Generator g =
      at::make_generator<at::CUDAGeneratorImpl>(device.has_index() ? device.index() : 0);
  g.set_current_seed(seed);
  return g;
#else
  throw ConfigError("device: no generator for " + device.str() + " in a CPU-only build");
#endif
}

uint64_t sub_seed(uint64_t seed, uint64_t stream) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + (stream + 1) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return (z ^ (z >> 31)) >> 1;  // generators take seeds below 2^63 safely
}

at::Generator stream_generator(uint64_t seed, Stream stream) {
  return make_generator(c10::Device(c10::kCPU), sub_seed(seed, stream));
}

}  // namespace mmdflow
