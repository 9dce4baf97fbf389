// How a run takes the steps of an epoch, one implementation per way the witness is computed:
//   sampled: minibatches of the training set in an order drawn each epoch, or fresh inputs;
//   exact:   the population flow along the closed-form kernel, no data (src/flow/exact.h);
//   samples: points flowing toward target samples along an explicit kernel (src/flow/samples.h),
//            one step an epoch.
// A stepper holds no randomness of its own: each step draws its inputs (fresh, on CPU) and its
// noise seed from the trainer's generator, so a resumed run draws them again.
#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <memory>
#include <optional>

#include "data/dataset.h"
#include "models/particle_net.h"
#include "models/points.h"
#include "src/flow/flow.h"
#include "src/flow/samples.h"
#include "src/flow/student.h"
#include "src/train/records.h"

namespace mmdflow {

constexpr int64_t kEvalBatch = 1000;  // inputs per product when evaluating a whole set

class Stepper {
 public:
  virtual ~Stepper() = default;
  // The epoch's minibatch order drawn from gen ([n] int64, CPU), or undefined: none is taken.
  virtual at::Tensor draw_order(at::Generator& gen) const = 0;
  // Before the steps of an epoch, or of what remains of it after a resume: its order as drawn.
  virtual void start_epoch(const at::Tensor& order) = 0;
  // Step i of the epoch, the run's step `steps` (0-based): draws opt.noise_seed from gen and
  // moves the student.
  virtual StepStats step(int64_t i, int64_t steps, StepOptions& opt, at::Generator& gen,
                         Reducer& reduce) = 0;
  // The training loss of the student as it stands (sampled: on the training set; exact:
  // 1/2 MMD^2 from the closed-form kernel).
  virtual double loss(Reducer& reduce) = 0;
  // The validation loss of the measure as it stands, in two halves around the epoch's one sum
  // over the ranks: this rank's terms ([k] float64, k the same on every rank), then the loss from
  // their sum (network: on the validation set; samples: 1/2 MMD^2 to the target).
  virtual at::Tensor valid_terms(const Reducer& reduce) = 0;
  virtual double valid_loss(const at::Tensor& summed, const Reducer& reduce) = 0;
  // The theory's statistics after an epoch whose last step ran with `last`: log's half_mmd2,
  // theory_grad_sq and theory_noisy_grad_sq (sampled: its validation loss and logged norms;
  // samples: at the points the step started from, its exact loss and norms).
  virtual void theory(const StepOptions& last, EpochLog& log) const = 0;
};

// Steps on len <= batch inputs at a time: the training set's rows in the epoch's order, or, with
// `fresh`, new inputs from the run's generator on CPU (elsewhere from a device generator seeded
// by sub_seed(device_seed, steps)), labelled by the teacher. Validates on `valid`. The teacher
// (none for data files alone) is needed by `fresh` and by drmmd's witness.
std::unique_ptr<Stepper> make_sampled_stepper(Student& student, std::optional<ParticleNet> teacher,
                                              InputDist dist, Dataset train, Dataset valid,
                                              int64_t batch, bool fresh, uint64_t device_seed);
// Steps the student's particles (the block layout, one process) along the exact witness; the
// theory's E ||grad h(z + beta w)||^2 from noise_draws draws of w.
std::unique_ptr<Stepper> make_exact_stepper(Student& student, ParticleNet teacher, InputDist dist,
                                            Dataset valid, int64_t noise_draws = 1);
// Steps the points toward the target: one flow step an epoch; the moved rows are exchanged
// through the step's Reducer (every process then holds the whole measure again).
std::unique_ptr<Stepper> make_samples_stepper(Points& points, SampleTarget target);

}  // namespace mmdflow
