// A run's divergence: its validation loss over the initial one, and the first epoch past 10x.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "src/train/divergence.h"

namespace mmdflow {
namespace {

// Adds the losses as epochs 1, 2, ... and returns whether each epoch was diverging.
std::vector<bool> feed(Divergence& d, const std::vector<double>& losses) {
  std::vector<bool> out;
  for (size_t i = 0; i < losses.size(); ++i) {
    d.add(int64_t(i + 1), losses[i]);
    out.push_back(d.diverging());
  }
  return out;
}

TEST(Divergence, FirstEpochPastTenTimesTheStartAndTheLargestRatio) {
  Divergence d(0.25);  // ratios 0.8, 4, 10 (not past), 12, 40, 2
  EXPECT_EQ(feed(d, {0.2, 1, 2.5, 3, 10, 0.5}),
            (std::vector<bool>{false, false, false, true, true, false}));
  EXPECT_EQ(d.epoch(), 4);
  EXPECT_EQ(d.max_ratio(), 40);
  EXPECT_EQ(d.ratio(), 2);  // the last epoch's: back below, the divergence stays recorded
}

TEST(Divergence, AFallingRunNeverDiverges) {
  Divergence d(0.0096);
  EXPECT_EQ(feed(d, {0.009, 0.005, 0.001}), (std::vector<bool>{false, false, false}));
  EXPECT_FALSE(d.epoch());
  EXPECT_EQ(d.max_ratio(), 1);  // epoch 0's
  EXPECT_DOUBLE_EQ(*d.ratio(), 0.001 / 0.0096);
  EXPECT_EQ(Divergence(1).max_ratio(), 1);  // no epoch yet
  EXPECT_FALSE(Divergence(1).ratio());
}

// The run at gamma = 10^6: 0.0096 -> 0.35, about 36x.
TEST(Divergence, TheLargeStepRun) {
  Divergence d(0.0096);
  feed(d, {0.05, 0.0961, 0.2, 0.35});
  EXPECT_EQ(d.epoch(), 2);  // 0.0961 is 10.01x
  EXPECT_NEAR(*d.max_ratio(), 36.46, 0.01);
}

// Without a positive finite start there is no scale: no ratio, no divergence. A non-finite loss
// is the non-finite stop's, not a ratio.
TEST(Divergence, NoScaleAndNonFiniteLosses) {
  for (double start : {0.0, -1.0, double(NAN), double(INFINITY)}) {
    Divergence d(start);
    EXPECT_EQ(feed(d, {1, 1e9}), (std::vector<bool>{false, false})) << start;
    EXPECT_FALSE(d.max_ratio()) << start;
    EXPECT_FALSE(d.epoch()) << start;
  }
  Divergence d(1);
  EXPECT_EQ(feed(d, {NAN, INFINITY, 2}), (std::vector<bool>{false, false, false}));
  EXPECT_FALSE(d.epoch());
  EXPECT_EQ(d.max_ratio(), 2);
}

}  // namespace
}  // namespace mmdflow
