#include "src/cli/signals.h"

#include <initializer_list>

namespace mmdflow {

StopSignals::StopSignals() {
  signal_ = 0;
  struct sigaction sa = {};
  sa.sa_handler = [](int sig) {
    if (signal_ == 0) signal_ = sig;
  };
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (const int sig : {SIGINT, SIGTERM, SIGPIPE}) {
    struct sigaction old = {};
    sigaction(sig, nullptr, &old);
    if (old.sa_handler != SIG_IGN) sigaction(sig, &sa, nullptr);
  }
  std::signal(SIGHUP, SIG_IGN);
}

void ignore_file_size_signal() { std::signal(SIGXFSZ, SIG_IGN); }

}  // namespace mmdflow
