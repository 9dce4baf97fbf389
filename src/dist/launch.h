// How this process was launched: its rank among WORLD_SIZE processes and where they meet, read
// from the environment as torchrun sets it, else as Slurm's srun or Open MPI's mpirun set it.
#pragma once
#include <cstdint>
#include <map>
#include <string>

namespace mmdflow {

struct Launch {
  int rank = 0;
  int world = 1;       // 1: a single process, no collective library at all
  int local_rank = 0;  // rank on this machine (picks cuda:LOCAL_RANK)
  std::string master_addr;
  int master_port = 0;
  std::string source;  // "torchrun", "Slurm" or "Open MPI": whose variables were read
};

// From RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT; when RANK is unset, from
// SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, then OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK (with
// MASTER_ADDR and MASTER_PORT still required). Throws ConfigError naming the variable that is
// missing or wrong. `env` maps names to values (tests); launch_from_environment() reads environ.
Launch launch_from(const std::map<std::string, std::string>& env);
Launch launch_from_environment();

}  // namespace mmdflow
