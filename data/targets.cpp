#include "data/targets.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <cmath>
#include <stdexcept>
#include <vector>

namespace mmdflow {
namespace {

const auto kF64 = at::TensorOptions().dtype(at::kDouble);

// [M, 2]: three rings of radius r, each 2.5 r below the last, in a random order.
at::Tensor three_rings(int64_t M, at::Generator& gen) {
  constexpr double r = 0.3, kStep = 2.5 * r;
  std::vector<at::Tensor> rings;
  for (int64_t j = 0; j < 3; ++j) {
    const int64_t K = M / 3 + (j < M % 3 ? 1 : 0);
    const at::Tensor angle = at::arange(K, kF64) * (2 * M_PI / double(std::max<int64_t>(K, 1)));
    rings.push_back(at::stack({r * at::cos(angle), r * at::sin(angle) - double(j) * kStep}, 1));
  }
  return at::cat(rings).index_select(0, at::randperm(M, gen));
}

// [M, 2]: each row's component first, then its N(0, 0.3 I_2) offset.
at::Tensor mixture(int64_t M, at::Generator& gen) {
  const at::Tensor means =
      at::tensor({-2.0, -2.0, -2.0, 2.0, 2.0, -2.0, 2.0, 2.0}, kF64).view({4, 2});
  const at::Tensor component = at::randint(0, 4, {M}, gen, at::kLong);
  return means.index_select(0, component) + std::sqrt(0.3) * at::normal(0, 1, {M, 2}, gen, kF64);
}

// [M, d]: t = z / sqrt(chi2_df / df) coordinatewise, chi2_df = 2 Gamma(df / 2, 1).
at::Tensor student(int64_t M, int64_t d, double df, at::Generator& gen) {
  const at::Tensor z = at::normal(0, 1, {M, d}, gen, kF64);
  const at::Tensor chi2 = 2 * at::_standard_gamma(at::full({M, d}, df / 2, kF64), gen);
  return z / at::sqrt(chi2 / df);
}

}  // namespace

int64_t law_dim(TargetLaw law, int64_t d) {
  return law == TargetLaw::ThreeRings || law == TargetLaw::Mixture ? 2 : d;
}

at::Tensor draw_target(TargetLaw law, int64_t M, int64_t d, double df, at::Generator& gen) {
  if (M < 0 || law_dim(law, d) < 1)
    throw std::invalid_argument(fmt::format("{} samples of dimension {}", M, law_dim(law, d)));
  if (law == TargetLaw::Student && !(df > 0))
    throw std::invalid_argument(fmt::format("student: {} degrees of freedom, not > 0", df));
  if (!gen.device().is_cpu())
    throw std::invalid_argument("target samples are drawn from a CPU generator");
  switch (law) {
    case TargetLaw::ThreeRings: return three_rings(M, gen);
    case TargetLaw::Mixture: return mixture(M, gen);
    case TargetLaw::Gaussian: return at::normal(0, 1, {M, d}, gen, kF64);
    case TargetLaw::Student: return student(M, d, df, gen);
    case TargetLaw::File: break;
  }
  throw std::invalid_argument("a file's samples are read (read_samples), not drawn");
}

}  // namespace mmdflow
