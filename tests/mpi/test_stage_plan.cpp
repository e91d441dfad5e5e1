// The pipeline stage plan: contiguous block ranges that minimise the slowest stage, by count
// for uniform blocks, by cost when only some layers are captured. No mpirun needed.
#include <numeric>

#include <gtest/gtest.h>

#include "dist/stage_plan.hpp"
#include "test_support.hpp"

using namespace nexplain;

namespace {

std::vector<int> sizes(const std::vector<StageRange>& plan) {
  std::vector<int> out;
  for (const auto& r : plan) out.push_back(r.block_end - r.block_begin);
  return out;
}

void expect_contiguous(const std::vector<StageRange>& plan, int n_blocks) {
  ASSERT_FALSE(plan.empty());
  EXPECT_EQ(plan.front().block_begin, 0);
  EXPECT_EQ(plan.back().block_end, n_blocks);
  for (std::size_t s = 0; s < plan.size(); ++s) {
    EXPECT_LT(plan[s].block_begin, plan[s].block_end) << "stage " << s << " is empty";
    if (s > 0) {
      EXPECT_EQ(plan[s].block_begin, plan[s - 1].block_end);
    }
  }
}

double max_cost(const std::vector<StageRange>& plan) {
  double m = 0;
  for (const auto& r : plan) m = std::max(m, r.cost);
  return m;
}

// Every contiguous split into `stages` non-empty ranges, the best largest cost (brute force).
double brute_best(const std::vector<double>& c, double extra, int stages, int begin = 0) {
  const int n = static_cast<int>(c.size());
  auto cost = [&](int b, int e) {
    double s = b == 0 ? extra : 0.0;
    for (int i = b; i < e; ++i) s += c[static_cast<std::size_t>(i)];
    return s;
  };
  if (stages == 1) return cost(begin, n);
  double best = 1e300;
  for (int e = begin + 1; e <= n - stages + 1; ++e)
    best = std::min(best, std::max(cost(begin, e), brute_best(c, extra, stages - 1, e)));
  return best;
}

}  // namespace

TEST(StagePlan, UniformBlocksSplitByCount) {
  const std::vector<double> twelve(12, 1.0);
  auto plan = split_stages(twelve, 0.001, 4);
  expect_contiguous(plan, 12);
  EXPECT_EQ(sizes(plan), (std::vector<int>{3, 3, 3, 3}));
  plan = split_stages(std::vector<double>(48, 1.0), 0.001, 8);  // GPT-2 XL on 8 stages
  EXPECT_EQ(sizes(plan), (std::vector<int>(8, 6)));
  plan = split_stages(twelve, 0.001, 1);
  EXPECT_EQ(sizes(plan), (std::vector<int>{12}));
  plan = split_stages(twelve, 0.001, 12);
  EXPECT_EQ(sizes(plan), (std::vector<int>(12, 1)));
}

TEST(StagePlan, EmbeddingCostMakesStageZeroLighter) {
  // 4 equal blocks on 3 stages: a stage must take two; stage 0 also embeds, so it is not the one.
  auto plan = split_stages(std::vector<double>(4, 1.0), 0.01, 3);
  expect_contiguous(plan, 4);
  EXPECT_EQ(sizes(plan), (std::vector<int>{1, 1, 2}));
  EXPECT_DOUBLE_EQ(plan[0].cost, 1.01);
  EXPECT_DOUBLE_EQ(plan[2].cost, 2.0);
  // 5 blocks on 2 stages: the odd block goes to the stage without the embedding.
  plan = split_stages(std::vector<double>(5, 1.0), 0.01, 2);
  EXPECT_EQ(sizes(plan), (std::vector<int>{2, 3}));
}

TEST(StagePlan, UnevenCostsAreBalancedOptimally) {
  const std::vector<std::vector<double>> cases{
      {1, 1, 1, 5}, {5, 1, 1, 1, 1, 1}, {1, 2, 3, 4, 5, 6, 7, 8}, {3, 1, 4, 1, 5, 9, 2, 6, 5, 3}, {2, 2, 9, 2, 2}};
  for (const auto& c : cases) {
    for (int P = 1; P <= static_cast<int>(c.size()); ++P) {
      const auto plan = split_stages(c, 0.5, P);
      expect_contiguous(plan, static_cast<int>(c.size()));
      ASSERT_EQ(plan.size(), static_cast<std::size_t>(P));
      EXPECT_DOUBLE_EQ(max_cost(plan), brute_best(c, 0.5, P)) << "P=" << P << " blocks=" << c.size();
    }
  }
  EXPECT_EQ(sizes(split_stages({1, 1, 1, 5}, 0.5, 2)), (std::vector<int>{3, 1}));
}

TEST(StagePlan, CapturedLayersCostMoreThanSkippedOnes) {
  ArchConfig cfg;
  cfg.model_type = "gpt2";
  cfg.n_layer = 12;
  cfg.hidden = 64;
  cfg.intermediate = 256;
  cfg.n_head = cfg.n_kv_head = 4;
  cfg.head_dim = 16;
  const auto c = block_costs(cfg, 16, {2, 5});
  ASSERT_EQ(c.size(), 6u) << "blocks after the last selected layer are not run";
  EXPECT_GT(c[2], c[1]);
  EXPECT_DOUBLE_EQ(c[2] - c[1], kReduceCostPerActivation * 256);
  EXPECT_DOUBLE_EQ(c[0], c[1]);
  EXPECT_GT(embedding_cost(cfg), 0.0);
  EXPECT_LT(embedding_cost(cfg), c[0] / 100) << "the embedding is a lookup, far cheaper than a block";
}

TEST(StagePlan, MoreStagesThanBlocksIsAnError) {
  EXPECT_HAS(test::errmsg([] { split_stages(std::vector<double>(4, 1.0), 0.0, 5); }),
             "--pipeline-stages 5: collect runs only 4 transformer blocks (layers 0-3)");
  EXPECT_HAS(test::errmsg([] { split_stages(std::vector<double>(4, 1.0), 0.0, 0); }), "must be at least 1");
}

TEST(StagePlan, GatedMlpCostsItsExtraGemm) {
  // The same sizes as a plain MLP, but Llama's gate: one more C x I GEMM per token and block.
  ArchConfig plain;
  plain.model_type = "gpt2";
  plain.n_layer = 4;
  plain.hidden = 64;
  plain.intermediate = 128;
  plain.n_head = plain.n_kv_head = 4;
  plain.head_dim = 16;
  ArchConfig gated = plain;
  gated.model_type = "llama";
  gated.mlp = MlpKind::Gated;
  const auto a = block_costs(plain, 16, {3});
  const auto b = block_costs(gated, 16, {3});
  ASSERT_EQ(a.size(), b.size());
  EXPECT_DOUBLE_EQ(b[0] - a[0], 2.0 * 64 * 128);
  // Grouped-query attention: fewer k/v heads make the qkv GEMM cheaper.
  ArchConfig gqa = gated;
  gqa.n_kv_head = 2;
  EXPECT_DOUBLE_EQ(b[0] - block_costs(gqa, 16, {3})[0], 2.0 * 64 * (2 * 2 * 16));
}
