#pragma once
// The [slurm] section of a sweep file: how `nexplain submit` turns the sweep into jobs. Keys at
// [slurm] level are defaults for every stage; [slurm.tokenize], [slurm.collect] and
// [slurm.explain] override them per stage. docs/SLURM.md lists every key.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace nexplain {

struct SlurmStageConfig {
  std::string partition, account, qos, time, mem;  // "" = the cluster's default
  int nodes = 1;
  int ntasks = 1;            // MPI ranks (collect: one per GPU; explain: coordinator + workers)
  int ntasks_per_node = 0;   // 0 = not set
  int cpus_per_task = 0;     // 0 = not set
  int gpus_per_task = 0;     // 0 = no GPUs
  bool overcommit = false;   // more ranks than CPUs (small test clusters)
  std::vector<std::string> extra;  // further "#SBATCH" lines, verbatim ("--constraint=a100")
  // Collect only: a job array, one task per group of this many layers (0 = one job).
  int array_layers = 0;
  int array_parallel = 0;    // at most this many array tasks at once ("%N"; 0 = no limit)
  std::int64_t time_s = 0;   // `time` in seconds (0 when not set)
};

struct SlurmConfig {
  std::string launcher = "auto";  // srun | mpirun | auto (srun --mpi=pmix when offered, else mpirun)
  int signal_margin = 300;        // seconds before the time limit that USR1 asks for a checkpoint
  std::vector<std::string> gpu_partitions;  // partitions that have GPUs
  std::map<std::string, std::string> env;   // exported in every job script (never secrets)
  std::string job_name;           // "" = nexplain-<sweep name>
  SlurmStageConfig tokenize, collect, explain;

  // Parses and validates `slurm` (the [slurm] table or null). Errors name `source` and the key:
  // unknown keys, a time limit not longer than signal_margin, GPUs on a partition not in
  // gpu_partitions, secret-looking env names, bad values.
  static SlurmConfig from_json(const nlohmann::json& slurm, const std::string& source);

  const SlurmStageConfig& stage(const std::string& name) const;
};

}  // namespace nexplain
