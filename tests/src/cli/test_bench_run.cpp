// mmdflow bench end to end: the kernels' path (and MMDFLOW_ISA), the BLAS library, the FMA peak,
// one row per size, and the dense layout.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "src/base/errors.h"
#include "src/base/io.h"
#include "src/kernels/isa.h"
#include "tests/cli.h"

namespace mmdflow {
namespace {

TEST(Bench, ReportsPathBlasAndPeakThenOneRowPerSize) {
  const test::Result r = test::run("bench --particles 100,300 --repeats 2 --set train.batch=10");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex("\nkernels: (generic|avx2|avx512) \\(")))
      << r.output;
  EXPECT_NE(r.output.find("\nBLAS: "), std::string::npos) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex("\nFMA peak: [0-9]+ cores x [0-9]+ float32 "
                                                     "lanes.* = [0-9]+ GFLOP/s")))
      << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex("GFLOP/s \\(the machine's reference\\), "
                                                     "[0-9]+% of the FMA peak")))
      << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex("\n +100 +[0-9.]+ .*%.*%")) &&
              std::regex_search(r.output, std::regex("\n +300 +[0-9.]+ .*%.*%")))
      << r.output;
}

TEST(Bench, TimesTheDenseLayoutWhenTheConfigAsksForIt) {
  const test::Result r =
      test::run("bench --particles 40 --repeats 2 --set student.layout=dense --set train.batch=10");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("dense layout: GFLOP/s count"), std::string::npos) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex("\n +40 +[0-9.]+ ")));
}

// The pids in "busy: K busy-loop processes (pids A B) ...".
std::vector<pid_t> busy_pids(const std::string& output) {
  std::smatch m;
  std::vector<pid_t> pids;
  if (!std::regex_search(output, m,
                         std::regex("busy: [0-9]+ busy-loop process(es)? \\(pids?([ 0-9]+)\\)")))
    return pids;
  std::stringstream ss(m[2].str());
  for (pid_t p; ss >> p;) pids.push_back(p);
  return pids;
}

bool gone(pid_t pid) {  // no process, or a zombie not yet reaped by its new parent
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t paren = text.rfind(')');
  return paren == std::string::npos || text.compare(paren, 3, ") Z") == 0;
}

// bench --busy K: the step at the default threads and at one thread under K busy-loop processes,
// median and worst of each and their ratios, one row per size; the loops end with the bench.
TEST(Bench, BusyComparesDefaultThreadsWithOneThreadUnderBusyLoops) {
  const test::Result r =
      test::run("bench --particles 100,200 --repeats 3 --set train.batch=10 --busy 2");
  ASSERT_EQ(r.code, 0) << r.output;
  const std::vector<pid_t> pids = busy_pids(r.output);
  EXPECT_EQ(pids.size(), 2u) << r.output;
  for (pid_t p : pids) EXPECT_TRUE(gone(p)) << p;
  EXPECT_NE(r.output.find("median-1t    worst-1t  median-ratio  worst-ratio"), std::string::npos)
      << r.output;
  for (const char* n : {"100", "200"})
    EXPECT_TRUE(std::regex_search(
        r.output, std::regex(std::string("\n +") + n + "( +[0-9.]+){4} +[0-9.]+x +[0-9.]+x\n")))
        << n << " in " << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex("runnable threads? of other processes")))
      << r.output;
}

TEST(Bench, BusyLoopsEndWhenASignalEndsTheBench) {
  const std::string log = test::scratch("busy_signal") + ".txt";
  const pid_t pid =
      test::spawn("bench --particles 100 --repeats 1000000 --set train.batch=10 --busy 2", log);
  std::vector<pid_t> pids;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(1);
  int status = 0;
  while (pids.empty() && std::chrono::steady_clock::now() < deadline &&
         waitpid(pid, &status, WNOHANG) == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    pids = busy_pids(read_file(log));
  }
  if (pids.size() != 2u) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    FAIL() << read_file(log);
  }
  kill(pid, SIGTERM);
  EXPECT_EQ(test::wait_code(pid), 128 + SIGTERM);
  for (pid_t p : pids) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!gone(p) && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_TRUE(gone(p)) << p;
  }
}

TEST(Bench, BusyIsForTheNetworkStepInOneProcess) {
  const test::Result r = test::run(
      "bench --busy 1 --set flow.kernel=exact --set model.hidden=1 --set model.output=identity "
      "--set dtype=float64");
  EXPECT_EQ(r.code, kBadInput) << r.output;
  EXPECT_NE(r.output.find("--busy: times the network's step"), std::string::npos) << r.output;
}

// MMDFLOW_ISA in the environment of a run: the bench prints the path; bad values exit 2.
class IsaEnvironment : public testing::Test {
 protected:
  void TearDown() override { unsetenv("MMDFLOW_ISA"); }
  test::Result bench_with(const char* isa) {
    setenv("MMDFLOW_ISA", isa, 1);
    return test::run("bench --particles 200 --repeats 1 --set train.batch=10");
  }
};

TEST_F(IsaEnvironment, ForcesEachSupportedPath) {
  for (Isa isa : supported_isas()) {
    const test::Result r = bench_with(std::string(name_of(isa)).c_str());
    EXPECT_EQ(r.code, 0) << r.output;
    EXPECT_NE(r.output.find("kernels: " + std::string(name_of(isa)) + " (forced by MMDFLOW_ISA"),
              std::string::npos)
        << r.output;
  }
}

TEST_F(IsaEnvironment, UnknownOrUnsupportedValuesExitTwo) {
  test::Result r = bench_with("sse9");
  EXPECT_EQ(r.code, kBadInput) << r.output;
  EXPECT_NE(r.output.find("MMDFLOW_ISA=sse9"), std::string::npos) << r.output;
  for (Isa isa : {Isa::Avx2, Isa::Avx512}) {
    if (isa_supported(isa)) continue;
    r = bench_with(std::string(name_of(isa)).c_str());
    EXPECT_EQ(r.code, kBadInput) << r.output;
    EXPECT_NE(r.output.find("MMDFLOW_ISA=" + std::string(name_of(isa))), std::string::npos)
        << r.output;
  }
}

}  // namespace
}  // namespace mmdflow
