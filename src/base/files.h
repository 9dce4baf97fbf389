// Reading whole files without Torch: a file descriptor that closes itself, and the one reader of
// files the user or a run hands back (configs, data, weights, logs).
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace mmdflow {

// An open file descriptor, closed when dropped (also when a constructor throws after opening it).
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    reset(std::exchange(o.fd_, -1));
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset(int fd = -1);  // closes the one held

 private:
  int fd_;
};

// A file that cannot be read as asked. what() names the path; why() is the reason alone, for a
// caller that names the file its own way ("config X: <why>").
class FileError : public std::runtime_error {
 public:
  FileError(const std::string& what, std::string why)
      : std::runtime_error(what), why_(std::move(why)) {}
  const std::string& why() const { return why_; }

 private:
  std::string why_;
};

// A regular file's bytes, through symbolic links; anything else (a FIFO too) is refused, never
// waited on. Throws FileError.
std::string read_file(const std::string& path);
// A file read back from a run folder: opened without blocking (a FIFO is refused, never waited
// on, even one put in the file's place after a look at it) and, unless follow_links, without
// following a symbolic link; a regular file of at most max_bytes. Throws FileError.
std::string read_regular_file(const std::string& path, uint64_t max_bytes, bool follow_links);

}  // namespace mmdflow
