// The generic forward (TransformerCpu) against HuggingFace transformers on the four ../shared
// fixtures (random tiny GPT-2, Llama, GPT-NeoX, Qwen2): every layer's neurons, every hidden
// state and the logits must agree to 1e-4 of the tensor's scale. Plus layer subsets, pipeline
// stages, sharded/bf16 checkpoints, errors.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.hpp"
#include "io/safetensors.hpp"
#include "model/transformer_cpu.hpp"
#include "test_support.hpp"

using namespace nexplain;
using test::errmsg;

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

std::vector<std::uint32_t> input_ids(const SafetensorsFile& expected, int& B, int& T) {
  const auto& info = expected.info("input_ids");
  B = static_cast<int>(info.shape.at(0));
  T = static_cast<int>(info.shape.at(1));
  std::vector<std::uint32_t> tokens;
  for (auto v : expected.to_int64("input_ids")) tokens.push_back(static_cast<std::uint32_t>(v));
  return tokens;
}

// Runs the fixture through TransformerCpu and checks every tensor HF saved.
void check_fixture(const std::filesystem::path& dir, const std::string& neuron_key) {
  const auto w = TransformerWeights::load(dir);
  const auto expected = SafetensorsFile::open(dir / "expected.safetensors");
  int B = 0, T = 0;
  const auto tokens = input_ids(expected, B, T);

  TransformerCpu cpu(w, 2);
  CollectingSink sink;
  ForwardOptions opts;
  opts.hidden_states = true;
  opts.logits = true;
  cpu.forward(tokens.data(), B, T, opts, sink);

  std::printf("%s (%s, B=%d T=%d) vs HF: tensor, max|ours-HF|, max|HF|, ratio (limit 1e-4)\n",
              dir.filename().c_str(), w.config.model_type.c_str(), B, T);
  int checked = 0;
  auto check = [&](const std::string& name, const std::vector<float>& ours) {
    const Diff d = compare(ours, expected.to_float(name));
    std::printf("  %-18s %.3e  %.3e  %.3e\n", name.c_str(), d.max_abs_diff, d.max_ref, d.ratio());
    EXPECT_LE(d.max_abs_diff, 1e-4 * d.max_ref) << dir << " " << name;
    EXPECT_GT(d.max_ref, 0) << name;  // a fixture of zeros would prove nothing
    ++checked;
  };
  const int L = w.config.n_layer;
  for (int l = 0; l < L; ++l) check(neuron_key + "." + std::to_string(l), sink.mlp.at(l));
  for (int i = 0; i <= L; ++i) check("hidden_states." + std::to_string(i), sink.hidden.at(i));
  check("logits", sink.logit);
  std::fflush(stdout);
  EXPECT_EQ(checked, 2 * L + 2);
}

std::vector<std::uint32_t> some_tokens(int B, int T, std::uint32_t vocab) {
  std::vector<std::uint32_t> tokens(static_cast<std::size_t>(B) * T);
  for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<std::uint32_t>((i * 37 + 11) % vocab);
  return tokens;
}

}  // namespace

TEST(TransformerCpu, MatchesHuggingFaceLlama) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  check_fixture(shared / "fixtures" / "hf-llama-tiny", "mlp_neuron");
}

TEST(TransformerCpu, MatchesHuggingFaceNeox) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  check_fixture(shared / "fixtures" / "hf-neox-tiny", "mlp_neuron");
}

TEST(TransformerCpu, MatchesHuggingFaceQwen2) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  check_fixture(shared / "fixtures" / "hf-qwen2-tiny", "mlp_neuron");
}

TEST(TransformerCpu, MatchesHuggingFaceGpt2) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  check_fixture(shared / "fixtures" / "hf-gpt2-tiny", "mlp_act");
}

// Pipeline stages: a stage that holds only block 1 continues from block 0's output and gives
// the same neurons as the whole model, for every family (parallel residual and GQA included).
TEST(TransformerCpu, StagesGiveTheSameNeurons) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  for (const char* name : {"hf-llama-tiny", "hf-neox-tiny", "hf-qwen2-tiny", "hf-gpt2-tiny"}) {
    SCOPED_TRACE(name);
    const auto dir = shared / "fixtures" / name;
    const auto w = TransformerWeights::load(dir);
    const int B = 2, T = 24;
    const auto tokens = some_tokens(B, T, 1000);
    TransformerCpu cpu(w, 2);
    CollectingSink all, last_only;
    cpu.forward(tokens.data(), B, T, ForwardOptions{}, all);
    ASSERT_EQ(all.mlp.size(), 2u);
    EXPECT_TRUE(all.hidden.empty());  // nothing unrequested
    EXPECT_TRUE(all.logit.empty());
    ForwardOptions o1;
    o1.first_layer = 1;
    cpu.forward(tokens.data(), B, T, o1, last_only);
    ASSERT_EQ(last_only.mlp.size(), 1u);
    EXPECT_EQ(last_only.mlp.at(1), all.mlp.at(1));
    // Stopping early (block 1 is not run) leaves layer 0 as it was.
    CollectingSink first_only;
    ForwardOptions o0;
    o0.last_layer = 0;
    cpu.forward(tokens.data(), B, T, o0, first_only);
    ASSERT_EQ(first_only.mlp.size(), 1u);
    EXPECT_EQ(first_only.mlp.at(0), all.mlp.at(0));

    TransformerLoadOptions lo;
    lo.first_layer = 1;
    lo.embeddings = false;
    lo.head = false;
    const auto w1 = TransformerWeights::load(dir, lo);
    EXPECT_FALSE(w1.has_block(0));
    EXPECT_TRUE(w1.has_block(1));
    EXPECT_FALSE(w1.has_embeddings());
    std::vector<float> h(static_cast<std::size_t>(B) * T * w.config.hidden);
    CollectingSink s0, s1;
    cpu.embed(tokens.data(), B, T, h.data());
    cpu.run_blocks(h.data(), B, T, 0, 1, 0, 0, s0);
    TransformerCpu stage(w1, 1);
    stage.run_blocks(h.data(), B, T, 1, 2, 1, 1, s1);
    EXPECT_EQ(s0.mlp.at(0), all.mlp.at(0));
    EXPECT_EQ(s1.mlp.at(1), all.mlp.at(1));
    EXPECT_HAS(errmsg([&] { stage.forward(tokens.data(), B, T, ForwardOptions{}, s1); }), "block 0 was not loaded");
    EXPECT_HAS(errmsg([&] { stage.embed(tokens.data(), B, T, h.data()); }), "token embeddings were not loaded");

    // A row's neurons do not depend on the batch it is in or the thread count.
    TransformerCpu one(w, 1);
    CollectingSink row;
    one.forward(tokens.data() + T, 1, T, ForwardOptions{}, row);
    const auto& full = all.mlp.at(1);
    const std::size_t I = static_cast<std::size_t>(w.config.intermediate);
    for (std::size_t i = 0; i < T * I; ++i)
      ASSERT_NEAR(row.mlp.at(1)[i], full[T * I + i], 1e-5 * (1 + std::fabs(full[T * I + i]))) << i;
  }
}

TEST(TransformerCpu, RejectsBadInput) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  const auto w = TransformerWeights::load(shared / "fixtures" / "hf-llama-tiny");
  TransformerCpu cpu(w, 1);
  CollectingSink s;
  auto tokens = some_tokens(2, 8, 1000);
  tokens[11] = 1000;
  EXPECT_HAS(errmsg([&] { cpu.forward(tokens.data(), 2, 8, ForwardOptions{}, s); }),
             "token id 1000 at batch row 1, position 3 is out of range");
  ForwardOptions bad;
  bad.first_layer = 2;
  EXPECT_HAS(errmsg([&] { cpu.forward(tokens.data(), 2, 8, bad, s); }), "outside the model's 2 layers");
  // RoPE has no position table: T beyond max_position_embeddings runs (as in HF).
  const auto long_tokens = some_tokens(1, 130, 1000);
  EXPECT_NO_THROW(cpu.forward(long_tokens.data(), 1, 130, ForwardOptions{}, s));
  // GPT-2's learned table does limit T: 128 positions run, 129 do not.
  const auto g = TransformerWeights::load(shared / "fixtures" / "hf-gpt2-tiny");
  TransformerCpu gc(g, 1);
  EXPECT_HAS(errmsg([&] { gc.forward(long_tokens.data(), 1, 129, ForwardOptions{}, s); }),
             "sequence length T=129 exceeds the model's 128 learned positions");
  EXPECT_NO_THROW(gc.forward(long_tokens.data(), 1, 128, ForwardOptions{}, s));
  // A bad token names the vocabulary size; a layer range past the end names the model's layers.
  EXPECT_HAS(errmsg([&] { gc.forward(tokens.data(), 2, 8, ForwardOptions{}, s); }),
             "token id 1000 at batch row 1, position 3 is out of range (vocab_size 1000)");
  bad.first_layer = 1;
  bad.last_layer = 2;
  EXPECT_HAS(errmsg([&] { gc.forward(tokens.data(), 1, 8, bad, s); }),  // row 0: valid tokens
             "requested layers [1, 2] are outside the model's 2 layers");
}

namespace {

std::uint16_t to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fff + ((u >> 16) & 1);  // round to nearest even
  return static_cast<std::uint16_t>(u >> 16);
}
float from_bf16(std::uint16_t h) {
  const std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

// A sharded bf16 checkpoint (model.safetensors.index.json + two shards) loads to exactly the
// bf16-rounded values of the fp32 one.
TEST(TransformerWeights, ShardedBf16Checkpoint) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  const auto src = shared / "fixtures" / "hf-llama-tiny";
  test::TempDir tmp;
  std::filesystem::copy_file(src / "config.json", tmp / "config.json");
  const auto f32 = SafetensorsFile::open(src / "model.safetensors");
  std::vector<std::vector<std::uint16_t>> store;
  std::vector<TensorToWrite> shard[2];
  nlohmann::json weight_map = nlohmann::json::object();
  const auto names = f32.names();
  store.reserve(names.size());
  for (const auto& n : names) {
    const auto v = f32.to_float(n);
    auto& s = store.emplace_back(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) s[i] = to_bf16(v[i]);
    const int which = n.find("layers.0.") != std::string::npos || n.find("embed") != std::string::npos ? 0 : 1;
    shard[which].push_back({n, StDtype::BF16, f32.info(n).shape, s.data()});
    weight_map[n] = which == 0 ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  write_safetensors(tmp / "model-00001-of-00002.safetensors", shard[0]);
  write_safetensors(tmp / "model-00002-of-00002.safetensors", shard[1]);
  test::write_file(tmp / "model.safetensors.index.json",
                   nlohmann::json{{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}.dump());

  const auto w = TransformerWeights::load(tmp.path());
  const auto ref = TransformerWeights::load(src);
  ASSERT_EQ(w.tok_embed.size(), ref.tok_embed.size());
  for (std::size_t i = 0; i < w.tok_embed.size(); ++i) ASSERT_EQ(w.tok_embed[i], from_bf16(to_bf16(ref.tok_embed[i])));
  const auto& a = w.blocks[1].up.w;
  const auto& b = ref.blocks[1].up.w;
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], from_bf16(to_bf16(b[i])));

  // Its neurons stay close to the fp32 model's (bf16 has 8 significant bits).
  TransformerCpu c16(w, 1), c32(ref, 1);
  const auto tokens = some_tokens(1, 16, 1000);
  CollectingSink s16, s32;
  c16.forward(tokens.data(), 1, 16, ForwardOptions{}, s16);
  c32.forward(tokens.data(), 1, 16, ForwardOptions{}, s32);
  const Diff d = compare(s16.mlp.at(1), s32.mlp.at(1));
  EXPECT_LT(d.ratio(), 0.05);
  EXPECT_GT(d.max_abs_diff, 0);  // really bf16

  // A shard named in the index but absent is an error naming it.
  std::filesystem::remove(tmp / "model-00002-of-00002.safetensors");
  EXPECT_HAS(errmsg([&] { TransformerWeights::load(tmp.path()); }), "model-00002-of-00002.safetensors");
}

TEST(TransformerWeights, MissingOrMisshapenTensorIsNamed) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  const auto src = shared / "fixtures" / "hf-qwen2-tiny";
  test::TempDir tmp;
  std::filesystem::copy_file(src / "model.safetensors", tmp / "model.safetensors");
  auto cfg = nlohmann::json::parse(test::read_file(src / "config.json"));
  cfg["intermediate_size"] = 128;
  test::write_file(tmp / "config.json", cfg.dump());
  EXPECT_HAS(errmsg([&] { TransformerWeights::load(tmp.path()); }),
             "tensor 'model.layers.0.mlp.gate_proj.weight' has shape [176, 64], but config.json (hidden 64, "
             "intermediate 128");
  cfg["intermediate_size"] = 176;
  cfg["tie_word_embeddings"] = false;  // now lm_head.weight is needed, and the file has none
  test::write_file(tmp / "config.json", cfg.dump());
  EXPECT_HAS(errmsg([&] { TransformerWeights::load(tmp.path()); }),
             "tensor 'lm_head.weight' (shape [1000, 64]) is missing from the checkpoint (qwen2 model)");
  // A stage without the head does not need it.
  TransformerLoadOptions lo;
  lo.head = false;
  EXPECT_NO_THROW(TransformerWeights::load(tmp.path(), lo));
}

namespace {

void expect_same_weights(const TransformerWeights& a, const TransformerWeights& b) {
  EXPECT_EQ(a.config.to_json(), b.config.to_json());
  EXPECT_EQ(a.tok_embed, b.tok_embed);
  EXPECT_EQ(a.pos_embed, b.pos_embed);
  EXPECT_EQ(a.final_norm.w, b.final_norm.w);
  EXPECT_EQ(a.final_norm.b, b.final_norm.b);
  EXPECT_EQ(a.lm_head.w, b.lm_head.w);
  ASSERT_EQ(a.blocks.size(), b.blocks.size());
  for (std::size_t l = 0; l < a.blocks.size(); ++l) {
    const auto &x = a.blocks[l], &y = b.blocks[l];
    EXPECT_EQ(x.norm1.w, y.norm1.w);
    EXPECT_EQ(x.norm2.b, y.norm2.b);
    for (auto [p, q] : {std::pair{&x.qkv, &y.qkv}, {&x.o, &y.o}, {&x.up, &y.up}, {&x.down, &y.down}}) {
      EXPECT_EQ(p->w, q->w) << "layer " << l;
      EXPECT_EQ(p->b, q->b) << "layer " << l;
      EXPECT_EQ(p->in_major, q->in_major);
    }
  }
}

}  // namespace

// save() writes what load() reads, for every family: HF names, the fused q|k|v and gate|up
// split back, NeoX's per-head interleave restored; one file or shards.
TEST(TransformerWeights, SaveLoadRoundTrip) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  for (const char* name : {"hf-llama-tiny", "hf-neox-tiny", "hf-qwen2-tiny", "hf-gpt2-tiny"}) {
    SCOPED_TRACE(name);
    const auto src = shared / "fixtures" / name;
    const auto w = TransformerWeights::load(src);
    test::TempDir one, sharded;
    w.save(one.path());
    expect_same_weights(TransformerWeights::load(one.path()), w);
    w.save(sharded.path(), {.bf16 = false, .max_shard_bytes = 100000});
    const auto index = nlohmann::json::parse(test::read_file(sharded / "model.safetensors.index.json"));
    std::set<std::string> files;
    for (const auto& [tensor, file] : index.at("weight_map").items()) files.insert(file.get<std::string>());
    EXPECT_GT(files.size(), 2u);  // ~0.6-0.9 MB in 100 kB shards
    for (const auto& f : files) EXPECT_TRUE(std::filesystem::exists(sharded / f)) << f;
    EXPECT_FALSE(std::filesystem::exists(sharded / "model.safetensors"));
    expect_same_weights(TransformerWeights::load(sharded.path()), w);
    // The saved tensors are the fixture's own, name for name and bit for bit.
    const auto orig = SafetensorsFile::open(src / "model.safetensors");
    const auto mine = SafetensorsFile::open(one / "model.safetensors");
    for (const auto& n : mine.names()) {
      const std::string stored = orig.contains(n) ? n : "transformer." + n;
      ASSERT_TRUE(orig.contains(stored)) << n;
      EXPECT_EQ(mine.to_float(n), orig.to_float(stored)) << n;
    }
  }
}

// A random tiny Llama with more layers than the fixture (what a P=3 pipeline test needs),
// saved as sharded bf16, loads and runs; a layer-range stage reads only its part.
TEST(TransformerWeights, RandomLlamaSavedAsShardedBf16) {
  const auto c = ArchConfig::from_json({{"model_type", "llama"}, {"hidden_size", 64}, {"num_hidden_layers", 6},
                                        {"num_attention_heads", 4}, {"num_key_value_heads", 2},
                                        {"intermediate_size", 128}, {"vocab_size", 500},
                                        {"max_position_embeddings", 64}, {"tie_word_embeddings", false}});
  const auto w = TransformerWeights::random(c, 5);
  EXPECT_EQ(TransformerWeights::random(c, 5).blocks[3].up.w, w.blocks[3].up.w);  // deterministic
  EXPECT_NE(TransformerWeights::random(c, 6).blocks[3].up.w, w.blocks[3].up.w);
  test::TempDir dir;
  w.save(dir.path(), {.bf16 = true, .max_shard_bytes = 200000});
  const auto back = TransformerWeights::load(dir.path());
  EXPECT_EQ(back.config.dtype, "bfloat16");
  for (std::size_t i = 0; i < w.blocks[5].down.w.size(); ++i)
    ASSERT_NEAR(back.blocks[5].down.w[i], w.blocks[5].down.w[i], 4e-3 * std::fabs(w.blocks[5].down.w[i]) + 1e-30);
  TransformerLoadOptions lo;
  lo.first_layer = 2;
  lo.last_layer = 3;
  lo.embeddings = lo.head = false;
  const auto stage = TransformerWeights::load(dir.path(), lo);
  EXPECT_FALSE(stage.has_block(1));
  EXPECT_TRUE(stage.has_block(2) && stage.has_block(3));
  EXPECT_FALSE(stage.has_block(4));

  const auto tokens = some_tokens(2, 16, 500);
  TransformerCpu full(back, 1), part(stage, 1);
  CollectingSink all, s23;
  full.forward(tokens.data(), 2, 16, ForwardOptions{}, all);
  ASSERT_EQ(all.mlp.size(), 6u);
  std::vector<float> h(2 * 16 * 64);
  CollectingSink ignore;
  full.embed(tokens.data(), 2, 16, h.data());
  full.run_blocks(h.data(), 2, 16, 0, 2, 0, -1, ignore);
  part.run_blocks(h.data(), 2, 16, 2, 4, 2, 3, s23);
  EXPECT_EQ(s23.mlp.at(2), all.mlp.at(2));
  EXPECT_EQ(s23.mlp.at(3), all.mlp.at(3));
}
