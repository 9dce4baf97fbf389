// Signals and process limits a run meets: a file size limit with SIGXFSZ at its default, a
// closed pipe on stdout, a hang-up, a limit on processes that leaves no room for its threads.
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "src/base/device.h"
#include "tests/cli.h"

namespace fs = std::filesystem;

namespace mmdflow {
namespace {

using test::run;
using test::scratch;
using test::spawn_with;

// 60 epochs of 100 steps, a checkpoint every 7: about a second on one thread.
const std::string kSets =
    " --set train.epochs=60 --set train.batch=5 --set train.checkpoint_every=7"
    " --set student.particles=100 --set compare.samples=200";
const std::string kArgs = " --threads 1" + kSets;

std::string reference() {
  const std::string ref = scratch("ref");
  test::Result r = run("train --out " + ref + kArgs);
  EXPECT_EQ(r.code, 0) << r.output;
  return ref;
}

std::vector<std::string> losses(const std::string& dir) {
  return test::lines_without_seconds(read_file(dir + "/losses.csv"));
}

int64_t temporaries(const std::string& dir) {
  int64_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    n += e.path().filename().string().find(".tmp.") != std::string::npos;
  return n;
}

// `ulimit -f` as a shell sets it, SIGXFSZ left at its default (which ends a process): a file
// growing past it fails as on a full disk, exit 4, losses.csv cut back to whole lines.
TEST(Signals, FileSizeLimitExitsFourWithTheSignalAtItsDefault) {
  const std::string out = scratch("fsize"), log = out + ".log";
  const pid_t pid =
      spawn_with("train --out " + out + kArgs + " --set train.checkpoint_every=0", log, [] {
        const rlimit rl{1500, 1500};
        setrlimit(RLIMIT_FSIZE, &rl);
        signal(SIGXFSZ, SIG_DFL);
      });
  EXPECT_EQ(test::wait_code(pid), 4) << read_file(log);
  EXPECT_NE(read_file(log).find("losses.csv: File too large"), std::string::npos) << read_file(log);
  EXPECT_EQ(temporaries(out), 0);
  const std::string csv = read_file(out + "/losses.csv");
  EXPECT_EQ(csv.back(), '\n');
  EXPECT_GT(losses(out).size(), 10u);
}

// `mmdflow train | head`: the reader goes, the run stops as on SIGTERM (a checkpoint, exit 141
// = 128 + SIGPIPE, by exit(), not killed) and resumes to the same losses.
TEST(Signals, ClosedPipeStopsTheRunWithACheckpoint) {
  const std::string ref = reference();
  const std::string out = scratch("pipe"), log = out + ".log";
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t pid =
      spawn_with("train --out " + out + kArgs + " --set log.print_every=1", log, [fds] {
        dup2(fds[1], 1);  // stdout into the pipe, stderr into the log
        close(fds[0]);
        close(fds[1]);
        signal(SIGPIPE, SIG_DFL);
      });
  close(fds[1]);
  std::string head;  // as `head -3`
  char c;
  while (std::count(head.begin(), head.end(), '\n') < 3 && read(fds[0], &c, 1) == 1) head += c;
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status) << "\n"
                                 << read_file(log);
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGPIPE) << read_file(log);
  EXPECT_NE(read_file(log).find("stopped by SIGPIPE (output closed)"), std::string::npos)
      << read_file(log);
  EXPECT_NE(head.find("epoch  1/60"), std::string::npos) << head;
  EXPECT_LT(test::epochs_logged(out), 60);
  test::Result r = run("train --resume " + out);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(losses(out), losses(ref));
}

// A hang-up (the terminal closed) does not stop a run; its output, which can no longer be
// written (here stdout is /dev/full), is dropped and the run ends as if nothing happened.
TEST(Signals, HangUpIsIgnoredAndTheRunEnds) {
  const std::string ref = reference();
  const std::string out = scratch("hup"), log = out + ".log";
  const pid_t pid = spawn_with("train --out " + out + kArgs, log, [] {
    const int full = open("/dev/full", O_WRONLY);
    dup2(full, 1);
    signal(SIGHUP, SIG_DFL);
  });
  ASSERT_TRUE(test::wait_for_epochs(out, pid, 2)) << read_file(log);
  kill(pid, SIGHUP);
  EXPECT_EQ(test::wait_code(pid), 0) << read_file(log);
  EXPECT_EQ(read_file(log), "");
  EXPECT_EQ(nlohmann::json::parse(read_file(out + "/summary.json"))["status"], "done");
  EXPECT_EQ(losses(out), losses(ref));
}

// Tasks (processes and threads) of user uid now.
int64_t tasks_of(uid_t uid) {
  int64_t n = 0;
  for (const auto& p : fs::directory_iterator("/proc")) {
    struct stat st {};
    if (!std::isdigit(p.path().filename().string()[0]) || stat(p.path().c_str(), &st) != 0 ||
        st.st_uid != uid)
      continue;
    std::error_code ec;
    for (const auto& t : fs::directory_iterator(p.path() / "task", ec)) n += t.exists() ? 1 : 0;
  }
  return n;
}

// More threads than cores are not started (the count in use is in summary.json), and threads
// that cannot start, past a limit on processes, end the run at once with one line (exit 1)
// instead of a hang. The child runs as `nobody` when the tests run as root (whose limit the
// kernel does not enforce), with room for its own and its BLAS library's threads only.
TEST(Signals, ThreadsThatCannotStartEndTheRunAtOnce) {
  const std::string folder = scratch("nproc");
  fs::create_directories(folder);
  fs::permissions(folder, fs::perms::all);
  const std::string out = folder + "/run", log = folder + "/log";
  const bool root = geteuid() == 0;
  const uid_t uid = root ? 65534 : getuid();
  const int64_t cores = std::min<int64_t>(64, cores_available());
  const rlim_t limit = rlim_t(tasks_of(uid) + cores + 1);
  // The other user runs a copy in the open folder: the build's folders may be closed to it.
  const std::string binary = root ? folder + "/mmdflow" : std::string(MMDFLOW_BIN);
  if (root) fs::copy_file(MMDFLOW_BIN, binary);
  const pid_t pid = spawn_with(
      "train --threads 64 --out " + out + kSets, log,
      [=] {
        if (root && (setgroups(0, nullptr) != 0 || setgid(uid) != 0 || setuid(uid) != 0))
          _exit(126);
        const rlimit rl{limit, limit};
        setrlimit(RLIMIT_NPROC, &rl);
      },
      binary);
  const int code = test::wait_all({pid}, std::chrono::seconds(60))[0];
  const std::string text = read_file(log);
  ASSERT_NE(code, -1) << "still running after a minute\n" << text;
  if (code == 0) {  // room enough (one core, or the BLAS library took fewer threads)
    EXPECT_EQ(nlohmann::json::parse(read_file(out + "/summary.json"))["threads"], cores);
    return;
  }
  EXPECT_EQ(code, 1) << text;
  const std::string last = text.substr(text.rfind("mmdflow: "));
  EXPECT_EQ(last.rfind("mmdflow: error: threads: " + std::to_string(cores) + " threads of work", 0),
            0u)
      << text;
  EXPECT_NE(last.find("(ulimit -u)"), std::string::npos) << text;
  EXPECT_FALSE(fs::exists(out + "/config.yaml"));
}

}  // namespace
}  // namespace mmdflow
