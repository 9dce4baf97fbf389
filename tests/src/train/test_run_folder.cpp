// The run folder: its files, its lock, losses.csv read back by column, weights written and read
// at any number of processes.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "src/train/build.h"
#include "src/train/run_folder.h"
#include "tests/helpers.h"

namespace fs = std::filesystem;

namespace mmdflow {
namespace {

std::string fresh(const std::string& name) {
  const std::string dir =
      testing::TempDir() + "/mmdflow_runfolder_" + std::to_string(getpid()) + "_" + name;
  fs::remove_all(dir);
  return dir;
}

// The cells of a csv line.
std::vector<std::string> read_cells(const std::string& line) {
  std::vector<std::string> out(1);
  for (char ch : line) {
    if (ch == ',')
      out.emplace_back();
    else if (ch != '\n')
      out.back() += ch;
  }
  return out;
}

EpochLog log_of(int64_t epoch) {
  EpochLog l;
  l.epoch = epoch;
  l.train_loss = 0.5 / double(epoch);
  l.valid_loss = 0.25 / double(epoch);
  l.beta = 1;
  l.step_size = 2;
  l.grad_sq = 1e-3;
  l.noisy_grad_sq = 2e-3;
  l.seconds = 0.125 * double(epoch);
  return l;
}

TEST(RunFolder, LossesAreWrittenAndReadByColumn) {
  const std::string dir = fresh("losses");
  RunFolder f(dir, RunFolder::Mode::Fresh, true);
  f.open_losses(f.losses_upto(0));
  for (int64_t e = 1; e <= 3; ++e) f.append_losses(log_of(e));
  const Losses l = read_losses(dir + "/losses.csv");
  EXPECT_EQ(l.names, loss_columns());
  EXPECT_EQ(l.values("epoch"), (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(l.values("valid_loss")[1], 0.125);
  EXPECT_EQ(l.values("seconds")[2], 0.375);
  // Resumed at epoch 2, the file keeps the header and two lines.
  EXPECT_EQ(f.losses_upto(2), losses_header() + losses_line(log_of(1)) + losses_line(log_of(2)));
  EXPECT_THROW(f.losses_upto(4), CheckpointError);
  std::ofstream(dir + "/bad.csv") << "epoch,loss\n1,2\n";
  EXPECT_THROW(read_losses(dir + "/bad.csv"), CheckpointError);
  std::ofstream(dir + "/gap.csv") << losses_header() << losses_line(log_of(2));
  EXPECT_THROW(read_losses(dir + "/gap.csv"), CheckpointError);
  fs::remove_all(dir);
}

// theory.csv: an empty descent_ratio where 1/2 MMD^2 is zero, negative by round-off or at most
// the dtype's floor (float64 1e-15, float32 1e-8), or beta = 0; noisy_grad_sq_se empty for one
// draw of w; next_beta the beta of the step taken from the row's particles.
TEST(RunFolder, TheoryCellsAtRoundOffAreEmpty) {
  EXPECT_EQ(theory_header(),
            "epoch,half_mmd2,grad_sq,noisy_grad_sq,beta,step_size,beta_sq_sum,descent_ratio,"
            "noisy_grad_sq_se,next_beta\n");
  EXPECT_EQ(half_mmd2_floor_of(c10::kDouble), 1e-15);
  EXPECT_EQ(half_mmd2_floor_of(c10::kFloat), 1e-8);
  EpochLog l;
  l.epoch = 3;
  l.theory_grad_sq = 0.25;
  l.theory_noisy_grad_sq = 0.5;
  l.beta = 0.5;
  l.step_size = 1;
  l.beta_sq_sum = 0.75;
  l.next_beta = 0.25;
  l.half_mmd2_floor = half_mmd2_floor_of(c10::kDouble);
  l.half_mmd2 = 2.0;
  EXPECT_EQ(theory_line(l), "3,2,0.25,0.5,0.5,1,0.75,1,,0.25\n");
  l.theory_noisy_grad_se = 0.125;
  EXPECT_EQ(theory_line(l), "3,2,0.25,0.5,0.5,1,0.75,1,0.125,0.25\n");
  l.theory_noisy_grad_se.reset();
  for (double f : {0.0, -3e-17, 1e-15}) {
    l.half_mmd2 = f;
    EXPECT_EQ(theory_line(l), fmt::format("3,{:.17g},0.25,0.5,0.5,1,0.75,,,0.25\n", f)) << f;
  }
  const auto ratio_of = [&] { return read_cells(theory_line(l))[7]; };
  l.half_mmd2 = 2e-15;
  EXPECT_EQ(ratio_of(), fmt::format("{:.17g}", 0.5 / (0.25 * 2e-15)));
  // float32 floors near 1.1e-9: a value below 1e-8 is round-off there, not in float64.
  l.half_mmd2 = 5e-9;
  EXPECT_EQ(ratio_of(), fmt::format("{:.17g}", 0.5 / (0.25 * 5e-9)));
  l.half_mmd2_floor = half_mmd2_floor_of(c10::kFloat);
  EXPECT_EQ(ratio_of(), "");
  l.half_mmd2 = 2.0;
  l.beta = 0;
  EXPECT_EQ(theory_line(l), "3,2,0.25,0.5,0,1,0.75,,,0.25\n");
  // Read back: the empty cells as NaN.
  const std::string dir = fresh("theory");
  fs::create_directories(dir);
  l.epoch = 1;
  l.half_mmd2 = 0;
  l.beta = 0.5;
  std::ofstream(dir + "/theory.csv") << theory_header() << theory_line(l);
  const Losses t = read_theory(dir + "/theory.csv");
  EXPECT_TRUE(std::isnan(t.values("descent_ratio")[0]));
  EXPECT_TRUE(std::isnan(t.values("noisy_grad_sq_se")[0]));
  EXPECT_EQ(t.values("next_beta")[0], 0.25);
  fs::remove_all(dir);
}

// A forged log or summary too large to be one (sparse files: nothing is written) is refused by
// its size, before it is read, with a CheckpointError naming it.
TEST(RunFolder, OversizedLogsAndSummariesAreRefusedUnread) {
  const std::string dir = fresh("oversized");
  RunFolder f(dir, RunFolder::Mode::Fresh, true);
  f.open_losses(f.losses_upto(0));
  f.append_losses(log_of(1));
  const std::string losses = dir + "/losses.csv", summary = dir + "/summary.json";
  fs::resize_file(losses, kMaxLogBytes + 1);
  std::ofstream(summary) << "{}";
  fs::resize_file(summary, kMaxSummaryBytes + 1);
  try {
    read_losses(losses);
    ADD_FAILURE() << "read";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("losses.csv"), std::string::npos) << e.what();
  }
  EXPECT_THROW(f.losses_upto(1), CheckpointError);
  try {
    read_summary(summary);
    ADD_FAILURE() << "read";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("summary.json"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

// One writer at a time; a fresh run needs an absent or empty folder (temporaries of a run killed
// at its start count as empty, and go); a resume needs a config.yaml.
TEST(RunFolder, LockAndModes) {
  const std::string dir = fresh("lock");
  {
    RunFolder first(dir, RunFolder::Mode::Fresh, true);
    try {
      RunFolder second(dir, RunFolder::Mode::Fresh, true);
      FAIL();
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("in use by another mmdflow process"), std::string::npos)
          << e.what();
    }
    first.write_config(Config{});
  }
  EXPECT_THROW(RunFolder(dir, RunFolder::Mode::Fresh, true), UsageError);  // not empty
  RunFolder resumed(dir, RunFolder::Mode::Resume, true);                   // the lock was released
  const std::string killed = fresh("killed");
  fs::create_directories(killed);
  std::ofstream(killed + "/config.yaml.tmp.4242.0") << "seed: 0\n";
  std::ofstream(killed + "/train_data.pt.tmp.4242.1") << "a killed run's log.data";
  EXPECT_THROW(RunFolder(killed, RunFolder::Mode::Resume, true), UsageError);
  { RunFolder again(killed, RunFolder::Mode::Fresh, true); }
  EXPECT_FALSE(fs::exists(killed + "/config.yaml.tmp.4242.0"));
  EXPECT_FALSE(fs::exists(killed + "/train_data.pt.tmp.4242.1"));
  EXPECT_THROW(RunFolder(fresh("none"), RunFolder::Mode::Resume, true), UsageError);
  EXPECT_THROW(RunFolder("", RunFolder::Mode::Fresh, true), UsageError);
  fs::remove_all(dir);
  fs::remove_all(killed);
}

// Weights written by one process read back whole or by rows; teacher.pt is checked against the
// config.
TEST(RunFolder, WeightsReadBackWholeOrByRows) {
  const std::string dir = fresh("weights");
  RunFolder f(dir, RunFolder::Mode::Fresh, true);
  Config cfg;
  cfg.student.particles = 300;
  at::Generator g = test::gen(1);
  const ParticleNet net(ParticleNetOptions(300, family_of(cfg)), g);
  auto comm = single_process();
  f.save_student(net.named_tensors(), {0, 300, 300}, *comm);
  EXPECT_TRUE(fs::exists(dir + "/student.pt"));
  const NamedTensors rows = read_student(dir, cfg, {128, 256, 300});
  EXPECT_TRUE(at::equal(rows[0].second, net.particles().A.narrow(0, 128, 128)));
  cfg.student.particles = 301;
  EXPECT_THROW(read_student(dir, cfg, {0, 301, 301}), CheckpointError);
  f.save_teacher(net.named_tensors());
  try {
    read_teacher(dir, Config{});  // one teacher particle, not 300
    FAIL();
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'A' is [300, 3, 10], the config needs [1, 3, 10]"),
              std::string::npos)
        << e.what();
  }
  fs::remove_all(dir);
}

// Only mmdflow's own names are taken for its temporaries and weights files. Found before (N12):
// --out and --resume deleted a user's x.tmp.csv, --out took a folder holding only plots.tmp.png
// for empty, and a run's end deleted student-epoch300.pt.
TEST(RunFolder, OnlyItsOwnNamesAreRemoved) {
  const std::string dir = fresh("own_names");
  fs::create_directories(dir);
  std::ofstream(dir + "/plots.tmp.png") << "a user's";
  EXPECT_THROW(RunFolder(dir, RunFolder::Mode::Fresh, true), UsageError);
  EXPECT_TRUE(fs::exists(dir + "/plots.tmp.png"));
  fs::remove(dir + "/plots.tmp.png");
  std::ofstream(dir + "/config.yaml.tmp.12.0") << "a killed run's";
  {
    RunFolder f(dir, RunFolder::Mode::Fresh, true);
    EXPECT_FALSE(fs::exists(dir + "/config.yaml.tmp.12.0"));
    f.write_config(Config{});
    for (const char* name : {"x.tmp.csv", "student-epoch300.pt", "student-00000-of-00002.pt"})
      std::ofstream(dir + "/" + name) << name;
  }
  RunFolder f(dir, RunFolder::Mode::Resume, true);
  EXPECT_TRUE(fs::exists(dir + "/x.tmp.csv"));
  Config cfg;
  at::Generator g = test::gen(1);
  const ParticleNet net(ParticleNetOptions(cfg.student.particles, family_of(cfg)), g);
  auto comm = single_process();
  f.save_student(net.named_tensors(), {0, cfg.student.particles, cfg.student.particles}, *comm);
  EXPECT_TRUE(fs::exists(dir + "/student-epoch300.pt"));
  EXPECT_FALSE(fs::exists(dir + "/student-00000-of-00002.pt"));  // another world size's
  fs::remove_all(dir);
}

// A weights file or index that is not a regular file is named for what it is. Found before
// (N16): a linked or FIFO student.index.json was reported as a missing student.pt, and links
// and FIFOs were called missing.
TEST(RunFolder, WeightFilesThatAreNotFilesAreNamedAsSuch) {
  const std::string dir = fresh("not_files");
  fs::create_directories(dir);
  const Config cfg;
  const Shard all{0, cfg.student.particles, cfg.student.particles};
  auto error = [&] {
    try {
      read_student(dir, cfg, all);
    } catch (const CheckpointError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(error(), dir + "/student.pt: missing");
  ASSERT_EQ(::mkfifo((dir + "/student.pt").c_str(), 0644), 0);
  EXPECT_EQ(error(), dir + "/student.pt: a FIFO, not a regular file");
  fs::remove(dir + "/student.pt");
  fs::create_symlink(dir + "/elsewhere.json", dir + "/student.index.json");
  EXPECT_EQ(error(), dir + "/student.index.json: a symbolic link, not a regular file");
  fs::remove(dir + "/student.index.json");
  ASSERT_EQ(::mkfifo((dir + "/student.index.json").c_str(), 0644), 0);
  EXPECT_EQ(error(), dir + "/student.index.json: a FIFO, not a regular file");
  fs::remove_all(dir);
}

}  // namespace
}  // namespace mmdflow
