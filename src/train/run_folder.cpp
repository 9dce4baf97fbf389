#include "src/train/run_folder.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <sstream>

#include "models/weights.h"
#include "src/base/json_fields.h"
#include "src/train/build.h"

namespace fs = std::filesystem;

namespace mmdflow {

namespace {

// A log of the run folder, whole: a regular file (through links, as the user may link a run's
// logs) of at most kMaxLogBytes, so that a forged file cannot exhaust memory. Throws
// CheckpointError naming it.
std::string read_log(const std::string& path) {
  try {
    return read_regular_file(path, kMaxLogBytes, true);
  } catch (const std::runtime_error& e) {
    throw CheckpointError(e.what());
  }
}

std::string header_of(const std::vector<std::string>& columns) {
  std::string h;
  for (const std::string& c : columns) h += (h.empty() ? "" : ",") + c;
  return h + "\n";
}

// A per-epoch CSV file's text (from `path`) read back: the header, then epoch 1, 2, ... in column
// 0, numbers in every cell (an empty cell, where `blank` allows it, as NaN).
Losses parse_table(const std::string& text, const std::string& path,
                   const std::vector<std::string>& columns, bool blank) {
  const std::string kind = std::filesystem::path(path).filename().string();
  Losses out;
  std::stringstream ss(text);
  std::string line;
  if (!std::getline(ss, line) || line + "\n" != header_of(columns))
    throw CheckpointError(fmt::format("{}: not an mmdflow {} (unexpected header)", path, kind));
  out.names = columns;
  for (int64_t k = 1; std::getline(ss, line); ++k) {
    std::vector<double> row;
    std::stringstream cells(line + ",");  // each cell ends in a comma: a last empty one too
    for (std::string cell; std::getline(cells, cell, ',');) {
      char* end = nullptr;
      row.push_back(cell.empty() ? NAN : std::strtod(cell.c_str(), &end));
      if (cell.empty() ? !blank : *end != '\0')
        throw CheckpointError(fmt::format("{}: line {} is not a line of numbers", path, k + 1));
    }
    if (row.size() != out.names.size() || row[0] != double(k))
      throw CheckpointError(fmt::format("{}: line {} is not epoch {}'s", path, k + 1, k));
    out.rows.push_back(std::move(row));
  }
  return out;
}

// "epoch" and the names a visitor list gives.
template <typename Visit>
std::vector<std::string> columns_of(Visit&& visit) {
  std::vector<std::string> out{"epoch"};
  visit([&](const char* name, const auto&, Cell) { out.push_back(name); });
  return out;
}

std::string cell(double v, Cell c) {
  switch (c) {
    case Cell::Digits9: return fmt::format("{:.9g}", v);
    case Cell::Seconds: return fmt::format("{:.3f}", v);
    case Cell::Exact: break;
  }
  return fmt::format("{:.17g}", v);
}
std::string cell(const std::optional<double>& v, Cell c) { return v ? cell(*v, c) : ""; }

// The epoch's number, then the cells a visitor list gives.
template <typename Visit>
std::string line_of(int64_t epoch, Visit&& visit) {
  std::string line = std::to_string(epoch);
  visit([&](const char*, const auto& v, Cell c) { line += "," + cell(v, c); });
  return line + "\n";
}

}  // namespace

std::vector<std::string> loss_columns() {
  const EpochLog none;
  return columns_of([&](auto&& f) { visit_losses(none, f); });
}

std::string losses_header() { return header_of(loss_columns()); }

std::string losses_line(const EpochLog& l) {
  return line_of(l.epoch, [&](auto&& f) { visit_losses(l, f); });
}

std::vector<std::string> theory_columns() {
  return columns_of([&](auto&& f) { visit_theory(EpochLog{}, f); });
}

std::string theory_header() { return header_of(theory_columns()); }

std::string theory_line(const EpochLog& l) {
  return line_of(l.epoch, [&](auto&& f) { visit_theory(l, f); });
}

std::vector<double> Losses::values(const std::string& name) const {
  const auto it = std::find(names.begin(), names.end(), name);
  TORCH_CHECK(it != names.end(), "no column ", name);
  const size_t k = size_t(it - names.begin());
  std::vector<double> out;
  for (const auto& row : rows) out.push_back(row[k]);
  return out;
}

Losses read_losses(const std::string& path) {
  return parse_table(read_log(path), path, loss_columns(), false);
}

Losses parse_losses(const std::string& text, const std::string& path) {
  return parse_table(text, path, loss_columns(), false);
}

Losses read_theory(const std::string& path) {
  return parse_table(read_log(path), path, theory_columns(), true);
}

namespace {

constexpr const char* kLock = ".lock";

// A process's weights file of a run of several (student_shard_name).
constexpr const char* kStudentShard = R"(student-[0-9]{5,}-of-[0-9]{5,}\.pt)";

// A temporary of one of the files mmdflow writes into a run folder (AtomicFile:
// NAME.tmp.<pid>.<k>); nothing else is taken for one, so no file of the user's is removed as one.
bool is_temporary(const std::string& name) {
  static const std::regex form(
      std::string(R"((config\.yaml|losses\.csv|theory\.csv|summary\.json|checkpoint\.bin|)") +
      R"(student\.pt|teacher\.pt|student\.index\.json|particles\.pt|target\.pt|snapshots\.pt|)" +
      R"(train_data\.pt|valid_data\.pt|)" +
      kStudentShard + R"()\.tmp\.[0-9]+\.[0-9]+)");
  return std::regex_match(name, form);
}

bool is_student_shard(const std::string& name) {
  static const std::regex form(kStudentShard);
  return std::regex_match(name, form);
}

// Entries of dir but the lock and temporary files.
std::vector<std::string> contents(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name != kLock && !is_temporary(name)) out.push_back(name);
  }
  return out;
}

bool regular(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// CRC-32 of a regular file, read in pieces (not through a link, never waiting on a FIFO).
uint32_t file_crc32(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  struct stat st {};
  if (fd.get() < 0 || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
    throw CheckpointError(fmt::format("{}: cannot read it as a regular file", path));
  std::vector<char> piece(1 << 20);
  uint32_t crc = 0;
  for (;;) {
    const ssize_t n = ::read(fd.get(), piece.data(), piece.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw CheckpointError(fmt::format("{}: {}", path, std::strerror(errno)));
    if (n == 0) return crc;
    crc = crc32(std::string_view(piece.data(), size_t(n)), crc);
  }
}

// What is at path when it is not a regular file ("missing", "a symbolic link, ..."); "" when it is.
std::string not_regular(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return "missing";
  return S_ISREG(st.st_mode)    ? ""
         : S_ISLNK(st.st_mode)  ? "a symbolic link, not a regular file"
         : S_ISFIFO(st.st_mode) ? "a FIFO, not a regular file"
         : S_ISDIR(st.st_mode)  ? "a folder, not a regular file"
                                : "not a regular file";
}

}  // namespace

void to_json(nlohmann::json& j, const WeightsIndex::File& f) { visit_index_file(f, JsonWriter{j}); }
void from_json(const nlohmann::json& j, WeightsIndex::File& f) {
  visit_index_file(f, JsonReader{j});
}

void RunFolder::check(const std::string& dir, Mode mode) {
  const bool fresh = mode == Mode::Fresh;
  const std::string opt = fresh ? "--out" : "--resume";
  if (dir.empty()) throw UsageError(fmt::format("{}: an empty folder name", opt));
  std::error_code ec;
  const auto st = fs::symlink_status(dir, ec);
  if (fresh && fs::exists(st) && (!fs::is_directory(st) || !contents(dir).empty()))
    throw UsageError(fmt::format("{} {}: already exists and is not an empty folder", opt, dir));
  if (!fresh && !fs::is_directory(st))
    throw UsageError(fmt::format("{} {}: not a run folder (no such folder)", opt, dir));
  if (!fresh) check_resumable(dir);
}

RunFolder::RunFolder(const std::string& dir, Mode mode, bool writer) : dir_(dir), writer_(writer) {
  check(dir, mode);
  const bool fresh = mode == Mode::Fresh;
  const std::string opt = fresh ? "--out" : "--resume";
  std::error_code ec;
  if (!writer) return;
  if (fresh) {
    try {
      created_ = !fs::exists(fs::symlink_status(dir));
      fs::create_directories(dir);
    } catch (const fs::filesystem_error& e) {
      throw IoError(fmt::format("cannot create {}: {}", dir, e.code().message()));
    }
  }
  lock_.reset(::open(path(kLock).c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (lock_.get() < 0)
    throw IoError(fmt::format("cannot create {}: {}", path(kLock), std::strerror(errno)));
  if (::flock(lock_.get(), LOCK_EX | LOCK_NB) != 0)
    throw UsageError(fmt::format("{} {}: in use by another mmdflow process", opt, dir));
  // Under the lock: what a run killed at its start left (temporaries) goes; another run that
  // filled the folder meanwhile is refused.
  for (const auto& e : fs::directory_iterator(dir))
    if (is_temporary(e.path().filename().string())) fs::remove(e.path(), ec);
  if (fresh && !contents(dir).empty())
    throw UsageError(fmt::format("{} {}: already exists and is not an empty folder", opt, dir));
  if (!fresh) check_resumable(dir);
  // The token a run wrote earlier stays (a refused resume changes nothing); else a new one.
  char held[65];
  const ssize_t n = ::pread(lock_.get(), held, sizeof held, 0);
  if (n > 0 && n < ssize_t(sizeof held)) {
    token_.assign(held, size_t(n));
    return;
  }
  std::random_device device;  // not the run's seeded streams
  token_ = fmt::format("{:08x}{:08x}{:08x}{:08x}-{}", device(), device(), device(), device(),
                       ::getpid());
  if (::ftruncate(lock_.get(), 0) != 0 ||
      ::pwrite(lock_.get(), token_.data(), token_.size(), 0) != ssize_t(token_.size()) ||
      ::fsync(lock_.get()) != 0)
    throw IoError(fmt::format("cannot write {}: {}", path(kLock), std::strerror(errno)));
}

std::string RunFolder::read_token(const std::string& dir) {
  try {
    return read_regular_file(dir + "/" + kLock, 64, false);
  } catch (const std::exception&) {
    return "";
  }
}

void RunFolder::abandon() {
  if (!writer_ || !created_) return;
  std::error_code ec;
  fs::remove(path(kLock), ec);
  fs::remove(dir_, ec);  // only if empty
}

void RunFolder::check_resumable(const std::string& dir) {
  if (!regular(dir + "/config.yaml"))
    throw UsageError(fmt::format(
        "--resume {}: no config.yaml there (not a run folder, or one killed before it wrote "
        "its config: start that run again with --out {})",
        dir, dir));
}

void RunFolder::write_config(const Config& c) { write_file_atomic(config_path(), to_yaml(c)); }

std::string RunFolder::lines_upto(const std::string& name, const std::string& header,
                                  int64_t epochs) const {
  const std::string file = path(name);
  if (epochs == 0) return header;
  if (!regular(file))
    throw CheckpointError(fmt::format("{}: missing, the checkpoint is at epoch {}", file, epochs));
  const std::string text = read_log(file);
  if (text.rfind(header, 0) != 0)
    throw CheckpointError(fmt::format("{}: not an mmdflow {} (unexpected header)", file, name));
  size_t pos = header.size();
  for (int64_t e = 1; e <= epochs; ++e) {
    const std::string head = fmt::format("{},", e);
    const size_t end = text.find('\n', pos);
    if (end == std::string::npos || text.compare(pos, head.size(), head) != 0)
      throw CheckpointError(
          fmt::format("{}: holds {} epochs, the checkpoint is at epoch {}", file, e - 1, epochs));
    pos = end + 1;
  }
  return text.substr(0, pos);
}

std::string RunFolder::losses_upto(int64_t epochs) const {
  return lines_upto("losses.csv", losses_header(), epochs);
}

void RunFolder::open_losses(const std::string& kept) {
  losses_ = std::make_unique<LineFile>(path("losses.csv"), kept);
}

void RunFolder::check_in_place() const {
  if (!writer_) return;
  struct stat held {
  }, there{};
  if (::fstat(lock_.get(), &held) != 0 || held.st_nlink == 0 ||
      ::lstat(path(kLock).c_str(), &there) != 0 || there.st_ino != held.st_ino ||
      there.st_dev != held.st_dev)
    throw IoError(fmt::format("{}: the run folder was removed or replaced during the run", dir_));
}

void RunFolder::append_losses(const EpochLog& l) {
  check_in_place();
  losses_->append(losses_line(l));
}

std::string RunFolder::theory_upto(int64_t epochs) const {
  return lines_upto("theory.csv", theory_header(), epochs);
}

void RunFolder::open_theory(const std::string& kept) {
  theory_ = std::make_unique<LineFile>(path("theory.csv"), kept);
}

void RunFolder::append_theory(const EpochLog& l) { theory_->append(theory_line(l)); }

void RunFolder::write_summary(const Summary& s) {
  check_in_place();
  write_file_atomic(path("summary.json"), summary_json(s));
}

std::optional<Checkpoint> RunFolder::load_checkpoint(const Config& cfg, const Shard& shard) {
  std::optional<Checkpoint> c = mmdflow::load_checkpoint(dir_, cfg, shard);
  if (c) {
    generation_ = c->generation;
    return c;
  }
  // No manifest. A run killed before its first checkpoint was whole starts again; but shards of a
  // second generation are only written once a first manifest is, and a finished run wrote one:
  // then the manifest was removed, and restarting would throw the run's epochs away.
  std::error_code ec;
  for (auto e = fs::directory_iterator(path(kShardFolder), ec);
       !ec && e != fs::directory_iterator(); e.increment(ec)) {
    const std::string name = e->path().filename().string();
    if (name.size() > 7 && name[0] == 'g' && std::atoll(name.c_str() + 1) >= 2)
      throw CheckpointError(fmt::format(
          "{}: missing, but {} holds a later checkpoint's shard ({}): the manifest was removed, "
          "and the run cannot continue from it (start it again with --out in another folder)",
          path(kCheckpointFile), kShardFolder, shorten(name)));
  }
  if (regular(path("summary.json")) && read_summary(path("summary.json")).status == "done")
    throw CheckpointError(fmt::format(
        "{}: missing, but the run finished (summary.json): the manifest was removed, and the "
        "run cannot continue from it (start it again with --out in another folder)",
        path(kCheckpointFile)));
  return c;
}

void RunFolder::save_checkpoint(const Config& cfg, const TrainerState& s, const Shard& shard,
                                Comm& comm) {
  gather_after(
      comm, 0,
      [&]() -> std::vector<double> {
        check_in_place();
        return {};
      },
      [&](int r, int) {
        throw IoError(fmt::format("{}: rank {} found the run folder removed or replaced", dir_, r));
      });
  mmdflow::save_checkpoint(dir_, cfg, s, shard, generation_ + 1, comm);
  ++generation_;
}

namespace {

std::string student_shard_name(int rank, int world) {
  return fmt::format("student-{:05}-of-{:05}.pt", rank, world);
}

}  // namespace

void RunFolder::save_student(const NamedTensors& weights, const Shard& shard, Comm& comm) {
  const int world = comm.world();
  const auto all = gather_after(
      comm, 3,
      [&]() -> std::vector<double> {
        const std::string file =
            path(world == 1 ? "student.pt" : student_shard_name(comm.rank(), world));
        save_tensors(file, weights);
        const uint32_t crc = world == 1 ? 0 : file_crc32(file);
        return {double(shard.begin), double(shard.end), double(crc)};
      },
      [](int r, int) { throw IoError(fmt::format("rank {} could not write its weights", r)); });
  // The writer's index names this run's files; the other layout's, and another world size's, go.
  gather_after(
      comm, 0,
      [&]() -> std::vector<double> {
        if (!writer_) return {};
        std::vector<std::string> mine;
        std::error_code ec;
        if (world == 1) {
          mine.push_back("student.pt");
          fs::remove(path("student.index.json"), ec);
        } else {
          WeightsIndex index;
          index.particles = shard.total;
          for (const auto& [name, t] : weights) {
            std::vector<int64_t> sizes(t.sizes().begin(), t.sizes().end());
            sizes[0] = shard.total;
            index.tensors[name] = sizes;
          }
          for (int r = 0; r < world; ++r) {
            index.shards.push_back({student_shard_name(r, world), int64_t(all[r][0]),
                                    int64_t(all[r][1]), int64_t(all[r][2])});
            mine.push_back(student_shard_name(r, world));
          }
          nlohmann::json j;
          visit_index(index, JsonWriter{j});
          write_file_atomic(path("student.index.json"), j.dump(2) + "\n");
          mine.push_back("student.index.json");
        }
        for (auto e = fs::directory_iterator(dir_, ec); !ec && e != fs::directory_iterator();
             e.increment(ec)) {
          const std::string name = e->path().filename().string();
          const bool weights_file =
              name == "student.pt" || name == "student.index.json" || is_student_shard(name);
          std::error_code kept;  // a file that cannot be removed stays, unnamed by the index
          if (weights_file && std::find(mine.begin(), mine.end(), name) == mine.end())
            fs::remove(e->path(), kept);
        }
        return {};
      },
      [](int, int) { throw IoError("rank 0 could not write student.index.json"); });
}

void RunFolder::save_tensors_file(const std::string& name, const NamedTensors& tensors) {
  save_tensors(path(name), tensors);
}

void RunFolder::save_teacher(const NamedTensors& weights) {
  save_tensors(path("teacher.pt"), weights);
}

namespace {

// A .pt file of the run folder, its tensors checked against specs.
NamedTensors read_weights_file(const std::string& path, const std::vector<WeightSpec>& specs,
                               c10::ScalarType dtype) {
  if (const std::string what = not_regular(path); !what.empty())
    throw CheckpointError(fmt::format("{}: {}", path, what));
  const NamedTensors w = load_weights(path, specs, c10::elementSize(dtype), /*follow_links=*/false);
  check_weights(w, specs, dtype, path);
  return w;
}

}  // namespace

NamedTensors read_student(const std::string& dir, const Config& cfg, const Shard& want) {
  const WeightSchema schema = weight_schema_of(cfg);
  if (!schema.by_rows) return read_weights_file(dir + "/student.pt", schema.specs(0), cfg.dtype);
  const std::string index_path = dir + "/student.index.json";
  const std::string index_state = not_regular(index_path);
  if (!index_state.empty() && index_state != "missing")
    throw CheckpointError(fmt::format("{}: {}", index_path, index_state));
  if (index_state == "missing") {  // one process's student.pt: this shard's rows of it
    NamedTensors w = read_weights_file(dir + "/student.pt", schema.specs(want.total), cfg.dtype);
    for (auto& [name, t] : w) t = t.narrow(0, want.begin, want.size());
    return w;
  }
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(read_regular_file(index_path, 1 << 20, false));
  } catch (const std::exception& e) {
    throw CheckpointError(fmt::format("{}: not JSON", index_path));
  }
  WeightsIndex index;
  try {
    visit_index(index, JsonReader{json});
  } catch (const nlohmann::json::exception&) {
    throw CheckpointError(fmt::format("{}: not a weights index", index_path));
  }
  // The files holding particles [want.begin, want.end), in order, each read whole (its own
  // rows only are kept).
  std::vector<std::vector<at::Tensor>> parts(schema.specs(0).size());
  int64_t next = 0;
  for (const auto& [file, begin, end, crc] : index.shards) {
    if (file.find('/') != std::string::npos || begin != next || end < begin || end > want.total)
      throw CheckpointError(fmt::format("{}: shard '{}' [{}, {}) does not follow [0, {})",
                                        index_path, shorten(file), begin, end, next));
    next = end;
    if (end <= want.begin || begin >= want.end) continue;
    // A file of another run of the same shape differs from the one the index was written with.
    if (crc && int64_t(file_crc32(dir + "/" + file)) != *crc)
      throw CheckpointError(fmt::format(
          "{}/{}: its checksum is not the one student.index.json gives (a file of another run?)",
          dir, file));
    const NamedTensors w =
        read_weights_file(dir + "/" + file, schema.specs(end - begin), cfg.dtype);
    const int64_t lo = std::max(begin, want.begin), hi = std::min(end, want.end);
    for (size_t i = 0; i < w.size(); ++i)
      parts[i].push_back(w[i].second.narrow(0, lo - begin, hi - lo));
  }
  if (next != want.total)
    throw CheckpointError(fmt::format("{}: its shards hold {} particles, the config {}", index_path,
                                      next, want.total));
  // A rank holding no particles (more processes than blocks) reads none.
  const std::vector<WeightSpec> specs = schema.specs(want.size());
  std::vector<at::Tensor> ts;
  for (size_t i = 0; i < parts.size(); ++i)
    ts.push_back(parts[i].empty() ? at::empty(specs[i].sizes, at::TensorOptions(cfg.dtype))
                                  : at::cat(parts[i]));
  return named(specs, ts);
}

NamedTensors read_teacher(const std::string& dir, const Config& cfg) {
  return read_weights_file(dir + "/teacher.pt",
                           block_weights(teacher_family_of(cfg), cfg.teacher.particles), cfg.dtype);
}

}  // namespace mmdflow
