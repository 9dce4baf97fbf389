// Flow-step benchmark: ms per step, GFLOP/s on the first-layer products, against this machine's
// float32 matrix-product throughput measured in the same run.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "src/comm/comm.h"
#include "src/train/config.h"

namespace mmdflow {

struct BenchOptions {
  std::vector<int64_t> particles;  // empty: the config's student size
  int64_t batch = 0;               // 0: the config's train.batch
  int64_t repeats = 20;
  int64_t warmup = 3;
  int64_t busy = 0;  // > 0: the steps at the configured threads against one thread, under this
                     // many busy-loop processes (block or dense layout, one process)
};

// The BLAS library behind ATen's products: OpenBLAS reports its version and the core it chose.
struct BlasInfo {
  std::string name = "unknown BLAS";
  std::string file;   // the shared library that holds sgemm_
  std::string core;   // OpenBLAS's core, else empty
  int core_bits = 0;  // vector width of that core's kernels, 0 if unknown
};

// The middle of the timings (0 for none), and this process's peak resident memory in MiB: what
// each bench table reports.
double median(std::vector<double> v);
double peak_rss_mib();

// The vector width of OpenBLAS's kernels for a core (openblas_get_corename), 0 if unknown.
int openblas_core_bits(std::string core);

// What a slow BLAS is, and what fixes it: one line, or empty when the float32 product (sgemm
// GFLOP/s) runs at a quarter or more of the FMA peak (peak GFLOP/s) of a CPU whose widest
// multiply-add vectors have `cpu_bits`. `share` is the CPU time the product's threads had over
// its wall time: below 0.8, and fast enough on that time, other processes are named as the cause,
// not BLAS. OPENBLAS_CORETYPE is only named, never set.
std::string blas_warning(const BlasInfo& blas, int cpu_bits, double sgemm, double peak,
                         double share);

// Prints a table to stdout (rank 0), after the kernels' path, the BLAS library and the FMA peak.
// Sharded (comm of world > 1), every rank steps its shard of each size, and the share of a step
// spent in the feature sum's allreduce (waiting for slower ranks included) is reported beside the
// step time. With student.layout dense, the original code's network is timed, and with
// flow.kernel exact the population flow's exact_step (each in one process).
void run_bench(Config cfg, const BenchOptions& opt, Comm& comm);

}  // namespace mmdflow
