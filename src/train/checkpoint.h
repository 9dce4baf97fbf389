// Checkpoints: a run's TrainerState in a manifest and one weight shard per process, from which
// `mmdflow train --resume` continues exactly, at any number of processes. In the run folder:
//   checkpoint.bin               the manifest, written by rank 0, little-endian:
//     header   "MMDFCKPT" | u32 format version | u32 CRC-32 of the payload | u64 payload bytes
//     payload  u32 record count, then per record: u8 name length, name, u8 type, value, where
//              type 1 int64 | 2 float64 | 3 string: u64 length, bytes |
//                   4 tensor: u8 dtype (1 uint8, 2 int64, 3 float32, 4 float64), u8 dims,
//                             i64 sizes[dims], the elements in row-major order
//     records  the resolved config (YAML), each field of TrainerState but the weights, the
//              checkpoint's generation, and per shard file: name, particles [begin, end),
//              bytes, CRC-32
//   checkpoint.shards/gGGGGGG-RRRRR-of-WWWWW.bin   rank R's weights of generation G:
//     "MMDFSHRD" | u32 version | i64 begin | i64 end | u8 dtype | u8 tensors, then per tensor:
//     u8 name length, name, u8 dims, i64 sizes[dims]; then each tensor's elements (block layout:
//     the rows of particles [begin, end); dense: whole)
// Writing is two-phase: every rank writes its shard (atomically), then rank 0 renames the new
// manifest over the old one and deletes the shards no manifest names. A crash at any moment
// leaves the last manifest and every shard it names intact.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "src/base/errors.h"
#include "src/comm/comm.h"
#include "src/flow/student.h"
#include "src/train/config.h"
#include "src/train/records.h"

namespace mmdflow {

constexpr uint32_t kCheckpointVersion = 2;
constexpr const char* kCheckpointFile = "checkpoint.bin";
constexpr const char* kShardFolder = "checkpoint.shards";
// A checkpoint's generation counts the checkpoints of a run: one a step for 10^12 steps is far
// past any run, and the next generation never overflows.
constexpr int64_t kMaxGeneration = 1'000'000'000'000;

struct ShardFile {
  std::string name;    // within kShardFolder
  int64_t begin, end;  // particles
  uint64_t bytes = 0;
  uint32_t crc = 0;  // CRC-32 of the whole file
};

struct Checkpoint {
  TrainerState state;  // weights not read (read_weights)
  int64_t generation = 0;
  std::vector<ShardFile> shards;
};

// The file name of rank's shard in generation g of a world-process run.
std::string shard_name(int64_t generation, int rank, int world);
// A shard file's bytes: the weights w of the particles in `shard` (block: rows; dense: whole).
std::string shard_bytes(const Config& cfg, const Shard& shard, const NamedTensors& w);
// The manifest's bytes for state s (its weights are in the shards).
std::string manifest_bytes(const Config& cfg, const TrainerState& s, int64_t generation,
                           const std::vector<ShardFile>& shards);

// Reads manifest bytes back for a run configured by cfg. Checks the tag, version, length and
// checksum; that cfg differs from the checkpoint's config only in keys a resumed run may change
// (Key::resumable); every record's type, dtype and size against cfg; finite values, a
// permutation, a usable generator state, consistent counters; shards that tile the particles,
// with names of the form shard_name() writes. Throws CheckpointError naming `source` and the
// first thing wrong.
Checkpoint parse_manifest(std::string_view bytes, const Config& cfg, const std::string& source);

// The weights of particles want [begin, end) from the shard files in dir/kShardFolder that
// checkpoint c names: sizes, headers and checksums checked against c and cfg, values finite.
// Reads each file once, in pieces; holds no more than its own rows. Throws CheckpointError.
NamedTensors read_weights(const std::string& dir, const Checkpoint& c, const Config& cfg,
                          const Shard& want);

// Collective: every rank of comm calls it with its state and shard. Writes generation
// `generation` of the checkpoint in dir. When any rank fails (IoError: its file could not be
// written; or any other error), every rank throws at once: that rank its error, the others
// IoError naming it. The previous checkpoint stays valid.
void save_checkpoint(const std::string& dir, const Config& cfg, const TrainerState& s,
                     const Shard& shard, int64_t generation, Comm& comm);
// The checkpoint in dir (nullopt: none) with this shard's weights in its state.
std::optional<Checkpoint> load_checkpoint(const std::string& dir, const Config& cfg,
                                          const Shard& shard);

// CRC-32 (IEEE 802.3, as zlib's crc32) of bytes, continuing from crc (0 for a start).
uint32_t crc32(std::string_view bytes, uint32_t crc = 0);

}  // namespace mmdflow
