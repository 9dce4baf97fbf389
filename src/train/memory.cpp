#include "src/train/memory.h"

#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "src/base/errors.h"
#include "src/kernels/features.h"
#include "src/train/build.h"

namespace mmdflow {
namespace {

// Weights of a particle with H hidden units: H d + H [a] + o H + o [b].
double particle_weights(const Config& c, int64_t H) {
  return double(H) * double(c.data.dim) + (c.model.hidden_bias ? double(H) : 0.0) +
         double(c.model.outputs) * double(H) + (c.model.output_bias ? double(c.model.outputs) : 0);
}

// A number from the first line of `path` (0 when unreadable; "max" is no limit: +inf).
double number_in(const std::string& path) {
  std::ifstream in(path);
  std::string word;
  if (!(in >> word)) return 0;
  if (word == "max") return INFINITY;
  try {
    return std::stod(word);
  } catch (const std::exception&) {
    return 0;
  }
}

// Bytes the memory cgroup of this process still allows (+inf: no limit), v2 or v1.
double cgroup_room() {
  std::ifstream in("/proc/self/cgroup");
  double room = INFINITY;
  for (std::string line; std::getline(in, line);) {
    const size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    std::string limit, usage;
    if (controllers.empty()) {
      limit = "/sys/fs/cgroup" + path + "/memory.max",
      usage = "/sys/fs/cgroup" + path + "/memory.current";
    } else if (controllers == "memory") {
      const std::string dir = "/sys/fs/cgroup/memory" + path;
      limit = dir + "/memory.limit_in_bytes", usage = dir + "/memory.usage_in_bytes";
    } else {
      continue;
    }
    const double max = number_in(limit);
    if (max > 0 && max < 1e18) room = std::min(room, std::max(0.0, max - number_in(usage)));
  }
  return room;
}

// kB of a "Name: value kB" line of a /proc file (-1 when absent).
double kb_of(const std::string& path, const std::string& name) {
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(name + ":", 0) == 0) return std::stod(line.substr(name.size() + 1));
  return -1;
}

std::string count(double n) { return fmt::format("{}", int64_t(n)); }

}  // namespace

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
  int u = 0;
  for (; u < 6 && bytes >= 999.5; ++u) bytes /= 1000;
  return u == 0 ? fmt::format("{} B", int64_t(bytes)) : fmt::format("{:.3g} {}", bytes, units[u]);
}

// Counted as the code allocates, each count at most the copies alive at once; checked below the
// peak resident memory of runs in which one share dominates, float32 and float64 (a block
// student, e.g., peaks at about 24 bytes per weight: weights, gradient, the comparison's float64
// copy, checkpoint and .pt bytes; counted here as 2 copies and 8 bytes).
// The samples family: every process holds the whole measure (and its moved rows, gradients and
// noise: about 6 copies) and the target; DrMMD an [M, M] matrix and its factor, Sobolev descent
// its [B, B] Gram and [N, B, d] Jacobians (B = N + M), and the snapshots kept until written.
std::vector<MemoryShare> sample_shares(const Config& c, Work work) {
  const double elem = c10::elementSize(c.dtype);
  const at::Tensor U = c.target.law == TargetLaw::File ? target_samples(c) : at::Tensor();
  const double N = double(c.student.particles), d = double(U.defined() ? U.size(1) : sample_dim(c));
  const double M = U.defined() ? double(U.size(0)) : double(c.target.size);
  std::vector<MemoryShare> out;
  out.push_back({"student.particles", fmt::format("{} points in {} dimensions", count(N), count(d)),
                 N * d * (6 * elem + 8) + 16 * N});
  out.push_back(
      {"target.size", fmt::format("{} target samples", count(M)),
       M * d * (2 * elem + 8) + 16 * M + (c.flow.method == Method::DrMMD ? 3 * M * M * 8 : 0)});
  if (c.flow.method == Method::Sobolev)
    out.push_back({"flow.method", fmt::format("sobolev descent over {} points", count(N + M)),
                   2 * (N + M) * (N + M) * 8 + 3 * N * (N + M) * d * 8});
  if (c.log.snapshot_every > 0 && work == Work::Train) {
    const double K = std::floor(double(c.train.epochs) / double(c.log.snapshot_every)) + 1;
    out.push_back(
        {"log.snapshot_every", fmt::format("{} snapshots", count(K)), 2 * K * N * d * elem});
  }
  if (work == Work::Train)
    out.push_back({"compare.samples", fmt::format("{} samples", count(double(c.compare.samples))),
                   double(c.compare.samples) * d * (2 * elem + 8)});
  return out;
}

std::vector<MemoryShare> memory_shares(const Config& c, Work work, int world) {
  if (c.samples()) return sample_shares(c, work);
  const double elem = c10::elementSize(c.dtype);
  const double N = double(c.student.particles), M = double(c.teacher.particles);
  const double d = double(c.data.dim), o = double(c.model.outputs), H = double(c.model.hidden);
  const double Ht = double(c.teacher_hidden()), B = double(c.train.batch);
  const bool dense = c.student.layout == Layout::Dense;
  const double blocks = std::ceil(N / double(kNoiseBlock));
  const double rows = dense ? N : std::ceil(blocks / world) * double(kNoiseBlock);
  const double p = particle_weights(c, c.model.hidden);
  const double sample = (d + o) * (elem + 4);  // an input and its target
  std::vector<MemoryShare> out;
  out.push_back({"student.particles", fmt::format("{} particles of {} weights", count(N), count(p)),
                 std::min(rows, N) * p * (2 * elem + 8) +
                     (dense ? 3 * (N * o) * (N * H) * elem : 0)});  // dense: W2 [N o, N H]
  out.push_back({"teacher.particles", fmt::format("{} teacher particles", count(M)),
                 M * particle_weights(c, c.teacher_hidden()) * elem * 2 +
                     (c.flow.method == Method::DrMMD && work != Work::Compare ? M * M * 8 : 0)});
  const double S = double(c.compare.samples);
  if (work != Work::Bench)
    out.push_back({"compare.samples", fmt::format("{} samples", count(S)),
                   S * (sample + M * (Ht + o) * elem)});
  if (work == Work::Compare) return out;
  if (work == Work::Train) {
    const double n = (c.data.fresh ? 0 : double(c.data.train_size)) + double(c.data.valid_size);
    out.push_back({c.data.fresh ? "data.valid_size" : "data.train_size",
                   fmt::format("{} samples", count(n)), n * sample});
  }
  // A step: its batch; block layout: the fused kernel's [128 H, B] scratch per busy thread and
  // the feature sums of each block [blocks, o, B] in float64; dense: the [B, N H] activations.
  // Sobolev adds [B, B] Grams in float64: one per block of a chunk, as many again while they are
  // added up, and two per level of the block tree (src/flow/tree_sum.h) besides the root.
  const double held = std::ceil(rows / double(kNoiseBlock));
  const double busy = std::max(1.0, std::min(double(c.threads), held));
  double step = B * (sample + M * (Ht + o) * elem);
  step +=
      dense ? 4 * B * N * H * elem : busy * double(kNoiseBlock) * H * B * elem + held * o * B * 8;
  if (c.flow.method == Method::Sobolev) {
    const double chunk = c.flow.chunk > 0 ? std::ceil(double(c.flow.chunk) / kNoiseBlock) : held;
    step += (2 * std::min(held, chunk) + 2 * std::ceil(std::log2(held)) + 1) * B * B * 8;
  }
  out.push_back({"train.batch", fmt::format("{} inputs per step", count(B)), step});
  return out;
}

double available_memory() {
  double room = INFINITY;
  const double avail = kb_of("/proc/meminfo", "MemAvailable"),
               swap = kb_of("/proc/meminfo", "SwapFree");
  if (avail >= 0) room = 1024 * (avail + std::max(0.0, swap));
  room = std::min(room, cgroup_room());
  // Address space and data segment limits, less what the process maps already.
  const double mapped = 1024 * std::max(0.0, kb_of("/proc/self/status", "VmSize"));
  const double data = 1024 * std::max(0.0, kb_of("/proc/self/status", "VmData"));
  rlimit rl{};
  if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    room = std::min(room, std::max(0.0, double(rl.rlim_cur) - mapped));
  if (getrlimit(RLIMIT_DATA, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    room = std::min(room, std::max(0.0, double(rl.rlim_cur) - data));
  return room;
}

void check_memory(const Config& cfg, Work work, int world, double available) {
  // The estimate is of host memory; a GPU's is another budget (its allocator fails cleanly).
  if (!cfg.device.is_cpu()) return;
  const auto shares = memory_shares(cfg, work, world);
  double total = 0;
  for (const auto& s : shares) total += s.bytes;
  if (!(total > available)) return;
  const auto& big = *std::max_element(
      shares.begin(), shares.end(), [](const auto& a, const auto& b) { return a.bytes < b.bytes; });
  throw ConfigError(fmt::format(
      "{}: {} need {}{}, {} are available", big.key, big.what, format_bytes(big.bytes),
      big.bytes > available ? "" : fmt::format(" of the {} the run needs", format_bytes(total)),
      format_bytes(available)));
}

}  // namespace mmdflow
