#include "src/train/compare.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "src/flow/flow.h"

namespace mmdflow {

Comparison compare(const Student& student, const ParticleNet& teacher, InputDist dist,
                   int64_t samples, int64_t nearest, at::Generator& gen) {
  Comparison c;
  c.samples = samples;
  const Particles& zt = teacher.particles();
  at::Tensor X = sample_inputs(dist, samples, teacher.family().dim, gen, zt.A.options());
  c.half_mmd2 = half_mse(student, X, teacher.forward(X), 1000).item<double>();
  const Particles* zs = student.particles();
  if (!zs || zs->flat().size(1) != zt.flat().size(1)) return c;
  at::Tensor D = at::cdist(zt.flat().to(at::kDouble).unsqueeze(0),
                           zs->flat().to(at::kDouble).unsqueeze(0))
                     .squeeze(0)
                     .cpu();  // [M, N]
  const int64_t k = std::min<int64_t>(nearest, zs->size());
  auto [dist_k, idx_k] = D.topk(k, 1, /*largest=*/false);
  for (int64_t m = 0; m < zt.size(); ++m) {
    Comparison::Match match;
    match.teacher = m;
    for (int64_t j = 0; j < k; ++j) {
      match.student.push_back(idx_k[m][j].item<int64_t>());
      match.distance.push_back(dist_k[m][j].item<double>());
    }
    c.matches.push_back(std::move(match));
  }
  return c;
}

std::string format_table(const Comparison& c) {
  std::string s = fmt::format("1/2 MMD^2(student, teacher) on {} fresh inputs: {:.6e}\n", c.samples,
                              c.half_mmd2);
  if (c.matches.empty()) return s;
  s += fmt::format("{:>8}  {:>5}  {:>8}  {:>12}\n", "teacher", "rank", "student", "distance");
  for (const auto& m : c.matches)
    for (size_t j = 0; j < m.student.size(); ++j)
      s += fmt::format("{:>8}  {:>5}  {:>8}  {:>12.6f}\n", m.teacher, j + 1, m.student[j],
                       m.distance[j]);
  return s;
}

nlohmann::json to_json(const Comparison& c) {
  nlohmann::json j;
  j["samples"] = c.samples;
  j["half_mmd2"] = c.half_mmd2;
  j["nearest"] = nlohmann::json::array();
  for (const auto& m : c.matches)
    j["nearest"].push_back(
        {{"teacher", m.teacher}, {"student", m.student}, {"distance", m.distance}});
  return j;
}

}  // namespace mmdflow
