// Whole-file writes never go through a symbolic link planted where the file or its temporary
// will be.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "src/base/io.h"

namespace fs = std::filesystem;

namespace mmdflow {
namespace {

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
