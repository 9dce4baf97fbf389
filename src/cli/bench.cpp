#include "src/cli/bench.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <fmt/format.h>
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <cctype>
#include <chrono>

#include "src/base/device.h"
#include "src/base/random.h"
#include "src/cli/bench_exact.h"
#include "src/cli/bench_fma.h"
#include "src/cli/bench_load.h"
#include "src/cli/bench_samples.h"
#include "src/flow/flow.h"
#include "src/kernels/isa.h"
#include "src/train/build.h"
#include "src/train/reducer.h"

namespace mmdflow {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

double peak_rss_mib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / 1024.0;
}

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

void sync(c10::Device dev, const at::Tensor& t) {
  if (!dev.is_cpu()) t.sum().item<double>();  // waits for the device
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

// ---- the kernels' path, the BLAS library, and the CPU's multiply-add peak ---------------------

std::string path_line() {
  return fmt::format("kernels: {} ({}; this CPU runs {})", name_of(active_isa()),
                     isa_forced() ? "forced by MMDFLOW_ISA" : "the widest path",
                     supported_isa_list());
}

BlasInfo find_blas() {
  BlasInfo b;
  if (void* sgemm = dlsym(RTLD_DEFAULT, "sgemm_")) {
    Dl_info info{};
    if (dladdr(sgemm, &info) && info.dli_fname) b.file = info.dli_fname;
  }
  using StrFn = char* (*)();
  auto config = reinterpret_cast<StrFn>(dlsym(RTLD_DEFAULT, "openblas_get_config"));
  auto corename = reinterpret_cast<StrFn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  if (config) {  // "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ...": the first two words
    const std::string c = config();
    const size_t sp = c.find(' ', c.find(' ') + 1);
    b.name = c.substr(0, sp);
  }
  if (corename) {
    b.core = corename();
    b.core_bits = openblas_core_bits(b.core);
    if (!config) b.name = "OpenBLAS";
  }
  return b;
}

// The widest float32 vector this CPU multiplies and adds, in bits.
int cpu_vector_bits() { return 32 * fma_loop(widest_isa()).lanes_f32; }

// Seconds of CPU time of the calling thread: rates measured on it do not count the time other
// processes hold its core.
double thread_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// Core clock in GHz: a chain of dependent integer additions retires one per cycle.
double clock_ghz() {
#if defined(__x86_64__)
  double best = 0;
  for (int r = 0; r < 5; ++r) {
    const int64_t n = 20'000'000;
    uint64_t x = 0;
    const double t = thread_seconds();
    for (int64_t i = 0; i < n; i += 8)
      asm volatile(
          "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
          "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0"
          : "+r"(x));
    best = std::max(best, double(n) / (thread_seconds() - t) / 1e9);
  }
  return best;
#else
  return 0;  // unknown
#endif
}

// The multiply-add peak of `threads` cores on the CPU's widest vectors, measured: every thread
// runs independent multiply-add chains at once (all cores busy, as in a product), each rate over
// its own CPU time; best of a few rounds per thread, summed.
double fma_peak_gflops(int64_t threads) {
  const FmaLoop& loop = fma_loop(widest_isa());
  std::vector<double> best(threads, 0.0);
  at::parallel_for(0, threads, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t i = b0; i < b1; ++i)
      for (int r = 0; r < 5; ++r) {
        const double t = thread_seconds();
        const double flops = loop.run(2'000'000);
        best[i] = std::max(best[i], flops / (thread_seconds() - t) / 1e9);
      }
  });
  double sum = 0;
  for (double b : best) sum += b;
  return sum;
}

// Floating-point operations of one first-layer product A X^T over N particles and Bt inputs.
double first_layer_flops(const ParticleFamily& fam, int64_t N, int64_t Bt) {
  return 2.0 * double(N) * double(fam.hidden) * double(fam.dim) * double(Bt);
}

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
void run_exact_bench(const Config& cfg, const BenchOptions& opt) {
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
    ExactBenchNets nets = exact_bench_nets(N, M, d, cfg.dtype, cfg.seed);
    const double ms = exact_step_ms(nets.student.particles(), nets.teacher.particles(),
                                    cfg.data.input, so, opt.repeats, cfg.seed);
    const double pairs = double(N + M) * double(M + N * (inject ? 2 : 1));
    fmt::print("{:>9} {:>12.3f} {:>12.3f} {:>12.0f}\n", N, ms, pairs / (ms * 1e-3) / 1e9,
               peak_rss_mib());
    std::fflush(stdout);
  }
}

}  // namespace

// The vector width of OpenBLAS's kernels for a core (openblas_get_corename), 0 if unknown.
int openblas_core_bits(std::string core) {
  for (char& c : core) c = char(std::tolower(static_cast<unsigned char>(c)));
  for (const char* c : {"skylakex", "cooperlake", "sapphirerapids"})
    if (core == c) return 512;
  for (const char* c :
       {"haswell", "zen", "sandybridge", "bulldozer", "piledriver", "steamroller", "excavator"})
    if (core == c) return 256;
  for (const char* c :
       {"prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "opteron", "opteron_sse3",
        "barcelona", "bobcat", "katmai", "coppermine", "northwood", "banias", "athlon"})
    if (core == c) return 128;
  return 0;
}

std::string blas_warning(const BlasInfo& blas, int bits, double sgemm, double peak, double share) {
  if (sgemm >= 0.25 * peak) return "";
  const std::string head = fmt::format(
      "warning: BLAS runs the float32 product at {:.0f} GFLOP/s, {:.0f}% of the FMA peak", sgemm,
      100.0 * sgemm / peak);
  // Other processes on the cores slow the product by the share of the time it had: its rate on
  // that time is BLAS's own.
  const bool shared = share < 0.8;
  if (shared && sgemm / share >= 0.25 * peak)
    return fmt::format(
        "{}, with {:.0f}% of its threads' time: other processes share the cores (on the time it "
        "had, {:.0f}% of the peak, no BLAS fault); this run's figures are low by as much, time "
        "on a quiet machine",
        head, 100.0 * share, 100.0 * sgemm / share / peak);
  std::string cause = "the BLAS library is slow on this CPU", fix = "link an optimised BLAS";
  if (!blas.core.empty() && blas.core_bits > 0 && blas.core_bits < bits && bits >= 256) {
    cause = fmt::format("OpenBLAS chose core {} ({}-bit kernels) for a CPU with {}-bit FMA",
                        blas.core, blas.core_bits, bits);
    fix = fmt::format("run with OPENBLAS_CORETYPE={} (mmdflow never sets it)",
                      bits == 512 ? "SkylakeX" : "Haswell");
  } else if (!blas.core.empty()) {
    cause = fmt::format("OpenBLAS runs core {}", blas.core);
    fix = "try another OPENBLAS_CORETYPE";
  }
  return fmt::format(
      "{}{}: {}; {}", head,
      shared ? fmt::format(" (with {:.0f}% of its threads' time)", 100.0 * share) : "", cause, fix);
}

namespace {

// What the bench measures once a run, on every rank at once: the float32 reference product and
// the FMA peak, summed over the processes.
struct Machine {
  double peak = 0, fma = 0, ghz = 0;
  int lanes = 0;
  int64_t threads = 1, cores = 1;
  Contention load;  // on the cores during the reference product (this process's)
};

Machine measure_machine(c10::Device dev, Comm& comm) {
  Machine m;
  m.threads = at::get_num_threads();
  set_blas_threads(m.threads);  // the reference uses every core through BLAS, on every rank at once
  const Usage start = usage_now();
  const double ref = matmul_gflops(dev, 2048, 2048, 2048, 5);
  m.load = contention_since(start, m.threads);
  m.peak = total(comm, ref);
  set_blas_threads(1);
  m.fma = total(comm, fma_peak_gflops(m.threads));
  m.ghz = clock_ghz();
  m.lanes = fma_loop(widest_isa()).lanes_f32;
  m.cores = comm.world() * m.threads;
  return m;
}

// The lead's lines before the table: the setting, the paths, BLAS, the peak and the reference,
// what the columns count.
void print_header(const Config& cfg, const Machine& m, c10::Device dev, int world, int64_t B,
                  bool dense, int products, bool table) {
  const ParticleFamily fam = family_of(cfg);
  const double beta = cfg.noise.beta0;
  fmt::print(
      "mmdflow bench: {} {}, {} process{} x {} threads; d={} H={} o={} M={} B={}, beta={} "
      "({})\n",
      dev.str(), name_of(cfg.dtype), world, world > 1 ? "es" : "", at::get_num_threads(), fam.dim,
      fam.hidden, fam.outputs, cfg.teacher.particles, B, beta,
      beta > 0 ? "noise injection" : "plain flow");
  fmt::print("{}\n", path_line());
  fmt::print("OpenMP threads wait: {}\n", wait_policy());
  const BlasInfo blas = find_blas();
  fmt::print("BLAS: {}{}{}\n", blas.name,
             blas.core.empty()
                 ? ""
                 : fmt::format(", core {} ({})", blas.core,
                               blas.core_bits ? fmt::format("{}-bit kernels", blas.core_bits)
                                              : "kernel width unknown"),
             blas.file.empty() ? "" : ", " + blas.file);
  if (m.ghz > 0) {
    fmt::print(
        "FMA peak: {} cores x {} float32 lanes x {:.1f} FMA/cycle x {:.2f} GHz x 2 = {:.0f} "
        "GFLOP/s (measured in this run)\n",
        m.cores, m.lanes, m.fma / (2.0 * double(m.cores * m.lanes) * m.ghz), m.ghz, m.fma);
  } else {
    fmt::print("FMA peak: {} cores x {} float32 lanes: {:.0f} GFLOP/s (measured in this run)\n",
               m.cores, m.lanes, m.fma);
  }
  fmt::print(
      "float32 matrix product 2048x2048x2048: {:.1f} GFLOP/s (the machine's reference{}), "
      "{:.0f}% "
      "of the FMA peak\n",
      m.peak, world > 1 ? ", summed over the processes running it at once" : "",
      100.0 * m.peak / m.fma);
  fmt::print("during the reference product: {}\n", describe(m.load, m.threads));
  if (const std::string w = blas_warning(blas, cpu_vector_bits(), m.peak, m.fma, m.load.share);
      !w.empty())
    fmt::print("{}\n", w);
  if (!table) return;
  if (dense) {
    fmt::print(
        "dense layout: GFLOP/s count the products of a step with the second layer (4: S1 W2^T "
        "clean and at the gradient's weights, E^T S1 and E W2, 2 B N H N o each); of-ref and "
        "of-peak divide them by the reference and by the FMA peak; shape-GFLOP/s is BLAS alone "
        "on one [B, N H] x [N H, N o] product\n");
  } else {
    fmt::print(
        "GFLOP/s count the first-layer products of a step ({}: A X^T {}and dP X, 2 N H d B "
        "each); of-ref and of-peak divide them by the reference and by the FMA peak; "
        "shape-GFLOP/s is BLAS alone on one [N H, d] x [d, B] product{}\n",
        products, beta > 0 ? "clean and noisy " : "",
        world > 1 ? "; comm is the share of a step in the allreduce of the feature sums" : "");
  }
  fmt::print("{:>9} {:>10} {:>9} {:>8} {:>8} {:>13} {:>12}{}\n", "N", "ms/step", "GFLOP/s",
             "of-ref", "of-peak", "shape-GFLOP/s", "peak-RSS-MiB",
             world > 1 ? fmt::format(" {:>7}", "comm") : "");
}

// Steps of the MMD flow (noise injection at beta0) on a student of N particles, ready to time.
class StepBench {
 public:
  StepBench(const Config& cfg, int64_t N, int64_t B, c10::Device dev, at::Generator& gen,
            Comm& comm)
      : cfg_(with_particles(cfg, N)),
        dev_(dev),
        teacher_(make_teacher(cfg_, dev, gen)),
        student_(make_student(cfg_, dev, gen, shard_of(cfg_, comm.rank(), comm.world()))),
        batch_(make_dataset(cfg.data.input, B, teacher_, gen)),
        reduce_(comm) {
    so_.step_size = cfg.flow.step_size;
    so_.beta = cfg.noise.beta0;
  }

  // ms of step r (its noise drawn from the seed and r).
  double step(int64_t r) {
    const auto t = clock_type::now();
    so_.noise_seed = sub_seed(cfg_.seed, uint64_t(r));
    const StepStats st = flow_step(*student_, batch_.X, batch_.Y, so_, at::Tensor(), reduce_);
    sync(dev_, st.loss);
    return 1e3 * seconds_since(t);
  }

 private:
  static Config with_particles(Config c, int64_t N) {
    c.student.particles = N;
    return c;
  }
  Config cfg_;
  c10::Device dev_;
  ParticleNet teacher_;
  std::unique_ptr<Student> student_;
  Dataset batch_;
  CommReducer reduce_;
  StepOptions so_;  // the MMD flow with noise injection
};

// The median ms per step after the warm-up, and the mean share of a step in communication.
struct Timing {
  double ms = 0, comm_share = 0;
};

Timing time_steps(StepBench& sb, const BenchOptions& opt, Comm& comm) {
  std::vector<double> ms, comm_ms;
  for (int64_t r = 0; r < opt.warmup + opt.repeats; ++r) {
    const double c0 = comm.seconds();
    follow_load();
    const double t = sb.step(r);
    if (r >= opt.warmup) {
      ms.push_back(t);
      comm_ms.push_back(1e3 * (comm.seconds() - c0));
    }
  }
  Timing out;
  out.ms = median(ms);
  for (size_t i = 0; i < ms.size(); ++i) out.comm_share += comm_ms[i] / ms[i] / double(ms.size());
  return out;
}

// bench --busy: the steps at `threads` threads and at one thread, alternating in rounds of up to
// 10 timed steps (each after one untimed step at its count), `opt.repeats` timed steps each, with
// opt.busy busy-loop processes on the cores; prints one row per size.
void run_busy_bench(const Config& cfg, const std::vector<int64_t>& sizes, int64_t B,
                    c10::Device dev, int64_t threads, const BenchOptions& opt, Comm& comm) {
  at::Generator gen = make_generator(c10::Device(c10::kCPU), cfg.seed);
  std::vector<std::unique_ptr<StepBench>> benches;
  for (int64_t N : sizes) benches.push_back(std::make_unique<StepBench>(cfg, N, B, dev, gen, comm));
  for (auto& sb : benches)  // warm, before the busy loops start
    for (int64_t r = 0; r < opt.warmup; ++r) sb->step(r);
  // The default threads follow the load (as the load left them last), an explicit count stays.
  const int64_t following = followed_most();
  auto governed = [&] { return following < 2 ? threads : followed_threads(); };
  const BusyLoops busy(opt.busy);
  std::string pids;
  for (pid_t p : busy.pids()) pids += fmt::format(" {}", p);
  fmt::print(
      "busy: {} busy-loop process{} (pid{}{}) on {} core{}; {} and 1 thread alternate in rounds "
      "of up to 10 steps, {} timed steps each\n",
      opt.busy, opt.busy == 1 ? "" : "es", opt.busy == 1 ? "" : "s", pids, cores_available(),
      cores_available() == 1 ? "" : "s", threads, opt.repeats);
  const std::string t = fmt::format("{}t", threads);
  fmt::print("{:>9} {:>11} {:>11} {:>11} {:>11} {:>13} {:>12}\n", "N", "median-" + t, "worst-" + t,
             "median-1t", "worst-1t", "median-ratio", "worst-ratio");
  std::fflush(stdout);
  for (size_t i = 0; i < sizes.size(); ++i) {
    StepBench& sb = *benches[i];
    std::vector<double> many, one;
    for (int64_t done = 0, r = opt.warmup; done < opt.repeats;) {
      const int64_t round = std::min<int64_t>(10, opt.repeats - done);
      // The default threads as the load left them last round (while following it), then one.
      for (const bool single : {false, true}) {
        at::set_num_threads(int(single ? 1 : governed()));
        sb.step(r++);
        for (int64_t k = 0; k < round; ++k) {
          if (!single) follow_load();
          (single ? one : many).push_back(sb.step(r++));
        }
      }
      done += round;
    }
    at::set_num_threads(int(governed()));
    const double worst_many = *std::max_element(many.begin(), many.end());
    const double worst_one = *std::max_element(one.begin(), one.end());
    fmt::print("{:>9} {:>11.3f} {:>11.3f} {:>11.3f} {:>11.3f} {:>12.2f}x {:>11.2f}x\n", sizes[i],
               median(many), worst_many, median(one), worst_one, median(many) / median(one),
               worst_many / worst_one);
    fmt::print(
        "    after these steps: load {:.2f} (1 minute), {} runnable threads of other processes\n",
        load_average(), others_runnable());
    std::fflush(stdout);
  }
}

}  // namespace

void run_bench(Config cfg, const BenchOptions& opt, Comm& comm) {
  check_shardable(cfg, comm.world());
  if (cfg.samples()) return run_samples_bench(cfg, opt, comm);
  if (cfg.flow.kernel == Witness::Exact) return run_exact_bench(cfg, opt);
  // The block layout unless the config asks for the dense one (the original code's network).
  const bool dense = cfg.student.layout == Layout::Dense;
  const c10::Device dev = resolve_device(cfg.device);
  const ParticleFamily fam = family_of(cfg);
  const int64_t B = opt.batch > 0 ? opt.batch : cfg.train.batch;
  std::vector<int64_t> sizes = opt.particles;
  if (sizes.empty()) sizes.push_back(cfg.student.particles);
  std::sort(sizes.begin(), sizes.end());  // ascending, so peak RSS after a size is its own
  // Block: A X^T (clean and, with noise, noisy) and dP X, 2 N H d B each. Dense: S1 W2^T clean
  // and at the gradient's weights, E^T S1 and E W2, 2 B N H N o each.
  const int products = dense ? 4 : cfg.noise.beta0 > 0 ? 3 : 2;
  auto product_flops = [&](int64_t N) {
    return dense ? 2.0 * double(B) * double(N * fam.hidden) * double(N * fam.outputs)
                 : first_layer_flops(fam, N, B);
  };
  const int world = comm.world();
  const bool lead = comm.rank() == 0;
  const Machine m = measure_machine(dev, comm);
  if (lead) print_header(cfg, m, dev, world, B, dense, products, opt.busy == 0);
  if (opt.busy > 0) return run_busy_bench(cfg, sizes, B, dev, m.threads, opt, comm);
  at::Generator gen = make_generator(c10::Device(c10::kCPU), cfg.seed);
  for (int64_t N : sizes) {
    StepBench sb(cfg, N, B, dev, gen, comm);
    const Timing t = time_steps(sb, opt, comm);
    const double gflops = products * product_flops(N) / (t.ms * 1e-3) / 1e9;
    set_blas_threads(m.threads);  // BLAS alone on one product of this size
    const double shape = dense ? matmul_gflops(dev, B, N * fam.hidden, N * fam.outputs, 5)
                               : matmul_gflops(dev, N * fam.hidden, fam.dim, B, 5);
    set_blas_threads(1);
    if (lead) {
      fmt::print("{:>9} {:>10.3f} {:>9.1f} {:>7.0f}% {:>7.0f}% {:>13.1f} {:>12.0f}{}\n", N, t.ms,
                 gflops, 100.0 * gflops / m.peak, 100.0 * gflops / m.fma, shape, peak_rss_mib(),
                 world > 1 ? fmt::format(" {:>6.1f}%", 100.0 * t.comm_share) : "");
      std::fflush(stdout);
    }
  }
}

}  // namespace mmdflow
