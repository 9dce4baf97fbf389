// mmdflow_failpoint: mmdflow with the test hook named by MMDFLOW_FAILPOINT armed
// (src/base/failpoint.h), for the tests that crash or signal a run at a chosen point. Built with
// the tests only.
#include <cstdio>
#include <cstdlib>

#include "src/base/failpoint.h"
#include "src/cli/commands.h"

int main(int argc, char** argv) {
  if (const char* at = std::getenv("MMDFLOW_FAILPOINT"); at && !mmdflow::arm_failpoint(at)) {
    std::fprintf(stderr, "mmdflow_failpoint: MMDFLOW_FAILPOINT: no point named '%s'\n", at);
    return 2;
  }
  return mmdflow::run_cli(argc, argv);
}
