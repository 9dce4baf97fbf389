// `mmdflow sweep`, the study features of `train`, and tools/plot_losses.py.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "src/base/device.h"
#include "src/base/io.h"
#include "src/train/config.h"
#include "tests/cli.h"

namespace fs = std::filesystem;

namespace mmdflow {
namespace {

using test::run;
using test::scratch;

std::string tiny_study() {
  const std::string path = scratch("study") + ".yaml";
  std::ofstream(path) << "data: {dim: 4, train_size: 40, valid_size: 40}\n"
                         "student: {particles: 20}\n"
                         "train: {epochs: 6, batch: 20}\n"
                         "sweep:\n  seeds: 2\n  variants:\n"
                         "    plain: {noise.beta0: 0}\n"
                         "    sobolev: {flow.method: sobolev, noise.beta0: 0}\n";
  return path;
}

std::vector<std::vector<std::string>> csv(const std::string& path) {
  std::vector<std::vector<std::string>> rows;
  std::stringstream ss(read_file(path));
  for (std::string line; std::getline(ss, line);) {
    std::vector<std::string> cells;
    std::stringstream ls(line);
    for (std::string c; std::getline(ls, c, ',');) cells.push_back(c);
    rows.push_back(cells);
  }
  return rows;
}

TEST(Sweep, RunsEverySettingOnceAndTabulates) {
  const std::string out = scratch("sweep");
  test::Result r =
      run("sweep --config " + tiny_study() + " --grid flow.step_size=0.5,1 --jobs 2 --out " + out);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("4 settings x 2 seeds = 8 runs, 0 complete, 8 to run"), std::string::npos)
      << r.output;
  auto rows = csv(out + "/sweep.csv");
  ASSERT_EQ(rows.size(), 9u);
  EXPECT_EQ(rows[0][2], "flow.step_size");
  EXPECT_EQ(rows[1][0], "plain__flow.step_size=0.5");
  for (size_t i = 1; i < rows.size(); ++i) EXPECT_EQ(rows[i][4], "done") << i;
  auto curves = csv(out + "/curves.csv");
  ASSERT_EQ(curves.size(), 1u + 4 * 6);  // 4 settings x 6 epochs
  EXPECT_EQ(curves[1][2], "2");          // runs averaged
  // The mean of the curve is the mean of the two seeds' last losses.
  const std::string last_a = csv(out + "/plain__flow.step_size=0.5/seed0/losses.csv").back()[2];
  const std::string last_b = csv(out + "/plain__flow.step_size=0.5/seed1/losses.csv").back()[2];
  EXPECT_NEAR(std::stod(curves[6][7]), (std::stod(last_a) + std::stod(last_b)) / 2, 1e-8);
  // ... and its geometric mean and geometric std those of the two (columns valid_g*).
  const double la = std::log(std::stod(last_a)), lb = std::log(std::stod(last_b));
  EXPECT_EQ(curves[0][13], "valid_gmean");
  EXPECT_NEAR(std::stod(curves[6][13]), std::exp((la + lb) / 2), 1e-8);
  EXPECT_NEAR(std::stod(curves[6][14]), std::exp(std::abs(la - lb) / std::sqrt(2.0)), 1e-6);

  // Run again: nothing is rerun, the runs' files are untouched.
  const auto stamp = fs::last_write_time(out + "/sobolev__flow.step_size=1/seed1/losses.csv");
  test::Result again =
      run("sweep --config " + tiny_study() + " --grid flow.step_size=0.5,1 --out " + out);
  ASSERT_EQ(again.code, 0) << again.output;
  EXPECT_NE(again.output.find("8 runs, 8 complete, 0 to run"), std::string::npos) << again.output;
  EXPECT_EQ(fs::last_write_time(out + "/sobolev__flow.step_size=1/seed1/losses.csv"), stamp);
  // A run left partial (no summary.json) is the only one run again, resumed from its checkpoint:
  // its losses.csv is kept as it was, seconds included, and its summary written.
  const std::string partial = out + "/plain__flow.step_size=1/seed0";
  const std::string losses = read_file(partial + "/losses.csv");
  fs::remove(partial + "/summary.json");
  test::Result third =
      run("sweep --config " + tiny_study() + " --grid flow.step_size=0.5,1 --out " + out);
  EXPECT_NE(third.output.find("8 runs, 7 complete, 1 to run"), std::string::npos) << third.output;
  EXPECT_TRUE(fs::exists(partial + "/summary.json"));
  EXPECT_EQ(read_file(partial + "/losses.csv"), losses);
  // A run folder that never got a config is started afresh.
  const std::string broken = out + "/sobolev__flow.step_size=0.5/seed1";
  fs::remove_all(broken);
  fs::create_directories(broken);
  test::Result fourth =
      run("sweep --config " + tiny_study() + " --grid flow.step_size=0.5,1 --out " + out);
  EXPECT_NE(fourth.output.find("8 runs, 7 complete, 1 to run"), std::string::npos) << fourth.output;
  EXPECT_EQ(fourth.code, 0) << fourth.output;
  EXPECT_TRUE(fs::exists(broken + "/summary.json"));
}

// A sweep ends with a line per setting over its seeds' summary.json files: the done runs' final
// validation losses (mean ± sample std, geometric mean, the best and its seed) and the counts of
// runs, non-finite and diverged ones (issue 21); `--collect` prints the same table. Two seeds
// make it checkable by hand: std = |a - b| / sqrt(2), gmean = sqrt(a b).
TEST(Sweep, EndsWithAPerSettingTable) {
  const std::string config = scratch("study_table") + ".yaml", out = scratch("sweep_table");
  std::ofstream(config) << "data: {dim: 4, train_size: 40, valid_size: 40}\n"
                           "student: {particles: 20}\n"
                           "train: {epochs: 3, batch: 20}\n"
                           "sweep:\n  seeds: 2\n  variants:\n"
                           "    plain: {noise.beta0: 0}\n"
                           "    large_step: {flow.step_size: 1e6}\n";
  const test::Result r = run("sweep --config " + config + " --jobs 2 --set threads=1 --out " + out);
  ASSERT_EQ(r.code, 0) << r.output;
  const std::string head = "final validation loss over each setting's done runs: mean ± sample std";
  const size_t at = r.output.find(head);
  ASSERT_NE(at, std::string::npos) << r.output;
  const std::string table = r.output.substr(at);
  std::vector<std::string> lines;
  std::stringstream ss(table);
  for (std::string l; std::getline(ss, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 4u) << table;  // what the numbers are, the columns, 2 settings
  const std::vector<std::string> settings{"plain", "large_step"};  // the config's order
  std::vector<int> diverged;
  for (size_t i = 0; i < settings.size(); ++i) {
    double a = 0, b = 0;
    int div = 0;
    for (int seed : {0, 1}) {
      const auto s = nlohmann::json::parse(
          read_file(fmt::format("{}/{}/seed{}/summary.json", out, settings[i], seed)));
      (seed == 0 ? a : b) = s["final_valid_loss"].get<double>();
      ASSERT_TRUE(s.contains("diverged_epoch")) << s;
      div += !s["diverged_epoch"].is_null();
    }
    diverged.push_back(div);
    std::stringstream row(lines[2 + i]);
    std::string name, pm, best_seed, runs;
    double mean, sd, gmean, best;
    int non_finite = -1, div_shown = -1;
    row >> name >> mean >> pm >> sd >> gmean >> best >> best_seed >> runs >> non_finite >>
        div_shown;
    EXPECT_EQ(name, settings[i]) << table;
    EXPECT_NEAR(mean, (a + b) / 2, 1e-4 * mean) << table;
    EXPECT_NEAR(sd, std::abs(a - b) / std::sqrt(2.0), 1e-2 * sd) << table;
    EXPECT_NEAR(gmean, std::sqrt(a * b), 1e-4 * gmean) << table;
    EXPECT_NEAR(best, std::min(a, b), 1e-4 * best) << table;
    EXPECT_EQ(best_seed, a <= b ? "(0)" : "(1)") << table;
    EXPECT_EQ(runs, "2/2") << table;
    EXPECT_EQ(non_finite, 0) << table;
    EXPECT_EQ(div_shown, div) << table;
  }
  EXPECT_EQ(diverged[0], 0);  // plain
  EXPECT_GE(diverged[1], 1);  // gamma = 10^6
  const test::Result c = run("sweep --config " + config + " --collect --out " + out);
  ASSERT_EQ(c.code, 0) << c.output;
  EXPECT_NE(c.output.find(table), std::string::npos) << c.output;
}

TEST(Sweep, BadSettingIsRejectedBeforeAnyRun) {
  const std::string out = scratch("sweep_bad");
  test::Result r = run("sweep --config " + tiny_study() + " --grid flow.stepsize=1,2 --out " + out);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("flow.stepsize: unknown key"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out));
}

// --plan prints the command lines of the runs still to do, for a scheduler; --collect tabulates
// whatever run folders exist.
TEST(Sweep, PlanAndCollect) {
  const std::string out = scratch("sweep_plan");
  test::Result plan = run("sweep --config " + tiny_study() + " --plan --out " + out);
  ASSERT_EQ(plan.code, 0) << plan.output;
  std::vector<std::string> lines;
  std::stringstream ss(plan.output);
  for (std::string l; std::getline(ss, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 4u) << plan.output;  // 2 settings x 2 seeds
  EXPECT_EQ(lines[0], std::string(MMDFLOW_BIN) + " train --config " + out + "/base.yaml --out " +
                          out + "/plain/seed0 --set noise.beta0=0 --set seed=0");
  EXPECT_FALSE(fs::exists(out + "/plain"));  // nothing ran
  for (int i : {0, 3}) ASSERT_EQ(std::system((lines[i] + " > /dev/null").c_str()), 0) << lines[i];
  test::Result collect = run("sweep --config " + tiny_study() + " --collect --out " + out);
  ASSERT_EQ(collect.code, 0) << collect.output;
  auto rows = csv(out + "/sweep.csv");
  ASSERT_EQ(rows.size(), 5u);
  std::vector<std::string> status;
  for (size_t i = 1; i < rows.size(); ++i) status.push_back(rows[i][3]);
  EXPECT_EQ(status, (std::vector<std::string>{"done", "missing", "missing", "done"}));
  EXPECT_EQ(csv(out + "/curves.csv").size(), 1u + 2 * 6);  // one seed of each setting
  plan = run("sweep --config " + tiny_study() + " --plan --out " + out);
  EXPECT_EQ(std::count(plan.output.begin(), plan.output.end(), '\n'), 2) << plan.output;
  EXPECT_EQ(run("sweep --config " + tiny_study() + " --plan --collect --out " + out).code, 2);
}

// Each run gets the cores / --jobs threads, unless --set threads=N asks N; a config file's threads
// key is replaced, with one line saying so.
TEST(Sweep, SetThreadsIsHonouredAndAConfigsThreadsReplacedAloud) {
  const int64_t cores = cores_available(), other = cores + 3;
  const std::string out = scratch("sweep_threads");
  test::Result r = run("sweep --config " + tiny_study() +
                       " --jobs 1 --set threads=" + std::to_string(other) + " --plan --out " + out);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(load_config(out + "/base.yaml").threads, other);
  EXPECT_EQ(r.output.find("replaced"), std::string::npos) << r.output;
  const std::string study = scratch("study_threads") + ".yaml";
  write_file_atomic(study, read_file(tiny_study()) + "threads: " + std::to_string(other) + "\n");
  fs::remove_all(out);
  r = run("sweep --config " + study + " --jobs 1 --plan --out " + out);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(load_config(out + "/base.yaml").threads, cores);
  EXPECT_NE(r.output.find("threads = " + std::to_string(other) + " is replaced by " +
                          std::to_string(cores) + " (" + std::to_string(cores) +
                          " cores / 1 jobs); --set threads=" + std::to_string(other) + " keeps it"),
            std::string::npos)
      << r.output;
}

// A rerun into a sweep folder runs the settings it ran: another base is refused, naming the key;
// --extend lets keys a resumed run may change (more epochs) continue every run.
TEST(Sweep, RerunWithOtherSettingsIsRefusedUnlessExtended) {
  const std::string out = scratch("sweep_rerun");
  ASSERT_EQ(run("sweep --config " + tiny_study() + " --out " + out).code, 0);
  test::Result r = run("sweep --config " + tiny_study() + " --set flow.step_size=0.5 --out " + out);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("flow.step_size = 1, this one asks 0.5: use another --out"),
            std::string::npos)
      << r.output;
  r = run("sweep --config " + tiny_study() + " --set train.epochs=9 --out " + out);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("train.epochs = 6, this one asks 9: rerun with --extend"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(load_config(out + "/base.yaml").train.epochs, 6);  // untouched
  r = run("sweep --config " + tiny_study() + " --set train.epochs=9 --extend --out " + out);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("4 runs, 0 complete, 4 to run"), std::string::npos) << r.output;
  EXPECT_EQ(csv(out + "/plain/seed1/losses.csv").size(), 10u);  // header and 9 epochs
}

// Seeds are --seeds' alone; an empty grid value is no value.
TEST(Sweep, SeedAxisAndEmptyValuesAreRefused) {
  for (const std::string& bad :
       {std::string("--grid seed=5,6"), std::string("--grid flow.step_size=1,,2"),
        std::string("--grid flow.step_size=1,")}) {
    const std::string out = scratch("sweep_seed");
    test::Result r = run("sweep --config " + tiny_study() + " " + bad + " --out " + out);
    EXPECT_EQ(r.code, 2) << bad << "\n" << r.output;
    EXPECT_FALSE(fs::exists(out)) << bad;
  }
  const std::string seeded = scratch("seeded") + ".yaml";
  std::ofstream(seeded) << read_file(tiny_study()) << "    other: {seed: 3}\n";
  test::Result r = run("sweep --config " + seeded + " --out " + scratch("sweep_seeded"));
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("sweep.variants.other: seed cannot vary here"), std::string::npos)
      << r.output;
}

// N9: no setting writes outside --out: a variant named "..", a --grid value whose YAML comment
// would hide a path, a planted link in place of a run's log.
TEST(Sweep, NothingIsWrittenOutsideTheSweepFolder) {
  const std::string dotted = scratch("dotted") + ".yaml";
  std::ofstream(dotted) << read_file(tiny_study()) << "    ..: {noise.beta0: 0.5}\n";
  for (const std::string& bad :
       {"--config " + dotted, "--config " + tiny_study() + " --grid 'flow.step_size=1 #/../../x'",
        "--config " + tiny_study() + " --grid flow.step_size=1/2"}) {
    const std::string out = scratch("sweep_escape");
    test::Result r = run("sweep " + bad + " --out " + out);
    EXPECT_EQ(r.code, 2) << bad << "\n" << r.output;
    EXPECT_NE(r.output.find("not a folder name"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(out)) << bad;
  }
  const std::string out = scratch("sweep_link"), victim = scratch("victim.txt");
  std::ofstream(victim) << "keep me\n";
  fs::create_directories(out + "/plain");
  fs::create_symlink(victim, out + "/plain/seed0.log");
  test::Result r = run("sweep --config " + tiny_study() + " --seeds 1 --jobs 1 --out " + out);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("cannot write its log"), std::string::npos) << r.output;
  EXPECT_EQ(read_file(victim), "keep me\n");
}

// N10: a result that cannot be written (stdout on a full disk) exits 4, for compare and for
// sweep --plan.
TEST(Sweep, ResultsThatCannotBeWrittenExitFour) {
  const std::string out = scratch("sweep_full");
  ASSERT_EQ(run("sweep --config " + tiny_study() + " --seeds 1 --out " + out).code, 0);
  for (const std::string& args :
       {"compare --run " + out + "/plain/seed0",
        "sweep --config " + tiny_study() + " --seeds 2 --plan --out " + out}) {
    const int status = std::system(
        (std::string(MMDFLOW_BIN) + " " + args + " > /dev/full 2> " + out + ".err").c_str());
    EXPECT_EQ(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 4) << args;
    EXPECT_NE(read_file(out + ".err").find("cannot write the result"), std::string::npos)
        << read_file(out + ".err");
  }
}

// N19: the sweep's own bookkeeping: a bounded run count, a repeated axis, cells that hold commas
// (a folder's), a done run whose losses.csv is gone.
TEST(Sweep, BookkeepingIsBoundedAndQuoted) {
  test::Result many = run("sweep --config " + tiny_study() + " --seeds 1000000 --grid " +
                          "flow.step_size=1,2,3 --out " + scratch("sweep_many"));
  EXPECT_EQ(many.code, 2) << many.output;
  EXPECT_NE(many.output.find("more than a sweep runs"), std::string::npos) << many.output;
  test::Result twice =
      run("sweep --config " + tiny_study() +
          " --grid flow.step_size=1 --grid flow.step_size=2 --out " + scratch("sweep_twice"));
  EXPECT_EQ(twice.code, 2) << twice.output;
  EXPECT_NE(twice.output.find("--grid flow.step_size: given twice"), std::string::npos)
      << twice.output;
  const std::string out = scratch("sweep") + ",commas";  // the run column holds the folder
  test::Result r =
      run("sweep --config " + tiny_study() + " --seeds 1 --jobs 2 --out '" + out + "'");
  ASSERT_EQ(r.code, 0) << r.output;
  const std::string table = read_file(out + "/sweep.csv");
  EXPECT_NE(table.find(",0,done,"), std::string::npos) << table;
  EXPECT_NE(table.find(",\"" + out + "/plain/seed0\"\n"), std::string::npos) << table;
  fs::remove(out + "/sobolev/seed0/losses.csv");
  test::Result collect =
      run("sweep --config " + tiny_study() + " --seeds 1 --collect --out '" + out + "'");
  EXPECT_EQ(collect.code, 2) << collect.output;
  EXPECT_NE(collect.output.find("losses.csv: missing"), std::string::npos) << collect.output;
}

// SIGTERM to a sweep reaches its runs, which checkpoint; a rerun continues them. A sweep killed
// outright takes its runs down with it (each checkpoints), never leaving them running.
TEST(Sweep, SignalsReachTheRuns) {
  const std::string study = scratch("long") + ".yaml";
  std::ofstream(study) << "data: {dim: 4, train_size: 40, valid_size: 40}\n"
                          "student: {particles: 20}\ntrain: {epochs: 100000, batch: 20}\n"
                          "sweep: {seeds: 2}\n";
  for (const int sig : {SIGTERM, SIGKILL}) {
    const std::string out = scratch(sig == SIGTERM ? "sweep_term" : "sweep_kill");
    const pid_t pid =
        test::spawn("sweep --config " + study + " --jobs 2 --out " + out, out + ".log");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(1);
    auto started = [&] {
      for (int s : {0, 1})
        if (!fs::exists(out + "/base/seed" + std::to_string(s) + "/losses.csv")) return false;
      return true;
    };
    while (!started() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ASSERT_TRUE(started()) << read_file(out + ".log");
    kill(pid, sig);
    EXPECT_EQ(test::wait_code(pid), 128 + sig) << read_file(out + ".log");
    for (int s : {0, 1}) {
      const std::string run_dir = out + "/base/seed" + std::to_string(s);
      // The run stops with a checkpoint; its folder is free again within moments.
      bool stopped = false;
      for (int i = 0; i < 2000 && !stopped; ++i) {
        stopped = read_file(run_dir + ".log").find("stopped by SIGTERM") != std::string::npos;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      EXPECT_TRUE(stopped) << read_file(run_dir + ".log");
      EXPECT_TRUE(fs::exists(run_dir + "/checkpoint.bin"));
    }
  }
}

TEST(Plot, WritesAPngFromASweep) {
  if (std::system("/usr/bin/python3 -c 'import matplotlib' > /dev/null 2>&1") != 0)
    GTEST_SKIP() << "matplotlib is not installed for /usr/bin/python3";
  const std::string out = scratch("plot");
  ASSERT_EQ(run("sweep --config " + tiny_study() + " --seeds 2 --out " + out).code, 0);
  const std::string png = out + "/curves.png";
  const std::string cmd = std::string(MMDFLOW_SOURCE_DIR) + "/tools/plot_losses.py " + out +
                          " -o " + png + " > /dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const std::string bytes = read_file(png);
  ASSERT_GT(bytes.size(), 1000u);
  EXPECT_EQ(bytes.substr(1, 3), "PNG");
  // A run folder works too; a folder with neither file is an error.
  EXPECT_EQ(std::system((std::string(MMDFLOW_SOURCE_DIR) + "/tools/plot_losses.py " + out +
                         "/plain/seed0 -o " + out + "/run.png > /dev/null 2>&1")
                            .c_str()),
            0);
  EXPECT_NE(std::system((std::string(MMDFLOW_SOURCE_DIR) + "/tools/plot_losses.py " + out +
                         "/plain -o " + out + "/x.png > /dev/null 2>&1")
                            .c_str()),
            0);
}

TEST(TrainStudy, MethodsLayoutsTeachersAndSchedules) {
  const std::string base = " --threads 1 --set train.epochs=8 --set student.particles=30 ";
  test::Result bad = run("train --out " + scratch("m_bad") + base + "--set flow.method=svgd");
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.output.find("must be one of mmd, diffusion, sobolev, drmmd"), std::string::npos);
  for (const std::string& extra :
       {std::string("--set student.layout=dense --set flow.step_size=0.01"),
        std::string(
            "--set teacher.hidden=5 --set teacher.activation=tanh --set teacher.particles=3"),
        std::string("--set data.fresh=true"), std::string("--set flow.method=drmmd"),
        std::string("--set noise.schedule=inverse --set noise.tau=3")}) {
    const std::string out = scratch("study_run");
    test::Result r = run("train --out " + out + base + extra);
    EXPECT_EQ(r.code, 0) << extra << "\n" << r.output;
    // The start-up line says when the teacher's particles differ from the student's.
    EXPECT_EQ(r.output.find("misspecified: the teacher's particles have H=5 tanh, the student's "
                            "H=3 relu") != std::string::npos,
              extra.find("teacher.hidden=5") != std::string::npos)
        << r.output;
    auto s = nlohmann::json::parse(read_file(out + "/summary.json"));
    EXPECT_LT(double(s["final_valid_loss"]), double(s["initial_valid_loss"])) << extra;
  }
  // Plateau: with patience 1, gamma is cut by step_factor whenever an epoch does not improve.
  const std::string out = scratch("plateau");
  ASSERT_EQ(run("train --out " + out + base +
                "--set flow.step_size=50 --set flow.step_schedule=plateau --set flow.patience=1 "
                "--set train.epochs=30 --set flow.step_factor=0.5")
                .code,
            0);
  std::stringstream ss(read_file(out + "/losses.csv"));
  std::string line;
  std::getline(ss, line);
  double best = INFINITY, gamma = 50;
  int cuts = 0;
  while (std::getline(ss, line)) {
    std::vector<std::string> c;
    std::stringstream ls(line);
    for (std::string x; std::getline(ls, x, ',');) c.push_back(x);
    EXPECT_DOUBLE_EQ(std::stod(c[4]), gamma) << line;
    const double loss = std::stod(c[1]);
    if (loss < best) {
      best = loss;
    } else {
      gamma *= 0.5;
      ++cuts;
    }
  }
  EXPECT_GT(cuts, 0);
}

}  // namespace
}  // namespace mmdflow
