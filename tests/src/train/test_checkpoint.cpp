// Checkpoints in process: exact continuation from any step boundary, and rejection of foreign,
// truncated, corrupt or mismatched checkpoints.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

#include "src/base/io.h"
#include "src/comm/comm.h"
#include "src/train/checkpoint.h"
#include "src/train/trainer.h"
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

// The whole student of cfg as one process's shard.
Shard whole(const Config& cfg) { return {0, cfg.student.particles, cfg.student.particles}; }

// A scratch run folder for checkpoints, unique to this process and name.
std::string folder(const std::string& name) {
  const std::string dir =
      testing::TempDir() + "/mmdflow_ckpt_" + std::to_string(getpid()) + "_" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// s written by one process as generation 1 into a fresh folder, and read back.
TrainerState round_trip(const Config& cfg, const TrainerState& s, const std::string& name) {
  const std::string dir = folder(name);
  auto comm = single_process();
  save_checkpoint(dir, cfg, s, whole(cfg), 1, *comm);
  TrainerState back = load_checkpoint(dir, cfg, whole(cfg))->state;
  std::filesystem::remove_all(dir);
  return back;
}

std::string error_of(std::string_view bytes, const Config& cfg) {
  try {
    parse_manifest(bytes, cfg, "ck");
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "";
}

// The manifest of state s with one shard file of the given bytes.
std::string manifest_for(const Config& cfg, const TrainerState& s, const std::string& shard) {
  return manifest_bytes(
      cfg, s, 1, {{shard_name(1, 0, 1), 0, cfg.student.particles, shard.size(), crc32(shard)}});
}

// The error of reading the weights when the shard file holds `shard` (the manifest saying so).
std::string weights_error(const Config& cfg, const TrainerState& s, const std::string& shard,
                          const std::string& manifest = "") {
  const std::string dir = folder("weights");
  std::filesystem::create_directories(dir + "/" + kShardFolder);
  write_file_atomic(dir + "/" + kShardFolder + "/" + shard_name(1, 0, 1), shard);
  try {
    const Checkpoint c =
        parse_manifest(manifest.empty() ? manifest_for(cfg, s, shard) : manifest, cfg, "ck");
    read_weights(dir, c, cfg, whole(cfg));
  } catch (const CheckpointError& e) {
    std::filesystem::remove_all(dir);
    return e.what();
  }
  std::filesystem::remove_all(dir);
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
    Trainer resumed(cfg);
    resumed.restore(round_trip(cfg, state_after(cfg, stop, &logs), "any"));
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
      Trainer resumed(cfg);
      resumed.restore(round_trip(cfg, state_after(cfg, stop, &logs), "kinds"));
      ASSERT_EQ(resumed.run([&](const EpochLog& l) { logs.push_back(fields(l)); }),
                Trainer::End::Done);
      EXPECT_EQ(logs, straight) << name_of(cfg.student.layout) << " stopped before call " << stop;
      EXPECT_TRUE(equal(resumed.state().student, full.state().student));
      EXPECT_EQ(resumed.state().step.step_size, full.state().step.step_size);
    }
  }
}

TEST(Checkpoint, RejectsForeignTruncatedAndCorruptManifests) {
  const Config cfg = tiny();
  std::vector<std::string> logs;
  const TrainerState s = state_after(cfg, 25, &logs);
  const std::string good = manifest_for(cfg, s, shard_bytes(cfg, whole(cfg), s.student));
  ASSERT_EQ(error_of(good, cfg), "");

  EXPECT_NE(error_of("", cfg).find("not an mmdflow checkpoint"), std::string::npos);
  EXPECT_NE(error_of("PK\x03\x04 a zip file", cfg).find("not an mmdflow checkpoint"),
            std::string::npos);
  for (size_t n : {size_t(8), size_t(20), size_t(24), good.size() / 2, good.size() - 1})
    EXPECT_NE(error_of(std::string_view(good).substr(0, n), cfg).find("truncated"),
              std::string::npos)
        << n;
  EXPECT_NE(error_of(good + "x", cfg).find("truncated or extended"), std::string::npos);
  std::string v1 = good;
  v1[8] = 1;
  EXPECT_NE(error_of(v1, cfg).find("format version 1, this mmdflow reads version 2"),
            std::string::npos);
  // Any flipped payload byte breaks the checksum.
  for (size_t at : {size_t(24), size_t(100), good.size() / 2, good.size() - 1}) {
    std::string bad = good;
    bad[at] ^= 0x10;
    EXPECT_NE(error_of(bad, cfg).find("checksum"), std::string::npos) << at;
  }
  // Behind a right checksum, a payload cut short is still caught record by record.
  EXPECT_NE(error_of(resealed(good.substr(0, good.size() - 7)), cfg).find("truncated in"),
            std::string::npos);
  // N16: a record name read from the file is quoted in the message: its line break and control
  // bytes cannot split or forge the one-line error. The first record's name "config" (bytes
  // 29..34, its type at 35) becomes "con\nig" of an unknown type.
  std::string named = good;
  ASSERT_EQ(named.substr(29, 6), "config");
  named.replace(29, 6, "con\nig");
  named[35] = 9;
  const std::string e = error_of(resealed(named), cfg);
  EXPECT_NE(e.find("record 'con\\nig' has unknown type 9"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
}

TEST(Checkpoint, ChecksEveryRecordAgainstTheConfig) {
  const Config cfg = tiny();
  std::vector<std::string> logs;
  const TrainerState s = state_after(cfg, 25, &logs);  // epoch 2, 5 steps into epoch 3
  const std::string shard = shard_bytes(cfg, whole(cfg), s.student);
  const std::string good = manifest_for(cfg, s, shard);

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

  // Manifests whose own config matches but whose records do not.
  TrainerState t = s;
  t.perm = s.perm.clone();
  t.perm[0] = t.perm[1];
  EXPECT_NE(error_of(manifest_for(cfg, t, shard), cfg).find("'perm' is not a permutation"),
            std::string::npos);
  t = s;
  t.steps += 1;
  EXPECT_NE(error_of(manifest_for(cfg, t, shard), cfg).find("record 'steps'"), std::string::npos);
  t = s;
  t.loss_sum = INFINITY;
  EXPECT_NE(error_of(manifest_for(cfg, t, shard), cfg).find("record 'loss_sum'"),
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
  EXPECT_NE(error_of(manifest_for(cfg, t, shard), cfg).find("'generator' is not a valid"),
            std::string::npos);

  // Shards that do not tile the particles, or are not named as the writer names them.
  auto with_shards = [&](const std::vector<ShardFile>& files) {
    return error_of(manifest_bytes(cfg, s, 1, files), cfg);
  };
  e = with_shards({{shard_name(1, 0, 2), 0, 20, 1, 0}, {shard_name(1, 1, 2), 25, 50, 1, 0}});
  EXPECT_NE(e.find("record 'shard.1.begin' is 25, expected 20..20"), std::string::npos) << e;
  e = with_shards({{shard_name(1, 0, 1), 0, 40, 1, 0}});
  EXPECT_NE(e.find("the shards end at particle 40, student.particles is 50"), std::string::npos)
      << e;
  // N14: a generation whose successor would overflow.
  const int64_t huge = INT64_MAX;
  e = error_of(manifest_bytes(cfg, s, huge, {{shard_name(huge, 0, 1), 0, 50, 1, 0}}), cfg);
  EXPECT_NE(e.find(fmt::format("record 'generation' is {}, expected 1..{}", huge, kMaxGeneration)),
            std::string::npos)
      << e;
  e = with_shards({{"../../etc/passwd", 0, 50, 1, 0}});
  EXPECT_NE(e.find("record 'shard.0.file' is '../../etc/passwd', expected "
                   "'g000001-00000-of-00001.bin'"),
            std::string::npos)
      << e;
}

// The weight shards: size, header, checksum and values are all checked against the manifest and
// the config.
TEST(Checkpoint, ChecksEveryShardAgainstTheManifestAndTheConfig) {
  const Config cfg = tiny();
  std::vector<std::string> logs;
  const TrainerState s = state_after(cfg, 25, &logs);
  const std::string shard = shard_bytes(cfg, whole(cfg), s.student);
  EXPECT_EQ(weights_error(cfg, s, shard), "");
  std::string bad = shard;
  bad[bad.size() / 2] ^= 0x10;
  std::string e = weights_error(cfg, s, bad, manifest_for(cfg, s, shard));
  EXPECT_NE(e.find("corrupt: the checksum does not match the manifest's"), std::string::npos) << e;
  const auto open_fds = [] {
    return std::distance(std::filesystem::directory_iterator("/proc/self/fd"),
                         std::filesystem::directory_iterator());
  };
  const auto fds = open_fds();
  e = weights_error(cfg, s, shard.substr(0, shard.size() - 4), manifest_for(cfg, s, shard));
  EXPECT_NE(e.find(std::to_string(shard.size() - 4) + " bytes, the manifest says"),
            std::string::npos)
      << e;
  EXPECT_EQ(open_fds(), fds);  // the shard's descriptor is closed though its reader threw
  // Right checksums around wrong contents: caught by the header and value checks.
  NamedTensors w = mapped(s.student, [](const at::Tensor& t) { return t.clone(); });
  weight(w, "B")[3][0][1] = std::nan("");
  e = weights_error(cfg, s, shard_bytes(cfg, whole(cfg), w));
  EXPECT_NE(e.find("weight 'B' holds non-finite values"), std::string::npos) << e;
  Config f64 = cfg;
  f64.dtype = at::kDouble;
  const NamedTensors w64 = mapped(s.student, [](const at::Tensor& t) { return t.to(at::kDouble); });
  e = weights_error(cfg, s, shard_bytes(f64, whole(cfg), w64));
  EXPECT_NE(e.find("not float32"), std::string::npos) << e;
  Config with_bias = cfg;
  with_bias.model.hidden_bias = true;
  e = weights_error(with_bias, s, shard);
  EXPECT_NE(e.find("does not hold the 3 weight tensors of the config"), std::string::npos) << e;
  Config wider = cfg;
  wider.data.dim = 11;
  NamedTensors w11 = mapped(s.student, [](const at::Tensor& t) { return t.clone(); });
  w11[0].second = at::zeros({50, 3, 11});
  e = weights_error(cfg, s, shard_bytes(wider, whole(cfg), w11));
  EXPECT_NE(e.find("tensor 'A' [50, 3, 11] where the config needs 'A' [50, 3, 10]"),
            std::string::npos)
      << e;
}

// Shards written by 3 processes read back at any split, and the rows a rank reads equal the
// whole's.
TEST(Checkpoint, ShardsReadBackAtAnyWorldSize) {
  Config cfg = tiny();
  cfg.student.particles = 300;  // 3 blocks of 128
  std::vector<std::string> logs;
  const TrainerState s = state_after(cfg, 15, &logs);
  const std::string dir = folder("worlds");
  std::filesystem::create_directories(dir + "/" + kShardFolder);
  std::vector<ShardFile> files;
  for (int r = 0; r < 3; ++r) {
    const Shard sh = shard_of(cfg, r, 3);
    NamedTensors part;
    for (const auto& [name, t] : s.student)
      part.emplace_back(name, t.narrow(0, sh.begin, sh.size()));
    const std::string bytes = shard_bytes(cfg, sh, part);
    write_file_atomic(dir + "/" + kShardFolder + "/" + shard_name(4, r, 3), bytes);
    files.push_back({shard_name(4, r, 3), sh.begin, sh.end, bytes.size(), crc32(bytes)});
  }
  write_file_atomic(dir + "/" + kCheckpointFile, manifest_bytes(cfg, s, 4, files));
  for (int world : {1, 2, 3, 5})
    for (int r = 0; r < world; ++r) {
      const Shard sh = shard_of(cfg, r, world);
      const auto c = load_checkpoint(dir, cfg, sh);
      ASSERT_TRUE(c.has_value());
      EXPECT_EQ(c->generation, 4);
      for (size_t i = 0; i < s.student.size(); ++i)
        EXPECT_TRUE(at::equal(c->state.student[i].second,
                              s.student[i].second.narrow(0, sh.begin, sh.size())))
            << world << " " << r << " " << s.student[i].first;
    }
  std::filesystem::remove_all(dir);
}

// The seeds of fuzz_checkpoint are read back whole with its config
// (tests/fuzz/fuzz_checkpoint.cpp), so fuzzing starts from inputs that reach every record; a format
// change must renew them.
TEST(Checkpoint, FuzzSeedsReadBack) {
  const Config c = fuzz::checkpoint_config();
  int64_t seeds = 0, mid_epoch = 0;
  for (const auto& e : std::filesystem::directory_iterator(std::string(MMDFLOW_SOURCE_DIR) +
                                                           "/tests/fuzz/corpus/checkpoint")) {
    const Checkpoint ck = parse_manifest(read_file(e.path().string()), c, e.path().string());
    ++seeds;
    mid_epoch += ck.state.batch > 0;
  }
  EXPECT_EQ(seeds, 4);
  EXPECT_EQ(mid_epoch, 2);
}

// A checkpoint that cannot be written leaves the previous one whole, manifest and shards.
TEST(Checkpoint, FailedSaveLeavesThePreviousCheckpoint) {
  const Config cfg = tiny();
  std::vector<std::string> logs;
  const std::string dir = folder("failed");
  auto comm = single_process();
  save_checkpoint(dir, cfg, state_after(cfg, 10, &logs), whole(cfg), 1, *comm);
  const std::string before = read_file(dir + "/" + kCheckpointFile);
  // Generation 2's shard cannot be made: a folder sits at its name.
  std::filesystem::create_directories(dir + "/" + kShardFolder + "/" + shard_name(2, 0, 1));
  EXPECT_THROW(save_checkpoint(dir, cfg, state_after(cfg, 30, &logs), whole(cfg), 2, *comm),
               IoError);
  EXPECT_EQ(read_file(dir + "/" + kCheckpointFile), before);
  EXPECT_EQ(load_checkpoint(dir, cfg, whole(cfg))->state.epoch, 1);
  std::filesystem::remove_all(dir + "/" + kShardFolder + "/" + shard_name(2, 0, 1));
  // Once generation 2 is written, generation 1's shard is swept.
  save_checkpoint(dir, cfg, state_after(cfg, 30, &logs), whole(cfg), 2, *comm);
  EXPECT_EQ(load_checkpoint(dir, cfg, whole(cfg))->state.epoch, 3);
  int shards = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/" + kShardFolder)) {
    EXPECT_EQ(e.path().filename().string(), shard_name(2, 0, 1));
    ++shards;
  }
  EXPECT_EQ(shards, 1);
  EXPECT_FALSE(load_checkpoint(folder("none"), cfg, whole(cfg)).has_value());
  std::filesystem::remove_all(dir);
}

// A checkpoint.shards that is a symbolic link to a folder is refused, and writes and removes
// nothing there; in the real folder only names of shards and their temporaries are swept. Found
// before: `--resume` wrote its shard through the link and deleted every entry named g* there
// that no manifest named (a user's grades.txt and genome.fa).
TEST(Checkpoint, LinkedShardFolderIsRefusedAndOnlyShardFilesAreSwept) {
  namespace fs = std::filesystem;
  const Config cfg = tiny();
  std::vector<std::string> logs;
  const TrainerState s = state_after(cfg, 10, &logs);
  const std::string dir = folder("linked_shards"), elsewhere = folder("linked_shards_target");
  const std::vector<std::string> theirs = {"grades.txt", "genome.fa", "g000001-00000-of-00001.bin"};
  for (const std::string& name : theirs) write_file_atomic(elsewhere + "/" + name, name);
  fs::create_directory_symlink(elsewhere, dir + "/" + kShardFolder);
  auto comm = single_process();
  try {
    save_checkpoint(dir, cfg, s, whole(cfg), 2, *comm);
    ADD_FAILURE() << "wrote through a linked " << kShardFolder;
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(kShardFolder + std::string(": not a folder")),
              std::string::npos)
        << e.what();
  }
  for (const std::string& name : theirs) EXPECT_EQ(read_file(elsewhere + "/" + name), name);
  EXPECT_EQ(std::distance(fs::directory_iterator(elsewhere), fs::directory_iterator()), 3);
  EXPECT_FALSE(fs::exists(dir + "/" + kCheckpointFile));
  // A resume reads no shard through such a link either.
  fs::remove(dir + "/" + kShardFolder);
  save_checkpoint(dir, cfg, s, whole(cfg), 1, *comm);
  fs::rename(dir + "/" + kShardFolder, elsewhere + "/real");
  fs::create_directory_symlink(elsewhere + "/real", dir + "/" + kShardFolder);
  EXPECT_THROW(load_checkpoint(dir, cfg, whole(cfg)), CheckpointError);
  fs::remove(dir + "/" + kShardFolder);
  fs::rename(elsewhere + "/real", dir + "/" + kShardFolder);
  // In the real folder: stale shards and their temporaries go, other names starting with g stay.
  const std::string shards = dir + "/" + kShardFolder + "/";
  for (const std::string& name :
       {std::string("grades.txt"), std::string("g000001-00000-of-00001.bin.orig"),
        std::string("g1-0-of-1.bin"), std::string("g000000-00000-of-00002.bin.tmp.12.0")})
    write_file_atomic(shards + name, "keep");
  save_checkpoint(dir, cfg, s, whole(cfg), 2, *comm);
  std::set<std::string> left;
  for (const auto& e : fs::directory_iterator(shards)) left.insert(e.path().filename().string());
  EXPECT_EQ(left, (std::set<std::string>{"grades.txt", "g000001-00000-of-00001.bin.orig",
                                         "g1-0-of-1.bin", shard_name(2, 0, 1)}));
  fs::remove_all(dir);
  fs::remove_all(elsewhere);
}

// A FIFO planted as a shard is refused, never waited on. Found before: `--resume` hung for ever
// in open(2), SIGTERM ignored, the folder locked.
TEST(Checkpoint, FifoPlantedAsAShardIsRefused) {
  const Config cfg = tiny();
  std::vector<std::string> logs;
  const TrainerState s = state_after(cfg, 10, &logs);
  const std::string dir = folder("fifo");
  auto comm = single_process();
  save_checkpoint(dir, cfg, s, whole(cfg), 1, *comm);
  const std::string shard = dir + "/" + kShardFolder + "/" + shard_name(1, 0, 1);
  std::filesystem::remove(shard);
  ASSERT_EQ(::mkfifo(shard.c_str(), 0644), 0);
  try {
    load_checkpoint(dir, cfg, whole(cfg));
    ADD_FAILURE() << "read a FIFO";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find(shard_name(1, 0, 1) + ": not a regular file"),
              std::string::npos)
        << e.what();
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace mmdflow
