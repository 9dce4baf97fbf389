// What a run of each problem family writes beside its logs, and reports when it ends:
//   network: student.pt (or a file per process and student.index.json), teacher.pt (when it has
//            one), train_data.pt and valid_data.pt {"x": [n, d], "y": [n, o]} (log.data), and
//            the comparison of the student with its teacher, or, with data files and no teacher,
//            its test loss on the validation set;
//   samples: particles.pt {"Z": [N, d]}, target.pt {"U": [M, d]}, snapshots.pt
//            {"step": [K], "Z": [K, N, d]} (log.snapshot_every), and 1/2 MMD^2 to the target.
// Built with the run's parts (src/train/build.h); the run (src/train/run.h) calls it.
#pragma once
#include <ATen/core/Tensor.h>

#include <memory>
#include <optional>
#include <string>

#include "data/dataset.h"
#include "models/particle_net.h"
#include "models/points.h"
#include "src/comm/comm.h"
#include "src/flow/samples.h"
#include "src/flow/student.h"
#include "src/train/config.h"
#include "src/train/summary.h"

namespace mmdflow {

class RunFolder;

class Results {
 public:
  virtual ~Results() = default;
  // Once the folder is open, at `epoch` (a resumed run's checkpoint, or 0), before any write.
  // Every rank, reading only; throws ConfigError for a folder the run cannot continue in.
  virtual void open(const RunFolder& folder, int64_t epoch) {}
  // Rank 0, with the run's first writes.
  virtual void write_start(RunFolder& folder, int64_t epoch) {}
  // After each epoch, every rank.
  virtual void after_epoch(int64_t epoch) {}
  // With each checkpoint, rank 0 (lead): what a resumed run needs beside the checkpoint.
  virtual void on_checkpoint(RunFolder& folder, bool lead) {}
  // At the end of a finished run, every rank (collective): writes the files, fills s.compare,
  // returns what rank 0 prints.
  virtual std::string finish(RunFolder& folder, Comm& comm, Summary& s, bool lead) = 0;
  // The files finish() wrote, for the closing line: "student.pt, teacher.pt".
  virtual std::string files(int world) const = 0;
};

// problem samples: 1/2 MMD^2 of the points Z [N, d] to the target (`known`: as a run computed
// it, over its processes, at these points), and to c.compare.samples fresh draws of the target's
// law (from the compare stream; none for a file).
Comparison compare_points(const Config& c, const at::Tensor& Z, const SampleTarget& target,
                          std::optional<double> known = std::nullopt);
// A samples run folder's particles.pt (Z [N, d]) and target.pt (U [M, d]), checked: a
// single tensor of that name, 2-D, finite, of the config's N and of one d. Throws
// CheckpointError naming the file.
std::pair<at::Tensor, at::Tensor> read_points(const std::string& dir, const Config& c);

std::unique_ptr<Results> make_network_results(const Config& c, const Student& student,
                                              std::optional<ParticleNet> teacher, Dataset train,
                                              Dataset valid);
std::unique_ptr<Results> make_samples_results(const Config& c, const Points& points,
                                              const SampleTarget& target);

}  // namespace mmdflow
