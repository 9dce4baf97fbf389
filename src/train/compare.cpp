#include "src/train/compare.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>

#include "src/base/json_fields.h"
#include "src/flow/flow.h"
#include "src/kernels/arccos.h"
#include "src/train/reducer.h"

namespace mmdflow {
namespace {

// The sum of C[i][col[i]] in row order.
double assignment_sum(const std::vector<double>& C, int64_t H, const std::vector<int64_t>& col) {
  double s = 0;
  for (int64_t i = 0; i < H; ++i) s += C[size_t(i * H + col[size_t(i)])];
  return s;
}

// Same shapes but the particle count, and the same biases.
bool comparable(const Particles& x, const Particles& y) {
  auto same = [](const at::Tensor& s, const at::Tensor& t) {
    return s.defined() == t.defined() && (!s.defined() || s.sizes().slice(1) == t.sizes().slice(1));
  };
  return same(x.A, y.A) && same(x.a, y.a) && same(x.B, y.B) && same(x.b, y.b);
}

// A particle's hidden units, each (its row of A, its entry of a, its column of B), float64 on
// the CPU: [N, H, d (+1) + o].
at::Tensor units_of(const Particles& z) {
  std::vector<at::Tensor> parts{z.A.to(at::kDouble)};
  if (z.a.defined()) parts.push_back(z.a.to(at::kDouble).unsqueeze(2));
  parts.push_back(z.B.to(at::kDouble).transpose(1, 2));
  return at::cat(parts, 2).cpu().contiguous();
}

}  // namespace

double min_assignment_brute_force(const std::vector<double>& C, int64_t H) {
  std::vector<int64_t> col(size_t(H), 0);
  std::iota(col.begin(), col.end(), int64_t(0));
  double best = std::numeric_limits<double>::infinity();
  do best = std::min(best, assignment_sum(C, H, col));
  while (std::next_permutation(col.begin(), col.end()));
  return best;
}

// Kuhn-Munkres with row and column potentials u, v (shortest augmenting paths), 1-based with
// column 0 as the path's root: row[j] is the row assigned to column j.
double min_assignment_hungarian(const std::vector<double>& C, int64_t H) {
  const double inf = std::numeric_limits<double>::infinity();
  const size_t n = size_t(H);
  std::vector<double> u(n + 1, 0.0), v(n + 1, 0.0);
  std::vector<size_t> row(n + 1, 0), way(n + 1, 0);
  for (size_t i = 1; i <= n; ++i) {
    row[0] = i;
    size_t j0 = 0;
    std::vector<double> minv(n + 1, inf);
    std::vector<bool> used(n + 1, false);
    do {
      used[j0] = true;
      const size_t i0 = row[j0];
      double delta = inf;
      size_t j1 = 0;
      for (size_t j = 1; j <= n; ++j) {
        if (used[j]) continue;
        const double cur = C[(i0 - 1) * n + (j - 1)] - u[i0] - v[j];
        if (cur < minv[j]) minv[j] = cur, way[j] = j0;
        if (j1 == 0 || minv[j] < delta) delta = minv[j], j1 = j;
      }
      for (size_t j = 0; j <= n; ++j)
        if (used[j])
          u[row[j]] += delta, v[j] -= delta;
        else
          minv[j] -= delta;
      j0 = j1;
    } while (row[j0] != 0);
    do {
      const size_t j1 = way[j0];
      row[j0] = row[j1];
      j0 = j1;
    } while (j0 != 0);
  }
  std::vector<int64_t> col(n, 0);
  for (size_t j = 1; j <= n; ++j) col[row[j] - 1] = int64_t(j - 1);
  return assignment_sum(C, H, col);
}

at::Tensor unit_order_distances(const Particles& teacher, const Particles& student) {
  TORCH_CHECK(comparable(teacher, student), "particles of different shapes");
  const at::Tensor ut = units_of(teacher), us = units_of(student);  // [M, H, k], [N, H, k]
  const int64_t M = ut.size(0), N = us.size(0), H = ut.size(1), k = ut.size(2);
  const bool biased = teacher.b.defined();
  const at::Tensor bt = biased ? teacher.b.to(at::kDouble).cpu().contiguous() : at::Tensor();
  const at::Tensor bs = biased ? student.b.to(at::kDouble).cpu().contiguous() : at::Tensor();
  const int64_t o = biased ? bt.size(1) : 0;
  at::Tensor D = at::empty({M, N}, at::kDouble);
  const double* T = ut.data_ptr<double>();
  const double* S = us.data_ptr<double>();
  const double* Tb = biased ? bt.data_ptr<double>() : nullptr;
  const double* Sb = biased ? bs.data_ptr<double>() : nullptr;
  double* out = D.data_ptr<double>();
  at::parallel_for(0, N, 16, [&](int64_t begin, int64_t end) {
    std::vector<double> C(size_t(H * H));  // squared distances of unit i of t to unit j of s
    for (int64_t n = begin; n < end; ++n)
      for (int64_t m = 0; m < M; ++m) {
        for (int64_t i = 0; i < H; ++i)
          for (int64_t j = 0; j < H; ++j) {
            const double* x = T + (m * H + i) * k;
            const double* y = S + (n * H + j) * k;
            double s = 0;
            for (int64_t q = 0; q < k; ++q) s += (x[q] - y[q]) * (x[q] - y[q]);
            C[size_t(i * H + j)] = s;
          }
        double sq = H <= kBruteForceUnits ? min_assignment_brute_force(C, H)
                                          : min_assignment_hungarian(C, H);
        for (int64_t q = 0; q < o; ++q) {
          const double e = Tb[m * o + q] - Sb[n * o + q];
          sq += e * e;
        }
        out[m * N + n] = std::sqrt(sq);
      }
  });
  return D;
}

namespace {

// The zero student's loss on outputs Y [n, o]: 1/2 (1/n) sum ||y||^2, in float64.
double zero_student_loss(const at::Tensor& Y) {
  return 0.5 * Y.to(at::kDouble).square().sum(1).mean().item<double>();
}

// For each teacher particle its `nearest` nearest student particles (every rank gets all); none
// when the particles are not comparable (dense, misspecified).
std::optional<std::vector<Comparison::Match>> nearest_particles(const Student& student,
                                                                const Particles& zt,
                                                                int64_t nearest, Comm& comm) {
  const Particles* zs = student.particles();
  if (!zs || !comparable(*zs, zt)) return std::nullopt;
  // Each rank's nearest k of its own particles, as (distance, global index), padded with
  // (inf, -1) where it holds fewer; then the k nearest of all. Ties go to the lower index.
  const int64_t M = zt.size(), k = std::min<int64_t>(nearest, student.size());
  const int64_t n = zs->size(), mine = std::min<int64_t>(k, n), first = student.shard().begin;
  const at::Tensor D = unit_order_distances(zt, *zs);  // [M, n]
  const double* d = D.data_ptr<double>();
  std::vector<double> local(size_t(2 * M * k), 0.0);
  std::vector<std::pair<double, int64_t>> row(static_cast<size_t>(n));
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t j = 0; j < n; ++j) row[size_t(j)] = {d[m * n + j], j + first};
    std::partial_sort(row.begin(), row.begin() + mine, row.end());
    for (int64_t j = 0; j < k; ++j) {
      const bool held = j < mine;
      local[size_t(2 * (m * k + j))] = held ? row[size_t(j)].first : INFINITY;
      local[size_t(2 * (m * k + j) + 1)] = held ? double(row[size_t(j)].second) : -1.0;
    }
  }
  const auto all = comm.gather(local);
  std::vector<Comparison::Match> out;
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
    out.push_back(std::move(match));
  }
  return out;
}

}  // namespace

Comparison compare(const Student& student, const ParticleNet& teacher, InputDist dist,
                   int64_t samples, int64_t nearest, at::Generator& gen, Comm& comm, bool exact) {
  Comparison c;
  c.samples = samples;
  const Particles& zt = teacher.particles();
  at::Tensor X = sample_inputs(dist, samples, teacher.family().dim, gen, zt.A.options());
  const at::Tensor Y = teacher.forward(X);  // [samples, o]
  CommReducer reduce(comm);
  c.half_mmd2 = half_mse(student, X, Y, 1000, reduce).item<double>();
  c.zero_half_mmd2 = zero_student_loss(Y);
  const Particles* zs = student.particles();
  // Exact runs are never sharded: every pair of particles enters the exact sum.
  TORCH_CHECK(!exact || (zs && student.shard().size() == student.size()),
              "the exact 1/2 MMD^2 needs a whole block student");
  if (exact) c.exact_half_mmd2 = 0.5 * exact_mmd2(*zs, zt, dist).item<double>();
  c.nearest = nearest_particles(student, zt, nearest, comm);
  return c;
}

Comparison compare_on_data(const Student& student, const Dataset& data, Comm& comm,
                           const ParticleNet* teacher, int64_t nearest) {
  Comparison c;
  c.samples = data.size();
  CommReducer reduce(comm);
  c.test_loss = half_mse(student, data.X, data.Y, 1000, reduce).item<double>();
  c.zero_test_loss = zero_student_loss(data.Y);
  c.half_mmd2 = *c.test_loss;
  if (teacher) c.nearest = nearest_particles(student, teacher->particles(), nearest, comm);
  return c;
}

std::string format_table(const Comparison& c) {
  std::string s;
  if (c.target_half_mmd2) {
    s += fmt::format("1/2 MMD^2(points, target samples): {:.6e}\n", *c.target_half_mmd2);
    if (c.samples > 0)
      s += fmt::format("1/2 MMD^2(points, {} fresh draws of the target's law): {:.6e}\n", c.samples,
                       c.half_mmd2);
    return s;
  }
  if (c.test_loss) {
    s += fmt::format(
        "test loss 1/2 mean ||f_student(x) - y||^2 over the {} validation rows: {:.6e}\n"
        "the zero student's (1/2 mean ||y||^2): {:.6e}; the student's is {:.4g} of it\n",
        c.samples, *c.test_loss, *c.zero_test_loss, *c.test_loss / *c.zero_test_loss);
  } else {
    if (c.exact_half_mmd2)
      s += fmt::format("1/2 MMD^2(student, teacher), closed-form kernel: {:.6e}\n",
                       *c.exact_half_mmd2);
    s += fmt::format("1/2 E_x ||f_student(x) - f_teacher(x)||^2 on {} fresh inputs: {:.6e}",
                     c.samples, c.half_mmd2);
    if (c.zero_half_mmd2) {
      s += fmt::format("; the zero student's, 1/2 E_x ||f_teacher(x)||^2: {:.6e}",
                       *c.zero_half_mmd2);
      if (*c.zero_half_mmd2 > 0)
        s += fmt::format("; ratio {:.3e}", c.half_mmd2 / *c.zero_half_mmd2);
    }
    s += "\n";
  }
  if (!c.nearest) return s;
  s += "Nearest student particles of each teacher particle: Euclidean distance over all "
       "coordinates (A, a, B, b), minimised over the orders of the student particle's hidden "
       "units\n";
  s += fmt::format("{:>8}  {:>5}  {:>8}  {:>23}\n", "teacher", "rank", "student",
                   "distance mod unit order");
  for (const auto& m : *c.nearest)
    for (size_t j = 0; j < m.student.size(); ++j)
      s += fmt::format("{:>8}  {:>5}  {:>8}  {:>23.6f}\n", m.teacher, j + 1, m.student[j],
                       m.distance[j]);
  return s;
}

void to_json(nlohmann::json& j, const Comparison& c) { visit_comparison(c, JsonWriter{j}); }
void from_json(const nlohmann::json& j, Comparison& c) { visit_comparison(c, JsonReader{j}); }
void to_json(nlohmann::json& j, const Comparison::Match& m) { visit_match(m, JsonWriter{j}); }
void from_json(const nlohmann::json& j, Comparison::Match& m) { visit_match(m, JsonReader{j}); }

}  // namespace mmdflow
