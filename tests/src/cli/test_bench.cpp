// The bench's BLAS report (the width of OpenBLAS's cores, the warning for a slow BLAS, contention
// named as such) and the busy-loop processes of bench --busy.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "src/cli/bench.h"
#include "src/cli/bench_load.h"

namespace mmdflow {
namespace {

TEST(Bench, OpenBlasCoreWidths) {
  EXPECT_EQ(openblas_core_bits("Prescott"), 128);
  EXPECT_EQ(openblas_core_bits("Haswell"), 256);
  EXPECT_EQ(openblas_core_bits("SKYLAKEX"), 512);
  EXPECT_EQ(openblas_core_bits("Cooperlake"), 512);
  EXPECT_EQ(openblas_core_bits("Armv8"), 0);
}

// The measured case of a Sapphire Rapids-class Xeon (2 cores, AVX-512): OpenBLAS picked Prescott
// and ran the 2048^3 product at 38-49 GFLOP/s of a 2 x 16 x 2 x 2.1 x 2 = 269 GFLOP/s peak.
TEST(Bench, OneWarningNamesAMisdetectedCoreAndTheVariable) {
  const BlasInfo prescott{"OpenBLAS 0.3.21", "", "Prescott", 128};
  const std::string w = blas_warning(prescott, 512, 43.0, 269.0, 1.0);
  EXPECT_EQ(w.rfind("warning: ", 0), 0u) << w;
  EXPECT_EQ(w.find('\n'), std::string::npos) << w;  // one line
  for (const char* part : {"43 GFLOP/s", "16% of the FMA peak", "core Prescott (128-bit kernels)",
                           "512-bit FMA", "OPENBLAS_CORETYPE=SkylakeX"})
    EXPECT_NE(w.find(part), std::string::npos) << part << " in " << w;
  // On an AVX2 CPU the fix names Haswell.
  EXPECT_NE(blas_warning(prescott, 256, 10.0, 100.0, 1.0).find("OPENBLAS_CORETYPE=Haswell"),
            std::string::npos);
}

TEST(Bench, NoWarningFromAQuarterOfThePeakOn) {
  const BlasInfo haswell{"OpenBLAS 0.3.21", "", "Haswell", 256};
  EXPECT_EQ(blas_warning(haswell, 512, 243.0, 516.0, 1.0), "");  // this machine's 256-bit core: 47%
  EXPECT_EQ(blas_warning(haswell, 512, 25.0, 100.0, 1.0), "");
  EXPECT_NE(blas_warning(haswell, 512, 24.0, 100.0, 1.0), "");
}

TEST(Bench, SlowBlasWithoutAKnownCauseSaysWhatToCheck) {
  // A core as wide as the CPU's, on a quiet machine: another core to try.
  const std::string w =
      blas_warning({"OpenBLAS 0.3.21", "", "SkylakeX", 512}, 512, 20.0, 500.0, 1.0);
  EXPECT_NE(w.find("OpenBLAS runs core SkylakeX; try another OPENBLAS_CORETYPE"), std::string::npos)
      << w;
  // No OpenBLAS: no variable to name.
  const std::string u = blas_warning(BlasInfo{}, 512, 20.0, 500.0, 1.0);
  EXPECT_NE(u.find("link an optimised BLAS"), std::string::npos) << u;
  EXPECT_EQ(u.find("OPENBLAS_CORETYPE"), std::string::npos) << u;
}

// The measured case of this machine under load (Zen 5, 2 cores, OpenBLAS's Haswell core): 46 of
// 427 GFLOP/s with 25% of its threads' time, 43% of the peak on that time. Contention is named,
// not the core.
TEST(Bench, OtherProcessesOnTheCoresAreNamedNotTheBlasCore) {
  const BlasInfo haswell{"OpenBLAS 0.3.21", "", "Haswell", 256};
  const std::string w = blas_warning(haswell, 512, 46.0, 427.0, 0.25);
  EXPECT_EQ(w.find('\n'), std::string::npos) << w;
  for (const char* part : {"46 GFLOP/s", "11% of the FMA peak", "25% of its threads' time",
                           "other processes share the cores", "43% of the peak"})
    EXPECT_NE(w.find(part), std::string::npos) << part << " in " << w;
  EXPECT_EQ(w.find("OPENBLAS_CORETYPE"), std::string::npos) << w;
  // Slow even on the time it had: the core is named, and the contention beside it.
  const std::string v = blas_warning(haswell, 512, 20.0, 500.0, 0.5);
  EXPECT_NE(v.find("(with 50% of its threads' time): OpenBLAS chose core Haswell"),
            std::string::npos)
      << v;
  EXPECT_NE(v.find("OPENBLAS_CORETYPE=SkylakeX"), std::string::npos) << v;
}

// State of a process from /proc (R, S, Z, ...), or 0 once it is gone.
char process_state(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t paren = text.rfind(')');
  return paren == std::string::npos || paren + 2 >= text.size() ? 0 : text[paren + 2];
}

bool ends_within(pid_t pid, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    const char st = process_state(pid);
    if (st == 0 || st == 'Z') return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// Busy loops run until their object ends, and end with the process that started them, whatever
// ends it (here SIGKILL, which no handler sees).
TEST(BusyLoops, RunUntilTheyEndOrTheirStarterDoes) {
  std::vector<pid_t> pids;
  {
    const BusyLoops busy(2);
    pids = busy.pids();
    ASSERT_EQ(pids.size(), 2u);
    for (pid_t p : pids) EXPECT_NE(process_state(p), 0) << p;
  }
  for (pid_t p : pids) EXPECT_EQ(kill(p, 0), -1) << p;  // killed and reaped
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t starter = fork();
  if (starter == 0) {
    const BusyLoops busy(2);
    (void)!write(fds[1], busy.pids().data(), 2 * sizeof(pid_t));
    pause();
    _exit(0);
  }
  pid_t orphans[2] = {0, 0};
  ASSERT_EQ(read(fds[0], orphans, sizeof orphans), ssize_t(sizeof orphans));
  close(fds[0]);
  close(fds[1]);
  for (pid_t p : orphans) EXPECT_NE(process_state(p), 0) << p;
  kill(starter, SIGKILL);
  waitpid(starter, nullptr, 0);
  for (pid_t p : orphans) EXPECT_TRUE(ends_within(p, std::chrono::seconds(10))) << p;
}

TEST(BusyLoops, ContentionCountsThemAsOtherProcesses) {
  const Usage start = usage_now();
  const BusyLoops busy(2);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const Contention c = contention_since(start, 1);
  EXPECT_GE(c.others, 2);   // the two loops, whatever else runs
  EXPECT_LT(c.share, 0.5);  // this thread slept
  EXPECT_GE(c.steal, 0.0);
  EXPECT_NE(describe(c, 2).find("runnable threads of other processes; this process's 2 threads "
                                "ran"),
            std::string::npos)
      << describe(c, 2);
}

}  // namespace
}  // namespace mmdflow
