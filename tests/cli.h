// Running the mmdflow binary from tests: scratch folders, runs to completion, child processes
// to signal or to starve of disk.
#pragma once
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "src/base/io.h"

namespace mmdflow::test {

struct Result {
  int code;
  std::string output;
};

// A fresh path under the test temp folder, unique to this process.
inline std::string scratch(const std::string& name) {
  const std::filesystem::path dir = std::filesystem::path(testing::TempDir()) /
                                    ("mmdflow_cli_" + std::to_string(getpid()) + "_" + name);
  std::filesystem::remove_all(dir);
  return dir.string();
}

inline Result run(const std::string& args) {
  const std::string log = scratch("log") + ".txt";
  const std::string cmd = std::string(MMDFLOW_BIN) + " " + args + " > " + log + " 2>&1";
  const int status = std::system(cmd.c_str());
  Result r{WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(log)};
  std::filesystem::remove(log);
  return r;
}

inline std::vector<std::string> lines_without_seconds(const std::string& csv) {
  std::vector<std::string> out;
  std::stringstream ss(csv);
  for (std::string line; std::getline(ss, line);) out.push_back(line.substr(0, line.rfind(',')));
  return out;
}

// Starts the binary with args (split at spaces), stdout and stderr into log, SIGINT and SIGTERM
// at their default. With fsize, no file it writes may grow past fsize bytes: SIGXFSZ is ignored,
// so such a write fails with EFBIG as on a full disk.
inline pid_t spawn(const std::string& args, const std::string& log, rlim_t fsize = RLIM_INFINITY) {
  std::vector<std::string> words{MMDFLOW_BIN};
  std::stringstream ss(args);
  for (std::string w; ss >> w;) words.push_back(w);
  std::vector<char*> argv;
  for (std::string& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {  // only async-signal-safe calls until exec
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (fsize != RLIM_INFINITY) {
      const rlimit rl{fsize, fsize};
      setrlimit(RLIMIT_FSIZE, &rl);
      signal(SIGXFSZ, SIG_IGN);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

// The exit code, or 128 + the signal that ended the process.
inline int wait_code(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace mmdflow::test
