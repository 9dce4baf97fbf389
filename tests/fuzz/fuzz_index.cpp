// libFuzzer target: student.index.json, the index of a sharded run's weights files, as `compare`
// reads it (read_student in src/train/run_folder.cpp) beside the two weights files of the run of
// fuzz::index_config() at 2 processes (tests/fuzz/index/). The input is the index; it is read for
// every particle and for parts that fall in one file, in the other, and across both. Any input
// must give checked weights or a CheckpointError.
//
// Seeds (tests/fuzz/corpus/index): that run's index, the same without checksums (an index of an
// earlier version), and one with a name outside the folder and a negative range.
// FuzzSeeds.IndexReadsBack checks that the first still reads back.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "src/train/run_folder.h"
#include "tests/fuzz/weights_config.h"

namespace {

using namespace mmdflow;

const Config kConfig = fuzz::index_config();

// A scratch folder holding the run's weights files, removed at exit.
const std::string& folder() {
  static const std::string dir = [] {
    const std::string& d = fuzz::scratch_folder("fuzz_index");
    for (const char* f : {"student-00000-of-00002.pt", "student-00001-of-00002.pt"})
      std::filesystem::copy_file(fuzz::kIndexFiles + f, d + "/" + f);
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::ofstream(folder() + "/student.index.json", std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), std::streamsize(size));
  const int64_t N = kConfig.student.particles;
  for (const Shard& want : {Shard{0, N, N}, Shard{0, 128, N}, Shard{128, N, N}, Shard{100, N, N}}) {
    try {
      read_student(folder(), kConfig, want);
    } catch (const CheckpointError&) {
    }
  }
  return 0;
}
