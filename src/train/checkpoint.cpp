#include "src/train/checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <array>
#include <cmath>
#include <cstring>
#include <map>
#include <sstream>
#include <variant>

#include "src/base/io.h"
#include "src/base/random.h"

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
    uint8_t code = 0;
    for (const Dtype& d : kDtypes)
      if (d.type == c.scalar_type()) code = d.code;
    TORCH_CHECK(code != 0 && c.dim() <= kMaxDims, "checkpoint: cannot store ", name);
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
        fail(fmt::format("record '{}' has unknown type {}", name, type));
      if (!values_.emplace(name, std::move(v)).second)
        fail(fmt::format("record '{}' appears twice", name));
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
    if (!values_.empty()) fail(fmt::format("unexpected record '{}'", values_.begin()->first));
  }

  [[noreturn]] void fail(const std::string& why) const {
    throw CheckpointError(fmt::format("{}: {}", source_, why));
  }

 private:
  std::string_view take(uint64_t n, const std::string& what) {
    if (n > in_.size()) fail(fmt::format("truncated in {}", what));
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
    if (!known) fail(fmt::format("record '{}' has unknown dtype code {}", name, code));
    if (dims > kMaxDims) fail(fmt::format("record '{}' has {} dimensions", name, dims));
    const uint64_t item = c10::elementSize(dtype);
    std::vector<int64_t> sizes(dims);
    uint64_t bound = 1;  // the product of the sizes, zeros taken as ones
    bool empty = false;
    for (int64_t& s : sizes) {
      s = raw<int64_t>(name);
      // Bounded by the bytes left, so corrupt sizes cannot ask for a huge tensor.
      const uint64_t f = uint64_t(std::max<int64_t>(s, 1));
      if (s < 0 || bound > in_.size() / item / f)
        fail(fmt::format("record '{}' has size {} beyond the file", name, s));
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

}  // namespace

uint32_t crc32(std::string_view bytes) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : bytes) c = table[(c ^ b) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

std::string checkpoint_bytes(const Config& cfg, const TrainerState& s) {
  Writer w;
  w.put("config", to_yaml(cfg));
  w.put("epoch", s.epoch);
  w.put("batch", s.batch);
  if (s.batch > 0) {
    if (!cfg.data.fresh) w.put("perm", s.perm);
    w.put("loss_sum", s.loss_sum);
  }
  w.put("steps", s.steps);
  w.put("step_seconds", s.step_seconds);
  w.put("seconds", s.seconds);
  w.put("generator", s.gen.get_state());
  for (const auto& [name, t] : s.student) w.put("student." + name, t);
  w.put("step_size", s.step.step_size);
  w.put("plateau.best_train", s.step.best);
  w.put("plateau.bad_epochs", s.step.bad_epochs);
  w.put("best_valid", s.best_valid);
  w.put("best_epoch", s.best_epoch);
  w.put("last.train_loss", s.last.train_loss);
  w.put("last.valid_loss", s.last.valid_loss);
  w.put("last.beta", s.last.beta);
  w.put("last.step_size", s.last.step_size);
  w.put("last.grad_sq", s.last.grad_sq);
  w.put("last.noisy_grad_sq", s.last.noisy_grad_sq);
  w.put("last.seconds", s.last.seconds);
  return w.bytes();
}

TrainerState parse_checkpoint(std::string_view bytes, const Config& cfg,
                              const std::string& source) {
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

  Records r(payload, source);
  Config saved;
  try {
    saved = parse_config(r.get<std::string>("config"), {}, source + " (its config)");
  } catch (const ConfigError& e) {
    fail(e.what());
  }
  for (const KeyDiff& d : differing_keys(saved, cfg))
    if (!d.resumable)
      fail(fmt::format("written with {}: {}, the config says {} (a resumed run may only change {})",
                       d.path, shorten(d.a), shorten(d.b), resumable_keys()));

  TrainerState s;
  const int64_t n = cfg.data.train_size, batches = (n + cfg.train.batch - 1) / cfg.train.batch;
  s.epoch = get_int(r, "epoch", 0, INT64_MAX);
  if (s.epoch > cfg.train.epochs)
    r.fail(fmt::format("at epoch {}, past train.epochs = {}", s.epoch, cfg.train.epochs));
  s.batch = get_int(r, "batch", 0, s.epoch < cfg.train.epochs ? batches - 1 : 0);
  if (s.batch > 0) {
    if (!cfg.data.fresh) {
      s.perm = get_tensor(r, "perm", at::kLong, {n}, "data.train_size");
      if (!std::get<0>(s.perm.sort()).equal(at::arange(n, at::kLong)))
        r.fail("record 'perm' is not a permutation");
    }
    s.loss_sum = get_real(r, "loss_sum", 0);
  }
  s.steps = r.get<int64_t>("steps");
  if (s.steps != s.epoch * batches + s.batch)
    r.fail(fmt::format("record 'steps' is {}, epoch {} and batch {} make {}", s.steps, s.epoch,
                       s.batch, s.epoch * batches + s.batch));
  s.step_seconds = get_real(r, "step_seconds", 0);
  s.seconds = get_real(r, "seconds", 0);
  s.gen = get_generator(r);

  const c10::ScalarType dtype = cfg.dtype;
  const int64_t N = cfg.student.particles, H = cfg.model.hidden, d = cfg.data.dim,
                o = cfg.model.outputs;
  auto weight = [&](const char* name, std::vector<int64_t> sizes, const char* sized_by) {
    s.student.emplace_back(name,
                           get_tensor(r, std::string("student.") + name, dtype, sizes, sized_by));
  };
  if (cfg.student.layout == Layout::Dense) {
    weight("W1", {N * H, d}, "student.particles, model.hidden, data.dim");
    if (cfg.model.hidden_bias) weight("b1", {N * H}, "student.particles, model.hidden");
    weight("W2", {N * o, N * H}, "student.particles, model.outputs, model.hidden");
    if (cfg.model.output_bias) weight("b2", {N * o}, "student.particles, model.outputs");
  } else {
    weight("A", {N, H, d}, "student.particles, model.hidden, data.dim");
    if (cfg.model.hidden_bias) weight("a", {N, H}, "student.particles, model.hidden");
    weight("B", {N, o, H}, "student.particles, model.outputs, model.hidden");
    if (cfg.model.output_bias) weight("b", {N, o}, "student.particles, model.outputs");
  }
  s.step.step_size = get_real(r, "step_size", 0);
  if (s.step.step_size <= 0 || s.step.step_size > cfg.flow.step_size)
    r.fail(fmt::format("record 'step_size' is {}, expected in (0, flow.step_size = {}]",
                       s.step.step_size, cfg.flow.step_size));
  s.step.best = r.get<double>("plateau.best_train");  // +inf before the first epoch
  if (std::isnan(s.step.best) || s.step.best < 0)
    r.fail(fmt::format("record 'plateau.best_train' is {}", s.step.best));
  s.step.bad_epochs = get_int(r, "plateau.bad_epochs", 0, cfg.flow.patience - 1);

  s.best_valid = get_real(r, "best_valid", 0);
  s.best_epoch = get_int(r, "best_epoch", 0, s.epoch);
  s.last.epoch = s.epoch;
  s.last.train_loss = get_real(r, "last.train_loss", 0);
  s.last.valid_loss = get_real(r, "last.valid_loss", 0);
  s.last.beta = get_real(r, "last.beta", 0);
  s.last.step_size = get_real(r, "last.step_size", 0);
  s.last.grad_sq = get_real(r, "last.grad_sq", 0);
  s.last.noisy_grad_sq = get_real(r, "last.noisy_grad_sq", 0);
  s.last.seconds = get_real(r, "last.seconds", 0);
  r.finish();
  return s;
}

void save_checkpoint(const std::string& path, const Config& cfg, const TrainerState& s) {
  write_file_atomic(path, checkpoint_bytes(cfg, s));
}

TrainerState load_checkpoint(const std::string& path, const Config& cfg) {
  std::string bytes;
  try {
    bytes = read_file(path);
  } catch (const std::runtime_error&) {
    throw CheckpointError(fmt::format("{}: cannot read", path));
  }
  return parse_checkpoint(bytes, cfg, path);
}

}  // namespace mmdflow
