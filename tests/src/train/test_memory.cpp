// The memory estimate: its shares by hand, the refusal naming the largest, runs that cannot fit
// refused before any work, and the estimate below the measured peak of real runs.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "src/train/memory.h"
#include "tests/cli.h"

namespace fs = std::filesystem;

namespace mmdflow {
namespace {

using test::run;
using test::scratch;

std::map<std::string, double> shares_of(const Config& c, Work w, int world = 1) {
  std::map<std::string, double> out;
  for (const auto& s : memory_shares(c, w, world)) out[s.key] = s.bytes;
  return out;
}

double total_of(const Config& c, Work w) {
  double t = 0;
  for (const auto& [key, bytes] : shares_of(c, w)) t += bytes;
  return t;
}

std::string refusal(const Config& c, double available, Work w = Work::Train) {
  try {
    check_memory(c, w, 1, available);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

// The defaults but 1000 particles on 2 threads: d = 10, H = 3, o = 1, float32, M = 1, B = 50,
// 500 + 500 samples, 10000 compared; 33 weights a particle; a sample 11 values.
TEST(Memory, SharesByHand) {
  Config c;
  c.student.particles = 1000;
  c.threads = 2;
  auto s = shares_of(c, Work::Train);
  EXPECT_EQ(s.size(), 5u);
  EXPECT_DOUBLE_EQ(s["student.particles"], 1000 * 33 * (2 * 4 + 8));
  EXPECT_DOUBLE_EQ(s["teacher.particles"], 33 * 4 * 2);
  EXPECT_DOUBLE_EQ(s["compare.samples"], 10000 * (11 * 8 + 4 * 4));
  EXPECT_DOUBLE_EQ(s["data.train_size"], 1000 * 11 * 8);
  // The batch, 128 H B scratch values on each of the 2 threads (8 blocks to share), the 8
  // blocks' [o, B] feature sums in float64.
  EXPECT_DOUBLE_EQ(s["train.batch"], 50 * (11 * 8 + 4 * 4) + 2 * 128 * 3 * 50 * 4 + 8 * 50 * 8);

  // float64; 3 of 4 ranks' blocks; Sobolev's [B, B] Grams (its block's, the block's while added,
  // the root's: 1 block, no tree level); 1 busy thread for 1 block.
  c.dtype = at::kDouble;
  EXPECT_DOUBLE_EQ(shares_of(c, Work::Train, 3)["student.particles"], 384 * 33 * (2 * 8 + 8));
  c.flow.method = Method::Sobolev;
  c.student.particles = 100;
  EXPECT_DOUBLE_EQ(shares_of(c, Work::Train)["train.batch"],
                   50 * (11 * 12 + 4 * 8) + 128 * 3 * 50 * 8 + 50 * 8 + 3 * 50 * 50 * 8);
  // Dense: W2 [N o, N H] three times, the [B, N H] activations four times.
  c = Config();
  c.student.layout = Layout::Dense;
  c.student.particles = 1000;
  s = shares_of(c, Work::Train);
  EXPECT_DOUBLE_EQ(s["student.particles"], 1000 * 33 * 16 + 3 * 1000 * 3000 * 4.0);
  EXPECT_DOUBLE_EQ(s["train.batch"], 50 * (11 * 8 + 4 * 4) + 4 * 50 * 3000 * 4);
  // compare holds no datasets and no step; fresh data keeps no training set.
  EXPECT_EQ(shares_of(c, Work::Compare).size(), 3u);
  c.data.fresh = true;
  EXPECT_DOUBLE_EQ(shares_of(c, Work::Train)["data.valid_size"], 500 * 11 * 8);
}

TEST(Memory, RefusalNamesTheLargestShare) {
  Config c;
  c.student.particles = 1000000000000;
  EXPECT_EQ(refusal(c, 23e9),
            "student.particles: 1000000000000 particles of 33 weights need 528 TB, 23 GB are "
            "available");
  c = Config();
  c.compare.samples = 1000000000;
  EXPECT_EQ(refusal(c, 1.5e12, Work::Compare), "");
  EXPECT_EQ(refusal(c, 50e9, Work::Compare),
            "compare.samples: 1000000000 samples need 104 GB, 50 GB are available");
  // Shares that fit one by one but not together: the largest is named, with the total.
  c = Config();
  c.student.particles = 10000000;  // 5.28 GB
  c.data.train_size = 50000000;    // 4.4 GB
  EXPECT_EQ(refusal(c, 8e9),
            "student.particles: 10000000 particles of 33 weights need 5.28 GB of the 9.71 GB the "
            "run needs, 8 GB are available");
  EXPECT_EQ(refusal(c, 10e9), "");
  c.device = c10::Device("cuda:0");  // another budget: not checked here
  EXPECT_EQ(refusal(c, 8e9), "");
}

TEST(Memory, FormatBytes) {
  EXPECT_EQ(format_bytes(0), "0 B");
  EXPECT_EQ(format_bytes(999), "999 B");
  EXPECT_EQ(format_bytes(1000), "1 kB");
  EXPECT_EQ(format_bytes(1.5e6), "1.5 MB");
  EXPECT_EQ(format_bytes(612e9), "612 GB");
  EXPECT_EQ(format_bytes(5.28e14), "528 TB");
}

// RLIMIT_AS counts against what is available, less what the process maps already.
TEST(Memory, AddressSpaceLimitBoundsTheAvailableMemory) {
  double mapped = 0;  // VmSize, bytes
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmSize:", 0) == 0) mapped = 1024 * std::stod(line.substr(7));
  ASSERT_GT(mapped, 0);
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_AS, &old), 0);
  rlimit rl = old;
  rl.rlim_cur = rlim_t(mapped) + (rlim_t(1) << 30);
  ASSERT_EQ(setrlimit(RLIMIT_AS, &rl), 0);
  const double limited = available_memory();
  ASSERT_EQ(setrlimit(RLIMIT_AS, &old), 0);
  EXPECT_LE(limited, double(1 << 30));
  EXPECT_GT(limited, 0.9 * double(1 << 30));
}

// Sizes no machine holds are refused at once by every command, before any file is written.
TEST(Memory, RunsThatCannotFitAreRefusedBeforeAnyWork) {
  const std::string done = scratch("done");
  ASSERT_EQ(run("train --threads 1 --out " + done + " --set train.epochs=2").code, 0);
  const std::string out = scratch("huge");
  struct Case {
    std::string args, expect;
  };
  const std::vector<Case> cases = {
      {"train --out " + out + " --set student.particles=1000000000000",
       "student.particles: 1000000000000 particles of 33 weights need 528 TB, "},
      {"train --out " + out + " --set compare.samples=1000000000000",
       "compare.samples: 1000000000000 samples need 104 TB, "},
      {"train --out " + out + " --set student.layout=dense --set student.particles=10000000",
       "student.particles: 10000000 particles of 33 weights need 3.6 PB, "},
      {"train --out " + out +
           " --set flow.method=sobolev --set noise.beta0=0 --set data.train_size=1000000000"
           " --set train.batch=1000000000",
       "train.batch: 1000000000 inputs per step need "},
      {"compare --run " + done + " --samples 1000000000000", "compare.samples: 1000000000000 "},
      {"bench --particles 1000,1000000000000", "student.particles: 1000000000000 particles "},
      {"bench --batch 16777216 --set model.hidden=1000000",
       "train.batch: 16777216 inputs per step"},
  };
  for (const Case& c : cases) {
    test::Result r = run(c.args);
    EXPECT_EQ(r.code, 2) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find("mmdflow: error: " + c.expect), std::string::npos) << c.args << "\n"
                                                                               << r.output;
    EXPECT_NE(r.output.find(" are available\n"), std::string::npos) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    EXPECT_FALSE(fs::exists(out)) << c.args;
  }
  // Under `ulimit -v` (3 GiB) a run of 4.2 GB is refused the same way.
  const std::string log = scratch("limited.log");
  const pid_t pid = test::spawn_with(
      "train --threads 1 --out " + out + " --set student.particles=8000000", log, [] {
        const rlimit rl{rlim_t(3) << 30, rlim_t(3) << 30};
        setrlimit(RLIMIT_AS, &rl);
      });
  EXPECT_EQ(test::wait_code(pid), 2) << read_file(log);
  EXPECT_EQ(
      read_file(log).rfind(
          "mmdflow: error: student.particles: 8000000 particles of 33 weights need 4.22 GB, ", 0),
      0u)
      << read_file(log);
  EXPECT_FALSE(fs::exists(out));
}

// Peak resident memory (bytes) of one run of the binary with these --set values.
double peak_of(const std::map<std::string, std::string>& sets) {
  const std::string out = scratch("peak"), log = out + ".log";
  std::string args = "train --threads 1 --out " + out;
  for (const auto& [key, value] : sets) args += " --set " + key + "=" + value;
  const pid_t pid = test::spawn(args, log);
  int status = 0;
  rusage ru{};
  wait4(pid, &status, 0, &ru);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << args << "\n" << read_file(log);
  fs::remove_all(out);
  return 1024.0 * double(ru.ru_maxrss);
}

// Runs in which one share dominates: the estimate stays below the peak they reach (the check
// never refuses a run that fits) and above a quarter of what they hold beyond a tiny run.
TEST(Memory, EstimateStaysBelowThePeakOfRealRuns) {
  const std::map<std::string, std::string> tiny = {
      {"train.epochs", "1"},     {"student.particles", "10"}, {"data.train_size", "10"},
      {"data.valid_size", "10"}, {"train.batch", "10"},       {"compare.samples", "10"}};
  const double base = peak_of(tiny);
  for (const std::map<std::string, std::string>& change :
       std::vector<std::map<std::string, std::string>>{
           {{"student.particles", "300000"}, {"dtype", "float64"}},
           {{"compare.samples", "3000000"}},
           {{"data.train_size", "200000"}, {"train.batch", "200000"}},
           {{"student.layout", "dense"}, {"student.particles", "2500"}}}) {
    std::map<std::string, std::string> sets = tiny;
    for (const auto& [key, value] : change) sets[key] = value;
    std::vector<std::string> kv;
    std::string what;
    for (const auto& [key, value] : sets) kv.push_back(key + "=" + value);
    for (const auto& [key, value] : change) what += key + "=" + value + " ";
    Config c = parse_config("", kv);
    c.threads = 1;
    const double estimate = total_of(c, Work::Train), peak = peak_of(sets);
    what += ": estimate " + format_bytes(estimate) + ", peak " + format_bytes(peak) +
            ", a tiny run's " + format_bytes(base);
    EXPECT_GT(estimate, 2e8) << what;
    EXPECT_LT(estimate, peak) << what;
    EXPECT_GT(estimate, (peak - base) / 4) << what;
  }
}

}  // namespace
}  // namespace mmdflow
