// Running the mmdflow binary from tests: scratch folders, runs to completion, child processes
// to signal or to starve of disk.
#pragma once
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <thread>
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

// How many times `what` occurs in text.
inline int64_t occurrences(const std::string& text, const std::string& what) {
  int64_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

inline std::vector<std::string> lines_without_seconds(const std::string& csv) {
  std::vector<std::string> out;
  std::stringstream ss(csv);
  for (std::string line; std::getline(ss, line);) out.push_back(line.substr(0, line.rfind(',')));
  return out;
}

// Run folder dir's losses.csv, each line without its last column (seconds).
inline std::string losses_without_seconds(const std::string& dir) {
  std::string out;
  for (const std::string& line : lines_without_seconds(read_file(dir + "/losses.csv")))
    out += line + "\n";
  return out;
}

// The tensor `name` of a weights file (a test failure when it has none).
inline at::Tensor tensor_of(const std::string& path, const std::string& name) {
  for (const auto& [n, t] : load_tensors(path))
    if (n == name) return t;
  ADD_FAILURE() << path << " holds no " << name;
  return {};
}

// Everything below dir by its path from dir: a regular file's content, "-> target" for a symbolic
// link, "/" for a folder; temporaries too.
inline std::map<std::string, std::string> snapshot(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    const std::string name = std::filesystem::relative(e.path(), dir).string();
    if (e.is_symlink())
      out[name] = "-> " + std::filesystem::read_symlink(e.path()).string();
    else if (e.is_directory())
      out[name] = "/";
    else
      out[name] = read_file(e.path().string());
  }
  return out;
}

// Epochs logged in dir/losses.csv (0 when there is none).
inline int64_t epochs_logged(const std::string& dir) {
  const std::string csv = dir + "/losses.csv";
  if (!std::filesystem::exists(csv)) return 0;
  const std::string text = read_file(csv);
  return std::max<int64_t>(0, std::count(text.begin(), text.end(), '\n') - 1);
}

// Waits until the run of pid in dir has logged `epochs` epochs; false when it ended first or
// after a minute.
inline bool wait_for_epochs(const std::string& dir, pid_t pid, int64_t epochs) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(1);
  while (std::chrono::steady_clock::now() < deadline) {
    if (epochs_logged(dir) >= epochs) return true;
    if (waitpid(pid, nullptr, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

// Starts the binary (or a copy of it) with args (split at spaces), stdout and stderr into log,
// SIGINT and SIGTERM at their default, after prepare() in the child (only async-signal-safe calls
// there: limits, signals, descriptors, another user).
template <typename Prepare>
pid_t spawn_with(const std::string& args, const std::string& log, Prepare prepare,
                 const std::string& binary = MMDFLOW_BIN) {
  std::vector<std::string> words{binary};
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
    prepare();
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

// spawn_with(); with fsize, no file it writes may grow past fsize bytes: SIGXFSZ is ignored, so
// such a write fails with EFBIG as on a full disk.
inline pid_t spawn(const std::string& args, const std::string& log, rlim_t fsize = RLIM_INFINITY) {
  return spawn_with(args, log, [fsize] {
    if (fsize != RLIM_INFINITY) {
      const rlimit rl{fsize, fsize};
      setrlimit(RLIMIT_FSIZE, &rl);
      signal(SIGXFSZ, SIG_IGN);
    }
  });
}

// A TCP port on 127.0.0.1 that was free a moment ago (the kernel's choice).
inline int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// Starts the ranks of a sharded run as torchrun would: each runs the binary with args (split at
// spaces) and more_args[rank] (if any), with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR=127.0.0.1
// and MASTER_PORT=port, and env[rank] ("NAME=value", which wins over those) added, in the folder
// cwd[rank] (if any); rank r's output goes to log.r. binary: mmdflow, or MMDFLOW_FAILPOINT_BIN for
// a test hook in env.
inline std::vector<pid_t> spawn_ranks(const std::string& args, int world, int port,
                                      const std::string& log,
                                      const std::map<int, std::string>& more_args = {},
                                      const std::map<int, std::string>& env = {},
                                      const std::map<int, std::string>& cwd = {},
                                      const std::string& binary = MMDFLOW_BIN) {
  std::vector<pid_t> pids;
  for (int r = 0; r < world; ++r) {
    std::vector<std::string> words{binary};
    std::stringstream ss(args + " " + (more_args.count(r) ? more_args.at(r) : ""));
    for (std::string w; ss >> w;) words.push_back(w);
    std::vector<std::string> vars;
    if (env.count(r)) vars.push_back(env.at(r));  // first: getenv and launch_from take the first
    for (char** e = environ; *e; ++e) {
      const std::string kv = *e;
      const std::string name = kv.substr(0, kv.find('='));
      if (name != "RANK" && name != "WORLD_SIZE" && name != "LOCAL_RANK" && name != "MASTER_ADDR" &&
          name != "MASTER_PORT")
        vars.push_back(kv);
    }
    for (const std::string& kv :
         {"RANK=" + std::to_string(r), "WORLD_SIZE=" + std::to_string(world),
          "LOCAL_RANK=" + std::to_string(r), std::string("MASTER_ADDR=127.0.0.1"),
          "MASTER_PORT=" + std::to_string(port)})
      vars.push_back(kv);
    const std::string dir = cwd.count(r) ? cwd.at(r) : "";
    std::vector<char*> argv, envp;
    for (std::string& w : words) argv.push_back(w.data());
    argv.push_back(nullptr);
    for (std::string& v : vars) envp.push_back(v.data());
    envp.push_back(nullptr);
    const std::string path = log + "." + std::to_string(r);
    const pid_t pid = fork();
    if (pid == 0) {  // only async-signal-safe calls until exec
      const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      signal(SIGINT, SIG_DFL);
      signal(SIGTERM, SIG_DFL);
      if (!dir.empty() && chdir(dir.c_str()) != 0) _exit(127);
      execve(argv[0], argv.data(), envp.data());
      _exit(127);
    }
    pids.push_back(pid);
  }
  return pids;
}

// The exit code, or 128 + the signal that ended the process.
inline int wait_code(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The exit codes of pids; any still running after `limit` is killed (and gives -1), so that no
// test waits for ever on a hung rank. A process ended by a signal gives 128 + the signal, as a
// shell says, or with signal_apart -signal, told apart from exit(128 + signal).
inline std::vector<int> wait_all(const std::vector<pid_t>& pids, std::chrono::seconds limit,
                                 bool signal_apart = false) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  constexpr int running = std::numeric_limits<int>::min();
  std::vector<int> codes(pids.size(), running);
  for (size_t done = 0; done < pids.size();) {
    for (size_t i = 0; i < pids.size(); ++i) {
      if (codes[i] != running) continue;
      int status = 0;
      if (waitpid(pids[i], &status, WNOHANG) == pids[i]) {
        codes[i] = WIFEXITED(status) ? WEXITSTATUS(status)
                   : signal_apart    ? -WTERMSIG(status)
                                     : 128 + WTERMSIG(status);
        ++done;
      }
    }
    if (done < pids.size() && std::chrono::steady_clock::now() > deadline) {
      for (size_t i = 0; i < pids.size(); ++i)
        if (codes[i] == running) {
          kill(pids[i], SIGKILL);
          waitpid(pids[i], nullptr, 0);
          codes[i] = -1;
          ++done;
        }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return codes;
}

// A run at world size `world` (1: a plain process), rank r's output in log.r; the exit codes of
// its ranks.
inline std::vector<int> train_at(const std::string& args, int world, const std::string& log) {
  if (world == 1) {
    const Result r = run(args);
    write_file_atomic(log + ".0", r.output);
    return {r.code};
  }
  return wait_all(spawn_ranks(args, world, free_port(), log), std::chrono::seconds(120));
}

}  // namespace mmdflow::test
