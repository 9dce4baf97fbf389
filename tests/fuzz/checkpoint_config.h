// The run whose checkpoints fuzz_checkpoint reads (tests/fuzz/fuzz_checkpoint.cpp), shared with
// the test that its seeds still read back (tests/src/train/test_checkpoint.cpp).
#pragma once
#include "src/train/config.h"

namespace mmdflow::fuzz {

inline Config checkpoint_config() {
  Config c;
  c.data.dim = 3;
  c.model.hidden = 2;
  c.student.particles = 4;
  c.data.train_size = 6;
  c.data.valid_size = 6;
  c.train.batch = 2;
  c.train.epochs = 1000000;
  return c;
}

}  // namespace mmdflow::fuzz
