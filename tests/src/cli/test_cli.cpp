// End-to-end tests of the mmdflow binary: exit codes, files written, reproducibility.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "src/base/io.h"
#include "tests/cli.h"

namespace fs = std::filesystem;

namespace mmdflow {
namespace {

using test::lines_without_seconds;
using test::Result;
using test::run;
using test::scratch;

TEST(Cli, HelpOnEveryCommand) {
  for (const char* cmd : {"train", "compare", "sweep", "bench"}) {
    Result r = run(std::string(cmd) + " --help");
    EXPECT_EQ(r.code, 0) << cmd;
    EXPECT_NE(r.output.find("Usage:"), std::string::npos) << r.output;
  }
  EXPECT_EQ(run("--help").code, 0);
  EXPECT_EQ(run("").code, 2);
}

TEST(Cli, BadInputExitsTwoWithOneLineAndWritesNothing) {
  const std::string bad_yaml = scratch("bad") + ".yaml";
  std::ofstream(bad_yaml) << "seed: 1\ntrain:\n  epochs: 10\n  batchsize: 5\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--set flow.foo=1", "flow.foo: unknown key"},
      {"--config " + bad_yaml, "train.batchsize: unknown key"},
      {"--set train.epochs=ten", "train.epochs: must be an integer"},
      {"--set student.particles=0", "student.particles: must be in [1, 1e+12], got '0'"},
      {"--set data.train_size=-3", "data.train_size"},
      {"--set flow.step_size=.nan", "flow.step_size: must be finite"},
      {"--set flow.step_size=-0.5", "flow.step_size: must be positive"},
      {"--config /nonexistent.yaml", "config /nonexistent.yaml: not a regular file"},
      {"--device cuda:99", "device"},  // no such GPU, in CPU-only and CUDA builds alike
      {"--bogus", "bogus"},
  };
  for (const auto& [args, expect] : cases) {
    const std::string out = scratch("bad_out");
    Result r = run("train --out " + out + " " + args);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(expect), std::string::npos) << args << "\n" << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    EXPECT_FALSE(fs::exists(out)) << args;
  }
  Result r = run("train --out " + scratch("bad_out") + " --config " + bad_yaml);
  EXPECT_NE(r.output.find("line 4"), std::string::npos) << r.output;
  EXPECT_EQ(run("frobnicate").code, 2);
  EXPECT_EQ(run("compare --run /nonexistent").code, 2);
}

TEST(Cli, NonFiniteRunStopsWithExitThree) {
  const std::string out = scratch("nonfinite");
  Result r = run("train --threads 1 --out " + out +
                 " --set flow.step_size=1e30 --set model.output=power --set train.epochs=50");
  EXPECT_EQ(r.code, 3) << r.output;
  EXPECT_NE(r.output.find("non-finite at epoch 1"), std::string::npos) << r.output;
  const std::string csv = read_file(out + "/losses.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 2) << csv;  // header + epoch 1, whole lines
  EXPECT_FALSE(fs::exists(out + "/student.pt"));
  EXPECT_EQ(nlohmann::json::parse(read_file(out + "/summary.json"))["status"], "non_finite");
}

// float32, where a regulariser of 1e-300 is 0, makes the flows' linear systems exactly singular:
// an all-zero student gives Sobolev descent S = 0, an all-zero teacher gives DrMMD K_XX = 0.
TEST(Cli, SingularSystemStopsWithExitThree) {
  for (const std::string set :
       {" --set flow.method=sobolev --set noise.beta0=0 --set flow.sobolev_eps=1e-300"
        " --set student.init_mean=0 --set student.init_std=0",
        " --set flow.method=drmmd --set flow.drmmd_lambda=1e-300"
        " --set teacher.init_mean=0 --set teacher.init_std=0"}) {
    Result r = run("train --threads 1 --out " + scratch("singular") +
                   " --set dtype=float32 --set model.output=identity --set train.epochs=3" + set);
    EXPECT_EQ(r.code, 3) << set << "\n" << r.output;
    EXPECT_NE(r.output.find("non-finite at epoch 1"), std::string::npos) << r.output;
  }
}

TEST(Cli, SameSeedWritesIdenticalLosses) {
  const std::string a = scratch("seed_a"), b = scratch("seed_b"), c = scratch("seed_c");
  const std::string args = " --threads 1 --set seed=7 --set train.epochs=20";
  ASSERT_EQ(run("train --out " + a + args).code, 0);
  ASSERT_EQ(run("train --out " + b + args).code, 0);
  ASSERT_EQ(run("train --out " + c + " --threads 1 --set seed=8 --set train.epochs=20").code, 0);
  auto la = lines_without_seconds(read_file(a + "/losses.csv"));
  EXPECT_EQ(la.size(), 21u);
  EXPECT_EQ(la[0], "epoch,train_loss,valid_loss,beta,step_size,grad_sq,noisy_grad_sq");
  EXPECT_EQ(la, lines_without_seconds(read_file(b + "/losses.csv")));
  EXPECT_NE(la, lines_without_seconds(read_file(c + "/losses.csv")));
  EXPECT_EQ(read_file(a + "/student.pt"), read_file(b + "/student.pt"));
}

TEST(Cli, QuickStartLowersValidLossTenfoldAndCompares) {
  const std::string out = scratch("quick");
  Result r = run("train --out " + out);
  ASSERT_EQ(r.code, 0) << r.output;
  for (const char* f : {"losses.csv", "config.yaml", "summary.json", "student.pt", "teacher.pt"})
    EXPECT_TRUE(fs::exists(out + "/" + f)) << f;
  auto s = nlohmann::json::parse(read_file(out + "/summary.json"));
  const double first = s["initial_valid_loss"], last = s["final_valid_loss"];
  EXPECT_LT(last, first / 10) << s.dump(2);
  EXPECT_EQ(s["status"], "done");
  EXPECT_EQ(s["compare"]["nearest"][0]["student"].size(), 5u);
  // `compare` recomputes the same numbers from the saved particles.
  Result c = run("compare --run " + out);
  ASSERT_EQ(c.code, 0) << c.output;
  const double mmd = s["compare"]["half_mmd2"];
  const std::string shown = fmt::format("{:.6e}", mmd);
  EXPECT_NE(c.output.find(shown), std::string::npos) << c.output << " vs " << shown;
  auto saved = load_tensors(out + "/student.pt");
  ASSERT_EQ(saved.size(), 2u);
  EXPECT_EQ(saved[0].first, "A");
  EXPECT_EQ(saved[0].second.sizes(), at::IntArrayRef({200, 3, 10}));
  // The file is in torch.save's format: read as torch.load does (zip, data.pkl, storages).
  const std::string listing = out + "/student.txt";
  ASSERT_EQ(std::system((std::string(MMDFLOW_SOURCE_DIR) + "/tests/python/read_pt.py " + out +
                         "/student.pt > " + listing)
                            .c_str()),
            0);
  EXPECT_EQ(read_file(listing).substr(0, read_file(listing).find('\n')),
            fmt::format("A float32 [200, 3, 10] {}", saved[0].second[0][0][0].item<double>()));
  // A second run into the same folder is refused.
  EXPECT_EQ(run("train --out " + out).code, 2);
}

}  // namespace
}  // namespace mmdflow
