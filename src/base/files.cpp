#include "src/base/files.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>

namespace mmdflow {

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& why) {
  throw FileError(fmt::format("{}: {}", path, why), why);
}

[[noreturn]] void fail_errno(const std::string& path) {
  const char* err = std::strerror(errno);
  throw FileError(fmt::format("cannot read {}: {}", path, err),
                  fmt::format("cannot read it: {}", err));
}

}  // namespace

void Fd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

std::string read_file(const std::string& path) {
  return read_regular_file(path, std::numeric_limits<uint64_t>::max(), true);
}

std::string read_regular_file(const std::string& path, uint64_t max_bytes, bool follow_links) {
  const int flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC | (follow_links ? 0 : O_NOFOLLOW);
  Fd fd(::open(path.c_str(), flags));
  struct stat st {};
  if (fd.get() < 0 && errno == ELOOP && !follow_links) fail(path, "a symbolic link, not a file");
  if (fd.get() < 0 || ::fstat(fd.get(), &st) != 0) fail_errno(path);
  if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
  if (uint64_t(st.st_size) > max_bytes)
    fail(path, fmt::format("{} bytes, more than the {} it may hold", st.st_size, max_bytes));
  std::string out(size_t(st.st_size), '\0');
  size_t got = 0;
  while (got < out.size()) {  // a file that shrinks meanwhile ends early; one that grows is cut
    const ssize_t n = ::read(fd.get(), out.data() + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_errno(path);
    if (n == 0) break;
    got += size_t(n);
  }
  out.resize(got);
  return out;
}

}  // namespace mmdflow
