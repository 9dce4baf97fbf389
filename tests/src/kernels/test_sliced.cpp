// The sliced energy gradient: in one dimension the exact gradient (ties included), in d = 2, 3, 10
// the exact gradient in the limit of many directions, with the constant c_d measured against the
// exact path (quadratures on the circle and the sphere, and Monte Carlo), bit-identical rows
// whatever the split of P or the thread count, reproducible directions.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "src/kernels/pairwise.h"
#include "src/kernels/sliced.h"
#include "tests/helpers.h"

namespace mmdflow {
namespace {

// grad h at P by the exact pair sums (energy kernel): [n, d].
at::Tensor exact_grad(const at::Tensor& P, const at::Tensor& Z, const at::Tensor& U) {
  const PairKernelSpec k{PairKernel::Energy};
  return pair_sums(k, P, Z, true).grad / double(Z.size(0)) -
         pair_sums(k, P, U, true).grad / double(U.size(0));
}

double rel_err(const at::Tensor& a, const at::Tensor& want) {
  return ((a - want).norm() / want.norm()).item<double>();
}

// The c that best scales the unscaled sliced average s / c_d onto the exact gradient e (least
// squares): c_d when the constant is right.
double fitted_constant(const at::Tensor& s, const at::Tensor& e, int64_t d) {
  const at::Tensor u = s / sliced_energy_constant(d);
  return ((u * e).sum() / (u * u).sum()).item<double>();
}

// A measure and a target that overlap but differ, so the gradients are sizable everywhere.
struct Measures {
  at::Tensor Z, U;
  Measures(int64_t d, c10::ScalarType dtype = at::kDouble)
      : Z(test::inputs(200, d, 1, dtype)), U((test::inputs(150, d, 2) * 0.5 + 1.0).to(dtype)) {}
};

TEST(SlicedEnergy, ConstantHasItsClosedForms) {
  EXPECT_NEAR(sliced_energy_constant(1), 1.0, 1e-15);
  EXPECT_NEAR(sliced_energy_constant(2), M_PI / 2, 1e-15);
  EXPECT_NEAR(sliced_energy_constant(3), 2.0, 1e-15);
  EXPECT_NEAR(sliced_energy_constant(4), 3 * M_PI / 4, 1e-14);
  // sqrt(pi d / 2) as d grows
  EXPECT_NEAR(sliced_energy_constant(10000) / std::sqrt(M_PI * 10000 / 2), 1.0, 1e-4);
}

// d = 1, xi = +1 or -1: the counts are the exact sums of signs, ties (own row, repeated values,
// -0 against +0) count 0, in both paths (P a view of Z's rows, and points of its own).
TEST(SlicedEnergy, OneDimensionIsTheExactGradient) {
  for (auto dtype : {at::kDouble, at::kFloat}) {
    const auto o = at::TensorOptions().dtype(dtype);
    const at::Tensor Z =
        at::tensor({0.0, 1.0, 1.0, 2.0, -0.5, 3.0, 1.0, -0.0, 2.5}, o).view({-1, 1});
    const at::Tensor U = at::tensor({1.0, 2.0, 2.0, 5.0, -1.0, 0.25}, o).view({-1, 1});
    const at::Tensor Q =
        at::tensor({1.0, 2.0, 0.5, -3.0, 10.0, 0.0, -0.0, 0.25, 2.5}, o).view({-1, 1});
    const double tol = dtype == at::kDouble ? 1e-14 : 1e-6;
    for (double sign : {1.0, -1.0}) {
      SCOPED_TRACE(std::string(c10::toString(dtype)) + " xi = " + std::to_string(sign));
      const at::Tensor xi = at::full({1, 1}, sign, o);
      EXPECT_TRUE(at::allclose(sliced_energy_grad(Z, Z, U, xi), exact_grad(Z, Z, U), 0, tol));
      EXPECT_TRUE(at::allclose(sliced_energy_grad(Z.narrow(0, 2, 5), Z, U, xi),
                               exact_grad(Z.narrow(0, 2, 5), Z, U), 0, tol));
      EXPECT_TRUE(at::allclose(sliced_energy_grad(Q, Z, U, xi), exact_grad(Q, Z, U), 0, tol));
    }
    // Thousands of points on a grid of 0.01 (many ties, every byte of the sort keys in play).
    auto grid = [&](int64_t n, uint64_t seed) {
      return at::round(test::inputs(n, 1, seed) * 100).div(100).to(dtype);
    };
    const at::Tensor Zg = grid(3000, 3), Ug = grid(2000, 4) + 0.5, Qg = grid(500, 5);
    const at::Tensor xi = at::ones({1, 1}, o);
    EXPECT_TRUE(at::allclose(sliced_energy_grad(Zg, Zg, Ug, xi), exact_grad(Zg, Zg, Ug), 0, tol));
    EXPECT_TRUE(at::allclose(sliced_energy_grad(Qg, Zg, Ug, xi), exact_grad(Qg, Zg, Ug), 0, tol));
  }
}

// Monte Carlo over directions: the error falls as 1/sqrt(L) (a factor sqrt(10) from 2000 to 20000
// directions) and ends at a few percent.
TEST(SlicedEnergy, ManyDirectionsGiveTheExactGradient) {
  for (int64_t d : {2, 3, 10}) {
    SCOPED_TRACE("d = " + std::to_string(d));
    const Measures m(d);
    const at::Tensor want = exact_grad(m.Z, m.Z, m.U);
    const double coarse = rel_err(
        sliced_energy_grad(m.Z, m.Z, m.U, random_directions(2000, d, 3, m.Z.options())), want);
    const at::Tensor fine =
        sliced_energy_grad(m.Z, m.Z, m.U, random_directions(20000, d, 4, m.Z.options()));
    const double err = rel_err(fine, want);
    EXPECT_LT(err, 0.5 * coarse);
    EXPECT_LT(err, 0.04);
    // The constant, fitted: Monte Carlo errors average out over the rows' entries.
    EXPECT_NEAR(fitted_constant(fine, want, d) / sliced_energy_constant(d), 1.0, 0.03);
  }
}

// Deterministic quadratures, whose error falls as about 1/L: equally spaced directions on the half
// circle (the integrand is even in xi) and Archimedes' equal-area cells on the sphere (the height
// uniform on [-1, 1], the angle uniform). The fitted constant is c_d to 1e-5 on the circle, 2e-4 on
// the sphere.
TEST(SlicedEnergy, QuadraturesMeasureTheConstant) {
  {
    const Measures m(2);
    const int64_t L = 20000;
    const at::Tensor theta = (at::arange(L, m.Z.options()) + 0.5) * (M_PI / double(L));
    const at::Tensor xi = at::stack({at::cos(theta), at::sin(theta)}, 1);
    const at::Tensor want = exact_grad(m.Z, m.Z, m.U), s = sliced_energy_grad(m.Z, m.Z, m.U, xi);
    EXPECT_LT(rel_err(s, want), 1e-4);
    EXPECT_NEAR(fitted_constant(s, want, 2) / (M_PI / 2), 1.0, 1e-5);
  }
  {
    const Measures m(3);
    const int64_t K = 100, J = 200;
    const at::Tensor t = (at::arange(K, m.Z.options()) + 0.5) * (2.0 / double(K)) - 1.0;
    const at::Tensor phi = (at::arange(J, m.Z.options()) + 0.5) * (2 * M_PI / double(J));
    const at::Tensor r = at::sqrt(1 - t * t).view({K, 1});
    const at::Tensor xi = at::stack(
        {(r * at::cos(phi).view({1, J})).reshape(-1), (r * at::sin(phi).view({1, J})).reshape(-1),
         t.view({K, 1}).expand({K, J}).reshape(-1)},
        1);
    const at::Tensor want = exact_grad(m.Z, m.Z, m.U), s = sliced_energy_grad(m.Z, m.Z, m.U, xi);
    EXPECT_LT(rel_err(s, want), 2e-3);
    EXPECT_NEAR(fitted_constant(s, want, 3) / 2.0, 1.0, 2e-4);
  }
}

// Row i's result reads p_i, Z, U and xi only: P's rows split into blocks (views of Z, or copies),
// on one thread or several, give the same bits as all rows at once.
TEST(SlicedEnergy, SplitRowsGiveTheSameBits) {
  const int threads = at::get_num_threads();
  const int64_t cuts[] = {0, 1, 37, 128, 199, 200};
  for (auto dtype : {at::kFloat, at::kDouble}) {
    SCOPED_TRACE(c10::toString(dtype));
    const Measures m(3, dtype);
    const at::Tensor xi = random_directions(37, 3, 5, m.Z.options());
    at::set_num_threads(2);
    const at::Tensor whole = sliced_energy_grad(m.Z, m.Z, m.U, xi);
    for (int t : {1, 3}) {
      at::set_num_threads(t);
      std::vector<at::Tensor> views, copies;
      for (size_t c = 0; c + 1 < std::size(cuts); ++c) {
        const at::Tensor rows = m.Z.narrow(0, cuts[c], cuts[c + 1] - cuts[c]);
        views.push_back(sliced_energy_grad(rows, m.Z, m.U, xi));
        copies.push_back(sliced_energy_grad(rows.clone(), m.Z, m.U, xi));
      }
      EXPECT_TRUE(at::equal(whole, at::cat(views))) << t << " threads";
      EXPECT_TRUE(at::equal(whole, at::cat(copies))) << t << " threads";
    }
  }
  at::set_num_threads(threads);
}

// The directions are unit rows, a function of (L, d, seed) alone: the same in float32 as float64
// rounded, and the global generator is left as it was.
TEST(SlicedEnergy, DirectionsAreReproducibleFromTheSeed) {
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor a = random_directions(50, 4, 7, f64);
  EXPECT_EQ(a.sizes(), (at::IntArrayRef{50, 4}));
  EXPECT_TRUE(at::equal(a, random_directions(50, 4, 7, f64)));
  EXPECT_FALSE(at::equal(a, random_directions(50, 4, 8, f64)));
  EXPECT_TRUE(at::allclose(a.norm(2, {1}), at::ones({50}, f64), 0, 1e-15));
  EXPECT_TRUE(at::equal(random_directions(50, 4, 7, f64.dtype(at::kFloat)), a.to(at::kFloat)));
  at::manual_seed(11);
  const at::Tensor before = at::randn({8});
  at::manual_seed(11);
  random_directions(50, 4, 7, f64);
  EXPECT_TRUE(at::equal(at::randn({8}), before));
}

// A NaN among the points breaks no sort (it orders past every number); shapes and devices are
// checked.
TEST(SlicedEnergy, BadInputsAreSafe) {
  const Measures m(2);
  at::Tensor Z = m.Z.clone();
  Z[3][0] = NAN;
  const at::Tensor xi = random_directions(16, 2, 1, Z.options());
  EXPECT_EQ(sliced_energy_grad(Z, Z, m.U, xi).sizes(), Z.sizes());
  EXPECT_THROW(sliced_energy_grad(m.Z, m.Z, m.U.narrow(1, 0, 1), xi), c10::Error);
  EXPECT_THROW(sliced_energy_grad(m.Z, m.Z, m.U.to(at::kFloat), xi), c10::Error);
  EXPECT_THROW(sliced_energy_grad(m.Z, m.Z, m.U, xi.narrow(0, 0, 0)), c10::Error);
}

}  // namespace
}  // namespace mmdflow
