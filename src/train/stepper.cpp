#include "src/train/stepper.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "src/base/random.h"
#include "src/base/stats.h"
#include "src/flow/exact.h"
#include "src/kernels/arccos.h"

namespace mmdflow {
namespace {

uint64_t noise_seed(at::Generator& gen) { return gen.get<at::CPUGeneratorImpl>()->random64(); }

// The network family's validation: the student's feature sums on the validation set.
class NetworkStepper : public Stepper {
 public:
  NetworkStepper(Student& student, Dataset valid) : student_(student), valid_(std::move(valid)) {}
  // The table of the shard's share of the feature sums (src/flow/tree_sum.h).
  at::Tensor valid_terms(const Reducer& reduce) override {
    valid_share_ = feature_sums(student_, valid_.X, kEvalBatch);
    return tree_table(valid_share_, reduce.rank(), reduce.world());
  }
  double valid_loss(const at::Tensor& summed, const Reducer& reduce) override {
    const at::Tensor F = tree_root(summed, valid_share_, reduce.world())
                             .view({valid_.size(), -1})
                             .to(valid_.Y.scalar_type());
    return half_mse_of(F, valid_.Y, student_.size(), kEvalBatch).item<double>();
  }

 protected:
  Student& student_;
  Dataset valid_;
  TreeShare valid_share_;  // of the last valid_terms
};

class SampledStepper : public NetworkStepper {
 public:
  SampledStepper(Student& student, std::optional<ParticleNet> teacher, InputDist dist,
                 Dataset train, Dataset valid, int64_t batch, bool fresh, uint64_t device_seed)
      : NetworkStepper(student, std::move(valid)),
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
      Y = teacher_->forward(X);
    } else {
      const at::Tensor idx = order_.narrow(0, i * batch_, len);
      X = train_.X.index_select(0, idx);
      Y = train_.Y.index_select(0, idx);
    }
    opt.noise_seed = noise_seed(gen);
    const at::Tensor target =
        opt.method == Method::DrMMD ? student_.drmmd_target(*teacher_, X, Y) : at::Tensor();
    return flow_step(student_, X, Y, opt, target, reduce);
  }
  double loss(Reducer& reduce) override {
    return half_mse(student_, train_.X, train_.Y, kEvalBatch, reduce).item<double>();
  }
  void theory(const StepOptions&, EpochLog& log) const override {
    log.half_mmd2 = log.valid_loss;
    log.theory_grad_sq = log.grad_sq;
    log.theory_noisy_grad_sq = log.noisy_grad_sq;
  }

 private:
  std::optional<ParticleNet> teacher_;
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

class ExactStepper : public NetworkStepper {
 public:
  ExactStepper(Student& student, ParticleNet teacher, InputDist dist, Dataset valid,
               int64_t noise_draws)
      : NetworkStepper(student, std::move(valid)),
        teacher_(std::move(teacher)),
        dist_(dist),
        draws_(noise_draws) {
    TORCH_CHECK(student_.mutable_particles(), "the exact kernel steps a block student");
  }
  at::Tensor draw_order(at::Generator&) const override { return {}; }
  void start_epoch(const at::Tensor&) override {}
  // Of the training generator it draws the noise seeds only.
  StepStats step(int64_t, int64_t, StepOptions& opt, at::Generator& gen, Reducer&) override {
    opt.noise_seed = noise_seed(gen);
    return exact_step(*student_.mutable_particles(), teacher_.particles(), dist_, opt);
  }
  double loss(Reducer&) override {
    return 0.5 * exact_mmd2(*student_.particles(), teacher_.particles(), dist_).item<double>();
  }
  // At the particles the epoch ends with; draw k of w (k < noise_draws) from
  // sub_seed(last step's noise seed, 1 + k), independent of the steps' noise and of each other
  // (the training generator untouched). noisy_grad_sq is the draws' mean, noisy_grad_sq_se its
  // standard error.
  void theory(const StepOptions& last, EpochLog& log) const override {
    StepOptions at_end = last;
    at_end.noise_seed = sub_seed(last.noise_seed, 1);
    const StepStats t = exact_stats(*student_.particles(), teacher_.particles(), dist_, at_end);
    log.half_mmd2 = t.loss.item<double>();
    log.theory_grad_sq = t.grad_sq.whole().item<double>();
    log.theory_noisy_grad_sq = t.noisy_grad_sq.whole().item<double>();
    if (draws_ == 1) return;
    if (last.beta == 0) {  // w does not enter: every draw is the first
      log.theory_noisy_grad_se = 0.0;
      return;
    }
    std::vector<uint64_t> seeds;
    for (int64_t k = 1; k < draws_; ++k)
      seeds.push_back(sub_seed(last.noise_seed, uint64_t(1 + k)));
    std::vector<double> d =
        exact_noisy_grad_sq(*student_.particles(), teacher_.particles(), dist_, last, seeds);
    d.insert(d.begin(), log.theory_noisy_grad_sq);
    const MeanSe m = mean_se(d);
    log.theory_noisy_grad_sq = m.mean;
    log.theory_noisy_grad_se = m.se;
  }

 private:
  ParticleNet teacher_;
  InputDist dist_;
  int64_t draws_;
};

// One flow step an epoch. The loss before a step is the one after the previous (valid_loss),
// kept while the points are those it was computed at (their version).
class SamplesStepper : public Stepper {
 public:
  SamplesStepper(Points& points, SampleTarget target)
      : points_(points), target_(std::move(target)) {}
  at::Tensor draw_order(at::Generator&) const override { return {}; }
  void start_epoch(const at::Tensor&) override {}
  StepStats step(int64_t, int64_t, StepOptions& opt, at::Generator& gen, Reducer& reduce) override {
    const double before = loss(reduce);
    opt.noise_seed = noise_seed(gen);
    StepStats st = samples_step(points_, target_, opt);
    st.loss = at::scalar_tensor(before, at::TensorOptions().dtype(at::kDouble));
    gather(reduce);
    return st;
  }
  double loss(Reducer& reduce) override {
    if (points_.stale()) gather(reduce);
    if (known_ != points_.version()) {
      at::Tensor t = valid_terms(reduce);
      reduce.sum(t);
      valid_loss(t, reduce);
    }
    return F_;
  }
  // The rows' terms of 1/2 MMD^2, zero outside them: their sum is exact, added in row order.
  at::Tensor valid_terms(const Reducer&) override {
    const Shard s = points_.shard();
    at::Tensor t = at::zeros({s.total, 2}, at::TensorOptions().dtype(at::kDouble));
    t.narrow(0, s.begin, s.size()).copy_(mmd_row_terms(target_, points_.rows(), points_.whole()));
    return t.reshape(-1);
  }
  double valid_loss(const at::Tensor& summed, const Reducer&) override {
    F_ = half_mmd2_of(target_, summed.view({-1, 2}));
    known_ = points_.version();
    return F_;
  }
  void theory(const StepOptions&, EpochLog& log) const override {
    log.half_mmd2 = log.train_loss;
    log.theory_grad_sq = log.grad_sq;
    log.theory_noisy_grad_sq = log.noisy_grad_sq;
  }

 private:
  // Every process's moved rows into every process's whole measure: one exact sum.
  void gather(Reducer& reduce) {
    at::Tensor all = points_.rows_only();
    reduce.sum(all);
    points_.set_whole(std::move(all));
  }

  Points& points_;
  SampleTarget target_;
  double F_ = 0;  // 1/2 MMD^2 at the points of version known_
  int64_t known_ = -1;
};

}  // namespace

std::unique_ptr<Stepper> make_sampled_stepper(Student& student, std::optional<ParticleNet> teacher,
                                              InputDist dist, Dataset train, Dataset valid,
                                              int64_t batch, bool fresh, uint64_t device_seed) {
  return std::make_unique<SampledStepper>(student, std::move(teacher), dist, std::move(train),
                                          std::move(valid), batch, fresh, device_seed);
}

std::unique_ptr<Stepper> make_exact_stepper(Student& student, ParticleNet teacher, InputDist dist,
                                            Dataset valid, int64_t noise_draws) {
  return std::make_unique<ExactStepper>(student, std::move(teacher), dist, std::move(valid),
                                        noise_draws);
}

std::unique_ptr<Stepper> make_samples_stepper(Points& points, SampleTarget target) {
  return std::make_unique<SamplesStepper>(points, std::move(target));
}

}  // namespace mmdflow
