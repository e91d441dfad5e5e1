// The CPU forward against HuggingFace transformers on a random tiny GPT-2 (../shared fixture):
// every MLP activation, hidden state and logit must agree to 1e-4 of the tensor's scale.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.hpp"
#include "io/safetensors.hpp"
#include "model/gpt2_cpu.hpp"
#include "test_support.hpp"

using namespace nexplain;

namespace {

struct Diff {
  double max_abs_diff = 0, max_ref = 0;
  double ratio() const { return max_ref > 0 ? max_abs_diff / max_ref : max_abs_diff; }
};

Diff compare(const std::vector<float>& ours, const std::vector<float>& ref) {
  Diff d;
  EXPECT_EQ(ours.size(), ref.size());
  for (std::size_t i = 0; i < std::min(ours.size(), ref.size()); ++i) {
    d.max_abs_diff = std::max(d.max_abs_diff, std::fabs(static_cast<double>(ours[i]) - ref[i]));
    d.max_ref = std::max(d.max_ref, std::fabs(static_cast<double>(ref[i])));
  }
  return d;
}

using test::errmsg;

}  // namespace

TEST(Gpt2Cpu, MatchesHuggingFace) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  const auto dir = shared / "fixtures" / "hf-gpt2-tiny";
  const auto w = Gpt2Weights::load(dir);
  const auto expected = SafetensorsFile::open(dir / "expected.safetensors");
  const auto& ids_info = expected.info("input_ids");
  ASSERT_EQ(ids_info.shape.size(), 2u);
  const int B = static_cast<int>(ids_info.shape[0]), T = static_cast<int>(ids_info.shape[1]);
  std::vector<std::uint32_t> tokens;
  for (auto v : expected.to_int64("input_ids")) tokens.push_back(static_cast<std::uint32_t>(v));

  Gpt2Cpu cpu(w, 2);
  CollectingSink sink;
  ForwardOptions opts;
  opts.hidden_states = true;
  opts.logits = true;
  cpu.forward(tokens.data(), B, T, opts, sink);

  std::printf("parity vs HF transformers (B=%d T=%d): tensor, max|ours-HF|, max|HF|, ratio (limit 1e-4)\n", B, T);
  int checked = 0;
  auto check = [&](const std::string& name, const std::vector<float>& ours) {
    const Diff d = compare(ours, expected.to_float(name));
    std::printf("  %-18s %.3e  %.3e  %.3e\n", name.c_str(), d.max_abs_diff, d.max_ref, d.ratio());
    EXPECT_LE(d.max_abs_diff, 1e-4 * d.max_ref) << name;
    ++checked;
  };
  for (int l = 0; l < w.config.n_layer; ++l) check("mlp_act." + std::to_string(l), sink.mlp.at(l));
  for (int i = 0; i <= w.config.n_layer; ++i) check("hidden_states." + std::to_string(i), sink.hidden.at(i));
  check("logits", sink.logit);
  std::fflush(stdout);
  EXPECT_EQ(checked, 2 * w.config.n_layer + 2);
}

TEST(Gpt2Cpu, LayerSubsetGivesTheSameActivations) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  const auto dir = shared / "fixtures" / "hf-gpt2-tiny";
  const auto w = Gpt2Weights::load(dir);
  const int B = 3, T = 20;
  std::vector<std::uint32_t> tokens(B * T);
  for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<std::uint32_t>((i * 37 + 11) % 1000);

  Gpt2Cpu cpu(w, 2);
  CollectingSink all, only1, only0;
  cpu.forward(tokens.data(), B, T, ForwardOptions{}, all);
  ASSERT_EQ(all.mlp.size(), 2u);
  EXPECT_TRUE(all.hidden.empty());  // nothing unrequested
  EXPECT_TRUE(all.logit.empty());
  ForwardOptions o1;
  o1.first_layer = 1;
  cpu.forward(tokens.data(), B, T, o1, only1);
  ASSERT_EQ(only1.mlp.size(), 1u);
  EXPECT_EQ(only1.mlp.at(1), all.mlp.at(1));
  ForwardOptions o0;
  o0.last_layer = 0;
  cpu.forward(tokens.data(), B, T, o0, only0);
  ASSERT_EQ(only0.mlp.size(), 1u);
  EXPECT_EQ(only0.mlp.at(0), all.mlp.at(0));

  // Pipeline stages: a stage that loads only block 1 and starts from block 0's output.
  Gpt2LoadOptions lo;
  lo.first_layer = 1;
  lo.embeddings = false;
  lo.final_norm = false;
  const auto w1 = Gpt2Weights::load(dir, lo);
  EXPECT_FALSE(w1.has_block(0));
  EXPECT_TRUE(w1.has_block(1));
  std::vector<float> h(static_cast<std::size_t>(B) * T * w.config.n_embd);
  CollectingSink s0, s1;
  cpu.embed(tokens.data(), B, T, h.data());
  cpu.run_blocks(h.data(), B, T, 0, 1, 0, 0, s0);
  Gpt2Cpu stage(w1, 1);
  stage.run_blocks(h.data(), B, T, 1, 2, 1, 1, s1);
  EXPECT_EQ(s0.mlp.at(0), all.mlp.at(0));
  EXPECT_EQ(s1.mlp.at(1), all.mlp.at(1));
  EXPECT_NE(errmsg([&] { stage.forward(tokens.data(), B, T, ForwardOptions{}, s1); }).find("block 0 was not loaded"),
            std::string::npos);

  // Batch size and thread count do not change a row's values (beyond GEMM blocking order).
  Gpt2Cpu one(w, 1);
  CollectingSink row;
  ForwardOptions o;
  one.forward(tokens.data() + T, 1, T, o, row);  // batch row 1 alone
  const auto& a = all.mlp.at(1);
  const auto& r = row.mlp.at(1);
  const std::size_t n = r.size();
  for (std::size_t i = 0; i < n; ++i) ASSERT_NEAR(r[i], a[n + i], 1e-5f) << i;
}

TEST(Gpt2Cpu, BadInputsAreClearErrors) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  const auto w = Gpt2Weights::load(shared / "fixtures" / "hf-gpt2-tiny");
  Gpt2Cpu cpu(w, 1);
  CollectingSink sink;
  std::vector<std::uint32_t> tokens(2 * 8, 5);
  tokens[8 + 3] = 1000;  // vocab_size is 1000
  auto msg = errmsg([&] { cpu.forward(tokens.data(), 2, 8, ForwardOptions{}, sink); });
  EXPECT_NE(msg.find("token id 1000 at batch row 1, position 3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("vocab_size 1000"), std::string::npos) << msg;

  std::vector<std::uint32_t> longer(129, 1);
  msg = errmsg([&] { cpu.forward(longer.data(), 1, 129, ForwardOptions{}, sink); });
  EXPECT_NE(msg.find("T=129 exceeds the model's n_positions=128"), std::string::npos) << msg;

  ForwardOptions bad;
  bad.first_layer = 1;
  bad.last_layer = 2;
  msg = errmsg([&] { cpu.forward(tokens.data(), 1, 8, bad, sink); });
  EXPECT_NE(msg.find("outside the model's 2 layers"), std::string::npos) << msg;
  // T = n_positions exactly is fine.
  std::vector<std::uint32_t> full(128, 1);
  EXPECT_NO_THROW(cpu.forward(full.data(), 1, 128, ForwardOptions{}, sink));
}
