// Flow-step benchmark: ms per step, GFLOP/s on the first-layer products, against this machine's
// float32 matrix-product throughput measured in the same run.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "src/dist/comm.h"
#include "src/train/config.h"

namespace mmdflow {

struct BenchOptions {
  std::vector<int64_t> particles;  // empty: the config's student size
  int64_t batch = 0;               // 0: the config's train.batch
  int64_t repeats = 20;
  int64_t warmup = 3;
};

// Prints a table to stdout (rank 0). Sharded (comm of world > 1), every rank steps its shard of
// each size, and the share of a step spent in the feature sum's allreduce (waiting for slower
// ranks included) is reported beside the step time.
void run_bench(Config cfg, const BenchOptions& opt, Comm& comm);  // block layout

}  // namespace mmdflow
