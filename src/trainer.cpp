#include "src/trainer.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <chrono>
#include <cmath>

#include "src/device.h"
#include "src/flow.h"

namespace mmdflow {
namespace {

enum Stream : uint64_t { kTeacher = 0, kData = 1, kStudent = 2, kTrain = 3 };
constexpr int64_t kEvalBatch = 1000;  // inputs per product when evaluating a whole set

ParticleNet make_net(const Config& c, const Config::Measure& m, uint64_t stream, c10::Device dev) {
  at::Generator gen = make_generator(c10::Device(c10::kCPU), sub_seed(c.seed, stream));
  return ParticleNet(ParticleNetOptions(m.particles, family_of(c))
                         .init_mean(m.init_mean)
                         .init_std(m.init_std)
                         .dtype(dtype_of(c))
                         .device(dev),
                     gen);
}

bool all_finite(const Particles& z) {
  for (const at::Tensor* t : z.tensors())
    if (!at::isfinite(*t).all().item<bool>()) return false;
  return true;
}

}  // namespace

ParticleFamily family_of(const Config& c) {
  ParticleFamily f;
  f.dim = c.data.dim;
  f.hidden = c.model.hidden;
  f.outputs = c.model.outputs;
  f.activation = parse_activation(c.model.activation);
  f.out.kind = parse_output(c.model.output);
  f.out.param = f.out.kind == OutputKind::Gaussian ? c.model.sigma
                : f.out.kind == OutputKind::Laplace ? c.model.lambda
                                                    : c.model.c;
  f.hidden_bias = c.model.hidden_bias;
  f.output_bias = c.model.output_bias;
  return f;
}

BetaSchedule beta_schedule_of(const Config& c) {
  BetaSchedule s;
  s.kind = parse_beta_kind(c.noise.schedule);
  s.beta0 = c.noise.beta0;
  s.factor = c.noise.factor;
  s.every = c.noise.every;
  s.tau = c.noise.tau;
  return s;
}

c10::ScalarType dtype_of(const Config& c) { return c.dtype == "float64" ? at::kDouble : at::kFloat; }

Trainer::Trainer(const Config& cfg)
    : cfg_(cfg),
      device_(resolve_device(cfg.device)),
      family_(family_of(cfg)),
      beta_(beta_schedule_of(cfg)),
      teacher_(make_net(cfg, cfg.teacher, kTeacher, device_)) {
  at::Generator data_gen = make_generator(c10::Device(c10::kCPU), sub_seed(cfg.seed, kData));
  const InputDist dist = parse_input(cfg.data.input);
  train_ = make_dataset(dist, cfg.data.train_size, teacher_, data_gen);
  valid_ = make_dataset(dist, cfg.data.valid_size, teacher_, data_gen);
  s_.gen = make_generator(c10::Device(c10::kCPU), sub_seed(cfg.seed, kTrain));
  s_.student = make_net(cfg, cfg.student, kStudent, device_).particles();
  initial_valid_ =
      half_mse(family_, s_.student, valid_.X, valid_.Y, kEvalBatch, cfg.flow.chunk).item<double>();
  s_.best_valid = initial_valid_;
}

void Trainer::restore(TrainerState s) {
  s.student = s.student.to(s_.student.A.options());
  s_ = std::move(s);
}

bool Trainer::finite() const {
  return std::isfinite(s_.loss_sum) && all_finite(s_.student);
}

Trainer::End Trainer::run(const std::function<void(const EpochLog&)>& on_epoch,
                          const std::function<bool()>& stop) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  const double seconds0 = s_.seconds;
  auto since = [](clock::time_point t) {
    return std::chrono::duration<double>(clock::now() - t).count();
  };
  const int64_t n = train_.size(), B = cfg_.train.batch;
  const int64_t batches = (n + B - 1) / B;
  Particles& z = s_.student;
  while (s_.epoch < cfg_.train.epochs) {
    if (s_.batch == 0) {
      if (stop && stop()) {
        s_.seconds = seconds0 + since(t0);
        return End::Stopped;
      }
      s_.perm = at::randperm(n, s_.gen, at::TensorOptions().dtype(at::kLong));
      s_.loss_sum = 0;
    }
    StepOptions opt;
    opt.step_size = cfg_.flow.step_size;
    opt.beta = beta_.at(s_.epoch);
    opt.chunk = cfg_.flow.chunk;
    const at::Tensor perm = s_.perm.to(device_);
    at::Tensor loss_sum = at::full({}, s_.loss_sum, z.A.options().dtype(at::kDouble));
    StepStats last;
    const auto ts = clock::now();
    for (; s_.batch < batches; ++s_.batch) {
      const int64_t i = s_.batch;
      if (i > 0 && stop && stop()) {
        s_.loss_sum = loss_sum.item<double>();
        s_.step_seconds += since(ts);
        s_.seconds = seconds0 + since(t0);
        return End::Stopped;
      }
      at::Tensor idx = perm.narrow(0, i * B, std::min(B, n - i * B));
      opt.clean_grad_sq = (i == batches - 1);
      opt.noise_seed = s_.gen.get<at::CPUGeneratorImpl>()->random64();
      last = mmd_step(family_, z, train_.X.index_select(0, idx), train_.Y.index_select(0, idx),
                      opt);
      loss_sum += last.loss;
      ++s_.steps;
    }
    EpochLog log;
    log.epoch = s_.epoch + 1;
    log.train_loss = loss_sum.item<double>() / double(batches);  // the epoch's one sync point
    s_.step_seconds += since(ts);
    log.valid_loss =
        half_mse(family_, z, valid_.X, valid_.Y, kEvalBatch, cfg_.flow.chunk).item<double>();
    log.beta = opt.beta;
    log.step_size = opt.step_size;
    log.grad_sq = last.grad_sq.item<double>();
    log.noisy_grad_sq = last.noisy_grad_sq.item<double>();
    log.seconds = seconds0 + since(t0);
    log.finite = std::isfinite(log.train_loss) && std::isfinite(log.valid_loss) && all_finite(z);
    s_.epoch = log.epoch;
    s_.batch = 0;
    s_.perm = at::Tensor();
    s_.loss_sum = 0;
    s_.seconds = log.seconds;
    if (log.valid_loss < s_.best_valid) s_.best_valid = log.valid_loss, s_.best_epoch = log.epoch;
    s_.last = log;
    on_epoch(log);
    if (!log.finite) return End::NonFinite;
  }
  return End::Done;
}

}  // namespace mmdflow
