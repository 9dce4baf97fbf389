#include "src/train/reducer.h"

#include <ATen/ATen.h>

namespace mmdflow {

void StopReducer::sum(at::Tensor& t) {
  const int world = comm_.world();
  if (world == 1) return;
  const int64_t n = t.numel();
  at::Tensor answers = at::zeros({world}, at::TensorOptions().dtype(at::kDouble));
  answers[comm_.rank()] = double(stop_ ? stop_() : 0);
  at::Tensor all = at::cat({t.reshape(-1), answers.to(t.options())});
  comm_.sum(all);
  t.copy_(all.narrow(0, 0, n).view(t.sizes()));
  agreed = std::max(agreed, int(all.narrow(0, n, world).max().item<double>()));
}

}  // namespace mmdflow
