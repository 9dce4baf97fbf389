// The trainer owns everything a run changes: the student, the generator, the schedules, the logs.
#pragma once
#include <ATen/core/Generator.h>
#include <c10/core/Device.h>

#include <functional>
#include <memory>

#include "data/dataset.h"
#include "models/particle_net.h"
#include "src/config.h"
#include "src/flow.h"
#include "src/schedule.h"
#include "src/student.h"

namespace mmdflow {

struct EpochLog {
  int64_t epoch = 0;  // 1-based: the epoch just finished
  double train_loss = 0, valid_loss = 0, beta = 0, step_size = 0;
  double grad_sq = 0;        // ||g||^2 / N at the clean particles, epoch's last minibatch, before its step
  double noisy_grad_sq = 0;  // the same for the gradient applied (at the noisy particles)
  double seconds = 0;        // since training started
};

// Resolved run pieces built from a Config.
ParticleFamily family_of(const Config& c);          // the student's
ParticleFamily teacher_family_of(const Config& c);  // differs when misspecified
BetaSchedule beta_schedule_of(const Config& c);
c10::ScalarType dtype_of(const Config& c);
StepOptions step_options_of(const Config& c);
// The run's teacher and student (its layout), drawn from gen.
ParticleNet make_teacher(const Config& c, c10::Device dev, at::Generator gen);
std::unique_ptr<Student> make_student(const Config& c, c10::Device dev, at::Generator gen);

class Trainer {
 public:
  // Builds teacher, data and student; throws ConfigError for settings the machine cannot run.
  explicit Trainer(const Config& cfg);

  // Runs the remaining epochs, calling on_epoch after each. Returns false when a loss or a
  // particle went non-finite (that epoch's log is still reported).
  bool run(const std::function<void(const EpochLog&)>& on_epoch);

  const Config& config() const { return cfg_; }
  c10::Device device() const { return device_; }
  const ParticleNet& teacher() const { return teacher_; }
  const Student& student() const { return *student_; }
  double initial_valid_loss() const { return initial_valid_; }
  int64_t steps() const { return steps_; }
  double step_seconds() const { return step_seconds_; }

 private:
  // Features of the DrMMD target on X: the teacher's particles (block) or Y (dense).
  at::Tensor target_features(const at::Tensor& X, const at::Tensor& Y) const;

  Config cfg_;
  c10::Device device_;
  BetaSchedule beta_;
  InputDist dist_;
  at::Generator gen_;  // CPU: minibatch order, fresh inputs and each step's noise seed
  ParticleNet teacher_;
  Dataset train_, valid_;
  std::unique_ptr<Student> student_;
  double initial_valid_ = 0;
  int64_t epoch_ = 0, steps_ = 0;
  double step_seconds_ = 0;
  // Step-size schedule (plateau).
  double step_size_;
  double best_train_ = INFINITY;
  int64_t bad_epochs_ = 0;
};

}  // namespace mmdflow
