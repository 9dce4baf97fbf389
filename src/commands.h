// The mmdflow command line: `mmdflow <train|compare|bench> [options]`.
#pragma once

namespace mmdflow {

// Exit codes.
enum Exit : int { kOk = 0, kError = 1, kBadInput = 2, kNonFinite = 3 };

int run_cli(int argc, char** argv);

}  // namespace mmdflow
