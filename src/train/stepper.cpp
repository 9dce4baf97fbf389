#include "src/train/stepper.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "src/base/random.h"
#include "src/flow/exact.h"
#include "src/kernels/arccos.h"

namespace mmdflow {
namespace {

uint64_t noise_seed(at::Generator& gen) { return gen.get<at::CPUGeneratorImpl>()->random64(); }

class SampledStepper : public Stepper {
 public:
  SampledStepper(Student& student, ParticleNet teacher, InputDist dist, Dataset train,
                 int64_t batch, bool fresh, uint64_t device_seed)
      : student_(student),
        teacher_(std::move(teacher)),
        dist_(dist),
        train_(std::move(train)),
        batch_(batch),
        fresh_(fresh),
        device_seed_(device_seed) {
    if (!train_.X.device().is_cpu()) device_gen_ = make_generator(train_.X.device(), device_seed);
  }

  at::Tensor draw_order(at::Generator& gen) const override {
    if (fresh_) return {};
    return at::randperm(train_.size(), gen, at::TensorOptions().dtype(at::kLong));
  }
  // The order onto the device: a blocking copy, once an epoch, outside the steps.
  void start_epoch(const at::Tensor& order) override {
    order_ = fresh_ ? at::Tensor() : order.to(train_.X.device());
  }
  StepStats step(int64_t i, int64_t steps, StepOptions& opt, at::Generator& gen,
                 Reducer& reduce) override {
    const int64_t len = std::min(batch_, train_.size() - i * batch_);
    at::Tensor X, Y;
    if (fresh_) {  // on a device: drawn there, no host draw and copy per step
      const bool cpu = train_.X.device().is_cpu();
      if (!cpu) device_gen_.set_current_seed(sub_seed(device_seed_, uint64_t(steps)));
      X = sample_inputs(dist_, len, train_.X.size(1), cpu ? gen : device_gen_, train_.X.options());
      Y = teacher_.forward(X);
    } else {
      const at::Tensor idx = order_.narrow(0, i * batch_, len);
      X = train_.X.index_select(0, idx);
      Y = train_.Y.index_select(0, idx);
    }
    opt.noise_seed = noise_seed(gen);
    const at::Tensor target =
        opt.method == Method::DrMMD ? student_.drmmd_target(teacher_, X, Y) : at::Tensor();
    return flow_step(student_, X, Y, opt, target, reduce);
  }
  double loss(Reducer& reduce) const override {
    return half_mse(student_, train_.X, train_.Y, kEvalBatch, reduce).item<double>();
  }
  void theory(const StepOptions&, EpochLog& log) const override {
    log.half_mmd2 = log.valid_loss;
    log.theory_grad_sq = log.grad_sq;
    log.theory_noisy_grad_sq = log.noisy_grad_sq;
  }

 private:
  Student& student_;
  ParticleNet teacher_;
  InputDist dist_;
  Dataset train_;
  int64_t batch_;
  bool fresh_;
  uint64_t device_seed_;
  // Fresh inputs off the CPU are drawn on the device, by this generator reseeded every step with
  // sub_seed(device_seed_, step): they depend on the step count alone, so a resumed run draws
  // them again without the generator's state in the checkpoint.
  at::Generator device_gen_;
  at::Tensor order_;  // the epoch's, on the device
};

class ExactStepper : public Stepper {
 public:
  ExactStepper(Student& student, ParticleNet teacher, InputDist dist)
      : student_(student), teacher_(std::move(teacher)), dist_(dist) {
    TORCH_CHECK(student_.mutable_particles(), "the exact kernel steps a block student");
  }
  at::Tensor draw_order(at::Generator&) const override { return {}; }
  void start_epoch(const at::Tensor&) override {}
  // Of the training generator it draws the noise seeds only.
  StepStats step(int64_t, int64_t, StepOptions& opt, at::Generator& gen, Reducer&) override {
    opt.noise_seed = noise_seed(gen);
    return exact_step(*student_.mutable_particles(), teacher_.particles(), dist_, opt);
  }
  double loss(Reducer&) const override {
    return 0.5 * exact_mmd2(*student_.particles(), teacher_.particles(), dist_).item<double>();
  }
  // At the particles the epoch ends with; the noise w an independent draw from the last step's
  // seed (the training generator untouched).
  void theory(const StepOptions& last, EpochLog& log) const override {
    StepOptions at_end = last;
    at_end.noise_seed = sub_seed(last.noise_seed, 1);
    const StepStats t = exact_stats(*student_.particles(), teacher_.particles(), dist_, at_end);
    log.half_mmd2 = t.loss.item<double>();
    log.theory_grad_sq = t.grad_sq.item<double>();
    log.theory_noisy_grad_sq = t.noisy_grad_sq.item<double>();
  }

 private:
  Student& student_;
  ParticleNet teacher_;
  InputDist dist_;
};

}  // namespace

std::unique_ptr<Stepper> make_sampled_stepper(Student& student, ParticleNet teacher, InputDist dist,
                                              Dataset train, int64_t batch, bool fresh,
                                              uint64_t device_seed) {
  return std::make_unique<SampledStepper>(student, std::move(teacher), dist, std::move(train),
                                          batch, fresh, device_seed);
}

std::unique_ptr<Stepper> make_exact_stepper(Student& student, ParticleNet teacher, InputDist dist) {
  return std::make_unique<ExactStepper>(student, std::move(teacher), dist);
}

}  // namespace mmdflow
