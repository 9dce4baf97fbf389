// Signals during a run. SIGINT, SIGTERM and SIGPIPE (stdout closed, e.g. `mmdflow train | head`)
// only record themselves while a StopSignals lives: the run asks received() before each step,
// writes a checkpoint and exits 128 + the signal. SIGHUP (the terminal went away) is ignored: the
// run goes on, and output that can no longer be written is dropped (src/cli/progress.h).
// SIGXFSZ is ignored, so a file past `ulimit -f` fails as on a full disk (exit 4). A signal
// ignored when the process started (e.g. SIGINT of a background job) stays ignored.
#pragma once
#include <csignal>

namespace mmdflow {

class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  static int received() { return signal_; }  // 0, SIGINT, SIGTERM or SIGPIPE

 private:
  static constexpr int kStops[3] = {SIGINT, SIGTERM, SIGPIPE};
  static inline volatile std::sig_atomic_t signal_ = 0;
  struct sigaction old_[3];
  struct sigaction old_hup_;
};

// For the whole process: SIGXFSZ ignored (a too large file is an I/O error, exit 4).
void ignore_file_size_signal();

}  // namespace mmdflow
