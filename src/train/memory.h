// The memory a command needs, estimated from its config before any work, against what the
// process may still allocate: a run that cannot fit is refused at its start (exit 2, one line
// naming the key behind the largest share) instead of failing or being killed hours later.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "src/train/config.h"

namespace mmdflow {

// One share of an estimate: the key that sets it, what it holds, bytes.
struct MemoryShare {
  std::string key;   // e.g. "student.particles"
  std::string what;  // e.g. "1000000 particles of 33 weights"
  double bytes;
};

enum class Work {
  Train,    // train: student, teacher, datasets, a step's scratch, the final comparison
  Compare,  // compare: the weights read back and the comparison's samples
  Bench,    // bench: student, teacher, one batch and its step (cfg.student.particles, train.batch)
};

// What `work` with cfg holds at once in one process of a run sharded over `world` (block layout:
// its rows; dense: all), cfg.threads resolved. Each share is a lower bound: the peak resident
// memory of real runs lies above it (tests/src/train/test_memory.cpp), so no run that fits is
// refused.
std::vector<MemoryShare> memory_shares(const Config& cfg, Work work, int world);
// Bytes this process may still allocate: MemAvailable and free swap, less under a cgroup memory
// limit or RLIMIT_AS / RLIMIT_DATA.
double available_memory();
// Throws ConfigError when the shares add up to more than `available`, e.g.
// "student.particles: 1000000000 particles of 33 weights need 16 GB, 12 GB are available".
void check_memory(const Config& cfg, Work work, int world, double available = available_memory());
// "612 GB", "1.5 MB": decimal units, three digits.
std::string format_bytes(double bytes);

}  // namespace mmdflow
