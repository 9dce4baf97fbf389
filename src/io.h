// Files a run writes: atomic whole files, tensor dicts readable by Python's torch.load.
#pragma once
#include <ATen/core/Tensor.h>

#include <string>
#include <utility>
#include <vector>

namespace mmdflow {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// Writes to path.tmp, then renames over path: readers never see a partial file.
void write_file_atomic(const std::string& path, const std::string& content);
std::string read_file(const std::string& path);  // throws std::runtime_error

// A dict {name: tensor} with torch::pickle_save (torch.load in Python reads it).
void save_tensors(const std::string& path, const NamedTensors& tensors);
NamedTensors load_tensors(const std::string& path);

}  // namespace mmdflow
