// Sums over the ranks of a Comm, as the flows' Reducer: how a sharded student's sums become the
// whole's.
#pragma once
#include <ATen/core/Tensor.h>

#include <functional>

#include "src/comm/comm.h"
#include "src/flow/flow.h"

namespace mmdflow {

class CommReducer : public Reducer {
 public:
  explicit CommReducer(Comm& comm) : comm_(comm) {}
  void sum(at::Tensor& t) override { comm_.sum(t); }
  int rank() const override { return comm_.rank(); }
  int world() const override { return comm_.world(); }

 private:
  Comm& comm_;
};

// Sums over the ranks and carries each rank's stop answer along: sharded, every rank learns at
// each sum the largest answer of any rank, so all stop at the same step boundary.
class StopReducer : public Reducer {
 public:
  StopReducer(Comm& comm, const std::function<int()>& stop) : comm_(comm), stop_(stop) {}
  void sum(at::Tensor& t) override;
  int rank() const override { return comm_.rank(); }
  int world() const override { return comm_.world(); }
  int agreed = 0;  // the largest stop answer of any rank at the last sum

 private:
  Comm& comm_;
  const std::function<int()>& stop_;
};

}  // namespace mmdflow
