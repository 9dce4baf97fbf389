// One training run from start to end, in one process or as one rank of several running the same
// command: the set-up agreed over the ranks, every check before the first write, open or resume,
// the per-epoch logs and checkpoints, stopping by a signal or on non-finite values, the
// comparison, the final weights and the summary. The command line parses its options, calls
// run_training, and maps the outcome to an exit code.
#pragma once
#include <functional>
#include <string>

#include "src/comm/comm.h"
#include "src/train/config.h"
#include "src/train/divergence.h"
#include "src/train/records.h"
#include "src/train/trainer.h"

namespace mmdflow {

struct RunRequest {
  Config cfg;              // resolved: threads and log.print_every set
  std::string out;         // the run folder (a resumed run's own)
  bool resume = false;     // continue the run in `out` from its checkpoint
  bool out_given = false;  // `out` was named (--out, --resume), not rank 0's default
};

// What the caller adds to a run.
struct RunHooks {
  std::function<int()> stop;  // asked before each step: non-zero (a signal) stops the run there
  // Rank 0, after each epoch's logs are written, with the run's divergence up to that epoch.
  std::function<void(const EpochLog&, const Divergence&)> on_epoch;
  std::function<void()> on_trained;  // every rank, when training ends, before the final writes
  std::function<void(const std::string&)> say;  // rank 0's messages for stdout
};

struct Outcome {
  Trainer::End end = Trainer::End::Done;
  int signal = 0;       // Stopped: the signal that stopped it
  std::string message;  // rank 0's line for stderr when the run did not finish ("": none)
};

// Throws ConfigError, UsageError, CheckpointError, IoError as the commands document (every rank
// together, where the failure is found on one).
Outcome run_training(RunRequest req, Comm& comm, const RunHooks& hooks);

// The run's set-up in one line, the folder, and a line when the teacher is misspecified.
std::string setup_line(const Config& c, const std::string& out, int world);

}  // namespace mmdflow
