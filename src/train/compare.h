// Student against teacher: 1/2 MMD^2 on fresh inputs and, for each teacher particle, its nearest
// student particles in parameter space. Sharded, every rank calls it: feature sums and each
// rank's nearest particles are gathered, so every rank gets the whole comparison.
#pragma once
#include <ATen/core/Generator.h>

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "models/particle_net.h"
#include "src/dist/comm.h"
#include "src/flow/student.h"

namespace mmdflow {

struct Comparison {
  int64_t samples = 0;
  double half_mmd2 = 0;  // 1/2 E_x ||f_student(x) - f_teacher(x)||^2 on `samples` fresh inputs
  struct Match {
    int64_t teacher = 0;
    std::vector<int64_t> student;  // indices in the whole measure, nearest first
    std::vector<double> distance;  // Euclidean, over all coordinates (A, a, B, b)
  };
  std::vector<Match> matches;  // empty when particles are not comparable (dense, misspecified)
};

Comparison compare(const Student& student, const ParticleNet& teacher, InputDist dist,
                   int64_t samples, int64_t nearest, at::Generator& gen, Comm& comm);
std::string format_table(const Comparison& c);
nlohmann::json to_json(const Comparison& c);

}  // namespace mmdflow
