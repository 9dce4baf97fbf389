#include "src/cli/bench.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>

#include "src/base/device.h"
#include "src/base/random.h"
#include "src/flow/exact.h"
#include "src/flow/flow.h"
#include "src/train/trainer.h"

namespace mmdflow {
namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

void sync(c10::Device dev, const at::Tensor& t) {
  if (!dev.is_cpu()) t.sum().item<double>();  // waits for the device
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Best GFLOP/s of an [m, k] x [k, n] product, float32, over a few repeats.
double matmul_gflops(c10::Device dev, int64_t m, int64_t k, int64_t n, int64_t repeats) {
  at::Generator gen = make_generator(dev, 1);
  auto opts = at::TensorOptions().dtype(at::kFloat).device(dev);
  at::Tensor a = at::normal(0, 1, {m, k}, gen, opts), b = at::normal(0, 1, {k, n}, gen, opts);
  at::Tensor c = at::mm(a, b);
  double best = 1e30;
  for (int64_t r = 0; r < repeats; ++r) {
    auto t = clock_type::now();
    at::mm_out(c, a, b);
    sync(dev, c);
    best = std::min(best, seconds_since(t));
  }
  return 2.0 * double(m) * double(k) * double(n) / best / 1e9;
}

double peak_rss_mib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / 1024.0;
}

}  // namespace

namespace {

// The sum over ranks of one number.
double total(Comm& comm, double v) {
  double sum = 0;
  for (const auto& r : comm.gather({v})) sum += r[0];
  return sum;
}

// flow.kernel exact: ms per exact_step (median after one warm-up) at each N, against the config's
// M teacher particles, d and dtype (o = 1), and the kernel pairs it evaluates per second: M (N + M)
// at the teacher, N (N + M) at the particles, as many again at the noisy ones with noise
// injection.
void run_exact_bench(const Config& cfg, const BenchOptions& opt, Comm& comm) {
  if (comm.world() > 1)
    throw ConfigError(
        "flow.kernel: exact steps are timed in one process (its witness couples "
        "every particle), not over WORLD_SIZE processes");
  StepOptions so = step_options_of(cfg);
  so.beta = cfg.noise.beta0;
  const bool inject = so.method != Method::Diffusion && so.beta > 0;
  const int64_t M = cfg.teacher.particles, d = cfg.data.dim;
  std::vector<int64_t> sizes = opt.particles;
  if (sizes.empty()) sizes.push_back(cfg.student.particles);
  std::sort(sizes.begin(), sizes.end());
  fmt::print(
      "mmdflow bench: exact kernel, cpu {}, {} threads; {} flow, d={} o=1 M={}, beta={}, {} "
      "input\n",
      name_of(cfg.dtype), at::get_num_threads(), name_of(so.method), d, M, so.beta,
      name_of(cfg.data.input));
  fmt::print("{:>9} {:>12} {:>12} {:>12}\n", "N", "ms/step", "Gpairs/s", "peak-RSS-MiB");
  for (int64_t N : sizes) {
    const double ms = exact_step_ms(N, M, d, cfg.dtype, cfg.data.input, so, opt.repeats, cfg.seed);
    const double pairs = double(N + M) * double(M + N * (inject ? 2 : 1));
    fmt::print("{:>9} {:>12.3f} {:>12.3f} {:>12.0f}\n", N, ms, pairs / (ms * 1e-3) / 1e9,
               peak_rss_mib());
    std::fflush(stdout);
  }
}

}  // namespace

void run_bench(Config cfg, const BenchOptions& opt, Comm& comm) {
  if (cfg.flow.kernel == KernelKind::Exact) return run_exact_bench(cfg, opt, comm);
  cfg.student.layout = Layout::Block;  // the flops counted are the block layout's
  const c10::Device dev = resolve_device(cfg.device);
  const ParticleFamily fam = family_of(cfg);
  const int64_t B = opt.batch > 0 ? opt.batch : cfg.train.batch;
  std::vector<int64_t> sizes = opt.particles;
  if (sizes.empty()) sizes.push_back(cfg.student.particles);
  std::sort(sizes.begin(), sizes.end());  // ascending, so peak RSS after a size is its own
  const double beta = cfg.noise.beta0;
  const int products = beta > 0 ? 3 : 2;  // A X^T clean and noisy, dP X

  const int64_t threads = at::get_num_threads();
  const int world = comm.world();
  const bool lead = comm.rank() == 0;
  set_blas_threads(threads);  // the reference uses every core through BLAS, on every rank at once
  const double peak = total(comm, matmul_gflops(dev, 2048, 2048, 2048, 5));
  set_blas_threads(1);
  if (lead) {
    fmt::print(
        "mmdflow bench: {} {}, {} process{} x {} threads; d={} H={} o={} M={} B={}, beta={} "
        "({})\n",
        dev.str(), name_of(cfg.dtype), world, world > 1 ? "es" : "", at::get_num_threads(), fam.dim,
        fam.hidden, fam.outputs, cfg.teacher.particles, B, beta,
        beta > 0 ? "noise injection" : "plain flow");
    fmt::print(
        "float32 matrix product 2048x2048x2048: {:.1f} GFLOP/s (the machine's reference{})\n", peak,
        world > 1 ? ", summed over the processes running it at once" : "");
    fmt::print(
        "GFLOP/s count the first-layer products of a step ({}: A X^T {}and dP X, 2 N H d B "
        "each); shape-GFLOP/s is BLAS alone on one [N H, d] x [d, B] product{}\n",
        products, beta > 0 ? "clean and noisy " : "",
        world > 1 ? "; comm is the share of a step in the allreduce of the feature sums" : "");
    fmt::print("{:>9} {:>10} {:>9} {:>8} {:>13} {:>12}{}\n", "N", "ms/step", "GFLOP/s", "of-ref",
               "shape-GFLOP/s", "peak-RSS-MiB", world > 1 ? fmt::format(" {:>7}", "comm") : "");
  }

  at::Generator gen = make_generator(c10::Device(c10::kCPU), cfg.seed);
  for (int64_t N : sizes) {
    Config c = cfg;
    c.student.particles = N;
    ParticleNet teacher = make_teacher(c, dev, gen);
    auto student = make_student(c, dev, gen, shard_of(c, comm.rank(), world));
    Dataset batch = make_dataset(cfg.data.input, B, teacher, gen);
    CommReducer reduce(comm);
    StepOptions so;  // the MMD flow with noise injection
    so.step_size = cfg.flow.step_size;
    so.beta = beta;
    std::vector<double> ms, comm_ms;
    for (int64_t r = 0; r < opt.warmup + opt.repeats; ++r) {
      auto t = clock_type::now();
      const double c0 = comm.seconds();
      so.noise_seed = sub_seed(cfg.seed, uint64_t(r));
      StepStats st = flow_step(*student, batch.X, batch.Y, so, at::Tensor(), reduce);
      sync(dev, st.loss);
      if (r >= opt.warmup) {
        ms.push_back(1e3 * seconds_since(t));
        comm_ms.push_back(1e3 * (comm.seconds() - c0));
      }
    }
    const double med = median(ms);
    const double gflops = products * first_layer_flops(fam, N, B) / (med * 1e-3) / 1e9;
    set_blas_threads(threads);  // BLAS alone on one first-layer product of this size
    const double shape = matmul_gflops(dev, N * fam.hidden, fam.dim, B, 5);
    set_blas_threads(1);
    double comm_share = 0;
    for (size_t i = 0; i < ms.size(); ++i) comm_share += comm_ms[i] / ms[i] / double(ms.size());
    if (lead) {
      fmt::print("{:>9} {:>10.3f} {:>9.1f} {:>7.0f}% {:>13.1f} {:>12.0f}{}\n", N, med, gflops,
                 100.0 * gflops / peak, shape, peak_rss_mib(),
                 world > 1 ? fmt::format(" {:>6.1f}%", 100.0 * comm_share) : "");
      std::fflush(stdout);
    }
  }
}

}  // namespace mmdflow
