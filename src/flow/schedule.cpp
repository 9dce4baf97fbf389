#include "src/flow/schedule.h"

namespace mmdflow {

double BetaSchedule::at(int64_t epoch) const {
  const double t = double(epoch);
  switch (kind) {
    case BetaKind::Constant: return beta0;
    case BetaKind::Step: return beta0 * std::pow(factor, double(epoch / every));
    case BetaKind::Exponential: return beta0 * std::exp(-t / tau);
    case BetaKind::Inverse: return beta0 / (1.0 + t / tau);
  }
  return beta0;
}

void StepSchedule::after_epoch(double train_loss, StepState& s) const {
  if (kind != StepKind::Plateau) return;
  if (train_loss < s.best) {
    s.best = train_loss;
    s.bad_epochs = 0;
  } else if (++s.bad_epochs >= patience) {
    s.step_size *= factor;
    s.bad_epochs = 0;
  }
}

}  // namespace mmdflow
