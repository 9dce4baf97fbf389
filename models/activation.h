// Hidden activations s and output non-linearities G of the particle family (MATH.md).
// Scalar functors are used by the fused CPU kernels; ATen versions by the generic path.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "src/base/names.h"

namespace at {
class Tensor;
}

namespace mmdflow {

enum class Activation { ReLU, Tanh };
enum class OutputKind { Identity, Gaussian, Laplace, IMQ, Cosine, Power };

template <>
struct Names<Activation> {
  static constexpr const char* what = "activation";
  static constexpr std::array<std::pair<Activation, const char*>, 2> table{
      {{Activation::ReLU, "relu"}, {Activation::Tanh, "tanh"}}};
};
template <>
struct Names<OutputKind> {
  static constexpr const char* what = "output non-linearity";
  static constexpr std::array<std::pair<OutputKind, const char*>, 6> table{
      {{OutputKind::Identity, "identity"},
       {OutputKind::Gaussian, "gaussian"},
       {OutputKind::Laplace, "laplace"},
       {OutputKind::IMQ, "imq"},
       {OutputKind::Cosine, "cosine"},
       {OutputKind::Power, "power"}}};
};

// G with its parameter: sigma (gaussian), lambda (laplace), c (imq); unused by the others.
struct OutputFn {
  OutputKind kind = OutputKind::Identity;
  double param = 1.0;
};

// ATen versions, elementwise.
at::Tensor activate(Activation s, const at::Tensor& p);
at::Tensor activate_backprop(Activation s, const at::Tensor& p, const at::Tensor& d);  // d s'(p)
at::Tensor output(const OutputFn& g, const at::Tensor& u);
at::Tensor output_grad(const OutputFn& g, const at::Tensor& u);  // G'(u)

// Scalar functors. value(p) and backprop(p, d) for s; eval(u, &dg) returns G(u) and sets G'(u).
// exp for the fused loops, written so that they vectorise (no libm call, no branch), after
// Cephes: range reduction by ln 2, then a polynomial (float: relative error below 2e-7, arguments
// clamped to [-87, 88]) or a rational function (double: below 3e-16, clamped to [-708, 709]).
inline float vexp(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);  // round(x / ln 2)
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * r * r + r + 1.0f;
  const int32_t bits = (int32_t(n) + 127) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return y * scale;
}
inline double vexp(double x) {
  x = std::min(std::max(x, -708.0), 709.0);
  const double n = std::floor(x * 1.4426950408889634 + 0.5);  // round(x / ln 2)
  const double r = (x - n * 6.93145751953125e-1) - n * 1.42860682030941723212e-6;
  const double rr = r * r;
  const double p = r * ((1.26177193074810590878e-4 * rr + 3.02994407707441961300e-2) * rr +
                        9.99999999999999999910e-1);
  const double q = ((3.00198505138664455042e-6 * rr + 2.52448340349684104192e-3) * rr +
                    2.27265548208155028766e-1) *
                       rr +
                   2.00000000000000000009e0;
  const double y = 1.0 + 2.0 * p / (q - p);
  // 2^n from the low bits of n + 1.5 2^52 (integer ops that vectorise without AVX-512)
  const double shifted = n + 6755399441055744.0;
  int64_t bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  bits = (bits - int64_t(0x4338000000000000) + 1023) << 52;
  double scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return y * scale;
}

// backprop(p, d) = d * s'(p), written as a select for ReLU so that loops vectorise.
template <typename T>
struct ReLUFn {
  static T value(T p) { return p > T(0) ? p : T(0); }
  static T backprop(T p, T d) { return p > T(0) ? d : T(0); }
};
template <typename T>
struct TanhFn {
  static T value(T p) { return std::tanh(p); }
  static T backprop(T p, T d) {
    T t = std::tanh(p);
    return d * (T(1) - t * t);
  }
};

template <typename T>
struct IdentityOut {
  explicit IdentityOut(double) {}
  T eval(T u, T* dg) const {
    *dg = T(1);
    return u;
  }
};
template <typename T>
struct GaussianOut {  // exp(-u^2 / sigma^2)
  T inv_s2;
  explicit GaussianOut(double sigma) : inv_s2(T(1.0 / (sigma * sigma))) {}
  T eval(T u, T* dg) const {
    T g = vexp(-u * u * inv_s2);
    *dg = T(-2) * u * inv_s2 * g;
    return g;
  }
};
template <typename T>
struct LaplaceOut {  // exp(-lambda |u|)
  T lambda;
  explicit LaplaceOut(double l) : lambda(T(l)) {}
  T eval(T u, T* dg) const {
    T g = vexp(-lambda * std::abs(u));
    *dg = u > T(0) ? -lambda * g : (u < T(0) ? lambda * g : T(0));
    return g;
  }
};
template <typename T>
struct IMQOut {  // 1 / (c^2 + u^2)
  T c2;
  explicit IMQOut(double c) : c2(T(c * c)) {}
  T eval(T u, T* dg) const {
    T g = T(1) / (c2 + u * u);
    *dg = T(-2) * u * g * g;
    return g;
  }
};
template <typename T>
struct CosineOut {
  explicit CosineOut(double) {}
  T eval(T u, T* dg) const {
    *dg = -std::sin(u);
    return std::cos(u);
  }
};
template <typename T>
struct PowerOut {  // u^2
  explicit PowerOut(double) {}
  T eval(T u, T* dg) const {
    *dg = T(2) * u;
    return u * u;
  }
};

// Calls f(SFn{}, GFn{param}) with the functor types of (s, G), so inner loops are monomorphic.
template <typename T, typename F>
void dispatch_nonlinearities(Activation s, const OutputFn& g, F&& f) {
  auto with_g = [&](auto sfn) {
    switch (g.kind) {
      case OutputKind::Identity: return f(sfn, IdentityOut<T>(g.param));
      case OutputKind::Gaussian: return f(sfn, GaussianOut<T>(g.param));
      case OutputKind::Laplace: return f(sfn, LaplaceOut<T>(g.param));
      case OutputKind::IMQ: return f(sfn, IMQOut<T>(g.param));
      case OutputKind::Cosine: return f(sfn, CosineOut<T>(g.param));
      case OutputKind::Power: return f(sfn, PowerOut<T>(g.param));
    }
  };
  if (s == Activation::ReLU) {
    with_g(ReLUFn<T>{});
  } else {
    with_g(TanhFn<T>{});
  }
}

}  // namespace mmdflow
