// libFuzzer target: the YAML config loader (src/train/config.cpp). The input is a config file; its
// first line is also tried as a --set override. Any input must give a Config or a ConfigError, and
// an accepted config must read back from to_yaml unchanged.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "src/train/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mmdflow;
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const std::string yaml = to_yaml(parse_config(text, {}, "fuzz.yaml"));
    if (to_yaml(parse_config(yaml)) != yaml) {
      std::fprintf(stderr, "to_yaml does not read back unchanged:\n%s", yaml.c_str());
      std::abort();
    }
  } catch (const ConfigError&) {
  }
  try {
    parse_config("", {text.substr(0, text.find('\n'))});
  } catch (const ConfigError&) {
  }
  return 0;
}
