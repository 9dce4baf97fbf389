// `mmdflow sweep`: every setting (variant x grid point) x seed as a `train` child process, J at a
// time, one folder per run; complete runs are kept, partial ones resumed (train --resume). Then
// sweep.csv (a row per run) and curves.csv (per setting and epoch: mean, std, min, max over
// seeds), and a printed table per setting (its final validation losses over its done runs, the
// counts of its runs). --plan prints the command lines instead (for a scheduler); --collect only
// tabulates.
#pragma once
#include <string>
#include <vector>

#include "src/train/config.h"

namespace mmdflow {

enum class SweepMode { Run, Plan, Collect };

struct SweepOptions {
  std::string config_path;        // the sweep's config (a train config with a `sweep` section)
  std::vector<std::string> sets;  // --set overrides of every run
  std::vector<std::string> grid;  // "key=v1,v2,..." axes
  int64_t seeds = 0;              // 0: the config's sweep.seeds
  int64_t jobs = 0;               // 0: one per core
  std::string out;                // the sweep folder
  bool extend = false;            // a rerun may change keys a resumed run may change
  SweepMode mode = SweepMode::Run;
};

// Returns the exit code: 0 when every run finished (done or non-finite), 1 otherwise, 128 + the
// signal when SIGINT or SIGTERM stopped it (its runs stopped with a checkpoint). Throws
// ConfigError for a bad setting before any run starts.
int run_sweep(const SweepOptions& opt, const std::string& self_exe);

}  // namespace mmdflow
