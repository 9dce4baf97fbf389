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
  std::string job;     // the launcher's id of this job, when it gives one ("" otherwise)
};

// From RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT (job: TORCHELASTIC_RUN_ID); when
// RANK is unset, from an srun job step's SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID (job:
// SLURM_JOB_ID.SLURM_STEP_ID), then OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK (job:
// PMIX_NAMESPACE, else OMPI_MCA_ess_base_jobid), with MASTER_ADDR and MASTER_PORT still required.
//
// Slurm's variables count only inside a job step that srun started: one that carries
// SLURM_STEP_ID (or the older SLURM_STEPID) with an ordinary step number. A batch script's own
// shell (sbatch --ntasks=N) carries SLURM_PROCID=0 and SLURM_NTASKS=N too, but no SLURM_STEP_ID
// (or, in some versions, one of Slurm's special step numbers, 4294967290 and above: the batch,
// extern and interactive steps): a program started there is a single process.
//
// A variable that is set but empty is refused, as PyTorch refuses it (a launcher's bug).
// Throws ConfigError naming the variable that is missing, empty or wrong. `env` maps names to
// values (tests); launch_from_environment() reads environ.
Launch launch_from(const std::map<std::string, std::string>& env);
Launch launch_from_environment();

}  // namespace mmdflow
