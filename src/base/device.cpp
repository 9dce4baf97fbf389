#include "src/base/device.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <fmt/format.h>

#include <thread>

#include "src/train/config.h"
#ifdef MMDFLOW_CUDA
#include <ATen/cuda/CUDAGeneratorImpl.h>
#endif

namespace mmdflow {

c10::Device resolve_device(const std::string& name) {
  c10::Device dev(name);
  if (dev.is_cuda()) {
#ifndef MMDFLOW_CUDA
    throw ConfigError("device: '" + name +
                      "' requested, but this build has no CUDA (configure with -DMMDFLOW_CUDA=ON "
                      "against a CUDA LibTorch)");
#else
    if (!at::hasCUDA())
      throw ConfigError("device: '" + name + "' requested, but no GPU is visible");
    if (dev.has_index() && size_t(dev.index()) >= at::getNumGPUs())
      throw ConfigError(
          fmt::format("device: '{}' requested, but {} GPU(s) are visible", name, at::getNumGPUs()));
#endif
  }
  return dev;
}

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

uint64_t sub_seed(uint64_t seed, uint64_t stream) {  // splitmix64 of (seed, stream)
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + (stream + 1) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return (z ^ (z >> 31)) >> 1;  // generators take seeds below 2^63 safely
}

void set_blas_threads(int64_t n) {
  using SetFn = void (*)(int);
  if (auto fn = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads")))
    fn(int(n));
}

int64_t set_threads(int64_t n) {
  if (n <= 0) n = std::max(1u, std::thread::hardware_concurrency());
  at::set_num_threads(int(n));
  // The fused kernels give each thread whole particle blocks with its own BLAS products: a
  // second, BLAS-owned thread pool would only compete with them for the cores.
  set_blas_threads(1);
  return n;
}

}  // namespace mmdflow
