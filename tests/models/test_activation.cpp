#include <gtest/gtest.h>

#include <cmath>

#include "models/activation.h"

namespace mmdflow {
namespace {

// vexp against std::exp over the range the output non-linearities use, and at its clamps.
TEST(Activation, VectorisableExpMatchesStdExp) {
  double worst_f = 0, worst_d = 0;
  for (int i = 0; i <= 200000; ++i) {
    const double x = -700.0 + 705.0 * i / 200000.0;
    worst_d = std::max(worst_d, std::abs(vexp(x) / std::exp(x) - 1.0));
    if (x >= -87.0 && x <= 88.0) {
      const float xf = float(x);
      worst_f = std::max(worst_f, std::abs(double(vexp(xf)) / std::exp(double(xf)) - 1.0));
    }
  }
  EXPECT_LT(worst_d, 3e-16);
  EXPECT_LT(worst_f, 2e-7);
  EXPECT_EQ(vexp(0.0), 1.0);
  EXPECT_EQ(vexp(0.0f), 1.0f);
  EXPECT_GT(vexp(-1e4), 0.0);  // clamped: no underflow to 0 or denormals
  EXPECT_TRUE(std::isfinite(vexp(1e4)));
  EXPECT_TRUE(std::isnan(vexp(std::nan(""))));  // a diverging run stays non-finite
}

}  // namespace
}  // namespace mmdflow
