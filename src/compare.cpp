#include "src/compare.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "src/flow.h"

namespace mmdflow {

Comparison compare(const ParticleFamily& fam, const Particles& student, const Particles& teacher,
                   InputDist dist, int64_t samples, int64_t nearest, at::Generator& gen) {
  Comparison c;
  c.samples = samples;
  at::Tensor X = sample_inputs(dist, samples, fam.dim, gen, student.A.options());
  at::Tensor Y = feature_sum(fam, teacher, X) / double(teacher.size());
  c.half_mmd2 = half_mse(fam, student, X, Y, 1000).item<double>();
  at::Tensor D = at::cdist(teacher.flat().to(at::kDouble).unsqueeze(0),
                           student.flat().to(at::kDouble).unsqueeze(0))
                     .squeeze(0)
                     .cpu();  // [M, N]
  const int64_t k = std::min<int64_t>(nearest, student.size());
  auto [dist_k, idx_k] = D.topk(k, 1, /*largest=*/false);
  for (int64_t m = 0; m < teacher.size(); ++m) {
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
    j["nearest"].push_back({{"teacher", m.teacher}, {"student", m.student}, {"distance", m.distance}});
  return j;
}

}  // namespace mmdflow
