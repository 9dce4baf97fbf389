// libFuzzer target: the readers of sample files and labelled data files (read_samples and
// read_labelled in data/sample_file.cpp: target.file, student.init_file of samples,
// data.train_file, data.valid_file). The input's first byte picks the format (modulo 4: .npy,
// .npz, .csv, .pt), the rest is the file; it is read as samples and as data of 1 and 2 outputs.
// Any input must give checked tensors or a ConfigError.
//
// Seeds (tests/fuzz/corpus/data, written by tests/fuzz/make_data_seeds.py): numpy's and torch's
// own files of each format, float and integer, C and Fortran order, stored and deflated .npz,
// CSV with and without a header.
#include <cstdint>
#include <fstream>
#include <string>

#include "data/sample_file.h"
#include "src/base/errors.h"
#include "tests/fuzz/weights_config.h"

namespace {

using namespace mmdflow;

const char* const kFormats[] = {".npy", ".npz", ".csv", ".pt"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string path = fuzz::scratch_folder("fuzz_data") + "/input" + kFormats[data[0] % 4];
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data + 1), std::streamsize(size - 1));
  if (data[0] % 4 != 1) {  // .npz holds labelled data only
    try {
      read_samples(path);
    } catch (const ConfigError&) {
    }
  }
  for (int64_t outputs : {1, 2}) {
    try {
      read_labelled(path, outputs);
    } catch (const ConfigError&) {
    }
  }
  return 0;
}
