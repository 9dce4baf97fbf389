#include "src/base/device.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <dirent.h>
#include <dlfcn.h>
#include <fmt/format.h>
#include <malloc.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <future>
#include <iterator>
#include <limits>
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

void keep_heap_pad() {
#ifdef __GLIBC__
  mallopt(M_TOP_PAD, 64 << 20);
#endif
}

int64_t cores_available() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

namespace {

constexpr char kPolicy[] = "OMP_WAIT_POLICY=", kSpin[] = "GOMP_SPINCOUNT=";

// The runnable threads of the machine (/proc/stat's procs_running); -1 where unreadable.
int64_t running_on_machine() {
  std::ifstream in("/proc/stat");
  for (std::string key; in >> key;) {
    if (key == "procs_running") {
      int64_t n = -1;
      in >> n;
      return n;
    }
    in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return -1;
}

// This process's running threads (state R in /proc/self/task/*/stat); -1 where unreadable.
int64_t running_here() {
  DIR* dir = opendir("/proc/self/task");
  if (!dir) return -1;
  int64_t n = 0;
  while (const dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(std::string("/proc/self/task/") + e->d_name + "/stat");
    const std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t close = stat.rfind(')');  // the name may hold spaces and parentheses
    if (close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'R') ++n;
  }
  closedir(dir);
  return n;
}

struct Follow {
  int64_t most = 0, now = 0;
  int ups = 0, downs = 0;  // readings in a row that asked for more, for fewer threads
  std::chrono::steady_clock::time_point last;
};
Follow g_follow;

}  // namespace

void follow_load_with(int64_t most) {
  g_follow = Follow{most, int64_t(at::get_num_threads()), 0, 0, {}};
}

int64_t followed_most() { return g_follow.most; }
int64_t followed_threads() { return g_follow.now; }

void follow_load() {
  Follow& f = g_follow;
  if (f.most < 2) return;
  const auto t = std::chrono::steady_clock::now();
  if (t - f.last < std::chrono::milliseconds(50)) return;
  f.last = t;
  // This process's threads before and after the machine's: one that stops spinning in between
  // is not taken for another process's.
  const int64_t before = running_here(), all = running_on_machine(), after = running_here();
  if (before < 0 || all < 0) return;
  const int64_t others = std::max<int64_t>(0, all - std::max(before, after));
  const int64_t want = std::clamp<int64_t>(cores_available() - others, 1, f.most);
  f.ups = want > f.now ? f.ups + 1 : 0;
  f.downs = want < f.now ? f.downs + 1 : 0;
  if (f.ups >= 2 || f.downs >= 2) {  // two readings in a row: a passing thread changes nothing
    at::set_num_threads(int(want));
    f.now = want, f.ups = f.downs = 0;
  }
}

std::string wait_policy() {
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
  const bool follow = n <= 0;
  n = n <= 0 ? cores : std::min(n, cores);
  check_threads_start(n);
  at::set_num_threads(int(n));
  follow_load_with(follow ? n : 0);
  // The fused kernels give each thread whole particle blocks with its own BLAS products: a
  // second, BLAS-owned thread pool would only compete with them for the cores.
  set_blas_threads(1);
  return n;
}

}  // namespace mmdflow
