#include "src/cli/bench_load.h"

#include <dirent.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace mmdflow {

BusyLoops::BusyLoops(int64_t k) {
  const pid_t parent = getpid();
  for (int64_t i = 0; i < k; ++i) {
    const pid_t pid = fork();
    if (pid < 0) {
      const std::string why = std::strerror(errno);
      stop();
      throw std::runtime_error(fmt::format(
          "--busy: busy-loop process {} of {} could not be started ({})", i + 1, k, why));
    }
    if (pid == 0) {  // only async-signal-safe calls: the parent may hold other threads' locks
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(0);  // the parent ended before prctl
      for (volatile uint64_t n = 0;; n = n + 1) {
      }
    }
    pids_.push_back(pid);
  }
}

BusyLoops::~BusyLoops() { stop(); }

void BusyLoops::stop() {
  for (pid_t pid : pids_) kill(pid, SIGKILL);
  for (pid_t pid : pids_) waitpid(pid, nullptr, 0);
  pids_.clear();
}

namespace {

double clock_seconds(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// "procs_running K" of /proc/stat, and its "cpu" line's ticks: all of them and steal (the 8th).
struct ProcStat {
  uint64_t ticks = 0, steal = 0;
  int64_t running = 0;
};

ProcStat read_proc_stat() {
  ProcStat s;
  std::ifstream in("/proc/stat");
  for (std::string line; std::getline(in, line);) {
    std::istringstream ss(line);
    std::string key;
    ss >> key;
    if (key == "cpu") {
      uint64_t v = 0;
      for (int i = 0; i < 10 && ss >> v; ++i) {
        if (i < 8) s.ticks += v;  // guest time (9th, 10th) is already in user time
        if (i == 7) s.steal = v;
      }
    } else if (key == "procs_running") {
      ss >> s.running;
    }
  }
  return s;
}

// Threads of this process in state R (running or runnable).
int64_t own_runnable() {
  int64_t n = 0;
  DIR* dir = opendir("/proc/self/task");
  if (!dir) return 1;
  while (const dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(std::string("/proc/self/task/") + e->d_name + "/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t paren = text.rfind(')');  // the name may hold spaces and parentheses
    if (paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] == 'R') ++n;
  }
  closedir(dir);
  return n;
}

}  // namespace

double load_average() {
  std::ifstream in("/proc/loadavg");
  double l = 0;
  in >> l;
  return l;
}

Usage usage_now() {
  const ProcStat s = read_proc_stat();
  return {clock_seconds(CLOCK_PROCESS_CPUTIME_ID), clock_seconds(CLOCK_MONOTONIC), s.ticks,
          s.steal};
}

int64_t others_runnable() {
  const int64_t own = own_runnable();
  return std::max<int64_t>(0, read_proc_stat().running - own);
}

Contention contention_since(const Usage& start, int64_t threads) {
  const Usage now = usage_now();
  Contention c;
  const double wall = now.wall - start.wall;
  if (wall > 0) c.share = (now.cpu - start.cpu) / (wall * double(threads));
  if (now.ticks > start.ticks)
    c.steal = double(now.steal - start.steal) / double(now.ticks - start.ticks);
  c.others = others_runnable();
  c.load1 = load_average();
  return c;
}

std::string describe(const Contention& c, int64_t threads) {
  return fmt::format(
      "load {:.2f} (1 minute), {} runnable thread{} of other processes; this process's {} "
      "thread{} ran {:.0f}% of the time (steal {:.0f}%)",
      c.load1, c.others, c.others == 1 ? "" : "s", threads, threads == 1 ? "" : "s",
      100.0 * c.share, 100.0 * c.steal);
}

}  // namespace mmdflow
