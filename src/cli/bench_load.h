// Load on the cores while the bench runs: busy-loop processes it starts (bench --busy), and what
// tells other processes on the cores from a slow BLAS: the CPU time this process got against wall
// time, the hypervisor's steal, and the runnable threads of other processes.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace mmdflow {

// K processes that spin on the cores until this object ends, or this process does (they get
// SIGKILL when the thread that started them ends, whatever ends it).
class BusyLoops {
 public:
  explicit BusyLoops(int64_t k);
  ~BusyLoops();  // kills and reaps them
  BusyLoops(const BusyLoops&) = delete;
  BusyLoops& operator=(const BusyLoops&) = delete;
  const std::vector<pid_t>& pids() const { return pids_; }

 private:
  void stop();
  std::vector<pid_t> pids_;
};

// This process's CPU seconds, wall seconds and the machine's CPU time in ticks (/proc/stat's
// "cpu" line: all, and steal) at one moment.
struct Usage {
  double cpu = 0, wall = 0;
  uint64_t ticks = 0, steal = 0;
};
Usage usage_now();

// How the cores were shared over a span.
struct Contention {
  double share = 1;  // this process's CPU time / (wall time x its threads)
  double steal =
      0;  // the hypervisor's steal, share of the machine's CPU time (0 where not reported)
  int64_t others = 0;  // runnable threads of other processes (at the span's end)
  double load1 = 0;    // the 1-minute load average
};
// Over the span since `start`, for a process that kept `threads` threads busy.
Contention contention_since(const Usage& start, int64_t threads);

// The 1-minute load average (/proc/loadavg).
double load_average();

// Runnable threads of other processes now: /proc/stat's procs_running less this process's.
int64_t others_runnable();

// "load 1.23 (1 minute), 2 runnable threads of other processes; this process's 2 threads ran 97%
// of the time (steal 0%)".
std::string describe(const Contention& c, int64_t threads);

}  // namespace mmdflow
