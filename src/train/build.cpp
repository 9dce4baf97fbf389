#include "src/train/build.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <optional>

#include "data/sample_file.h"
#include "models/weights.h"
#include "src/base/device.h"
#include "src/base/random.h"

namespace mmdflow {

ParticleFamily family_of(const Config& c) {
  ParticleFamily f;
  f.dim = c.data.dim;
  f.hidden = c.model.hidden;
  f.outputs = c.model.outputs;
  f.activation = c.model.activation;
  f.out.kind = c.model.output;
  f.out.param = f.out.kind == OutputKind::Gaussian  ? c.model.sigma
                : f.out.kind == OutputKind::Laplace ? c.model.lambda
                                                    : c.model.c;
  f.hidden_bias = c.model.hidden_bias;
  f.output_bias = c.model.output_bias;
  return f;
}

ParticleFamily teacher_family_of(const Config& c) {
  ParticleFamily f = family_of(c);
  f.hidden = c.teacher_hidden();
  f.activation = c.teacher_activation();
  return f;
}

BetaSchedule beta_schedule_of(const Config& c) {
  BetaSchedule s;
  s.kind = c.noise.schedule;
  s.beta0 = c.noise.beta0;
  s.factor = c.noise.factor;
  s.every = c.noise.every;
  s.tau = c.noise.tau;
  return s;
}

StepSchedule step_schedule_of(const Config& c) {
  StepSchedule s;
  s.kind = c.flow.step_schedule;
  s.step_size = c.flow.step_size;
  s.patience = c.flow.patience;
  s.factor = c.flow.step_factor;
  return s;
}

StepOptions step_options_of(const Config& c) {
  StepOptions o;
  o.method = c.flow.method;
  o.step_size = c.flow.step_size;
  o.sobolev_eps = c.flow.sobolev_eps;
  o.drmmd_lambda = c.flow.drmmd_lambda;
  return o;
}

WeightSchema weight_schema_of(const Config& c) {
  if (c.samples()) return point_schema(c.student.particles, sample_dim(c));
  return weight_schema(c.student.layout, family_of(c), c.student.particles);
}

int64_t steps_per_epoch(const Config& c) {
  if (c.samples()) return 1;
  return (c.data.train_size + c.train.batch - 1) / c.train.batch;
}

bool draws_order(const Config& c) {
  return !c.samples() && !c.data.fresh && c.flow.kernel == Witness::Sampled;
}

at::Tensor target_samples(const Config& c) {
  if (c.target.law == TargetLaw::File) return read_samples(*c.target.file);
  at::Generator gen = stream_generator(c.seed, kDataStream);
  return draw_target(c.target.law, c.target.size, c.data.dim, c.target.df, gen);
}

int64_t sample_dim(const Config& c) {
  if (c.target.law == TargetLaw::File) return read_samples(*c.target.file).size(1);
  return law_dim(c.target.law, c.data.dim);
}

at::Tensor initial_points(const Config& c, int64_t d) {
  const int64_t N = c.student.particles;
  if (!c.student.init_file) {
    at::Generator gen = stream_generator(c.seed, kStudentStream);
    return at::normal(c.student.init_mean, c.student.init_std, {N, d}, gen,
                      at::TensorOptions().dtype(at::kDouble));
  }
  const std::string& path = *c.student.init_file;
  at::Tensor Z = read_samples(path);
  if (Z.size(1) != d)
    throw ConfigError(
        fmt::format("student.init_file: {} has points of dimension {}, the target's "
                    "are of {}",
                    shorten(path), Z.size(1), d));
  if (Z.size(0) != N)
    throw ConfigError(fmt::format("student.init_file: {} has {} points, student.particles is {}",
                                  shorten(path), Z.size(0), N));
  return Z;
}

Shard shard_of(const Config& c, int rank, int world) {
  const int64_t N = c.student.particles;
  const auto [b0, b1] = block_range((N + kNoiseBlock - 1) / kNoiseBlock, rank, world);
  return {b0 * kNoiseBlock, std::min(N, b1 * kNoiseBlock), N};
}

void check_shardable(const Config& c, int world) {
  if (world > 1 && c.student.layout == Layout::Dense)
    throw ConfigError(fmt::format(
        "student.layout: dense cannot be sharded over the {} processes of WORLD_SIZE: its second "
        "layer couples every particle (use the block layout, or one process)",
        world));
  if (world > 1 && c.flow.kernel == Witness::Exact)
    throw ConfigError(fmt::format(
        "flow.kernel: exact cannot be sharded over the {} processes of WORLD_SIZE: its witness "
        "couples every particle (use one process)",
        world));
}

c10::Device device_of(const Config& c, const Comm& comm) {
  c10::Device d = c.device;
  if (d.is_cuda() && !d.has_index() && comm.world() > 1)
    d = c10::Device(c10::kCUDA, c10::DeviceIndex(comm.local_rank()));
  return resolve_device(d);
}

namespace {

// data file `key` at `path`, its columns checked against the model's.
LabelledData checked_data(const Config& c, const std::string& key, const std::string& path,
                          bool follow_links = true) {
  LabelledData d;
  try {
    d = read_labelled(path, c.model.outputs, follow_links);
  } catch (const ConfigError& e) {
    throw ConfigError(key + ": " + e.what());
  }
  if (d.x.size(1) != c.data.dim)
    throw ConfigError(fmt::format("{}: {} has {} input column{}, data.dim is {}", key,
                                  shorten(path), d.x.size(1), d.x.size(1) == 1 ? "" : "s",
                                  c.data.dim));
  if (d.y.size(1) != c.model.outputs)
    throw ConfigError(fmt::format("{}: {} has {} output column{}, model.outputs is {}", key,
                                  shorten(path), d.y.size(1), d.y.size(1) == 1 ? "" : "s",
                                  c.model.outputs));
  return d;
}

}  // namespace

void resolve_data_files(Config& c) {
  if (c.samples() || c.data.input != InputDist::File) return;
  c.data.train_size = checked_data(c, "data.train_file", *c.data.train_file).x.size(0);
  c.data.valid_size = checked_data(c, "data.valid_file", *c.data.valid_file).x.size(0);
  if (c.train.batch > c.data.train_size)
    throw ConfigError(
        fmt::format("train.batch: must be at most the {} rows of data.train_file {}, "
                    "got {}",
                    c.data.train_size, shorten(*c.data.train_file), c.train.batch));
}

Dataset data_file(const Config& c, const std::string& key, const std::string& path, c10::Device dev,
                  bool follow_links) {
  const LabelledData d = checked_data(c, key, path, follow_links);
  const auto opts = at::TensorOptions().dtype(c.dtype).device(dev);
  return {d.x.to(opts), d.y.to(opts)};
}

bool has_teacher(const Config& c) {
  return !c.samples() && (c.data.input != InputDist::File || c.teacher.file);
}

namespace {

// The weights file `key` (teacher.file, student.init_file), checked against specs in float32 or
// float64, then in the run's dtype on dev.
NamedTensors weights_file(const Config& c, const std::string& key, const std::string& path,
                          const std::vector<WeightSpec>& specs, c10::Device dev) {
  NamedTensors w;
  try {
    w = load_weights(path, specs, sizeof(double), /*follow_links=*/true);
    const c10::ScalarType type = w.empty() ? c.dtype : w[0].second.scalar_type();
    check_weights(w, specs, type == at::kDouble ? at::kDouble : at::kFloat, shorten(path));
  } catch (const CheckpointError& e) {
    throw ConfigError(fmt::format("{}: {}", key, e.what()));
  }
  for (auto& [name, t] : w) t = t.to(at::TensorOptions().dtype(c.dtype).device(dev));
  return w;
}

// The options of a measure drawn N(init_mean, init_std^2) in the run's dtype, on dev.
template <typename Measure>  // Config::Teacher or Config::Student
ParticleNetOptions options_of(const Config& c, const Measure& m, const ParticleFamily& fam,
                              c10::Device dev) {
  return ParticleNetOptions(m.particles, fam)
      .init_mean(m.init_mean)
      .init_std(m.init_std)
      .dtype(c.dtype)
      .device(dev);
}

}  // namespace

ParticleNet make_teacher(const Config& c, c10::Device dev, at::Generator gen) {
  const ParticleFamily fam = teacher_family_of(c);
  if (!c.teacher.file) return ParticleNet(options_of(c, c.teacher, fam, dev), gen);
  return ParticleNet(fam, particles_of(weights_file(c, "teacher.file", *c.teacher.file,
                                                    block_weights(fam, c.teacher.particles), dev)));
}

std::unique_ptr<Student> make_student(const Config& c, c10::Device dev, at::Generator gen,
                                      Shard shard) {
  const ParticleFamily fam = family_of(c);
  const int64_t N = c.student.particles;
  if (shard.total == 0) shard = {0, N, N};
  if (c.student.init_file) {  // this shard's rows of the whole measure's weights
    const WeightSchema schema = weight_schema_of(c);
    NamedTensors w = weights_file(c, "student.init_file", *c.student.init_file,
                                  schema.specs(schema.by_rows ? N : 0), dev);
    if (schema.by_rows)
      for (auto& [name, t] : w) t = t.narrow(0, shard.begin, shard.size()).contiguous();
    return student_of(c, w, shard);
  }
  if (c.student.layout == Layout::Dense) {
    TORCH_CHECK(shard.size() == N, "the dense layout cannot be sharded");
    return make_dense_student(fam, N, c.student.init_mean, c.student.init_std,
                              at::TensorOptions().dtype(c.dtype).device(dev), gen);
  }
  const auto opts = options_of(c, c.student, fam, dev).first(shard.begin).last(shard.end);
  return make_block_student(ParticleNet(opts, gen), c.flow.chunk, Impl::Auto, shard);
}

std::unique_ptr<Student> student_of(const Config& c, const NamedTensors& w, Shard shard) {
  const ParticleFamily fam = family_of(c);
  if (c.student.layout == Layout::Block)
    return make_block_student(ParticleNet(fam, particles_of(w)), c.flow.chunk, Impl::Auto, shard);
  auto weight = [&](const char* name) {
    for (const auto& [n, t] : w)
      if (n == name) return t;
    return at::Tensor();
  };
  return make_dense_student(fam, {weight("W1"), weight("b1"), weight("W2"), weight("b2")});
}

namespace {

// The network family: a teacher (drawn or read; none for data files alone), its data (drawn and
// labelled by it, or read), the student (this rank's shard).
void build_network(const Config& c, const Comm& comm, RunParts& p) {
  std::optional<ParticleNet> teacher;
  if (has_teacher(c)) teacher = make_teacher(c, p.device, stream_generator(c.seed, kTeacherStream));
  std::unique_ptr<Student> student =
      make_student(c, p.device, stream_generator(c.seed, kStudentStream),
                   shard_of(c, comm.rank(), comm.world()));
  // Drawn with the exact kernel too, which needs no training set: the validation set is then the
  // sampled run's.
  Dataset train, valid;
  if (c.data.input == InputDist::File) {
    train = data_file(c, "data.train_file", *c.data.train_file, p.device);
    valid = data_file(c, "data.valid_file", *c.data.valid_file, p.device);
  } else {
    at::Generator data_gen = stream_generator(c.seed, kDataStream);
    train = make_dataset(c.data.input, c.data.train_size, *teacher, data_gen);
    valid = make_dataset(c.data.input, c.data.valid_size, *teacher, data_gen);
  }
  p.results = make_network_results(c, *student, teacher, train, valid);
  if (c.flow.kernel == Witness::Exact)
    p.stepper =
        make_exact_stepper(*student, *teacher, c.data.input, std::move(valid), c.log.noise_draws);
  else
    p.stepper =
        make_sampled_stepper(*student, teacher, c.data.input, std::move(train), std::move(valid),
                             c.train.batch, c.data.fresh, sub_seed(c.seed, kDeviceStream));
  p.measure = std::move(student);
}

// The samples family: the target, the points (whole on every rank, this rank's rows moved).
void build_samples(const Config& c, const Comm& comm, RunParts& p) {
  const auto opts = at::TensorOptions().dtype(c.dtype).device(p.device);
  const at::Tensor U = target_samples(c).to(opts);
  auto points = std::make_unique<Points>(initial_points(c, U.size(1)).to(opts),
                                         shard_of(c, comm.rank(), comm.world()));
  SampleTarget target = make_sample_target(U, {c.kernel.name, c.kernel.bandwidth, c.kernel.c},
                                           c.flow.method, c.flow.drmmd_lambda);
  target.slices = c.kernel.slices;
  p.stepper = make_samples_stepper(*points, target);
  p.results = make_samples_results(c, *points, target);
  p.measure = std::move(points);
}

}  // namespace

RunParts build_parts(const Config& c, const Comm& comm) {
  check_shardable(c, comm.world());
  RunParts p;
  p.device = device_of(c, comm);
  p.beta = beta_schedule_of(c);
  p.steps = step_schedule_of(c);
  if (c.samples())
    build_samples(c, comm, p);
  else
    build_network(c, comm, p);
  return p;
}

}  // namespace mmdflow
