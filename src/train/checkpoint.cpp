#include "src/train/checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <map>
#include <regex>
#include <variant>

#include "models/weights.h"
#include "src/base/failpoint.h"
#include "src/base/io.h"
#include "src/base/random.h"
#include "src/train/build.h"

namespace mmdflow {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "checkpoints are written little-endian");

constexpr char kTag[8] = {'M', 'M', 'D', 'F', 'C', 'K', 'P', 'T'};
constexpr size_t kHeaderBytes = 8 + 4 + 4 + 8;
constexpr int64_t kMaxDims = 8;
enum Type : uint8_t { kInt = 1, kReal = 2, kText = 3, kTensor = 4 };

struct Dtype {
  uint8_t code;
  c10::ScalarType type;
  const char* name;
};
constexpr std::array<Dtype, 4> kDtypes = {{{1, at::kByte, "uint8"},
                                           {2, at::kLong, "int64"},
                                           {3, at::kFloat, "float32"},
                                           {4, at::kDouble, "float64"}}};

const char* dtype_name(c10::ScalarType t) {
  for (const Dtype& d : kDtypes)
    if (d.type == t) return d.name;
  return c10::toString(t);
}

uint8_t dtype_code(c10::ScalarType t) {
  for (const Dtype& d : kDtypes)
    if (d.type == t) return d.code;
  TORCH_CHECK(false, "checkpoint: cannot store dtype ", t);
}

template <typename T>
void put_raw(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

// Payload records, in the order they are put.
class Writer {
 public:
  void put(const std::string& name, int64_t v) { head(name, kInt), put_raw(body_, v); }
  void put(const std::string& name, double v) { head(name, kReal), put_raw(body_, v); }
  void put(const std::string& name, const std::string& v) {
    head(name, kText);
    put_raw(body_, uint64_t(v.size()));
    body_ += v;
  }
  void put(const std::string& name, const at::Tensor& t) {
    const at::Tensor c = t.to(at::kCPU).contiguous();
    const uint8_t code = dtype_code(c.scalar_type());
    TORCH_CHECK(c.dim() <= kMaxDims, "checkpoint: cannot store ", name, ": ", c.dim(), " dims");
    head(name, kTensor);
    put_raw(body_, code);
    put_raw(body_, uint8_t(c.dim()));
    for (int64_t s : c.sizes()) put_raw(body_, s);
    body_.append(static_cast<const char*>(c.data_ptr()), c.nbytes());
  }
  std::string bytes() const {
    std::string payload;
    put_raw(payload, count_);
    payload += body_;
    std::string out(kTag, sizeof kTag);
    put_raw(out, kCheckpointVersion);
    put_raw(out, crc32(payload));
    put_raw(out, uint64_t(payload.size()));
    return out + payload;
  }

 private:
  void head(const std::string& name, Type type) {
    TORCH_CHECK(name.size() < 256, "checkpoint: record name too long");
    put_raw(body_, uint8_t(name.size()));
    body_ += name;
    put_raw(body_, uint8_t(type));
    ++count_;
  }
  std::string body_;
  uint32_t count_ = 0;
};

using Value = std::variant<int64_t, double, std::string, at::Tensor>;

// A payload read back: every record is taken once, by name and type.
class Records {
 public:
  Records(std::string_view payload, const std::string& source) : in_(payload), source_(source) {
    const uint32_t count = raw<uint32_t>("the record count");
    for (uint32_t r = 0; r < count; ++r) {
      const std::string name(take(raw<uint8_t>("a record name"), "a record name"));
      const uint8_t type = raw<uint8_t>(name);
      Value v;
      if (type == kInt)
        v = raw<int64_t>(name);
      else if (type == kReal)
        v = raw<double>(name);
      else if (type == kText)
        v = std::string(take(raw<uint64_t>(name), name));
      else if (type == kTensor)
        v = tensor(name);
      else
        fail(fmt::format("record '{}' has unknown type {}", shorten(name), type));
      if (!values_.emplace(name, std::move(v)).second)
        fail(fmt::format("record '{}' appears twice", shorten(name)));
    }
    if (!in_.empty()) fail(fmt::format("{} bytes after the last record", in_.size()));
  }

  template <typename T>
  T get(const std::string& name) {
    auto it = values_.find(name);
    if (it == values_.end()) fail(fmt::format("record '{}' is missing", name));
    const T* v = std::get_if<T>(&it->second);
    if (!v) fail(fmt::format("record '{}' has the wrong type", name));
    T out = *v;
    values_.erase(it);
    return out;
  }
  void finish() const {
    if (!values_.empty())
      fail(fmt::format("unexpected record '{}'", shorten(values_.begin()->first)));
  }

  [[noreturn]] void fail(const std::string& why) const {
    throw CheckpointError(fmt::format("{}: {}", source_, why));
  }

 private:
  std::string_view take(uint64_t n, const std::string& what) {
    if (n > in_.size()) fail(fmt::format("truncated in {}", shorten(what)));
    std::string_view s = in_.substr(0, n);
    in_.remove_prefix(n);
    return s;
  }
  template <typename T>
  T raw(const std::string& what) {
    T v;
    std::memcpy(&v, take(sizeof v, what).data(), sizeof v);
    return v;
  }
  at::Tensor tensor(const std::string& name) {
    const uint8_t code = raw<uint8_t>(name), dims = raw<uint8_t>(name);
    c10::ScalarType dtype = at::kByte;
    bool known = false;
    for (const Dtype& d : kDtypes)
      if (d.code == code) dtype = d.type, known = true;
    if (!known) fail(fmt::format("record '{}' has unknown dtype code {}", shorten(name), code));
    if (dims > kMaxDims) fail(fmt::format("record '{}' has {} dimensions", shorten(name), dims));
    const uint64_t item = c10::elementSize(dtype);
    std::vector<int64_t> sizes(dims);
    uint64_t bound = 1;  // the product of the sizes, zeros taken as ones
    bool empty = false;
    for (int64_t& s : sizes) {
      s = raw<int64_t>(name);
      // Bounded by the bytes left, so corrupt sizes cannot ask for a huge tensor.
      const uint64_t f = uint64_t(std::max<int64_t>(s, 1));
      if (s < 0 || bound > in_.size() / item / f)
        fail(fmt::format("record '{}' has size {} beyond the file", shorten(name), s));
      bound *= f;
      empty = empty || s == 0;
    }
    const std::string_view data = take(empty ? 0 : bound * item, name);
    at::Tensor t = at::empty(sizes, at::TensorOptions().dtype(dtype));
    if (!data.empty()) std::memcpy(t.data_ptr(), data.data(), data.size());
    return t;
  }

  std::string_view in_;
  const std::string& source_;
  std::map<std::string, Value> values_;
};

std::string shape(at::IntArrayRef s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

// A tensor record of the given dtype and sizes.
at::Tensor get_tensor(Records& r, const std::string& name, c10::ScalarType dtype,
                      at::IntArrayRef sizes, const char* sized_by) {
  at::Tensor t = r.get<at::Tensor>(name);
  if (t.scalar_type() != dtype)
    r.fail(fmt::format("record '{}' is {}, the config needs {}", name, dtype_name(t.scalar_type()),
                       dtype_name(dtype)));
  if (t.sizes() != sizes)
    r.fail(fmt::format("record '{}' is {}, the config needs {} ({})", name, shape(t.sizes()),
                       shape(sizes), sized_by));
  if (at::isFloatingType(dtype) && !at::isfinite(t).all().item<bool>())
    r.fail(fmt::format("record '{}' holds non-finite values", name));
  return t;
}

double get_real(Records& r, const std::string& name, double lo = -INFINITY) {
  const double v = r.get<double>(name);
  if (!std::isfinite(v) || v < lo)
    r.fail(fmt::format("record '{}' is {}, expected a finite number >= {}", name, v, lo));
  return v;
}

int64_t get_int(Records& r, const std::string& name, int64_t lo, int64_t hi) {
  const int64_t v = r.get<int64_t>(name);
  if (v < lo || v > hi) r.fail(fmt::format("record '{}' is {}, expected {}..{}", name, v, lo, hi));
  return v;
}

at::Generator get_generator(Records& r) {
  at::Generator gen = make_generator(c10::Device(c10::kCPU), 0);
  const int64_t bytes = gen.get_state().numel();
  at::Tensor t = get_tensor(r, "generator", at::kByte, {bytes}, "LibTorch's CPU generator");
  try {
    gen.set_state(t);
  } catch (const c10::Error&) {
    r.fail("record 'generator' is not a valid generator state");
  }
  // LibTorch checks each counter alone; the next draws read state_[next_ .. next_ + left_ - 2].
  const at::mt19937_data_pod d = gen.get<at::CPUGeneratorImpl>()->engine().data();
  if (d.left_ < 1 || int64_t(d.next_) + d.left_ > int64_t(d.state_.size()) + 1)
    r.fail("record 'generator' is not a valid generator state");
  return gen;
}

// ---- weight shards ---------------------------------------------------------------------------

constexpr char kShardTag[8] = {'M', 'M', 'D', 'F', 'S', 'H', 'R', 'D'};
constexpr uint32_t kShardVersion = 1;

// The student's weights in a shard of `rows` particles (models/weights.h).
std::vector<WeightSpec> specs_of(const Config& cfg, int64_t rows) {
  return weight_schema_of(cfg).specs(rows);
}

// A shard file read in pieces: every byte passes through the checksum; nothing is held but the
// piece and the rows copied out.
class ShardReader {
 public:
  // The file entry.name in the open folder dir; no link is followed, no FIFO waited on.
  ShardReader(int dir, const ShardFile& entry) : name_(entry.name), entry_(entry) {
    fd_.reset(::openat(dir, entry.name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (fd_.get() < 0) fail(fmt::format("cannot read it ({})", std::strerror(errno)));
    struct stat st {};
    if (::fstat(fd_.get(), &st) != 0 || !S_ISREG(st.st_mode)) fail("not a regular file");
    if (uint64_t(st.st_size) != entry.bytes)
      fail(fmt::format("{} bytes, the manifest says {}", st.st_size, entry.bytes));
    left_ = entry.bytes;
  }

  template <typename T>
  T raw() {
    T v;
    read(&v, sizeof v);
    return v;
  }
  void read(void* dst, uint64_t n) {  // dst null: skip
    char* out = static_cast<char*>(dst);
    while (n > 0) {
      if (pos_ == buf_.size()) refill();
      const uint64_t k = std::min<uint64_t>(n, buf_.size() - pos_);
      if (out) std::memcpy(out, buf_.data() + pos_, k), out += k;
      pos_ += k;
      n -= k;
    }
  }
  // All read and the checksum as the manifest says.
  void finish() {
    if (left_ != 0 || pos_ != buf_.size()) fail("bytes after the last tensor");
    if (crc_ != entry_.crc) fail("corrupt: the checksum does not match the manifest's");
  }
  [[noreturn]] void fail(const std::string& why) const {
    throw CheckpointError(fmt::format("{}/{}: {}", kShardFolder, name_, why));
  }

 private:
  void refill() {
    if (left_ == 0) fail("truncated");
    buf_.resize(std::min<uint64_t>(left_, kPiece));
    size_t got = 0;
    while (got < buf_.size()) {
      const ssize_t r = ::read(fd_.get(), buf_.data() + got, buf_.size() - got);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) fail("truncated while reading");
      got += size_t(r);
    }
    left_ -= buf_.size();
    pos_ = 0;
    crc_ = crc32(std::string_view(buf_.data(), buf_.size()), crc_);
  }

  static constexpr uint64_t kPiece = 1 << 20;
  std::string name_;
  ShardFile entry_;
  Fd fd_;
  uint64_t left_ = 0;
  std::vector<char> buf_;
  size_t pos_ = 0;
  uint32_t crc_ = 0;
};

// The open shard folder of dir. It must be a folder, not a link to one: shards are written and
// swept through it, so nothing outside the run folder is written or removed. Throws E.
template <typename E>
Fd open_shard_folder(const std::string& dir, bool create) {
  const std::string folder = dir + "/" + kShardFolder;
  std::error_code ec;
  if (create) std::filesystem::create_directories(dir, ec);
  if (create && (ec || (::mkdir(folder.c_str(), 0755) != 0 && errno != EEXIST)))
    throw E(fmt::format("cannot create {}: {}", folder,
                        ec ? ec.message() : std::string(std::strerror(errno))));
  Fd fd(::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0)
    throw E(fmt::format("{}: {}", folder,
                        errno == ELOOP || errno == ENOTDIR
                            ? "not a folder (a symbolic link or a file), not used"
                            : std::strerror(errno)));
  return fd;
}

// A shard's name or one of its temporaries' (shard_name, AtomicFile): the only names the sweep
// of stale shards removes.
bool shard_file_name(const std::string& name) {
  static const std::regex form(R"(g[0-9]{6,}-[0-9]{5,}-of-[0-9]{5,}\.bin(\.tmp\.[0-9]+\.[0-9]+)?)");
  return std::regex_match(name, form);
}

}  // namespace

uint32_t crc32(std::string_view bytes, uint32_t crc) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = crc ^ 0xFFFFFFFFu;
  for (unsigned char b : bytes) c = table[(c ^ b) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

std::string shard_name(int64_t generation, int rank, int world) {
  return fmt::format("g{:06}-{:05}-of-{:05}.bin", generation, rank, world);
}

std::string shard_bytes(const Config& cfg, const Shard& shard, const NamedTensors& w) {
  const std::vector<WeightSpec> specs = specs_of(cfg, shard.size());
  TORCH_CHECK(w.size() == specs.size(), "checkpoint: ", w.size(), " weight tensors, expected ",
              specs.size());
  std::string out(kShardTag, sizeof kShardTag);
  put_raw(out, kShardVersion);
  put_raw(out, shard.begin);
  put_raw(out, shard.end);
  put_raw(out, dtype_code(cfg.dtype));
  put_raw(out, uint8_t(w.size()));
  for (size_t i = 0; i < w.size(); ++i) {
    const auto& [name, t] = w[i];
    TORCH_CHECK(name == specs[i].name && t.sizes() == at::IntArrayRef(specs[i].sizes),
                "checkpoint: weight ", name, " is ", t.sizes(), ", expected ", specs[i].name);
    put_raw(out, uint8_t(name.size()));
    out += name;
    put_raw(out, uint8_t(t.dim()));
    for (int64_t s : t.sizes()) put_raw(out, s);
  }
  for (const auto& [name, t] : w) {
    const at::Tensor c = t.to(at::kCPU, cfg.dtype).contiguous();
    out.append(static_cast<const char*>(c.data_ptr()), c.nbytes());
  }
  return out;
}

namespace {

// The trainer state's records (visit_state) put in order.
struct StatePut {
  Writer& w;
  void integer(const std::string& name, int64_t v, int64_t, int64_t) { w.put(name, v); }
  void real(const std::string& name, double v, double) { w.put(name, v); }
  void number(const std::string& name, double v) { w.put(name, v); }
  void order(const std::string& name, const at::Tensor& perm, int64_t) { w.put(name, perm); }
  void generator(const std::string& name, const at::Generator& gen) {
    w.put(name, gen.get_state());
  }
  template <typename Message>
  void check(bool, Message&&) {}
};

// The same records taken back, each checked as visit_state says.
struct StateGet {
  Records& r;
  void integer(const std::string& name, int64_t& v, int64_t lo, int64_t hi) {
    v = get_int(r, name, lo, hi);
  }
  void real(const std::string& name, double& v, double lo) { v = get_real(r, name, lo); }
  void number(const std::string& name, double& v) { v = r.get<double>(name); }
  void order(const std::string& name, at::Tensor& perm, int64_t n) {
    perm = get_tensor(r, name, at::kLong, {n}, "data.train_size");
    if (!std::get<0>(perm.sort()).equal(at::arange(n, at::kLong)))
      r.fail(fmt::format("record '{}' is not a permutation", name));
  }
  void generator(const std::string&, at::Generator& gen) { gen = get_generator(r); }
  template <typename Message>
  void check(bool ok, Message&& message) {
    if (!ok) r.fail(message());
  }
};

// The config the manifest was written with, which may differ from cfg in resumable keys only.
void check_config(Records& r, const Config& cfg, const std::string& source) {
  Config saved;
  try {
    saved = parse_config(r.get<std::string>("config"), {}, source + " (its config)");
  } catch (const ConfigError& e) {
    r.fail(e.what());
  }
  for (const KeyDiff& d : differing_keys(saved, cfg))
    if (!d.resumable)
      r.fail(
          fmt::format("written with {}: {}, the config says {} (a resumed run may only change {})",
                      d.path, shorten(d.a), shorten(d.b), resumable_keys()));
}

// The shard files, which tile the particles [0, N) in order.
std::vector<ShardFile> get_shards(Records& r, const Config& cfg, int64_t generation) {
  const int64_t N = cfg.student.particles;
  const int64_t count = get_int(r, "shards", 1, weight_schema_of(cfg).by_rows ? 1 << 20 : 1);
  std::vector<ShardFile> out;
  int64_t next = 0;
  for (int64_t k = 0; k < count; ++k) {
    const std::string p = fmt::format("shard.{}.", k);
    ShardFile f;
    f.name = r.get<std::string>(p + "file");
    if (f.name != shard_name(generation, int(k), int(count)))
      r.fail(fmt::format("record '{}file' is '{}', expected '{}'", p, shorten(f.name),
                         shard_name(generation, int(k), int(count))));
    f.begin = get_int(r, p + "begin", next, next);
    f.end = get_int(r, p + "end", f.begin, N);
    if (k + 1 == count && f.end != N)
      r.fail(fmt::format("the shards end at particle {}, student.particles is {}", f.end, N));
    f.bytes = uint64_t(get_int(r, p + "bytes", 1, INT64_MAX));
    f.crc = uint32_t(get_int(r, p + "crc", 0, UINT32_MAX));
    next = f.end;
    out.push_back(f);
  }
  return out;
}

// The payload of a manifest's bytes: tag, version, length and checksum checked.
std::string_view payload_of(std::string_view bytes, const std::string& source) {
  auto fail = [&](const std::string& why) {
    throw CheckpointError(fmt::format("{}: {}", source, why));
  };
  if (bytes.size() < sizeof kTag || std::memcmp(bytes.data(), kTag, sizeof kTag) != 0)
    fail("not an mmdflow checkpoint (no MMDFCKPT tag)");
  if (bytes.size() < kHeaderBytes) fail("truncated in the header");
  uint32_t version, crc;
  uint64_t size;
  std::memcpy(&version, bytes.data() + 8, 4);
  std::memcpy(&crc, bytes.data() + 12, 4);
  std::memcpy(&size, bytes.data() + 16, 8);
  if (version != kCheckpointVersion)
    fail(fmt::format("checkpoint format version {}, this mmdflow reads version {}", version,
                     kCheckpointVersion));
  const std::string_view payload = bytes.substr(kHeaderBytes);
  if (payload.size() != size)
    fail(fmt::format("truncated or extended: {} bytes of records, the header says {}",
                     payload.size(), size));
  if (crc32(payload) != crc) fail("corrupt: the checksum does not match");
  return payload;
}

}  // namespace

std::string manifest_bytes(const Config& cfg, const TrainerState& s, int64_t generation,
                           const std::vector<ShardFile>& shards) {
  Writer w;
  w.put("config", to_yaml(cfg));
  StatePut put{w};
  visit_state(s, put, cfg, steps_per_epoch(cfg), draws_order(cfg));
  w.put("generation", generation);
  w.put("shards", int64_t(shards.size()));
  for (size_t k = 0; k < shards.size(); ++k) {
    const std::string p = fmt::format("shard.{}.", k);
    w.put(p + "file", shards[k].name);
    w.put(p + "begin", shards[k].begin);
    w.put(p + "end", shards[k].end);
    w.put(p + "bytes", int64_t(shards[k].bytes));
    w.put(p + "crc", int64_t(shards[k].crc));
  }
  return w.bytes();
}

Checkpoint parse_manifest(std::string_view bytes, const Config& cfg, const std::string& source) {
  Records r(payload_of(bytes, source), source);
  check_config(r, cfg, source);
  Checkpoint c;
  StateGet get{r};
  visit_state(c.state, get, cfg, steps_per_epoch(cfg), draws_order(cfg));
  c.state.last.epoch = c.state.epoch;
  c.generation = get_int(r, "generation", 1, kMaxGeneration);
  c.shards = get_shards(r, cfg, c.generation);
  r.finish();
  return c;
}

NamedTensors read_weights(const std::string& dir, const Checkpoint& c, const Config& cfg,
                          const Shard& want) {
  const int64_t item = int64_t(c10::elementSize(cfg.dtype));
  const bool by_rows = weight_schema_of(cfg).by_rows;
  NamedTensors out;
  for (const WeightSpec& spec : specs_of(cfg, want.size()))
    out.emplace_back(spec.name, at::empty(spec.sizes, at::TensorOptions().dtype(cfg.dtype)));
  const Fd folder = open_shard_folder<CheckpointError>(dir, false);
  for (const ShardFile& f : c.shards) {
    if (f.end <= want.begin || f.begin >= want.end) continue;
    ShardReader in(folder.get(), f);
    char tag[sizeof kShardTag];
    in.read(tag, sizeof tag);
    if (std::memcmp(tag, kShardTag, sizeof tag) != 0) in.fail("not an mmdflow weight shard");
    if (const uint32_t v = in.raw<uint32_t>(); v != kShardVersion)
      in.fail(
          fmt::format("shard format version {}, this mmdflow reads version {}", v, kShardVersion));
    const int64_t begin = in.raw<int64_t>(), end = in.raw<int64_t>();
    if (begin != f.begin || end != f.end)
      in.fail(fmt::format("holds particles [{}, {}), the manifest says [{}, {})", begin, end,
                          f.begin, f.end));
    if (in.raw<uint8_t>() != dtype_code(cfg.dtype))
      in.fail(fmt::format("not {}", name_of(cfg.dtype)));
    const std::vector<WeightSpec> specs = specs_of(cfg, f.end - f.begin);
    if (in.raw<uint8_t>() != specs.size())
      in.fail(fmt::format("does not hold the {} weight tensors of the config", specs.size()));
    for (const WeightSpec& spec : specs) {
      std::string name(in.raw<uint8_t>(), '\0');
      in.read(name.data(), name.size());
      const std::vector<int64_t>& sizes = spec.sizes;
      const uint8_t dims = in.raw<uint8_t>();
      std::vector<int64_t> got(std::min<uint8_t>(dims, kMaxDims));
      if (dims > kMaxDims)
        in.fail(fmt::format("tensor '{}' has {} dimensions", shorten(name), dims));
      for (int64_t& s : got) s = in.raw<int64_t>();
      if (name != spec.name || got != sizes)
        in.fail(fmt::format("tensor '{}' {} where the config needs '{}' {}", shorten(name),
                            shape(got), spec.name, shape(sizes)));
    }
    // Each tensor's rows: those before want, the wanted ones, those after.
    for (size_t i = 0; i < specs.size(); ++i) {
      const at::Tensor& dst = out[i].second;
      if (!by_rows) {
        in.read(dst.data_ptr(), uint64_t(dst.numel() * item));
        continue;
      }
      const int64_t row = dst.numel() / std::max<int64_t>(want.size(), 1);
      const int64_t lo = std::max(f.begin, want.begin), hi = std::min(f.end, want.end);
      in.read(nullptr, uint64_t((lo - f.begin) * row * item));
      in.read(static_cast<char*>(dst.data_ptr()) + (lo - want.begin) * row * item,
              uint64_t((hi - lo) * row * item));
      in.read(nullptr, uint64_t((f.end - hi) * row * item));
    }
    in.finish();
  }
  for (const auto& [name, t] : out)
    if (!at::isfinite(t).all().item<bool>())
      throw CheckpointError(
          fmt::format("{}/{}: weight '{}' holds non-finite values", dir, kShardFolder, name));
  return out;
}

void save_checkpoint(const std::string& dir, const Config& cfg, const TrainerState& s,
                     const Shard& shard, int64_t generation, Comm& comm) {
  const std::string folder = dir + "/" + kShardFolder;
  const int world = comm.world();
  Fd shards;
  // Phase 1 on every rank: each shard durable, or the checkpoint abandoned everywhere.
  const auto all = gather_after(
      comm, 2,
      [&]() -> std::vector<double> {
        shards = open_shard_folder<IoError>(dir, true);
        const std::string bytes = shard_bytes(cfg, shard, s.student);
        const std::string name = shard_name(generation, comm.rank(), world);
        AtomicFile f(shards.get(), name, folder + "/" + name);
        f.write(bytes.data(), bytes.size());
        f.commit();
        return {double(bytes.size()), double(crc32(bytes))};
      },
      [&](int r, int) {
        throw IoError(fmt::format("rank {} could not write its checkpoint shard; {} kept", r,
                                  kCheckpointFile));
      });
  // Phase 2 on rank 0: the manifest naming the shards.
  gather_after(
      comm, 0,
      [&]() -> std::vector<double> {
        if (comm.rank() != 0) return {};
        if (failpoint_armed(Failpoint::CheckpointBeforeManifest))
          std::raise(SIGKILL);  // a test's crash between the two phases (docs/reliability.md)
        std::vector<ShardFile> files;
        for (int r = 0; r < world; ++r) {
          const Shard sh = world == 1 ? shard : shard_of(cfg, r, world);
          files.push_back({shard_name(generation, r, world), sh.begin, sh.end, uint64_t(all[r][0]),
                           uint32_t(all[r][1])});
        }
        write_file_atomic(dir + "/" + kCheckpointFile, manifest_bytes(cfg, s, generation, files));
        // The shards of no manifest (older generations, temporaries) go; nothing else does.
        std::vector<std::string> stale;
        if (DIR* d = ::fdopendir(::dup(shards.get()))) {
          while (const dirent* e = ::readdir(d)) {
            const std::string name = e->d_name;
            if (shard_file_name(name) &&
                std::none_of(files.begin(), files.end(),
                             [&](const ShardFile& f) { return f.name == name; }))
              stale.push_back(name);
          }
          ::closedir(d);
        }
        for (const std::string& name : stale)  // one that cannot be removed stays, unnamed
          ::unlinkat(shards.get(), name.c_str(), 0);
        return {};
      },
      [&](int, int) {
        throw IoError(
            fmt::format("rank 0 could not write {}; the previous one is kept", kCheckpointFile));
      });
}

std::optional<Checkpoint> load_checkpoint(const std::string& dir, const Config& cfg,
                                          const Shard& shard) {
  const std::string path = dir + "/" + kCheckpointFile;
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return std::nullopt;
  if (!S_ISREG(st.st_mode)) throw CheckpointError(fmt::format("{}: not a regular file", path));
  // The records' bytes: the config, the minibatch order, the generator, the shards' entries.
  const uint64_t bound = (1 << 20) + 8 * uint64_t(cfg.data.train_size) +
                         256 * uint64_t(std::min<int64_t>(cfg.student.particles, 1 << 20));
  std::string bytes;
  try {
    bytes = read_regular_file(path, bound, false);
  } catch (const std::runtime_error& e) {
    throw CheckpointError(e.what());
  }
  Checkpoint c = parse_manifest(bytes, cfg, path);
  c.state.student = read_weights(dir, c, cfg, shard);
  return c;
}

}  // namespace mmdflow
