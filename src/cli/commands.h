// The mmdflow command line: `mmdflow <train|compare|bench> [options]`.
#pragma once

namespace mmdflow {

// Exit codes. 130 and 143 follow the shell's 128 + signal number.
enum Exit : int {
  kOk = 0,
  kError = 1,
  kBadInput = 2,       // bad config, option or file read back (checkpoint, losses.csv)
  kNonFinite = 3,      // the run diverged
  kIo = 4,             // a file could not be written (disk full, folder not writable)
  kInterrupted = 130,  // SIGINT: stopped at a step boundary, checkpoint written
  kTerminated = 143,   // SIGTERM: the same
};

int run_cli(int argc, char** argv);

}  // namespace mmdflow
