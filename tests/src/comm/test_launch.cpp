#include <gtest/gtest.h>

#include "src/base/errors.h"
#include "src/comm/launch.h"

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
      {"SLURM_PROCID", "5"},         {"SLURM_NTASKS", "8"},    {"SLURM_LOCALID", "1"},
      {"SLURM_STEP_ID", "0"},        {"SLURM_JOB_ID", "77"},   {"OMPI_COMM_WORLD_RANK", "0"},
      {"OMPI_COMM_WORLD_SIZE", "2"}, {"MASTER_ADDR", "node1"}, {"MASTER_PORT", "1234"}};
  Launch l = launch_from(slurm);
  EXPECT_EQ(l.source, "Slurm");
  EXPECT_EQ(l.rank, 5);
  EXPECT_EQ(l.world, 8);
  EXPECT_EQ(l.local_rank, 1);
  EXPECT_EQ(l.job, "Slurm job 77.0");
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
  EXPECT_NE(error_of({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_STEP_ID", "3"}})
                .find("MASTER_ADDR: not set"),
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

// Issue 19: a batch script's own shell (sbatch --ntasks=2) carries SLURM_PROCID=0 and
// SLURM_NTASKS=2 but is no launch: without an srun step's SLURM_STEP_ID (or with one of Slurm's
// special step numbers) the program is a single process; inside a step it is rank PROCID.
TEST(Launch, SlurmCountsOnlyInsideAnSrunJobStep) {
  const std::map<std::string, std::string> batch = {{"SLURM_PROCID", "0"},
                                                    {"SLURM_NTASKS", "2"},
                                                    {"SLURM_LOCALID", "0"},
                                                    {"SLURM_JOB_ID", "4242"},
                                                    {"SLURM_NODEID", "0"}};
  EXPECT_EQ(launch_from(batch).world, 1);
  for (const char* special : {"4294967291", "4294967292", "4294967294", "4294967295", "batch"}) {
    auto b = batch;
    b["SLURM_STEP_ID"] = special;
    EXPECT_EQ(launch_from(b).world, 1) << special;
  }
  for (const char* name : {"SLURM_STEP_ID", "SLURM_STEPID"}) {
    auto step = batch;
    step[name] = "2";
    step["SLURM_PROCID"] = "1";
    step["SLURM_LOCALID"] = "1";
    step["MASTER_ADDR"] = "node1";
    step["MASTER_PORT"] = "29500";
    const Launch l = launch_from(step);
    EXPECT_EQ(l.source, "Slurm") << name;
    EXPECT_EQ(l.world, 2);
    EXPECT_EQ(l.rank, 1);
    EXPECT_EQ(l.job, "Slurm job 4242.2");
  }
}

// Issue 19: an empty launcher variable is refused, whichever it is (RANK=0 WORLD_SIZE='' ran a
// single process while RANK='' was refused as "not set").
TEST(Launch, EmptyVariablesAreRefusedByName) {
  const std::map<std::string, std::string> full = {{"RANK", "0"},
                                                   {"WORLD_SIZE", "2"},
                                                   {"LOCAL_RANK", "0"},
                                                   {"MASTER_ADDR", "h"},
                                                   {"MASTER_PORT", "29500"}};
  for (const auto& [name, value] : full) {
    auto env = full;
    env[name] = "";
    EXPECT_NE(error_of(env).find(name + ": set but empty"), std::string::npos) << name;
  }
  EXPECT_NE(error_of({{"RANK", "0"}, {"WORLD_SIZE", ""}}).find("WORLD_SIZE: set but empty"),
            std::string::npos);
  EXPECT_NE(error_of({{"RANK", ""}}).find("RANK: set but empty"), std::string::npos);
}

// The launcher's job id, which tells two jobs on one MASTER_PORT apart.
TEST(Launch, JobIdOfEachLauncher) {
  EXPECT_EQ(launch_from({{"RANK", "0"},
                         {"WORLD_SIZE", "2"},
                         {"MASTER_ADDR", "h"},
                         {"MASTER_PORT", "1"},
                         {"TORCHELASTIC_RUN_ID", "abc"}})
                .job,
            "torchrun job abc");
  EXPECT_EQ(
      launch_from({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}})
          .job,
      "");
  EXPECT_EQ(launch_from({{"OMPI_COMM_WORLD_RANK", "0"},
                         {"OMPI_COMM_WORLD_SIZE", "2"},
                         {"PMIX_NAMESPACE", "prterun-n1-123@1"},
                         {"MASTER_ADDR", "h"},
                         {"MASTER_PORT", "1"}})
                .job,
            "Open MPI job prterun-n1-123@1");
}

}  // namespace
}  // namespace mmdflow
