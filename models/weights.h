// The one schema of a student's or teacher's weights: tensor names, in saving order, and their
// sizes. The model, the student layouts, the exported .pt files and the checkpoints all read it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "models/family.h"
#include "src/base/io.h"

namespace mmdflow {

struct WeightSpec {
  std::string name;
  std::vector<int64_t> sizes;  // whole, for `rows` particles (block) or all N (dense)
};

// Block layout (z_n = (A_n, a_n, B_n, b_n)), rows particles: A [rows, H, d], a [rows, H],
// B [rows, o, H], b [rows, o] (biases when the family has them).
std::vector<WeightSpec> block_weights(const ParticleFamily& f, int64_t rows);
// Dense layout of N particles: W1 [N H, d], b1 [N H], W2 [N o, N H], b2 [N o].
std::vector<WeightSpec> dense_weights(const ParticleFamily& f, int64_t N);

// Tensors named by specs, in order: names, dtype and sizes checked, and each tensor contiguous
// over storage that holds it (a file's strides and offsets are not trusted) with finite values.
// Throws CheckpointError "<source>: <what is wrong>".
void check_weights(const NamedTensors& w, const std::vector<WeightSpec>& specs,
                   c10::ScalarType dtype, const std::string& source);
// A weights file's tensors, not yet checked: storages of at most twice what the specs' tensors
// need (elements of element_size bytes) and 1 MiB are read, no more, so a file of another shape
// still reaches check_weights and nothing much larger is inflated. Links are followed only where
// asked (a user's file, never a run folder's). Throws CheckpointError "<path>: <what is wrong>".
NamedTensors load_weights(const std::string& path, const std::vector<WeightSpec>& specs,
                          size_t element_size, bool follow_links);
// The tensors of specs, in order, paired with their names.
NamedTensors named(const std::vector<WeightSpec>& specs, const std::vector<at::Tensor>& tensors);

}  // namespace mmdflow
