// Pairwise kernel sums: hand values, autograd of the dense kernel matrix and finite differences
// (float64), the fused loops of every instruction-set path against the ATen path, float32 against
// float64, bit-identical rows whatever the split of P, energy at x = y, empty inputs.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <vector>

#include "src/kernels/isa.h"
#include "src/kernels/pairwise.h"
#include "tests/helpers.h"

namespace mmdflow {
namespace {

const PairKernel kKinds[] = {PairKernel::Gaussian, PairKernel::Laplace, PairKernel::Imq,
                             PairKernel::Energy};

PairKernelSpec spec(PairKernel kind, double s = 1.3, double c = 0.7) { return {kind, s, c}; }

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}
double max_abs(const at::Tensor& a) { return a.to(at::kDouble).abs().max().item<double>(); }

// Points spread over a few bandwidths, so that every kernel's values and gradients matter.
at::Tensor points(int64_t n, int64_t d, uint64_t seed, c10::ScalarType dtype = at::kDouble) {
  return (2.0 * test::inputs(n, d, seed)).to(dtype);
}

TEST(PairKernels, NamesRoundTrip) {
  for (PairKernel k : kKinds) EXPECT_EQ(parse_name<PairKernel>(name_of(k)), k);
  EXPECT_EQ(name_list<PairKernel>(), "gaussian, laplace, imq, energy");
  EXPECT_THROW(parse_name<PairKernel>("rbf"), std::invalid_argument);
}

// x = (0, 0), y = (3, 4): |x - y| = 5, |x - y|_1 = 7; s = 5, c = 1. P = S = {x, y}:
// V[0] = V[1] = k(x, x) + k(x, y), G[0] = grad_1 k(x, y) = -G[1].
TEST(PairSums, HandValues) {
  const auto o = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor X = at::tensor({0.0, 0.0, 3.0, 4.0}, o).view({2, 2});
  struct Case {
    PairKernel kind;
    double kxx, kxy, g0, g1;
  };
  const double e05 = std::exp(-0.5), e14 = std::exp(-1.4), r2 = std::pow(2.0, -1.5);
  const Case cases[] = {
      {PairKernel::Gaussian, 1, e05, 3.0 / 25 * e05, 4.0 / 25 * e05},      // -(x - y) / s^2 k
      {PairKernel::Laplace, 1, e14, e14 / 5, e14 / 5},                     // -sign(x - y) / s k
      {PairKernel::Imq, 1, std::sqrt(0.5), 3.0 / 25 * r2, 4.0 / 25 * r2},  // q = 2, k^3 = 2^-1.5
      {PairKernel::Energy, 0, -5, 0.6, 0.8},                               // -(x - y) / |x - y|
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(name_of(c.kind));
    const PairKernelSpec k{c.kind, 5.0, 1.0};
    std::vector<PairSums> runs{pair_sums_aten(k, X, X, true)};
    for (Isa isa : supported_isas()) {
      ScopedIsa scope(isa);
      runs.push_back(pair_sums(k, X, X, true));
    }
    const at::Tensor V = at::full({2}, c.kxx + c.kxy, o);
    const at::Tensor G = at::tensor({c.g0, c.g1, -c.g0, -c.g1}, o).view({2, 2});
    for (const PairSums& r : runs) {
      EXPECT_LT(max_diff(r.value, V), 1e-15);
      EXPECT_LT(max_diff(r.grad, G), 1e-15);
    }
    EXPECT_NEAR(kernel_matrix(k, X, X)[0][1].item<double>(), c.kxy, 1e-15);
  }
}

// Both paths against kernel_matrix and its autograd, float64; d = 1..3 take the fused loops'
// fixed-d code, d = 5 the general one. Repeated rows give x = y pairs (energy's grad 0 there).
TEST(PairSums, MatchAutogradOfTheKernelMatrix) {
  for (int64_t d : {1, 2, 3, 5}) {
    const at::Tensor S = points(13, d, 2);
    const at::Tensor P = at::cat({points(7, d, 1), S.narrow(0, 3, 2)});
    for (PairKernel kind : kKinds) {
      SCOPED_TRACE(std::string(name_of(kind)) + " d = " + std::to_string(d));
      const PairKernelSpec k = spec(kind);
      const at::Tensor p = P.clone().requires_grad_(true);
      const at::Tensor V = kernel_matrix(k, p, S).sum(1);
      const at::Tensor G = torch::autograd::grad({V.sum()}, {p})[0];
      std::vector<PairSums> runs{pair_sums_aten(k, P, S, true)};
      for (Isa isa : supported_isas()) {
        ScopedIsa scope(isa);
        runs.push_back(pair_sums(k, P, S, true));
      }
      for (const PairSums& r : runs) {
        EXPECT_LT(max_diff(r.value, V.detach()), 1e-13 * (1 + max_abs(V.detach())));
        EXPECT_LT(max_diff(r.grad, G), 1e-13 * (1 + max_abs(G)));
      }
    }
  }
}

// Central differences of V[i] in each coordinate of p_i (no x = y pair, no tied coordinate).
TEST(PairSums, GradientsMatchFiniteDifferences) {
  const double h = 1e-6;
  for (int64_t d : {2, 5}) {
    const at::Tensor P = points(4, d, 3), S = points(9, d, 4);
    for (PairKernel kind : kKinds) {
      SCOPED_TRACE(std::string(name_of(kind)) + " d = " + std::to_string(d));
      const PairKernelSpec k = spec(kind);
      const at::Tensor G = pair_sums(k, P, S, true).grad;
      at::Tensor fd = at::empty_like(P);
      for (int64_t c = 0; c < d; ++c) {
        at::Tensor up = P.clone(), down = P.clone();
        up.select(1, c).add_(h);
        down.select(1, c).sub_(h);
        fd.select(1, c).copy_(
            (pair_sums(k, up, S, false).value - pair_sums(k, down, S, false).value) / (2 * h));
      }
      EXPECT_LT(max_diff(G, fd), 1e-7 * (1 + max_abs(G)));
    }
  }
}

// The fused loops of every path against the ATen path over several source tiles (m = 3000, the
// last tile partial), fixed-d (2, 3) and general (17) code, float32 and float64.
TEST(PairSums, FusedPathsMatchTheAtenPath) {
  for (auto dtype : {at::kDouble, at::kFloat}) {
    const double tol = dtype == at::kDouble ? 1e-13 : 1e-5;
    for (int64_t d : {2, 3, 17}) {
      const at::Tensor P = points(45, d, 5, dtype), S = points(3000, d, 6, dtype);
      for (PairKernel kind : kKinds) {
        SCOPED_TRACE(std::string(name_of(kind)) + " d = " + std::to_string(d) + " " +
                     c10::toString(dtype));
        const PairKernelSpec k = spec(kind, 0.5 * std::sqrt(double(d)));
        const PairSums ref = pair_sums_aten(k, P.to(at::kDouble), S.to(at::kDouble), true);
        // The values' terms share a sign: max |V| is the scale of the sums' rounding.
        const double vs = max_abs(ref.value), gs = max_abs(ref.grad) + vs;
        for (Isa isa : supported_isas()) {
          SCOPED_TRACE(name_of(isa));
          ScopedIsa scope(isa);
          const PairSums r = pair_sums(k, P, S, true);
          EXPECT_EQ(r.value.scalar_type(), dtype);
          EXPECT_EQ(r.grad.scalar_type(), dtype);
          EXPECT_LT(max_diff(r.value, ref.value), tol * vs);
          EXPECT_LT(max_diff(r.grad, ref.grad), tol * gs);
        }
      }
    }
  }
}

// The loops' exp: V = exp(-e^2 / 2) with e^2 / 2 exact (s = 1, e of few bits), against exp in
// long double: within 1 ulp in float64, 1.1 in float32.
TEST(PairSums, ExpIsWithinAnUlp) {
  const int64_t n = 20000;
  at::Generator g = test::gen(11);
  const at::Tensor u = at::rand({n, 1}, g, at::TensorOptions().dtype(at::kDouble));
  struct Case {
    at::Tensor e;
    double ulps;
  };
  const Case cases[] = {
      {at::round(u * (37 << 20)) / (1 << 20), 1.0},                  // 20 bits, e^2 / 2 < 685
      {(at::round(u * (13 << 8)) / (1 << 8)).to(at::kFloat), 1.1}};  // 12 bits, e^2 / 2 < 85
  const at::Tensor zero = at::zeros({1, 1}, at::kDouble);
  for (const Case& c : cases) {
    for (Isa isa : supported_isas()) {
      SCOPED_TRACE(std::string(name_of(isa)) + " " + c10::toString(c.e.scalar_type()));
      ScopedIsa scope(isa);
      const PairKernelSpec k{PairKernel::Gaussian, 1.0};
      const at::Tensor V = pair_sums(k, c.e, zero.to(c.e.scalar_type()), false).value;
      const at::Tensor e64 = c.e.to(at::kDouble), V64 = V.to(at::kDouble);
      const double *pe = e64.data_ptr<double>(), *pv = V64.data_ptr<double>();
      const bool f32 = V.scalar_type() == at::kFloat;
      double worst = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double x = pe[i], v = pv[i];
        const long double ref = std::exp(-0.5L * x * x);
        const double ulp = f32 ? std::nextafter(float(ref), INFINITY) - float(ref)
                               : std::nextafter(double(ref), INFINITY) - double(ref);
        worst = std::max(worst, double(std::fabs(v - ref)) / ulp);
      }
      EXPECT_LE(worst, c.ulps);
    }
  }
}

// Float32 against float64 at the same points over 10^5 sources: per-tile sums in float32, added
// in float64.
TEST(PairSums, Float32SumsOverManySourcesStayAccurate) {
  const at::Tensor P = points(16, 2, 7, at::kFloat), S = points(100000, 2, 8, at::kFloat);
  for (PairKernel kind : kKinds) {
    SCOPED_TRACE(name_of(kind));
    const PairKernelSpec k = spec(kind);
    const PairSums f64 = pair_sums(k, P.to(at::kDouble), S.to(at::kDouble), true);
    const PairSums f32 = pair_sums(k, P, S, true);
    EXPECT_LT(max_diff(f32.value, f64.value), 1e-6 * max_abs(f64.value));
    EXPECT_LT(max_diff(f32.grad, f64.grad), 1e-6 * max_abs(f64.grad));
  }
}

// Row i's results depend on p_i and S alone: P whole, in pieces, on 1 or 2 threads, bit for bit.
TEST(PairSums, RowsAreBitIdenticalWhateverTheSplit) {
  const int threads = at::get_num_threads();
  const int64_t cuts[] = {0, 1, 38, 39, 140, 203};
  for (auto dtype : {at::kFloat, at::kDouble}) {
    for (int64_t d : {2, 5}) {
      const at::Tensor P = points(203, d, 9, dtype), S = points(1500, d, 10, dtype);
      for (PairKernel kind : kKinds) {
        for (Isa isa : supported_isas()) {
          SCOPED_TRACE(std::string(name_of(kind)) + " d = " + std::to_string(d) + " " +
                       c10::toString(dtype) + " " + name_of(isa));
          ScopedIsa scope(isa);
          const PairKernelSpec k = spec(kind);
          at::set_num_threads(2);
          const PairSums whole = pair_sums(k, P, S, true);
          at::set_num_threads(1);
          std::vector<at::Tensor> values, grads;
          for (size_t c = 0; c + 1 < std::size(cuts); ++c) {
            const PairSums piece =
                pair_sums(k, P.narrow(0, cuts[c], cuts[c + 1] - cuts[c]), S, true);
            values.push_back(piece.value);
            grads.push_back(piece.grad);
          }
          EXPECT_TRUE(at::equal(whole.value, at::cat(values)));
          EXPECT_TRUE(at::equal(whole.grad, at::cat(grads)));
          EXPECT_TRUE(at::equal(whole.value, pair_sums(k, P, S, false).value));
        }
      }
    }
  }
  at::set_num_threads(threads);
}

// Energy at x = y: k = 0 and grad 0 exactly, no NaN; the other pairs count as usual.
TEST(PairSums, EnergyAtCoincidentPointsHasZeroGradient) {
  const auto o = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor x = at::tensor({1.0, -2.0}, o).view({1, 2});
  const at::Tensor S = at::cat({x, at::tensor({4.0, 2.0}, o).view({1, 2})});
  const PairKernelSpec k{PairKernel::Energy};
  std::vector<PairSums> runs{pair_sums_aten(k, x, S, true)};
  for (Isa isa : supported_isas()) {
    ScopedIsa scope(isa);
    runs.push_back(pair_sums(k, x, S, true));
    const PairSums self = pair_sums(k, x.to(at::kFloat), x.to(at::kFloat), true);
    EXPECT_EQ(self.value.item<float>(), 0.0f);
    EXPECT_TRUE(at::equal(self.grad, at::zeros({1, 2}, at::kFloat)));
  }
  for (const PairSums& r : runs) {
    EXPECT_DOUBLE_EQ(r.value.item<double>(), -5.0);
    EXPECT_LT(max_diff(r.grad, at::tensor({0.6, 0.8}, o).view({1, 2})), 1e-15);
  }
}

TEST(PairSums, EmptyInputs) {
  for (PairKernel kind : kKinds) {
    const PairKernelSpec k = spec(kind);
    for (auto f : {&pair_sums, &pair_sums_aten}) {
      const PairSums none = f(k, points(5, 3, 1), at::empty({0, 3}, at::kDouble), true);
      EXPECT_TRUE(at::equal(none.value, at::zeros({5}, at::kDouble)));
      EXPECT_TRUE(at::equal(none.grad, at::zeros({5, 3}, at::kDouble)));
      const PairSums empty = f(k, at::empty({0, 3}, at::kFloat), points(5, 3, 1, at::kFloat), true);
      EXPECT_EQ(empty.value.sizes().vec(), std::vector<int64_t>{0});
      EXPECT_EQ(empty.grad.sizes().vec(), (std::vector<int64_t>{0, 3}));
      EXPECT_FALSE(f(k, points(2, 3, 1), points(2, 3, 2), false).grad.defined());
    }
  }
}

TEST(PairSums, BadInputsAreRefused) {
  const at::Tensor P = points(3, 2, 1);
  const PairKernelSpec k = spec(PairKernel::Gaussian);
  EXPECT_THROW(pair_sums(k, P, points(3, 3, 2), false), c10::Error);
  EXPECT_THROW(pair_sums(k, P, points(3, 2, 2, at::kFloat), false), c10::Error);
  EXPECT_THROW(pair_sums(k, P.to(at::kInt), points(3, 2, 2).to(at::kInt), false), c10::Error);
  EXPECT_THROW(pair_sums({PairKernel::Imq, 1.0, 0.0}, P, P, false), c10::Error);
  EXPECT_THROW(pair_sums_aten({PairKernel::Gaussian, -1.0}, P, P, false), c10::Error);
}

// ---- figures (not run by default): --gtest_also_run_disabled_tests --gtest_filter='*Figures*'

double median_ms(int reps, const std::function<void()>& f) {
  f();  // warm-up
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// The best eager ATen formulation on the full n x m matrix: distances by a matrix product.
PairSums gaussian_dense(const at::Tensor& P, const at::Tensor& S, double s) {
  const double inv_s2 = 1 / (s * s);
  at::Tensor K = (P.square().sum(1, true) + S.square().sum(1).unsqueeze(0))
                     .addmm_(P, S.t(), 1, -2)
                     .clamp_min_(0)
                     .mul_(-0.5 * inv_s2)
                     .exp_();
  at::Tensor V = K.sum(1);
  return {V, (K.mm(S) - P * V.unsqueeze(1)).mul_(inv_s2)};
}

// ms per gaussian pair_sums call with gradients, n = m = 10^4.
TEST(PairSumsFigures, DISABLED_Speed) {
  const int threads = at::get_num_threads();
  const int64_t n = 10000;
  const PairKernelSpec k{PairKernel::Gaussian, 1.0};
  std::printf("%-8s %-8s %4s %8s %8s\n", "path", "dtype", "d", "1 thr", "2 thr");
  for (auto dtype : {at::kFloat, at::kDouble}) {
    for (int64_t d : {2, 64}) {
      const at::Tensor P = points(n, d, 1, dtype), S = points(n, d, 2, dtype);
      auto row = [&](const char* path, const std::function<void()>& f) {
        double ms[2];
        for (int t : {1, 2}) {
          at::set_num_threads(t);
          ms[t - 1] = median_ms(d > 2 ? 2 : 5, f);
        }
        std::printf("%-8s %-8s %4ld %8.1f %8.1f\n", path, c10::toString(dtype), long(d), ms[0],
                    ms[1]);
      };
      for (Isa isa : supported_isas()) {
        ScopedIsa scope(isa);
        row(name_of(isa), [&] { pair_sums(k, P, S, true); });
      }
      row("dense", [&] { gaussian_dense(P, S, 1.0); });
    }
  }
  // A step of the flow: sources = particles, then targets, with gradients (d = 2, float64).
  const at::Tensor Z = points(n, 2, 3), U = points(n, 2, 4);
  for (int t : {1, 2}) {
    at::set_num_threads(t);
    std::printf("step (2 calls, f64, d = 2, %d thr): %.1f ms\n", t, median_ms(5, [&] {
                  pair_sums(k, Z, Z, true);
                  pair_sums(k, Z, U, true);
                }));
  }
  at::set_num_threads(threads);
}

// Float32's error against float64 at the same points over m = 10^5 sources.
TEST(PairSumsFigures, DISABLED_Float32Accuracy) {
  const at::Tensor P = points(256, 2, 7, at::kFloat), S = points(100000, 2, 8, at::kFloat);
  for (PairKernel kind : kKinds) {
    const PairKernelSpec k = spec(kind);
    const PairSums f64 = pair_sums(k, P.to(at::kDouble), S.to(at::kDouble), true);
    const PairSums f32 = pair_sums(k, P, S, true);
    std::printf("%-8s value %.2e  grad %.2e  (max error / max |f64|)\n", name_of(kind),
                max_diff(f32.value, f64.value) / max_abs(f64.value),
                max_diff(f32.grad, f64.grad) / max_abs(f64.grad));
  }
}

}  // namespace
}  // namespace mmdflow
