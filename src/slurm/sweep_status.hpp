#pragma once
// `nexplain status SWEEP_DIR`: where a sweep stands, from its own files (outputs, collect
// checkpoints, the explain journal, the stage logs) and, when a Slurm controller answers, from
// scontrol: per stage done/total, the latest progress line (rate, ETA), failures, cost so far,
// and the job ids of the last submission with their states.
#include <filesystem>
#include <string>

namespace nexplain {

// sweep_file "" = the copy `nexplain submit` left in <dir>/slurm/, if any.
std::string sweep_status(const std::filesystem::path& sweep_dir, const std::filesystem::path& sweep_file);

}  // namespace nexplain
