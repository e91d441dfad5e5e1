// Planted Llama: the planted neurons are exact detectors through the generic forward (exactly 0
// off their tokens, ~10 on them), the rest of the model stays random, and the files round-trip.
// Planted GPT-NeoX (LayerNorm, parallel residual, partial rotary, plain GELU MLP): the same
// detectors, ~0 off (the LayerNorm'd channel is slightly negative there, as in GPT-2's builder).
// Every builder writes planted.json in one shape.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.hpp"
#include "model/planted.hpp"
#include "model/planted_transformer.hpp"
#include "model/transformer_cpu.hpp"
#include "test_support.hpp"

using namespace nexplain;
using test::errmsg;

namespace {

ArchConfig tiny_llama(int layers = 3, int hidden = 64) {
  return ArchConfig::from_json({{"model_type", "llama"}, {"hidden_size", hidden}, {"num_hidden_layers", layers},
                                {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"intermediate_size", 128},
                                {"vocab_size", 1000}, {"max_position_embeddings", 64},
                                {"tie_word_embeddings", false}});
}

ArchConfig tiny_neox(int layers = 3, int hidden = 64) {
  return ArchConfig::from_json({{"model_type", "gpt_neox"}, {"hidden_size", hidden}, {"num_hidden_layers", layers},
                                {"num_attention_heads", 4}, {"intermediate_size", 128}, {"vocab_size", 1000},
                                {"max_position_embeddings", 64}, {"rotary_pct", 0.25}, {"hidden_act", "gelu"},
                                {"use_parallel_residual", true}, {"tie_word_embeddings", false}});
}

// Tokens for the detector tests: a deterministic spread over the vocabulary with 464, 11 and 13
// planted at regular strides.
std::vector<std::uint32_t> planted_tokens(std::size_t n) {
  std::vector<std::uint32_t> tokens(n);
  for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<std::uint32_t>((i * 7919 + 3) % 1000);
  for (std::size_t i = 5; i < tokens.size(); i += 9) tokens[i] = 464;
  for (std::size_t i = 7; i < tokens.size(); i += 13) tokens[i] = 11;
  for (std::size_t i = 2; i < tokens.size(); i += 17) tokens[i] = 13;
  return tokens;
}

}  // namespace

TEST(PlantedTransformer, NeuronsAreExactDetectors) {
  const auto c = tiny_llama();
  const std::string spec = "L0.N5=token:464;L2.N17=tokens:11,13;L1.N3=token:11";
  const auto neurons = parse_planted_spec(spec, c);
  const auto m = build_planted_transformer(c, neurons, 3, spec);
  TransformerCpu cpu(m.weights, 2);

  const int B = 4, T = 32;
  const auto tokens = planted_tokens(B * T);
  CollectingSink s;
  cpu.forward(tokens.data(), B, T, ForwardOptions{}, s);
  const std::size_t I = 128;
  int on_seen = 0;
  double max_other = 0;
  for (std::size_t r = 0; r < tokens.size(); ++r) {
    const auto tok = tokens[r];
    const float a464 = s.mlp.at(0)[r * I + 5], a11 = s.mlp.at(1)[r * I + 3], a1113 = s.mlp.at(2)[r * I + 17];
    if (tok == 464) {
      EXPECT_NEAR(a464, 10.0, 0.5) << r;  // alone on its token: the target
      ++on_seen;
    } else {
      EXPECT_EQ(a464, 0.0f) << r;  // exactly 0 off its token
    }
    if (tok == 11) {  // two planted features share token 11: both fire, lower but >= 3
      EXPECT_GT(a11, 3.0f);
      EXPECT_GT(a1113, 3.0f);
      EXPECT_LT(a11, 9.0f);
    } else {
      EXPECT_EQ(a11, 0.0f) << r;
    }
    if (tok == 13) {
      EXPECT_NEAR(a1113, 10.0, 0.5);
    } else if (tok != 11) {
      EXPECT_EQ(a1113, 0.0f) << r;
    }
    for (int l = 0; l < 3; ++l)
      for (std::size_t n = 0; n < I; ++n)
        if (!(l == 0 && n == 5) && !(l == 1 && n == 3) && !(l == 2 && n == 17))
          max_other = std::max(max_other, std::fabs(static_cast<double>(s.mlp.at(l)[r * I + n])));
  }
  EXPECT_GT(on_seen, 10);
  EXPECT_LT(max_other, 1.0);  // the unplanted neurons stay small
  EXPECT_GT(max_other, 0.0);  // ... but are not dead

  // planted.json lists them; the files load back to the same model.
  EXPECT_EQ(m.ground_truth.at("neurons").size(), 3u);
  EXPECT_EQ(m.ground_truth.at("neurons")[1].at("tokens"), (std::vector<std::uint32_t>{11, 13}));
  test::TempDir dir;
  write_planted_transformer(dir / "m", m, {.bf16 = false, .max_shard_bytes = 300000});
  const auto back = TransformerWeights::load(dir / "m");
  EXPECT_EQ(back.blocks[2].up.w, m.weights.blocks[2].up.w);
  EXPECT_TRUE(std::filesystem::exists(dir / "m" / "planted.json"));
  EXPECT_TRUE(std::filesystem::exists(dir / "m" / "model.safetensors.index.json"));
}

TEST(PlantedTransformer, NeoxNeuronsAreDetectors) {
  const auto c = tiny_neox();
  ASSERT_EQ(c.residual, ResidualKind::Parallel);
  ASSERT_EQ(c.rope.rotary_dim, 4);  // partial: 4 of head_dim 16
  const std::string spec = "L0.N5=token:464;L2.N17=tokens:11,13;L1.N3=token:11";
  const auto m = build_planted_transformer(c, parse_planted_spec(spec, c), 3, spec);
  // Through the files, as collect reads them (NeoX's fused per-head query_key_value round-trips).
  test::TempDir dir;
  write_planted_transformer(dir / "m", m);
  const auto back = TransformerWeights::load(dir / "m");
  ASSERT_EQ(back.config.model_type, "gpt_neox");
  EXPECT_EQ(back.blocks[2].up.w, m.weights.blocks[2].up.w);
  EXPECT_EQ(back.blocks[1].qkv.w, m.weights.blocks[1].qkv.w);
  TransformerCpu cpu(back, 2);

  const int B = 4, T = 32;
  const auto tokens = planted_tokens(B * T);
  CollectingSink s;
  cpu.forward(tokens.data(), B, T, ForwardOptions{}, s);
  const std::size_t I = 128;
  int on_seen = 0;
  double max_off = 0, max_other = 0;
  for (std::size_t r = 0; r < tokens.size(); ++r) {
    const auto tok = tokens[r];
    const float a464 = s.mlp.at(0)[r * I + 5], a11 = s.mlp.at(1)[r * I + 3], a1113 = s.mlp.at(2)[r * I + 17];
    if (tok == 464) {
      EXPECT_NEAR(a464, 10.0, 0.5) << r;  // alone on its token: the target
      ++on_seen;
    } else {
      max_off = std::max(max_off, std::fabs(static_cast<double>(a464)));
    }
    if (tok == 11) {  // two planted features share token 11: both fire, lower but >= 3
      EXPECT_GT(a11, 3.0f);
      EXPECT_GT(a1113, 3.0f);
      EXPECT_LT(a11, 9.5f);
    } else {
      max_off = std::max(max_off, std::fabs(static_cast<double>(a11)));
    }
    if (tok == 13) {
      EXPECT_NEAR(a1113, 10.0, 0.5);
    } else if (tok != 11) {
      max_off = std::max(max_off, std::fabs(static_cast<double>(a1113)));
    }
    for (int l = 0; l < 3; ++l)
      for (std::size_t n = 0; n < I; ++n)
        if (!(l == 0 && n == 5) && !(l == 1 && n == 3) && !(l == 2 && n == 17))
          max_other = std::max(max_other, std::fabs(static_cast<double>(s.mlp.at(l)[r * I + n])));
  }
  EXPECT_GT(on_seen, 10);
  EXPECT_LT(max_off, 0.01);   // ~0 off its tokens: gelu far below its threshold
  EXPECT_LT(max_other, 1.0);  // the unplanted neurons stay small
  EXPECT_GT(max_other, 0.0);  // ... but are not dead
  std::printf("planted NeoX: largest |activation| off the planted tokens %.2e, of an unplanted neuron %.3f\n", max_off,
              max_other);
}

// planted.json has one shape whatever the builder: the same keys at the top, for each neuron and
// in the construction's shared part.
TEST(PlantedTransformer, GroundTruthHasOneShapeForEveryFamily) {
  const std::string spec = "L0.N5=token:464;L1.N17=tokens:11,13";
  Gpt2Config g;
  g.n_layer = 2;
  g.n_embd = 64;
  g.n_head = 4;
  g.n_inner = 128;
  g.n_positions = 64;
  g.vocab_size = 1000;
  const auto gpt2 = build_planted_model(g, parse_planted_spec(spec, g), 1, spec).ground_truth;
  auto keys = [](const nlohmann::json& j) {
    std::vector<std::string> k;
    for (const auto& [key, v] : j.items()) k.push_back(key);
    return k;
  };
  for (const auto& c : {tiny_llama(2), tiny_neox(2)}) {
    SCOPED_TRACE(c.model_type);
    const auto t = build_planted_transformer(c, parse_planted_spec(spec, c), 1, spec).ground_truth;
    EXPECT_EQ(keys(t), keys(gpt2));
    EXPECT_EQ(t["format"], "nexplain-planted-v1");
    EXPECT_EQ(t["spec"], spec);
    EXPECT_EQ(t["config"]["model_type"], c.model_type);
    ASSERT_EQ(t["neurons"].size(), 2u);
    for (std::size_t i = 0; i < 2; ++i) EXPECT_EQ(t["neurons"][i], gpt2["neurons"][i]);
    for (const char* k : {"bias_dim", "bias_value", "reserved_dims", "channel_value", "target_activation", "note"})
      EXPECT_EQ(t["construction"].contains(k), true) << k;
    EXPECT_EQ(t["construction"]["reserved_dims"], gpt2["construction"]["reserved_dims"]);
  }
}

TEST(PlantedTransformer, Errors) {
  const auto c = tiny_llama();
  EXPECT_HAS(errmsg([&] { parse_planted_spec("L0.N3=position:0-3", c); }), "position features need a learned position table");
  EXPECT_HAS(errmsg([&] { parse_planted_spec("L3.N0=token:1", c); }), "L3.N0");
  // GPT-2 has its own builder; a NeoX without MLP biases has no threshold to plant with.
  const auto gpt2 = ArchConfig::from_json({{"model_type", "gpt2"}, {"n_embd", 64}, {"n_layer", 2}, {"n_head", 4},
                                           {"vocab_size", 100}, {"n_positions", 64}});
  EXPECT_HAS(errmsg([&] { build_planted_transformer(gpt2, {}, 1); }), "planted models of model_type \"gpt2\"");
  auto no_bias = tiny_neox();
  no_bias.mlp_bias = false;
  EXPECT_HAS(errmsg([&] { build_planted_transformer(no_bias, {}, 1); }), "no MLP bias) are not supported here");
  // Too many features on one token for the width, or too many features for the width.
  const auto narrow = tiny_llama(1, 16);
  std::string spec;
  for (int n = 0; n < 6; ++n) spec += fmt::format("{}L0.N{}=tokens:5,{}", n ? ";" : "", n, 100 + n);
  EXPECT_HAS(errmsg([&] { build_planted_transformer(narrow, parse_planted_spec(spec, narrow), 1); }),
             "with hidden_size=16 and up to 6 features on the same token, a planted neuron would reach only");
  spec.clear();
  for (int n = 0; n < 8; ++n) spec += fmt::format("{}L0.N{}=token:{}", n ? ";" : "", n, 100 + n);
  EXPECT_HAS(errmsg([&] { build_planted_transformer(narrow, parse_planted_spec(spec, narrow), 1); }),
             "8 distinct features need 9 reserved residual dims, but hidden_size=16 allows at most 7");
}
