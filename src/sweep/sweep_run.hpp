#pragma once
// `nexplain sweep`: tokenize -> collect -> explain/simulate/score for one sweep description,
// without any scheduler. Every stage writes its output atomically, so a stage whose output
// exists is complete and is skipped on a rerun; the explain stage resumes from its journal. An
// interrupted sweep is resumed by running the same command again.
//
// A stage can also run alone (`--stage`): that is what the Slurm jobs of `nexplain submit` run,
// one job per stage, so the scheduler only decides where and when, never what is computed.
#include <filesystem>
#include <string>

#include "dist/mpi_session.hpp"
#include "sweep/sweep_config.hpp"

namespace nexplain {

enum class SweepStage { all, tokenize, collect, explain };

// "all" | "tokenize" | "collect" | "explain" (Error naming the text otherwise).
SweepStage parse_sweep_stage(const std::string& text);

struct SweepRunOptions {
  std::filesystem::path tokenizer_dir;  // resolved by the caller
  std::string command_line;
  SweepStage stage = SweepStage::all;
  // Collect stage only: this layer range, into <out>/parts/records.L<range>.h5 (a job array's
  // task); "" = the [collect] layers into <out>/records.h5.
  std::string collect_layers;
};

struct SweepOutcome {
  std::string summary;        // printed summary (rank 0; empty elsewhere)
  bool checkpointed = false;  // a stop signal arrived: state saved, rerun to resume (exit 75)
};

// Collective over the session's world; every stage runs on a rank-role communicator
// (MpiSession::split_roles). Model and tokenize run on world rank 0.
// Stage all: one rank collects with the plain collect (any backend, CUDA included); several
// ranks run the checkpointed MPI collect on the collect role (the first N - [mpi] explain_ranks
// world ranks; the others wait for the records), then every rank joins the explain pool.
// Stage collect is the checkpointed MPI collect on every rank. Checkpointed collects
// (SIGUSR1/SIGTERM) return outcome.checkpointed on every rank. Stage explain first merges
// per-layer-range parts into records.h5 when there are parts and no records.h5 yet.
SweepOutcome run_sweep(const SweepConfig& config, const SweepRunOptions& options, const MpiSession& mpi);

}  // namespace nexplain
