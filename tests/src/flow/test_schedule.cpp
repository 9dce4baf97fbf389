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

// gamma is cut by `factor` after `patience` epochs without a lower train loss, and only then.
TEST(StepSchedule, PlateauCutsAfterPatience) {
  const StepSchedule plateau{StepKind::Plateau, 1.0, 2, 0.5};
  StepState s = plateau.start();
  const std::vector<std::pair<double, double>> epochs = {{3.0, 1.0}, {2.0, 1.0}, {2.5, 1.0},
                                                         {2.0, 0.5},  // two epochs above 2.0: cut
                                                         {1.0, 0.5}, {1.5, 0.5}, {1.5, 0.25}};
  for (const auto& [loss, gamma] : epochs) {
    plateau.after_epoch(loss, s);
    EXPECT_EQ(s.step_size, gamma) << loss;
  }
  EXPECT_EQ(s.best, 1.0);
  const StepSchedule constant{StepKind::Constant, 1.0, 1, 0.5};
  StepState c = constant.start();
  for (double loss : {3.0, 4.0, 5.0}) constant.after_epoch(loss, c);
  EXPECT_EQ(c.step_size, 1.0);
}

}  // namespace
}  // namespace mmdflow
