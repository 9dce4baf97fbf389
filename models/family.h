// The particle family shared by every particle of a measure: the shapes and non-linearities of
// z_n = (A_n, a_n, B_n, b_n) (docs/math.md, "Particles and networks"). Torch-free.
#pragma once
#include <cstdint>

#include "models/activation.h"

namespace mmdflow {

struct ParticleFamily {
  int64_t dim = 50;     // d
  int64_t hidden = 3;   // H
  int64_t outputs = 1;  // o
  Activation activation = Activation::ReLU;
  OutputFn out{OutputKind::Gaussian, 2.0};
  bool hidden_bias = false;  // a
  bool output_bias = false;  // b
  // Coordinates per particle: H d + H [a] + o H + o [b].
  int64_t particle_size() const {
    return hidden * dim + (hidden_bias ? hidden : 0) + outputs * hidden +
           (output_bias ? outputs : 0);
  }
};

}  // namespace mmdflow
