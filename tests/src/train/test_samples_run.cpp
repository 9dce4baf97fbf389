// problem samples through the binary: every flow gives the same bits at 1, 2 and 3 processes over
// many steps, a resumed run continues exactly, zero epochs write the initial points and the
// target, an independent float64 replay (tests/python/check_samples.py) agrees, bad input exits
// 2 naming what is wrong.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "data/sample_file.h"
#include "src/base/io.h"
#include "src/train/build.h"
#include "tests/cli.h"

namespace fs = std::filesystem;

namespace mmdflow {
namespace {

using test::run;
using test::scratch;
using test::train_at;

// 300 points: blocks of 128, 128 and 44, so no world size here divides them evenly.
const std::string kBase =
    "train --threads 1 --set problem=samples --set dtype=float64 --set student.particles=300"
    " --set target.law=gaussian --set data.dim=3 --set target.size=200 --set kernel.bandwidth=0.5"
    " --set compare.samples=100 --set dist.timeout=30";

// epoch, train_loss, valid_loss of each line: exact sums, added in row order at any world size
// (the gradient norms are sums over the processes, in their order).
std::string loss_columns(const std::string& dir) {
  std::string out;
  std::stringstream ss(read_file(dir + "/losses.csv"));
  for (std::string line; std::getline(ss, line);) {
    size_t end = 0;
    for (int k = 0; k < 3 && end != std::string::npos; ++k) end = line.find(',', end + 1);
    out += line.substr(0, end) + "\n";
  }
  return out;
}

// The chaotic flows (diffusion, Sobolev descent) over 40 steps, and noise injection, DrMMD and
// the sliced energy gradient: the points after 40 steps are the same bits at every process count.
TEST(SamplesRun, EveryFlowIsTheSameBitsAtOneTwoAndThreeProcesses) {
  const std::vector<std::string> flows = {
      "--set flow.method=mmd --set noise.beta0=0.5 --set noise.every=10 --set flow.step_size=2",
      "--set flow.method=diffusion --set noise.beta0=0.05 --set flow.step_size=2",
      "--set flow.method=sobolev --set noise.beta0=0 --set flow.step_size=0.5",
      "--set flow.method=drmmd --set flow.drmmd_lambda=0.01 --set noise.beta0=0.3 --set "
      "flow.step_size=0.5",
      "--set kernel.name=energy --set kernel.slices=16 --set noise.beta0=0.2 --set "
      "flow.step_size=0.5"};
  for (const std::string& flow : flows) {
    at::Tensor first;
    std::string first_losses;
    for (int world : {1, 2, 3}) {
      const std::string out = scratch("w" + std::to_string(world));
      const std::string args = kBase + " --set train.epochs=40 " + flow + " --out " + out;
      ASSERT_EQ(train_at(args, world, out + ".log"), std::vector<int>(world, 0))
          << flow << "\n"
          << read_file(out + ".log.0");
      const at::Tensor Z = test::tensor_of(out + "/particles.pt", "Z");
      if (world == 1) {
        first = Z;
        first_losses = loss_columns(out);
        continue;
      }
      EXPECT_TRUE(at::equal(Z, first))
          << flow << " at " << world << " processes: " << (Z - first).abs().max().item<double>();
      EXPECT_EQ(loss_columns(out), first_losses) << flow << " at " << world << " processes";
    }
  }
}

// Stopped after 20 steps and resumed to 45: the points, the snapshots and losses.csv are the
// uninterrupted run's.
TEST(SamplesRun, ResumedRunContinuesExactly) {
  const std::string sets =
      " --set noise.beta0=0.5 --set noise.every=15 --set flow.step_size=2 --set "
      "log.snapshot_every=15 --set train.checkpoint_every=10";
  const std::string whole = scratch("whole"), part = scratch("part");
  ASSERT_EQ(run(kBase + sets + " --set train.epochs=45 --out " + whole).code, 0);
  ASSERT_EQ(run(kBase + sets + " --set train.epochs=20 --out " + part).code, 0);
  const test::Result r = run(kBase + sets + " --set train.epochs=45 --resume " + part);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(at::equal(test::tensor_of(part + "/particles.pt", "Z"),
                        test::tensor_of(whole + "/particles.pt", "Z")));
  EXPECT_TRUE(at::equal(test::tensor_of(part + "/snapshots.pt", "step"),
                        at::tensor({0, 15, 30, 45}, at::kLong)));
  EXPECT_TRUE(at::equal(test::tensor_of(part + "/snapshots.pt", "Z"),
                        test::tensor_of(whole + "/snapshots.pt", "Z")));
  EXPECT_EQ(test::losses_without_seconds(part), test::losses_without_seconds(whole));
}

// A resumed run whose target file changed is refused (exit 2, naming target.pt and the file)
// and leaves the folder as it was; with the file restored, it resumes.
TEST(SamplesRun, ResumeTowardAChangedTargetFileIsRefused) {
  const std::string dir = scratch("target_file"), out = scratch("changed");
  fs::create_directories(dir);
  const std::string file = dir + "/u.csv";
  std::ofstream(file) << "0,1\n1,0\n2,2\n-1,0.5\n";
  const std::string args =
      "train --threads 1 --set problem=samples --set dtype=float64 --set "
      "student.particles=20 --set target.law=file --set target.file=" +
      file + " --set kernel.bandwidth=0.5 --set noise.beta0=0";
  ASSERT_EQ(run(args + " --set train.epochs=5 --out " + out).code, 0);
  const auto before = test::snapshot(out);
  std::ofstream(file) << "0,1\n1,0\n2,2\n-1,0.75\n";
  const test::Result r = run(args + " --set train.epochs=10 --resume " + out);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("target.pt"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("u.csv"), std::string::npos) << r.output;
  EXPECT_EQ(test::snapshot(out), before);
  std::ofstream(file) << "0,1\n1,0\n2,2\n-1,0.5\n";
  EXPECT_EQ(run(args + " --set train.epochs=10 --resume " + out).code, 0);
}

// train.epochs 0: particles.pt holds the initial points, target.pt the target, as drawn from
// the config's streams; summary.json's comparison is their 1/2 MMD^2.
TEST(SamplesRun, ZeroEpochsWriteTheInitialPointsAndTheTarget) {
  const std::string out = scratch("zero");
  const test::Result r = run(kBase + " --set train.epochs=0 --out " + out);
  ASSERT_EQ(r.code, 0) << r.output;
  const Config c = load_config(out + "/config.yaml");
  EXPECT_TRUE(at::equal(test::tensor_of(out + "/target.pt", "U"), target_samples(c)));
  EXPECT_TRUE(at::equal(test::tensor_of(out + "/particles.pt", "Z"), initial_points(c, 3)));
  EXPECT_NE(r.output.find("1/2 MMD^2(points, target samples)"), std::string::npos) << r.output;
}

// 100 steps of the plain flow in float64, replayed by an independent PyTorch implementation
// from the first snapshot and the target: within 1e-10, and 1/2 MMD^2 to 1e-12.
TEST(SamplesRun, IndependentReplayAgrees) {
  if (std::system("/usr/bin/python3 -c 'import torch' > /dev/null 2>&1") != 0)
    GTEST_SKIP() << "/usr/bin/python3 has no torch";
  const std::string out = scratch("replay");
  const test::Result r = run(kBase +
                             " --set train.epochs=100 --set noise.beta0=0 --set flow.step_size=3"
                             " --set log.snapshot_every=50 --out " +
                             out);
  ASSERT_EQ(r.code, 0) << r.output;
  const std::string cmd = "/usr/bin/python3 " + std::string(MMDFLOW_SOURCE_DIR) +
                          "/tests/python/check_samples.py " + out + " 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
}

// A target file holding NaN, of the wrong rank, of another dimension than the initial points,
// with no rows: exit 2, a line naming the file, no run folder.
TEST(SamplesRun, BadTargetFilesExitTwoNamingTheFile) {
  const std::string dir = scratch("files");
  fs::create_directories(dir);
  auto csv = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir + "/" + name) << text;
    return dir + "/" + name;
  };
  const std::string good = csv("good.csv", "0,1\n1,0\n2,2\n");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {" --set target.law=file --set target.file=" + csv("nan.csv", "0,1\nnan,0\n"), "nan.csv"},
      {" --set target.law=file --set target.file=" + csv("empty.csv", ""), "empty.csv"},
      {" --set target.law=file --set target.file=" + dir + "/missing.npy", "missing.npy"},
      {" --set target.law=file --set target.file=" + good +
           " --set student.init_file=" + csv("three.csv", "0,1,2\n1,2,3\n"),
       "three.csv"},
      {" --set target.law=three_rings --set target.file=" + good, "target.file"},
      {" --set student.particles=100000000000", "student.particles"}};
  for (const auto& [sets, named] : cases) {
    const std::string out = scratch("bad");
    const test::Result r = run(kBase + sets + " --set train.epochs=3 --out " + out);
    EXPECT_EQ(r.code, 2) << sets << "\n" << r.output;
    EXPECT_NE(r.output.find(named), std::string::npos) << sets << "\n" << r.output;
    EXPECT_FALSE(fs::exists(out)) << sets;
  }
}

}  // namespace
}  // namespace mmdflow
