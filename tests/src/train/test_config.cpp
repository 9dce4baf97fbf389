#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "src/base/io.h"
#include "src/train/config.h"

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
    EXPECT_EQ(c.data.input, InputDist::Sphere);
    EXPECT_EQ(c.data.train_size, 1000);
    EXPECT_EQ(c.data.valid_size, 1000);
    EXPECT_EQ(c.model.hidden, 3);
    EXPECT_EQ(c.model.output, OutputKind::Gaussian);
    EXPECT_EQ(c.model.sigma, 2.0);
    EXPECT_EQ(c.teacher.particles, 1);
    EXPECT_EQ(c.teacher.init_mean, 0.0);
    EXPECT_EQ(c.teacher.init_std, 1.0);
    EXPECT_EQ(c.student.particles, 1000);
    EXPECT_EQ(c.student.init_mean, 0.001);
    EXPECT_EQ(c.student.init_std, 1.0);
    EXPECT_EQ(c.train.batch, 100);
    EXPECT_EQ(c.train.epochs, 10000);
    EXPECT_EQ(c.noise.schedule, BetaKind::Step);
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
  EXPECT_EQ(c.model.output, OutputKind::Laplace);
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
  EXPECT_NE(error_of("student:\n  particles: 0\n").find("student.particles: must be in [1, 1e+12]"),
            std::string::npos);
  EXPECT_NE(error_of("data:\n  train_size: -5\n").find("data.train_size"), std::string::npos);
  EXPECT_NE(error_of("flow:\n  step_size: .nan\n").find("flow.step_size: must be finite"),
            std::string::npos);
  EXPECT_NE(error_of("flow:\n  step_size: -0.1\n").find("flow.step_size: must be positive"),
            std::string::npos);
  EXPECT_NE(error_of("noise:\n  beta0: -1\n").find("noise.beta0"), std::string::npos);
  EXPECT_NE(error_of("model:\n  output: softplus\n")
                .find("model.output: must be one of identity, gaussian, laplace, imq, cosine, "
                      "power, got 'softplus'"),
            std::string::npos);
  EXPECT_NE(error_of("noise:\n  schedule: cosine\n").find("noise.schedule"), std::string::npos);
  EXPECT_NE(error_of("flow:\n  method: sgd\n")
                .find("flow.method: must be one of mmd, diffusion, sobolev, drmmd, got 'sgd'"),
            std::string::npos);
  EXPECT_NE(error_of("flow:\n  method: sobolev\n").find("noise.beta0: sobolev descent takes no"),
            std::string::npos);
  EXPECT_NE(error_of("student:\n  layout: sparse\n").find("student.layout: must be one of"),
            std::string::npos);
  EXPECT_NE(error_of("flow:\n  step_factor: 1.5\n").find("flow.step_factor: must be in (0, 1)"),
            std::string::npos);
  EXPECT_NE(error_of("device: tpu\n").find("device: must be cpu, cuda or cuda:K"),
            std::string::npos);
  EXPECT_NE(error_of("train:\n  batch: 600\n").find("train.batch: must be at most"),
            std::string::npos);
}

// Unset, the teacher's hidden width and activation follow the model's, also when the model's
// change by --set after the file was written: no silent misspecification.
TEST(Config, TeacherDefaultsToTheModelFamily) {
  Config c = parse_config("model:\n  hidden: 5\n  activation: tanh\n");
  EXPECT_EQ(c.teacher_hidden(), 5);
  EXPECT_EQ(c.teacher_activation(), Activation::Tanh);
  EXPECT_FALSE(c.misspecified());
  c = parse_config("model:\n  hidden: 5\nteacher:\n  hidden: 2\n");
  EXPECT_EQ(c.teacher_hidden(), 2);
  EXPECT_EQ(c.model.hidden, 5);
  EXPECT_TRUE(c.misspecified());
  Config q = load_config(kConfigs + "quickstart.yaml", {"model.hidden=1"});
  EXPECT_EQ(q.teacher_hidden(), 1);
  EXPECT_FALSE(q.misspecified());
  // The resolved file keeps "unset" (~), so it too follows a later --set.
  Config r = parse_config(to_yaml(load_config(kConfigs + "quickstart.yaml")), {"model.hidden=2"});
  EXPECT_EQ(r.teacher_hidden(), 2);
  EXPECT_FALSE(r.teacher.hidden.has_value());
  EXPECT_EQ(parse_config("teacher:\n  hidden: ~\n").teacher.hidden, std::nullopt);
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
  EXPECT_NE(error_of("", {"seed.x=1"}).find("seed: must be a single value"), std::string::npos);
  EXPECT_THROW(load_config("/nonexistent/config.yaml"), ConfigError);
}

TEST(Config, CheckpointEvery) {
  EXPECT_EQ(parse_config("train:\n  checkpoint_every: 0\n").train.checkpoint_every, 0);
  EXPECT_NE(error_of("train:\n  checkpoint_every: -1\n")
                .find("train.checkpoint_every: must be in [0, 1e+12]"),
            std::string::npos);
}

TEST(Config, DifferingKeysNamesEachPath) {
  Config a, b;
  EXPECT_TRUE(differing_keys(a, b).empty());
  b.seed = 4;
  b.student.particles = 7;
  b.noise.beta0 = 0.5;
  b.train.epochs = 9;
  std::vector<std::string> paths;
  for (const KeyDiff& d : differing_keys(a, b)) paths.push_back(d.path);
  EXPECT_EQ(paths,
            (std::vector<std::string>{"seed", "student.particles", "noise.beta0", "train.epochs"}));
  const KeyDiff d = differing_keys(a, b)[2];
  EXPECT_EQ(d.a, "1");
  EXPECT_EQ(d.b, "0.5");
  EXPECT_FALSE(d.resumable);
  EXPECT_TRUE(differing_keys(a, b)[3].resumable);
}

// One list of keys serves reading, writing and comparing: every key written reads back to the
// same text, and every key of the list appears in the written file.
TEST(Config, EveryKeyRoundTrips) {
  Config c = parse_config(
      "seed: 7\ndevice: cuda:3\ndtype: float64\nthreads: 2\ndata: {input: gaussian, dim: 4, "
      "fresh: true}\nmodel: {hidden: 2, outputs: 3, activation: tanh, output: imq, c: 0.5, "
      "hidden_bias: true}\nteacher: {hidden: 4, activation: relu}\nstudent: {layout: dense}\n"
      "flow: {method: drmmd, step_schedule: plateau, step_factor: 0.25}\n"
      "noise: {schedule: inverse, tau: 3}\ndist: {timeout: 12.5, backend: gloo}\n"
      "sweep: {variants: {a: {seed: 1}}}\n");
  const std::string yaml = to_yaml(c);
  EXPECT_EQ(to_yaml(parse_config(yaml)), yaml);
  const auto keys = key_texts(c);
  for (const KeyText& k : keys) {
    const std::string leaf = k.path.substr(k.path.rfind('.') + 1);
    EXPECT_NE(yaml.find(leaf + ":"), std::string::npos) << k.path;
  }
  EXPECT_TRUE(differing_keys(parse_config(yaml), c).empty());
  EXPECT_EQ(c.device, c10::Device(c10::kCUDA, 3));
  EXPECT_EQ(c.dtype, c10::kDouble);
  EXPECT_EQ(c.dist.backend, Backend::Gloo);
  EXPECT_EQ(c.dist.timeout, 12.5);
  EXPECT_EQ(
      resumable_keys(),
      "device, threads, train.epochs, train.checkpoint_every, log.print_every, log.snapshot_every, "
      "compare.samples, compare.nearest, dist.timeout, dist.backend");
}

// A key given twice is an error naming both lines, in a section or in the sweep's variants.
TEST(Config, RepeatedKeysAreRefused) {
  std::string e = error_of("seed: 0\nseed: 1\n");
  EXPECT_NE(e.find("seed: given twice (test.yaml line 1) and line 2"), std::string::npos) << e;
  e = error_of("data:\n  dim: 3\nflow:\n  step_size: 1\ndata:\n  dim: 4\n");
  EXPECT_NE(e.find("data: given twice"), std::string::npos) << e;
  e = error_of("flow:\n  chunk: 5\n  chunk: 6\n");
  EXPECT_NE(e.find("flow.chunk: given twice"), std::string::npos) << e;
  e = error_of("sweep:\n  variants:\n    a: {seed: 1, seed: 2}\n");
  EXPECT_NE(e.find("given twice"), std::string::npos) << e;
}

// An empty value never means the default.
TEST(Config, EmptyValuesAreRefused) {
  EXPECT_NE(error_of("", {"train.epochs="}).find("--set train.epochs: empty value"),
            std::string::npos);
  EXPECT_NE(error_of("", {"train.epochs= "}).find("empty value"), std::string::npos);
  EXPECT_NE(error_of("train:\n  epochs:\n").find("train.epochs: has no value (test.yaml line 2)"),
            std::string::npos);
  EXPECT_NE(error_of("", {"train."}).find("expected key.path=value"), std::string::npos);
  EXPECT_NE(error_of("", {"train.=4"}).find("empty key in the path"), std::string::npos);
}

// Integers are read whole and range-checked: never truncated, never saturated.
TEST(Config, IntegersOutOfRangeAreRefused) {
  EXPECT_NE(error_of("", {"threads=2147483648"}).find("threads: must be in [0, 4096]"),
            std::string::npos);
  EXPECT_NE(error_of("", {"threads=4294967297"}).find("threads: must be in [0, 4096]"),
            std::string::npos);
  EXPECT_NE(error_of("", {"seed=99999999999999999999"}).find("seed: is out of range"),
            std::string::npos);
  EXPECT_NE(error_of("", {"compare.samples=1e12"}).find("compare.samples: must be an integer"),
            std::string::npos);
  EXPECT_NE(error_of("", {"device=cuda:99999999999999999999"}).find("device: must be cpu"),
            std::string::npos);
  EXPECT_NE(error_of("", {"device=cuda:-1"}).find("device: must be cpu"), std::string::npos);
  EXPECT_EQ(parse_config("", {"threads=+3"}).threads, 3);
}

// Only a regular file of at most 1 MiB is a config; long values are cut short in messages.
TEST(Config, FilesAreBoundedAndRegular) {
  EXPECT_NE(std::string(error_of("")).size(), 1u);
  const std::string fifo = testing::TempDir() + "/mmdflow_fifo.yaml";
  std::filesystem::remove(fifo);
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);  // no writer: a blocking open would wait for ever
  for (const std::string& bad : {std::string("/tmp"), std::string("/dev/zero"), fifo}) {
    try {
      load_config(bad);
      ADD_FAILURE() << bad;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("not a regular file"), std::string::npos) << e.what();
    }
  }
  std::filesystem::remove(fifo);
  const std::string big = testing::TempDir() + "/mmdflow_big.yaml";
  {
    std::ofstream out(big);
    out << "seed: 0\n# " << std::string(kMaxConfigBytes, 'x') << "\n";
  }
  try {
    load_config(big);
    ADD_FAILURE();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("more than the 1048576"), std::string::npos) << e.what();
  }
  std::filesystem::remove(big);
  const std::string e = error_of("flow:\n  method: " + std::string(100000, 'q') + "\n");
  EXPECT_LT(e.size(), 300u) << e;
  EXPECT_NE(e.find("qqq...'"), std::string::npos) << e;
}

// N6: a --set value of YAML aliases nested ten deep (300 bytes, 9^10 nodes) was copied node by
// node: 40 s, 4 GB, then std::bad_alloc (exit 1). At most 10000 nodes are copied.
TEST(Config, AliasBombInASetIsRefused) {
  std::string bomb = "[&l0 [1, 1, 1, 1, 1, 1, 1, 1, 1]";
  for (int k = 1; k < 10; ++k) {
    bomb += fmt::format(", &l{} [", k);
    for (int i = 0; i < 9; ++i) bomb += fmt::format("{}*l{}", i ? ", " : "", k - 1);
    bomb += "]";
  }
  bomb += "]";
  EXPECT_NE(
      error_of("", {"seed=" + bomb}).find("--set seed: more than 1000 YAML nodes or 32 levels"),
      std::string::npos);
}

// N18: the documents after a config's first were ignored silently; they are refused as a key
// given twice is, in a file and in a --set.
TEST(Config, SeveralDocumentsAreRefused) {
  EXPECT_NE(error_of("seed: 1\n---\nseed: 2\n")
                .find("test.yaml line 3: a second YAML document ('---'); a config is one"),
            std::string::npos);
  EXPECT_NE(error_of("", {"seed=1\n---\n2"}).find("a second YAML document"), std::string::npos);
  EXPECT_EQ(parse_config("---\nseed: 3\n").seed, 3);
}

// An alias inside its own anchor makes a value without end; a copy of it recursed 10 000 levels
// before the node bound stopped it, which overflowed the stack under ASan (found by fuzz_set and
// fuzz_config, whose first line is also a --set). Values nest at most 32 levels below the top.
TEST(Config, AliasInsideItsOwnAnchorIsRefused) {
  for (const char* value : {"&b [*b]", "a: &b {x: *b}", "[&b [1, *b]]"})
    EXPECT_NE(error_of("", {std::string("seed=") + value})
                  .find("--set seed: more than 1000 YAML nodes or 32 levels (aliases?)"),
              std::string::npos)
        << value;
  EXPECT_NE(error_of("", {"seed=" + std::string(34, '[') + std::string(34, ']')}).find("32 levels"),
            std::string::npos);
  EXPECT_EQ(error_of("", {"seed=" + std::string(33, '[') + std::string(33, ']')}),
            "seed: must be a single value");
}

// A token outside any collection: yaml-cpp 0.7's LoadAll read it as an empty document it never got
// past, filling memory until killed (found by fuzz_set: `--set 'x=!a,'` took gigabytes in seconds;
// a config of one ',' alike).
TEST(Config, StrayCommaIsRefusedAtOnce) {
  EXPECT_EQ(error_of(","), "test.yaml line 1 column 1: not YAML (a ',' outside any list or map?)");
  EXPECT_EQ(error_of("{seed: 3}\n,\n"),
            "test.yaml line 2 column 1: not YAML (a ',' outside any list or map?)");
  for (const char* value : {"!a,", "&a,", "[1], 2", "!a ,"})
    EXPECT_NE(error_of("", {std::string("seed=") + value}).find("--set seed line 1 column"),
              std::string::npos)
        << value;
}

// flow.kernel exact: the family of the closed-form kernel and a flow with a population form, or
// the first key (in file order) that breaks it; log.theory follows it unless set.
TEST(Config, ExactKernelNeedsItsFamily) {
  const std::vector<std::string> family = {"flow.kernel=exact", "model.hidden=1",
                                           "model.output=identity", "dtype=float64"};
  const Config c = parse_config("", family);
  EXPECT_EQ(c.flow.kernel, Witness::Exact);
  EXPECT_TRUE(c.theory());
  EXPECT_FALSE(Config{}.theory());
  EXPECT_EQ(to_yaml(parse_config(to_yaml(c))), to_yaml(c));
  auto with = [&](const std::vector<std::string>& more) {
    std::vector<std::string> sets = family;
    sets.insert(sets.end(), more.begin(), more.end());
    return sets;
  };
  EXPECT_FALSE(parse_config("", with({"log.theory=false"})).theory());
  EXPECT_TRUE(parse_config("", {"log.theory=true"}).theory());
  EXPECT_EQ(error_of("", {"flow.kernel=exact"}), "model.hidden: flow.kernel exact needs 1, got 3");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"model.activation=tanh", "model.activation: flow.kernel exact needs relu, got tanh"},
      {"model.output=gaussian", "model.output: flow.kernel exact needs identity, got gaussian"},
      {"model.hidden_bias=true", "model.hidden_bias: flow.kernel exact needs false, got true"},
      {"model.output_bias=true", "model.output_bias: flow.kernel exact needs false, got true"},
      {"teacher.hidden=2", "teacher.hidden: flow.kernel exact needs 1, got 2"},
      {"teacher.activation=tanh", "teacher.activation: flow.kernel exact needs relu, got tanh"},
      {"student.layout=dense", "student.layout: flow.kernel exact needs block"},
      {"device=cuda", "device: flow.kernel exact needs cpu"},
      {"flow.method=sobolev", "flow.method: sobolev descent has no population form"},
      {"flow.kernel=bogus", "flow.kernel: must be one of sampled, exact, got 'bogus'"},
  };
  for (const auto& [set, expect] : cases) {
    const std::string e = error_of("", with({set}));
    EXPECT_EQ(e.find(expect), 0u) << set << ": " << e;
  }
  for (const char* set : {"flow.method=diffusion", "flow.method=drmmd", "model.outputs=3",
                          "data.input=gaussian", "dtype=float32"})
    EXPECT_EQ(error_of("", with({set})), "") << set;
}

// log.noise_draws: 1 .. 10^6 draws of w for theory.csv, more than one for the exact kernel's
// theory only (a sampled run's row holds its last step's own draw).
TEST(Config, NoiseDrawsAreTheExactTheorys) {
  const std::vector<std::string> exact = {"flow.kernel=exact", "model.hidden=1",
                                          "model.output=identity", "log.noise_draws=100"};
  EXPECT_EQ(Config{}.log.noise_draws, 1);
  EXPECT_EQ(parse_config("", exact).log.noise_draws, 100);
  EXPECT_EQ(error_of("", {"log.noise_draws=0"}).find("log.noise_draws: "), 0u);
  EXPECT_EQ(error_of("", {"log.noise_draws=1000001"}).find("log.noise_draws: "), 0u);
  EXPECT_EQ(error_of("", {"log.noise_draws=1"}), "");
  EXPECT_EQ(error_of("", {"log.noise_draws=2", "log.theory=true"}),
            "log.noise_draws: 2 draws need flow.kernel exact and log.theory (a sampled run's "
            "theory.csv holds its last step's own draw)");
  std::vector<std::string> off = exact;
  off.push_back("log.theory=false");
  EXPECT_EQ(error_of("", off).find("log.noise_draws: 100 draws need"), 0u);
}

// kernel.slices: the energy kernel's sliced gradient, for problem samples, the flows without
// kernel matrices, on CPU; each refusal names the key.
TEST(Config, SlicesNeedTheEnergyKernel) {
  const std::vector<std::string> sliced = {"problem=samples", "kernel.name=energy",
                                           "kernel.slices=100"};
  const Config c = parse_config("", sliced);
  EXPECT_EQ(c.kernel.slices, 100);
  EXPECT_EQ(Config{}.kernel.slices, 0);
  EXPECT_EQ(to_yaml(parse_config(to_yaml(c))), to_yaml(c));
  auto with = [&](const std::vector<std::string>& more) {
    std::vector<std::string> sets = sliced;
    sets.insert(sets.end(), more.begin(), more.end());
    return sets;
  };
  EXPECT_EQ(error_of("", with({"flow.method=diffusion"})), "");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"kernel.name=gaussian",
       "kernel.slices: the sliced gradient needs kernel.name energy, got "
       "gaussian"},
      {"flow.method=drmmd", "kernel.slices: flow.method drmmd needs the kernel's matrices"},
      {"flow.method=sobolev", "kernel.slices: flow.method sobolev needs the kernel's matrices"},
      {"device=cuda", "kernel.slices: the sliced gradient runs on CPU, got device cuda"},
      {"problem=network", "kernel.slices: the sliced gradient is problem samples' only"},
      {"kernel.slices=-1", "kernel.slices: must be in [0, 1e+12], got '-1'"},
  };
  for (const auto& [set, expect] : cases) {
    const std::string e = error_of("", with({set}));
    EXPECT_EQ(e.find(expect), 0u) << set << ": " << e;
  }
}

}  // namespace
}  // namespace mmdflow
