// Samples read from a file (target law `file`, initial points), one sample a row, and labelled
// data sets (data.input `file`): inputs and outputs.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace mmdflow {

// The most bytes a sample file may hold, and the samples read from it as float64.
constexpr uint64_t kMaxSampleBytes = uint64_t(1) << 30;

// Samples [M, d] float64 on the CPU, M, d >= 1, all finite, from
//   .npy: a 2-D array of float32, float64, int8..int64 or uint8, little-endian, C or Fortran
//         order (format versions 1 to 3);
//   .pt:  torch.save of a 2-D tensor (floating or integer), or of a dict holding exactly one;
//   .csv: numbers separated by commas, one sample a row, after an optional header line of
//         non-numbers (blank lines skipped).
// The file (links followed, never a FIFO) is read only when it holds at most kMaxSampleBytes.
// Throws ConfigError (exit 2), one line naming the file and what is wrong.
at::Tensor read_samples(const std::string& path);

// A labelled data set: inputs x [n, d] and outputs y [n, o], float64 on the CPU, all finite, from
//   .csv: a header line naming every column, the outputs `y` or `y` and a digit or '_' (y0, y1,
//         y_price), the others inputs, each in file order; then rows of numbers (as above);
//   .npy: a 2-D array [n, d + o], the last o = `outputs` columns the outputs;
//   .npz: arrays x [n, d] and y [n, o] or [n] (np.savez or np.savez_compressed);
//   .pt:  torch.save of a dict {"x": [n, d], "y": [n, o] or [n]}.
// Read as read_samples reads (links followed unless follow_links is false); throws ConfigError
// naming the file (and the row or line).
struct LabelledData {
  at::Tensor x, y;
};
LabelledData read_labelled(const std::string& path, int64_t outputs, bool follow_links = true);

// samples [M, d] written as .npy (float64, C order), whole or not at all. Throws IoError.
void write_npy(const std::string& path, const at::Tensor& samples);

}  // namespace mmdflow
