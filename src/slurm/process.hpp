#pragma once
// Running the Slurm client commands (sbatch, squeue, scontrol, sinfo) as child processes, with
// argument vectors (no shell, so no quoting of paths or job names can go wrong).
#include <string>
#include <vector>

namespace nexplain {

struct ProcessResult {
  int exit_code = -1;  // -1: could not be started (not installed)
  std::string out;     // stdout
  std::string err;     // stderr
};

ProcessResult run_program(const std::vector<std::string>& argv);

// Whether a Slurm controller answers (`scontrol ping` reports it UP): the client is installed
// and configured and the controller runs.
bool slurm_reachable();

}  // namespace nexplain
