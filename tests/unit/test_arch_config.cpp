// ArchConfig: what each family's config.json decodes to, the RoPE variants, parameter counts,
// and errors that name the file and the key.
#include <cmath>
#include <string>

#include <gtest/gtest.h>

#include "core/error.hpp"
#include "model/arch_config.hpp"
#include "model/rope.hpp"
#include "test_support.hpp"

using namespace nexplain;
using test::errmsg;

namespace {

nlohmann::json llama_json() {
  return {{"model_type", "llama"},     {"hidden_size", 64},          {"num_hidden_layers", 2},
          {"num_attention_heads", 4},  {"num_key_value_heads", 2},   {"intermediate_size", 176},
          {"vocab_size", 1000},        {"max_position_embeddings", 128}, {"rms_norm_eps", 1e-6},
          {"hidden_act", "silu"},      {"rope_theta", 10000.0},      {"tie_word_embeddings", false}};
}

// Llama-3.1-8B's config.json as Meta/HF publish it (transformers 4 spelling).
nlohmann::json llama31_8b_json() {
  return nlohmann::json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "attention_bias": false, "hidden_act": "silu",
    "hidden_size": 4096, "intermediate_size": 14336, "max_position_embeddings": 131072,
    "mlp_bias": false, "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "tie_word_embeddings": false, "torch_dtype": "bfloat16", "vocab_size": 128256})");
}

}  // namespace

TEST(ArchConfig, DecodesEachFamily) {
  const auto l = ArchConfig::from_json(llama_json());
  EXPECT_EQ(l.norm, NormKind::RMSNorm);
  EXPECT_EQ(l.position, PositionKind::Rotary);
  EXPECT_EQ(l.mlp, MlpKind::Gated);
  EXPECT_EQ(l.act, ActKind::Silu);
  EXPECT_EQ(l.residual, ResidualKind::Sequential);
  EXPECT_EQ(l.head_dim, 16);
  EXPECT_EQ(l.n_kv_head, 2);
  EXPECT_EQ(l.qkv_dim(), 64 + 2 * 32);
  EXPECT_EQ(l.rope.rotary_dim, 16);
  EXPECT_FALSE(l.qkv_bias);

  nlohmann::json q = llama_json();
  q["model_type"] = "qwen2";
  q["tie_word_embeddings"] = true;
  const auto qc = ArchConfig::from_json(q);
  EXPECT_TRUE(qc.qkv_bias);
  EXPECT_FALSE(qc.o_bias);
  EXPECT_TRUE(qc.tied_embeddings);

  // GPT-NeoX, transformers 4 spelling: rotary_pct, rotary_emb_base, defaults for the rest.
  const nlohmann::json n = {{"model_type", "gpt_neox"}, {"hidden_size", 512}, {"num_hidden_layers", 6},
                            {"num_attention_heads", 8},  {"intermediate_size", 2048}, {"vocab_size", 50304},
                            {"rotary_pct", 0.25},        {"rotary_emb_base", 10000}, {"torch_dtype", "float16"}};
  const auto nc = ArchConfig::from_json(n);
  EXPECT_EQ(nc.norm, NormKind::LayerNorm);
  EXPECT_EQ(nc.act, ActKind::GeluErf);
  EXPECT_EQ(nc.residual, ResidualKind::Parallel);
  EXPECT_EQ(nc.rope.rotary_dim, 16);  // int(64 * 0.25)
  EXPECT_TRUE(nc.qkv_bias && nc.o_bias && nc.mlp_bias);
  EXPECT_EQ(nc.dtype, "float16");
  nlohmann::json n2 = n;
  n2["use_parallel_residual"] = false;
  EXPECT_EQ(ArchConfig::from_json(n2).residual, ResidualKind::Sequential);

  const nlohmann::json g = {{"model_type", "gpt2"}, {"n_embd", 768}, {"n_layer", 12}, {"n_head", 12},
                            {"n_positions", 1024},  {"vocab_size", 50257}};
  const auto gc = ArchConfig::from_json(g);
  EXPECT_EQ(gc.position, PositionKind::Learned);
  EXPECT_EQ(gc.intermediate, 3072);
  EXPECT_TRUE(gc.tied_embeddings);
  // GPT-2 small has 124,439,808 parameters (HF's num_parameters()).
  EXPECT_EQ(gc.total_params(), 124439808);
}

TEST(ArchConfig, Llama31ParameterCount) {
  const auto c = ArchConfig::from_json(llama31_8b_json());
  EXPECT_EQ(c.rope.scaling, RopeScalingKind::Llama3);
  EXPECT_EQ(c.dtype, "bfloat16");
  EXPECT_EQ(c.rope.rotary_dim, 128);
  // Meta's Llama-3.1-8B: 8,030,261,248 parameters.
  EXPECT_EQ(c.total_params(), 8030261248);
}

TEST(ArchConfig, RopeVariants) {
  // Default: 1 / theta^(2i / dim).
  auto c = ArchConfig::from_json(llama_json());
  auto inv = rope_inv_freq(c, 32);
  ASSERT_EQ(inv.size(), 8u);
  EXPECT_DOUBLE_EQ(inv[0], 1.0);
  EXPECT_NEAR(inv[4], std::pow(10000.0, -0.5), 1e-15);

  // linear: every frequency divided by factor.
  auto j = llama_json();
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
  c = ArchConfig::from_json(j);
  EXPECT_EQ(c.rope.scaling, RopeScalingKind::Linear);
  inv = rope_inv_freq(c, 32);
  EXPECT_DOUBLE_EQ(inv[0], 0.25);

  // dynamic: unchanged up to max_position_embeddings, then the base grows with the length.
  j["rope_scaling"] = {{"rope_type", "dynamic"}, {"factor", 2.0}};
  j["head_dim"] = 64;
  j["hidden_size"] = 256;
  c = ArchConfig::from_json(j);
  EXPECT_EQ(rope_inv_freq(c, 128), rope_inv_freq(c, 100));
  EXPECT_NEAR(rope_inv_freq(c, 128)[1], std::pow(10000.0, -2.0 / 64), 1e-15);
  inv = rope_inv_freq(c, 512);  // base = 1e4 * (2 x 512 / 128 - 1)^(64 / 62) = 1e4 x 7^(64/62)
  EXPECT_NEAR(inv[1], 0.7042693252165533, 1e-12);
  EXPECT_NEAR(inv[31], 1.905030617376177e-05, 1e-16);

  // llama3 (Llama 3.1): high frequencies kept, low ones / 8, the band between blended.
  c = ArchConfig::from_json(llama31_8b_json());
  inv = rope_inv_freq(c, 8192);
  ASSERT_EQ(inv.size(), 64u);
  EXPECT_DOUBLE_EQ(inv[0], 1.0);
  EXPECT_NEAR(inv[20], 0.016560440080994446, 1e-15);   // wavelength 379 < 2048: kept
  EXPECT_NEAR(inv[31], 0.0008567514129196321, 1e-15);  // 3619, between 2048 and 8192: blended
  EXPECT_NEAR(inv[63], 3.068925988914511e-07, 1e-18);  // 2.6M > 8192: divided by 8

  // transformers 5 spelling: everything inside rope_parameters.
  auto v5 = llama31_8b_json();
  v5["rope_parameters"] = v5["rope_scaling"];
  v5["rope_parameters"]["rope_theta"] = 500000.0;
  v5.erase("rope_scaling");
  v5.erase("rope_theta");
  EXPECT_EQ(rope_inv_freq(ArchConfig::from_json(v5), 8192), inv);
}

TEST(ArchConfig, ErrorsNameFileAndKey) {
  auto msg = [](const nlohmann::json& j) { return errmsg([&] { ArchConfig::from_json(j, "m/config.json"); }); };
  auto j = llama_json();
  j.erase("hidden_size");
  EXPECT_HAS(msg(j), "m/config.json: missing field 'hidden_size'");
  j = llama_json();
  j["num_key_value_heads"] = 3;
  EXPECT_HAS(msg(j), "num_attention_heads 4 is not a multiple of num_key_value_heads 3");
  j = llama_json();
  j["hidden_act"] = "gelu_fast2";
  EXPECT_HAS(msg(j), "m/config.json: field 'hidden_act' = \"gelu_fast2\" is not supported");
  j = llama_json();
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  EXPECT_HAS(msg(j), "m/config.json: field 'rope_scaling.rope_type' = \"yarn\" is not supported");
  j["rope_scaling"] = {{"rope_type", "linear"}};
  EXPECT_HAS(msg(j), "m/config.json: missing field 'rope_scaling.factor'");
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0}};
  EXPECT_HAS(msg(j), "missing field 'rope_scaling.original_max_position_embeddings'");
  j["rope_scaling"] = "linear";
  EXPECT_HAS(msg(j), "field 'rope_scaling' must be an object");
  j = llama_json();
  j["intermediate_size"] = -4;
  EXPECT_HAS(msg(j), "field 'intermediate_size' must be a positive integer, got -4");
  j = llama_json();
  j["model_type"] = "mamba";
  EXPECT_HAS(msg(j), "model_type \"mamba\" is not supported (gpt2, llama, gpt_neox, qwen2)");
  j = llama_json();
  j["model_type"] = "qwen2";
  j["use_sliding_window"] = true;
  EXPECT_HAS(msg(j), "'use_sliding_window' = true is not supported");
  j["use_sliding_window"] = false;
  j["layer_types"] = {"full_attention", "sliding_attention"};
  EXPECT_HAS(msg(j), "field 'layer_types[1]' = \"sliding_attention\" is not supported");
  j = llama_json();
  j["attention_bias"] = "yes";
  EXPECT_HAS(msg(j), "field 'attention_bias' must be true or false");
  nlohmann::json n = {{"model_type", "gpt_neox"}, {"hidden_size", 64}, {"num_hidden_layers", 2},
                      {"num_attention_heads", 4},  {"intermediate_size", 256}, {"vocab_size", 100},
                      {"rotary_pct", 0.1}};
  EXPECT_HAS(msg(n), "rotary dimension int(head_dim 16 x 0.1) = 1 must be even");
  // GPT-2 keeps Gpt2Config's checks.
  const nlohmann::json g = {{"model_type", "gpt2"}, {"n_embd", 64}, {"n_layer", 2}, {"n_head", 4},
                            {"n_positions", 32},    {"vocab_size", 100}, {"activation_function", "relu"}};
  EXPECT_HAS(msg(g), "activation_function \"relu\" is not supported");

  test::TempDir tmp;
  EXPECT_HAS(errmsg([&] { ArchConfig::load(tmp.path()); }), "config.json: cannot open");
  test::write_file(tmp / "config.json", "{\"model_type\": ");
  EXPECT_HAS(errmsg([&] { ArchConfig::load(tmp.path()); }), "does not parse as JSON");
}

TEST(ArchConfig, HfJsonRoundTrip) {
  std::vector<nlohmann::json> configs = {llama_json(), llama31_8b_json()};
  auto q = llama_json();
  q["model_type"] = "qwen2";
  configs.push_back(q);
  auto d = llama_json();
  d["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  configs.push_back(d);
  configs.push_back({{"model_type", "gpt_neox"}, {"hidden_size", 512}, {"num_hidden_layers", 6},
                     {"num_attention_heads", 8}, {"intermediate_size", 2048}, {"vocab_size", 50304},
                     {"rotary_pct", 0.25}, {"use_parallel_residual", false}});
  configs.push_back({{"model_type", "gpt2"}, {"n_embd", 64}, {"n_layer", 2}, {"n_head", 4}, {"n_positions", 32},
                     {"vocab_size", 100}});
  for (const auto& j : configs) {
    const auto c = ArchConfig::from_json(j);
    const auto back = ArchConfig::from_json(c.to_hf_json(), "round trip");
    EXPECT_EQ(back.to_json(), c.to_json()) << j.dump();
  }
}
