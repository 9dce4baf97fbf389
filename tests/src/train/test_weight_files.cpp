// Weight files (.pt) crafted to break their reader: each is refused with a CheckpointError (exit 2
// from `compare`) before any tensor is laid over bytes that are not there, before any record is
// inflated past what the tensors need, and before the values nest deep enough to exhaust the
// stack.
#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <functional>

#include "models/weights.h"
#include "src/base/io.h"
#include "src/train/build.h"
#include "src/train/run_folder.h"
#include "tests/fuzz/weights_config.h"

namespace mmdflow {
namespace {

using Records = std::vector<std::pair<std::string, std::string>>;

std::string scratch() {
  const std::string dir = testing::TempDir() + "/mmdflow_weight_files_" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  return dir;
}

// The records of a student.pt written by save_tensors, for the block layout of
// fuzz::weights_config (A [4, 2, 3], a [4, 2], B [4, 1, 2], b [4, 1]).
Records student_records() {
  const Config c = fuzz::weights_config(Layout::Block);
  std::vector<at::Tensor> ts;
  for (const WeightSpec& s : block_weights(family_of(c), c.student.particles))
    ts.push_back(at::randn(s.sizes));
  const std::string path = scratch() + "/written.pt";
  save_tensors(path, named(block_weights(family_of(c), c.student.particles), ts));
  caffe2::serialize::PyTorchStreamReader in(path);
  Records out;
  for (const std::string& name : in.getAllRecords()) {
    const auto [data, size] = in.getRecord(name);
    out.emplace_back(name, std::string(static_cast<const char*>(data.get()), size));
  }
  return out;
}

std::string& record(Records& rs, const std::string& name) {
  for (auto& [n, data] : rs)
    if (n == name) return data;
  throw std::runtime_error("no record " + name);
}

void put16(std::string& out, uint32_t v) { out += char(v & 0xff), out += char(v >> 8 & 0xff); }
void put32(std::string& out, uint32_t v) { put16(out, v & 0xffff), put16(out, v >> 16); }

// A zip archive of the records (under archive/), as torch.save lays it out, but those named in
// `deflated` compressed (torch.save stores every record as it is).
std::string zip_of(const Records& rs, const std::vector<std::string>& deflated = {}) {
  std::string out, directory;
  for (const auto& [name, data] : rs) {
    const std::string full = "archive/" + name;
    const bool packs = std::find(deflated.begin(), deflated.end(), name) != deflated.end();
    std::string packed = data;
    if (packs) {  // raw deflate, as zip holds it
      z_stream z{};
      EXPECT_EQ(deflateInit2(&z, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
      packed.resize(deflateBound(&z, data.size()));
      z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
      z.avail_in = uInt(data.size());
      z.next_out = reinterpret_cast<Bytef*>(packed.data());
      z.avail_out = uInt(packed.size());
      EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
      packed.resize(z.total_out);
      deflateEnd(&z);
    }
    const uint32_t crc =
        uint32_t(::crc32(0, reinterpret_cast<const Bytef*>(data.data()), uInt(data.size())));
    const uint32_t at = uint32_t(out.size());
    auto common = [&](std::string& h) {  // from "version needed" to the extra field's length
      put16(h, 20), put16(h, 0), put16(h, packs ? 8 : 0), put16(h, 0), put16(h, 0x21);
      put32(h, crc), put32(h, uint32_t(packed.size())), put32(h, uint32_t(data.size()));
      put16(h, uint16_t(full.size())), put16(h, 0);
    };
    put32(out, 0x04034b50);
    common(out);
    out += full + packed;
    put32(directory, 0x02014b50);
    put16(directory, 20);
    common(directory);
    put16(directory, 0), put16(directory, 0), put16(directory, 0), put32(directory, 0);
    put32(directory, at);
    directory += full;
  }
  const uint32_t directory_at = uint32_t(out.size());
  out += directory;
  put32(out, 0x06054b50), put16(out, 0), put16(out, 0);
  put16(out, uint16_t(rs.size())), put16(out, uint16_t(rs.size()));
  put32(out, uint32_t(directory.size())), put32(out, directory_at), put16(out, 0);
  return out;
}

// read_student's error on a run folder whose student.pt holds bytes ("" when it reads).
std::string student_error(const std::string& bytes) {
  const std::string dir = scratch();
  write_file_atomic(dir + "/student.pt", bytes);
  const Config c = fuzz::weights_config(Layout::Block);
  try {
    read_student(dir, c, {0, c.student.particles, c.student.particles});
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "";
}

// N1: LibTorch's unpickler lays a storage of numel x itemsize (numel from the pickle) over its
// record, whatever the record's length, and check_weights compared offsets with that claim.
// Found before: A's numel 24 -> 8192 and offset 0 -> 255 read 255 floats past the record's 96
// bytes (`compare` exited 0 with a different 1/2 MMD^2 each run; larger, SIGSEGV).
TEST(WeightFiles, StoragesAreTheirRecordsBytesNotThePicklesClaim) {
  Records rs = student_records();
  EXPECT_EQ(student_error(zip_of(rs)), "");
  std::string& pickle = record(rs, "data.pkl");
  const std::string numel("q\x06K\x18tQq\x07K\x00(", 11);  // A's storage: numel 24, offset 0
  ASSERT_NE(pickle.find(numel), std::string::npos);
  pickle.replace(pickle.find(numel), numel.size(), std::string("q\x06M\x00\x20tQq\x07K\xff(", 12));
  const std::string e = student_error(zip_of(rs));
  EXPECT_NE(e.find("tensor 'A' does not lie within its storage (strides [6, 3, 1], offset 255, "
                   "96 bytes of storage)"),
            std::string::npos)
      << e;
}

// N2: 300 000 nested tuples (a 300 KB pickle) overflowed the stack (SIGSEGV) in LibTorch's
// unpickler. The pickle check bounds the containers it builds, hence their nesting.
TEST(WeightFiles, DeeplyNestedPickleIsRefused) {
  Records rs = student_records();
  record(rs, "data.pkl") = "\x80\x02)" + std::string(300000, '\x85') + ".";
  const std::string e = student_error(zip_of(rs));
  EXPECT_NE(e.find("data.pkl byte 4098: more than 4096 tuples"), std::string::npos) << e;
}

// N5: zip entries were inflated before any size was checked: a pickle or a storage of 64 MiB of
// zeros deflated to 64 KiB was inflated whole (2 GiB: 45 s, 2.3 GB), and a storage longer than
// its tensor was read. The central directory's sizes are checked first.
TEST(WeightFiles, ZipEntriesAreSizedBeforeTheyAreInflated) {
  const Records rs = student_records();
  EXPECT_EQ(student_error(zip_of(rs, {"data.pkl", "data/0"})), "");  // deflated, of right sizes
  Records big_pickle = rs, big_storage = rs;
  record(big_pickle, "data.pkl").append(64 << 20, '\0');
  record(big_storage, "data/0").append(64 << 20, '\0');
  std::string e = student_error(zip_of(big_pickle, {"data.pkl"}));
  EXPECT_NE(e.find("(zip archive: its pickle and records inflate to "), std::string::npos) << e;
  uint64_t need = 0;
  for (const auto& [name, data] : rs) need += name.rfind("data/", 0) == 0 ? data.size() : 0;
  e = student_error(zip_of(big_storage, {"data/0"}));
  EXPECT_NE(
      e.find(fmt::format("(zip archive: its storages inflate to {} bytes", need + (64 << 20))),
      std::string::npos)
      << e;
}

// N8: a FIFO in a weights file's place is refused, never waited on; so is a link.
TEST(WeightFiles, FifosAndLinksAreRefusedNotOpened) {
  const std::string dir = scratch(), fifo = dir + "/fifo.pt";
  std::filesystem::remove(fifo);
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  EXPECT_THROW(load_tensors(fifo), std::runtime_error);
  EXPECT_THROW(read_file(fifo), std::runtime_error);
  save_tensors(dir + "/w.pt", {{"A", at::ones({2})}});
  std::filesystem::remove(dir + "/link.pt");
  std::filesystem::create_symlink(dir + "/w.pt", dir + "/link.pt");
  EXPECT_THROW(load_tensors(dir + "/link.pt"), std::runtime_error);
  EXPECT_EQ(load_tensors(dir + "/w.pt").size(), 1u);
}

}  // namespace
}  // namespace mmdflow
