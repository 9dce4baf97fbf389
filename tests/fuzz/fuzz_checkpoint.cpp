// libFuzzer target: the checkpoint manifest's reader (src/train/checkpoint.cpp), for the run of
// kConfig. Each input is read as it is, then resealed (the header's length and checksum made
// right) so that mutations reach the records behind the checksum. Any input must give a
// Checkpoint or a CheckpointError.
//
// Seeds (tests/fuzz/corpus/checkpoint): written by make_checkpoint_seeds (see its source);
// Checkpoint.FuzzSeedsReadBack checks they still read back whole, so a format change must renew
// them.
#include <cstdint>
#include <cstring>
#include <string>

#include "src/train/checkpoint.h"
#include "tests/fuzz/checkpoint_config.h"

namespace {

const mmdflow::Config kConfig = mmdflow::fuzz::checkpoint_config();

void read(std::string_view bytes) {
  try {
    mmdflow::parse_manifest(bytes, kConfig, "fuzz");
  } catch (const mmdflow::CheckpointError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  read(bytes);
  constexpr size_t kHeader = 24;  // tag, version, checksum, payload length
  if (bytes.size() >= kHeader) {
    const std::string_view payload = std::string_view(bytes).substr(kHeader);
    const uint32_t crc = mmdflow::crc32(payload);
    const uint64_t length = payload.size();
    std::memcpy(&bytes[12], &crc, 4);
    std::memcpy(&bytes[16], &length, 8);
    read(bytes);
  }
  return 0;
}
