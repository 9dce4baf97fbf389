// Files a run writes: atomic whole files, tensor dicts readable by Python's torch.load.
#pragma once
#include <ATen/core/Tensor.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "src/base/errors.h"
#include "src/base/files.h"

namespace mmdflow {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// A file written whole or not at all: into a fresh temporary beside it (path.tmp.<pid>.<k>,
// created exclusively, never through a symbolic link), fsynced, then renamed over path by
// commit(): readers, and a crash at any moment, see the old file or the new one. Without
// commit(), or on failure, path is untouched and the temporary removed; failures throw IoError.
class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path);
  // The file `name` in the open folder dir (no path outside it is looked up); messages say shown.
  AtomicFile(int dir, const std::string& name, const std::string& shown);
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();
  void write(const void* data, size_t bytes);
  void commit();

 private:
  int dir_;
  std::string name_, path_, tmp_;
  int fd_;
};

void write_file_atomic(const std::string& path, const std::string& content);

// A dict {name: tensor} with torch::pickle_save (torch.load in Python reads it).
void save_tensors(const std::string& path, const NamedTensors& tensors);
// Read as read_regular_file reads (no FIFO; no link unless follow_links), its zip entries' sizes
// checked before any is inflated (storages at most max_storage_bytes together), its pickle walked
// before torch reads it, and each tensor's storage its record's bytes. Throws.
NamedTensors load_tensors(const std::string& path, uint64_t max_storage_bytes = uint64_t(1) << 32,
                          bool follow_links = false);
// A .pt file's bytes, read by the caller, checked as load_tensors checks them: a dict
// {name: tensor}, or one tensor (torch.save(tensor)), which comes back as one entry named "".
// Throws.
NamedTensors parse_tensors(std::string bytes, uint64_t max_storage_bytes);

// An entry of a zip archive's central directory (zip64 sizes read where present).
struct ZipEntry {
  std::string name;
  uint64_t method = 0;  // 0: stored, 8: deflated
  uint64_t compressed = 0, size = 0, local_at = 0;
};
// The archive z's entries, found as LibTorch's zip reader (miniz) finds them: the end record
// searched from the end, and the zip64 end record when a locator precedes it (torch.save writes
// one). Nothing is inflated. Throws std::runtime_error.
std::vector<ZipEntry> zip_directory(std::string_view z);
// Entry e's bytes (stored or deflated), exactly e.size of them. Throws std::runtime_error.
std::string zip_record(std::string_view z, const ZipEntry& e);

// A file that grows by whole lines: each append is one write(2), cut back on failure, so the
// file never ends in a partial line. Throws IoError.
class LineFile {
 public:
  LineFile(const std::string& path, const std::string& content);  // creates or replaces path
  LineFile(const LineFile&) = delete;
  LineFile& operator=(const LineFile&) = delete;
  ~LineFile();
  void append(const std::string& lines);

 private:
  std::string path_;
  int fd_;
  int64_t size_ = 0;
};

}  // namespace mmdflow
