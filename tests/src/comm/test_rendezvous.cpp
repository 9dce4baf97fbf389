// Issue 19: the rendezvous of processes started as torchrun would start them ends, whatever goes
// wrong, with exit 2 and one line naming the cause on every process, within dist.timeout and a
// few seconds: a program that holds MASTER_PORT and never answers, another job on the port, a
// rank that never comes, a rank started twice. Ranks agree on the run folder, not on the text of
// --out; a Slurm batch script's own shell is no launch.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "src/base/errors.h"
#include "tests/cli.h"

namespace fs = std::filesystem;

namespace mmdflow {
namespace {

using test::free_port;
using test::scratch;
using test::spawn_ranks;
using test::wait_all;

const std::string kRun =
    "train --threads 1 --set data.train_size=40 --set data.valid_size=40 --set train.batch=20"
    " --set student.particles=200 --set compare.samples=200 --set dist.timeout=3";
constexpr int kTimeout = 3;
// Every process ends within dist.timeout plus this (start-up on a loaded machine included).
constexpr std::chrono::seconds kSlack{10};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string log_of(const std::string& log, int r) {
  const std::string path = log + "." + std::to_string(r);
  return fs::exists(path) ? read_file(path) : "";
}

// Rank r's output is one line, the error, holding `cause`.
void expect_one_line(const std::string& log, int r, const std::string& cause) {
  const std::string out = log_of(log, r);
  EXPECT_NE(out.find(fmt::format("mmdflow: rank {}: error: ", r)), std::string::npos) << out;
  EXPECT_NE(out.find(cause), std::string::npos) << "rank " << r << ": " << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
}

// A program that holds a port and never answers: it listens, and accepts nothing.
class SilentPort {
 public:
  SilentPort() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(fd_, 64), 0);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~SilentPort() { ::close(fd_); }
  int port() const { return port_; }

 private:
  int fd_, port_ = 0;
};

TEST(Rendezvous, SilentProgramOnThePortEndsEveryRank) {
  const SilentPort silent;
  const std::string dir = scratch("silent"), log = dir + ".log";
  const auto t0 = std::chrono::steady_clock::now();
  const auto codes = wait_all(spawn_ranks(kRun + " --out " + dir, 2, silent.port(), log),
                              std::chrono::seconds(kTimeout) + kSlack);
  EXPECT_EQ(codes, std::vector<int>(2, kBadInput)) << log_of(log, 0) << log_of(log, 1);
  EXPECT_LT(seconds_since(t0), kTimeout + kSlack.count());
  expect_one_line(log, 0,
                  fmt::format("MASTER_PORT {}: port in use by another program", silent.port()));
  expect_one_line(log, 1, "does not answer: port in use by another program");
  EXPECT_FALSE(fs::exists(dir));
}

TEST(Rendezvous, MissingRankIsNamedByEveryOther) {
  const std::string dir = scratch("missing"), log = dir + ".log";
  const int port = free_port();
  const auto t0 = std::chrono::steady_clock::now();
  auto pids = spawn_ranks(kRun + " --out " + dir, 3, port, log);
  kill(pids[2], SIGKILL);  // rank 2 never comes
  const auto codes = wait_all(pids, std::chrono::seconds(kTimeout) + kSlack);
  EXPECT_EQ(codes[0], kBadInput) << log_of(log, 0);
  EXPECT_EQ(codes[1], kBadInput) << log_of(log, 1);
  EXPECT_LT(seconds_since(t0), kTimeout + kSlack.count());
  for (int r : {0, 1})
    expect_one_line(log, r,
                    fmt::format("rank 2 of 3 did not come to the rendezvous at 127.0.0.1:{} within "
                                "dist.timeout = 3 s",
                                port));
  EXPECT_FALSE(fs::exists(dir));
}

TEST(Rendezvous, DuplicateRankIsNamedByEveryProcess) {
  const std::string dir = scratch("twice"), log = dir + ".log";
  const auto t0 = std::chrono::steady_clock::now();
  // The third process is a second rank 1; rank 2 never comes.
  const auto codes =
      wait_all(spawn_ranks(kRun + " --out " + dir, 3, free_port(), log, {}, {{2, "RANK=1"}}),
               std::chrono::seconds(kTimeout) + kSlack);
  EXPECT_EQ(codes, std::vector<int>(3, kBadInput))
      << log_of(log, 0) << log_of(log, 1) << log_of(log, 2);
  EXPECT_LT(seconds_since(t0), kTimeout + kSlack.count());
  expect_one_line(log, 0, "rank 1 was started twice");
  for (int i : {1, 2}) {  // the prefix names the rank each process took itself for
    const std::string out = log_of(log, i);
    EXPECT_NE(out.find("mmdflow: rank 1: error: rank 1 was started twice"), std::string::npos)
        << out;
  }
  EXPECT_FALSE(fs::exists(dir));
}

// A second job started on the port of a running one: its processes leave with exit 2, naming
// the port's job, and the running job goes on, its epochs still logged.
TEST(Rendezvous, SecondJobOnThePortLeavesTheFirstAlone) {
  const std::string a = scratch("job_a"), b = scratch("job_b");
  const int port = free_port();
  auto first = spawn_ranks(kRun +
                               " --set train.epochs=1000000 --set train.checkpoint_every=0"
                               " --out " +
                               a,
                           2, port, a + ".log");
  ASSERT_TRUE(test::wait_for_epochs(a, first[0], 1)) << log_of(a + ".log", 0);
  const auto t0 = std::chrono::steady_clock::now();
  const auto codes = wait_all(spawn_ranks(kRun + " --out " + b, 2, port, b + ".log"),
                              std::chrono::seconds(kTimeout) + kSlack);
  EXPECT_EQ(codes, std::vector<int>(2, kBadInput))
      << log_of(b + ".log", 0) << log_of(b + ".log", 1);
  EXPECT_LT(seconds_since(t0), kTimeout + kSlack.count());
  expect_one_line(
      b + ".log", 0,
      fmt::format("MASTER_PORT {}: in use by the rendezvous of another job (train --out "
                  "{}, 2 processes)",
                  port, a));
  expect_one_line(b + ".log", 1,
                  fmt::format("belongs to another job (train --out {}, 2 processes), not this one "
                              "(train --out {}, 2 processes)",
                              a, b));
  EXPECT_FALSE(fs::exists(b));
  const int64_t logged = test::epochs_logged(a);
  EXPECT_TRUE(test::wait_for_epochs(a, first[0], logged + 2));  // the first job goes on
  for (pid_t p : first) kill(p, SIGKILL);
  wait_all(first, std::chrono::seconds(30));
}

// One folder spelled three ways is one run.
TEST(Rendezvous, SpellingsOfOneFolderAreOneRun) {
  const std::string base = scratch("spellings"), log = base + ".log";
  fs::create_directories(base);
  const auto codes =
      wait_all(spawn_ranks(kRun + " --set train.epochs=2", 3, free_port(), log,
                           {{0, "--out X"}, {1, "--out ./X"}, {2, "--out " + base + "/X"}}, {},
                           {{0, base}, {1, base}, {2, base}}),
               std::chrono::seconds(120));
  EXPECT_EQ(codes, std::vector<int>(3, kOk)) << log_of(log, 0) << log_of(log, 1) << log_of(log, 2);
  for (int r = 0; r < 3; ++r)
    EXPECT_TRUE(fs::exists(fmt::format("{}/X/student-{:05}-of-00003.pt", base, r))) << r;
  EXPECT_EQ(test::epochs_logged(base + "/X"), 2);
}

// The same relative --out from two working folders is two folders: refused, nothing written in
// either (it used to split the run over both, with exit 0).
TEST(Rendezvous, RelativeOutFromAnotherFolderIsRefused) {
  const std::string base = scratch("cwds"), log = base + ".log";
  fs::create_directories(base + "/a");
  fs::create_directories(base + "/b");
  const auto t0 = std::chrono::steady_clock::now();
  const auto codes = wait_all(spawn_ranks(kRun + " --out X", 2, free_port(), log, {}, {},
                                          {{0, base + "/a"}, {1, base + "/b"}}),
                              std::chrono::seconds(kTimeout) + kSlack);
  EXPECT_EQ(codes, std::vector<int>(2, kBadInput)) << log_of(log, 0) << log_of(log, 1);
  EXPECT_LT(seconds_since(t0), kTimeout + kSlack.count());
  expect_one_line(log, 1, "belongs to another job (train --out ");
  expect_one_line(log, 0, "rank 1 of 2 did not come to the rendezvous");
  EXPECT_NE(log_of(log, 0).find("came as rank 1 and was turned away"), std::string::npos)
      << log_of(log, 0);
  EXPECT_FALSE(fs::exists(base + "/a/X"));
  EXPECT_FALSE(fs::exists(base + "/b/X"));
}

// A Slurm batch script's own shell (sbatch --ntasks=2) carries SLURM_PROCID=0 and SLURM_NTASKS=2
// but no srun step: a plain `train` there is one process (it exited 2, asking for MASTER_ADDR).
TEST(Rendezvous, SlurmBatchShellIsOneProcess) {
  const std::string dir = scratch("batch");
  const std::string cmd = fmt::format(
      "env -u RANK -u WORLD_SIZE -u SLURM_STEP_ID -u SLURM_STEPID SLURM_JOB_ID=7 SLURM_PROCID=0 "
      "SLURM_NTASKS=2 SLURM_LOCALID=0 SLURM_NNODES=1 {} {} --set train.epochs=2 --out {} > {}.log "
      "2>&1",
      MMDFLOW_BIN, kRun, dir, dir);
  const int status = std::system(cmd.c_str());
  EXPECT_EQ(WIFEXITED(status) ? WEXITSTATUS(status) : -1, kOk) << read_file(dir + ".log");
  EXPECT_EQ(nlohmann::json::parse(read_file(dir + "/summary.json"))["processes"], 1);
}

}  // namespace
}  // namespace mmdflow
