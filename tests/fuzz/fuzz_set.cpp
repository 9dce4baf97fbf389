// libFuzzer target: --set overrides (parse_config's overrides in src/train/config.cpp). Each line
// of the input is one `--set KEY=VALUE`, applied over the defaults and over a config that sets some
// keys. Any input must give a Config or a ConfigError, and an accepted config must read back from
// to_yaml unchanged.
//
// Seeds (tests/fuzz/corpus/set): plain and flow-style values, sequences, anchors and aliases, the
// alias bomb of issue 20 (N6), keys that are not plain names.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "src/train/config.h"

namespace {

using namespace mmdflow;

const char* const kConfig = "flow: {method: mmd, step_size: 0.25}\nnoise: {beta0: 1}\n";

void parse(const std::string& base, const std::vector<std::string>& sets) {
  try {
    const std::string yaml = to_yaml(parse_config(base, sets, "fuzz.yaml"));
    if (to_yaml(parse_config(yaml)) != yaml) {
      std::fprintf(stderr, "to_yaml does not read back unchanged:\n%s", yaml.c_str());
      std::abort();
    }
  } catch (const ConfigError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> sets;
  std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
  for (std::string line; std::getline(in, line);) sets.push_back(line);
  parse("", sets);
  parse(kConfig, sets);
  return 0;
}
