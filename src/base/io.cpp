#include "src/base/io.h"

#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/read_adapter_interface.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <torch/csrc/jit/serialization/import_read.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace mmdflow {
namespace {

[[noreturn]] void fail(const std::string& what, const std::string& path, int err) {
  throw IoError(fmt::format("cannot {} {}: {}", what, path, std::strerror(err)));
}

// Writes all of data at fd's offset; false (errno set) on failure.
bool write_all(int fd, const char* data, size_t size) {
  for (size_t done = 0; done < size;) {
    const ssize_t n = ::write(fd, data + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EIO;
      return false;
    }
    done += size_t(n);
  }
  return true;
}

// Torch's unpickler trusts the lengths and memo indices in a pickle: a few bytes can make it
// allocate and fill gigabytes (a LONG_BINPUT of index 2^32 - 1 grows its memo to 64 GB). So the
// pickle of a .pt file is walked first: a dict of tensors is small, every opcode must be one of
// the protocol's, every argument and length must lie within it and every memo index below its
// length. Throws std::runtime_error.
void check_pickle(std::string_view p) {
  constexpr size_t kMaxPickle = 1 << 20;
  if (p.size() > kMaxPickle)
    throw std::runtime_error(
        fmt::format("data.pkl: {} bytes, too long for a dict of tensors", p.size()));
  size_t i = 0, at = 0;
  auto fail = [&](const std::string& why) {
    throw std::runtime_error(fmt::format("data.pkl byte {}: {}", at, why));
  };
  auto skip = [&](uint64_t n) {
    if (n > p.size() - i) fail(fmt::format("{} bytes past the end", n));
    i += n;
  };
  auto number = [&](int bytes) {  // little-endian, unsigned
    uint64_t v = 0;
    skip(uint64_t(bytes));
    for (int k = bytes - 1; k >= 0; --k) v = v << 8 | uint8_t(p[i - bytes + k]);
    return v;
  };
  auto line = [&] {
    const size_t end = p.find('\n', i);
    if (end == std::string_view::npos) fail("a line past the end");
    const std::string_view s = p.substr(i, end - i);
    i = end + 1;
    return s;
  };
  auto memo = [&](uint64_t id) {
    if (id >= p.size()) fail(fmt::format("memo index {} too large", id));
  };
  // Opcodes by what follows them: nothing, an n-byte number, a memo index, a length and as many
  // bytes, lines.
  constexpr std::string_view kNone =
      "(012NRabd}el]ost)uQ\x81\x85\x86\x87\x88\x89\x8f\x90\x91\x92\x93\x94\x97\x98";
  constexpr std::string_view kNumber1 = "K\x80\x82", kNumber2 = "M\x83", kNumber4 = "J\x84",
                             kNumber8 = "G\x95", kMemo1 = "hq", kMemo4 = "jr",
                             kLength1 = "UC\x8c\x8a", kLength4 = "TBX\x8b",
                             kLength8 = "\x8d\x8e\x96", kLine = "ILFSVP", kLines2 = "ci",
                             kMemoLine = "gp";
  while (i < p.size()) {
    at = i;
    const char op = p[i++];
    auto is = [&](std::string_view ops) { return ops.find(op) != std::string_view::npos; };
    if (op == '.') {
      if (i != p.size()) fail("bytes after STOP");
      return;
    } else if (is(kNone)) {
    } else if (is(kNumber1) || is(kNumber2) || is(kNumber4) || is(kNumber8)) {
      number(is(kNumber1) ? 1 : is(kNumber2) ? 2 : is(kNumber4) ? 4 : 8);
    } else if (is(kMemo1) || is(kMemo4)) {
      memo(number(is(kMemo1) ? 1 : 4));
    } else if (is(kLength1) || is(kLength4) || is(kLength8)) {
      skip(number(is(kLength1) ? 1 : is(kLength4) ? 4 : 8));
    } else if (is(kLine) || is(kLines2)) {
      line();
      if (is(kLines2)) line();
    } else if (is(kMemoLine)) {
      const std::string_view s = line();
      uint64_t id = 0;
      const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), id);
      if (ec != std::errc() || end != s.data() + s.size()) fail("not a memo index");
      memo(id);
    } else {
      fail(fmt::format("unknown opcode 0x{:02x}", uint8_t(op)));
    }
  }
  at = p.size();
  fail("no STOP at the end");
}

// A file's bytes for LibTorch's archive reader, which asks for ranges past the end of a malformed
// archive and trusts the answer (its own in-memory readers copy them regardless): a read past the
// end gives fewer bytes, which the reader reports as an error.
class BoundedReader final : public caffe2::serialize::ReadAdapterInterface {
 public:
  explicit BoundedReader(std::string bytes) : bytes_(std::move(bytes)) {}
  size_t size() const override { return bytes_.size(); }
  size_t read(uint64_t pos, void* buf, size_t n, const char*) const override {
    if (pos >= bytes_.size()) return 0;
    n = std::min<uint64_t>(n, bytes_.size() - pos);
    std::memcpy(buf, bytes_.data() + pos, n);
    return n;
  }

 private:
  std::string bytes_;
};

}  // namespace

void Fd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

AtomicFile::AtomicFile(const std::string& path) : path_(path) {
  static std::atomic<uint64_t> count{0};
  tmp_ = fmt::format("{}.tmp.{}.{}", path, ::getpid(), count++);
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("write", tmp_, errno);
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void AtomicFile::write(const void* data, size_t bytes) {
  if (!write_all(fd_, static_cast<const char*>(data), bytes)) fail("write", path_, errno);
}

void AtomicFile::commit() {
  const bool ok = ::fsync(fd_) == 0;
  const int err = errno;
  const int closed = ::close(fd_);
  fd_ = -1;
  if (!ok || closed != 0) {
    ::unlink(tmp_.c_str());
    fail("write", path_, ok ? errno : err);
  }
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const int rename_err = errno;
    ::unlink(tmp_.c_str());
    fail("rename onto", path_, rename_err);
  }
  // Makes the rename itself durable; some file systems cannot fsync a folder, which only weakens
  // durability after a power loss, not atomicity.
  std::string dir = std::filesystem::path(path_).parent_path().string();
  const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void write_file_atomic(const std::string& path, const std::string& content) {
  AtomicFile f(path);
  f.write(content.data(), content.size());
  f.commit();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("cannot read {}", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void save_tensors(const std::string& path, const NamedTensors& tensors) {
  c10::Dict<std::string, at::Tensor> dict;
  for (const auto& [name, t] : tensors) dict.insert(name, t);
  std::vector<char> bytes = torch::jit::pickle_save(c10::IValue(dict));
  write_file_atomic(path, std::string(bytes.begin(), bytes.end()));
}

NamedTensors load_tensors(const std::string& path) {
  caffe2::serialize::PyTorchStreamReader zip(std::make_shared<BoundedReader>(read_file(path)));
  const auto [pickle, size] = zip.getRecord("data.pkl");
  check_pickle(std::string_view(static_cast<const char*>(pickle.get()), size));
  const c10::IValue v =
      torch::jit::readArchiveAndTensors("data", /*pickle_prefix=*/"", /*tensor_prefix=*/"",
                                        c10::nullopt, c10::nullopt, c10::nullopt, zip);
  TORCH_CHECK(v.isGenericDict(), path, " does not hold a dict of tensors");
  NamedTensors out;
  for (const auto& kv : v.toGenericDict())
    out.emplace_back(kv.key().toStringRef(), kv.value().toTensor());
  return out;
}

LineFile::LineFile(const std::string& path, const std::string& content) : path_(path) {
  write_file_atomic(path, content);
  fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
  if (fd_ < 0) fail("append to", path, errno);
  size_ = int64_t(content.size());
}

LineFile::~LineFile() { ::close(fd_); }

void LineFile::append(const std::string& lines) {
  if (!write_all(fd_, lines.data(), lines.size())) {
    const int err = errno;
    if (::ftruncate(fd_, size_) != 0) fail("cut back the partial line of", path_, errno);
    fail("append to", path_, err);
  }
  size_ += int64_t(lines.size());
}

}  // namespace mmdflow
