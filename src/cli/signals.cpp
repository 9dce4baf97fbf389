#include "src/cli/signals.h"

namespace mmdflow {

StopSignals::StopSignals() {
  signal_ = 0;
  struct sigaction sa = {};
  sa.sa_handler = [](int sig) {
    if (signal_ == 0) signal_ = sig;
  };
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int i = 0; i < 3; ++i) {
    sigaction(kStops[i], nullptr, &old_[i]);
    if (old_[i].sa_handler != SIG_IGN) sigaction(kStops[i], &sa, nullptr);
  }
  struct sigaction ignore = {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  sigaction(SIGHUP, &ignore, &old_hup_);
}

StopSignals::~StopSignals() {
  for (int i = 0; i < 3; ++i) sigaction(kStops[i], &old_[i], nullptr);
  sigaction(SIGHUP, &old_hup_, nullptr);
}

void ignore_file_size_signal() { std::signal(SIGXFSZ, SIG_IGN); }

}  // namespace mmdflow
