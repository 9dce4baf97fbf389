// What long runs meet, end to end: SIGKILL at any moment then --resume, SIGTERM / SIGINT, a full
// disk, corrupt or mismatched checkpoints, divergence.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "src/base/io.h"
#include "src/train/checkpoint.h"
#include "src/train/config.h"
#include "tests/cli.h"

namespace fs = std::filesystem;

namespace mmdflow {
namespace {

using test::lines_without_seconds;
using test::run;
using test::scratch;
using test::spawn;
using test::wait_code;

// 60 epochs of 100 steps, a checkpoint every 7: about a second on one thread.
const std::string kArgs =
    " --threads 1 --set train.epochs=60 --set train.batch=5 --set train.checkpoint_every=7"
    " --set student.particles=100 --set compare.samples=200";

std::string csv_of(const std::string& dir) { return read_file(dir + "/losses.csv"); }

// Temporary files left below dir.
int64_t temporaries(const std::string& dir) {
  int64_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    n += e.path().filename().string().find(".tmp.") != std::string::npos;
  return n;
}

// The one shard of a one-process run's checkpoint.
std::string shard_of_run(const std::string& dir) {
  for (const auto& e : fs::directory_iterator(dir + "/checkpoint.shards"))
    return "checkpoint.shards/" + e.path().filename().string();
  return "";
}

// The state of the checkpoint in a run folder of one process.
TrainerState checkpoint_of(const std::string& dir, const Config& cfg) {
  return load_checkpoint(dir, cfg, {0, cfg.student.particles, cfg.student.particles})->state;
}

int64_t epochs_in(const std::string& csv) {
  return std::max<int64_t>(0, std::count(csv.begin(), csv.end(), '\n') - 1);
}

bool whole_lines(const std::string& csv) {
  if (csv.empty() || csv.back() != '\n') return false;
  std::stringstream ss(csv);
  for (std::string line; std::getline(ss, line);)
    if (std::count(line.begin(), line.end(), ',') != 7) return false;
  return true;
}

// Waits until the run in dir has logged `epochs` epochs (0: until its config.yaml exists); false
// when the child ended first or after a minute.
bool wait_for(const std::string& dir, pid_t pid, int64_t epochs) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(1);
  while (std::chrono::steady_clock::now() < deadline) {
    if (epochs == 0 ? fs::exists(dir + "/config.yaml")
                    : fs::exists(dir + "/losses.csv") && epochs_in(csv_of(dir)) >= epochs)
      return true;
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

// Every file below dir by its path from dir, with its content.
std::map<std::string, std::string> files_of(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file())
      out[fs::relative(e.path(), dir).string()] = read_file(e.path().string());
  return out;
}

std::string reference(const std::string& extra = "") {
  const std::string ref = scratch("ref");
  test::Result r = run("train --out " + ref + kArgs + extra);
  EXPECT_EQ(r.code, 0) << r.output;
  return ref;
}

TEST(Resume, KilledAtAnyMomentResumesToTheSameLosses) {
  const std::string ref = reference();
  const auto expect = lines_without_seconds(csv_of(ref));
  ASSERT_EQ(expect.size(), 61u);
  // SIGKILL once the run has: just made its folder, logged 1 epoch (no checkpoint yet), 10 (past
  // the checkpoint of epoch 7, lines 8..10 to drop), 31; the last run is killed again after its
  // resume, and a half-written temporary checkpoint is left behind as by a kill during a save.
  for (int64_t at : {0, 1, 10, 31}) {
    const std::string out = scratch("kill" + std::to_string(at)), log = out + ".log";
    pid_t pid = spawn("train --out " + out + kArgs, log);
    ASSERT_TRUE(wait_for(out, pid, at)) << read_file(log);
    kill(pid, SIGKILL);
    ASSERT_EQ(wait_code(pid), 128 + SIGKILL) << at;
    if (at > 0) {
      EXPECT_TRUE(whole_lines(csv_of(out))) << csv_of(out);
    }
    if (at == 31) {  // temporaries of a save killed half-way, the manifest's and a shard's
      std::ofstream(out + "/checkpoint.bin.tmp.99999.0") << "MMDFCKPT\x01";
      std::ofstream(out + "/checkpoint.shards/g000099-00000-of-00001.bin.tmp.99999.1") << "MM";
      pid = spawn("train --resume " + out, log);
      ASSERT_TRUE(wait_for(out, pid, 45)) << read_file(log);
      kill(pid, SIGKILL);
      ASSERT_EQ(wait_code(pid), 128 + SIGKILL);
    }
    test::Result r = run("train --resume " + out);
    ASSERT_EQ(r.code, 0) << "killed at " << at << "\n" << r.output;
    EXPECT_EQ(lines_without_seconds(csv_of(out)), expect) << "killed at " << at;
    EXPECT_EQ(read_file(out + "/student.pt"), read_file(ref + "/student.pt"));
    EXPECT_EQ(temporaries(out), 0) << "killed at " << at;
  }
}

TEST(Resume, SigtermAndSigintStopWithACheckpoint) {
  const std::string ref = reference();
  for (auto [sig, code, name] :
       {std::tuple{SIGTERM, 143, "SIGTERM"}, std::tuple{SIGINT, 130, "SIGINT"}}) {
    const std::string out = scratch(name), log = out + ".log";
    const pid_t pid = spawn("train --out " + out + kArgs, log);
    ASSERT_TRUE(wait_for(out, pid, 5)) << read_file(log);
    kill(pid, sig);
    EXPECT_EQ(wait_code(pid), code) << read_file(log);
    EXPECT_NE(read_file(log).find(std::string("stopped by ") + name), std::string::npos)
        << read_file(log);
    const std::string csv = csv_of(out);
    EXPECT_TRUE(whole_lines(csv)) << csv;
    EXPECT_FALSE(fs::exists(out + "/summary.json"));
    // The checkpoint holds every epoch logged, and the steps done since (a stop mid-epoch).
    const TrainerState s = checkpoint_of(out, load_config(out + "/config.yaml"));
    EXPECT_GE(s.epoch, 5);
    EXPECT_EQ(s.epoch, epochs_in(csv));
    test::Result r = run("train --resume " + out);
    ASSERT_EQ(r.code, 0) << r.output;
    EXPECT_EQ(lines_without_seconds(csv_of(out)), lines_without_seconds(csv_of(ref))) << name;
  }
}

TEST(Resume, FullDiskExitsFourAndKeepsEarlierFiles) {
  // A finished 20-epoch run, then extended to 60 with files limited to 12 KiB: the weight shard
  // of its next checkpoint (13 KB) cannot be written.
  const std::string out = scratch("full");
  ASSERT_EQ(run("train --out " + out + kArgs + " --set train.epochs=20").code, 0);
  const auto ckpt = files_of(out + "/checkpoint.shards");
  const std::string manifest = read_file(out + "/checkpoint.bin");
  const pid_t pid = spawn("train --resume " + out + " --set train.epochs=60", out + ".log", 12288);
  EXPECT_EQ(wait_code(pid), 4);
  const std::string log = read_file(out + ".log");
  EXPECT_NE(log.find("mmdflow: error: cannot write " + out +
                     "/checkpoint.shards/g000004-00000-of-"
                     "00001.bin: File too large"),
            std::string::npos)
      << log;
  EXPECT_EQ(read_file(out + "/checkpoint.bin"), manifest);
  EXPECT_EQ(files_of(out + "/checkpoint.shards"), ckpt);
  EXPECT_EQ(temporaries(out), 0);
  EXPECT_TRUE(whole_lines(csv_of(out)));
  // With room again, the run continues from the kept checkpoint as if nothing happened.
  ASSERT_EQ(run("train --resume " + out).code, 0);
  EXPECT_EQ(lines_without_seconds(csv_of(out)), lines_without_seconds(csv_of(reference())));

  // losses.csv hitting the limit mid-line is cut back to whole lines.
  const std::string small = scratch("small");
  const pid_t p2 = spawn("train --out " + small + kArgs + " --set train.checkpoint_every=0",
                         small + ".log", 1500);
  EXPECT_EQ(wait_code(p2), 4);
  EXPECT_NE(read_file(small + ".log").find("losses.csv: File too large"), std::string::npos);
  const std::string csv = csv_of(small);
  EXPECT_TRUE(whole_lines(csv)) << csv;
  EXPECT_GT(epochs_in(csv), 10);
  EXPECT_FALSE(fs::exists(small + "/checkpoint.bin"));

  // An output folder that cannot be made.
  const std::string file = scratch("file");
  std::ofstream(file) << "x";
  test::Result r = run("train --out " + file + "/run" + kArgs);
  EXPECT_EQ(r.code, 4) << r.output;
  EXPECT_NE(r.output.find("cannot create " + file + "/run"), std::string::npos) << r.output;
}

TEST(Resume, BadCheckpointExitsTwoAndOverwritesNothing) {
  const std::string out = scratch("bad");
  ASSERT_EQ(run("train --out " + out + kArgs +
                " --set train.epochs=10 --set "
                "train.checkpoint_every=5")
                .code,
            0);
  const auto done = files_of(out);
  const std::string good = done.at("checkpoint.bin"), shard = shard_of_run(out);
  std::string flipped = good, flipped_shard = done.at(shard);
  flipped[good.size() / 2] ^= 1;
  flipped_shard[flipped_shard.size() / 2] ^= 1;
  const std::string csv = done.at("losses.csv");
  const std::string short_csv = csv.substr(0, csv.find("\n4,") + 1);  // epochs 1..3
  struct Case {
    std::string file, content, args, expect;
  };
  const std::vector<Case> cases = {
      {"checkpoint.bin", good.substr(0, good.size() / 2), "", "truncated or extended"},
      {"checkpoint.bin", flipped, "", "corrupt: the checksum does not match"},
      {"checkpoint.bin", done.at("student.pt"), "", "not an mmdflow checkpoint"},
      {"checkpoint.bin", good, " --set student.particles=300",
       "written with student.particles: 100, the config says 300"},
      {"checkpoint.bin", good, " --set seed=3", "written with seed: 0, the config says 3"},
      {shard, flipped_shard, "", "corrupt: the checksum does not match the manifest's"},
      {shard, "", "", "0 bytes, the manifest says"},
      {"losses.csv", short_csv, "", "holds 3 epochs, the checkpoint is at epoch 10"},
      {"config.yaml", "train:\n  epochs: [\n", "", "config.yaml line"},
  };
  for (const Case& c : cases) {
    for (const auto& [name, content] : done) write_file_atomic(out + "/" + name, content);
    write_file_atomic(out + "/" + c.file, c.content);
    const auto before = files_of(out);
    test::Result r = run("train --resume " + out + c.args);
    EXPECT_EQ(r.code, 2) << c.expect << "\n" << r.output;
    EXPECT_NE(r.output.find("mmdflow: error: "), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    EXPECT_TRUE(files_of(out) == before) << c.expect;
  }
  EXPECT_EQ(run("train --resume " + scratch("nothing")).code, 2);

  // A removed manifest, the shards of a second checkpoint left: the run does not start again from
  // epoch 0 over its losses.csv (found before: it did, silently); with the summary of a finished
  // run, the same.
  for (const bool finished : {true, false}) {
    for (const auto& [name, content] : done) write_file_atomic(out + "/" + name, content);
    fs::remove(out + "/checkpoint.bin");
    if (!finished) fs::remove(out + "/summary.json");
    const auto before = files_of(out);
    test::Result r = run("train --resume " + out + " --set train.epochs=20");
    EXPECT_EQ(r.code, 2) << r.output;
    EXPECT_NE(r.output.find("checkpoint.bin: missing, but"), std::string::npos) << r.output;
    EXPECT_TRUE(files_of(out) == before);
  }
}

TEST(Resume, NonFiniteRunStopsWithExitThreeAndKeepsTheLastGoodCheckpoint) {
  // Full-batch steps of 4 with an identity output blow up at epoch 10; a checkpoint every epoch.
  const std::string out = scratch("diverge");
  const std::string args =
      " --threads 1 --set model.output=identity --set flow.step_size=4"
      " --set train.batch=500 --set train.epochs=50"
      " --set train.checkpoint_every=1";
  test::Result r = run("train --out " + out + args);
  EXPECT_EQ(r.code, 3) << r.output;
  EXPECT_NE(r.output.find("non-finite at epoch 10"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("checkpoint.bin kept (after epoch 9)"), std::string::npos) << r.output;
  const Config cfg = load_config(out + "/config.yaml");
  EXPECT_EQ(checkpoint_of(out, cfg).epoch, 9);
  EXPECT_EQ(epochs_in(csv_of(out)), 10);
  const std::string ckpt = read_file(out + "/checkpoint.bin");
  // Resuming replays the same divergence and keeps the same checkpoint.
  r = run("train --resume " + out);
  EXPECT_EQ(r.code, 3) << r.output;
  EXPECT_NE(r.output.find("non-finite at epoch 10"), std::string::npos) << r.output;
  EXPECT_EQ(read_file(out + "/checkpoint.bin"), ckpt);
}

}  // namespace
}  // namespace mmdflow
