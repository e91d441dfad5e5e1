#pragma once
// `collect` over MPI ranks: data-parallel groups share the excerpt stream in rounds of whole
// moment blocks, merge their reduction states on rank 0 and write one records file, with
// periodic and signal-triggered checkpoints that any rank count can resume. docs/MPI.md.
#include <cstdint>
#include <filesystem>

#include <mpi.h>

#include "collect/collector.hpp"

namespace nexplain {

struct DistCollectOptions {
  int pipeline_stages = 1;              // P; only 1 is implemented (see docs/MPI.md)
  std::uint64_t checkpoint_every = 0;   // excerpts between periodic checkpoints (0 = none)
  std::filesystem::path checkpoint;     // checkpoint file; resumed from when it exists
};

struct DistCollectSummary {
  CollectSummary collect;
  bool checkpointed = false;  // stopped by SIGUSR1/SIGTERM after writing a checkpoint (exit 75)
  std::uint64_t resumed_from = 0;
};

// Collective over `comm`: every rank calls it with the same options.
DistCollectSummary run_collect_mpi(const CollectOptions& opts, const DistCollectOptions& dist, MPI_Comm comm);

}  // namespace nexplain
