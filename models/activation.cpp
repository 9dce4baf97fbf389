#include "models/activation.h"

#include <ATen/ATen.h>

namespace mmdflow {

at::Tensor activate(Activation s, const at::Tensor& p) {
  return s == Activation::ReLU ? at::relu(p) : at::tanh(p);
}

// ReLU as one kernel (d where p > 0): on a GPU the [C, H, B] tensors are read once, not three
// times.
at::Tensor activate_backprop(Activation s, const at::Tensor& p, const at::Tensor& d) {
  if (s == Activation::ReLU) return at::threshold_backward(d, p, 0);
  auto t = at::tanh(p);
  return d * (1 - t * t);
}

at::Tensor output(const OutputFn& g, const at::Tensor& u) {
  switch (g.kind) {
    case OutputKind::Identity: return u;
    case OutputKind::Gaussian: return at::exp(-u * u / (g.param * g.param));
    case OutputKind::Laplace: return at::exp(-g.param * at::abs(u));
    case OutputKind::IMQ: return 1.0 / (g.param * g.param + u * u);
    case OutputKind::Cosine: return at::cos(u);
    case OutputKind::Power: return u * u;
  }
  return u;
}

at::Tensor output_grad(const OutputFn& g, const at::Tensor& u) {
  switch (g.kind) {
    case OutputKind::Identity: return at::ones_like(u);
    case OutputKind::Gaussian: {
      double inv = 1.0 / (g.param * g.param);
      return -2.0 * inv * u * at::exp(-u * u * inv);
    }
    case OutputKind::Laplace: return -g.param * at::sign(u) * at::exp(-g.param * at::abs(u));
    case OutputKind::IMQ: {
      auto v = 1.0 / (g.param * g.param + u * u);
      return -2.0 * u * v * v;
    }
    case OutputKind::Cosine: return -at::sin(u);
    case OutputKind::Power: return 2.0 * u;
  }
  return u;
}

}  // namespace mmdflow
