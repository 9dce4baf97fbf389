// The progress line: what each figure is, and the divergence marker and warning.
#include <gtest/gtest.h>

#include "src/cli/progress.h"

namespace mmdflow {
namespace {

EpochLog log_of(int64_t epoch, double valid, double beta) {
  EpochLog l;
  l.epoch = epoch;
  l.train_loss = 0.5;
  l.valid_loss = valid;
  l.beta = beta;
  l.grad_sq = 1.25e-3;
  l.noisy_grad_sq = 7.5e-2;
  l.seconds = 10;
  return l;
}

// grad_sq is the clean gradient's (EpochLog::grad_sq); the noisy one is labelled so, and only
// shown when there is noise.
TEST(Progress, NamesTheGradientItShows) {
  const Divergence d(1);
  EXPECT_EQ(progress_line(log_of(5, 0.25, 0.5), 20, d),
            "epoch  5/20  train 5.0000e-01  valid 2.5000e-01  beta 0.5  grad_sq 1.250e-03 "
            "(noisy 7.500e-02)  10s elapsed, ETA 30s");
  EXPECT_EQ(progress_line(log_of(5, 0.25, 0), 20, d),
            "epoch  5/20  train 5.0000e-01  valid 2.5000e-01  beta 0  grad_sq 1.250e-03  10s "
            "elapsed, ETA 30s");
}

// Past 10x its start the line says so while it stays there; the warning names the epoch.
TEST(Progress, MarksAndWarnsOfDivergence) {
  Divergence d(0.01);
  d.add(1, 0.05);
  EXPECT_EQ(progress_line(log_of(1, 0.05, 0), 4, d).find("diverging"), std::string::npos);
  d.add(2, 0.36);
  EXPECT_EQ(progress_line(log_of(2, 0.36, 0), 4, d),
            "epoch 2/4  train 5.0000e-01  valid 3.6000e-01  beta 0  grad_sq 1.250e-03  10s "
            "elapsed, ETA 10s  diverging: valid 36x its start");
  EXPECT_EQ(divergence_warning(log_of(2, 0.36, 0), d),
            "mmdflow: warning: diverging: at epoch 2 the validation loss 3.6000e-01 is 36x its "
            "start (more than 10x); the run goes on\n");
  d.add(3, 0.05);
  EXPECT_EQ(progress_line(log_of(3, 0.05, 0), 4, d).find("diverging"), std::string::npos);
}

}  // namespace
}  // namespace mmdflow
