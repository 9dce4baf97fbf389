// libFuzzer target: the checkpoint reader (src/checkpoint.cpp), for the run of kConfig. Each input
// is read as it is, then resealed (the header's length and checksum made right) so that mutations
// reach the records behind the checksum. Any input must give a TrainerState or a CheckpointError.
//
// Seeds (tests/fuzz/corpus/checkpoint): checkpoints of that run, written by
//   mmdflow train --out DIR --threads 1 --set data.dim=3 --set model.hidden=2
//     --set student.particles=4 --set data.train_size=6 --set data.valid_size=6
//     --set train.batch=2 --set train.epochs=E --set train.checkpoint_every=1
// for E = 1, 3 (end of run), and for E = 1000000 stopped by SIGTERM (mid-epoch).
#include <cstdint>
#include <cstring>
#include <string>

#include "src/checkpoint.h"

namespace {

mmdflow::Config config() {
  mmdflow::Config c;
  c.data.dim = 3;
  c.model.hidden = 2;
  c.student.particles = 4;
  c.data.train_size = 6;
  c.data.valid_size = 6;
  c.train.batch = 2;
  c.train.epochs = 1000000;
  return c;
}

const mmdflow::Config kConfig = config();

void read(std::string_view bytes) {
  try {
    mmdflow::parse_checkpoint(bytes, kConfig, "fuzz");
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
