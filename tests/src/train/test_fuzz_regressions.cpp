// Inputs on which tools/fuzz.sh found a crash (each also kept in the seed corpus under
// tests/fuzz/corpus/), read as the fuzz targets read them: each must end in a ConfigError or a
// CheckpointError, i.e. one line and exit 2 from the command line.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "data/sample_file.h"
#include "src/base/io.h"
#include "src/train/checkpoint.h"
#include "src/train/config.h"
#include "src/train/run_folder.h"
#include "tests/fuzz/weights_config.h"

namespace mmdflow {
namespace {

std::string config_error(const std::string& yaml) {
  try {
    parse_config(yaml, {}, "fuzz.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

// fuzz_config, crash-non_scalar_key.yaml: a key that is a sequence escaped as yaml-cpp's
// BadConversion (exit 1) instead of a ConfigError.
TEST(FuzzRegression, NonScalarKeyIsAConfigError) {
  EXPECT_EQ(config_error("seed: 1\n? [a, b]\n: 1\n"),
            "the configuration: has a key that is not a name (fuzz.yaml line 2)");
  EXPECT_EQ(config_error("train:\n  {epochs: 1}: 2\n"),
            "train: has a key that is not a name (fuzz.yaml line 2)");
}

const std::string kCorpus = std::string(MMDFLOW_SOURCE_DIR) + "/tests/fuzz/corpus/";

// A scratch run folder holding `bytes` as student.pt and teacher.pt.
std::string folder_with(const std::string& bytes) {
  const std::string dir = testing::TempDir() + "/fuzz_pt_" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  write_file_atomic(dir + "/student.pt", bytes);
  write_file_atomic(dir + "/teacher.pt", bytes);
  return dir;
}

std::string student_error(const std::string& bytes, Layout layout) {
  const Config c = fuzz::weights_config(layout);
  try {
    read_student(folder_with(bytes), c, {0, c.student.particles, c.student.particles});
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "";
}

// fuzz_pt, crash-memo_index.pkl: a LONG_BINPUT whose index (0x69756265) is read from the bytes
// "ebui" made torch's unpickler grow its memo to 1.8e9 entries (28 GB; out of memory under the
// fuzzer, gigabytes filled or std::bad_alloc outside it). The pickle is checked first.
TEST(FuzzRegression, MemoIndexPastThePickleIsACheckpointError) {
  const std::string error = student_error(
      fuzz::pt_archive(read_file(kCorpus + "pt/crash-memo_index.pkl")), Layout::Dense);
  EXPECT_NE(error.find("/student.pt: not a dict of tensors in torch.save's format (data.pkl byte "
                       "221: memo index 1769300581 too large)"),
            std::string::npos)
      << error;
}

// fuzz_pt, crash-read_past_end.pt: an archive with mutated end records made
// LibTorch's zip reader ask for 65535 bytes past the end of the file's bytes, which its in-memory
// reader (the one pickle_load uses) copies without a check. A bounded reader gives fewer bytes,
// and the zip reader reports it; the central directory's check (N5) now finds the bad end
// record first.
TEST(FuzzRegression, ArchiveReadPastItsEndIsACheckpointError) {
  const std::string error =
      student_error(read_file(kCorpus + "pt/crash-read_past_end.pt"), Layout::Block);
  EXPECT_NE(error.find("/student.pt: not a dict of tensors in torch.save's format "
                       "(zip archive: bad zip64 end of central directory)"),
            std::string::npos)
      << error;
}

// What the pickle check refuses, each before torch reads a byte of it (the message: where).
TEST(FuzzRegression, PickleLengthsAndOpcodesAreChecked) {
  using namespace std::string_literals;
  const std::string good = read_file(kCorpus + "pt/block_student.pkl");
  EXPECT_EQ(student_error(fuzz::pt_archive(good), Layout::Block), "");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {good.substr(0, good.size() - 1), "data.pkl byte 397: no STOP at the end"},
      {good + "N", "data.pkl byte 397: bytes after STOP"},
      {"\x80\x02X\xff\xff\xff\x7f"s + "abc.", "data.pkl byte 2: 2147483647 bytes past the end"},
      {"\x80\x02\x8d"s + std::string(8, '\xff') + ".",
       "data.pkl byte 2: 18446744073709551615 bytes past the end"},
      {"\x80\x02}q\x00j\xff\xff\xff\x00."s, "data.pkl byte 5: memo index 16777215 too large"},
      {"\x80\x02}p4000000000\n."s, "data.pkl byte 3: memo index 4000000000 too large"},
      {"\x80\x02}p-1\n."s, "data.pkl byte 3: not a memo index"},
      {"\x80\x02}\xff."s, "data.pkl byte 3: unknown opcode 0xff"},
      {"\x80\x02"s + "ctorch\nFloat", "data.pkl byte 2: a line past the end"},
      {"\x80\x02"s + std::string(1 << 20, 'N') + ".",
       "zip archive: its pickle and records inflate to "},
  };
  for (const auto& [pickle, what] : cases) {
    const std::string e = student_error(fuzz::pt_archive(pickle), Layout::Block);
    EXPECT_NE(e.find("(" + what), std::string::npos) << e;
  }
}

// fuzz_pt, crash-stack_underflow.pkl: an empty dict followed by TUPLE2s, each of which takes two
// values, over a stack of one: LibTorch's unpickler read freed memory (heap-use-after-free under
// ASan; with luck an error, else a crash or garbage). Every opcode's values are now counted (the
// first TUPLE2 takes the GLOBAL and the dict).
TEST(FuzzRegression, OpcodeThatTakesMoreValuesThanTheStackHoldsIsACheckpointError) {
  const std::string e = student_error(
      fuzz::pt_archive(read_file(kCorpus + "pt/crash-stack_underflow.pkl")), Layout::Block);
  EXPECT_NE(e.find("data.pkl byte 42: opcode 0x86 takes 2 values, 1 on the st"), std::string::npos)
      << e;
  // Mismatched marks and an odd SETITEMS too; STOP over anything but one value.
  for (const auto& [pickle, what] :
       {std::pair{std::string("\x80\x02}(X\x01\x00\x00\x00"
                              "Au.",
                              12),
                  "opcode 0x75 over 1 values"},
        std::pair{std::string("\x80\x02)1.", 5), "without a MARK"},
        std::pair{std::string("\x80\x02))."), "STOP over 2 values"},
        std::pair{std::string("\x80\x02(."), "STOP over 0 values and 1 marks"}}) {
    const std::string err = student_error(fuzz::pt_archive(pickle), Layout::Block);
    EXPECT_NE(err.find(what), std::string::npos) << err;
  }
}

// A run folder with the weights files of fuzz_index's run and `index` as its student.index.json.
std::string index_folder(const std::string& index) {
  const std::string dir = testing::TempDir() + "/fuzz_index_" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  for (const char* f : {"student-00000-of-00002.pt", "student-00001-of-00002.pt"})
    write_file_atomic(dir + "/" + f, read_file(fuzz::kIndexFiles + f));
  write_file_atomic(dir + "/student.index.json", index);
  return dir;
}

// fuzz_index, crash-size_1e76.json: a tensor size of 10^76 was cast to int64_t unchecked
// (undefined behaviour, found by UBSan; INT64_MIN on x86). Every integer read from JSON (indexes,
// summaries, comparisons) is now checked to fit.
TEST(FuzzRegression, IndexNumberOutOfRangeIsACheckpointError) {
  const Config c = fuzz::index_config();
  const std::string seed = read_file(kCorpus + "index/student.index.json");
  auto with = [&](const std::string& from, const std::string& to) {
    std::string out = seed;
    return out.replace(out.find(from), from.size(), to);
  };
  for (const std::string& index :
       {read_file(kCorpus + "index/crash-size_1e76.json"), with("\"begin\": 0", "\"begin\": 1e76"),
        with("\"particles\": 130", "\"particles\": 18446744073709551615")}) {
    try {
      read_student(index_folder(index), c, {0, 130, 130});
      ADD_FAILURE() << index;
    } catch (const CheckpointError& e) {
      EXPECT_NE(std::string(e.what()).find("student.index.json: not a weights index"),
                std::string::npos)
          << e.what();
    }
  }
}

// fuzz_data, crash-empty_record_copy (a .pt after its format byte): LibTorch's archive reader asks
// for 0 bytes into a null buffer, which the bounded reader passed to memcpy (undefined behaviour,
// found by UBSan; harmless on this machine, so this test checks the outcome and the fuzz target
// the undefined behaviour). The file is refused naming it.
TEST(FuzzRegression, EmptyReadIntoANullBufferIsNoCopy) {
  const std::string bytes = read_file(kCorpus + "data/crash-empty_record_copy");
  ASSERT_EQ(bytes[0] % 4, 3);
  const std::string path = folder_with("") + "/crash.pt";
  write_file_atomic(path, bytes.substr(1));
  EXPECT_THROW(read_labelled(path, 1), ConfigError);
  EXPECT_THROW(read_samples(path), ConfigError);
}

// The seeds of fuzz_pt and fuzz_shard still read back whole: a format change must renew them
// (tests/fuzz/weights_config.h says how).
TEST(FuzzSeeds, WeightFilesReadBack) {
  for (const auto& [file, layout] :
       {std::pair{"block_student", Layout::Block}, std::pair{"dense_student", Layout::Dense}}) {
    EXPECT_EQ(student_error(read_file(kCorpus + "pt/" + file + ".pt"), layout), "") << file;
    EXPECT_EQ(student_error(fuzz::pt_archive(read_file(kCorpus + "pt/" + file + ".pkl")), layout),
              "")
        << file;
  }
  const Config block = fuzz::weights_config(Layout::Block);
  const std::string teacher = read_file(kCorpus + "pt/teacher.pt");
  EXPECT_EQ(read_teacher(folder_with(teacher), block).size(), 4u);
  const std::string pickle = read_file(kCorpus + "pt/teacher.pkl");
  EXPECT_EQ(read_teacher(folder_with(fuzz::pt_archive(pickle)), block).size(), 4u);
  for (const auto& [file, layout] :
       {std::pair{"block.bin", Layout::Block}, std::pair{"dense.bin", Layout::Dense}}) {
    const Config c = fuzz::weights_config(layout);
    const std::string bytes = read_file(kCorpus + "shard/" + file), dir = folder_with("");
    Checkpoint ckpt;
    ckpt.generation = 1;
    ckpt.shards.push_back({shard_name(1, 0, 1), 0, 4, bytes.size(), crc32(bytes)});
    std::filesystem::create_directories(dir + "/" + kShardFolder);
    write_file_atomic(dir + "/" + kShardFolder + "/" + ckpt.shards[0].name, bytes);
    EXPECT_EQ(read_weights(dir, ckpt, c, {0, 4, 4}).size(), 4u) << file;
  }
}

// The seed of fuzz_index still reads back beside the run's weights files (tests/fuzz/index/).
TEST(FuzzSeeds, IndexReadsBack) {
  const Config c = fuzz::index_config();
  const NamedTensors w = read_student(index_folder(read_file(kCorpus + "index/student.index.json")),
                                      c, {100, 130, 130});
  ASSERT_EQ(w.size(), 4u);
  EXPECT_EQ(w[0].second.size(0), 30);
}

// The seeds of fuzz_data read as the target reads them (the first byte picks the format): each
// that numpy or torch wrote as labelled data or samples reads back as such.
TEST(FuzzSeeds, DataFilesReadBack) {
  const std::map<std::string, std::pair<bool, bool>> seeds = {
      // labelled, samples
      {"f64.npy", {true, true}},          {"f32_fortran.npy", {true, true}},
      {"int16.npy", {true, true}},        {"stored.npz", {true, false}},
      {"deflated.npz", {true, false}},    {"header.csv", {true, true}},
      {"header_names.csv", {true, true}}, {"plain.csv", {false, true}},
      {"dict.pt", {true, false}},         {"int_dict.pt", {true, false}},
      {"tensor.pt", {false, true}}};
  const char* const formats[] = {".npy", ".npz", ".csv", ".pt"};
  const std::string dir = folder_with("");
  for (const auto& [name, reads] : seeds) {
    const std::string bytes = read_file(kCorpus + "data/" + name);
    ASSERT_FALSE(bytes.empty()) << name;
    const std::string path = dir + "/seed" + formats[uint8_t(bytes[0]) % 4];
    write_file_atomic(path, bytes.substr(1));
    bool labelled = true, samples = true;
    try {
      read_labelled(path, 1);
    } catch (const ConfigError&) {
      labelled = false;
    }
    try {
      read_samples(path);
    } catch (const ConfigError&) {
      samples = false;
    }
    EXPECT_EQ(std::pair(labelled, samples), reads) << name;
  }
}

}  // namespace
}  // namespace mmdflow
