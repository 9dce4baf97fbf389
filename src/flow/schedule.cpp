#include "src/flow/schedule.h"

#include <cmath>
#include <stdexcept>

namespace mmdflow {

BetaKind parse_beta_kind(const std::string& name) {
  if (name == "constant") return BetaKind::Constant;
  if (name == "step") return BetaKind::Step;
  if (name == "exponential") return BetaKind::Exponential;
  if (name == "inverse") return BetaKind::Inverse;
  throw std::invalid_argument("unknown beta schedule '" + name +
                              "' (valid: constant, step, exponential, inverse)");
}

std::string to_string(BetaKind kind) {
  switch (kind) {
    case BetaKind::Constant: return "constant";
    case BetaKind::Step: return "step";
    case BetaKind::Exponential: return "exponential";
    case BetaKind::Inverse: return "inverse";
  }
  return "?";
}

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

}  // namespace mmdflow
