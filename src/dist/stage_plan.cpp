#include "dist/stage_plan.hpp"

#include <fmt/format.h>

#include "core/error.hpp"
#include "plan/pipeline_split.hpp"

namespace nexplain {

std::vector<double> block_costs(const ArchConfig& cfg, std::uint32_t T, const std::vector<int>& selected) {
  if (selected.empty()) fail("stage plan: no layers selected");
  const double C = cfg.hidden, I = cfg.intermediate, Q = cfg.q_dim(), QKV = cfg.qkv_dim();
  const double up = cfg.mlp == MlpKind::Gated ? 2.0 * I : I;  // a gated MLP's up GEMM makes gate and up
  // Multiply-adds x 2 per token: qkv C x QKV, attention output Q x C, MLP C x up + I x C; causal
  // attention scores and weighted sum over (T+1)/2 positions on average, 2Q each (GPT-2: 3C^2,
  // C^2, 2CI and 2C(T+1), as before this took other families).
  const double forward = 2.0 * (C * QKV + Q * C + C * up + I * C) + 2.0 * Q * (static_cast<double>(T) + 1.0);
  std::vector<double> out(static_cast<std::size_t>(selected.back()) + 1, forward);
  for (int l : selected) out[static_cast<std::size_t>(l)] += kReduceCostPerActivation * I;
  return out;
}

double embedding_cost(const ArchConfig& cfg) { return static_cast<double>(cfg.hidden); }

std::vector<StageRange> split_stages(const std::vector<double>& costs, double first_extra, int stages) {
  const int n = static_cast<int>(costs.size());
  // The user-facing checks, in terms of the option; the partition itself is `nexplain plan`'s,
  // so that the plan and the collect choose the same split.
  if (stages < 1) fail("--pipeline-stages {}: must be at least 1", stages);
  if (stages > n)
    fail("--pipeline-stages {}: collect runs only {} transformer blocks (layers 0-{}), and every stage needs at "
         "least one; use at most {} stages",
         stages, n, n - 1, n);
  std::vector<double> c = costs;
  c.front() += first_extra;
  const std::vector<int> first = split_layers(c, stages);
  std::vector<StageRange> out;
  for (int s = 0; s < stages; ++s) {
    StageRange r;
    r.block_begin = first[static_cast<std::size_t>(s)];
    r.block_end = s + 1 < stages ? first[static_cast<std::size_t>(s) + 1] : n;
    for (int b = r.block_begin; b < r.block_end; ++b) r.cost += c[static_cast<std::size_t>(b)];
    out.push_back(r);
  }
  return out;
}

std::string describe(const StageRange& r) {
  return r.block_end - r.block_begin == 1 ? fmt::format("block {}", r.block_begin)
                                          : fmt::format("blocks {}-{}", r.block_begin, r.block_end - 1);
}

}  // namespace nexplain
