#include "src/base/failpoint.h"

#include <optional>
#include <utility>

namespace mmdflow {

namespace {

std::optional<Failpoint> armed;

}  // namespace

bool arm_failpoint(const std::string& name) {
  for (const auto& [n, p] :
       {std::pair{"checkpoint-before-manifest", Failpoint::CheckpointBeforeManifest},
        std::pair{"sigterm-at-checkpoint", Failpoint::SigtermAtCheckpoint},
        std::pair{"sigterm-at-final-files", Failpoint::SigtermAtFinalFiles}})
    if (name == n) {
      armed = p;
      return true;
    }
  return false;
}

bool failpoint_armed(Failpoint p) { return armed == p; }

}  // namespace mmdflow
