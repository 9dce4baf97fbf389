#include <gtest/gtest.h>

#include "src/base/errors.h"
#include "src/dist/launch.h"

namespace mmdflow {
namespace {

std::string error_of(const std::map<std::string, std::string>& env) {
  try {
    launch_from(env);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Launch, TorchrunVariables) {
  const Launch l = launch_from({{"RANK", "2"},
                                {"WORLD_SIZE", "3"},
                                {"LOCAL_RANK", "1"},
                                {"MASTER_ADDR", "10.0.0.1"},
                                {"MASTER_PORT", "29500"}});
  EXPECT_EQ(l.rank, 2);
  EXPECT_EQ(l.world, 3);
  EXPECT_EQ(l.local_rank, 1);
  EXPECT_EQ(l.master_addr, "10.0.0.1");
  EXPECT_EQ(l.master_port, 29500);
  EXPECT_EQ(l.source, "torchrun");
}

TEST(Launch, NoVariablesOrWorldOneIsASingleProcess) {
  EXPECT_EQ(launch_from({}).world, 1);
  const Launch one = launch_from({{"RANK", "0"}, {"WORLD_SIZE", "1"}});
  EXPECT_EQ(one.world, 1);
  EXPECT_TRUE(one.master_addr.empty());
}

TEST(Launch, SlurmThenOpenMpiWhenRankIsUnset) {
  const std::map<std::string, std::string> slurm = {
      {"SLURM_PROCID", "5"},         {"SLURM_NTASKS", "8"},         {"SLURM_LOCALID", "1"},
      {"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "2"}, {"MASTER_ADDR", "node1"},
      {"MASTER_PORT", "1234"}};
  Launch l = launch_from(slurm);
  EXPECT_EQ(l.source, "Slurm");
  EXPECT_EQ(l.rank, 5);
  EXPECT_EQ(l.world, 8);
  EXPECT_EQ(l.local_rank, 1);
  l = launch_from({{"OMPI_COMM_WORLD_RANK", "1"},
                   {"OMPI_COMM_WORLD_SIZE", "2"},
                   {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                   {"MASTER_ADDR", "node1"},
                   {"MASTER_PORT", "1234"}});
  EXPECT_EQ(l.source, "Open MPI");
  EXPECT_EQ(l.rank, 1);
  EXPECT_EQ(l.world, 2);
  auto with_rank = slurm;
  with_rank["RANK"] = "1";
  with_rank["WORLD_SIZE"] = "2";
  EXPECT_EQ(launch_from(with_rank).source, "torchrun");
}

TEST(Launch, BadOrMissingVariablesNameThemselves) {
  EXPECT_NE(error_of({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}}).find("MASTER_ADDR: not set"),
            std::string::npos);
  EXPECT_NE(error_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}})
                .find("MASTER_PORT: not set"),
            std::string::npos);
  EXPECT_NE(
      error_of({{"RANK", "3"}, {"WORLD_SIZE", "2"}}).find("RANK: must be an integer in [0, 1]"),
      std::string::npos);
  EXPECT_NE(error_of({{"RANK", "0"}, {"WORLD_SIZE", "two"}}).find("WORLD_SIZE: must be"),
            std::string::npos);
  EXPECT_NE(
      error_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "70000"}})
          .find("MASTER_PORT: must be an integer in [1, 65535]"),
      std::string::npos);
}

}  // namespace
}  // namespace mmdflow
