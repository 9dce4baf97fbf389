// Student against teacher: 1/2 MMD^2 on fresh inputs (and from the closed-form kernel, for the
// exact kernel's family) and, for each teacher particle, its nearest student particles in
// parameter space. Sharded, every rank calls it: feature sums and each
// rank's nearest particles are gathered, so every rank gets the whole comparison.
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
  struct Match {
    int64_t teacher = 0;
    std::vector<int64_t> student;  // indices in the whole measure, nearest first
    std::vector<double> distance;  // Euclidean, over all coordinates (A, a, B, b)
  };
  std::vector<Match> matches;  // empty when particles are not comparable (dense, misspecified)
  // network without a teacher (data files): 1/2 (1/n) sum ||f_student(x) - y||^2 over the n =
  // `samples` rows of the validation set, and the zero student's 1/2 (1/n) sum ||y||^2
  std::optional<double> test_loss, zero_test_loss;
};

// Their JSON fields (summary.json's "compare"), each once.
template <typename C, typename F>  // C: Comparison or const Comparison
void visit_comparison(C& c, F&& f) {
  f("samples", c.samples);
  f("half_mmd2", c.half_mmd2);
  f("exact_half_mmd2", c.exact_half_mmd2);
  f("target_half_mmd2", c.target_half_mmd2);
  f("nearest", c.matches);
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

// exact: also exact_half_mmd2 (a block student of the family H = 1, relu, identity output, no
// biases; O(N (N + M) d)).
Comparison compare(const Student& student, const ParticleNet& teacher, InputDist dist,
                   int64_t samples, int64_t nearest, at::Generator& gen, Comm& comm,
                   bool exact = false);
std::string format_table(const Comparison& c);

// The student's test loss on a labelled set (its rows whole on every rank) and the zero
// student's, for a run without a teacher.
Comparison compare_on_data(const Student& student, const Dataset& data, Comm& comm);

}  // namespace mmdflow
