#include "src/train/compare.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "src/base/json_fields.h"
#include "src/flow/flow.h"
#include "src/kernels/arccos.h"
#include "src/train/reducer.h"

namespace mmdflow {
Comparison compare(const Student& student, const ParticleNet& teacher, InputDist dist,
                   int64_t samples, int64_t nearest, at::Generator& gen, Comm& comm, bool exact) {
  Comparison c;
  c.samples = samples;
  const Particles& zt = teacher.particles();
  at::Tensor X = sample_inputs(dist, samples, teacher.family().dim, gen, zt.A.options());
  CommReducer reduce(comm);
  c.half_mmd2 = half_mse(student, X, teacher.forward(X), 1000, reduce).item<double>();
  const Particles* zs = student.particles();
  // Exact runs are never sharded: every pair of particles enters the exact sum.
  TORCH_CHECK(!exact || (zs && student.shard().size() == student.size()),
              "the exact 1/2 MMD^2 needs a whole block student");
  if (exact) c.exact_half_mmd2 = 0.5 * exact_mmd2(*zs, zt, dist).item<double>();
  if (!zs || zs->flat().size(1) != zt.flat().size(1)) return c;
  // Each rank's nearest k of its own particles, as (distance, global index), padded with
  // (inf, -1) where it holds fewer; then the k nearest of all.
  const int64_t M = zt.size(), k = std::min<int64_t>(nearest, student.size());
  const int64_t mine = std::min<int64_t>(k, zs->size()), first = student.shard().begin;
  // Differences, not |x|^2 + |y|^2 - 2 x.y, which loses all digits of distances near 0.
  constexpr int64_t kExactDistances = 2;
  at::Tensor D = at::cdist(zt.flat().to(at::kDouble).unsqueeze(0),
                           zs->flat().to(at::kDouble).unsqueeze(0), 2.0, kExactDistances)
                     .squeeze(0)
                     .cpu();  // [M, n here]
  auto [dist_k, idx_k] = D.topk(mine, 1, /*largest=*/false);
  std::vector<double> local(size_t(2 * M * k), 0.0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t j = 0; j < k; ++j) {
      const bool held = j < mine;
      local[2 * (m * k + j)] = held ? dist_k[m][j].item<double>() : INFINITY;
      local[2 * (m * k + j) + 1] = held ? double(idx_k[m][j].item<int64_t>() + first) : -1.0;
    }
  const auto all = comm.gather(local);
  for (int64_t m = 0; m < M; ++m) {
    std::vector<std::pair<double, int64_t>> candidates;
    for (const auto& rank : all)
      for (int64_t j = 0; j < k; ++j)
        if (rank[2 * (m * k + j) + 1] >= 0)
          candidates.emplace_back(rank[2 * (m * k + j)], int64_t(rank[2 * (m * k + j) + 1]));
    std::sort(candidates.begin(), candidates.end());
    Comparison::Match match;
    match.teacher = m;
    for (int64_t j = 0; j < k; ++j) {
      match.student.push_back(candidates[j].second);
      match.distance.push_back(candidates[j].first);
    }
    c.matches.push_back(std::move(match));
  }
  return c;
}

Comparison compare_on_data(const Student& student, const Dataset& data, Comm& comm) {
  Comparison c;
  c.samples = data.size();
  CommReducer reduce(comm);
  c.test_loss = half_mse(student, data.X, data.Y, 1000, reduce).item<double>();
  c.zero_test_loss = 0.5 * data.Y.to(at::kDouble).pow(2).sum(1).mean().item<double>();
  c.half_mmd2 = *c.test_loss;
  return c;
}

std::string format_table(const Comparison& c) {
  std::string s;
  if (c.test_loss)
    return fmt::format(
        "test loss 1/2 mean ||f_student(x) - y||^2 over the {} validation rows: {:.6e}\n"
        "the zero student's (1/2 mean ||y||^2): {:.6e}; the student's is {:.4g} of it\n",
        c.samples, *c.test_loss, *c.zero_test_loss, *c.test_loss / *c.zero_test_loss);
  if (c.target_half_mmd2) {
    s += fmt::format("1/2 MMD^2(points, target samples): {:.6e}\n", *c.target_half_mmd2);
    if (c.samples > 0)
      s += fmt::format("1/2 MMD^2(points, {} fresh draws of the target's law): {:.6e}\n", c.samples,
                       c.half_mmd2);
    return s;
  }
  if (c.exact_half_mmd2)
    s += fmt::format("1/2 MMD^2(student, teacher), closed-form kernel: {:.6e}\n",
                     *c.exact_half_mmd2);
  s += fmt::format("1/2 MMD^2(student, teacher) on {} fresh inputs: {:.6e}\n", c.samples,
                   c.half_mmd2);
  if (c.matches.empty()) return s;
  s += fmt::format("{:>8}  {:>5}  {:>8}  {:>12}\n", "teacher", "rank", "student", "distance");
  for (const auto& m : c.matches)
    for (size_t j = 0; j < m.student.size(); ++j)
      s += fmt::format("{:>8}  {:>5}  {:>8}  {:>12.6f}\n", m.teacher, j + 1, m.student[j],
                       m.distance[j]);
  return s;
}

void to_json(nlohmann::json& j, const Comparison& c) { visit_comparison(c, JsonWriter{j}); }
void from_json(const nlohmann::json& j, Comparison& c) { visit_comparison(c, JsonReader{j}); }
void to_json(nlohmann::json& j, const Comparison::Match& m) { visit_match(m, JsonWriter{j}); }
void from_json(const nlohmann::json& j, Comparison::Match& m) { visit_match(m, JsonReader{j}); }

}  // namespace mmdflow
