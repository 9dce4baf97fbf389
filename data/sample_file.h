// Target samples read from a file (target law `file`), one sample a row.
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

// samples [M, d] written as .npy (float64, C order), whole or not at all. Throws IoError.
void write_npy(const std::string& path, const at::Tensor& samples);

}  // namespace mmdflow
