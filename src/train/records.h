// The records a run keeps, each declared once as a list of its fields, in the style of
// visit_config: the epoch log (losses.csv, and the checkpoint's last.* records), the theory log
// (theory.csv) and the trainer state (the checkpoint's manifest). Writers and readers walk these
// lists; a new field is one line here. summary.json's list is src/train/summary.h.
#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

#include "src/base/io.h"
#include "src/flow/schedule.h"
#include "src/train/config.h"

namespace mmdflow {

struct EpochLog {
  int64_t epoch = 0;  // 1-based: the epoch just finished
  double train_loss = 0, valid_loss = 0, beta = 0, step_size = 0;
  double grad_sq =
      0;  // ||g||^2 / N at the clean particles, epoch's last minibatch, before its step
  double noisy_grad_sq = 0;  // the same for the gradient applied (at the noisy particles)
  double seconds = 0;        // since training started
  bool finite = true;        // losses and particles all finite after the epoch
  // The theory's statistics (log.theory, docs/theory.md) after the epoch's last step. Exact
  // kernel: 1/2 MMD^2, E ||grad h(z)||^2 and E ||grad h(z + beta w)||^2 at the particles then,
  // the last the mean of log.noise_draws draws of w, with its standard error (none for one draw);
  // sampled: valid_loss, grad_sq and noisy_grad_sq.
  double half_mmd2 = 0, theory_grad_sq = 0, theory_noisy_grad_sq = 0;
  std::optional<double> theory_noisy_grad_se;
  double half_mmd2_floor = 0;  // half_mmd2 at or below it is round-off (half_mmd2_floor_of)
  double next_beta = 0;        // beta of the epoch after: the step taken from these particles
  double beta_sq_sum = 0;      // sum of beta^2 over the steps so far
};

// The 1/2 MMD^2 below which a float run's value is round-off: a difference of kernel sums whose
// terms are rounded to the dtype. float32 runs floor near 1.1e-9, float64 ones at a few 1e-16,
// of either sign (docs/theory.md).
inline double half_mmd2_floor_of(c10::ScalarType dtype) {
  return dtype == c10::kDouble ? 1e-15 : 1e-8;
}

// How a cell of a per-epoch file is written.
enum class Cell {
  Digits9,  // {:.9g}
  Seconds,  // {:.3f}
  Exact,    // {:.17g}: every digit (a run's last half_mmd2 is its weights' as computed)
};

// losses.csv: a line per epoch, its number, then these columns. A checkpoint keeps the last
// epoch's as records last.<name>.
template <typename L, typename F>  // L: EpochLog or const EpochLog
void visit_losses(L& l, F&& f) {
  f("train_loss", l.train_loss, Cell::Digits9);
  f("valid_loss", l.valid_loss, Cell::Digits9);
  f("beta", l.beta, Cell::Digits9);
  f("step_size", l.step_size, Cell::Digits9);
  f("grad_sq", l.grad_sq, Cell::Digits9);
  f("noisy_grad_sq", l.noisy_grad_sq, Cell::Digits9);
  f("seconds", l.seconds, Cell::Seconds);
}

// noisy_grad_sq / (beta^2 half_mmd2): the decreasing-direction condition's ratio (docs/theory.md)
// at the epoch's particles and beta; none when beta = 0 or half_mmd2 is round-off (at or below
// its floor: there the ratio's size, even its sign, is the rounding's).
inline std::optional<double> descent_ratio(const EpochLog& l) {
  if (l.beta == 0 || !(l.half_mmd2 > l.half_mmd2_floor)) return std::nullopt;
  return l.theory_noisy_grad_sq / (l.beta * l.beta * l.half_mmd2);
}

// theory.csv (log.theory): a line per epoch, its number, then these columns; an empty cell for a
// value that does not exist.
template <typename F>
void visit_theory(const EpochLog& l, F&& f) {
  f("half_mmd2", l.half_mmd2, Cell::Exact);
  f("grad_sq", l.theory_grad_sq, Cell::Exact);
  f("noisy_grad_sq", l.theory_noisy_grad_sq, Cell::Exact);
  f("beta", l.beta, Cell::Exact);
  f("step_size", l.step_size, Cell::Exact);
  f("beta_sq_sum", l.beta_sq_sum, Cell::Exact);
  f("descent_ratio", descent_ratio(l), Cell::Exact);
  f("noisy_grad_sq_se", l.theory_noisy_grad_se, Cell::Exact);
  f("next_beta", l.next_beta, Cell::Exact);
}

// Everything a run changes and must restore to continue exactly, at any step boundary: a
// checkpoint holds this struct (src/train/checkpoint.*).
struct TrainerState {
  int64_t epoch = 0;        // epochs finished
  int64_t batch = 0;        // minibatches of epoch `epoch + 1` done; 0 at an epoch boundary
  at::Tensor perm;          // [train_size] int64 CPU: that epoch's minibatch order (batch > 0,
                            // when the run draws one)
  double loss_sum = 0;      // that epoch's minibatch losses so far (batch > 0)
  int64_t steps = 0;        // flow steps done
  double step_seconds = 0;  // time spent in them
  double seconds = 0;       // training time so far
  at::Generator gen;        // CPU: minibatch order, each step's noise seed, fresh inputs on CPU
  NamedTensors student;     // the weights of this shard by name (in the checkpoint's shards)
  StepState step;           // gamma now, and the plateau schedule's record
  double best_valid = 0;    // best valid loss so far (the initial one at epoch 0)
  int64_t best_epoch = 0;
  double beta_sq_sum = 0;  // sum of beta^2 over the steps of the epochs finished
  EpochLog last;           // the last finished epoch (epoch 0: none)
};

// The trainer state as the checkpoint's records, in their order, with what a reader checks: f's
// integer(name, v, lo, hi), real(name, v, lo) (finite, >= lo), number(name, v) (any double),
// order(name, perm, n) (a permutation of 0..n-1), generator(name, gen), and check(ok, message)
// for what relates fields to each other or to the config. A writer puts the values and ignores
// the bounds; bounds that read earlier fields see them read. The weights are not records.
template <typename S, typename F>  // S: TrainerState or const TrainerState
void visit_state(S& s, F& f, const Config& cfg, int64_t steps_per_epoch, bool draws_order) {
  f.integer("epoch", s.epoch, 0, INT64_MAX);
  f.check(s.epoch <= cfg.train.epochs, [&] {
    return fmt::format("at epoch {}, past train.epochs = {}", s.epoch, cfg.train.epochs);
  });
  f.integer("batch", s.batch, 0, s.epoch < cfg.train.epochs ? steps_per_epoch - 1 : 0);
  if (s.batch > 0) {
    if (draws_order) f.order("perm", s.perm, cfg.data.train_size);
    f.real("loss_sum", s.loss_sum, 0);
  }
  f.integer("steps", s.steps, INT64_MIN, INT64_MAX);
  const int64_t steps = s.epoch * steps_per_epoch + s.batch;
  f.check(s.steps == steps, [&] {
    return fmt::format("record 'steps' is {}, epoch {} and batch {} make {}", s.steps, s.epoch,
                       s.batch, steps);
  });
  f.real("step_seconds", s.step_seconds, 0);
  f.real("seconds", s.seconds, 0);
  f.generator("generator", s.gen);
  f.real("step_size", s.step.step_size, 0);
  f.check(s.step.step_size > 0 && s.step.step_size <= cfg.flow.step_size, [&] {
    return fmt::format("record 'step_size' is {}, expected in (0, flow.step_size = {}]",
                       s.step.step_size, cfg.flow.step_size);
  });
  f.number("plateau.best_train", s.step.best);  // +inf before the first epoch
  f.check(!std::isnan(s.step.best) && s.step.best >= 0,
          [&] { return fmt::format("record 'plateau.best_train' is {}", s.step.best); });
  f.integer("plateau.bad_epochs", s.step.bad_epochs, 0, cfg.flow.patience - 1);
  f.real("best_valid", s.best_valid, 0);
  f.integer("best_epoch", s.best_epoch, 0, s.epoch);
  f.real("beta_sq_sum", s.beta_sq_sum, 0);
  visit_losses(s.last,
               [&](const char* name, auto& v, Cell) { f.real(std::string("last.") + name, v, 0); });
}

}  // namespace mmdflow
