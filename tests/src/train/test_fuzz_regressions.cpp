// Inputs on which tools/fuzz.sh found a crash (each also kept in the seed corpus under
// tests/fuzz/corpus/), read as the fuzz targets read them: each must end in a ConfigError or a
// CheckpointError, i.e. one line and exit 2 from the command line.
#include <gtest/gtest.h>

#include "src/train/config.h"

namespace mmdflow {
namespace {

std::string config_error(const std::string& yaml) {
  try {
    parse_config(yaml, {}, "fuzz.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

// fuzz_config, crash-non_scalar_key.yaml: a key that is a sequence escaped as yaml-cpp's
// BadConversion (exit 1) instead of a ConfigError.
TEST(FuzzRegression, NonScalarKeyIsAConfigError) {
  EXPECT_EQ(config_error("seed: 1\n? [a, b]\n: 1\n"),
            "the configuration: has a key that is not a name (fuzz.yaml line 2)");
  EXPECT_EQ(config_error("train:\n  {epochs: 1}: 2\n"),
            "train: has a key that is not a name (fuzz.yaml line 2)");
}

}  // namespace
}  // namespace mmdflow
