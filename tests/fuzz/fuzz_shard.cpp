// libFuzzer target: the checkpoint's weight-shard reader (read_weights in
// src/train/checkpoint.cpp), for the runs of fuzz::weights_config(), block and dense. Each input
// is a shard file, named by a manifest entry that gives its own size and checksum (so mutations
// pass those checks and reach the header and the tensor records), read for all particles and,
// in the block layout, for particles [1, 3) only. Any input must give weights or a
// CheckpointError.
//
// Seeds (tests/fuzz/corpus/shard): see tests/fuzz/weights_config.h;
// FuzzSeeds.WeightFilesReadBack checks they still read back.

#include <cstdint>
#include <fstream>
#include <string>

#include "src/train/checkpoint.h"
#include "tests/fuzz/weights_config.h"

namespace {

using namespace mmdflow;

const Config kBlock = fuzz::weights_config(Layout::Block);
const Config kDense = fuzz::weights_config(Layout::Dense);

// A scratch folder for the input's files, removed at exit.
const std::string& folder() { return fuzz::scratch_folder("fuzz_shard", kShardFolder); }

void read(const Config& cfg, const Checkpoint& c, const Shard& want) {
  try {
    read_weights(folder(), c, cfg, want);
  } catch (const CheckpointError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  const int64_t N = kBlock.student.particles;
  Checkpoint c;
  c.generation = 1;
  c.shards.push_back({shard_name(1, 0, 1), 0, N, bytes.size(), crc32(bytes)});
  std::ofstream(folder() + "/" + kShardFolder + "/" + c.shards[0].name,
                std::ios::binary | std::ios::trunc)
      << bytes;
  read(kBlock, c, {0, N, N});
  read(kBlock, c, {1, 3, N});
  read(kDense, c, {0, N, N});
  return 0;
}
