// Target laws of the samples family (docs/math.md, "Sample space"): the particles flow toward
// nu* = (1/M) sum_m delta_{u_m}, M samples u_m of one of these laws, or read from a file
// (data/sample_file.h).
#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>

#include "src/base/names.h"

namespace mmdflow {

// three_rings: the DrMMD code's three-ring target (hudsonchen/DrMMD, kwgflows/generate_data.py,
//   generate_three_ring_and_gaussian): three circles of radius r = 0.3 centred at (0, 0),
//   (0, -0.75) and (0, -1.5) (each 2.5 r below the last), no noise; ring j holds
//   K_j = floor(M / 3) points (one more for j < M mod 3, where DrMMD keeps 3 floor(M / 3)) at the
//   angles 2 pi k / K_j, k = 0..K_j-1, and the M rows come in a random order (as DrMMD permutes
//   them): the generator only orders them.
// mixture: four Gaussians N(m, 0.3 I_2), m = (+-2, +-2), each sample's component drawn with
//   equal weights (DrMMD's MixGaussian target).
// gaussian: N(0, I_d).
// student: d independent Student's t coordinates with df degrees of freedom.
// file: samples read from a file (read_samples), not drawn.
enum class TargetLaw { ThreeRings, Mixture, Gaussian, Student, File };

template <>
struct Names<TargetLaw> {
  static constexpr const char* what = "target law";
  static constexpr std::array<std::pair<TargetLaw, const char*>, 5> table{
      {{TargetLaw::ThreeRings, "three_rings"},
       {TargetLaw::Mixture, "mixture"},
       {TargetLaw::Gaussian, "gaussian"},
       {TargetLaw::Student, "student"},
       {TargetLaw::File, "file"}}};
};

// The dimension of the law's samples: 2 for three_rings and mixture, d otherwise (for file, d
// is the file's number of columns).
int64_t law_dim(TargetLaw law, int64_t d);

// M samples [M, law_dim(law, d)] float64 on the CPU, drawn from gen (a CPU generator) only: the
// same generator state gives the same samples, whatever the number of threads. df: student's
// degrees of freedom (> 0). Throws std::invalid_argument for file, or bad M, d or df.
at::Tensor draw_target(TargetLaw law, int64_t M, int64_t d, double df, at::Generator& gen);

}  // namespace mmdflow
