// Reading a file whole: a regular file of at most max_bytes, never a FIFO waited on, never a
// symbolic link where none may be; every refusal names the file and says why.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "src/base/files.h"

namespace fs = std::filesystem;

namespace mmdflow {
namespace {

std::string folder(const std::string& name) {
  const std::string dir =
      testing::TempDir() + "/mmdflow_files_" + std::to_string(getpid()) + "_" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// The FileError that reading path throws; fails the test if it reads.
FileError refusal(const std::string& path, uint64_t max_bytes, bool follow_links) {
  try {
    read_regular_file(path, max_bytes, follow_links);
  } catch (const FileError& e) {
    return e;
  }
  ADD_FAILURE() << path << " was read";
  return FileError("", "");
}

TEST(Files, ARegularFileIsReadUpToItsBound) {
  const std::string dir = folder("bound"), f = dir + "/f.txt";
  std::ofstream(f) << "12345";
  EXPECT_EQ(read_regular_file(f, 5, false), "12345");
  EXPECT_EQ(read_file(f), "12345");
  const FileError e = refusal(f, 4, false);
  EXPECT_EQ(std::string(e.what()), f + ": 5 bytes, more than the 4 it may hold");
  EXPECT_EQ(e.why(), "5 bytes, more than the 4 it may hold");
  std::ofstream(dir + "/empty");
  EXPECT_EQ(read_regular_file(dir + "/empty", 0, false), "");
  fs::remove_all(dir);
}

TEST(Files, AnythingButARegularFileIsRefusedAtOnce) {
  const std::string dir = folder("kinds");
  ASSERT_EQ(::mkfifo((dir + "/fifo").c_str(), 0600), 0);  // no writer: opening it blocking waits
  for (const bool follow : {false, true}) {
    EXPECT_EQ(refusal(dir + "/fifo", 1 << 20, follow).why(), "not a regular file");
    EXPECT_EQ(refusal(dir, 1 << 20, follow).why(), "not a regular file");
  }
  const FileError missing = refusal(dir + "/none", 1 << 20, true);
  EXPECT_EQ(std::string(missing.what()), "cannot read " + dir + "/none: No such file or directory");
  EXPECT_EQ(missing.why(), "cannot read it: No such file or directory");
  fs::remove_all(dir);
}

TEST(Files, ALinkIsFollowedOnlyWhenAsked) {
  const std::string dir = folder("link");
  std::ofstream(dir + "/target") << "x";
  fs::create_symlink(dir + "/target", dir + "/link");
  EXPECT_EQ(read_regular_file(dir + "/link", 1, true), "x");
  const FileError e = refusal(dir + "/link", 1, false);
  EXPECT_EQ(std::string(e.what()), dir + "/link: a symbolic link, not a file");
  EXPECT_EQ(e.why(), "a symbolic link, not a file");
  fs::remove_all(dir);
}

}  // namespace
}  // namespace mmdflow
