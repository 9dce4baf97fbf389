// Writes the seeds of fuzz_checkpoint (tests/fuzz/fuzz_checkpoint.cpp) into the folder given as
// the only argument: checkpoints of the run of fuzz::checkpoint_config() on 1 thread at the end of
// runs of E = 1 and 3 epochs (end_epochE.bin) and stopped by Trainer::run's stop() after 2 and 5
// steps (mid_epoch1.bin, mid_epoch2.bin). Run after a change of the checkpoint format:
//   build/make_checkpoint_seeds tests/fuzz/corpus/checkpoint
#include <fmt/format.h>

#include <cstdio>

#include "src/base/device.h"
#include "src/base/io.h"
#include "src/train/checkpoint.h"
#include "src/train/trainer.h"
#include "tests/fuzz/checkpoint_config.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_checkpoint_seeds FOLDER\n");
    return 2;
  }
  using namespace mmdflow;
  set_threads(1);
  const std::string dir = argv[1];
  auto write = [&](const std::string& name, Config c, int64_t stop_after_steps) {
    Trainer t(c);
    int64_t calls = 0;
    t.run([](const EpochLog&) {},
          [&] { return stop_after_steps > 0 && ++calls > stop_after_steps; });
    const TrainerState s = t.state();
    const Shard all{0, c.student.particles, c.student.particles};
    const std::string shard = shard_bytes(c, all, s.student);
    write_file_atomic(
        dir + "/" + name,
        manifest_bytes(c, s, 1,
                       {{shard_name(1, 0, 1), all.begin, all.end, shard.size(), crc32(shard)}}));
  };
  for (int64_t epochs : {1, 3}) {
    Config c = fuzz::checkpoint_config();
    c.train.epochs = epochs;
    write(fmt::format("end_epoch{}.bin", epochs), c, 0);
  }
  write("mid_epoch1.bin", fuzz::checkpoint_config(), 2);
  write("mid_epoch2.bin", fuzz::checkpoint_config(), 5);
  return 0;
}
