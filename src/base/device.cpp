#include "src/base/device.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <fmt/format.h>

#include <thread>

#include "src/base/errors.h"

namespace mmdflow {

c10::Device resolve_device(c10::Device dev) {
  if (dev.is_cuda()) {
    const std::string name = dev.str();
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
