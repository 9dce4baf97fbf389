// What a run prints: the resolved set-up once, then a progress line per epoch (rewritten in place
// with an ETA on a terminal; plain lines every `every` epochs otherwise), and a plain warning line
// at the first epoch that diverges (src/train/divergence.h). Output that cannot be written (a
// closed pipe or terminal) is dropped from then on; the run goes on.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

#include "src/train/divergence.h"
#include "src/train/records.h"

namespace mmdflow {

// Writes text to stdout unless an earlier write failed; false once stdout is gone.
bool say(const std::string& text);

std::string fmt_duration(double seconds);  // "1h02m", "3m05s", "12s"

// Epoch l of `epochs`: its losses, beta, the clean gradient's grad_sq (and the noisy one's, when
// beta > 0), the time, the ETA, and "diverging: ..." while d (with l added) is past its ratio.
std::string progress_line(const EpochLog& l, int64_t epochs, const Divergence& d);
// The line said once, at the first epoch past the ratio.
std::string divergence_warning(const EpochLog& l, const Divergence& d);

class Progress {
 public:
  Progress(int64_t epochs, int64_t every);
  void update(const EpochLog& l, const Divergence& d);  // d: with epoch l added
  void finish();

 private:
  int64_t epochs_, every_;
  bool tty_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace mmdflow
