// Planted-feature models: a planted neuron must fire exactly where its token / position is and
// stay near zero elsewhere, in every layer; ordinary neurons must look nothing like that.
#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "model/planted.hpp"
#include "model/transformer_cpu.hpp"
#include "test_support.hpp"

using namespace nexplain;

namespace {

using test::errmsg;

Gpt2Config small_config() {
  return Gpt2Config{.n_embd = 64, .n_layer = 2, .n_head = 4, .n_inner = 256, .n_positions = 128, .vocab_size = 50257};
}

const char* kSpec = "L0.N5=token:464; L1.N17=tokens:11,13; L0.N3=position:0-3; L1.N200=token:464";

}  // namespace

TEST(Planted, SpecParsing) {
  const auto c = small_config();
  const auto n = parse_planted_spec(kSpec, c);
  ASSERT_EQ(n.size(), 4u);
  EXPECT_EQ(n[0].layer, 0);
  EXPECT_EQ(n[0].neuron, 5);
  EXPECT_EQ(n[0].kind, "token");
  EXPECT_EQ(n[0].tokens, std::vector<std::uint32_t>{464});
  EXPECT_EQ(n[1].tokens, (std::vector<std::uint32_t>{11, 13}));
  EXPECT_EQ(n[2].kind, "position");
  EXPECT_EQ(n[2].pos_first, 0);
  EXPECT_EQ(n[2].pos_last, 3);
  EXPECT_TRUE(n[2].fires_on(999, 3));
  EXPECT_FALSE(n[2].fires_on(999, 4));
  EXPECT_EQ(parse_planted_spec("L0.N1=tokens:5-7,2", c)[0].tokens, (std::vector<std::uint32_t>{2, 5, 6, 7}));
  EXPECT_TRUE(parse_planted_spec("", c).empty());

  EXPECT_HAS(errmsg([&] { parse_planted_spec("L2.N1=token:5", c); }), "layer 2 is out of range (the model has n_layer=2)");
  EXPECT_HAS(errmsg([&] { parse_planted_spec("L0.N256=token:5", c); }), "neuron 256 is out of range");
  EXPECT_HAS(errmsg([&] { parse_planted_spec("L0.N1=token:50257", c); }), "token id 50257 is out of range");
  EXPECT_HAS(errmsg([&] { parse_planted_spec("L0.N1=position:100-200", c); }), "position 200 is out of range");
  EXPECT_HAS(errmsg([&] { parse_planted_spec("L0.N1=word:the", c); }), "unknown kind 'word'");
  EXPECT_HAS(errmsg([&] { parse_planted_spec("L0.N1=token:1;L0.N1=token:2", c); }), "planted twice");
  EXPECT_HAS(errmsg([&] { parse_planted_spec("L0N1=token:1", c); }), "expected L<layer>.N<neuron>=<kind>:<args>");
  EXPECT_HAS(errmsg([&] { parse_planted_spec("L0.N1=token:1,2", c); }), "'token' takes one id");
  EXPECT_HAS(errmsg([&] { parse_planted_spec("L0.Nx=token:1", c); }), "neuron 'x' is not a non-negative integer");
}

TEST(Planted, NeuronsFireExactlyOnTheirFeature) {
  const auto config = small_config();
  const auto neurons = parse_planted_spec(kSpec, config);
  test::TempDir tmp;
  write_planted_model(tmp / "model", build_planted_model(config, neurons, 1, kSpec));
  const auto truth = nlohmann::json::parse(test::read_file(tmp / "model" / "planted.json"));
  ASSERT_EQ(truth["neurons"].size(), 4u);
  EXPECT_EQ(truth["neurons"][1]["tokens"], (std::vector<int>{11, 13}));
  EXPECT_EQ(truth["neurons"][2]["positions"], (std::vector<int>{0, 1, 2, 3}));

  // Load it back through the ordinary path, as collect would.
  const auto w = TransformerWeights::load(tmp / "model");
  EXPECT_EQ(w.config.model_type, "gpt2");
  EXPECT_EQ(w.config.vocab_size, 50257);
  TransformerCpu cpu(w, 2);

  // Random sequences; some rows get the planted tokens at random places, some none at all.
  const int B = 16, T = 64;
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::uint32_t> any(0, 50256);
  std::vector<std::uint32_t> tokens(B * T);
  for (auto& t : tokens) {
    do t = any(rng);
    while (t == 464 || t == 11 || t == 13);
  }
  for (int b = 0; b < B; b += 2)
    for (int k = 0; k < 3; ++k) {
      tokens[static_cast<std::size_t>(b * T + 4 + static_cast<int>(rng() % 60))] = 464;
      tokens[static_cast<std::size_t>(b * T + static_cast<int>(rng() % 64))] = (b % 4 == 0) ? 11 : 13;
    }
  // Token 464 inside the planted position range: two features on at once still fire both.
  tokens[1] = 464;
  CollectingSink sink;
  cpu.forward(tokens.data(), B, T, ForwardOptions{}, sink);
  const int I = w.config.intermediate;
  auto act = [&](int layer, int b, int t, int n) { return sink.mlp.at(layer)[static_cast<std::size_t>((b * T + t) * I + n)]; };

  for (const auto& p : neurons) {
    float min_on = INFINITY, max_off = -INFINITY, max_off_excerpt = -INFINITY;
    for (int b = 0; b < B; ++b) {
      bool excerpt_has = false;
      float excerpt_max = -INFINITY;
      for (int t = 0; t < T; ++t) {
        const float a = act(p.layer, b, t, p.neuron);
        if (p.fires_on(tokens[static_cast<std::size_t>(b * T + t)], t)) {
          min_on = std::min(min_on, a);
          excerpt_has = true;
        } else {
          max_off = std::max(max_off, a);
        }
        excerpt_max = std::max(excerpt_max, a);
      }
      if (!excerpt_has) max_off_excerpt = std::max(max_off_excerpt, excerpt_max);
    }
    std::printf("planted L%d.N%d (%s): min when on %.3f, max when off %.4f, max over excerpts without it %.4f\n",
                p.layer, p.neuron, p.kind.c_str(), min_on, max_off, max_off_excerpt);
    EXPECT_GT(min_on, 5.0f) << "L" << p.layer << ".N" << p.neuron;
    EXPECT_LT(max_off, 0.1f) << "L" << p.layer << ".N" << p.neuron;
    if (p.kind != "position") {  // (every excerpt has positions 0-3)
      EXPECT_LT(max_off_excerpt, 0.1f);
    }
  }

  // Ordinary neurons stay small everywhere: nothing else looks like a detector.
  float max_random = 0;
  for (int layer = 0; layer < 2; ++layer)
    for (int n = 0; n < I; ++n) {
      bool planted = false;
      for (const auto& p : neurons) planted |= p.layer == layer && p.neuron == n;
      if (planted) continue;
      for (int r = 0; r < B * T; ++r)
        max_random = std::max(max_random, std::fabs(sink.mlp.at(layer)[static_cast<std::size_t>(r * I + n)]));
    }
  std::printf("max |activation| of the %d unplanted neurons: %.4f\n", 2 * I - 4, max_random);
  EXPECT_LT(max_random, 1.0f);
}

TEST(Planted, DeterministicAndTooNarrowIsAnError) {
  const auto config = small_config();
  const auto n = parse_planted_spec("L0.N1=token:7", config);
  const auto a = build_planted_model(config, n, 3);
  const auto b = build_planted_model(config, n, 3);
  const auto c = build_planted_model(config, n, 4);
  EXPECT_EQ(a.weights.blocks[1].up.w, b.weights.blocks[1].up.w);
  EXPECT_NE(a.weights.blocks[1].up.w, c.weights.blocks[1].up.w);

  // A seed's weights never change between versions (models on disk stay reproducible): these
  // values were written by the builder before it moved from Gpt2Weights to TransformerWeights,
  // one from each array its generator fills, in its order.
  const auto& w = a.weights;
  EXPECT_EQ(w.tok_embed[2], 0.0177496169f);                   // wte[0, 2]
  EXPECT_EQ(w.tok_embed[64 * 50256 + 63], 0.0146663561f);     // wte[50256, 63]
  EXPECT_EQ(w.pos_embed[127 * 64 + 10], -0.0262034237f);      // wpe[127, 10]
  EXPECT_EQ(w.blocks[0].qkv.w[0], -0.0375996828f);            // h.0.attn.c_attn
  EXPECT_EQ(w.blocks[1].o.w[5 * 64 + 7], 0.000791062659f);    // h.1.attn.c_proj (residual scale)
  EXPECT_EQ(w.blocks[1].up.w[3], 0.00465742452f);             // h.1.mlp.c_fc
  EXPECT_EQ(w.blocks[1].down.w[255 * 64 + 63], -0.0154058579f);  // h.1.mlp.c_proj, last value drawn

  // 40 distinct features cannot fit in a 64-wide residual stream.
  std::string spec;
  for (int i = 0; i < 40; ++i) spec += "L0.N" + std::to_string(i) + "=token:" + std::to_string(100 + i) + ";";
  EXPECT_HAS(errmsg([&] { build_planted_model(config, parse_planted_spec(spec, config), 1); }),
             "40 distinct features need 41 reserved residual dims");
  // Many features on one token dilute each other below the firing margin.
  spec.clear();
  for (int i = 0; i < 25; ++i) spec += "L0.N" + std::to_string(i) + "=tokens:5," + std::to_string(100 + i) + ";";
  EXPECT_HAS(errmsg([&] { build_planted_model(config, parse_planted_spec(spec, config), 1); }),
             "up to 25 features active on the same token/position");
}

TEST(Planted, MakeModelCommand) {
  test::TempDir tmp;
  const auto out = tmp / "planted";
  auto r = test::run_cli({"make-model", "--planted", "L0.N5=token:464;L1.N3=position:0", "--out", out.string(),
                          "--n-layer", "2", "--seed", "9"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(out / "config.json"));
  EXPECT_TRUE(std::filesystem::exists(out / "model.safetensors"));
  EXPECT_TRUE(std::filesystem::exists(out / "planted.json"));
  EXPECT_EQ(Gpt2Config::load(out).vocab_size, 50257);

  r = test::run_cli({"make-model", "--planted", "L0.N5=tok:464", "--out", (tmp / "bad").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_HAS(r.err, "unknown kind 'tok'");
  r = test::run_cli({"make-model", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_HAS(r.out, "position:<p>");
}
