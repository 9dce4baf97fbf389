// End-to-end tests of the mmdflow binary: exit codes, files written, reproducibility.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "src/base/io.h"
#include "src/train/run_folder.h"
#include "tests/cli.h"

namespace fs = std::filesystem;

namespace mmdflow {
namespace {

using test::lines_without_seconds;
using test::Result;
using test::run;
using test::scratch;

// --help on every command lists that command's own options, exits 0 and runs nothing.
TEST(Cli, HelpOnEveryCommand) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> commands = {
      {"train", {"--config", "--set", "--out", "--resume", "--device", "--threads"}},
      {"compare", {"--run", "--samples", "--nearest"}},
      {"sweep", {"--grid", "--seeds", "--jobs", "--plan", "--collect", "--extend"}},
      {"bench", {"--particles", "--batch", "--repeats"}}};
  for (const auto& [cmd, options] : commands) {
    const std::string cwd = scratch("help_" + cmd);
    fs::create_directories(cwd);
    const std::string log = cwd + ".log";
    const int status = std::system(
        ("cd " + cwd + " && " + MMDFLOW_BIN + " " + cmd + " --help > " + log + " 2>&1").c_str());
    const Result r{WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(log)};
    EXPECT_EQ(r.code, 0) << cmd;
    for (const std::string& opt : options)
      EXPECT_NE(r.output.find(opt), std::string::npos) << cmd << " lacks " << opt;
    EXPECT_TRUE(fs::is_empty(cwd)) << cmd << " wrote something";
  }
  Result top = run("--help");
  EXPECT_EQ(top.code, 0);
  for (const char* cmd : {"train", "compare", "sweep", "bench"})
    EXPECT_NE(top.output.find(cmd), std::string::npos);
  EXPECT_EQ(run("").code, 2);
}

// train.epochs: 0 writes the initial student, its losses and its comparison with the teacher.
TEST(Cli, ZeroEpochsWriteTheInitialStudent) {
  const std::string out = scratch("zero");
  Result r =
      run("train --out " + out + " --threads 1 --set train.epochs=0 --set compare.samples=500");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(fs::exists(out + "/student.pt"));
  EXPECT_FALSE(fs::exists(out + "/checkpoint.bin"));
  EXPECT_EQ(read_file(out + "/losses.csv"),
            "epoch,train_loss,valid_loss,beta,step_size,grad_sq,noisy_grad_sq,seconds\n");
  const auto s = nlohmann::json::parse(read_file(out + "/summary.json"));
  EXPECT_EQ(s["status"], "done");
  EXPECT_EQ(s["epochs"], 0);
  EXPECT_TRUE(s["final_train_loss"].is_null());
  EXPECT_EQ(s["final_valid_loss"], s["initial_valid_loss"]);
  EXPECT_GT(double(s["initial_train_loss"]), 0.0);
  EXPECT_GT(double(s["compare"]["half_mmd2"]), 0.0);
  EXPECT_EQ(run("compare --run " + out).code, 0);
}

TEST(Cli, BadInputExitsTwoWithOneLineAndWritesNothing) {
  const std::string bad_yaml = scratch("bad") + ".yaml";
  std::ofstream(bad_yaml) << "seed: 1\ntrain:\n  epochs: 10\n  batchsize: 5\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--set flow.foo=1", "flow.foo: unknown key"},
      {"--config " + bad_yaml, "train.batchsize: unknown key"},
      {"--set train.epochs=ten", "train.epochs: must be an integer"},
      {"--set student.particles=0", "student.particles: must be in [1, 1e+12], got '0'"},
      {"--set data.train_size=-3", "data.train_size"},
      {"--set flow.step_size=.nan", "flow.step_size: must be finite"},
      {"--set flow.step_size=-0.5", "flow.step_size: must be positive"},
      {"--config /nonexistent.yaml", "config /nonexistent.yaml: cannot read it: No such file"},
      {"--device cuda:99", "device"},  // no such GPU, in CPU-only and CUDA builds alike
      {"--bogus", "bogus"},
  };
  for (const auto& [args, expect] : cases) {
    const std::string out = scratch("bad_out");
    Result r = run("train --out " + out + " " + args);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(expect), std::string::npos) << args << "\n" << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    EXPECT_FALSE(fs::exists(out)) << args;
  }
  Result r = run("train --out " + scratch("bad_out") + " --config " + bad_yaml);
  EXPECT_NE(r.output.find("line 4"), std::string::npos) << r.output;
  EXPECT_EQ(run("frobnicate").code, 2);
  EXPECT_EQ(run("compare --run /nonexistent").code, 2);
}

TEST(Cli, NonFiniteRunStopsWithExitThree) {
  const std::string out = scratch("nonfinite");
  Result r = run("train --threads 1 --out " + out +
                 " --set flow.step_size=1e30 --set model.output=power --set train.epochs=50");
  EXPECT_EQ(r.code, 3) << r.output;
  EXPECT_NE(r.output.find("non-finite at epoch 1"), std::string::npos) << r.output;
  const std::string csv = read_file(out + "/losses.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 2) << csv;  // header + epoch 1, whole lines
  EXPECT_FALSE(fs::exists(out + "/student.pt"));
  EXPECT_EQ(nlohmann::json::parse(read_file(out + "/summary.json"))["status"], "non_finite");
}

// float32, where a regulariser of 1e-300 is 0, makes the flows' linear systems exactly singular:
// an all-zero student gives Sobolev descent S = 0, an all-zero teacher gives DrMMD K_XX = 0.
// The largest validation loss of dir's losses.csv over summary.json's initial one, epoch 0's 1
// included.
double max_loss_ratio_of(const std::string& dir, const nlohmann::json& summary) {
  double most = summary["initial_valid_loss"].get<double>();
  for (double v : read_losses(dir + "/losses.csv").values("valid_loss")) most = std::max(most, v);
  return most / summary["initial_valid_loss"].get<double>();
}

// A run whose validation loss rises past 10x its start without going non-finite is not an error
// (issue 21): gamma = 10^6 takes the quick start's 0.0106 to 0.354 at epoch 1. It exits 0; one
// warning line names the epoch, every progress line past it is marked, summary.json records the
// epoch and the largest ratio (as losses.csv gives it). A normal run (gamma = 1) carries none of
// it; its progress line shows losses.csv's clean grad_sq as `grad_sq`, the noisy one as `noisy`.
TEST(Cli, DivergingRunWarnsAndExitsZero) {
  const std::string out = scratch("diverging"), calm = scratch("calm");
  const std::string args = " --threads 1 --set train.epochs=3 --set log.print_every=1";
  const Result c = run("train --out " + calm + args);
  ASSERT_EQ(c.code, 0) << c.output;
  EXPECT_EQ(c.output.find("diverging"), std::string::npos) << c.output;
  EXPECT_EQ(c.output.find("|grad|^2"), std::string::npos) << c.output;
  const Losses l = read_losses(calm + "/losses.csv");
  for (size_t e = 0; e < 3; ++e)
    EXPECT_NE(c.output.find(fmt::format("grad_sq {:.3e} (noisy {:.3e})", l.values("grad_sq")[e],
                                        l.values("noisy_grad_sq")[e])),
              std::string::npos)
        << e << "\n"
        << c.output;
  const auto cs = nlohmann::json::parse(read_file(calm + "/summary.json"));
  ASSERT_TRUE(cs.contains("diverged_epoch") && cs.contains("max_loss_ratio")) << cs;
  EXPECT_TRUE(cs["diverged_epoch"].is_null()) << cs;
  EXPECT_NEAR(cs["max_loss_ratio"].get<double>(), max_loss_ratio_of(calm, cs), 1e-7);

  const Result r = run("train --out " + out + args + " --set flow.step_size=1e6");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(test::occurrences(r.output, "mmdflow: warning: diverging: at epoch 1 "), 1) << r.output;
  EXPECT_EQ(test::occurrences(r.output, "warning"), 1) << r.output;
  EXPECT_EQ(test::occurrences(r.output, "  diverging: valid "), 3) << r.output;
  const auto s = nlohmann::json::parse(read_file(out + "/summary.json"));
  ASSERT_TRUE(s.contains("diverged_epoch") && s.contains("max_loss_ratio")) << s;
  EXPECT_EQ(s["status"], "done");
  EXPECT_EQ(s["diverged_epoch"], 1);
  EXPECT_GT(s["max_loss_ratio"].get<double>(), 10);
  EXPECT_NEAR(s["max_loss_ratio"].get<double>(), max_loss_ratio_of(out, s),
              1e-7 * s["max_loss_ratio"].get<double>());
}

// The divergence is the whole run's: a resumed run reads the epochs before its checkpoint back
// from losses.csv, and a sharded one (every rank has the same losses) is told by rank 0 alone;
// both record what the uninterrupted single process does.
TEST(Cli, DivergenceIsTheWholeRunsAcrossResumeAndRanks) {
  const std::string whole = scratch("div_whole"), resumed = scratch("div_resumed"),
                    sharded = scratch("div_sharded");
  const std::string args = " --threads 1 --set flow.step_size=1e6 --set log.print_every=1";
  ASSERT_EQ(run("train --out " + whole + args + " --set train.epochs=3").code, 0);
  ASSERT_EQ(run("train --out " + resumed + args + " --set train.epochs=1").code, 0);
  const Result r = run("train --resume " + resumed + " --threads 1 --set train.epochs=3");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(r.output.find("warning"), std::string::npos) << r.output;  // said at epoch 1
  EXPECT_EQ(test::occurrences(r.output, "  diverging: valid "), 2) << r.output;
  const std::string log = scratch("div_sharded_log");
  EXPECT_EQ(test::train_at("train --out " + sharded + args + " --set train.epochs=3", 2, log),
            (std::vector<int>{0, 0}));
  EXPECT_EQ(test::occurrences(read_file(log + ".0"), "mmdflow: warning: diverging: at epoch 1 "),
            1);
  EXPECT_EQ(read_file(log + ".1").find("diverging"), std::string::npos);
  const auto w = nlohmann::json::parse(read_file(whole + "/summary.json"));
  const auto rs = nlohmann::json::parse(read_file(resumed + "/summary.json")),
             ss = nlohmann::json::parse(read_file(sharded + "/summary.json"));
  for (const auto& s : {w, rs, ss})
    ASSERT_TRUE(s.contains("diverged_epoch") && s.contains("max_loss_ratio")) << s;
  EXPECT_EQ(rs["diverged_epoch"], 1);
  EXPECT_EQ(ss["diverged_epoch"], 1);
  EXPECT_EQ(ss["max_loss_ratio"], w["max_loss_ratio"]);
  // The resumed run's earlier epochs as losses.csv writes them, to 9 digits.
  const double most = w["max_loss_ratio"].get<double>();
  EXPECT_NEAR(rs["max_loss_ratio"].get<double>(), most, 1e-8 * most);
}

TEST(Cli, SingularSystemStopsWithExitThree) {
  for (const std::string set :
       {" --set flow.method=sobolev --set noise.beta0=0 --set flow.sobolev_eps=1e-300"
        " --set student.init_mean=0 --set student.init_std=0",
        " --set flow.method=drmmd --set flow.drmmd_lambda=1e-300"
        " --set teacher.init_mean=0 --set teacher.init_std=0"}) {
    Result r = run("train --threads 1 --out " + scratch("singular") +
                   " --set dtype=float32 --set model.output=identity --set train.epochs=3" + set);
    EXPECT_EQ(r.code, 3) << set << "\n" << r.output;
    EXPECT_NE(r.output.find("non-finite at epoch 1"), std::string::npos) << r.output;
  }
}

TEST(Cli, SameSeedWritesIdenticalLosses) {
  const std::string a = scratch("seed_a"), b = scratch("seed_b"), c = scratch("seed_c");
  const std::string args = " --threads 1 --set seed=7 --set train.epochs=20";
  ASSERT_EQ(run("train --out " + a + args).code, 0);
  ASSERT_EQ(run("train --out " + b + args).code, 0);
  ASSERT_EQ(run("train --out " + c + " --threads 1 --set seed=8 --set train.epochs=20").code, 0);
  auto la = lines_without_seconds(read_file(a + "/losses.csv"));
  EXPECT_EQ(la.size(), 21u);
  EXPECT_EQ(la[0], "epoch,train_loss,valid_loss,beta,step_size,grad_sq,noisy_grad_sq");
  EXPECT_EQ(la, lines_without_seconds(read_file(b + "/losses.csv")));
  EXPECT_NE(la, lines_without_seconds(read_file(c + "/losses.csv")));
  EXPECT_EQ(read_file(a + "/student.pt"), read_file(b + "/student.pt"));
}

TEST(Cli, QuickStartLowersValidLossTenfoldAndCompares) {
  const std::string out = scratch("quick");
  Result r = run("train --out " + out);
  ASSERT_EQ(r.code, 0) << r.output;
  for (const char* f : {"losses.csv", "config.yaml", "summary.json", "student.pt", "teacher.pt"})
    EXPECT_TRUE(fs::exists(out + "/" + f)) << f;
  EXPECT_EQ(r.output.find("misspecified"), std::string::npos) << r.output;
  auto s = nlohmann::json::parse(read_file(out + "/summary.json"));
  const double first = s["initial_valid_loss"], last = s["final_valid_loss"];
  EXPECT_LT(last, first / 10) << s.dump(2);
  EXPECT_EQ(s["status"], "done");
  EXPECT_EQ(s["compare"]["nearest_mod_unit_order"][0]["student"].size(), 5u);
  // `compare` recomputes the same numbers from the saved particles.
  Result c = run("compare --run " + out);
  ASSERT_EQ(c.code, 0) << c.output;
  const double mmd = s["compare"]["half_mmd2"];
  const std::string shown = fmt::format("{:.6e}", mmd);
  EXPECT_NE(c.output.find(shown), std::string::npos) << c.output << " vs " << shown;
  auto saved = load_tensors(out + "/student.pt");
  ASSERT_EQ(saved.size(), 2u);
  EXPECT_EQ(saved[0].first, "A");
  EXPECT_EQ(saved[0].second.sizes(), at::IntArrayRef({200, 3, 10}));
  // The file is in torch.save's format: read as torch.load does (zip, data.pkl, storages).
  const std::string listing = out + "/student.txt";
  ASSERT_EQ(std::system((std::string(MMDFLOW_SOURCE_DIR) + "/tests/python/read_pt.py " + out +
                         "/student.pt > " + listing)
                            .c_str()),
            0);
  EXPECT_EQ(read_file(listing).substr(0, read_file(listing).find('\n')),
            fmt::format("A float32 [200, 3, 10] {}", saved[0].second[0][0][0].item<double>()));
  // A second run into the same folder is refused.
  EXPECT_EQ(run("train --out " + out).code, 2);
}

// Sobolev descent's step makes [N, H, B] temporaries of about 1 MB through ATen. With glibc's
// default 128 KiB pad the heap's top went back to the system as a step freed them and was
// faulted in again by the next: 234 000 page faults in these 30 epochs, 4.9 s (keep_heap_pad:
// 20 000 and 1.9 s, most of them loading the binary). Counts pages, not time.
TEST(Cli, StepsDoNotFaultTheirTemporariesInAgain) {
  const std::string out = scratch("faults"), log = scratch("faults.log");
  const pid_t pid = test::spawn(
      "train --threads 1 --set flow.method=sobolev --set noise.beta0=0 --set train.epochs=30"
      " --set student.particles=1000 --set data.dim=50 --set data.train_size=1000"
      " --set data.valid_size=100 --set train.batch=100 --out " +
          out,
      log);
  int status = 0;
  rusage ru{};
  ASSERT_EQ(wait4(pid, &status, 0, &ru), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << read_file(log);
  EXPECT_LT(ru.ru_minflt, 100000) << "page faults of 30 epochs";
}

}  // namespace
}  // namespace mmdflow
