#include "src/base/io.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
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

}  // namespace

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
  std::string s = read_file(path);
  c10::IValue v = torch::jit::pickle_load(std::vector<char>(s.begin(), s.end()));
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
