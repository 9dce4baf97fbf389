#include "src/cli/commands.h"

int main(int argc, char** argv) { return mmdflow::run_cli(argc, argv); }
