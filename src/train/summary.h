// summary.json: what a run ended with, declared once (visit_summary); the run writes it, sweep
// reads it back through the same list.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "src/train/compare.h"

namespace mmdflow {

struct Summary {
  std::string status;  // "done", or "non_finite": stopped at a non-finite epoch
  double initial_train_loss = 0, initial_valid_loss = 0;
  int64_t epochs = 0;                      // finished
  std::optional<double> final_train_loss;  // none at epoch 0
  double final_valid_loss = 0, best_valid_loss = 0;
  int64_t best_epoch = 0;
  // The largest validation loss over the initial one, epoch 0's 1 included (none: the initial
  // loss is not positive; a resumed run reads its earlier epochs from losses.csv, to 9 digits),
  // and the first epoch past kDivergeRatio (src/train/divergence.h).
  std::optional<double> max_loss_ratio;
  std::optional<int64_t> diverged_epoch;
  double seconds = 0;  // training time
  int64_t steps = 0;
  double ms_per_step = 0;
  std::string device;
  int64_t threads = 0, processes = 1;
  std::string version;
  std::optional<Comparison> compare;  // the student against its teacher (done runs)
};

template <typename S, typename F>  // S: Summary or const Summary
void visit_summary(S& s, F&& f) {
  f("status", s.status);
  f("initial_train_loss", s.initial_train_loss);
  f("initial_valid_loss", s.initial_valid_loss);
  f("epochs", s.epochs);
  f("final_train_loss", s.final_train_loss);
  f("final_valid_loss", s.final_valid_loss);
  f("best_valid_loss", s.best_valid_loss);
  f("best_epoch", s.best_epoch);
  f("max_loss_ratio", s.max_loss_ratio);
  f("diverged_epoch", s.diverged_epoch);
  f("seconds", s.seconds);
  f("steps", s.steps);
  f("ms_per_step", s.ms_per_step);
  f("device", s.device);
  f("threads", s.threads);
  f("processes", s.processes);
  f("version", s.version);
  f("compare", s.compare);
}

// The JSON text, indented by 2, ending in a newline.
std::string summary_json(const Summary& s);
// summary.json read back (at most kMaxSummaryBytes); throws CheckpointError naming the file when
// it is not one.
constexpr uint64_t kMaxSummaryBytes = uint64_t(1) << 24;
Summary read_summary(const std::string& path);

}  // namespace mmdflow
