// Student against teacher: 1/2 MMD^2 on fresh inputs (and from the closed-form kernel, for the
// exact kernel's family), the same for the zero function, and, for each teacher particle, its
// nearest student particles in parameter space modulo the order of a particle's hidden units.
// Sharded, every rank calls it: feature sums and each rank's nearest particles are gathered, so
// every rank gets the whole comparison.
#pragma once
#include <ATen/core/Generator.h>

#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "models/particle_net.h"
#include "src/comm/comm.h"
#include "src/flow/student.h"

namespace mmdflow {

struct Comparison {
  // network: 1/2 E_x ||f_student(x) - f_teacher(x)||^2 on `samples` fresh inputs; samples:
  // 1/2 MMD^2 of the points to `samples` fresh draws of the target's law (none for a file:
  // samples 0, and half_mmd2 is target_half_mmd2).
  int64_t samples = 0;
  double half_mmd2 = 0;
  std::optional<double> exact_half_mmd2;   // network: from the closed-form kernel (exact)
  std::optional<double> target_half_mmd2;  // samples: to the run's target samples
  // network: 1/2 E_x ||f_teacher(x)||^2 on the same inputs, the loss of the student f = 0.
  std::optional<double> zero_half_mmd2;
  struct Match {
    int64_t teacher = 0;
    std::vector<int64_t> student;  // indices in the whole measure, nearest first
    // Euclidean over all coordinates (A, a, B, b), minimised over the orders of the student
    // particle's hidden units (unit_order_distances).
    std::vector<double> distance;
  };
  // None when particles are not comparable (dense, misspecified, samples).
  std::optional<std::vector<Match>> nearest;
  // network on data files: 1/2 (1/n) sum ||f_student(x) - y||^2 over the n =
  // `samples` rows of the validation set, and the zero student's 1/2 (1/n) sum ||y||^2
  std::optional<double> test_loss, zero_test_loss;
};

// Their JSON fields (summary.json's "compare"), each once. Summaries from before the distance
// modulo unit order hold "nearest" (plain distances) instead, which is not read.
template <typename C, typename F>  // C: Comparison or const Comparison
void visit_comparison(C& c, F&& f) {
  f("samples", c.samples);
  f("half_mmd2", c.half_mmd2);
  f("exact_half_mmd2", c.exact_half_mmd2);
  f("target_half_mmd2", c.target_half_mmd2);
  f("zero_half_mmd2", c.zero_half_mmd2);
  f("nearest_mod_unit_order", c.nearest);
  f("test_loss", c.test_loss);
  f("zero_test_loss", c.zero_test_loss);
}
template <typename M, typename F>  // M: Comparison::Match, const or not
void visit_match(M& m, F&& f) {
  f("teacher", m.teacher);
  f("student", m.student);
  f("distance", m.distance);
}
void to_json(nlohmann::json& j, const Comparison& c);
void from_json(const nlohmann::json& j, Comparison& c);
void to_json(nlohmann::json& j, const Comparison::Match& m);
void from_json(const nlohmann::json& j, Comparison::Match& m);

// min over the permutations p of 0..H-1 of sum_i C[i][p(i)], C [H, H] row-major: by trying
// all H! permutations, and by the Hungarian algorithm in O(H^3). Both return the sum of the
// chosen entries in row order, so equal choices give equal bits.
double min_assignment_brute_force(const std::vector<double>& C, int64_t H);
double min_assignment_hungarian(const std::vector<double>& C, int64_t H);
constexpr int64_t kBruteForceUnits = 5;  // up to H = 5 (120 orders) by brute force

// ||t_m - s_n|| minimised over the H! orders of s_n's hidden units (a unit: a row of A, its
// entry of a, its column of B; b stays), every pair in float64 from coordinate differences, so
// near 0 as exact as the coordinates. Same shapes (and biases) but the particle counts: [M, N].
at::Tensor unit_order_distances(const Particles& teacher, const Particles& student);

// exact: also exact_half_mmd2 (a block student of the family H = 1, relu, identity output, no
// biases; O(N (N + M) d)).
Comparison compare(const Student& student, const ParticleNet& teacher, InputDist dist,
                   int64_t samples, int64_t nearest, at::Generator& gen, Comm& comm,
                   bool exact = false);
std::string format_table(const Comparison& c);

// The student's test loss on a labelled set (its rows whole on every rank) and the zero
// student's, for a run on data files; with a teacher (teacher.file), also each teacher
// particle's `nearest` nearest student particles, as compare() lists them.
Comparison compare_on_data(const Student& student, const Dataset& data, Comm& comm,
                           const ParticleNet* teacher = nullptr, int64_t nearest = 0);

}  // namespace mmdflow
