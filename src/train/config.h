// Typed run configuration. YAML becomes a Config in one place (config.cpp) through one list of
// every key (visit_config below): unknown and repeated keys, empty and bad values are rejected
// with the key's path (and line); to_yaml writes every key back; the resume check and the
// configuration hash of a sharded run read the same list. The defaults are the quick-start
// experiment (configs/quickstart.yaml).
#pragma once
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "data/input.h"
#include "data/targets.h"
#include "models/activation.h"
#include "src/base/errors.h"
#include "src/comm/backend.h"
#include "src/flow/choices.h"
#include "src/flow/schedule.h"
#include "src/kernels/pairwise.h"

namespace mmdflow {

template <>
struct Names<c10::ScalarType> {
  static constexpr const char* what = "dtype";
  static constexpr std::array<std::pair<c10::ScalarType, const char*>, 2> table{
      {{c10::kFloat, "float32"}, {c10::kDouble, "float64"}}};
};

// A named setting of a sweep: "key.path=value" overrides of the configuration.
using Variant = std::pair<std::string, std::vector<std::string>>;

struct Config {
  int64_t seed = 0;
  c10::Device device{c10::kCPU};  // cpu | cuda | cuda:K
  c10::ScalarType dtype = c10::kFloat;
  int64_t threads = 0;  // 0: one per core
  // network: the particles are a student network's hidden units (data, model, teacher);
  // samples: points z_n in R^d flowing toward the target's samples (target, kernel). Both: the
  // student's count and initial law, flow, noise, train, log.
  Problem problem = Problem::Network;

  struct Data {
    InputDist input = InputDist::Sphere;
    // input file: the training and validation sets (data/sample_file.h's read_labelled); the
    // sizes are then the files' rows (resolve_data_files, src/train/build.h)
    std::optional<std::string> train_file, valid_file;
    int64_t dim = 10;  // d
    int64_t train_size = 500;
    int64_t valid_size = 500;
    bool fresh = false;  // new inputs at every step (an epoch is train_size / batch steps)
  } data;

  struct Model {          // the particle family of teacher and student
    int64_t hidden = 3;   // H
    int64_t outputs = 1;  // o
    Activation activation = Activation::ReLU;
    OutputKind output = OutputKind::Gaussian;
    double sigma = 2.0;   // gaussian: exp(-u^2 / sigma^2)
    double lambda = 1.0;  // laplace:  exp(-lambda |u|)
    double c = 1.0;       // imq:      1 / (c^2 + u^2)
    bool hidden_bias = false;
    bool output_bias = false;
  } model;

  struct Teacher {
    int64_t particles = 1;  // M
    double init_mean = 0.0;
    double init_std = 1.0;
    // Unset: the model's. Set to another value, the teacher is misspecified.
    std::optional<int64_t> hidden;
    std::optional<Activation> activation;
    std::optional<std::string> file;  // weights (a run's teacher.pt) instead of drawn particles
  } teacher;

  struct Student {
    int64_t particles = 200;  // N
    double init_mean = 0.001;
    double init_std = 1.0;
    Layout layout = Layout::Block;
    // unset: N(init_mean, init_std^2); network: the initial weights (a .pt of the layout's
    // tensors, as a run's student.pt); samples: the initial points, one a row (.npy, .pt, .csv)
    std::optional<std::string> init_file;
  } student;

  struct Target {  // samples: the target nu*, M samples in R^d
    TargetLaw law = TargetLaw::ThreeRings;
    int64_t size = 300;               // M (law file: the file's rows)
    double df = 3.0;                  // student: degrees of freedom
    std::optional<std::string> file;  // law file: .npy, .pt or .csv, one sample a row
  } target;

  struct Kernel {  // samples: the explicit kernel k of the MMD (docs/math.md)
    PairKernel name = PairKernel::Gaussian;
    double bandwidth = 1.0;  // sigma of gaussian, laplace and imq
    double c = 1.0;          // imq's offset
    int64_t slices = 0;      // energy: random directions a step of the sliced gradient; 0: exact
  } kernel;

  struct Flow {
    Method method = Method::MMD;
    // exact: the population flow along the closed-form kernel's witness, no training data (the
    // family H = 1, relu, identity output, no biases; one process, CPU)
    Witness kernel = Witness::Sampled;
    double step_size = 1.0;  // gamma
    StepKind step_schedule = StepKind::Constant;
    int64_t patience = 20;      // plateau: epochs without a lower train loss before a cut
    double step_factor = 0.5;   // plateau: gamma <- step_factor gamma
    double sobolev_eps = 1e-6;  // sobolev: (S + eps I)^{-1}
    double drmmd_lambda = 1.0;  // drmmd: lambda
    int64_t chunk = 8192;       // particles per chunk; 0: all at once
  } flow;

  struct Noise {
    BetaKind schedule = BetaKind::Step;
    double beta0 = 1.0;
    double factor = 0.5;  // step
    int64_t every = 50;   // step
    double tau = 100.0;   // exponential, inverse
  } noise;

  struct Train {
    int64_t epochs = 300;
    int64_t batch = 50;
    int64_t checkpoint_every = 100;  // epochs between checkpoints; 0: only at the end
  } train;

  struct Log {
    int64_t print_every = 0;     // epochs between plain progress lines; 0: about 20 lines a run
    std::optional<bool> theory;  // theory.csv; unset: with flow.kernel exact or samples only
    int64_t noise_draws = 1;     // draws of w for theory.csv's E ||grad h(z + beta w)||^2 (exact)
    int64_t snapshot_every = 0;  // samples: the particles every so many steps, in snapshots.pt
    bool data = false;           // network: train_data.pt, valid_data.pt {x: [n, d], y: [n, o]}
  } log;

  struct Compare {
    int64_t samples = 10000;  // fresh inputs for the final 1/2 MMD^2
    int64_t nearest = 5;      // nearest student particles listed per teacher particle
  } compare;

  struct Dist {              // sharded runs (WORLD_SIZE > 1)
    double timeout = 300.0;  // seconds a collective or the rendezvous may wait
    Backend backend = Backend::Auto;
  } dist;

  struct Sweep {        // read by `mmdflow sweep`; `train` ignores it
    int64_t seeds = 1;  // seeds 0 .. seeds-1 of every setting
    std::vector<Variant> variants;
  } sweep;

  // The teacher's hidden width and activation, the model's unless set.
  int64_t teacher_hidden() const { return teacher.hidden.value_or(model.hidden); }
  Activation teacher_activation() const { return teacher.activation.value_or(model.activation); }
  bool misspecified() const {
    return teacher_hidden() != model.hidden || teacher_activation() != model.activation;
  }
  bool theory() const {
    return log.theory.value_or(flow.kernel == Witness::Exact || problem == Problem::Samples);
  }
  bool samples() const { return problem == Problem::Samples; }
};

// What a key admits beyond its type: a closed range for numbers, and whether a resumed run may
// change it.
struct Key {
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
  bool above = false;  // lo excluded
  bool below = false;  // hi excluded
  bool resumable = false;
  Key& min(double v) { return lo = v, *this; }
  Key& max(double v) { return hi = v, *this; }
  Key& positive() { return lo = 0, above = true, *this; }
  Key& less_than(double v) { return hi = v, below = true, *this; }
  Key& may_change_on_resume() { return resumable = true, *this; }
};

constexpr double kMaxCount = 1e12;  // any size or count: far past any machine, within int64

// Every key, once, in file order: f.section(name, body) around a section's keys, and
// f.key(name, field, Key) for each key. C is Config or const Config.
template <typename C, typename F>
void visit_config(C& c, F& f) {
  f.key("seed", c.seed, Key().min(0).max(double(std::numeric_limits<int64_t>::max())));
  f.key("device", c.device, Key().may_change_on_resume());
  f.key("dtype", c.dtype, Key());
  f.key("threads", c.threads, Key().min(0).max(4096).may_change_on_resume());
  f.key("problem", c.problem, Key());
  f.section("data", [&] {
    f.key("input", c.data.input, Key());
    f.key("train_file", c.data.train_file, Key());
    f.key("valid_file", c.data.valid_file, Key());
    f.key("dim", c.data.dim, Key().min(1).max(1e6));
    f.key("train_size", c.data.train_size, Key().min(1).max(kMaxCount));
    f.key("valid_size", c.data.valid_size, Key().min(1).max(kMaxCount));
    f.key("fresh", c.data.fresh, Key());
  });
  f.section("model", [&] {
    f.key("hidden", c.model.hidden, Key().min(1).max(1e6));
    f.key("outputs", c.model.outputs, Key().min(1).max(1e6));
    f.key("activation", c.model.activation, Key());
    f.key("output", c.model.output, Key());
    f.key("sigma", c.model.sigma, Key().positive());
    f.key("lambda", c.model.lambda, Key().positive());
    f.key("c", c.model.c, Key().positive());
    f.key("hidden_bias", c.model.hidden_bias, Key());
    f.key("output_bias", c.model.output_bias, Key());
  });
  f.section("teacher", [&] {
    f.key("particles", c.teacher.particles, Key().min(1).max(kMaxCount));
    f.key("init_mean", c.teacher.init_mean, Key());
    f.key("init_std", c.teacher.init_std, Key().min(0));
    f.key("hidden", c.teacher.hidden, Key().min(1).max(1e6));
    f.key("activation", c.teacher.activation, Key());
    f.key("file", c.teacher.file, Key());
  });
  f.section("student", [&] {
    f.key("particles", c.student.particles, Key().min(1).max(kMaxCount));
    f.key("init_mean", c.student.init_mean, Key());
    f.key("init_std", c.student.init_std, Key().min(0));
    f.key("layout", c.student.layout, Key());
    f.key("init_file", c.student.init_file, Key());
  });
  f.section("target", [&] {
    f.key("law", c.target.law, Key());
    f.key("size", c.target.size, Key().min(1).max(kMaxCount));
    f.key("df", c.target.df, Key().positive());
    f.key("file", c.target.file, Key());
  });
  f.section("kernel", [&] {
    f.key("name", c.kernel.name, Key());
    f.key("bandwidth", c.kernel.bandwidth, Key().positive());
    f.key("c", c.kernel.c, Key().positive());
    f.key("slices", c.kernel.slices, Key().min(0).max(kMaxCount));
  });
  f.section("flow", [&] {
    f.key("method", c.flow.method, Key());
    f.key("kernel", c.flow.kernel, Key());
    f.key("step_size", c.flow.step_size, Key().positive());
    f.key("step_schedule", c.flow.step_schedule, Key());
    f.key("patience", c.flow.patience, Key().min(1).max(kMaxCount));
    f.key("step_factor", c.flow.step_factor, Key().positive().less_than(1));
    f.key("sobolev_eps", c.flow.sobolev_eps, Key().positive());
    f.key("drmmd_lambda", c.flow.drmmd_lambda, Key().positive());
    f.key("chunk", c.flow.chunk, Key().min(0).max(kMaxCount));
  });
  f.section("noise", [&] {
    f.key("schedule", c.noise.schedule, Key());
    f.key("beta0", c.noise.beta0, Key().min(0));
    f.key("factor", c.noise.factor, Key().positive());
    f.key("every", c.noise.every, Key().min(1).max(kMaxCount));
    f.key("tau", c.noise.tau, Key().positive());
  });
  f.section("train", [&] {
    f.key("epochs", c.train.epochs, Key().min(0).max(kMaxCount).may_change_on_resume());
    f.key("batch", c.train.batch, Key().min(1).max(kMaxCount));
    f.key("checkpoint_every", c.train.checkpoint_every,
          Key().min(0).max(kMaxCount).may_change_on_resume());
  });
  f.section("log", [&] {
    f.key("print_every", c.log.print_every, Key().min(0).max(kMaxCount).may_change_on_resume());
    f.key("theory", c.log.theory, Key());
    f.key("noise_draws", c.log.noise_draws, Key().min(1).max(1e6));
    f.key("snapshot_every", c.log.snapshot_every,
          Key().min(0).max(kMaxCount).may_change_on_resume());
    f.key("data", c.log.data, Key());
  });
  f.section("compare", [&] {
    f.key("samples", c.compare.samples, Key().min(1).max(kMaxCount).may_change_on_resume());
    f.key("nearest", c.compare.nearest, Key().min(1).max(kMaxCount).may_change_on_resume());
  });
  f.section("dist", [&] {
    f.key("timeout", c.dist.timeout, Key().positive().max(1e6).may_change_on_resume());
    f.key("backend", c.dist.backend, Key().may_change_on_resume());
  });
  f.section("sweep", [&] {
    f.key("seeds", c.sweep.seeds, Key().min(1).max(1e6));
    f.key("variants", c.sweep.variants, Key());
  });
}

// Reads the file at path (a regular file of at most kMaxConfigBytes; empty path: the defaults),
// applies "key.path=value" overrides, validates. Throws ConfigError.
constexpr size_t kMaxConfigBytes = 1 << 20;
Config load_config(const std::string& path, const std::vector<std::string>& sets = {});
// The same from YAML text; `source` names it in messages.
Config parse_config(const std::string& yaml, const std::vector<std::string>& sets = {},
                    const std::string& source = "<config>");
std::string to_yaml(const Config& c);

// Every key as (dotted path, value as text), in file order.
struct KeyText {
  std::string path, text;
  bool resumable;
};
std::vector<KeyText> key_texts(const Config& c);
// The keys whose values differ between a and b, e.g. train.epochs: 300 against 500.
struct KeyDiff {
  std::string path, a, b;
  bool resumable;
};
std::vector<KeyDiff> differing_keys(const Config& a, const Config& b);
// "train.epochs, train.checkpoint_every, ...": the keys a resumed run may change.
std::string resumable_keys();

}  // namespace mmdflow
