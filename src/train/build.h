// The composition root: a Config's sections become the domain's options and parts here, and
// nowhere else. The trainer, checkpoints, the run folder, compare and bench take what it builds;
// the student's layout and the flow's kernel are chosen here once, behind the Student and Stepper
// interfaces.
#pragma once
#include <ATen/core/Generator.h>
#include <c10/core/Device.h>

#include <memory>

#include "data/dataset.h"
#include "models/particle_net.h"
#include "src/base/io.h"
#include "src/comm/comm.h"
#include "src/flow/flow.h"
#include "src/flow/schedule.h"
#include "src/flow/student.h"
#include "src/train/config.h"
#include "src/train/results.h"
#include "src/train/stepper.h"

namespace mmdflow {

ParticleFamily family_of(const Config& c);          // the student's
ParticleFamily teacher_family_of(const Config& c);  // differs when misspecified
BetaSchedule beta_schedule_of(const Config& c);
StepSchedule step_schedule_of(const Config& c);
StepOptions step_options_of(const Config& c);
// The student's weights as files hold them (its layout's schema; samples: Z [rows, d]).
WeightSchema weight_schema_of(const Config& c);
// Flow steps in an epoch: ceil(data.train_size / train.batch), whatever the kernel; samples: 1.
int64_t steps_per_epoch(const Config& c);
// Whether the run draws a minibatch order each epoch (a checkpoint mid-epoch then holds it).
bool draws_order(const Config& c);

// The particles of rank `rank` of `world`: whole blocks of kNoiseBlock, ranks differing by at
// most one block (with fewer blocks than ranks, some hold none).
Shard shard_of(const Config& c, int rank, int world);
// Throws ConfigError when c cannot be sharded over world > 1 processes (the dense layout, the
// exact kernel: each couples every particle).
void check_shardable(const Config& c, int world);
// The run's device (checked to exist): a sharded run's plain "cuda" is cuda:LOCAL_RANK.
c10::Device device_of(const Config& c, const Comm& comm);

// data.input file: data.train_size and data.valid_size set to the files' rows, their columns
// checked against data.dim and model.outputs, train.batch against the rows. Throws ConfigError
// naming the key and the file. Other inputs: c as it is.
void resolve_data_files(Config& c);
// The labelled rows of the data file at path (`key` names it in messages: data.train_file, ...),
// checked as resolve_data_files checks them, in the run's dtype on dev. A run folder's file
// (valid_data.pt) is read without following a link.
Dataset data_file(const Config& c, const std::string& key, const std::string& path, c10::Device dev,
                  bool follow_links = true);

// The run's teacher and student (its layout; the shard's particles), drawn from gen, or read from
// teacher.file and student.init_file (weights files of their schema, float32 or float64, in the
// run's dtype). Throws ConfigError naming the key for a file that does not fit.
ParticleNet make_teacher(const Config& c, c10::Device dev, at::Generator gen);
std::unique_ptr<Student> make_student(const Config& c, c10::Device dev, at::Generator gen,
                                      Shard shard = {});
// Whether the run has a teacher: drawn (a law of inputs) or read (teacher.file).
bool has_teacher(const Config& c);
// A student holding weights read back (those of `shard`, as read_student returns them), on CPU.
std::unique_ptr<Student> student_of(const Config& c, const NamedTensors& w, Shard shard);

// samples: the target's samples [M, d] (drawn from the data stream, or read from target.file),
// in float64 on CPU; the dimension d of its points (the file's columns for a file). Throw
// ConfigError naming a file that cannot be read.
at::Tensor target_samples(const Config& c);
int64_t sample_dim(const Config& c);
// samples: the initial points [N, d] (student.init_file, or N(init_mean, init_std^2) from the
// student stream), float64 on CPU; d is the target's.
at::Tensor initial_points(const Config& c, int64_t d);

// Everything a run is made of, drawn from the config's seed streams, on its device: every rank
// holds the same fixed parts (teacher and data, or target) and schedules, and its own shard of
// the measure.
struct RunParts {
  c10::Device device{c10::kCPU};
  std::unique_ptr<Measure> measure;  // a student (network) or points (samples)
  BetaSchedule beta;
  StepSchedule steps;
  std::unique_ptr<Stepper> stepper;  // steps `measure` (sampled: on its own training set)
  std::unique_ptr<Results> results;  // the files and comparison of the finished run
};
// Throws ConfigError for settings the machine or the process count cannot run.
RunParts build_parts(const Config& c, const Comm& comm);

}  // namespace mmdflow
