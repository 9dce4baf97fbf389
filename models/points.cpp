#include "models/points.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <stdexcept>

namespace mmdflow {

Points::Points(at::Tensor Z, Shard shard) : Z_(std::move(Z)), shard_(shard) {
  TORCH_CHECK(Z_.dim() == 2, "points: Z must be [N, d], got ", Z_.sizes());
  if (shard_.total == 0) shard_ = {0, Z_.size(0), Z_.size(0)};
  TORCH_CHECK(shard_.total == Z_.size(0) && shard_.begin >= 0 && shard_.begin <= shard_.end &&
                  shard_.end <= shard_.total,
              "points: shard [", shard_.begin, ", ", shard_.end, ") of ", shard_.total, " for Z ",
              Z_.sizes());
}

at::Tensor Points::rows() const { return Z_.narrow(0, shard_.begin, shard_.size()); }

bool Points::all_finite() const { return rows().isfinite().all().item<bool>(); }

NamedTensors Points::named_tensors() const { return {{"Z", rows().cpu().clone()}}; }

void Points::load(const NamedTensors& weights) {
  if (weights.size() != 1 || weights[0].first != "Z")
    throw std::invalid_argument("points: expected one tensor Z");
  const at::Tensor& z = weights[0].second;
  if (z.dim() != 2 || z.size(0) != shard_.size() || z.size(1) != dim())
    throw std::invalid_argument(fmt::format("points: Z must be [{}, {}]", shard_.size(), dim()));
  rows().copy_(z);
  stale_ = true;  // on every process alike, so that all gather together
  ++version_;
}

at::Tensor Points::rows_only() const {
  at::Tensor out = at::zeros_like(Z_);
  out.narrow(0, shard_.begin, shard_.size()).copy_(rows());
  return out;
}

void Points::set_whole(at::Tensor summed) {
  Z_.copy_(summed);
  stale_ = false;
  ++version_;
}

}  // namespace mmdflow
