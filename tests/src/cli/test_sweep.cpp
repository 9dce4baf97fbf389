// `mmdflow sweep`, the study features of `train`, and tools/plot_losses.py.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "src/base/io.h"
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

TEST(Sweep, BadSettingIsRejectedBeforeAnyRun) {
  const std::string out = scratch("sweep_bad");
  test::Result r = run("sweep --config " + tiny_study() + " --grid flow.stepsize=1,2 --out " + out);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("flow.stepsize: unknown key"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out));
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
