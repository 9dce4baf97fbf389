#include "src/base/io.h"

#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/read_adapter_interface.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <torch/csrc/jit/serialization/import_read.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/csrc/jit/serialization/storage_context.h>
#include <unistd.h>
#include <zlib.h>

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

// Torch's unpickler trusts the lengths, memo indices and stack of a pickle: a few bytes can make
// it allocate and fill gigabytes (a LONG_BINPUT of index 2^32 - 1 grows its memo to 64 GB), and an
// opcode that takes more values than the stack holds reads freed memory (TUPLE2 over a stack of
// one). So the pickle of a .pt file is walked first: a dict of tensors is small, every opcode must
// be one of the protocol's, every argument and length must lie within it, every memo index below
// its length, and every opcode must find the values it takes, as Python's unpickler counts them
// (since the last MARK; pairs for DICT and SETITEMS), ending with one value at STOP. It builds at
// most kMaxContainers tuples, lists, dicts and objects, so its values nest no deeper (the
// unpickler and the values' destructors recurse once per level: 300 000 nested tuples overflow
// the stack). Throws std::runtime_error.
constexpr size_t kMaxPickle = 1 << 20;

void check_pickle(std::string_view p) {
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
  // Opcodes that make a container: empty tuple, list, dict and set; tuples of 1, 2, 3 and to a
  // mark; list, dict, frozenset, object and instance to a mark; REDUCE, NEWOBJ, NEWOBJ_EX.
  constexpr std::string_view kContainer = ")]}\x8f\x85\x86\x87tld\x91oiR\x81\x92";
  constexpr int kMaxContainers = 4096;
  int containers = 0;
  // The values on the stack since each MARK (the first: since the start).
  std::vector<uint64_t> frames{0};
  auto take = [&](uint64_t n, uint64_t put) {  // n values off the stack, put on
    if (frames.back() < n)
      fail(fmt::format("opcode 0x{:02x} takes {} values, {} on the stack since its mark",
                       uint8_t(p[at]), n, frames.back()));
    frames.back() += put - n;
  };
  auto to_mark = [&](uint64_t put) {  // the values since the last MARK off, with the mark
    if (frames.size() == 1) fail(fmt::format("opcode 0x{:02x} without a MARK", uint8_t(p[at])));
    frames.pop_back();
    frames.back() += put;
  };
  // Stack effects: opcodes that put one value on, take one or more and put one on, take one and
  // put it back (memo stores), take all since the mark and put one on, or add them to the value
  // below the mark.
  constexpr std::string_view kPush =
      "N\x88\x89IJKMLFG\x8a\x8bSTUXVBC\x8c\x8d\x8e\x96Pcghj)]}\x8f\x82\x83\x84\x97";
  constexpr std::string_view kTake1 = "Q\x85", kTake2 = "Rb\x81\x93\x86", kTake3 = "\x92\x87",
                             kKeep = "pqr\x94\x98", kMarkToOne = "tldoi\x91",
                             kMarkIntoBelow = "eu\x90";
  auto stack = [&](char op) {
    auto is = [&](std::string_view ops) { return ops.find(op) != std::string_view::npos; };
    if (op == '(') {
      frames.push_back(0);
    } else if (op == '1') {
      to_mark(0);
    } else if (op == '0') {
      take(1, 0);
    } else if (op == '2') {
      take(1, 2);
    } else if (op == 'a') {
      take(2, 1);
    } else if (op == 's') {
      take(3, 1);
    } else if (is(kPush)) {
      take(0, 1);
    } else if (is(kTake1) || is(kTake2) || is(kTake3)) {
      take(is(kTake1) ? 1 : is(kTake2) ? 2 : 3, 1);
    } else if (is(kKeep)) {
      take(1, 1);
    } else if (is(kMarkToOne) || is(kMarkIntoBelow)) {
      if ((op == 'd' || op == 'u') && frames.back() % 2 != 0)
        fail(fmt::format("opcode 0x{:02x} over {} values, not key-value pairs", uint8_t(op),
                         frames.back()));
      if (op == 'o' && frames.back() == 0) fail("OBJ without a class");
      to_mark(is(kMarkToOne) ? 1 : 0);
      if (is(kMarkIntoBelow)) take(1, 1);
    }
  };
  while (i < p.size()) {
    at = i;
    const char op = p[i++];
    auto is = [&](std::string_view ops) { return ops.find(op) != std::string_view::npos; };
    if (is(kContainer) && ++containers > kMaxContainers)
      fail(fmt::format("more than {} tuples, lists, dicts and objects", kMaxContainers));
    if (op == '.') {
      if (i != p.size()) fail("bytes after STOP");
      if (frames.size() != 1 || frames[0] != 1)
        fail(fmt::format("STOP over {} values and {} marks, not one value", frames.back(),
                         frames.size() - 1));
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
    stack(op);
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
    if (n > 0) std::memcpy(buf, bytes_.data() + pos, n);  // LibTorch asks for 0 bytes into null
    return n;
  }

 private:
  std::string bytes_;
};

// The zip archive's sizes checked before any entry is inflated (a few megabytes can inflate to
// gigabytes): the pickle and the other small records within kMaxPickle together, the storages
// (<archive>/data/<key>) within max_storage_bytes together. Throws std::runtime_error.
void check_zip_sizes(std::string_view z, uint64_t max_storage_bytes) {
  uint64_t small = 0, storages = 0;
  for (const ZipEntry& e : zip_directory(z)) {
    const size_t slash = e.name.find('/');
    const bool storage = slash != std::string::npos && e.name.compare(slash + 1, 5, "data/") == 0;
    uint64_t& sum = storage ? storages : small;
    sum = e.size > UINT64_MAX - sum ? UINT64_MAX : sum + e.size;
  }
  if (small > kMaxPickle)
    throw std::runtime_error(
        fmt::format("zip archive: its pickle and records inflate to {} bytes, more than {}", small,
                    kMaxPickle));
  if (storages > max_storage_bytes)
    throw std::runtime_error(
        fmt::format("zip archive: its storages inflate to {} bytes, more than its tensors need ({} "
                    "at most)",
                    storages, max_storage_bytes));
}

// The value a .pt file's bytes hold, checked as load_tensors says.
c10::IValue unpickle(std::string bytes, uint64_t max_storage_bytes) {
  check_zip_sizes(bytes, max_storage_bytes);
  caffe2::serialize::PyTorchStreamReader zip(std::make_shared<BoundedReader>(std::move(bytes)));
  const auto [pickle, size] = zip.getRecord("data.pkl");
  check_pickle(std::string_view(static_cast<const char*>(pickle.get()), size));
  // Each storage is its record's bytes, whatever size the pickle claims for it (torch's
  // unpickler would lay numel x itemsize over the record): the sizes check_weights checks tensors
  // against are the bytes present.
  auto storages = std::make_shared<torch::jit::DeserializationStorageContext>();
  for (const std::string& name : zip.getAllRecords())
    if (name.rfind("data/", 0) == 0) {
      auto [data, nbytes] = zip.getRecord(name);
      storages->addStorage(name.substr(5), c10::Storage(c10::Storage::use_byte_size_t(), nbytes,
                                                        std::move(data), nullptr, false));
    }
  return torch::jit::readArchiveAndTensors("data", /*pickle_prefix=*/"", /*tensor_prefix=*/"",
                                           c10::nullopt, c10::nullopt, c10::nullopt, zip,
                                           torch::jit::Unpickler::defaultTypeParser, storages);
}

NamedTensors entries(const c10::IValue& dict) {
  NamedTensors out;
  for (const auto& kv : dict.toGenericDict())
    out.emplace_back(kv.key().toStringRef(), kv.value().toTensor());
  return out;
}

}  // namespace

AtomicFile::AtomicFile(const std::string& path) : AtomicFile(AT_FDCWD, path, path) {}

AtomicFile::AtomicFile(int dir, const std::string& name, const std::string& shown)
    : dir_(dir), name_(name), path_(shown) {
  static std::atomic<uint64_t> count{0};
  tmp_ = fmt::format("{}.tmp.{}.{}", name, ::getpid(), count++);
  fd_ = ::openat(dir_, tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("write", shown + tmp_.substr(name.size()), errno);
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlinkat(dir_, tmp_.c_str(), 0);
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
    ::unlinkat(dir_, tmp_.c_str(), 0);
    fail("write", path_, ok ? errno : err);
  }
  if (::renameat(dir_, tmp_.c_str(), dir_, name_.c_str()) != 0) {
    const int rename_err = errno;
    ::unlinkat(dir_, tmp_.c_str(), 0);
    fail("rename onto", path_, rename_err);
  }
  // Makes the rename itself durable; some file systems cannot fsync a folder, which only weakens
  // durability after a power loss, not atomicity.
  if (dir_ != AT_FDCWD) {
    ::fsync(dir_);
    return;
  }
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

void save_tensors(const std::string& path, const NamedTensors& tensors) {
  c10::Dict<std::string, at::Tensor> dict;
  for (const auto& [name, t] : tensors) dict.insert(name, t);
  std::vector<char> bytes = torch::jit::pickle_save(c10::IValue(dict));
  write_file_atomic(path, std::string(bytes.begin(), bytes.end()));
}

NamedTensors load_tensors(const std::string& path, uint64_t max_storage_bytes, bool follow_links) {
  constexpr uint64_t kZipOverhead = 1 << 16;  // headers, names, alignment
  const c10::IValue v =
      unpickle(read_regular_file(path, max_storage_bytes + kMaxPickle + kZipOverhead, follow_links),
               max_storage_bytes);
  TORCH_CHECK(v.isGenericDict(), path, " does not hold a dict of tensors");
  return entries(v);
}

NamedTensors parse_tensors(std::string bytes, uint64_t max_storage_bytes) {
  const c10::IValue v = unpickle(std::move(bytes), max_storage_bytes);
  if (v.isTensor()) return {{"", v.toTensor()}};
  TORCH_CHECK(v.isGenericDict(), "neither a tensor nor a dict of tensors but a ", v.tagKind());
  return entries(v);
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

namespace {

// z's little-endian number of `bytes` bytes at `at`; throws when it lies past z's end.
uint64_t zip_num(std::string_view z, uint64_t at, int bytes) {
  if (at > z.size() || uint64_t(bytes) > z.size() - at)
    throw std::runtime_error("zip archive: a record past its end");
  uint64_t v = 0;
  for (int k = bytes - 1; k >= 0; --k) v = v << 8 | uint8_t(z[at + k]);
  return v;
}

}  // namespace

std::vector<ZipEntry> zip_directory(std::string_view z) {
  auto fail = [](const std::string& why) { throw std::runtime_error("zip archive: " + why); };
  auto num = [&](uint64_t at, int bytes) { return zip_num(z, at, bytes); };
  constexpr uint64_t kEnd = 22, kLocator = 20, kEntry = 46, kMax32 = 0xffffffff;
  uint64_t end = z.size();
  for (uint64_t k = z.size() >= kEnd ? z.size() - kEnd + 1 : 0;
       k-- > 0 && z.size() - k <= kEnd + 0xffff;)
    if (num(k, 4) == 0x06054b50) {
      end = k;
      break;
    }
  if (end == z.size()) fail("no end of central directory");
  uint64_t entries = num(end + 10, 2), cd_bytes = num(end + 12, 4), cd_at = num(end + 16, 4);
  if (end >= kLocator && num(end - kLocator, 4) == 0x07064b50) {
    const uint64_t at = num(end - kLocator + 8, 8);
    if (num(at, 4) != 0x06064b50) fail("bad zip64 end of central directory");
    entries = num(at + 32, 8), cd_bytes = num(at + 40, 8), cd_at = num(at + 48, 8);
    if (entries > kMax32 || cd_bytes > kMax32) fail("bad zip64 end of central directory");
  }
  if (cd_at > end || cd_bytes > end - cd_at) fail("central directory past its end");
  std::vector<ZipEntry> out;
  for (uint64_t e = 0, at = cd_at; e < entries; ++e) {
    if (at + kEntry > cd_at + cd_bytes || num(at, 4) != 0x02014b50) fail("bad central directory");
    ZipEntry entry;
    entry.method = num(at + 10, 2);
    entry.compressed = num(at + 20, 4);
    entry.size = num(at + 24, 4);
    entry.local_at = num(at + 42, 4);
    const uint64_t name_len = num(at + 28, 2), extra = at + kEntry + name_len;
    const uint64_t extra_len = num(at + 30, 2), next = extra + extra_len + num(at + 32, 2);
    if (next > cd_at + cd_bytes) fail("bad central directory");
    // The zip64 extra field (id 1) holds, in this order, each of the three that reads kMax32.
    uint64_t* wide[] = {&entry.size, &entry.compressed, &entry.local_at};
    if (entry.size == kMax32 || entry.compressed == kMax32 || entry.local_at == kMax32) {
      bool found = false;
      for (uint64_t f = extra; f + 4 <= extra + extra_len && !found; f += 4 + num(f + 2, 2))
        if (num(f, 2) == 1) {
          uint64_t v = f + 4;
          for (uint64_t* w : wide)
            if (*w == kMax32) {
              if (v + 8 > f + 4 + num(f + 2, 2)) fail("an entry without its zip64 sizes");
              *w = num(v, 8), v += 8;
            }
          found = true;
        }
      if (!found) fail("an entry without its zip64 sizes");
    }
    entry.name = std::string(z.substr(at + kEntry, name_len));
    out.push_back(std::move(entry));
    at = next;
  }
  return out;
}

std::string zip_record(std::string_view z, const ZipEntry& e) {
  auto fail = [&](const std::string& why) {
    throw std::runtime_error(fmt::format("zip archive: entry '{}': {}", shorten(e.name), why));
  };
  if (zip_num(z, e.local_at, 4) != 0x04034b50) fail("no local header where the directory says");
  const uint64_t data_at =
      e.local_at + 30 + zip_num(z, e.local_at + 26, 2) + zip_num(z, e.local_at + 28, 2);
  if (data_at > z.size() || e.compressed > z.size() - data_at) fail("data past the archive's end");
  const std::string_view data = z.substr(data_at, e.compressed);
  if (e.method == 0) {
    if (e.compressed != e.size) fail("stored with two different sizes");
    return std::string(data);
  }
  if (e.method != 8)
    fail(fmt::format("compression method {} (stored or deflated are read)", e.method));
  std::string out(e.size, '\0');
  z_stream s{};
  if (inflateInit2(&s, -MAX_WBITS) != Z_OK) fail("cannot start inflating");
  s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  s.avail_in = uInt(std::min<uint64_t>(data.size(), UINT32_MAX));
  s.next_out = reinterpret_cast<Bytef*>(out.data());
  s.avail_out = uInt(std::min<uint64_t>(out.size(), UINT32_MAX));
  const int rc = inflate(&s, Z_FINISH);
  const uint64_t got = s.total_out;
  inflateEnd(&s);
  if (rc != Z_STREAM_END || got != e.size)
    fail(fmt::format("does not inflate to the {} bytes its directory gives", e.size));
  return out;
}

}  // namespace mmdflow
