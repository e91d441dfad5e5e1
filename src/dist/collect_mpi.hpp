#pragma once
// `collect` over MPI ranks: a grid of P pipeline stages (contiguous layer ranges) x D
// data-parallel groups (RankGrid). Groups share the excerpt stream in rounds of whole moment
// blocks; inside a group, hidden states flow stage to stage in micro-batches (StageLink); every
// stage reduces only its own layers. States merge per stage on the stage roots, which write one
// records file in turn; periodic and signal-triggered checkpoints resume on any grid. docs/MPI.md.
#include <cstdint>
#include <filesystem>
#include <vector>

#include <mpi.h>

#include "collect/collector.hpp"

namespace nexplain {

struct DistCollectOptions {
  int pipeline_stages = 1;              // P; the rank count / P data-parallel groups
  std::uint64_t checkpoint_every = 0;   // excerpts between periodic checkpoints (0 = none)
  std::filesystem::path checkpoint;     // checkpoint file; resumed from when it exists
};

// What one rank did in the main pass (bench/scaling, the closing log lines).
struct RankTiming {
  int rank = 0, stage = 0, group = 0;
  int blocks = 0;            // transformer blocks this rank runs
  double main_s = 0.0;       // wall time of the main pass
  double comm_s = 0.0;       // of which blocked in MPI (hidden states, gathers, agreement)
  std::uint64_t tokens = 0;  // tokens this rank ran through its blocks in the main pass
};

struct DistCollectSummary {
  CollectSummary collect;
  bool checkpointed = false;  // stopped by SIGUSR1/SIGTERM after writing a checkpoint (exit 75)
  std::uint64_t resumed_from = 0;
  int stages = 1, groups = 1;
  RankTiming self;
  std::vector<RankTiming> ranks;  // every rank's, on grid rank 0 only
};

// Collective over `comm`: every rank calls it with the same options.
DistCollectSummary run_collect_mpi(const CollectOptions& opts, const DistCollectOptions& dist, MPI_Comm comm);

}  // namespace nexplain
