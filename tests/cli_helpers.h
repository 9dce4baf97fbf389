// Running the mmdflow binary from tests.
#pragma once
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "src/io.h"

namespace mmdflow::test {

struct Result {
  int code;
  std::string output;
};

inline std::string scratch(const std::string& name) {
  const std::filesystem::path dir = std::filesystem::path(testing::TempDir()) /
                       ("mmdflow_cli_" + std::to_string(getpid()) + "_" + name);
  std::filesystem::remove_all(dir);
  return dir.string();
}

inline Result run(const std::string& args) {
  const std::string log = scratch("log") + ".txt";
  const std::string cmd = std::string(MMDFLOW_BIN) + " " + args + " > " + log + " 2>&1";
  const int status = std::system(cmd.c_str());
  Result r{WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(log)};
  std::filesystem::remove(log);
  return r;
}

inline std::vector<std::string> lines_without_seconds(const std::string& csv) {
  std::vector<std::string> out;
  std::stringstream ss(csv);
  for (std::string line; std::getline(ss, line);) out.push_back(line.substr(0, line.rfind(',')));
  return out;
}

}  // namespace mmdflow::test
