// Signals during a run. From the first StopSignals on, until the process ends, SIGINT, SIGTERM and
// SIGPIPE (stdout closed, e.g. `mmdflow train | head`) only record themselves: the run asks
// received() before each step, writes a checkpoint and exits 128 + the signal. They never end the
// process half-way: not while the ranks of a sharded run write the checkpoint they agreed on (a
// rank whose own signal comes late exits as the others do), nor after the last epoch, while the
// final files are written (the run then ends as finished). SIGHUP (the terminal went away) is
// ignored: the run goes on, and output that can no longer be written is dropped
// (src/cli/progress.h). SIGXFSZ is ignored, so a file past `ulimit -f` fails as on a full disk
// (exit 4). A signal ignored when the process started (e.g. SIGINT of a background job) stays
// ignored.
#pragma once
#include <csignal>

namespace mmdflow {

class StopSignals {
 public:
  StopSignals();  // the handlers stay for the rest of the process
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  static int received() { return signal_; }  // 0, SIGINT, SIGTERM or SIGPIPE

 private:
  static inline volatile std::sig_atomic_t signal_ = 0;
};

// For the whole process: SIGXFSZ ignored (a too large file is an I/O error, exit 4).
void ignore_file_size_signal();

}  // namespace mmdflow
