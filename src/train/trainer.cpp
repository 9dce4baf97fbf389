#include "src/train/trainer.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cmath>

#include "src/base/device.h"
#include "src/base/random.h"

namespace mmdflow {
namespace {

using clock = std::chrono::steady_clock;

double since(clock::time_point t) {
  return std::chrono::duration<double>(clock::now() - t).count();
}

std::unique_ptr<Comm> own_if_none(Comm* comm) { return comm ? nullptr : single_process(); }

}  // namespace

Trainer::Trainer(const Config& cfg, Comm* comm)
    : cfg_(cfg),
      own_comm_(own_if_none(comm)),
      comm_(comm ? comm : own_comm_.get()),
      p_(build_parts(cfg, *comm_)) {
  start();
}

Trainer::Trainer(const Config& cfg, RunParts parts, Comm* comm)
    : cfg_(cfg),
      own_comm_(own_if_none(comm)),
      comm_(comm ? comm : own_comm_.get()),
      p_(std::move(parts)) {
  start();
}

void Trainer::start() {
  s_.gen = stream_generator(cfg_.seed, kTrainStream);
  s_.step = p_.steps.start();
  static const std::function<int()> never;
  StopReducer reduce(*comm_, never);
  initial_train_ = p_.stepper->loss(reduce);
  at::Tensor terms = p_.stepper->valid_terms(reduce);
  reduce.sum(terms);
  initial_valid_ = p_.stepper->valid_loss(terms, reduce);
  s_.best_valid = initial_valid_;
}

TrainerState Trainer::state() const {
  TrainerState s = s_;
  s.student = p_.measure->named_tensors();
  return s;
}

void Trainer::restore(TrainerState s) {
  p_.measure->load(s.student);
  s.student.clear();
  s_ = std::move(s);
}

bool Trainer::finite() {
  const bool mine = std::isfinite(s_.loss_sum) && p_.measure->all_finite();
  at::Tensor bad = at::full({1}, mine ? 0.0 : 1.0, at::TensorOptions().dtype(at::kDouble));
  comm_->sum(bad);
  return bad.item<double>() == 0;
}

bool Trainer::stopping(const StopReducer& reduce, const std::function<int()>& stop) {
  stopped_by_ = comm_->world() == 1 ? (stop ? stop() : 0) : reduce.agreed;
  return stopped_by_ != 0;
}

Trainer::End Trainer::run(const std::function<void(const EpochLog&)>& on_epoch,
                          const std::function<int()>& stop) {
  t0_ = clock::now();
  seconds0_ = s_.seconds;
  StopReducer reduce(*comm_, stop);
  while (s_.epoch < cfg_.train.epochs) {
    if (s_.batch == 0) {
      if (stopping(reduce, stop)) {
        s_.seconds = seconds0_ + since(t0_);
        return End::Stopped;
      }
      s_.perm = p_.stepper->draw_order(s_.gen);
      s_.loss_sum = 0;
    }
    StepOptions opt = step_options_of(cfg_);
    opt.step_size = s_.step.step_size;
    opt.beta = p_.beta.at(s_.epoch);
    StepStats last;
    if (!run_steps(opt, reduce, stop, last)) return End::Stopped;
    const EpochLog log = end_epoch(opt, last, reduce);
    on_epoch(log);
    if (!log.finite) return End::NonFinite;
  }
  // No step boundary is left: a stop answered since the last one (sharded, carried by the last
  // epoch's sum to every rank alike) leaves the run Done, its final files to be written.
  return End::Done;
}

bool Trainer::run_steps(StepOptions& opt, StopReducer& reduce, const std::function<int()>& stop,
                        StepStats& last) {
  const int64_t steps = steps_per_epoch(cfg_);
  p_.stepper->start_epoch(s_.perm);
  at::Tensor loss_sum =
      at::full({}, s_.loss_sum, at::TensorOptions().dtype(at::kDouble).device(p_.device));
  const auto ts = clock::now();
  for (; s_.batch < steps; ++s_.batch) {
    if (s_.batch > 0 && stopping(reduce, stop)) {
      s_.loss_sum = loss_sum.item<double>();
      s_.step_seconds += since(ts);
      s_.seconds = seconds0_ + since(t0_);
      return false;
    }
    opt.clean_grad_sq = s_.batch == steps - 1;
    follow_load();
    last = p_.stepper->step(s_.batch, s_.steps, opt, s_.gen, reduce);
    loss_sum += last.loss;
    ++s_.steps;
  }
  s_.loss_sum = loss_sum.item<double>();  // the epoch's one sync point
  s_.step_seconds += since(ts);
  return true;
}

EpochLog Trainer::end_epoch(const StepOptions& opt, const StepStats& last, Reducer& reduce) {
  const int64_t steps = steps_per_epoch(cfg_);
  EpochLog log;
  log.epoch = s_.epoch + 1;
  log.train_loss = s_.loss_sum / double(steps);
  // The epoch's one sum over the ranks: the validation terms, the last step's gradient shares,
  // the shards whose weights are not finite.
  const at::Tensor terms = p_.stepper->valid_terms(reduce);  // [k]
  const TreeShare grads = side_by_side({last.grad_sq, last.noisy_grad_sq});
  const at::Tensor table = tree_table(grads, reduce.rank(), reduce.world());
  const int64_t k = terms.numel(), t = table.numel();
  at::Tensor all = at::cat({terms, table.to(terms.device()),
                            at::full({1}, p_.measure->all_finite() ? 0.0 : 1.0, terms.options())});
  reduce.sum(all);
  const at::Tensor norms = tree_root(all.narrow(0, k, t), grads, reduce.world()).cpu();  // [2]
  log.valid_loss = p_.stepper->valid_loss(all.narrow(0, 0, k), reduce);
  log.beta = opt.beta;
  log.step_size = opt.step_size;
  log.grad_sq = norms[0].item<double>();
  log.noisy_grad_sq = norms[1].item<double>();
  s_.beta_sq_sum += double(steps) * opt.beta * opt.beta;
  log.beta_sq_sum = s_.beta_sq_sum;
  if (cfg_.theory()) {
    log.half_mmd2_floor = half_mmd2_floor_of(cfg_.dtype);
    log.next_beta = p_.beta.at(log.epoch);
    p_.stepper->theory(opt, log);
  }
  log.seconds = seconds0_ + since(t0_);
  log.finite = std::isfinite(log.train_loss) && std::isfinite(log.valid_loss) &&
               std::isfinite(log.half_mmd2) && std::isfinite(log.theory_noisy_grad_sq) &&
               all[k + t].item<double>() == 0;
  s_.epoch = log.epoch;
  s_.batch = 0;
  s_.perm = at::Tensor();
  s_.loss_sum = 0;
  s_.seconds = log.seconds;
  if (log.valid_loss < s_.best_valid) s_.best_valid = log.valid_loss, s_.best_epoch = log.epoch;
  p_.steps.after_epoch(log.train_loss, s_.step);
  s_.last = log;
  return log;
}

}  // namespace mmdflow
