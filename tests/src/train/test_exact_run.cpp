// Runs along the exact kernel (flow.kernel exact) and the theory's statistics (theory.csv): the
// last half_mmd2 is the saved weights' 1/2 MMD^2 by an independent computation, whole sampled runs
// converge to the exact run as the inputs per step grow, stops and resumes keep theory.csv exact.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "models/weights.h"
#include "src/base/errors.h"
#include "src/base/random.h"
#include "src/kernels/arccos.h"
#include "src/kernels/features.h"
#include "src/train/run_folder.h"
#include "src/train/trainer.h"
#include "tests/cli.h"

namespace fs = std::filesystem;

namespace mmdflow {
namespace {

using test::run;
using test::scratch;

const Student& student_of(const Trainer& t) { return dynamic_cast<const Student&>(t.measure()); }
// The run's teacher, drawn again from its stream.
ParticleNet teacher_of(const Config& c) {
  return make_teacher(c, c10::kCPU, stream_generator(c.seed, kTeacherStream));
}

// The family of the closed-form kernel, the quick-start sizes (d = 10, N = 200, M = 1).
const std::string kExact =
    " --threads 1 --set flow.kernel=exact --set model.hidden=1 --set model.activation=relu"
    " --set model.output=identity --set model.hidden_bias=false --set model.output_bias=false"
    " --set dtype=float64";

Config exact_config(const std::vector<std::string>& more = {}) {
  std::vector<std::string> sets = {"flow.kernel=exact", "model.hidden=1", "model.output=identity",
                                   "dtype=float64"};
  sets.insert(sets.end(), more.begin(), more.end());
  return parse_config("", sets);
}

// 1/2 MMD^2 by the dense reference kernel (ATen ops, not the tiled sums the run uses).
double dense_half_mmd2(const Particles& s, const Particles& t, InputDist dist) {
  const at::Tensor ws = s.A.squeeze(1), vs = s.B.squeeze(2), wt = t.A.squeeze(1),
                   vt = t.B.squeeze(2);
  return 0.5 * (arccos_kernel(ws, vs, ws, vs, dist).mean() -
                2 * arccos_kernel(ws, vs, wt, vt, dist).mean() +
                arccos_kernel(wt, vt, wt, vt, dist).mean())
                   .item<double>();
}

bool has_numpy() { return std::system("/usr/bin/python3 -c 'import numpy' > /dev/null 2>&1") == 0; }

// An exact run of the quick-start sizes: theory.csv's last half_mmd2 is 1/2 MMD^2 of student.pt
// and teacher.pt, read back and computed by the dense kernel (and by numpy without mmdflow);
// its columns follow their definitions; compare reports the exact value beside the sampled one.
TEST(ExactRun, LastHalfMmd2IsThatOfTheSavedWeights) {
  const std::string out = scratch("exact");
  test::Result r = run("train --out " + out + kExact + " --set train.epochs=30");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("closed-form kernel"), std::string::npos) << r.output;
  const Config cfg = load_config(out + "/config.yaml");
  const Losses theory = read_theory(out + "/theory.csv");
  ASSERT_EQ(theory.rows.size(), 30u);
  const NamedTensors student = read_student(out, cfg, {0, 200, 200});
  const NamedTensors teacher = read_teacher(out, cfg);
  const double half = dense_half_mmd2(particles_of(student), particles_of(teacher), cfg.data.input);
  const double logged = theory.values("half_mmd2").back();
  EXPECT_NEAR(logged, half, 1e-9 * half);
  const auto summary = nlohmann::json::parse(read_file(out + "/summary.json"));
  EXPECT_NEAR(double(summary["compare"]["exact_half_mmd2"]), half, 1e-9 * half);
  EXPECT_NEAR(double(summary["compare"]["half_mmd2"]), half, 0.1 * half);  // 10 000 inputs
  r = run("compare --run " + out + " --samples 1000");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find(fmt::format("closed-form kernel: {:.6e}", half)), std::string::npos)
      << r.output;

  // beta_t = 0.5^floor(t / 50): 1 for these 30 epochs, 10 steps each.
  const auto beta_sq_sum = theory.values("beta_sq_sum"), ratio = theory.values("descent_ratio");
  const auto noisy = theory.values("noisy_grad_sq"), clean = theory.values("grad_sq");
  const auto halves = theory.values("half_mmd2");
  for (size_t e = 0; e < 30; ++e) {
    EXPECT_EQ(beta_sq_sum[e], 10.0 * double(e + 1));
    EXPECT_NEAR(ratio[e], noisy[e] / halves[e], 1e-15 * ratio[e]);
    EXPECT_NE(noisy[e], clean[e]);
    EXPECT_GT(clean[e], 0);
  }
  // The losses' train loss is the exact 1/2 MMD^2 along the steps: it starts at the summary's
  // initial one and ends near the last half_mmd2; the validation loss estimates it.
  const Losses losses = read_losses(out + "/losses.csv");
  EXPECT_NEAR(losses.values("train_loss").back(), logged, 0.05 * logged);
  EXPECT_NEAR(losses.values("valid_loss").back(), logged, 0.3 * logged);

  if (!has_numpy()) GTEST_SKIP() << "numpy is not installed for /usr/bin/python3";
  const std::string cmd = "/usr/bin/python3 " + std::string(MMDFLOW_SOURCE_DIR) +
                          "/tests/python/check_theory.py " + out + " > " + out + "/check.txt";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << read_file(out + "/check.txt");
}

// One step an epoch, the plain flow: epoch e + 1's train loss is 1/2 MMD^2 before its step, i.e.
// epoch e's half_mmd2, and both decrease; the first is the initial 1/2 MMD^2.
TEST(ExactRun, TrainLossIsTheExactLossBeforeEachStep) {
  Config c = exact_config({"data.train_size=50", "train.batch=50", "train.epochs=8",
                           "noise.beta0=0", "student.particles=40", "data.dim=4"});
  Trainer t(c);
  std::vector<EpochLog> logs;
  ASSERT_EQ(t.run([&](const EpochLog& l) { logs.push_back(l); }), Trainer::End::Done);
  // The same sums in another order (a step's tiles, a whole evaluation's): equal to rounding.
  auto same = [](double a, double b) { return std::abs(a - b) <= 1e-14 * std::abs(b); };
  EXPECT_PRED2(same, logs[0].train_loss, t.initial_train_loss());
  for (size_t e = 1; e < logs.size(); ++e) {
    EXPECT_PRED2(same, logs[e].train_loss, logs[e - 1].half_mmd2) << e;
    EXPECT_LT(logs[e].half_mmd2, logs[e - 1].half_mmd2) << e;
    EXPECT_EQ(logs[e].theory_noisy_grad_sq, logs[e].theory_grad_sq);
    EXPECT_EQ(logs[e].beta_sq_sum, 0.0);
  }
  EXPECT_PRED2(same, logs.back().half_mmd2,
               0.5 * exact_mmd2(*student_of(t).particles(), teacher_of(c).particles(), c.data.input)
                         .item<double>());
}

// log.noise_draws K: a row's noisy_grad_sq is the mean over K draws w_k of
// E_z ||grad h(z + beta w_k)||^2, w_k from sub_seed(the epoch's last noise seed, 1 + k), and
// noisy_grad_sq_se the mean's standard error, both computed here directly (the witness at the
// perturbed particles; the seeds replayed from the training stream, one per step). K = 1 is the
// first draw alone, as before the key existed; K leaves the trajectory as it was.
TEST(ExactRun, NoiseDrawsEstimateTheNoisyGradient) {
  struct Run {
    std::vector<EpochLog> logs;
    Particles end;
  };
  const auto run_with = [](int64_t K) {
    const Config c =
        exact_config({"data.train_size=50", "train.batch=50", "train.epochs=3",
                      "student.particles=2", "teacher.particles=1", "data.dim=3", "noise.beta0=0.5",
                      "noise.every=2", "log.noise_draws=" + std::to_string(K)});
    Trainer t(c);
    Run r;
    EXPECT_EQ(t.run([&](const EpochLog& l) { r.logs.push_back(l); }), Trainer::End::Done);
    const Particles& z = *student_of(t).particles();
    r.end = z.clone();
    return r;
  };
  const Config c = exact_config({"student.particles=2", "teacher.particles=1", "data.dim=3"});
  const Particles teacher = teacher_of(c).particles();
  at::Generator gen = stream_generator(c.seed, kTrainStream);
  uint64_t last_seed = 0;
  for (int step = 0; step < 3; ++step) last_seed = gen.get<at::CPUGeneratorImpl>()->random64();
  const Run one = run_with(1), four = run_with(4);
  ASSERT_EQ(four.logs.size(), 3u);
  const EpochLog& l = four.logs.back();
  EXPECT_EQ(l.beta, 0.25);  // halved after 2 epochs
  EXPECT_EQ(l.next_beta, 0.25);
  EXPECT_EQ(four.logs[0].next_beta, 0.5);
  EXPECT_EQ(four.logs[1].next_beta, 0.25);
  std::vector<double> d;
  for (uint64_t k = 0; k < 4; ++k)
    d.push_back(exact_grad_sq(four.end, teacher, ExactKernel{c.data.input},
                              Noise{l.beta, sub_seed(last_seed, 1 + k)})
                    .item<double>());
  const double mean = (d[0] + d[1] + d[2] + d[3]) / 4;
  double ss = 0;
  for (double v : d) ss += (v - mean) * (v - mean);
  EXPECT_EQ(l.theory_noisy_grad_sq, mean);
  ASSERT_TRUE(l.theory_noisy_grad_se.has_value());
  EXPECT_NEAR(*l.theory_noisy_grad_se, std::sqrt(ss / 12), 1e-12 * std::sqrt(ss / 12));
  EXPECT_GT(*l.theory_noisy_grad_se, 0);
  EXPECT_EQ(*descent_ratio(l), mean / (l.beta * l.beta * l.half_mmd2));
  // One draw: the first, exactly; no standard error.
  EXPECT_EQ(one.logs.back().theory_noisy_grad_sq, d[0]);
  EXPECT_FALSE(one.logs.back().theory_noisy_grad_se.has_value());
  // The same trajectory and statistics but the noisy norm's.
  EXPECT_TRUE(at::equal(one.end.A, four.end.A) && at::equal(one.end.B, four.end.B));
  for (size_t e = 0; e < 3; ++e) {
    EXPECT_EQ(one.logs[e].train_loss, four.logs[e].train_loss) << e;
    EXPECT_EQ(one.logs[e].half_mmd2, four.logs[e].half_mmd2) << e;
    EXPECT_EQ(one.logs[e].theory_grad_sq, four.logs[e].theory_grad_sq) << e;
    EXPECT_NE(one.logs[e].theory_noisy_grad_sq, four.logs[e].theory_noisy_grad_sq) << e;
  }
}

// Whole runs of the sampled flow on fresh inputs (the same initial student and teacher, plain
// flow) end closer to the exact run's particles as the inputs per step grow: about 1/sqrt(B).
TEST(ExactRun, SampledRunsConvergeToTheExactRun) {
  std::vector<double> err(3, 0.0);
  const std::vector<int64_t> batches = {256, 2048, 16384};
  for (int64_t seed : {0, 1}) {
    const std::vector<std::string> common = {
        "seed=" + std::to_string(seed), "noise.beta0=0",       "train.epochs=3",
        "student.particles=60",         "teacher.particles=2", "data.dim=5",
        "data.input=gaussian"};
    auto final_particles = [&](const Config& c) {
      Trainer t(c);
      t.run([](const EpochLog&) {});
      return student_of(t).particles()->flat().clone();
    };
    const at::Tensor z0 = [&] {
      Config c = exact_config(common);
      c.train.epochs = 0;
      return final_particles(c);
    }();
    std::vector<std::string> sizes = common;
    sizes.insert(sizes.end(), {"data.train_size=200", "train.batch=50"});  // 4 steps an epoch
    const at::Tensor exact = final_particles(exact_config(sizes));
    const double moved = (exact - z0).norm().item<double>();
    ASSERT_GT(moved, 0.1);
    for (size_t i = 0; i < batches.size(); ++i) {
      std::vector<std::string> s = common;
      s.insert(s.end(), {"flow.kernel=sampled", "data.fresh=true",
                         "data.train_size=" + std::to_string(4 * batches[i]),
                         "train.batch=" + std::to_string(batches[i])});
      const double e = (final_particles(exact_config(s)) - exact).norm().item<double>() / moved;
      err[i] += e * e / 2;
    }
  }
  for (double& e : err) e = std::sqrt(e);

  for (size_t i = 1; i < err.size(); ++i) {
    EXPECT_GT(err[i] / err[i - 1], 0.2) << err[i] << " vs " << err[i - 1];
    EXPECT_LT(err[i] / err[i - 1], 0.6) << err[i] << " vs " << err[i - 1];
  }
  EXPECT_LT(err.back(), 0.05);
}

int64_t lines_in(const std::string& path) {
  if (!fs::exists(path)) return 0;
  const std::string text = read_file(path);
  return std::count(text.begin(), text.end(), '\n');
}

// Waits until theory.csv holds `epochs` epochs; false when the child ended first or after a
// minute.
bool wait_for_epochs(const std::string& dir, pid_t pid, int64_t epochs) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(1);
  while (std::chrono::steady_clock::now() < deadline) {
    if (lines_in(dir + "/theory.csv") > epochs) return true;
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

// SIGKILL past a checkpoint, SIGTERM mid-epoch: each resumed run ends with the reference's
// theory.csv, losses and weights (the training generator draws only the noise seeds).
TEST(ExactRun, StopsAndResumesKeepTheoryExact) {
  const std::string args = kExact +
                           " --set train.epochs=40 --set train.batch=5 --set student.particles=100"
                           " --set train.checkpoint_every=7 --set noise.every=10"
                           " --set compare.samples=200";
  const std::string ref = scratch("exact_ref");
  ASSERT_EQ(run("train --out " + ref + args).code, 0);
  const std::string theory = read_file(ref + "/theory.csv");
  ASSERT_EQ(lines_in(ref + "/theory.csv"), 41);
  for (int sig : {SIGKILL, SIGTERM}) {
    const std::string out = scratch("exact_stop" + std::to_string(sig)), log = out + ".log";
    const pid_t pid = test::spawn("train --out " + out + args, log);
    ASSERT_TRUE(wait_for_epochs(out, pid, 10)) << read_file(log);
    kill(pid, sig);
    EXPECT_EQ(test::wait_code(pid), sig == SIGKILL ? 128 + SIGKILL : 143) << read_file(log);
    EXPECT_LT(lines_in(out + "/theory.csv"), 41);
    test::Result r = run("train --resume " + out);
    ASSERT_EQ(r.code, 0) << r.output;
    EXPECT_EQ(read_file(out + "/theory.csv"), theory) << sig;
    EXPECT_EQ(test::lines_without_seconds(read_file(out + "/losses.csv")),
              test::lines_without_seconds(read_file(ref + "/losses.csv")));
    EXPECT_EQ(read_file(out + "/student.pt"), read_file(ref + "/student.pt"));
  }
}

// A sampled run logs the theory on request: the validation loss and the last minibatch's
// gradients; descent_ratio is empty for the plain flow.
TEST(ExactRun, SampledRunTheory) {
  const std::string out = scratch("sampled_theory");
  test::Result r = run("train --out " + out +
                       " --threads 1 --set log.theory=true --set noise.beta0=0 --set train.epochs=5"
                       " --set student.particles=50 --set compare.samples=100");
  ASSERT_EQ(r.code, 0) << r.output;
  const Losses theory = read_theory(out + "/theory.csv");
  const Losses losses = read_losses(out + "/losses.csv");
  ASSERT_EQ(theory.rows.size(), 5u);
  for (size_t e = 0; e < 5; ++e) {
    const double v = losses.values("valid_loss")[e], g = losses.values("grad_sq")[e];
    EXPECT_NEAR(theory.values("half_mmd2")[e], v, 1e-8 * v);
    EXPECT_NEAR(theory.values("grad_sq")[e], g, 1e-8 * g);
    EXPECT_TRUE(std::isnan(theory.values("descent_ratio")[e]));
  }
  std::stringstream csv(read_file(out + "/theory.csv"));
  std::string line;
  std::getline(csv, line);
  while (std::getline(csv, line))  // descent_ratio and noisy_grad_sq_se, then next_beta 0
    EXPECT_EQ(line.substr(line.size() - 4), ",,,0") << line;
  const std::string plain = scratch("no_theory");
  ASSERT_EQ(run("train --out " + plain + " --threads 1 --set train.epochs=1").code, 0);
  EXPECT_FALSE(fs::exists(plain + "/theory.csv"));
}

// tools/plot_theory.py draws a run's theory.csv and tabulates it.
TEST(ExactRun, PlotTheoryDrawsTheRuns) {
  if (std::system("/usr/bin/python3 -c 'import matplotlib' > /dev/null 2>&1") != 0)
    GTEST_SKIP() << "matplotlib is not installed for /usr/bin/python3";
  const std::string out = scratch("plot_theory");
  ASSERT_EQ(
      run("train --out " + out + kExact + " --set train.epochs=5 --set compare.samples=100").code,
      0);
  const std::string tool =
      "/usr/bin/python3 " + std::string(MMDFLOW_SOURCE_DIR) + "/tools/plot_theory.py " + out;
  ASSERT_EQ(std::system((tool + " -o " + out + "/t.png > " + out + "/plot.txt").c_str()), 0)
      << read_file(out + "/plot.txt");
  EXPECT_GT(fs::file_size(out + "/t.png"), 10000u);
  ASSERT_EQ(std::system((tool + " --table > " + out + "/table.txt").c_str()), 0);
  EXPECT_NE(read_file(out + "/table.txt").find("_plot_theory | "), std::string::npos)
      << read_file(out + "/table.txt");
}

// bench times the exact step at each size.
TEST(ExactRun, BenchTimesTheExactStep) {
  test::Result r = run("bench" + kExact + " --particles 100,300 --repeats 2");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("mmdflow bench: exact kernel, cpu float64, 1 threads; mmd flow"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("\n      300 "), std::string::npos) << r.output;
}

// The exact kernel's witness couples every particle: no sharding, on every rank.
TEST(ExactRun, ShardedRunsAreRefused) {
  const std::string dir = scratch("exact_sharded"), log = dir + ".log";
  const auto codes =
      test::wait_all(test::spawn_ranks("train --out " + dir + kExact + " --set dist.timeout=30", 2,
                                       test::free_port(), log),
                     std::chrono::seconds(60));
  EXPECT_EQ(codes, std::vector<int>(2, kBadInput));
  EXPECT_NE(read_file(log + ".0").find("flow.kernel: exact cannot be sharded"), std::string::npos)
      << read_file(log + ".0");
  EXPECT_FALSE(fs::exists(dir));
}

}  // namespace
}  // namespace mmdflow
