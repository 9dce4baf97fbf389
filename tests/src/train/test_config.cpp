#include <gtest/gtest.h>

#include <cmath>

#include "src/train/config.h"
#include "src/base/io.h"

namespace mmdflow {
namespace {

const std::string kConfigs = std::string(MMDFLOW_SOURCE_DIR) + "/configs/";

std::string error_of(const std::string& yaml, const std::vector<std::string>& sets = {}) {
  try {
    parse_config(yaml, sets, "test.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Config, DefaultsAreTheQuickStart) {
  EXPECT_EQ(to_yaml(load_config(kConfigs + "quickstart.yaml")), to_yaml(Config{}));
}

TEST(Config, ResolvedYamlReadsBackUnchanged) {
  for (const char* name :
       {"quickstart.yaml", "paper/noise_injection.yaml", "paper/no_noise.yaml"}) {
    Config c = load_config(kConfigs + name);
    EXPECT_EQ(to_yaml(parse_config(to_yaml(c))), to_yaml(c)) << name;
  }
}

TEST(Config, PaperSetting) {
  for (const char* name : {"paper/noise_injection.yaml", "paper/no_noise.yaml"}) {
    Config c = load_config(kConfigs + name);
    EXPECT_EQ(c.data.dim, 50);
    EXPECT_EQ(c.data.input, "sphere");
    EXPECT_EQ(c.data.train_size, 1000);
    EXPECT_EQ(c.data.valid_size, 1000);
    EXPECT_EQ(c.model.hidden, 3);
    EXPECT_EQ(c.model.output, "gaussian");
    EXPECT_EQ(c.model.sigma, 2.0);
    EXPECT_EQ(c.teacher.particles, 1);
    EXPECT_EQ(c.teacher.init_mean, 0.0);
    EXPECT_EQ(c.teacher.init_std, 1.0);
    EXPECT_EQ(c.student.particles, 1000);
    EXPECT_EQ(c.student.init_mean, 0.001);
    EXPECT_EQ(c.student.init_std, 1.0);
    EXPECT_EQ(c.train.batch, 100);
    EXPECT_EQ(c.train.epochs, 10000);
    EXPECT_EQ(c.noise.schedule, "step");
    EXPECT_EQ(c.noise.every, 1000);
    EXPECT_EQ(c.noise.factor, 0.5);
  }
  EXPECT_EQ(load_config(kConfigs + "paper/noise_injection.yaml").noise.beta0, 1.0);
  EXPECT_EQ(load_config(kConfigs + "paper/no_noise.yaml").noise.beta0, 0.0);
}

TEST(Config, SetOverridesAndCreatesSections) {
  Config c = parse_config("flow:\n  step_size: 0.5\n", {"flow.step_size=0.25", "train.epochs=7",
                                                        "model.output=laplace", "seed=3"});
  EXPECT_EQ(c.flow.step_size, 0.25);
  EXPECT_EQ(c.train.epochs, 7);
  EXPECT_EQ(c.model.output, "laplace");
  EXPECT_EQ(c.seed, 3);
}

TEST(Config, UnknownKeyNamesItsPathAndLine) {
  std::string e = error_of("seed: 1\nflow:\n  step_size: 0.1\n  stepsize: 0.2\n");
  EXPECT_NE(e.find("flow.stepsize: unknown key"), std::string::npos) << e;
  EXPECT_NE(e.find("test.yaml line 4"), std::string::npos) << e;
  EXPECT_NE(error_of("", {"flow.foo=1"}).find("flow.foo: unknown key"), std::string::npos);
  EXPECT_NE(error_of("colour: red\n").find("colour: unknown key"), std::string::npos);
}

TEST(Config, WrongTypes) {
  std::string e = error_of("train:\n  epochs: ten\n");
  EXPECT_NE(e.find("train.epochs: must be an integer, got 'ten'"), std::string::npos) << e;
  EXPECT_NE(e.find("line 2"), std::string::npos) << e;
  EXPECT_NE(error_of("train:\n  epochs: 1.5\n").find("train.epochs"), std::string::npos);
  EXPECT_NE(error_of("model:\n  hidden_bias: maybe\n").find("model.hidden_bias"),
            std::string::npos);
  EXPECT_NE(error_of("flow: 3\n").find("flow: must be a section"), std::string::npos);
  EXPECT_NE(error_of("flow:\n  step_size: [1, 2]\n").find("flow.step_size"), std::string::npos);
}

TEST(Config, BadValues) {
  EXPECT_NE(error_of("student:\n  particles: 0\n").find("student.particles: must be a positive"),
            std::string::npos);
  EXPECT_NE(error_of("data:\n  train_size: -5\n").find("data.train_size"), std::string::npos);
  EXPECT_NE(error_of("flow:\n  step_size: .nan\n").find("flow.step_size: must be finite"),
            std::string::npos);
  EXPECT_NE(error_of("flow:\n  step_size: -0.1\n").find("flow.step_size: must be positive"),
            std::string::npos);
  EXPECT_NE(error_of("noise:\n  beta0: -1\n").find("noise.beta0"), std::string::npos);
  EXPECT_NE(error_of("model:\n  output: softplus\n").find("model.output: unknown output"),
            std::string::npos);
  EXPECT_NE(error_of("noise:\n  schedule: cosine\n").find("noise.schedule"), std::string::npos);
  EXPECT_NE(error_of("flow:\n  method: sgd\n")
                .find("flow.method: unknown flow method 'sgd' (valid: mmd, diffusion, sobolev, "
                      "drmmd)"),
            std::string::npos);
  EXPECT_NE(error_of("flow:\n  method: sobolev\n").find("noise.beta0: sobolev descent takes no"),
            std::string::npos);
  EXPECT_NE(error_of("student:\n  layout: sparse\n").find("student.layout: unknown layout"),
            std::string::npos);
  EXPECT_NE(error_of("flow:\n  step_factor: 1.5\n").find("flow.step_factor: must be in (0, 1)"),
            std::string::npos);
  EXPECT_NE(error_of("device: tpu\n").find("device: unknown device"), std::string::npos);
  EXPECT_NE(error_of("train:\n  batch: 600\n").find("train.batch: must be at most"),
            std::string::npos);
}

TEST(Config, TeacherDefaultsToTheModelFamily) {
  Config c = parse_config("model:\n  hidden: 5\n  activation: tanh\n");
  EXPECT_EQ(c.teacher.hidden, 5);
  EXPECT_EQ(c.teacher.activation, "tanh");
  c = parse_config("model:\n  hidden: 5\nteacher:\n  hidden: 2\n");
  EXPECT_EQ(c.teacher.hidden, 2);
  EXPECT_EQ(c.model.hidden, 5);
}

TEST(Config, SweepVariants) {
  Config c = parse_config(
      "sweep:\n  seeds: 3\n  variants:\n    plain: {noise.beta0: 0}\n"
      "    sobolev: {flow.method: sobolev, noise.beta0: 0}\n");
  EXPECT_EQ(c.sweep.seeds, 3);
  ASSERT_EQ(c.sweep.variants.size(), 2u);
  EXPECT_EQ(c.sweep.variants[1].first, "sobolev");
  EXPECT_EQ(c.sweep.variants[1].second,
            (std::vector<std::string>{"flow.method=sobolev", "noise.beta0=0"}));
  EXPECT_EQ(to_yaml(parse_config(to_yaml(c))), to_yaml(c));
  EXPECT_NE(error_of("sweep:\n  variants: [a, b]\n").find("sweep.variants"), std::string::npos);
  EXPECT_NE(error_of("sweep:\n  runs: 2\n").find("sweep.runs: unknown key"), std::string::npos);
}

TEST(Config, SyntaxErrorsAndBadSets) {
  EXPECT_NE(error_of("flow:\n  step_size: [1\n").find("test.yaml line"), std::string::npos);
  EXPECT_NE(error_of("", {"novalue"}).find("expected key.path=value"), std::string::npos);
  EXPECT_NE(error_of("seed: 1\n", {"seed.x=1"}).find("'seed' is not a section"), std::string::npos);
  EXPECT_NE(error_of("", {"seed.x=1"}).find("seed: must be an integer"), std::string::npos);
  EXPECT_THROW(load_config("/nonexistent/config.yaml"), ConfigError);
}

TEST(Config, CheckpointEvery) {
  EXPECT_EQ(parse_config("train:\n  checkpoint_every: 0\n").train.checkpoint_every, 0);
  EXPECT_NE(
      error_of("train:\n  checkpoint_every: -1\n").find("train.checkpoint_every: must be >= 0"),
      std::string::npos);
}

TEST(Config, DifferingKeysNamesEachPath) {
  Config a, b;
  EXPECT_TRUE(differing_keys(a, b).empty());
  b.seed = 4;
  b.student.particles = 7;
  b.noise.beta0 = 0.5;
  EXPECT_EQ(differing_keys(a, b),
            (std::vector<std::string>{"seed", "student.particles", "noise.beta0"}));
}

TEST(Io, AtomicWriteReplacesWholeFile) {
  const std::string path = testing::TempDir() + "/mmdflow_atomic.txt";
  write_file_atomic(path, "first");
  write_file_atomic(path, "second");
  EXPECT_EQ(read_file(path), "second");
  EXPECT_THROW(write_file_atomic("/nonexistent-dir/x.txt", "x"), std::runtime_error);
}

}  // namespace
}  // namespace mmdflow
