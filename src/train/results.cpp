#include "src/train/results.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <filesystem>
#include <vector>

#include "data/targets.h"
#include "src/base/random.h"
#include "src/train/compare.h"
#include "src/train/run_folder.h"

namespace mmdflow {
namespace {

// One tensor `name` of a run folder's file, 2-D and finite.
at::Tensor read_one(const std::string& path, const std::string& name);

class NetworkResults : public Results {
 public:
  NetworkResults(const Config& c, const Student& student, std::optional<ParticleNet> teacher,
                 Dataset train, Dataset valid)
      : c_(c),
        student_(student),
        teacher_(std::move(teacher)),
        train_(std::move(train)),
        valid_(std::move(valid)) {}

  // log.data: the data sets are filed as the run starts; a resumed run's, drawn or read again,
  // must be the same bits (a data file changed would continue on other data).
  void open(const RunFolder& folder, int64_t epoch) override {
    if (!c_.log.data || epoch == 0) return;
    for (const auto& [name, set] : data_files())
      for (const auto& [key, t] : {std::pair{"x", set->X}, std::pair{"y", set->Y}}) {
        const std::string path = folder.file(name);
        if (!std::filesystem::exists(path)) continue;
        if (!at::equal(read_tensor(path, key).to(t.scalar_type()), t.cpu()))
          throw ConfigError(fmt::format(
              "{}: the run's data differ from those it started with{}; resume needs the same", path,
              c_.data.input == InputDist::File ? " (a data file changed?)" : ""));
      }
  }
  void write_start(RunFolder& folder, int64_t epoch) override {
    if (!c_.log.data || epoch > 0) return;
    for (const auto& [name, set] : data_files())
      folder.save_tensors_file(name, {{"x", set->X.cpu()}, {"y", set->Y.cpu()}});
  }
  std::string finish(RunFolder& folder, Comm& comm, Summary& s, bool lead) override {
    folder.save_student(student_.named_tensors(), student_.shard(), comm);
    if (lead && teacher_) folder.save_teacher(teacher_->named_tensors());
    Comparison cmp;
    if (teacher_ && c_.data.input != InputDist::File) {
      at::Generator gen = stream_generator(c_.seed, kCompareStream);
      cmp = compare(student_, *teacher_, c_.data.input, c_.compare.samples, c_.compare.nearest, gen,
                    comm, c_.flow.kernel == Witness::Exact);
    } else {
      cmp = compare_on_data(student_, valid_, comm, teacher_ ? &*teacher_ : nullptr,
                            c_.compare.nearest);
    }
    s.compare = cmp;
    return format_table(cmp);
  }
  std::string files(int world) const override {
    std::string out = world == 1 ? "student.pt" : "student-*.pt, student.index.json";
    if (teacher_) out += ", teacher.pt";
    if (c_.log.data) out += ", train_data.pt, valid_data.pt";
    return out;
  }

 private:
  std::vector<std::pair<std::string, const Dataset*>> data_files() const {
    return {{"train_data.pt", &train_}, {"valid_data.pt", &valid_}};
  }
  // Tensor `key` of a run folder's data file, 2-D.
  static at::Tensor read_tensor(const std::string& path, const std::string& key) {
    for (const auto& [name, t] : load_tensors(path))
      if (name == key && t.dim() == 2) return t;
    throw CheckpointError(fmt::format("{}: expected {{\"x\": [n, d], \"y\": [n, o]}}", path));
  }

  const Config c_;
  const Student& student_;
  std::optional<ParticleNet> teacher_;
  Dataset train_, valid_;
};

constexpr const char* kSnapshots = "snapshots.pt";

class SamplesResults : public Results {
 public:
  SamplesResults(const Config& c, const Points& points, const SampleTarget& target)
      : c_(c), points_(points), target_(target) {}

  // The target is filed as the run starts (target.pt); a resumed run's, drawn or read again,
  // must be the same bits, or the points would continue toward another target (its file
  // changed). The snapshots a resumed run keeps: those of snapshots.pt up to its epoch (none when
  // the file is missing); a new run starts them with the initial points.
  void open(const RunFolder& folder, int64_t epoch) override {
    const std::string target = folder.file("target.pt");
    if (epoch > 0 && std::filesystem::exists(target) &&
        !at::equal(read_one(target, "U").to(target_.U.scalar_type()), target_.U.cpu()))
      throw ConfigError(fmt::format(
          "{}: the run's target differs from the one it started with{}; resume needs the same",
          target, c_.target.file ? " (" + shorten(*c_.target.file) + " changed?)" : ""));
    if (c_.log.snapshot_every == 0) return;
    const std::string path = folder.file(kSnapshots);
    if (epoch > 0 && std::filesystem::exists(path)) read(path, epoch);
    if (epoch == 0) take(0);
  }
  void write_start(RunFolder& folder, int64_t epoch) override {
    if (epoch == 0) folder.save_tensors_file("target.pt", {{"U", target_.U.cpu().clone()}});
  }
  void after_epoch(int64_t epoch) override {
    if (c_.log.snapshot_every > 0 && epoch % c_.log.snapshot_every == 0) take(epoch);
  }
  void on_checkpoint(RunFolder& folder, bool lead) override {
    if (lead) write(folder);
  }
  std::string finish(RunFolder& folder, Comm& comm, Summary& s, bool lead) override {
    if (!lead) return "";
    const at::Tensor Z = points_.whole().cpu();
    folder.save_tensors_file("particles.pt", {{"Z", Z.clone()}});
    folder.save_tensors_file("target.pt", {{"U", target_.U.cpu().clone()}});
    write(folder);
    // The loss after the last step is the run's own (its rows summed over the processes).
    const Comparison cmp = compare_points(c_, points_.whole(), target_, s.final_valid_loss);
    s.compare = cmp;
    return format_table(cmp);
  }
  std::string files(int) const override {
    return c_.log.snapshot_every > 0 ? "particles.pt, target.pt, snapshots.pt"
                                     : "particles.pt, target.pt";
  }

 private:
  void take(int64_t epoch) {
    steps_.push_back(epoch);
    snaps_.push_back(points_.whole().cpu().clone());
  }
  void read(const std::string& path, int64_t epoch) {
    const NamedTensors t = load_tensors(path);
    at::Tensor step, Z;
    for (const auto& [name, v] : t) (name == "step" ? step : Z) = v;
    const int64_t N = points_.size(), d = points_.dim();
    if (t.size() != 2 || !step.defined() || !Z.defined() || step.dim() != 1 ||
        step.scalar_type() != at::kLong || Z.dim() != 3 || Z.size(0) != step.size(0) ||
        Z.size(1) != N || Z.size(2) != d)
      throw CheckpointError(
          fmt::format("{}: expected {{\"step\": [K] int64, \"Z\": [K, {}, {}]}}", path, N, d));
    for (int64_t k = 0; k < step.size(0); ++k)
      if (step[k].item<int64_t>() <= epoch) {
        steps_.push_back(step[k].item<int64_t>());
        snaps_.push_back(Z[k].to(points_.whole().scalar_type()).clone());
      }
  }
  void write(RunFolder& folder) const {
    if (c_.log.snapshot_every == 0 || snaps_.empty()) return;
    folder.save_tensors_file(kSnapshots,
                             {{"step", at::tensor(steps_, at::kLong)}, {"Z", at::stack(snaps_)}});
  }

  const Config c_;
  const Points& points_;
  const SampleTarget target_;
  std::vector<int64_t> steps_;
  std::vector<at::Tensor> snaps_;  // [N, d] each, CPU
};

// One tensor `name` of a run folder's file, 2-D and finite.
at::Tensor read_one(const std::string& path, const std::string& name) {
  const NamedTensors t = load_tensors(path);
  if (t.size() != 1 || t[0].first != name || t[0].second.dim() != 2)
    throw CheckpointError(fmt::format("{}: expected {{\"{}\": a 2-D tensor}}", path, name));
  if (!t[0].second.isfinite().all().item<bool>())
    throw CheckpointError(fmt::format("{}: {} holds NaN or inf", path, name));
  return t[0].second;
}

}  // namespace

Comparison compare_points(const Config& c, const at::Tensor& Z, const SampleTarget& target,
                          std::optional<double> known) {
  Comparison cmp;
  cmp.target_half_mmd2 = known ? *known : half_mmd2_of(target, mmd_row_terms(target, Z, Z));
  cmp.half_mmd2 = *cmp.target_half_mmd2;
  if (c.target.law == TargetLaw::File) return cmp;
  at::Generator gen = stream_generator(c.seed, kCompareStream);
  const at::Tensor V =
      draw_target(c.target.law, c.compare.samples, c.data.dim, c.target.df, gen).to(Z.options());
  const SampleTarget fresh = make_sample_target(V, target.kernel, Method::MMD, 0);
  cmp.samples = c.compare.samples;
  cmp.half_mmd2 = half_mmd2_of(fresh, mmd_row_terms(fresh, Z, Z));
  return cmp;
}

std::pair<at::Tensor, at::Tensor> read_points(const std::string& dir, const Config& c) {
  const at::Tensor Z = read_one(dir + "/particles.pt", "Z");
  const at::Tensor U = read_one(dir + "/target.pt", "U");
  if (Z.size(0) != c.student.particles || Z.size(1) != U.size(1))
    throw CheckpointError(fmt::format(
        "{}/particles.pt: Z is [{}, {}], expected [{}, {}] (student.particles, target.pt's d)", dir,
        Z.size(0), Z.size(1), c.student.particles, U.size(1)));
  return {Z.to(c.dtype), U.to(c.dtype)};
}

std::unique_ptr<Results> make_network_results(const Config& c, const Student& student,
                                              std::optional<ParticleNet> teacher, Dataset train,
                                              Dataset valid) {
  return std::make_unique<NetworkResults>(c, student, std::move(teacher), std::move(train),
                                          std::move(valid));
}

std::unique_ptr<Results> make_samples_results(const Config& c, const Points& points,
                                              const SampleTarget& target) {
  return std::make_unique<SamplesResults>(c, points, target);
}

}  // namespace mmdflow
