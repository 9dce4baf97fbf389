#include "src/base/device.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <alloca.h>
#include <dlfcn.h>
#include <fmt/format.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <future>
#include <system_error>
#include <thread>
#include <vector>

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

int64_t cores_available() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

namespace {

constexpr char kPolicy[] = "OMP_WAIT_POLICY=", kSpin[] = "GOMP_SPINCOUNT=",
               kMarker[] = "MMDFLOW_WAIT_PASSIVELY=1";
bool g_passive_by_default = false;

bool starts_with(const char* s, const char* prefix) {
  return std::strncmp(s, prefix, std::strlen(prefix)) == 0;
}

}  // namespace

void reexec_to_wait_passively(int argc, char** argv, char** envp) {
  for (int i = 1; i < argc; ++i)  // one thread: no OpenMP team to wait in
    if (std::strcmp(argv[i], "--threads=1") == 0 || std::strcmp(argv[i], "threads=1") == 0 ||
        (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc &&
         std::strcmp(argv[i + 1], "1") == 0))
      return;
  size_t n = 0;
  for (; envp && envp[n]; ++n)
    if (starts_with(envp[n], kPolicy) || starts_with(envp[n], kSpin) ||
        std::strcmp(envp[n], kMarker) == 0)
      return;  // the user's setting, or executed again already
  char** env = static_cast<char**>(alloca((n + 3) * sizeof(char*)));
  for (size_t i = 0; i < n; ++i) env[i] = envp[i];
  env[n] = const_cast<char*>("OMP_WAIT_POLICY=passive");
  env[n + 1] = const_cast<char*>(kMarker);
  env[n + 2] = nullptr;
  execve("/proc/self/exe", argv, env);  // on failure, libgomp's default
}

void settle_wait_policy() {
  const char* marker = std::getenv("MMDFLOW_WAIT_PASSIVELY");
  if (!marker) return;
  g_passive_by_default = true;
  unsetenv("MMDFLOW_WAIT_PASSIVELY");
  unsetenv("OMP_WAIT_POLICY");
}

std::string wait_policy() {
  if (g_passive_by_default) return "passive (mmdflow's default)";
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  const char* spin = std::getenv("GOMP_SPINCOUNT");
  if (!policy && !spin) return "libgomp's default (spinning about 3 ms)";
  std::string out;
  if (policy) out = std::string(kPolicy) + policy;
  if (spin) out += (out.empty() ? "" : " ") + std::string(kSpin) + spin;
  return out + " (the environment's)";
}

namespace {

// Whether the 2 (n - 1) threads that ATen's two pools (OpenMP's and pthreadpool's) hold beside
// this one for n threads of work can run: they are started, wait until all have, and end. Throws
// when one cannot be (e.g. past `ulimit -u`); the pools cannot say so: pthreadpool waits for ever
// for the missing thread, OpenMP exits.
void check_threads_start(int64_t n) {
  std::promise<void> go;
  std::shared_future<void> release = go.get_future().share();
  std::vector<std::thread> started;
  std::string error;
  try {
    for (int64_t i = 0; i < 2 * (n - 1); ++i) started.emplace_back([release] { release.wait(); });
  } catch (const std::system_error& e) {
    error = e.code().message();
  }
  go.set_value();
  for (std::thread& t : started) t.join();
  if (!error.empty())
    throw std::runtime_error(fmt::format(
        "threads: {} threads of work need {} more threads, {} could be started ({}); lower "
        "--threads or raise the limit on processes (ulimit -u)",
        n, 2 * (n - 1), started.size(), error));
}

}  // namespace

int64_t set_threads(int64_t n) {
  const int64_t cores = cores_available();
  n = n <= 0 ? cores : std::min(n, cores);
  check_threads_start(n);
  at::set_num_threads(int(n));
  // The fused kernels give each thread whole particle blocks with its own BLAS products: a
  // second, BLAS-owned thread pool would only compete with them for the cores.
  set_blas_threads(1);
  return n;
}

}  // namespace mmdflow
