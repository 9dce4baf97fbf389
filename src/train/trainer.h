// The trainer owns everything a run changes: the student (or its shard), the generator, the
// schedules, the logs. It is given its parts built (src/train/build.h): teacher, validation set,
// student, schedules and the stepper that takes the epoch's steps. Sharded over processes (a
// Comm of world > 1), every rank holds the same teacher, data, generators and schedules, and its
// own contiguous range of particles; per step the ranks add up one [B, o] feature sum, per epoch
// one vector of logs.
#pragma once
#include <ATen/core/Generator.h>
#include <c10/core/Device.h>

#include <chrono>
#include <functional>
#include <memory>

#include "src/comm/comm.h"
#include "src/train/build.h"
#include "src/train/config.h"
#include "src/train/records.h"
#include "src/train/reducer.h"

namespace mmdflow {

class Trainer {
 public:
  enum class End { Done, NonFinite, Stopped };

  // Runs cfg with the parts built for it on comm (nullptr: a single process). With a comm of
  // world > 1, every rank constructs, runs and is asked for its state and finiteness together.
  Trainer(const Config& cfg, RunParts parts, Comm* comm = nullptr);
  // Builds the parts first (build_parts); throws ConfigError for settings the machine cannot run.
  explicit Trainer(const Config& cfg, Comm* comm = nullptr);

  // Runs the remaining epochs, calling on_epoch after each. Asks stop() before each step: a
  // non-zero answer (e.g. the signal received) stops the run at that step boundary (mid-epoch
  // too) and returns Stopped. Sharded, each rank's answer travels with the step's sum, so all
  // ranks stop at the same boundary, one step later; stopped_by() is then the largest answer.
  // Returns NonFinite after reporting an epoch whose log is not finite.
  End run(const std::function<void(const EpochLog&)>& on_epoch,
          const std::function<int()>& stop = {});
  int stopped_by() const { return stopped_by_; }

  // The state to checkpoint (this shard's weights copied to CPU), and its restoration (from a
  // checkpoint checked against this trainer's config): run() then continues exactly where the
  // state was taken.
  TrainerState state() const;
  void restore(TrainerState s);
  bool finite();  // weights and the current epoch's loss sum are finite, on every rank

  const Config& config() const { return cfg_; }
  c10::Device device() const { return p_.device; }
  Comm& comm() { return *comm_; }
  const Measure& measure() const { return *p_.measure; }
  Results& results() { return *p_.results; }
  // The losses of the initial student (epoch 0) on the training and validation sets (exact
  // kernel: the exact 1/2 MMD^2 for the training loss).
  double initial_train_loss() const { return initial_train_; }
  double initial_valid_loss() const { return initial_valid_; }

 private:
  void start();  // the generator, the schedules' start and the initial losses
  // The steps of the current epoch from s_.batch on; false when stopped before one of them.
  bool run_steps(StepOptions& opt, StopReducer& reduce, const std::function<int()>& stop,
                 StepStats& last);
  // The log of the epoch just stepped through (the epoch's one sum over the ranks), and the
  // state moved past it.
  EpochLog end_epoch(const StepOptions& opt, const StepStats& last, Reducer& reduce);
  // Whether to stop now: one process asks stop() itself; ranks act on the answers the last sum
  // carried.
  bool stopping(const StopReducer& reduce, const std::function<int()>& stop);

  Config cfg_;
  std::unique_ptr<Comm> own_comm_;  // the single process's, when none is given
  Comm* comm_;
  RunParts p_;
  double initial_train_ = 0, initial_valid_ = 0;
  int stopped_by_ = 0;
  TrainerState s_;       // all but s_.student, which lives in p_.student
  double seconds0_ = 0;  // s_.seconds when run() began
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace mmdflow
