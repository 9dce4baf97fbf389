// Schedules of a run, by epoch t from 0 (MATH.md, "Noise injection"): the noise level beta_t and
// the step size gamma (constant, or cut on a plateau of the train loss).
#pragma once
#include <cmath>
#include <cstdint>

#include "src/base/names.h"

namespace mmdflow {

enum class BetaKind {
  Constant,     // beta0
  Step,         // beta0 * factor^floor(t / every)   (paper: factor 0.5, every 1000)
  Exponential,  // beta0 * exp(-t / tau)
  Inverse,      // beta0 / (1 + t / tau)
};

template <>
struct Names<BetaKind> {
  static constexpr const char* what = "beta schedule";
  static constexpr std::array<std::pair<BetaKind, const char*>, 4> table{
      {{BetaKind::Constant, "constant"},
       {BetaKind::Step, "step"},
       {BetaKind::Exponential, "exponential"},
       {BetaKind::Inverse, "inverse"}}};
};

struct BetaSchedule {
  BetaKind kind = BetaKind::Constant;
  double beta0 = 0.0;
  double factor = 0.5;
  int64_t every = 1000;
  double tau = 1000.0;
  double at(int64_t epoch) const;
};

enum class StepKind { Constant, Plateau };

template <>
struct Names<StepKind> {
  static constexpr const char* what = "step schedule";
  static constexpr std::array<std::pair<StepKind, const char*>, 2> table{
      {{StepKind::Constant, "constant"}, {StepKind::Plateau, "plateau"}}};
};

// What the step schedule carries from epoch to epoch (checkpointed with the run).
struct StepState {
  double step_size = 0;    // gamma now
  double best = INFINITY;  // plateau: best train loss so far
  int64_t bad_epochs = 0;  // plateau: epochs since it improved
};

// plateau: gamma <- factor gamma after `patience` epochs without a lower train loss.
struct StepSchedule {
  StepKind kind = StepKind::Constant;
  double step_size = 1.0;  // gamma at the start
  int64_t patience = 20;
  double factor = 0.5;
  StepState start() const { return {step_size, INFINITY, 0}; }
  void after_epoch(double train_loss, StepState& s) const;
};

}  // namespace mmdflow
