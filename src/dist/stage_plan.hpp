#pragma once
// How `collect --pipeline-stages P` cuts the model into P contiguous block ranges. Stages run
// one after the other on every micro-batch, so the slowest stage sets the pipeline's rate: the
// split minimises the largest stage cost. Costs come from a per-block estimate (forward FLOPs,
// plus the reduction for captured layers, plus the embedding on stage 0), so ranges stay
// balanced when only some layers are captured; for a full sweep of one model every block costs
// the same and the split is by layer count.
#include <cstdint>
#include <string>
#include <vector>

#include "model/arch_config.hpp"

namespace nexplain {

struct StageRange {
  int block_begin = 0;  // blocks [block_begin, block_end) run on this stage
  int block_end = 0;
  double cost = 0.0;    // estimated work per token (FLOP-equivalents)
};

// Estimated cost per token of blocks 0..selected.back() (the blocks collect runs): the block's
// forward FLOPs at T tokens per excerpt, plus kReduceCostPerActivation x intermediate when the block
// is a selected (captured) layer. `selected`: ascending, non-empty.
std::vector<double> block_costs(const ArchConfig& cfg, std::uint32_t T, const std::vector<int>& selected);
// Per token: the embedding lookup that stage 0 runs before its blocks.
double embedding_cost(const ArchConfig& cfg);

// The reduction of one activation (top-K/random/quantile tests, histogram, moments) measured
// against sgemm FLOPs on one CPU core (bench/capture_update vs the forward); an estimate only
// used to weigh captured against uncaptured blocks.
inline constexpr double kReduceCostPerActivation = 64.0;

// Contiguous split of the blocks into `stages` non-empty ranges minimising the largest stage
// cost (`first_extra` is added to stage 0): `split_layers` (src/plan, shared with `nexplain
// plan`), which among the optimal splits fills the later stages first, so stage 0 is the
// lightest. Deterministic: every rank computes the same plan. Error naming --pipeline-stages
// when stages < 1 or there are fewer blocks than stages.
std::vector<StageRange> split_stages(const std::vector<double>& block_costs, double first_extra, int stages);

// "blocks 0-5" for logs.
std::string describe(const StageRange& r);

}  // namespace nexplain
