#include "models/activation.h"

#include <ATen/ATen.h>

#include <stdexcept>

namespace mmdflow {

const char* activation_names() { return "relu, tanh"; }
const char* output_names() { return "identity, gaussian, laplace, imq, cosine, power"; }

Activation parse_activation(const std::string& name) {
  if (name == "relu") return Activation::ReLU;
  if (name == "tanh") return Activation::Tanh;
  throw std::invalid_argument("unknown activation '" + name + "' (valid: " + activation_names() +
                              ")");
}

OutputKind parse_output(const std::string& name) {
  if (name == "identity") return OutputKind::Identity;
  if (name == "gaussian") return OutputKind::Gaussian;
  if (name == "laplace") return OutputKind::Laplace;
  if (name == "imq") return OutputKind::IMQ;
  if (name == "cosine") return OutputKind::Cosine;
  if (name == "power") return OutputKind::Power;
  throw std::invalid_argument("unknown output non-linearity '" + name +
                              "' (valid: " + output_names() + ")");
}

std::string to_string(Activation a) { return a == Activation::ReLU ? "relu" : "tanh"; }

std::string to_string(OutputKind k) {
  switch (k) {
    case OutputKind::Identity: return "identity";
    case OutputKind::Gaussian: return "gaussian";
    case OutputKind::Laplace: return "laplace";
    case OutputKind::IMQ: return "imq";
    case OutputKind::Cosine: return "cosine";
    case OutputKind::Power: return "power";
  }
  return "?";
}

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
