// Command-line values at and past their limits: each is refused before any work with one line
// naming the option or key, exit 2, and nothing written.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "tests/cli.h"

namespace fs = std::filesystem;

namespace mmdflow {
namespace {

using test::Result;
using test::run;
using test::scratch;

struct Case {
  std::string args, expect;
};

void expect_refused(const std::vector<Case>& cases, const std::string& out) {
  for (const Case& c : cases) {
    Result r = run(c.args);
    EXPECT_EQ(r.code, 2) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find("mmdflow: error: " + c.expect), std::string::npos) << c.args << "\n"
                                                                               << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << c.args << "\n" << r.output;
    EXPECT_FALSE(fs::exists(out)) << c.args;
  }
}

// Empty values, numbers past 64 bits or past a key's range.
TEST(Options, EmptyAndHugeValuesExitTwo) {
  const std::string out = scratch("refused");
  expect_refused(
      {
          {"train --out \"\"", "--out: an empty folder name"},
          {"train --resume \"\"", "--resume: an empty folder name"},
          {"train --out " + out + " --device cuda:99999999999999999999",
           "device: must be cpu, cuda or cuda:K"},
          {"train --out " + out + " --threads 2147483648", "threads: must be in [0, 4096]"},
          {"train --out " + out + " --threads -1", "threads: must be in [0, 4096]"},
          {"train --out " + out + " --set train.epochs=99999999999999999999", "train.epochs"},
          {"bench --particles 99999999999999999999",
           "--particles: '99999999999999999999' is not an integer in [1, 1e+12]"},
          {"bench --particles 100,,200", "--particles: '' is not an integer"},
          {"bench --repeats 9223372036854775805", "--repeats: must be an integer in [1, 1000000]"},
          {"bench --batch 0", "--batch: must be an integer in [1, 16777216]"},
          {"sweep --config \"\"", "--config: an empty file name"},
          {"sweep --config " + std::string(MMDFLOW_SOURCE_DIR) + "/configs/quickstart.yaml --out " +
               out + " --jobs 99999999999999999999",
           "--jobs: must be an integer"},
      },
      out);
}

// A folder, an empty name or a missing file as --config: train, sweep and bench read nothing else
// (the defaults are never taken instead).
TEST(Options, ConfigMustBeARegularFile) {
  const std::string out = scratch("config_out"), dir = scratch("config_dir");
  fs::create_directories(dir);
  std::vector<Case> cases;
  for (const std::string& cmd :
       {"train --out " + out, "sweep --out " + out, std::string("bench")}) {
    cases.push_back({cmd + " --config " + dir, "config " + dir + ": not a regular file"});
    cases.push_back({cmd + " --config \"\"", "--config: an empty file name"});
    cases.push_back({cmd + " --config " + dir + "/none.yaml",
                     "config " + dir + "/none.yaml: cannot read it: No such file"});
  }
  expect_refused(cases, out);
}

}  // namespace
}  // namespace mmdflow
