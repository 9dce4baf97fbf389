#include "src/base/device.h"
#include "src/cli/commands.h"

namespace {

// Before any library's initialiser (src/base/device.h).
void preinit(int argc, char** argv, char** envp) {
  mmdflow::reexec_to_wait_passively(argc, argv, envp);
}
__attribute__((section(".preinit_array"), used)) void (*const g_preinit)(int, char**,
                                                                         char**) = preinit;

}  // namespace

int main(int argc, char** argv) {
  mmdflow::settle_wait_policy();
  return mmdflow::run_cli(argc, argv);
}
