// The trainer: how it splits particles over ranks, what it logs, where it stops.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "src/base/device.h"
#include "src/base/random.h"
#include "src/train/trainer.h"
#include "tests/helpers.h"

namespace mmdflow {
namespace {

// Ranks hold contiguous ranges of whole blocks that tile the particles, differing by at most one
// block; with fewer blocks than ranks, some hold none.
TEST(Trainer, ShardsTileTheParticlesInWholeBlocks) {
  for (int64_t N : {1, 127, 128, 129, 300, 1000, 4097})
    for (int world : {1, 2, 3, 5, 8, 40}) {
      Config c;
      c.student.particles = N;
      int64_t next = 0, most = 0, least = INT64_MAX;
      for (int r = 0; r < world; ++r) {
        const Shard s = shard_of(c, r, world);
        EXPECT_EQ(s.begin, next) << N << " " << world;
        EXPECT_EQ(s.total, N);
        EXPECT_EQ(s.begin % kNoiseBlock, 0);
        const int64_t blocks = (s.size() + kNoiseBlock - 1) / kNoiseBlock;
        most = std::max(most, blocks);
        least = std::min(least, blocks);
        next = s.end;
      }
      EXPECT_EQ(next, N) << N << " " << world;
      EXPECT_LE(most - least, 1) << N << " " << world;
    }
}

Config tiny() {
  Config c;
  c.threads = 1;
  c.dtype = at::kDouble;
  c.student.particles = 40;
  c.data.train_size = 60;
  c.data.valid_size = 30;
  c.train.batch = 20;  // 3 steps an epoch
  c.train.epochs = 4;
  c.noise.every = 2;
  return c;
}

// The initial losses are those of the untrained student, on each set; each epoch logs its
// schedule's beta and step size.
// The dense layout and the exact kernel couple every particle: refused over several processes
// (by train, compare, bench and the trainer), accepted in one.
TEST(Trainer, RunsThatCoupleEveryParticleAreNotSharded) {
  Config dense = tiny(), exact = tiny();
  dense.student.layout = Layout::Dense;
  exact.flow.kernel = Witness::Exact;
  for (const Config& c : {dense, exact, tiny()}) EXPECT_NO_THROW(check_shardable(c, 1));
  EXPECT_NO_THROW(check_shardable(tiny(), 3));
  const auto message = [](const Config& c) {
    try {
      check_shardable(c, 2);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(message(dense).rfind("student.layout: dense cannot be sharded over the 2 processes", 0),
            0u)
      << message(dense);
  EXPECT_EQ(message(exact).rfind("flow.kernel: exact cannot be sharded over the 2 processes", 0),
            0u)
      << message(exact);
}

TEST(Trainer, LogsWhatItsScheduleAndStudentSay) {
  set_threads(1);
  const Config c = tiny();
  Trainer t(c);
  const ParticleNet teacher = make_teacher(c, c.device, stream_generator(c.seed, kTeacherStream));
  auto student = make_student(c, c.device, stream_generator(c.seed, kStudentStream));
  at::Generator data = stream_generator(c.seed, kDataStream);
  const Dataset train = make_dataset(c.data.input, 60, teacher, data);
  const Dataset valid = make_dataset(c.data.input, 30, teacher, data);
  const double l_train = half_mse(*student, train.X, train.Y, 7).item<double>();
  const double l_valid = half_mse(*student, valid.X, valid.Y, 7).item<double>();
  EXPECT_NEAR(t.initial_train_loss(), l_train, 1e-14 * l_train);
  EXPECT_NEAR(t.initial_valid_loss(), l_valid, 1e-14 * l_valid);
  std::vector<EpochLog> logs;
  ASSERT_EQ(t.run([&](const EpochLog& l) { logs.push_back(l); }), Trainer::End::Done);
  ASSERT_EQ(logs.size(), 4u);
  const std::vector<double> betas = {1, 1, 0.5, 0.5};  // halved every 2 epochs
  for (size_t e = 0; e < 4; ++e) {
    EXPECT_EQ(logs[e].epoch, int64_t(e + 1));
    EXPECT_EQ(logs[e].beta, betas[e]);
    EXPECT_EQ(logs[e].step_size, 1.0);
    EXPECT_TRUE(logs[e].finite);
    EXPECT_GT(logs[e].noisy_grad_sq, 0);
    EXPECT_NE(logs[e].grad_sq, logs[e].noisy_grad_sq);  // beta > 0: clean and noisy differ
  }
  EXPECT_EQ(t.state().steps, 12);
  EXPECT_EQ(t.state().last.valid_loss, logs.back().valid_loss);
}

// stop() is asked before each step; a non-zero answer stops there and is kept.
TEST(Trainer, StopsWhereAskedAndSaysWhy) {
  set_threads(1);
  Trainer t(tiny());
  int64_t calls = 0;
  EXPECT_EQ(t.run([](const EpochLog&) {}, [&] { return ++calls == 5 ? 15 : 0; }),
            Trainer::End::Stopped);
  EXPECT_EQ(t.stopped_by(), 15);
  EXPECT_EQ(t.state().steps, 4);  // 4 steps done: epoch 1 and one of epoch 2
  EXPECT_EQ(t.state().epoch, 1);
  EXPECT_EQ(t.state().batch, 1);
  EXPECT_TRUE(t.finite());
}

// A comm of one process is no comm at all: the same run, bit for bit.
TEST(Trainer, SingleProcessCommChangesNothing) {
  set_threads(1);
  auto comm = single_process();
  Trainer a(tiny()), b(tiny(), comm.get());
  std::vector<double> la, lb;
  a.run([&](const EpochLog& l) { la.push_back(l.valid_loss); });
  b.run([&](const EpochLog& l) { lb.push_back(l.valid_loss); });
  EXPECT_EQ(la, lb);
  EXPECT_TRUE(test::bit_equal(*dynamic_cast<const Student&>(a.measure()).particles(),
                              *dynamic_cast<const Student&>(b.measure()).particles()));
}

}  // namespace
}  // namespace mmdflow
