#pragma once
// `nexplain sweep`: tokenize -> collect -> explain/simulate/score for one sweep description,
// without any scheduler. Every stage writes its output atomically, so a stage whose output
// exists is complete and is skipped on a rerun; the explain stage resumes from its journal. An
// interrupted sweep is resumed by running the same command again.
#include <filesystem>
#include <string>

#include <mpi.h>

#include "sweep/sweep_config.hpp"

namespace nexplain {

struct SweepRunOptions {
  std::filesystem::path tokenizer_dir;  // resolved by the caller
  std::string command_line;
};

// Collective over `comm` (the explain stage uses every rank; the others run on rank 0).
// Returns the printed summary (rank 0; empty elsewhere).
std::string run_sweep(const SweepConfig& config, const SweepRunOptions& options, MPI_Comm comm);

}  // namespace nexplain
