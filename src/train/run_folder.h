// The files of one run, in one folder. One process (rank 0 of a sharded run) is its writer: it
// holds the folder's lock for the whole run and writes config.yaml, losses.csv, summary.json, the
// checkpoint's manifest and teacher.pt; every rank writes its own weight shards.
//   .lock                     flock'ed by the writer while it runs; holds its token()
//   config.yaml               the resolved configuration
//   losses.csv                a line per epoch, columns loss_columns()
//   theory.csv                a line per epoch, columns theory_columns() (log.theory)
//   summary.json              written at the end
//   checkpoint.bin, checkpoint.shards/   see src/train/checkpoint.h
//   student.pt, teacher.pt    weights (torch.save's format); a sharded run writes
//                             student-RRRRR-of-WWWWW.pt and student.index.json instead
// Files are replaced atomically; temporary files are never followed through a symbolic link.
#pragma once
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "src/base/io.h"
#include "src/comm/comm.h"
#include "src/flow/student.h"
#include "src/train/checkpoint.h"
#include "src/train/config.h"
#include "src/train/records.h"
#include "src/train/summary.h"

namespace mmdflow {

// losses.csv and theory.csv (docs/theory.md): their columns, in order, and a line per epoch, as
// src/train/records.h declares them.
std::vector<std::string> loss_columns();
std::string losses_header();
std::string losses_line(const EpochLog& l);
std::vector<std::string> theory_columns();
std::string theory_header();
std::string theory_line(const EpochLog& l);
// A losses.csv read back by column name: columns["valid_loss"][i] is epoch i + 1's. Throws
// CheckpointError naming the file when its header or a line is not of that form.
struct Losses {
  std::vector<std::string> names;
  std::vector<std::vector<double>> rows;
  std::vector<double> values(const std::string& name) const;  // one column
};
Losses read_losses(const std::string& path);
// The same from losses.csv's text (e.g. the lines a resume keeps), `path` named in errors.
Losses parse_losses(const std::string& text, const std::string& path);
// The same for theory.csv; an empty descent_ratio reads as NaN.
Losses read_theory(const std::string& path);

// student.index.json, a sharded run's weights files: the whole student's tensors and each file's
// particles [begin, end), declared once for its writer (save_student) and reader (read_student).
struct WeightsIndex {
  struct File {
    std::string file;  // within the run folder
    int64_t begin = 0, end = 0;
    std::optional<int64_t> crc;  // CRC-32 of the file (indexes of earlier versions have none)
  };
  int64_t particles = 0;
  std::map<std::string, std::vector<int64_t>> tensors;  // name: sizes of the whole student
  std::vector<File> shards;
};
template <typename I, typename F>  // I: WeightsIndex or const WeightsIndex
void visit_index(I& i, F&& f) {
  f("particles", i.particles);
  f("tensors", i.tensors);
  f("shards", i.shards);
}
template <typename I, typename F>  // I: WeightsIndex::File, const or not
void visit_index_file(I& i, F&& f) {
  f("file", i.file);
  f("begin", i.begin);
  f("end", i.end);
  f("crc", i.crc);
}
void to_json(nlohmann::json& j, const WeightsIndex::File& f);
void from_json(const nlohmann::json& j, WeightsIndex::File& f);

class RunFolder {
 public:
  enum class Mode { Fresh, Resume };
  // Fresh: dir must be absent, or empty but for temporary files of a run killed at its start;
  // it is created. Resume: dir must hold a run's config.yaml. The writer takes the lock first and
  // throws UsageError when another process holds it; other ranks only read and write shards.
  RunFolder(const std::string& dir, Mode mode, bool writer);
  // What the constructor checks before it creates or locks anything: throws the same errors.
  static void check(const std::string& dir, Mode mode);
  // Throws UsageError unless dir holds a run's config.yaml (a regular file).
  static void check_resumable(const std::string& dir);
  RunFolder(RunFolder&&) = default;

  // The folder's identity: random bytes the writer of its first run put in .lock (synced, so
  // that every machine sharing the file system reads them back), kept by later runs. Ranks that
  // read another token, or none, at their spelling of the folder are in another folder.
  const std::string& token() const { return token_; }
  static std::string read_token(const std::string& dir);
  // The writer of a fresh run that the ranks did not agree on: the folder goes again when it
  // created it (it holds nothing but .lock).
  void abandon();

  const std::string& dir() const { return dir_; }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  std::string config_path() const { return path("config.yaml"); }

  // The writer: throws IoError when the folder it locked was removed or replaced (its lock file
  // is no longer the one at dir/.lock). The writes below check it first.
  void check_in_place() const;

  // The writer's files.
  void write_config(const Config& c);
  // What of losses.csv a run resumed at `epochs` keeps: the header and the lines of epochs
  // 1..epochs (later ones were written after the checkpoint). Throws CheckpointError when the
  // file holds fewer. Reads only.
  std::string losses_upto(int64_t epochs) const;
  // Replaces losses.csv with `kept` and appends to it from then on.
  void open_losses(const std::string& kept);
  void append_losses(const EpochLog& l);
  // theory.csv, as losses.csv.
  std::string theory_upto(int64_t epochs) const;
  void open_theory(const std::string& kept);
  void append_theory(const EpochLog& l);
  void write_summary(const Summary& s);

  // Every rank. The checkpoint: generation numbers follow the one loaded.
  std::optional<Checkpoint> load_checkpoint(const Config& cfg, const Shard& shard);
  void save_checkpoint(const Config& cfg, const TrainerState& s, const Shard& shard, Comm& comm);
  bool has_checkpoint() const { return generation_ > 0; }

  // The student's weights: student.pt from one process; one file per rank and an index (by the
  // writer, after every rank's) from several. Collective.
  void save_student(const NamedTensors& weights, const Shard& shard, Comm& comm);
  void save_teacher(const NamedTensors& weights);
  // The writer: a tensor dict `name` (particles.pt, target.pt, snapshots.pt), atomically.
  void save_tensors_file(const std::string& name, const NamedTensors& tensors);
  std::string file(const std::string& name) const { return dir_ + "/" + name; }

 private:
  std::string dir_;
  bool writer_;
  bool created_ = false;  // the writer made the folder
  std::string token_;
  Fd lock_;  // flock'ed: one process writes the folder; released last
  // The header and the lines of epochs 1..epochs of a per-epoch file.
  std::string lines_upto(const std::string& name, const std::string& header, int64_t epochs) const;

  std::unique_ptr<LineFile> losses_, theory_;
  int64_t generation_ = 0;
};

// The most bytes a run's losses.csv or theory.csv is read with (a line of about 150 bytes a step:
// 10^7 steps and more).
constexpr uint64_t kMaxLogBytes = uint64_t(4) << 30;

// The student's weights of particles `want` from a run folder: student.pt, or the shards that
// student.index.json names. Throws CheckpointError naming the file.
NamedTensors read_student(const std::string& dir, const Config& cfg, const Shard& want);
// teacher.pt of a run folder, checked against the config's teacher.
NamedTensors read_teacher(const std::string& dir, const Config& cfg);

}  // namespace mmdflow
