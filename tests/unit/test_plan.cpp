// `nexplain plan` arithmetic: state sizes against the real CaptureArrays, FLOPs by hand, the
// pipeline split against brute force, and the plan's own consistency.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "capture/capture_arrays.hpp"
#include "core/error.hpp"
#include "model/arch_config.hpp"
#include "plan/pipeline_split.hpp"
#include "plan/plan.hpp"
#include "test_support.hpp"

using namespace nexplain;
using test::errmsg;

namespace {

ArchConfig llama(int layers, int hidden, int heads, int inter) {
  return ArchConfig::from_json({{"model_type", "llama"}, {"hidden_size", hidden}, {"num_hidden_layers", layers},
                                {"num_attention_heads", heads}, {"num_key_value_heads", 8},
                                {"intermediate_size", inter}, {"vocab_size", 128256}, {"rope_theta", 500000.0},
                                {"tie_word_embeddings", false}});
}

double max_stage(const std::vector<double>& cost, const std::vector<int>& first) {
  double worst = 0;
  for (std::size_t s = 0; s < first.size(); ++s) {
    const int end = s + 1 < first.size() ? first[s + 1] : static_cast<int>(cost.size());
    double sum = 0;
    for (int l = first[s]; l < end; ++l) sum += cost[static_cast<std::size_t>(l)];
    worst = std::max(worst, sum);
  }
  return worst;
}

// Every split of L layers into P non-empty contiguous stages.
double brute_force(const std::vector<double>& cost, int P) {
  const int L = static_cast<int>(cost.size());
  double best = std::numeric_limits<double>::infinity();
  std::vector<int> first{0};
  std::function<void(int)> rec = [&](int from) {
    if (static_cast<int>(first.size()) == P) {
      best = std::min(best, max_stage(cost, first));
      return;
    }
    for (int b = from; b < L; ++b) {
      first.push_back(b);
      rec(b + 1);
      first.pop_back();
    }
  };
  rec(1);
  return best;
}

}  // namespace

TEST(Plan, CaptureStateBytesMatchTheArrays) {
  for (const auto& fr : {std::vector<double>{0.5, 0.9, 0.99, 0.999}, std::vector<double>{0.25}}) {
    CaptureParams p;
    p.T = 24;
    p.K = 7;
    p.R = 3;
    p.Q = 2;
    p.quantile_fractions = fr;
    const std::uint32_t N = 11;
    std::vector<double> boundaries(N * p.n_boundaries(), 1.0);
    const auto arrays = CaptureArrays::empty(p, N, boundaries);
    EXPECT_EQ(capture_state_bytes(p, N), arrays.bytes());
  }
  // The defaults: docs/REDUCTION.md's "about 19 KB" per neuron.
  const double per_neuron = static_cast<double>(capture_state_bytes(CaptureParams{}, 1));
  EXPECT_GT(per_neuron, 18000);
  EXPECT_LT(per_neuron, 20000);
}

TEST(Plan, FlopsByHand) {
  // GPT-2 small at T=64: 2 x (768x2304 + 768x768 + 768x3072 + 3072x768) + 4 x 768 x 65 / 2.
  const auto g = ArchConfig::from_json({{"model_type", "gpt2"}, {"n_embd", 768}, {"n_layer", 12}, {"n_head", 12},
                                        {"n_positions", 1024}, {"vocab_size", 50257}});
  EXPECT_DOUBLE_EQ(block_flops_per_token(g, 64), 2.0 * 7077888 + 99840);
  // Llama-3.1-8B: q 4096x4096, k and v 4096x1024 each, o 4096x4096, gate+up 2 x 4096x14336, down.
  const auto l = llama(32, 4096, 32, 14336);
  const double params = 4096.0 * (4096 + 2 * 1024) + 4096.0 * 4096 + 3 * 4096.0 * 14336;
  EXPECT_DOUBLE_EQ(block_flops_per_token(l, 64), 2 * params + 4.0 * 4096 * 65 / 2);
}

TEST(Plan, MeasuredRatesReproduceTheirSource) {
  const auto xl = ArchConfig::from_json({{"model_type", "gpt2"}, {"n_embd", 1600}, {"n_layer", 48}, {"n_head", 25},
                                         {"n_positions", 1024}, {"vocab_size", 50257}});
  const auto r = measured_rates("bf16");
  const double flops = 48 * block_flops_per_token(xl, 64);
  EXPECT_NEAR(r.forward_flops / flops, 110356, 1e-6);  // forward tokens/s of bench/NOTES.md
  const double collect = 1.0 / (flops / r.forward_flops + xl.n_neurons() * r.reduce_seconds);
  EXPECT_NEAR(collect, 76245, 1e-6);
  EXPECT_HAS(r.source, "bench/NOTES.md");
  EXPECT_GT(measured_rates("fp32").reduce_seconds, 0);
  EXPECT_HAS(errmsg([] { measured_rates("int8"); }), "precision 'int8' has no measured rates");
}

TEST(Plan, SplitIsOptimalAndLightFirst) {
  EXPECT_EQ(split_layers({1, 1, 1, 1, 1}, 2), (std::vector<int>{0, 2}));
  EXPECT_EQ(split_layers({1, 1, 1, 1, 1}, 5), (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_EQ(split_layers({5, 5, 1, 1}, 2), (std::vector<int>{0, 1}));
  EXPECT_EQ(split_layers(std::vector<double>(80, 1.0), 3), (std::vector<int>{0, 26, 53}));
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const int L = 1 + static_cast<int>(rng() % 9);
    std::vector<double> cost(static_cast<std::size_t>(L));
    for (auto& c : cost) c = static_cast<double>(rng() % 10);
    const int P = 1 + static_cast<int>(rng() % static_cast<unsigned>(L));
    const auto first = split_layers(cost, P);
    ASSERT_EQ(first.size(), static_cast<std::size_t>(P));
    EXPECT_EQ(first[0], 0);
    for (int s = 1; s < P; ++s) EXPECT_LT(first[static_cast<std::size_t>(s) - 1], first[static_cast<std::size_t>(s)]);
    EXPECT_LT(first.back(), L);
    EXPECT_DOUBLE_EQ(max_stage(cost, first), brute_force(cost, P)) << "trial " << trial;
  }
  EXPECT_HAS(errmsg([] { split_layers({1, 1}, 3); }), "3 stages for 2 layers");
}

TEST(Plan, SmallModelNeedsNoPipeline) {
  PlanInputs in;
  in.arch = llama(32, 4096, 32, 14336);
  in.gpus = 8;
  in.rates = measured_rates("bf16");
  const Plan p = make_plan(in);
  EXPECT_TRUE(p.fits);
  EXPECT_EQ(p.stages, 1);
  EXPECT_EQ(p.replicas, 8);
  ASSERT_EQ(p.stage.size(), 1u);
  EXPECT_EQ(p.stage[0].last_layer, 31);
  // Weights of stage 0 = all blocks + embeddings, 2 bytes each (no LM head).
  EXPECT_DOUBLE_EQ(p.stage[0].weight_bytes, 2.0 * (32 * in.arch.block_params() + in.arch.embedding_params()));
  const double tokens = 256.0 * 64;
  EXPECT_NEAR(p.tokens_per_s, 8 * tokens / p.stage[0].seconds_per_micro_batch, 1e-6 * p.tokens_per_s);
  EXPECT_DOUBLE_EQ(p.records_bytes, 32.0 * static_cast<double>(capture_state_bytes(CaptureParams{}, 14336)));
  EXPECT_NEAR(p.main_seconds, 1e6 * 64 / p.tokens_per_s, 1e-9 * p.main_seconds);
  EXPECT_FALSE(format_plan(in, p).empty());
}

TEST(Plan, LargeModelIsPipelined) {
  PlanInputs in;
  in.arch = llama(80, 8192, 64, 28672);
  in.gpus = 8;
  in.rates = measured_rates("bf16");
  const Plan p = make_plan(in);
  EXPECT_TRUE(p.fits);
  EXPECT_GT(p.stages, 1);
  EXPECT_EQ(p.stages * p.replicas + p.idle_gpus, 8);
  int layers = 0;
  for (std::size_t s = 0; s < p.stage.size(); ++s) {
    layers += p.stage[s].last_layer - p.stage[s].first_layer + 1;
    EXPECT_LE(p.stage[s].total_bytes(), (80 - 3) * 1024.0 * 1024 * 1024);
    if (s > 0) {
      EXPECT_EQ(p.stage[s].first_layer, p.stage[s - 1].last_layer + 1);
    }
  }
  EXPECT_EQ(layers, 80);
  // One GPU cannot hold 141 GB of weights: no split fits.
  in.gpus = 1;
  const Plan one = make_plan(in);
  EXPECT_FALSE(one.fits);
  EXPECT_HAS(format_plan(in, one), "DOES NOT FIT");
}
