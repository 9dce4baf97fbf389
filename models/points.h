// The samples family's measure: N points z_n in R^d. Every process holds the whole measure
// (Z [N, d], the same bits everywhere) and moves its own rows [begin, end): a step's sums read
// every point, and the processes then exchange the rows they moved (N d numbers a step).
#pragma once
#include <ATen/core/Tensor.h>

#include "models/measure.h"

namespace mmdflow {

class Points : public Measure {
 public:
  // Z [N, d], the whole measure; shard: the rows this process moves (default: all).
  explicit Points(at::Tensor Z, Shard shard = {});

  int64_t size() const override { return shard_.total; }
  Shard shard() const override { return shard_; }
  bool all_finite() const override;
  NamedTensors named_tensors() const override;  // {"Z": the shard's rows [rows, d]}, CPU
  // Takes the shard's rows back; the other rows are stale until the next gather.
  void load(const NamedTensors& weights) override;

  int64_t dim() const { return Z_.size(1); }
  const at::Tensor& whole() const { return Z_; }  // [N, d]
  at::Tensor rows() const;                        // the shard's rows, a view of whole() [rows, d]
  // After a step: whole() becomes `summed`, the sum over the processes of rows_only() ([N, d],
  // zero outside each process's rows, so the sum is exact).
  at::Tensor rows_only() const;
  void set_whole(at::Tensor summed);
  bool stale() const { return stale_; }
  // Changes whenever the points do (set_whole, load): what was computed at a version holds while
  // it stands.
  int64_t version() const { return version_; }

 private:
  at::Tensor Z_;  // [N, d]
  Shard shard_;
  bool stale_ = false;
  int64_t version_ = 0;
};

}  // namespace mmdflow
