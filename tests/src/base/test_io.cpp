// Files a run writes: whole or not at all, never through a symbolic link planted where the file
// or its temporary will be; tensors readable back.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "src/base/io.h"

namespace fs = std::filesystem;

namespace mmdflow {
namespace {

std::string folder(const std::string& name) {
  const std::string dir =
      testing::TempDir() + "/mmdflow_io_" + std::to_string(getpid()) + "_" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

int64_t entries(const std::string& dir) {
  return std::distance(fs::directory_iterator(dir), fs::directory_iterator());
}

TEST(Io, AtomicFileIsWholeOrAbsent) {
  const std::string dir = folder("atomic"), path = dir + "/f.txt";
  write_file_atomic(path, "first");
  write_file_atomic(path, "second");
  EXPECT_EQ(read_file(path), "second");
  {
    AtomicFile f(path);
    f.write("third", 5);
    EXPECT_EQ(entries(dir), 2);  // the target and one temporary beside it
  }                              // never committed
  EXPECT_EQ(read_file(path), "second");
  EXPECT_EQ(entries(dir), 1);
  EXPECT_THROW(write_file_atomic(dir + "/no-such-folder/x.txt", "x"), IoError);
  // A folder in the target's place: the rename fails, the temporary goes.
  fs::create_directories(dir + "/taken");
  fs::create_directories(dir + "/taken/inside");
  EXPECT_THROW(write_file_atomic(dir + "/taken", "x"), IoError);
  EXPECT_EQ(entries(dir), 2);
  fs::remove_all(dir);
}

// A symbolic link planted where a temporary or the target would be is never written through:
// the temporary's name is fresh and created exclusively; the rename replaces a link, not its
// target.
TEST(Io, LinksInAFolderAreNeverFollowed) {
  const std::string dir = folder("links"), victim = dir + "/victim.txt";
  std::ofstream(victim) << "keep";
  fs::create_symlink(victim, dir + "/f.txt.tmp");
  fs::create_symlink(victim, dir + "/f.txt");
  write_file_atomic(dir + "/f.txt", "new");
  EXPECT_EQ(read_file(victim), "keep");
  EXPECT_FALSE(fs::is_symlink(dir + "/f.txt"));
  EXPECT_EQ(read_file(dir + "/f.txt"), "new");
  fs::remove(dir + "/f.txt");
  fs::create_symlink(victim, dir + "/lines.csv");
  EXPECT_NO_THROW(LineFile(dir + "/lines.csv", "a\n").append("b\n"));
  EXPECT_EQ(read_file(victim), "keep");
  EXPECT_EQ(read_file(dir + "/lines.csv"), "a\nb\n");
  fs::remove_all(dir);
}

TEST(Io, TensorsReadBackByName) {
  const std::string dir = folder("tensors");
  const NamedTensors w = {{"A", at::arange(24, at::kFloat).view({2, 3, 4})},
                          {"b", at::tensor({1.5, -2.0}, at::kDouble)},
                          {"perm", at::tensor({2, 0, 1}, at::kLong)}};
  save_tensors(dir + "/w.pt", w);
  const NamedTensors back = load_tensors(dir + "/w.pt");
  ASSERT_EQ(back.size(), w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    EXPECT_EQ(back[i].first, w[i].first);
    EXPECT_TRUE(at::equal(back[i].second, w[i].second)) << w[i].first;
  }
  std::ofstream(dir + "/bad.pt") << "not a zip file";
  EXPECT_ANY_THROW(load_tensors(dir + "/bad.pt"));
  EXPECT_THROW(read_file(dir + "/missing"), std::runtime_error);
  fs::remove_all(dir);
}

std::string pickled(const c10::IValue& v) {
  const std::vector<char> bytes = torch::jit::pickle_save(v);
  return std::string(bytes.begin(), bytes.end());
}

// torch.save(tensor) and torch.save({name: tensor}) both read back; a strided view keeps its
// strides; anything else, or storages past the bound, is refused.
TEST(Io, ParsedBytesHoldOneTensorOrADict) {
  const at::Tensor x = at::arange(12, at::kDouble).view({3, 4}), xt = x.t();
  NamedTensors back = parse_tensors(pickled(xt), 1 << 10);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].first, "");
  EXPECT_TRUE(at::equal(back[0].second, xt));
  EXPECT_EQ(back[0].second.strides(), xt.strides());
  const std::string dir = folder("parse");
  save_tensors(dir + "/w.pt", {{"u", x}, {"v", x.to(at::kFloat)}});
  back = parse_tensors(read_file(dir + "/w.pt"), 1 << 10);
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[1].first, "v");
  EXPECT_TRUE(at::equal(back[1].second, x.to(at::kFloat)));
  EXPECT_THROW(load_tensors(dir + "/w.pt", 100), std::exception);  // 96 + 48 bytes of storage
  EXPECT_THROW(parse_tensors(read_file(dir + "/w.pt"), 100), std::exception);
  write_file_atomic(dir + "/bare.pt", pickled(x));
  EXPECT_THROW(load_tensors(dir + "/bare.pt"), std::exception);  // weights are a dict
  try {
    parse_tensors(pickled(c10::IValue(int64_t(3))), 1 << 10);
    FAIL() << "an int was read as tensors";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("neither a tensor nor a dict of tensors but a Int"),
              std::string::npos)
        << e.what();
  }
  EXPECT_ANY_THROW(parse_tensors("not a zip file", 1 << 10));
  fs::remove_all(dir);
}

std::string fresh_folder(const std::string& name) {
  const fs::path dir = fs::path(testing::TempDir()) / (name + "_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

// Every name this process's next temporaries of `path` can take (path.tmp.<pid>.<k>) is a link
// to a file elsewhere: the write fails (exit 4 from the CLI) and writes nothing through them.
TEST(AtomicFile, NeverWritesThroughALinkedTemporary) {
  const std::string dir = fresh_folder("atomic_links"), victim = dir + "/victim";
  std::ofstream(victim) << "keep";
  const std::string path = dir + "/config.yaml";
  for (int k = 0; k < 1000; ++k)
    fs::create_symlink(victim, path + ".tmp." + std::to_string(getpid()) + "." + std::to_string(k));
  try {
    write_file_atomic(path, "written");
    FAIL() << "wrote through a link";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot write " + path + ".tmp."), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("File exists"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_file(victim), "keep");
  EXPECT_FALSE(fs::exists(fs::symlink_status(path)));
}

// A link in place of the file itself is replaced by the file; its target stays as it was.
TEST(AtomicFile, ReplacesALinkedFileInsteadOfItsTarget) {
  const std::string dir = fresh_folder("atomic_replace"), victim = dir + "/victim";
  std::ofstream(victim) << "keep";
  const std::string path = dir + "/losses.csv";
  fs::create_symlink(victim, path);
  LineFile f(path, "header\n");
  f.append("1\n");
  EXPECT_EQ(fs::symlink_status(path).type(), fs::file_type::regular);
  EXPECT_EQ(read_file(path), "header\n1\n");
  EXPECT_EQ(read_file(victim), "keep");
}

}  // namespace
}  // namespace mmdflow
