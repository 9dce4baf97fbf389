// The trainer owns everything a run changes: the student (or its shard), the generators, the
// schedules, the logs. Sharded over processes (a Comm of world > 1), every rank holds the same
// teacher, data, generators and schedules, drawn from the seed, and its own contiguous range of
// particles; per step the ranks add up one [B, o] feature sum, per epoch one vector of logs.
#pragma once
#include <ATen/core/Generator.h>
#include <c10/core/Device.h>

#include <cmath>
#include <functional>
#include <memory>

#include "data/dataset.h"
#include "models/particle_net.h"
#include "src/base/io.h"
#include "src/comm/comm.h"
#include "src/flow/flow.h"
#include "src/flow/schedule.h"
#include "src/flow/student.h"
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
  // kernel: 1/2 MMD^2, E ||grad h(z)||^2 and E ||grad h(z + beta w)||^2 at the particles then;
  // sampled: valid_loss, grad_sq and noisy_grad_sq.
  double half_mmd2 = 0, theory_grad_sq = 0, theory_noisy_grad_sq = 0;
  double beta_sq_sum = 0;  // sum of beta^2 over the steps so far
};

// Everything a run changes and must restore to continue exactly, at any step boundary: a
// checkpoint holds this struct (src/train/checkpoint.*). New run state is a field here, written
// by checkpoint_bytes and read back (validated) by parse_checkpoint.
struct TrainerState {
  int64_t epoch = 0;        // epochs finished
  int64_t batch = 0;        // minibatches of epoch `epoch + 1` done; 0 at an epoch boundary
  at::Tensor perm;          // [train_size] int64 CPU: that epoch's minibatch order (batch > 0,
                            // fixed data only)
  double loss_sum = 0;      // that epoch's minibatch losses so far (batch > 0)
  int64_t steps = 0;        // flow steps done
  double step_seconds = 0;  // time spent in them
  double seconds = 0;       // training time so far
  at::Generator gen;        // CPU: minibatch order, each step's noise seed, fresh inputs on CPU
  NamedTensors student;     // the weights of this shard by name (block: A, a, B, b; dense: W1..)
  StepState step;           // gamma now, and the plateau schedule's record
  double best_valid = 0;    // best valid loss so far (the initial one at epoch 0)
  int64_t best_epoch = 0;
  double beta_sq_sum = 0;  // sum of beta^2 over the steps of the epochs finished
  EpochLog last;           // the last finished epoch (epoch 0: none)
};

// Adds tensors up over the ranks of a comm: how a sharded student's sums become the whole's.
class CommReducer : public Reducer {
 public:
  explicit CommReducer(Comm& comm) : comm_(comm) {}
  void sum(at::Tensor& t) override { comm_.sum(t); }

 private:
  Comm& comm_;
};

// Resolved run pieces built from a Config.
ParticleFamily family_of(const Config& c);          // the student's
ParticleFamily teacher_family_of(const Config& c);  // differs when misspecified
BetaSchedule beta_schedule_of(const Config& c);
StepSchedule step_schedule_of(const Config& c);
StepOptions step_options_of(const Config& c);
// The particles of rank `rank` of `world`: whole blocks of kNoiseBlock, ranks differing by at
// most one block (with fewer blocks than ranks, some hold none).
Shard shard_of(const Config& c, int rank, int world);
// Throws ConfigError when c cannot be sharded over world > 1 processes (the dense layout, the
// exact kernel: each couples every particle).
void check_shardable(const Config& c, int world);
// The run's device (checked to exist): a sharded run's plain "cuda" is cuda:LOCAL_RANK.
c10::Device device_of(const Config& c, const Comm& comm);
// The run's teacher and student (its layout; the shard's particles), drawn from gen.
ParticleNet make_teacher(const Config& c, c10::Device dev, at::Generator gen);
std::unique_ptr<Student> make_student(const Config& c, c10::Device dev, at::Generator gen,
                                      Shard shard = {});

class Trainer {
 public:
  enum class End { Done, NonFinite, Stopped };

  // Builds teacher, data and student (this rank's shard of it); throws ConfigError for settings
  // the machine cannot run. Without comm, a single process. With one of world > 1, every
  // rank constructs, runs and is asked for its state and finiteness together.
  explicit Trainer(const Config& cfg, Comm* comm = nullptr);

  // Runs the remaining epochs, calling on_epoch after each. Asks stop() before each step: a
  // non-zero answer (e.g. the signal received) stops the run at that step boundary (mid-epoch
  // too) and returns Stopped. Sharded, each rank's answer travels with the step's sum, so all
  // ranks stop at the same boundary, one step later; stopped_by() is then the largest answer.
  // Returns NonFinite after reporting an epoch whose log is not finite.
  End run(const std::function<void(const EpochLog&)>& on_epoch,
          const std::function<int()>& stop = {});
  int stopped_by() const { return stopped_by_; }

  // The state to checkpoint (this shard's weights copied to CPU), and its restoration (from a
  // checkpoint checked against this trainer's config): run() then continues exactly where the
  // state was taken.
  TrainerState state() const;
  void restore(TrainerState s);
  bool finite();  // weights and the current epoch's loss sum are finite, on every rank

  const Config& config() const { return cfg_; }
  c10::Device device() const { return device_; }
  Comm& comm() { return *comm_; }
  const ParticleNet& teacher() const { return teacher_; }
  const Student& student() const { return *student_; }
  // The losses of the initial student (epoch 0) on the training and validation sets (exact
  // kernel: the exact 1/2 MMD^2 for the training loss).
  double initial_train_loss() const { return initial_train_; }
  double initial_valid_loss() const { return initial_valid_; }

 private:
  // Features of the DrMMD target on X: the teacher's particles (block) or Y (dense).
  at::Tensor target_features(const at::Tensor& X, const at::Tensor& Y) const;
  // Sums over the ranks, carrying each rank's stop answer along.
  class StopReducer : public Reducer {
   public:
    StopReducer(Comm& comm, const std::function<int()>& stop) : comm_(comm), stop_(stop) {}
    void sum(at::Tensor& t) override;
    int agreed = 0;  // the largest stop answer of any rank at the last sum

   private:
    Comm& comm_;
    const std::function<int()>& stop_;
  };

  Config cfg_;
  std::unique_ptr<Comm> own_comm_;  // the single process's, when none is given
  Comm* comm_;
  c10::Device device_;
  BetaSchedule beta_;
  StepSchedule steps_;
  InputDist dist_;
  ParticleNet teacher_;
  Dataset train_, valid_;
  std::unique_ptr<Student> student_;
  double initial_train_ = 0, initial_valid_ = 0;
  int stopped_by_ = 0;
  TrainerState s_;  // all but s_.student, which lives in student_
  // Fresh inputs off the CPU are drawn on the device, by this generator reseeded every step with
  // sub_seed(its stream's seed, step): they depend on the step count alone, so a resumed run
  // draws them again without the generator's state in the checkpoint.
  at::Generator device_gen_;
};

}  // namespace mmdflow
