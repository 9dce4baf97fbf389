#include "models/weights.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "src/base/errors.h"

namespace mmdflow {

std::vector<WeightSpec> block_weights(const ParticleFamily& f, int64_t rows) {
  std::vector<WeightSpec> out{{"A", {rows, f.hidden, f.dim}}};
  if (f.hidden_bias) out.push_back({"a", {rows, f.hidden}});
  out.push_back({"B", {rows, f.outputs, f.hidden}});
  if (f.output_bias) out.push_back({"b", {rows, f.outputs}});
  return out;
}

std::vector<WeightSpec> dense_weights(const ParticleFamily& f, int64_t N) {
  const int64_t NH = N * f.hidden, No = N * f.outputs;
  std::vector<WeightSpec> out{{"W1", {NH, f.dim}}};
  if (f.hidden_bias) out.push_back({"b1", {NH}});
  out.push_back({"W2", {No, NH}});
  if (f.output_bias) out.push_back({"b2", {No}});
  return out;
}

void check_weights(const NamedTensors& w, const std::vector<WeightSpec>& specs,
                   c10::ScalarType dtype, const std::string& source) {
  auto fail = [&](const std::string& why) {
    throw CheckpointError(fmt::format("{}: {}", source, why));
  };
  for (size_t i = 0; i < std::max(w.size(), specs.size()); ++i) {
    if (i >= w.size()) fail(fmt::format("tensor '{}' is missing", specs[i].name));
    const auto& [name, t] = w[i];
    if (i >= specs.size() || name != specs[i].name)
      fail(fmt::format("unexpected tensor '{}'{}", name.substr(0, 40),
                       i < specs.size() ? fmt::format(" where '{}' belongs", specs[i].name) : ""));
    const WeightSpec& s = specs[i];
    if (!t.defined() || t.scalar_type() != dtype)
      fail(fmt::format("tensor '{}' is {}, the config needs {}", name,
                       t.defined() ? c10::toString(t.scalar_type()) : "undefined",
                       c10::toString(dtype)));
    if (t.sizes() != at::IntArrayRef(s.sizes))
      fail(fmt::format("tensor '{}' is [{}], the config needs [{}]", name,
                       fmt::join(t.sizes(), ", "), fmt::join(s.sizes, ", ")));
    const int64_t item = int64_t(t.element_size());
    if (!t.is_contiguous() || t.storage_offset() < 0 ||
        (t.storage_offset() + t.numel()) * item > int64_t(t.storage().nbytes()))
      fail(fmt::format(
          "tensor '{}' does not lie within its storage (strides [{}], offset {}, "
          "{} bytes of storage)",
          name, fmt::join(t.strides(), ", "), t.storage_offset(), t.storage().nbytes()));
    if (!at::isfinite(t).all().item<bool>())
      fail(fmt::format("tensor '{}' holds non-finite values", name));
  }
}

NamedTensors load_weights(const std::string& path, const std::vector<WeightSpec>& specs,
                          size_t element_size, bool follow_links) {
  uint64_t bytes = 1 << 20;
  for (const WeightSpec& s : specs)
    bytes += 2 * uint64_t(c10::multiply_integers(s.sizes)) * element_size;
  try {
    return load_tensors(path, bytes, follow_links);
  } catch (const std::exception& e) {
    const std::string why = e.what();
    throw CheckpointError(fmt::format("{}: not a dict of tensors in torch.save's format ({})", path,
                                      shorten(why.substr(0, why.find('\n')))));
  }
}

NamedTensors named(const std::vector<WeightSpec>& specs, const std::vector<at::Tensor>& tensors) {
  TORCH_CHECK(specs.size() == tensors.size(), "weights: ", tensors.size(), " tensors for ",
              specs.size(), " names");
  NamedTensors out;
  for (size_t i = 0; i < specs.size(); ++i) out.emplace_back(specs[i].name, tensors[i]);
  return out;
}

}  // namespace mmdflow
