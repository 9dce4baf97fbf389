#include "data/sample_file.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <optional>
#include <set>
#include <string_view>
#include <utility>
#include <vector>

#include "src/base/errors.h"
#include "src/base/io.h"

namespace mmdflow {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              ".npy data is read and written as it lies");

constexpr uint64_t kMaxValues = kMaxSampleBytes / sizeof(double);

[[noreturn]] void fail(const std::string& path, const std::string& why) {
  throw ConfigError(fmt::format("{}: {}", path, why));
}

const char* nonfinite_name(double v) { return std::isnan(v) ? "NaN" : v > 0 ? "inf" : "-inf"; }

// rows x cols values, or the error saying they are too many.
void check_count(const std::string& path, uint64_t rows, uint64_t cols) {
  uint64_t n = 0;
  if (__builtin_mul_overflow(rows, cols, &n) || n > kMaxValues)
    fail(path, fmt::format("[{}, {}] samples, more than the {} numbers (1 GiB of float64) read",
                           rows, cols, kMaxValues));
}

// x [M, d] float64: some rows, some columns, every value finite.
at::Tensor checked(const std::string& path, const at::Tensor& x) {
  if (x.size(0) == 0) fail(path, "no rows (samples)");
  if (x.size(1) == 0) fail(path, "rows of no numbers");
  const at::Tensor bad = at::logical_not(at::isfinite(x));  // [M, d]
  if (bad.any().item<bool>()) {
    const int64_t row = bad.any(1).to(at::kByte).argmax().item<int64_t>();
    const int64_t col = bad[row].to(at::kByte).argmax().item<int64_t>();
    fail(path, fmt::format("row {} (counted from 0) holds {}", row,
                           nonfinite_name(x[row][col].item<double>())));
  }
  return x;
}

struct NpyHeader {
  std::string descr;
  bool fortran = false;
  std::vector<uint64_t> shape;
};

// The header's dict, "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }" and spaces:
// these three keys, each once.
NpyHeader parse_npy_dict(const std::string& path, std::string_view h) {
  size_t i = 0;
  auto bad = [&](const std::string& why) {
    return ConfigError(fmt::format("{}: bad .npy header, {} (byte {} of the dict)", path, why, i));
  };
  auto skip = [&] {
    while (i < h.size() && (h[i] == ' ' || h[i] == '\t' || h[i] == '\n')) ++i;
  };
  auto take = [&](char c) {
    skip();
    return i < h.size() && h[i] == c ? (++i, true) : false;
  };
  auto expect = [&](char c) {
    if (!take(c)) throw bad(fmt::format("'{}' expected", c));
  };
  auto string = [&] {
    if (!take('\'') && !take('"')) throw bad("a string expected");
    const size_t end = h.find(h[i - 1], i);
    if (end == std::string_view::npos) throw bad("a string without its end");
    std::string s(h.substr(i, end - i));
    i = end + 1;
    return s;
  };
  NpyHeader out;
  std::set<std::string> seen;
  expect('{');
  while (!take('}')) {
    const std::string key = string();
    if (!seen.insert(key).second) throw bad(fmt::format("key '{}' twice", shorten(key)));
    expect(':');
    if (key == "descr") {
      out.descr = string();
    } else if (key == "fortran_order") {
      skip();
      out.fortran = h.substr(i, 4) == "True";
      if (!out.fortran && h.substr(i, 5) != "False") throw bad("True or False expected");
      i += out.fortran ? 4 : 5;
    } else if (key == "shape") {
      expect('(');
      while (!take(')')) {
        uint64_t n = 0;
        const auto [end, ec] = std::from_chars(h.data() + i, h.data() + h.size(), n);
        if (ec != std::errc()) throw bad("a size expected");
        i = size_t(end - h.data());
        out.shape.push_back(n);
        if (!take(',')) {
          expect(')');
          break;
        }
      }
    } else {
      throw bad(fmt::format("unknown key '{}'", shorten(key)));
    }
    if (!take(',')) {
      expect('}');
      break;
    }
  }
  skip();
  if (i < h.size()) throw bad("bytes after the dict");
  if (seen.size() != 3) throw bad("keys 'descr', 'fortran_order' and 'shape' expected");
  return out;
}

struct NpyType {
  std::string_view descr;
  c10::ScalarType type;
};
constexpr NpyType kNpyTypes[] = {{"<f8", at::kDouble}, {"<f4", at::kFloat}, {"<i8", at::kLong},
                                 {"<i4", at::kInt},    {"<i2", at::kShort}, {"|i1", at::kChar},
                                 {"|u1", at::kByte}};

c10::ScalarType npy_type(const std::string& path, const std::string& descr) {
  for (const NpyType& t : kNpyTypes)
    if (descr == t.descr) return t.type;
  if (descr.rfind('>', 0) == 0)
    fail(path, fmt::format("big-endian dtype '{}' (only little-endian is read)", shorten(descr)));
  fail(path, fmt::format("dtype '{}' (float32, float64, int8 to int64 or uint8 are read)",
                         shorten(descr)));
}

// A .npy file (format 1.0, 2.0 or 3.0): magic, version, header length, header, data. A 1-D
// array is read as a column when `column` allows it.
at::Tensor read_npy(const std::string& path, std::string_view bytes, bool column = false) {
  constexpr size_t kMaxHeader = 10000;  // as numpy's reader bounds it
  if (bytes.size() < 10 || bytes.substr(0, 6) != "\x93NUMPY")
    fail(path, "not a .npy file (no \\x93NUMPY at its start)");
  const int version = uint8_t(bytes[6]);
  if (version < 1 || version > 3)
    fail(path, fmt::format(".npy format {} (1 to 3 are read)", version));
  const size_t at = version == 1 ? 10 : 12;
  if (bytes.size() < at) fail(path, ".npy header past the end of the file");
  uint64_t length = 0;  // little-endian, 2 or 4 bytes
  for (size_t k = at; k-- > 8;) length = length << 8 | uint8_t(bytes[k]);
  if (length > kMaxHeader)
    fail(path, fmt::format(".npy header of {} bytes, more than {}", length, kMaxHeader));
  if (length > bytes.size() - at) fail(path, ".npy header past the end of the file");
  NpyHeader h = parse_npy_dict(path, bytes.substr(at, length));
  const c10::ScalarType type = npy_type(path, h.descr);
  if (column && h.shape.size() == 1) h.shape.push_back(1);
  if (h.shape.size() != 2)
    fail(path, fmt::format("a {}-D array of shape ({}), samples are 2-D [M, d]", h.shape.size(),
                           fmt::join(h.shape, ", ")));
  const uint64_t M = h.shape[0], d = h.shape[1], data_at = at + length;
  check_count(path, M, d);
  const uint64_t need = M * d * c10::elementSize(type);
  if (bytes.size() - data_at != need)
    fail(path, fmt::format("shape ({}, {}) of {} needs {} bytes of data, the file holds {}", M, d,
                           h.descr, need, bytes.size() - data_at));
  at::Tensor raw = h.fortran ? at::empty({int64_t(d), int64_t(M)}, type)
                             : at::empty({int64_t(M), int64_t(d)}, type);
  if (need > 0) std::memcpy(raw.data_ptr(), bytes.data() + data_at, need);
  return checked(path, (h.fortran ? raw.t() : raw).to(at::kDouble).contiguous());
}

// Whether t's elements, at the sizes, strides and offset the file gave, lie within its storage.
bool within_storage(const at::Tensor& t) {
  for (const int64_t n : t.sizes())
    if (n == 0) return true;
  if (t.storage_offset() < 0) return false;
  uint64_t last = uint64_t(t.storage_offset()), step = 0, bytes = 0;  // the last element's index
  for (int64_t k = 0; k < t.dim(); ++k)
    if (t.size(k) < 0 || t.stride(k) < 0 ||
        __builtin_mul_overflow(uint64_t(t.size(k) - 1), uint64_t(t.stride(k)), &step) ||
        __builtin_add_overflow(last, step, &last))
      return false;
  return !__builtin_mul_overflow(last + 1, uint64_t(t.element_size()), &bytes) && last + 1 != 0 &&
         bytes <= t.storage().nbytes();
}

// The tensors of a .pt file (torch.save of one tensor, or of a dict of them).
NamedTensors read_pt_tensors(const std::string& path, std::string bytes) {
  try {
    return parse_tensors(std::move(bytes), kMaxSampleBytes);
  } catch (const std::exception& e) {
    const std::string why = e.what();
    fail(path, fmt::format("not a tensor or a dict of tensors in torch.save's format ({})",
                           shorten(why.substr(0, why.find('\n')))));
  }
}

// t, a tensor `what` of a .pt file, as checked float64 rows [M, d] (a 1-D t, where `column`
// allows it, as one column).
at::Tensor rows_of(const std::string& path, at::Tensor t, const std::string& what,
                   bool column = false) {
  if (!at::isFloatingType(t.scalar_type()) && !at::isIntegralType(t.scalar_type(), false))
    fail(path, fmt::format("{} holds {} (floating or integer numbers are read)", what,
                           c10::toString(t.scalar_type())));
  if (!within_storage(t))
    fail(path, fmt::format("{} does not lie within its storage (sizes [{}], strides [{}], "
                           "offset {}, {} bytes of storage)",
                           what, fmt::join(t.sizes(), ", "), fmt::join(t.strides(), ", "),
                           t.storage_offset(), t.storage().nbytes()));
  if (column && t.dim() == 1) t = t.unsqueeze(1);
  if (t.dim() != 2)
    fail(path, fmt::format("{} is {}-D [{}], samples are 2-D [M, d]", what, t.dim(),
                           fmt::join(t.sizes(), ", ")));
  check_count(path, uint64_t(t.size(0)), uint64_t(t.size(1)));
  return checked(path, t.to(at::kCPU, at::kDouble, /*non_blocking=*/false, /*copy=*/true,
                            at::MemoryFormat::Contiguous));
}

// torch.save of one tensor or of a dict holding one.
at::Tensor read_pt(const std::string& path, std::string bytes) {
  const NamedTensors ts = read_pt_tensors(path, std::move(bytes));
  if (ts.empty()) fail(path, "holds no tensor (an empty dict)");
  if (ts.size() > 1)
    fail(path, fmt::format("holds {} tensors ('{}', '{}', ...), one is read", ts.size(),
                           shorten(ts[0].first), shorten(ts[1].first)));
  return rows_of(path, ts[0].second, "its tensor");
}

std::string_view trimmed(std::string_view s) {
  const size_t begin = s.find_first_not_of(" \t"), end = s.find_last_not_of(" \t");
  return begin == std::string_view::npos ? std::string_view() : s.substr(begin, end + 1 - begin);
}

// A csv field (trimmed) as a number; none when it is not one.
std::optional<double> number(std::string_view f) {
  if (f.size() > 1 && f[0] == '+' && f[1] != '-') f.remove_prefix(1);  // from_chars takes no '+'
  double v = 0;
  const auto [end, ec] = std::from_chars(f.data(), f.data() + f.size(), v);
  if (f.empty() || ec != std::errc() || end != f.data() + f.size()) return std::nullopt;
  return v;
}

// Lines of numbers separated by commas; the first line that is not blank may be a header, a line
// of no numbers (its fields, trimmed, in `header`).
at::Tensor read_csv(const std::string& path, std::string_view text,
                    std::vector<std::string>* header = nullptr) {
  std::vector<double> values, row;
  std::vector<std::string> names;
  int64_t rows = 0, cols_line = 0;
  size_t cols = 0;
  bool first = true;
  for (int64_t line_no = 1; !text.empty(); ++line_no) {
    const size_t end = std::min(text.find('\n'), text.size());
    std::string_view line = text.substr(0, end);
    text.remove_prefix(std::min(end + 1, text.size()));
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (trimmed(line).empty()) continue;
    row.clear();
    std::string_view bad;
    size_t bad_col = 0, col = 0;
    names.clear();
    for (size_t at = 0; at <= line.size(); ++col) {
      const size_t comma = std::min(line.find(',', at), line.size());
      const std::string_view field = trimmed(line.substr(at, comma - at));
      at = comma + 1;
      names.emplace_back(field);
      if (const std::optional<double> v = number(field))
        row.push_back(*v);
      else if (bad_col == 0)
        bad = field, bad_col = col + 1;
    }
    if (std::exchange(first, false) && row.empty()) {  // the header
      if (header) *header = names;
      continue;
    }
    if (bad_col > 0)
      fail(path, fmt::format("line {}, column {}: '{}' is not a number", line_no, bad_col,
                             shorten(std::string(bad))));
    if (cols_line == 0) cols = row.size(), cols_line = line_no;
    if (row.size() != cols)
      fail(path, fmt::format("line {} has {} numbers, line {} has {}", line_no, row.size(),
                             cols_line, cols));
    for (const double v : row)
      if (!std::isfinite(v))
        fail(path, fmt::format("line {} holds {}", line_no, nonfinite_name(v)));
    check_count(path, uint64_t(rows) + 1, cols);
    values.insert(values.end(), row.begin(), row.end());
    ++rows;
  }
  if (rows == 0) fail(path, "no rows (samples)");
  return at::tensor(values, at::kDouble).view({rows, int64_t(cols)});
}

// A data file's bytes (links followed, never a FIFO), its extension one of `exts`.
std::string read_data_file(const std::string& path, const std::vector<std::string>& exts,
                           std::string& ext, bool follow_links = true) {
  ext = std::filesystem::path(path).extension().string();
  if (std::find(exts.begin(), exts.end(), ext) == exts.end())
    fail(path, fmt::format("unknown extension '{}' ({} or {} are read)", shorten(ext),
                           fmt::join(exts.begin(), exts.end() - 1, ", "), exts.back()));
  try {
    return read_regular_file(path, kMaxSampleBytes, follow_links);
  } catch (const std::runtime_error& e) {  // its message names the file
    throw ConfigError(e.what());
  }
}

// An output column's name: y, or y followed by a digit or '_' (y0, y_price; not "year").
bool output_name(const std::string& name) {
  return !name.empty() && name[0] == 'y' &&
         (name.size() == 1 || std::isdigit(uint8_t(name[1])) || name[1] == '_');
}

// The columns of xy [n, k] named by a csv header: inputs and outputs, each in file order.
LabelledData split_by_header(const std::string& path, const at::Tensor& xy,
                             const std::vector<std::string>& header) {
  if (header.empty())
    fail(path, "no header line: name the columns, the outputs y (or y0, y1, ..., y_<name>)");
  if (int64_t(header.size()) != xy.size(1))
    fail(path,
         fmt::format("its header names {} columns, its rows hold {}", header.size(), xy.size(1)));
  std::set<std::string> seen;
  std::vector<int64_t> in, out;
  for (size_t k = 0; k < header.size(); ++k) {
    if (header[k].empty()) fail(path, fmt::format("header column {} has no name", k + 1));
    if (!seen.insert(header[k]).second)
      fail(path, fmt::format("header names column '{}' twice", shorten(header[k])));
    (output_name(header[k]) ? out : in).push_back(int64_t(k));
  }
  if (out.empty()) fail(path, "its header names no output column (y, or y0, y1, ..., y_<name>)");
  if (in.empty()) fail(path, "its header names no input column (every name is an output's)");
  return {xy.index_select(1, at::tensor(in)), xy.index_select(1, at::tensor(out))};
}

// An .npz archive's arrays x and y (np.savez, or np.savez_compressed).
LabelledData read_npz(const std::string& path, std::string_view z) {
  std::vector<ZipEntry> dir;
  try {
    dir = zip_directory(z);
  } catch (const std::runtime_error& e) {
    fail(path, fmt::format("not an .npz archive ({})", e.what()));
  }
  uint64_t total = 0;
  for (const ZipEntry& e : dir) total = e.size > UINT64_MAX - total ? UINT64_MAX : total + e.size;
  if (total > kMaxSampleBytes)
    fail(path, fmt::format("its arrays inflate to {} bytes, more than the {} read", total,
                           kMaxSampleBytes));
  at::Tensor x, y;
  for (const ZipEntry& e : dir) {
    if (e.name != "x.npy" && e.name != "y.npy")
      fail(path, fmt::format("holds an array '{}': arrays x and y are read", shorten(e.name)));
    std::string bytes;
    try {
      bytes = zip_record(z, e);
    } catch (const std::runtime_error& err) {
      fail(path, err.what());
    }
    const std::string inner = path + ":" + e.name;
    (e.name == "x.npy" ? x : y) = read_npy(inner, bytes, /*column=*/e.name == "y.npy");
  }
  if (!x.defined() || !y.defined())
    fail(path, fmt::format("holds no array '{}' (np.savez(file, x=inputs, y=outputs))",
                           x.defined() ? "y" : "x"));
  return {x, y};
}

}  // namespace

LabelledData read_labelled(const std::string& path, int64_t outputs, bool follow_links) {
  std::string ext;
  std::string bytes = read_data_file(path, {".csv", ".npy", ".npz", ".pt"}, ext, follow_links);
  LabelledData d;
  if (ext == ".csv") {
    std::vector<std::string> header;
    const at::Tensor xy = read_csv(path, bytes, &header);
    d = split_by_header(path, xy, header);
  } else if (ext == ".npy") {
    const at::Tensor xy = read_npy(path, bytes);
    if (xy.size(1) <= outputs)
      fail(path, fmt::format("rows of {} numbers: the last {} are the outputs (model.outputs), "
                             "and at least one input must precede them",
                             xy.size(1), outputs));
    d = {xy.narrow(1, 0, xy.size(1) - outputs).contiguous(),
         xy.narrow(1, xy.size(1) - outputs, outputs).contiguous()};
  } else if (ext == ".npz") {
    d = read_npz(path, bytes);
  } else {
    at::Tensor x, y;
    for (const auto& [name, t] : read_pt_tensors(path, std::move(bytes))) {
      if (name != "x" && name != "y")
        fail(path, fmt::format("holds a tensor '{}': a dict {{x: [n, d], y: [n, o]}} is read",
                               shorten(name)));
      (name == "x" ? x : y) = rows_of(path, t, "'" + name + "'", name == "y");
    }
    if (!x.defined() || !y.defined())
      fail(path, fmt::format("holds no tensor '{}': a dict {{x: [n, d], y: [n, o]}} is read",
                             x.defined() ? "y" : "x"));
    d = {x, y};
  }
  if (d.x.size(0) != d.y.size(0))
    fail(path, fmt::format("{} inputs and {} outputs: one output row per input row", d.x.size(0),
                           d.y.size(0)));
  return d;
}

at::Tensor read_samples(const std::string& path) {
  std::string ext;
  std::string bytes = read_data_file(path, {".npy", ".pt", ".csv"}, ext);
  if (ext == ".npy") return read_npy(path, bytes);
  if (ext == ".pt") return read_pt(path, std::move(bytes));
  return read_csv(path, bytes);
}

void write_npy(const std::string& path, const at::Tensor& samples) {
  TORCH_CHECK(samples.dim() == 2, "write_npy: samples are [M, d], not ", samples.sizes());
  const at::Tensor x = samples.to(at::kCPU, at::kDouble).contiguous();
  std::string header = fmt::format(
      "{{'descr': '<f8', 'fortran_order': False, 'shape': ({}, {}), }}", x.size(0), x.size(1));
  header.append(63 - (10 + header.size()) % 64, ' ');  // as numpy pads: data at a multiple of 64
  header += '\n';
  const std::string prefix = std::string("\x93NUMPY\x01\x00", 8) + char(header.size() & 0xff) +
                             char(header.size() >> 8) + header;
  AtomicFile f(path);
  f.write(prefix.data(), prefix.size());
  f.write(x.data_ptr(), x.nbytes());
  f.commit();
}

}  // namespace mmdflow
