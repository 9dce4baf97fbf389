// Noise-level schedules beta_t (MATH.md, "Noise injection"). t counts epochs from 0.
#pragma once
#include <cstdint>
#include <string>

namespace mmdflow {

enum class BetaKind {
  Constant,     // beta0
  Step,         // beta0 * factor^floor(t / every)   (paper: factor 0.5, every 1000)
  Exponential,  // beta0 * exp(-t / tau)
  Inverse,      // beta0 / (1 + t / tau)
};

BetaKind parse_beta_kind(const std::string& name);  // throws std::invalid_argument
std::string to_string(BetaKind kind);

struct BetaSchedule {
  BetaKind kind = BetaKind::Constant;
  double beta0 = 0.0;
  double factor = 0.5;
  int64_t every = 1000;
  double tau = 1000.0;
  double at(int64_t epoch) const;
};

}  // namespace mmdflow
