#include <gtest/gtest.h>

#include <cmath>

#include "src/flow/schedule.h"

namespace mmdflow {
namespace {

TEST(BetaSchedule, PaperStepHalvesEveryThousandEpochs) {
  BetaSchedule s{BetaKind::Step, 1.0, 0.5, 1000, 1.0};
  EXPECT_EQ(s.at(0), 1.0);
  EXPECT_EQ(s.at(999), 1.0);
  EXPECT_EQ(s.at(1000), 0.5);
  EXPECT_EQ(s.at(2999), 0.25);
  EXPECT_EQ(s.at(9999), 1.0 / 512);
}

TEST(BetaSchedule, OtherKinds) {
  EXPECT_EQ((BetaSchedule{BetaKind::Constant, 0.3, 0.5, 10, 1.0}.at(12345)), 0.3);
  EXPECT_NEAR((BetaSchedule{BetaKind::Exponential, 2.0, 0.5, 10, 100.0}.at(100)), 2.0 / M_E, 1e-15);
  EXPECT_NEAR((BetaSchedule{BetaKind::Inverse, 2.0, 0.5, 10, 50.0}.at(100)), 2.0 / 3.0, 1e-15);
}

TEST(BetaSchedule, ParsesNames) {
  for (auto k : {BetaKind::Constant, BetaKind::Step, BetaKind::Exponential, BetaKind::Inverse})
    EXPECT_EQ(parse_beta_kind(to_string(k)), k);
  EXPECT_THROW(parse_beta_kind("cosine"), std::invalid_argument);
}

}  // namespace
}  // namespace mmdflow
