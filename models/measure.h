// What a run holds of the measure it moves, whatever the particle family: its particles [begin,
// end) of N, whether they are finite, and their tensors for files. The trainer, checkpoints and
// the run folder see only this; the flows see the family (src/flow/student.h for networks,
// models/points.h for samples).
#pragma once
#include <cstdint>

#include "src/base/io.h"

namespace mmdflow {

// The particles [begin, end) of a measure of `total` particles.
struct Shard {
  int64_t begin = 0, end = 0, total = 0;
  int64_t size() const { return end - begin; }
};

class Measure {
 public:
  virtual ~Measure() = default;
  virtual int64_t size() const = 0;                // N of the whole measure
  virtual Shard shard() const = 0;                 // the particles held here
  virtual bool all_finite() const = 0;             // the shard's
  virtual NamedTensors named_tensors() const = 0;  // the shard's, CPU tensors for saving
  // Takes the tensors of named_tensors() back (names and shapes checked), onto its device.
  virtual void load(const NamedTensors& weights) = 0;
};

}  // namespace mmdflow
