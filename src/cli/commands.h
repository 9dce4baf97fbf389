// The mmdflow command line: `mmdflow <train|compare|bench> [options]`.
#pragma once

namespace mmdflow {

int run_cli(int argc, char** argv);

}  // namespace mmdflow
