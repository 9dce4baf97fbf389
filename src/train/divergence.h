// A run that diverges without going non-finite: its validation loss rises past kDivergeRatio
// times its initial one (epoch 0's). The validation loss, not the training loss: it is measured
// after the epoch as the initial one is, on the same fixed set, where the training loss averages
// the minibatches during the epoch's (noisy) steps. Not an error: the progress line and
// summary.json say so (docs/reliability.md), the run goes on.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>

namespace mmdflow {

constexpr double kDivergeRatio = 10;

class Divergence {
 public:
  // initial: epoch 0's validation loss; without a positive finite one there is no scale, and no
  // ratio.
  explicit Divergence(double initial) : initial_(initial) {}

  // Epoch `epoch`'s validation loss, the epochs in order. A non-finite loss is not a ratio (the
  // run stops as non-finite).
  void add(int64_t epoch, double valid_loss) {
    ratio_.reset();
    if (!scaled() || !std::isfinite(valid_loss)) return;
    ratio_ = valid_loss / initial_;
    max_ = std::max(max_, *ratio_);
    if (*ratio_ > kDivergeRatio && !epoch_) epoch_ = epoch;
  }

  // The last epoch's validation loss over the initial one (none: no scale, or not finite).
  std::optional<double> ratio() const { return ratio_; }
  // The last epoch's ratio is past kDivergeRatio.
  bool diverging() const { return ratio_ && *ratio_ > kDivergeRatio; }
  // The largest ratio so far, epoch 0's 1 included (none: no scale).
  std::optional<double> max_ratio() const {
    return scaled() ? std::optional<double>(max_) : std::nullopt;
  }
  // The first epoch whose ratio was past kDivergeRatio.
  std::optional<int64_t> epoch() const { return epoch_; }

 private:
  bool scaled() const { return std::isfinite(initial_) && initial_ > 0; }

  double initial_;
  double max_ = 1;
  std::optional<double> ratio_;
  std::optional<int64_t> epoch_;
};

}  // namespace mmdflow
