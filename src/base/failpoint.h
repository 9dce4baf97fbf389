// Test hooks at named points of a run (docs/reliability.md). Only the tests' own binary,
// mmdflow_failpoint (tests/failpoint_main.cpp), arms one; mmdflow arms none, so nothing in a
// user's environment can stop a run.
#pragma once
#include <string>

namespace mmdflow {

enum class Failpoint {
  CheckpointBeforeManifest,  // rank 0 kills itself (SIGKILL) between a checkpoint's two phases
  SigtermAtCheckpoint,       // the process sends itself SIGTERM as each checkpoint begins
  SigtermAtFinalFiles,       // ... as the final files begin
};

// Arms the point named `name` (checkpoint-before-manifest, sigterm-at-checkpoint,
// sigterm-at-final-files); false if no point has that name.
bool arm_failpoint(const std::string& name);
bool failpoint_armed(Failpoint p);

}  // namespace mmdflow
