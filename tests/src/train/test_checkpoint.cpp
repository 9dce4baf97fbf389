// Checkpoints in process: exact continuation from any step boundary, and rejection of foreign,
// truncated, corrupt or mismatched checkpoints.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "src/base/io.h"
#include "src/train/checkpoint.h"
#include "tests/fuzz/checkpoint_config.h"
#include "tests/helpers.h"

namespace mmdflow {
namespace {

Config tiny() {
  Config c;
  c.student.particles = 50;
  c.data.train_size = 100;
  c.data.valid_size = 100;
  c.train.batch = 10;  // 10 steps an epoch
  c.train.epochs = 6;
  return c;
}

// Every field of a log but the seconds, as text, for exact comparison.
std::string fields(const EpochLog& l) {
  return fmt::format("{} {} {} {} {} {} {} {}", l.epoch, l.train_loss, l.valid_loss, l.beta,
                     l.step_size, l.grad_sq, l.noisy_grad_sq, l.finite);
}

TrainerState state_after(const Config& cfg, int64_t stop_calls, std::vector<std::string>* logs) {
  Trainer t(cfg);
  int64_t calls = 0;
  t.run([&](const EpochLog& l) { logs->push_back(fields(l)); },
        [&] { return ++calls > stop_calls; });
  return t.state();
}

// Weights by name: a transformed copy, one weight, equality.
NamedTensors mapped(const NamedTensors& w, const std::function<at::Tensor(const at::Tensor&)>& f) {
  NamedTensors out;
  for (const auto& [name, t] : w) out.emplace_back(name, f(t));
  return out;
}
at::Tensor weight(const NamedTensors& w, const std::string& name) {
  for (const auto& [n, t] : w)
    if (n == name) return t;
  ADD_FAILURE() << "no weight " << name;
  return at::Tensor();
}
bool equal(const NamedTensors& a, const NamedTensors& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].first != b[i].first || !at::equal(a[i].second, b[i].second)) return false;
  return true;
}

std::string error_of(std::string_view bytes, const Config& cfg) {
  try {
    parse_checkpoint(bytes, cfg, "ck");
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "";
}

// The bytes with the header's length and checksum made right for a changed payload.
std::string resealed(std::string bytes) {
  const std::string payload = bytes.substr(24);
  const uint32_t crc = crc32(payload);
  const uint64_t size = payload.size();
  std::memcpy(&bytes[12], &crc, 4);
  std::memcpy(&bytes[16], &size, 8);
  return bytes;
}

TEST(Checkpoint, ResumesExactlyFromAnyStepBoundary) {
  const Config cfg = tiny();
  std::vector<std::string> straight;
  Trainer full(cfg);
  ASSERT_EQ(full.run([&](const EpochLog& l) { straight.push_back(fields(l)); }),
            Trainer::End::Done);
  // stop() is asked before each of the 10 steps of an epoch: 0 and 20 stop at epoch
  // boundaries, the others mid-epoch.
  for (int64_t stop : {0, 7, 20, 33, 59}) {
    std::vector<std::string> logs;
    const std::string bytes = checkpoint_bytes(cfg, state_after(cfg, stop, &logs));
    Trainer resumed(cfg);
    resumed.restore(parse_checkpoint(bytes, cfg, "ck"));
    EXPECT_EQ(resumed.state().epoch * 10 + resumed.state().batch, stop);
    ASSERT_EQ(resumed.run([&](const EpochLog& l) { logs.push_back(fields(l)); }),
              Trainer::End::Done);
    EXPECT_EQ(logs, straight) << "stopped before call " << stop;
    EXPECT_TRUE(equal(resumed.state().student, full.state().student));
    EXPECT_EQ(resumed.state().steps, full.state().steps);
    EXPECT_EQ(resumed.state().best_valid, full.state().best_valid);
    EXPECT_EQ(resumed.state().best_epoch, full.state().best_epoch);
  }
}

// The same for the state the other flows, layouts and schedules add: the dense weights, the
// plateau schedule's step size and counters, fresh inputs drawn from the run's generator.
TEST(Checkpoint, ResumesExactlyWithEveryKindOfState) {
  Config dense = tiny();
  dense.student.layout = Layout::Dense;
  dense.flow.step_size = 5;  // large enough for the plateau schedule to cut it
  dense.flow.step_schedule = StepKind::Plateau;
  dense.flow.patience = 1;
  Config fresh = tiny();
  fresh.data.fresh = true;
  fresh.flow.method = Method::DrMMD;
  fresh.flow.step_schedule = StepKind::Plateau;
  fresh.flow.patience = 1;
  fresh.flow.step_size = 300;
  for (const Config& cfg : {dense, fresh}) {
    std::vector<std::string> straight;
    Trainer full(cfg);
    ASSERT_EQ(full.run([&](const EpochLog& l) { straight.push_back(fields(l)); }),
              Trainer::End::Done);
    EXPECT_LT(full.state().step.step_size, cfg.flow.step_size) << "the plateau schedule never cut";
    for (int64_t stop : {13, 40}) {
      std::vector<std::string> logs;
      const std::string bytes = checkpoint_bytes(cfg, state_after(cfg, stop, &logs));
      Trainer resumed(cfg);
      resumed.restore(parse_checkpoint(bytes, cfg, "ck"));
      ASSERT_EQ(resumed.run([&](const EpochLog& l) { logs.push_back(fields(l)); }),
                Trainer::End::Done);
      EXPECT_EQ(logs, straight) << name_of(cfg.student.layout) << " stopped before call " << stop;
      EXPECT_TRUE(equal(resumed.state().student, full.state().student));
      EXPECT_EQ(resumed.state().step.step_size, full.state().step.step_size);
    }
  }
}

TEST(Checkpoint, RejectsForeignTruncatedAndCorruptFiles) {
  const Config cfg = tiny();
  std::vector<std::string> logs;
  const std::string good = checkpoint_bytes(cfg, state_after(cfg, 25, &logs));
  ASSERT_EQ(error_of(good, cfg), "");

  EXPECT_NE(error_of("", cfg).find("not an mmdflow checkpoint"), std::string::npos);
  EXPECT_NE(error_of("PK\x03\x04 a zip file", cfg).find("not an mmdflow checkpoint"),
            std::string::npos);
  for (size_t n : {size_t(8), size_t(20), size_t(24), good.size() / 2, good.size() - 1})
    EXPECT_NE(error_of(std::string_view(good).substr(0, n), cfg).find("truncated"),
              std::string::npos)
        << n;
  EXPECT_NE(error_of(good + "x", cfg).find("truncated or extended"), std::string::npos);
  std::string v2 = good;
  v2[8] = 2;
  EXPECT_NE(error_of(v2, cfg).find("format version 2"), std::string::npos);
  // Any flipped payload byte breaks the checksum.
  for (size_t at : {size_t(24), size_t(100), good.size() / 2, good.size() - 1}) {
    std::string bad = good;
    bad[at] ^= 0x10;
    EXPECT_NE(error_of(bad, cfg).find("checksum"), std::string::npos) << at;
  }
  // Behind a right checksum, a payload cut short is still caught record by record.
  EXPECT_NE(error_of(resealed(good.substr(0, good.size() - 7)), cfg).find("truncated in"),
            std::string::npos);
}

TEST(Checkpoint, ChecksEveryRecordAgainstTheConfig) {
  const Config cfg = tiny();
  std::vector<std::string> logs;
  const TrainerState s = state_after(cfg, 25, &logs);  // epoch 2, 5 steps into epoch 3
  const std::string good = checkpoint_bytes(cfg, s);

  Config longer = cfg;
  longer.train.epochs = 50;
  longer.threads = 3;
  EXPECT_EQ(error_of(good, longer), "");  // resumable keys may change
  Config bigger = cfg;
  bigger.student.particles = 60;
  std::string e = error_of(good, bigger);
  EXPECT_NE(e.find("written with student.particles: 50, the config says 60"), std::string::npos)
      << e;
  Config reseeded = cfg;
  reseeded.seed = 9;
  EXPECT_NE(error_of(good, reseeded).find("seed: 0, the config says 9"), std::string::npos);
  Config shorter = cfg;
  shorter.train.epochs = 1;
  EXPECT_NE(error_of(good, shorter).find("ck: at epoch 2, past train.epochs = 1"),
            std::string::npos);

  // Files whose own config matches but whose records do not.
  TrainerState t = s;
  t.perm = s.perm.clone();
  t.perm[0] = t.perm[1];
  EXPECT_NE(error_of(checkpoint_bytes(cfg, t), cfg).find("'perm' is not a permutation"),
            std::string::npos);
  t = s;
  t.student = mapped(s.student, [](const at::Tensor& w) { return w.clone(); });
  weight(t.student, "B")[3][0][1] = std::nan("");
  EXPECT_NE(error_of(checkpoint_bytes(cfg, t), cfg).find("'student.B' holds non-finite"),
            std::string::npos);
  t = s;
  t.student = mapped(s.student, [](const at::Tensor& w) { return w.to(at::kDouble); });
  EXPECT_NE(error_of(checkpoint_bytes(cfg, t), cfg)
                .find("'student.A' is float64, the config needs float32"),
            std::string::npos);
  t = s;
  t.student = mapped(s.student, [](const at::Tensor& w) { return w.narrow(0, 0, 40); });
  e = error_of(checkpoint_bytes(cfg, t), cfg);
  EXPECT_NE(e.find("'student.A' is [40, 3, 10], the config needs [50, 3, 10]"), std::string::npos)
      << e;
  t = s;
  t.steps += 1;
  EXPECT_NE(error_of(checkpoint_bytes(cfg, t), cfg).find("record 'steps'"), std::string::npos);
  t = s;
  t.loss_sum = INFINITY;
  EXPECT_NE(error_of(checkpoint_bytes(cfg, t), cfg).find("record 'loss_sum'"), std::string::npos);
  Config with_bias = cfg;
  with_bias.model.hidden_bias = true;
  EXPECT_NE(error_of(checkpoint_bytes(with_bias, s), with_bias).find("'student.a' is missing"),
            std::string::npos);

  // A generator state LibTorch accepts but whose next draws would read past the MT19937 state:
  // left = 624 words left, next = 624 (LibTorch's CPU state: u64 seed, i32 left, i32 seeded,
  // u64 next, ...).
  at::Tensor raw = s.gen.get_state();
  const int32_t left = 624;
  const uint64_t next = 624;
  std::memcpy(raw.data_ptr<uint8_t>() + 8, &left, 4);
  std::memcpy(raw.data_ptr<uint8_t>() + 16, &next, 8);
  t = s;
  t.gen = test::gen(0);
  t.gen.set_state(raw);
  EXPECT_NE(error_of(checkpoint_bytes(cfg, t), cfg).find("'generator' is not a valid"),
            std::string::npos);
}

// The seeds of fuzz_checkpoint are read back whole with its config
// (tests/fuzz/fuzz_checkpoint.cpp), so fuzzing starts from inputs that reach every record; a format
// change must renew them.
TEST(Checkpoint, FuzzSeedsReadBack) {
  const Config c = fuzz::checkpoint_config();
  int64_t seeds = 0, mid_epoch = 0;
  for (const auto& e : std::filesystem::directory_iterator(std::string(MMDFLOW_SOURCE_DIR) +
                                                           "/tests/fuzz/corpus/checkpoint")) {
    const TrainerState s = load_checkpoint(e.path().string(), c);
    ++seeds;
    mid_epoch += s.batch > 0;
  }
  EXPECT_EQ(seeds, 4);
  EXPECT_EQ(mid_epoch, 2);
}

TEST(Checkpoint, FailedSaveLeavesThePreviousFile) {
  const Config cfg = tiny();
  std::vector<std::string> logs;
  const std::string dir = testing::TempDir() + "/mmdflow_ckpt_" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/checkpoint.bin";
  save_checkpoint(path, cfg, state_after(cfg, 10, &logs));
  const std::string before = read_file(path);
  std::filesystem::create_directories(path + ".tmp");  // the temporary file cannot be made
  EXPECT_THROW(save_checkpoint(path, cfg, state_after(cfg, 30, &logs)), IoError);
  EXPECT_EQ(read_file(path), before);
  EXPECT_EQ(load_checkpoint(path, cfg).epoch, 1);
  EXPECT_THROW(load_checkpoint(dir + "/none.bin", cfg), CheckpointError);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace mmdflow
