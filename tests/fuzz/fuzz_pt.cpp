// libFuzzer target: the reader of a run folder's weight files, student.pt and teacher.pt
// (read_student, read_teacher in src/train/run_folder.cpp; the checks of models/weights.h), for
// the runs of fuzz::weights_config(), block and dense. Each input is read as a whole file, then
// again as the data.pkl of a zip archive whose storages data/0 .. data/7 hold 128 bytes each, so
// that mutations reach the pickle (dtypes, sizes, strides, offsets, storage keys) behind the
// zip's checksums (fuzz::pt_archive). Any input must give checked tensors or a CheckpointError.
//
// Seeds (tests/fuzz/corpus/pt): see tests/fuzz/weights_config.h; FuzzSeeds.WeightFilesReadBack
// checks they still read back.

#include <cstdint>
#include <fstream>
#include <string>

#include "src/train/run_folder.h"
#include "tests/fuzz/weights_config.h"

namespace {

using namespace mmdflow;

const Config kBlock = fuzz::weights_config(Layout::Block);
const Config kDense = fuzz::weights_config(Layout::Dense);

// A scratch folder for the input's files, removed at exit.
const std::string& folder() { return fuzz::scratch_folder("fuzz_pt"); }

void read(const std::string& bytes) {
  for (const char* name : {"/student.pt", "/teacher.pt"})
    std::ofstream(folder() + name, std::ios::binary | std::ios::trunc) << bytes;
  const int64_t N = kBlock.student.particles;
  for (const Config* c : {&kBlock, &kDense}) {
    try {
      read_student(folder(), *c, {0, N, N});
    } catch (const CheckpointError&) {
    }
  }
  try {
    read_teacher(folder(), kBlock);
  } catch (const CheckpointError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  read(bytes);
  read(fuzz::pt_archive(bytes));
  return 0;
}
