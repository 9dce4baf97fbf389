// The target laws of the samples family: their moments within a few standard errors at large M,
// the three-ring law exactly, draws from the generator alone.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cmath>

#include "data/targets.h"
#include "tests/helpers.h"

namespace mmdflow {
namespace {

at::Tensor draw(TargetLaw law, int64_t M, int64_t d, uint64_t seed, double df = 5) {
  at::Generator g = test::gen(seed);
  return draw_target(law, M, d, df, g);
}

// x [M, d]: its covariance [d, d] about its mean.
at::Tensor covariance(const at::Tensor& x) {
  const at::Tensor c = x - x.mean(0);
  return c.t().mm(c) / double(x.size(0));
}

TEST(TargetLaws, NamesAndDimensions) {
  EXPECT_EQ(parse_name<TargetLaw>("three_rings"), TargetLaw::ThreeRings);
  EXPECT_STREQ(name_of(TargetLaw::Student), "student");
  EXPECT_EQ(name_list<TargetLaw>(), "three_rings, mixture, gaussian, student, file");
  EXPECT_EQ(law_dim(TargetLaw::ThreeRings, 7), 2);
  EXPECT_EQ(law_dim(TargetLaw::Mixture, 7), 2);
  EXPECT_EQ(law_dim(TargetLaw::Gaussian, 7), 7);
  EXPECT_EQ(law_dim(TargetLaw::Student, 7), 7);
  for (const auto& [law, name] : Names<TargetLaw>::table) {
    if (law == TargetLaw::File) continue;
    const at::Tensor x = draw(law, 10, 3, 1);
    EXPECT_EQ(x.sizes(), at::IntArrayRef({10, law_dim(law, 3)})) << name;
    EXPECT_EQ(x.scalar_type(), at::kDouble) << name;
    EXPECT_TRUE(x.device().is_cpu()) << name;
  }
  at::Generator g = test::gen(1);
  EXPECT_THROW(draw_target(TargetLaw::File, 10, 3, 5, g), std::invalid_argument);
  EXPECT_THROW(draw_target(TargetLaw::Student, 10, 3, 0, g), std::invalid_argument);
  EXPECT_THROW(draw_target(TargetLaw::Gaussian, 10, 0, 5, g), std::invalid_argument);
  EXPECT_THROW(draw_target(TargetLaw::Mixture, -1, 2, 5, g), std::invalid_argument);
}

// Each quadrant's samples are one component's (a sample leaves its quadrant with probability
// about 1e-4, shifting the moments below the tolerances): mean (+-2, +-2), variance 0.3 a
// coordinate, weight 1/4; tolerances of 5 standard errors.
TEST(TargetLaws, MixtureComponents) {
  const int64_t M = 200000;
  const at::Tensor x = draw(TargetLaw::Mixture, M, 2, 11);
  for (const double sx : {-1.0, 1.0})
    for (const double sy : {-1.0, 1.0}) {
      const at::Tensor in = (x.select(1, 0) * sx > 0).logical_and(x.select(1, 1) * sy > 0);
      const at::Tensor c = x.index_select(0, in.nonzero().squeeze(1));
      const double n = double(c.size(0));
      EXPECT_NEAR(n / M, 0.25, 5 * std::sqrt(0.25 * 0.75 / M)) << sx << " " << sy;
      const at::Tensor mean = c.mean(0), var = c.var(0);
      EXPECT_NEAR(mean[0].item<double>(), 2 * sx, 5 * std::sqrt(0.3 / n));
      EXPECT_NEAR(mean[1].item<double>(), 2 * sy, 5 * std::sqrt(0.3 / n));
      for (int k = 0; k < 2; ++k)
        EXPECT_NEAR(var[k].item<double>(), 0.3, 5 * 0.3 * std::sqrt(2 / n));
      EXPECT_NEAR(covariance(c)[0][1].item<double>(), 0, 5 * 0.3 / std::sqrt(n));
    }
}

// Mean 0 and covariance I_d; standard errors 1/sqrt(M) (mean, off-diagonal), sqrt(2/M) (variance).
TEST(TargetLaws, GaussianMoments) {
  const int64_t M = 100000, d = 4;
  const at::Tensor x = draw(TargetLaw::Gaussian, M, d, 12);
  const at::Tensor mean = x.mean(0), cov = covariance(x);
  for (int64_t i = 0; i < d; ++i) {
    EXPECT_NEAR(mean[i].item<double>(), 0, 5 / std::sqrt(M));
    for (int64_t j = 0; j < d; ++j)
      EXPECT_NEAR(cov[i][j].item<double>(), i == j,
                  5 * (i == j ? std::sqrt(2.0) : 1.0) / std::sqrt(M))
          << i << " " << j;
  }
}

// t_5: variance df / (df - 2) = 5/3 (kurtosis 9: standard error sqrt(8/n) 5/3), P(|t| > 2.015)
// = 0.10; coordinates independent, so |t_1| and |t_2| are uncorrelated (a chi2 shared by a row,
// the multivariate t, correlates them by about 0.2).
TEST(TargetLaws, StudentVarianceTailAndIndependence) {
  const int64_t M = 200000, d = 2;
  const double df = 5, n = double(M * d);
  const at::Tensor x = draw(TargetLaw::Student, M, d, 13, df);
  EXPECT_NEAR(x.mean().item<double>(), 0, 5 * std::sqrt(df / (df - 2) / n));
  EXPECT_NEAR(x.pow(2).mean().item<double>(), df / (df - 2), 5 * std::sqrt(8 / n) * df / (df - 2));
  EXPECT_NEAR((x.abs() > 2.015).to(at::kDouble).mean().item<double>(), 0.10,
              5 * std::sqrt(0.1 * 0.9 / n));
  const at::Tensor a = x.abs();
  const at::Tensor corr = at::corrcoef(a.t());
  EXPECT_NEAR(corr[0][1].item<double>(), 0, 5 / std::sqrt(double(M)));
  // Heavier tails for fewer degrees of freedom: df = 1 is Cauchy, P(|t| > 1) = 1/2.
  const at::Tensor cauchy = draw(TargetLaw::Student, M, 1, 14, 1.0);
  EXPECT_NEAR((cauchy.abs() > 1).to(at::kDouble).mean().item<double>(), 0.5,
              5 * std::sqrt(0.25 / M));
}

// M = 3 K + 1: K + 1 points on the top ring, K on each other, at the angles 2 pi k / K_j, each
// exactly 0.3 from its centre (0, 0), (0, -0.75), (0, -1.5); rows shuffled.
TEST(TargetLaws, ThreeRingsExactly) {
  for (const int64_t M : {300, 301, 302}) {
    const at::Tensor x = draw(TargetLaw::ThreeRings, M, 5, 21);
    std::vector<std::vector<double>> angles(3);
    for (int64_t m = 0; m < M; ++m) {
      const double u = x[m][0].item<double>(), v = x[m][1].item<double>();
      int ring = -1;
      for (int j = 0; j < 3; ++j)
        if (std::abs(std::hypot(u, v + 0.75 * j) - 0.3) < 1e-12) {
          EXPECT_EQ(ring, -1) << "on two rings: " << u << " " << v;
          ring = j;
        }
      ASSERT_NE(ring, -1) << "on no ring: " << u << " " << v;
      const double a = std::atan2(v + 0.75 * ring, u);
      angles[size_t(ring)].push_back(a < -1e-9 ? a + 2 * M_PI : a);
    }
    for (int64_t j = 0; j < 3; ++j) {
      std::vector<double>& a = angles[size_t(j)];
      const int64_t K = M / 3 + (j < M % 3);
      ASSERT_EQ(int64_t(a.size()), K) << M << " ring " << j;
      std::sort(a.begin(), a.end());
      for (int64_t k = 0; k < K; ++k) EXPECT_NEAR(a[size_t(k)], 2 * M_PI * k / K, 1e-12);
    }
    // Shuffled: the first third of the rows is not the top ring.
    EXPECT_LT(x.narrow(0, 0, M / 3).select(1, 1).gt(-0.3 - 1e-9).sum().item<int64_t>(), M / 3);
  }
}

// The same generator state gives the same samples, another seed others, whatever the number of
// threads; the global generator is neither read nor advanced.
TEST(TargetLaws, DrawsComeFromTheGeneratorAlone) {
  const int threads = at::get_num_threads();
  for (const auto& [law, name] : Names<TargetLaw>::table) {
    if (law == TargetLaw::File) continue;
    at::set_num_threads(1);
    const at::Tensor one = draw(law, 20000, 3, 7);  // enough for several threads
    at::set_num_threads(4);
    at::manual_seed(99);
    const at::Tensor global = at::randn({3});
    at::manual_seed(99);
    const at::Tensor four = draw(law, 20000, 3, 7);
    EXPECT_TRUE(at::equal(at::randn({3}), global)) << name;
    EXPECT_TRUE(at::equal(one, four)) << name;
    EXPECT_FALSE(at::equal(one, draw(law, 20000, 3, 8))) << name;
    at::Generator g = test::gen(7);
    draw_target(law, 10, 3, 5, g);
    EXPECT_FALSE(at::equal(draw_target(law, 10, 3, 5, g), draw(law, 10, 3, 7))) << name;
  }
  at::set_num_threads(threads);
}

}  // namespace
}  // namespace mmdflow
