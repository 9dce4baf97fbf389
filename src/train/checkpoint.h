// Checkpoints: a run's TrainerState in one versioned, checksummed file, from which
// `mmdflow train --resume` continues exactly. Layout, little-endian:
//   header   "MMDFCKPT" | u32 format version | u32 CRC-32 of the payload | u64 payload bytes
//   payload  u32 record count, then per record: u8 name length, name, u8 type, value, where
//            type 1 int64 | 2 float64 | 3 string: u64 length, bytes |
//                 4 tensor: u8 dtype (1 uint8, 2 int64, 3 float32, 4 float64), u8 dims,
//                           i64 sizes[dims], the elements in row-major order
// The records: the run's resolved config (YAML) and each field of TrainerState.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include "src/train/config.h"
#include "src/train/trainer.h"

namespace mmdflow {

constexpr uint32_t kCheckpointVersion = 1;

// The file's bytes for the state s of a run configured by cfg (s must be finite).
std::string checkpoint_bytes(const Config& cfg, const TrainerState& s);

// Reads checkpoint bytes back for a run configured by cfg. Checks the tag, version, length and
// checksum; that cfg differs from the checkpoint's config only in keys a resumed run may change
// (Key::resumable); every record's type, dtype and size against cfg; finite values, a
// permutation, a usable generator state, consistent counters. Throws CheckpointError naming
// `source` and the first thing wrong.
TrainerState parse_checkpoint(std::string_view bytes, const Config& cfg, const std::string& source);

// Writes path atomically (temporary file, fsync, rename; IoError on failure, path untouched).
void save_checkpoint(const std::string& path, const Config& cfg, const TrainerState& s);
TrainerState load_checkpoint(const std::string& path, const Config& cfg);

// CRC-32 (IEEE 802.3, as zlib's crc32) of the payload, stored in the header.
uint32_t crc32(std::string_view bytes);

}  // namespace mmdflow
