#include "src/train/trainer.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>

#include <chrono>
#include <cmath>

#include "src/base/device.h"
#include "src/base/random.h"
#include "src/flow/exact.h"
#include "src/kernels/arccos.h"

namespace mmdflow {
namespace {

constexpr int64_t kEvalBatch = 1000;  // inputs per product when evaluating a whole set

}  // namespace

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

namespace {

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

Shard shard_of(const Config& c, int rank, int world) {
  const int64_t N = c.student.particles, blocks = (N + kNoiseBlock - 1) / kNoiseBlock;
  const int64_t b0 = blocks * rank / world, b1 = blocks * (rank + 1) / world;
  return {b0 * kNoiseBlock, std::min(N, b1 * kNoiseBlock), N};
}

ParticleNet make_teacher(const Config& c, c10::Device dev, at::Generator gen) {
  return ParticleNet(options_of(c, c.teacher, teacher_family_of(c), dev), gen);
}

std::unique_ptr<Student> make_student(const Config& c, c10::Device dev, at::Generator gen,
                                      Shard shard) {
  const ParticleFamily fam = family_of(c);
  const int64_t N = c.student.particles;
  if (shard.total == 0) shard = {0, N, N};
  if (c.student.layout == Layout::Dense) {
    TORCH_CHECK(shard.size() == N, "the dense layout cannot be sharded");
    return make_dense_student(fam, N, c.student.init_mean, c.student.init_std,
                              at::TensorOptions().dtype(c.dtype).device(dev), gen);
  }
  const auto opts = options_of(c, c.student, fam, dev).first(shard.begin).last(shard.end);
  return make_block_student(ParticleNet(opts, gen), c.flow.chunk, Impl::Auto, shard);
}

StepOptions step_options_of(const Config& c) {
  StepOptions o;
  o.method = c.flow.method;
  o.step_size = c.flow.step_size;
  o.sobolev_eps = c.flow.sobolev_eps;
  o.drmmd_lambda = c.flow.drmmd_lambda;
  return o;
}

void check_shardable(const Config& c, int world) {
  if (world > 1 && c.student.layout == Layout::Dense)
    throw ConfigError(fmt::format(
        "student.layout: dense cannot be sharded over the {} processes of WORLD_SIZE: its second "
        "layer couples every particle (use the block layout, or one process)",
        world));
  if (world > 1 && c.flow.kernel == KernelKind::Exact)
    throw ConfigError(fmt::format(
        "flow.kernel: exact cannot be sharded over the {} processes of WORLD_SIZE: its witness "
        "couples every particle (use one process)",
        world));
}

namespace {

const Config& checked(const Config& c, int world) {
  check_shardable(c, world);
  return c;
}

}  // namespace

c10::Device device_of(const Config& c, const Comm& comm) {
  c10::Device d = c.device;
  if (d.is_cuda() && !d.has_index() && comm.world() > 1)
    d = c10::Device(c10::kCUDA, c10::DeviceIndex(comm.local_rank()));
  return resolve_device(d);
}

void Trainer::StopReducer::sum(at::Tensor& t) {
  const int world = comm_.world();
  if (world == 1) return;
  const int64_t n = t.numel();
  at::Tensor answers = at::zeros({world}, at::TensorOptions().dtype(at::kDouble));
  answers[comm_.rank()] = double(stop_ ? stop_() : 0);
  at::Tensor all = at::cat({t.reshape(-1), answers.to(t.options())});
  comm_.sum(all);
  t.copy_(all.narrow(0, 0, n).view(t.sizes()));
  agreed = std::max(agreed, int(all.narrow(0, n, world).max().item<double>()));
}

Trainer::Trainer(const Config& cfg, Comm* comm)
    : cfg_(checked(cfg, comm ? comm->world() : 1)),
      own_comm_(comm ? nullptr : single_process()),
      comm_(comm ? comm : own_comm_.get()),
      device_(device_of(cfg, *comm_)),
      beta_(beta_schedule_of(cfg)),
      steps_(step_schedule_of(cfg)),
      dist_(cfg.data.input),
      teacher_(make_teacher(cfg, device_, stream_generator(cfg.seed, kTeacherStream))),
      student_(make_student(cfg, device_, stream_generator(cfg.seed, kStudentStream),
                            shard_of(cfg, comm_->rank(), comm_->world()))) {
  // Drawn with the exact kernel too, which needs no training set: the validation set is then the
  // sampled run's.
  at::Generator data_gen = stream_generator(cfg.seed, kDataStream);
  train_ = make_dataset(dist_, cfg.data.train_size, teacher_, data_gen);
  valid_ = make_dataset(dist_, cfg.data.valid_size, teacher_, data_gen);
  s_.gen = stream_generator(cfg.seed, kTrainStream);
  if (!device_.is_cpu()) device_gen_ = make_generator(device_, sub_seed(cfg.seed, kDeviceStream));
  s_.step = steps_.start();
  static const std::function<int()> never;
  StopReducer reduce(*comm_, never);
  initial_train_ =
      cfg.flow.kernel == KernelKind::Exact
          ? 0.5 * exact_mmd2(*student_->particles(), teacher_.particles(), dist_).item<double>()
          : half_mse(*student_, train_.X, train_.Y, kEvalBatch, reduce).item<double>();
  initial_valid_ = half_mse(*student_, valid_.X, valid_.Y, kEvalBatch, reduce).item<double>();
  s_.best_valid = initial_valid_;
}

TrainerState Trainer::state() const {
  TrainerState s = s_;
  s.student = student_->named_tensors();
  return s;
}

void Trainer::restore(TrainerState s) {
  student_->load(s.student);
  s.student.clear();
  s_ = std::move(s);
}

bool Trainer::finite() {
  const bool mine = std::isfinite(s_.loss_sum) && student_->all_finite();
  at::Tensor bad = at::full({1}, mine ? 0.0 : 1.0, at::TensorOptions().dtype(at::kDouble));
  comm_->sum(bad);
  return bad.item<double>() == 0;
}

at::Tensor Trainer::target_features(const at::Tensor& X, const at::Tensor& Y) const {
  if (student_->layout() == Layout::Dense) return Y.unsqueeze(0);        // [1, B, o]
  return particle_features(teacher_.family(), teacher_.particles(), X);  // [M, B, o]
}

Trainer::End Trainer::run(const std::function<void(const EpochLog&)>& on_epoch,
                          const std::function<int()>& stop) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  const double seconds0 = s_.seconds;
  auto since = [](clock::time_point t) {
    return std::chrono::duration<double>(clock::now() - t).count();
  };
  const int64_t n = train_.size(), B = cfg_.train.batch;
  const int64_t batches = (n + B - 1) / B;
  const bool fresh = cfg_.data.fresh;
  // The exact kernel needs no inputs: of the training generator it draws the noise seeds only.
  const bool exact = cfg_.flow.kernel == KernelKind::Exact;
  const bool ordered = !fresh && !exact;  // a minibatch order each epoch
  const StepOptions base = step_options_of(cfg_);
  const bool drmmd = base.method == Method::DrMMD;
  const auto opts = train_.X.options();
  const uint64_t device_seed = sub_seed(cfg_.seed, kDeviceStream);
  StopReducer reduce(*comm_, stop);
  // One process asks stop() itself; ranks act on the answers the last sum carried.
  auto stopping = [&] {
    stopped_by_ = comm_->world() == 1 ? (stop ? stop() : 0) : reduce.agreed;
    return stopped_by_ != 0;
  };
  while (s_.epoch < cfg_.train.epochs) {
    if (s_.batch == 0) {
      if (stopping()) {
        s_.seconds = seconds0 + since(t0);
        return End::Stopped;
      }
      if (ordered) s_.perm = at::randperm(n, s_.gen, at::TensorOptions().dtype(at::kLong));
      s_.loss_sum = 0;
    }
    StepOptions opt = base;
    opt.step_size = s_.step.step_size;
    opt.beta = beta_.at(s_.epoch);
    // The epoch's order onto the device: a blocking copy, once an epoch, outside the steps.
    const at::Tensor perm = ordered ? s_.perm.to(device_) : at::Tensor();
    at::Tensor loss_sum = at::full({}, s_.loss_sum, opts.dtype(at::kDouble));
    StepStats last;
    const auto ts = clock::now();
    for (; s_.batch < batches; ++s_.batch) {
      const int64_t i = s_.batch;
      if (i > 0 && stopping()) {
        s_.loss_sum = loss_sum.item<double>();
        s_.step_seconds += since(ts);
        s_.seconds = seconds0 + since(t0);
        return End::Stopped;
      }
      opt.clean_grad_sq = (i == batches - 1);
      if (exact) {
        opt.noise_seed = s_.gen.get<at::CPUGeneratorImpl>()->random64();
        last = exact_step(*student_->mutable_particles(), teacher_.particles(), dist_, opt);
      } else {
        const int64_t len = std::min(B, n - i * B);
        at::Tensor X, Y;
        if (fresh) {  // on a device: drawn there, no host draw and copy per step
          const bool cpu = device_.is_cpu();
          if (!cpu) device_gen_.set_current_seed(sub_seed(device_seed, uint64_t(s_.steps)));
          X = sample_inputs(dist_, len, cfg_.data.dim, cpu ? s_.gen : device_gen_, opts);
          Y = teacher_.forward(X);
        } else {
          at::Tensor idx = perm.narrow(0, i * B, len);
          X = train_.X.index_select(0, idx);
          Y = train_.Y.index_select(0, idx);
        }
        opt.noise_seed = s_.gen.get<at::CPUGeneratorImpl>()->random64();
        last =
            flow_step(*student_, X, Y, opt, drmmd ? target_features(X, Y) : at::Tensor(), reduce);
      }
      loss_sum += last.loss;
      ++s_.steps;
    }
    EpochLog log;
    log.epoch = s_.epoch + 1;
    log.train_loss = loss_sum.item<double>() / double(batches);  // the epoch's one sync point
    s_.step_seconds += since(ts);
    // The epoch's one sum over the ranks: validation feature sums, the last step's gradient
    // shares, the shards whose weights are not finite.
    const at::Tensor F = feature_sums(*student_, valid_.X, kEvalBatch);  // [n_valid, o]
    const at::Tensor shares = at::stack(
        {last.grad_sq.to(at::kDouble).reshape({}), last.noisy_grad_sq.to(at::kDouble).reshape({}),
         at::scalar_tensor(student_->all_finite() ? 0.0 : 1.0, F.options().dtype(at::kDouble))});
    at::Tensor all = at::cat({F.to(at::kDouble).reshape(-1), shares});
    reduce.sum(all);
    const at::Tensor sums = all.narrow(0, F.numel(), 3).cpu();
    log.valid_loss = half_mse_of(all.narrow(0, 0, F.numel()).view(F.sizes()).to(F.scalar_type()),
                                 valid_.Y, student_->size(), kEvalBatch)
                         .item<double>();
    log.beta = opt.beta;
    log.step_size = opt.step_size;
    log.grad_sq = sums[0].item<double>();
    log.noisy_grad_sq = sums[1].item<double>();
    s_.beta_sq_sum += double(batches) * opt.beta * opt.beta;
    log.beta_sq_sum = s_.beta_sq_sum;
    if (cfg_.theory() && exact) {
      // At the particles the epoch ends with; the noise w an independent draw from the last
      // step's seed (the training generator untouched).
      StepOptions at_end = opt;
      at_end.noise_seed = sub_seed(opt.noise_seed, 1);
      const StepStats t = exact_stats(*student_->particles(), teacher_.particles(), dist_, at_end);
      log.half_mmd2 = t.loss.item<double>();
      log.theory_grad_sq = t.grad_sq.item<double>();
      log.theory_noisy_grad_sq = t.noisy_grad_sq.item<double>();
    } else if (cfg_.theory()) {
      log.half_mmd2 = log.valid_loss;
      log.theory_grad_sq = log.grad_sq;
      log.theory_noisy_grad_sq = log.noisy_grad_sq;
    }
    log.seconds = seconds0 + since(t0);
    log.finite = std::isfinite(log.train_loss) && std::isfinite(log.valid_loss) &&
                 std::isfinite(log.half_mmd2) && std::isfinite(log.theory_noisy_grad_sq) &&
                 sums[2].item<double>() == 0;
    s_.epoch = log.epoch;
    s_.batch = 0;
    s_.perm = at::Tensor();
    s_.loss_sum = 0;
    s_.seconds = log.seconds;
    if (log.valid_loss < s_.best_valid) s_.best_valid = log.valid_loss, s_.best_epoch = log.epoch;
    steps_.after_epoch(log.train_loss, s_.step);
    s_.last = log;
    on_epoch(log);
    if (!log.finite) return End::NonFinite;
  }
  return End::Done;
}

}  // namespace mmdflow
