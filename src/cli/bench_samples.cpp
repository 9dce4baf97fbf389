#include "src/cli/bench_samples.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "src/base/device.h"
#include "src/base/random.h"
#include "src/flow/samples.h"
#include "src/kernels/isa.h"
#include "src/train/build.h"
#include "src/train/reducer.h"

namespace mmdflow {
namespace {

using clock_type = std::chrono::steady_clock;

// Median ms of `repeats` calls of f after `warmup`.
template <typename F>
double time_ms(const BenchOptions& opt, F&& f) {
  std::vector<double> ms;
  for (int64_t r = 0; r < opt.warmup + opt.repeats; ++r) {
    const auto t = clock_type::now();
    f(r);
    if (r >= opt.warmup)
      ms.push_back(1e3 * std::chrono::duration<double>(clock_type::now() - t).count());
  }
  return median(ms);
}

}  // namespace

at::Tensor eager_gaussian_grad(const at::Tensor& Z, const at::Tensor& U, double s) {
  auto part = [&](const at::Tensor& S) {  // sum_j grad_1 k(z_i, s_j) / |S|
    const at::Tensor d2 =
        Z.square().sum(1, true) + S.square().sum(1).unsqueeze(0) - 2 * at::mm(Z, S.t());  // [N, m]
    const at::Tensor K = at::exp(d2 * (-0.5 / (s * s)));                                  // [N, m]
    return (at::mm(K, S) - Z * K.sum(1, true)) / (s * s * double(S.size(0)));
  };
  return part(Z) - part(U);
}

void run_samples_bench(const Config& cfg, const BenchOptions& opt, Comm& comm) {
  const bool lead = comm.rank() == 0;
  const c10::Device dev = resolve_device(cfg.device);
  const auto opts = at::TensorOptions().dtype(cfg.dtype).device(dev);
  const at::Tensor U = target_samples(cfg).to(opts);
  const int64_t M = U.size(0), d = U.size(1);
  const PairKernelSpec k{cfg.kernel.name, cfg.kernel.bandwidth, cfg.kernel.c};
  SampleTarget target = make_sample_target(U, k, cfg.flow.method, cfg.flow.drmmd_lambda);
  target.slices = cfg.kernel.slices;
  StepOptions so = step_options_of(cfg);
  so.beta = cfg.noise.beta0;
  const bool injected = so.beta > 0 && so.method != Method::Diffusion;
  const bool sliced = target.slices > 0;  // no kernel pairs: their rate is left blank
  std::vector<int64_t> sizes = opt.particles;
  if (sizes.empty()) sizes.push_back(cfg.student.particles);
  std::sort(sizes.begin(), sizes.end());
  // The eager step holds several N x (N + M) matrices: only where they fit in a few GB.
  const auto eager_at = [&](int64_t N) {
    return k.kind == PairKernel::Gaussian && comm.world() == 1 &&
           double(N) * double(N + M) <= 2.5e8;
  };
  const bool eager = eager_at(sizes.front());  // sizes ascend
  if (lead) {
    fmt::print(
        "mmdflow bench: samples, {} {}, {} threads x {} processes, path {}; {} flow, kernel {} "
        "bandwidth {}{}, target {} M={} d={}, beta={}\n",
        dev.str(), name_of(cfg.dtype), at::get_num_threads(), comm.world(),
        dev.is_cpu() ? name_of(active_isa()) : "aten", name_of(so.method), name_of(k.kind),
        k.bandwidth, sliced ? fmt::format(" sliced along {} directions", target.slices) : "",
        name_of(cfg.target.law), M, d, so.beta);
    fmt::print("{:>9} {:>12} {:>12} {:>14} {:>10} {:>12}\n", "N", "ms/step",
               sliced ? "" : "Gpairs/s", eager ? "eager-ms/step" : "", eager ? "speed-up" : "",
               "peak-RSS-MiB");
  }
  CommReducer reduce(comm);
  for (int64_t N : sizes) {
    Config c = cfg;
    c.student.particles = N;
    Points points(initial_points(c, d).to(opts), shard_of(c, comm.rank(), comm.world()));
    const double ms = time_ms(opt, [&](int64_t r) {
      so.noise_seed = sub_seed(cfg.seed, uint64_t(r));
      samples_step(points, target, so);
      at::Tensor all = points.rows_only();
      reduce.sum(all);
      points.set_whole(std::move(all));
      if (!dev.is_cpu()) points.whole().sum().item<double>();  // waits for the device
    });
    const double pairs = double(N) * double(N + M) * (injected ? 2 : 1);
    double eager_ms = 0;
    if (eager_at(N)) {  // the same step, plain eager: seconds a step at N = 10^4, so fewer repeats
      at::Tensor Z = points.whole().clone();
      BenchOptions few = opt;
      few.warmup = std::min<int64_t>(opt.warmup, 1);
      few.repeats = std::min<int64_t>(opt.repeats, 3);
      eager_ms = time_ms(
          few, [&](int64_t) { Z.sub_(eager_gaussian_grad(Z, U, k.bandwidth), so.step_size); });
    }
    if (lead) {
      fmt::print("{:>9} {:>12.3f} {:>12} {:>14} {:>10} {:>12.0f}\n", N, ms,
                 sliced ? "" : fmt::format("{:.3f}", pairs / (ms * 1e-3) / 1e9),
                 eager_at(N) ? fmt::format("{:.3f}", eager_ms) : "",
                 eager_at(N) ? fmt::format("{:.1f}x", eager_ms / ms) : "", peak_rss_mib());
      std::fflush(stdout);
    }
  }
}

}  // namespace mmdflow
