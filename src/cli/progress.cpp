#include "src/cli/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>

namespace mmdflow {

bool say(const std::string& text) {
  static bool gone = false;
  if (gone) return false;
  if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0) {
    gone = true;
    std::clearerr(stdout);
  }
  return !gone;
}

std::string fmt_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = int64_t(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, (t / 60) % 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

Progress::Progress(int64_t epochs, int64_t every)
    : epochs_(epochs), every_(std::max<int64_t>(1, every)), tty_(isatty(1)) {}

std::string progress_line(const EpochLog& l, int64_t epochs, const Divergence& d) {
  const double eta = l.seconds / double(l.epoch) * double(epochs - l.epoch);
  std::string line = fmt::format(
      "epoch {:>{}}/{}  train {:.4e}  valid {:.4e}  beta {:.3g}  grad_sq {:.3e}", l.epoch,
      std::to_string(epochs).size(), epochs, l.train_loss, l.valid_loss, l.beta, l.grad_sq);
  if (l.beta > 0) line += fmt::format(" (noisy {:.3e})", l.noisy_grad_sq);
  line += fmt::format("  {} elapsed, ETA {}", fmt_duration(l.seconds), fmt_duration(eta));
  if (d.diverging()) line += fmt::format("  diverging: valid {:.0f}x its start", *d.ratio());
  return line;
}

std::string divergence_warning(const EpochLog& l, const Divergence& d) {
  return fmt::format(
      "mmdflow: warning: diverging: at epoch {} the validation loss {:.4e} is {:.0f}x its "
      "start (more than {:g}x); the run goes on\n",
      l.epoch, l.valid_loss, d.ratio().value_or(NAN), kDivergeRatio);
}

void Progress::update(const EpochLog& l, const Divergence& d) {
  const std::string line = progress_line(l, epochs_, d);
  if (d.epoch() == l.epoch) {  // on a terminal, in place of the line drawn there
    say((tty_ && drawn_ ? "\r\x1b[K" : "") + divergence_warning(l, d));
    last_ = {};
  }
  if (tty_) {
    const auto now = std::chrono::steady_clock::now();
    if (l.epoch == epochs_ || now - last_ > std::chrono::milliseconds(100)) {
      say(fmt::format("\r{}\x1b[K", line));
      last_ = now;
      drawn_ = true;
    }
  } else if (l.epoch % every_ == 0 || l.epoch == epochs_ || l.epoch == 1) {
    say(line + "\n");
  }
}

void Progress::finish() {
  if (tty_ && drawn_) say("\n");
}

}  // namespace mmdflow
