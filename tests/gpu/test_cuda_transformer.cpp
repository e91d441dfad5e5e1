// The device forward of every family (label gpu): cuda::TransformerDevice against TransformerCpu,
// the oracle, and against HF's own activations stored in the ../shared fixtures
// (hf-{llama,neox,qwen2}-tiny; GPT-2's is in test_cuda_backend.cpp), in fp32, tf32 and bf16 with
// the tolerances of the GPT-2 tests; random models for what the fixtures leave out (more layers,
// every activation, RoPE scaling, biases everywhere, multi-head and grouped-query attention with
// head_dim * n_head != hidden, the sequential GPT-NeoX residual); and pipeline stages, which must
// give exactly the neurons of the whole forward. Every test skips, saying why, without a device.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "capture/capture_state.hpp"
#include "io/safetensors.hpp"
#include "model/arch_config.hpp"
#include "model/transformer_cpu.hpp"
#include "model/transformer_weights.hpp"
#include "test_support.hpp"

#ifdef NEXPLAIN_HAVE_CUDA
#include "collect/cuda_backend.hpp"
#include "cuda_engine.hpp"
#include "forward_parity.hpp"
#include "reduction_test_data.hpp"
using namespace nexplain::gputest;
#endif

using namespace nexplain;
using test::errmsg;
namespace fs = std::filesystem;

#ifdef NEXPLAIN_HAVE_CUDA

namespace {

constexpr const char* kFamilyFixtures[] = {"hf-llama-tiny", "hf-neox-tiny", "hf-qwen2-tiny"};

std::vector<std::uint32_t> fixture_tokens(const SafetensorsFile& expected, int& B, int& T) {
  const auto& info = expected.info("input_ids");
  EXPECT_EQ(info.shape.size(), 2u);
  B = static_cast<int>(info.shape.at(0));
  T = static_cast<int>(info.shape.at(1));
  std::vector<std::uint32_t> tokens;
  for (auto v : expected.to_int64("input_ids")) tokens.push_back(static_cast<std::uint32_t>(v));
  return tokens;
}

// Every bias and norm parameter offset by N(0, 0.1): HF's init and TransformerWeights::random
// leave biases at 0 and gains at 1, which would hide a bias applied to the wrong columns (gate
// vs up, q vs k) or a missing norm bias.
void perturb_biases_and_norms(TransformerWeights& w, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> offset(0.0f, 0.1f);
  const auto shift = [&](std::vector<float>& v) {
    for (auto& x : v) x += offset(rng);
  };
  for (auto& b : w.blocks) {
    for (auto* v : {&b.norm1.w, &b.norm1.b, &b.norm2.w, &b.norm2.b, &b.qkv.b, &b.o.b, &b.up.b, &b.down.b}) shift(*v);
  }
}

nlohmann::json llama_json(int n_layer) {
  return {{"model_type", "llama"},     {"hidden_size", 64},  {"num_hidden_layers", n_layer},
          {"num_attention_heads", 4},  {"num_key_value_heads", 2}, {"intermediate_size", 128},
          {"vocab_size", 500},         {"max_position_embeddings", 64}, {"tie_word_embeddings", false}};
}

nlohmann::json neox_json() {
  return {{"model_type", "gpt_neox"}, {"hidden_size", 64},  {"num_hidden_layers", 2},
          {"num_attention_heads", 4}, {"intermediate_size", 256}, {"vocab_size", 500},
          {"max_position_embeddings", 64}};
}

nlohmann::json with(nlohmann::json j, const nlohmann::json& changes) {
  j.update(changes);
  return j;
}

// A random model of `j` saved (F32) in `dir`, so stages can load their layer ranges from it.
void save_random(const nlohmann::json& j, std::uint64_t seed, const fs::path& dir) {
  TransformerWeights w = TransformerWeights::random(ArchConfig::from_json(j, "test config"), seed);
  perturb_biases_and_norms(w, seed + 1);
  w.save(dir);
}

TransformerWeights load_range(const fs::path& dir, int begin, int end) {
  TransformerLoadOptions lo;
  lo.first_layer = begin;
  lo.last_layer = end - 1;
  lo.embeddings = begin == 0;
  lo.head = false;
  return TransformerWeights::load(dir, lo);
}

}  // namespace

// ==================================================================== 1. the forward

TEST(CudaTransformer, HfFixturesMatchCpuAndHf) {
  NEXPLAIN_REQUIRE_GPU();
  NEXPLAIN_REQUIRE_SHARED(shared);
  for (const char* name : kFamilyFixtures) {
    SCOPED_TRACE(name);
    const auto dir = shared / "fixtures" / name;
    const auto w = TransformerWeights::load(dir);
    const auto expected = SafetensorsFile::open(dir / "expected.safetensors");
    int B = 0, T = 0;
    const auto tokens = fixture_tokens(expected, B, T);
    const HfReference hf{&expected, "mlp_neuron"};
    check_forward(w, tokens, B, T, name, &hf);
    // Long rows (RoPE tables and attention over 128 positions) against the CPU.
    check_forward(w, random_tokens(2 * 128, static_cast<std::uint32_t>(w.config.vocab_size), 3), 2, 128,
                  std::string(name) + ", T = 128");
  }
}

TEST(CudaTransformer, RandomBiasesAndNormsMatchCpu) {
  NEXPLAIN_REQUIRE_GPU();
  NEXPLAIN_REQUIRE_SHARED(shared);
  for (const char* name : {"hf-gpt2-tiny", "hf-llama-tiny", "hf-neox-tiny", "hf-qwen2-tiny"}) {
    SCOPED_TRACE(name);
    auto w = TransformerWeights::load(shared / "fixtures" / name);
    perturb_biases_and_norms(w, 17);
    check_forward(w, random_tokens(3 * 40, static_cast<std::uint32_t>(w.config.vocab_size), 4), 3, 40,
                  std::string(name) + ", biases and norms perturbed");
  }
}

// What the fixtures leave out, on random models (biases and norms perturbed): more layers, every
// activation in both MLP shapes, RoPE scaling (dynamic beyond max_position_embeddings), q_dim !=
// hidden, one k/v head for four query heads, GPT-NeoX's sequential residual and other rotary
// fractions, a NeoX without attention biases.
TEST(CudaTransformer, RandomModelsOfEveryVariantMatchCpu) {
  NEXPLAIN_REQUIRE_GPU();
  struct Variant {
    const char* what;
    nlohmann::json config;
    int T;
  };
  const std::vector<Variant> variants = {
      {"llama, 6 layers, 4 query heads on 2 k/v heads, silu", llama_json(6), 40},
      {"llama, every bias, gelu_pytorch_tanh",
       with(llama_json(2), {{"attention_bias", true}, {"mlp_bias", true}, {"hidden_act", "gelu_pytorch_tanh"}}), 40},
      {"llama, relu, 8 heads of 16 (q_dim 128 != hidden 64)",
       with(llama_json(2), {{"hidden_act", "relu"}, {"num_attention_heads", 8}, {"num_key_value_heads", 8},
                            {"head_dim", 16}}),
       40},
      {"llama, linear RoPE scaling", with(llama_json(2), {{"rope_scaling", {{"type", "linear"}, {"factor", 2.0}}}}), 40},
      {"llama, dynamic RoPE scaling, T = 48 > max_position_embeddings = 32",
       with(llama_json(2),
            {{"max_position_embeddings", 32}, {"rope_scaling", {{"rope_type", "dynamic"}, {"factor", 2.0}}}}),
       48},
      {"llama, llama3 RoPE scaling",
       with(llama_json(2), {{"rope_theta", 500000.0},
                            {"rope_scaling",
                             {{"rope_type", "llama3"},
                              {"factor", 8.0},
                              {"low_freq_factor", 1.0},
                              {"high_freq_factor", 4.0},
                              {"original_max_position_embeddings", 16}}}}),
       40},
      {"qwen2, 3 layers, 4 query heads on 1 k/v head",
       with(llama_json(3), {{"model_type", "qwen2"}, {"num_key_value_heads", 1}, {"tie_word_embeddings", true}}), 40},
      {"gpt_neox, gelu_new, sequential residual, rotary_pct 0.5",
       with(neox_json(), {{"hidden_act", "gelu_new"}, {"use_parallel_residual", false}, {"rotary_pct", 0.5}}), 40},
      {"gpt_neox, relu, parallel residual, rotary_pct 1", with(neox_json(), {{"hidden_act", "relu"}, {"rotary_pct", 1.0}}),
       40},
      {"gpt_neox, gelu, no attention biases", with(neox_json(), {{"attention_bias", false}}), 40},
      // Head size 128 at T = 2048 needs more than the default 48 KiB of shared memory per block
      // for the attention's per-warp rows: the opt-in path (cuda/forward_kernels.cu).
      {"llama, head size 128, T = 2048 (opt-in shared memory)",
       with(llama_json(1), {{"hidden_size", 256}, {"num_attention_heads", 2}, {"num_key_value_heads", 1},
                            {"head_dim", 128}, {"max_position_embeddings", 4096}}),
       2048},
  };
  std::uint64_t seed = 100;
  for (const auto& v : variants) {
    SCOPED_TRACE(v.what);
    auto w = TransformerWeights::random(ArchConfig::from_json(v.config, v.what), ++seed);
    perturb_biases_and_norms(w, ++seed);
    check_forward(w, random_tokens(3 * static_cast<std::size_t>(v.T), 500, seed), 3, v.T, v.what);
  }
}

// The epilogue fusions on and off (GELU in the epilogue also for fp32/tf32: a NeoX with
// gelu_new and [out, in] weights takes the transposed GEMM with the GELU_BIAS epilogue).
TEST(CudaTransformer, EveryTuningMatchesCpu) {
  NEXPLAIN_REQUIRE_GPU();
  NEXPLAIN_REQUIRE_SHARED(shared);
  cuda::ForwardTuning none;
  none.bias_epilogue = false;
  none.residual_epilogue = false;
  none.gelu_epilogue = 0;
  cuda::ForwardTuning gelu;
  gelu.gelu_epilogue = 1;
  for (const char* name : kFamilyFixtures) {
    SCOPED_TRACE(name);
    const auto w = TransformerWeights::load(shared / "fixtures" / name);
    const auto tokens = random_tokens(3 * 40, static_cast<std::uint32_t>(w.config.vocab_size), 5);
    check_forward(w, tokens, 3, 40, std::string(name) + ", no epilogue fusions", nullptr, &none);
    check_forward(w, tokens, 3, 40, std::string(name) + ", GELU epilogue wherever it applies", nullptr, &gelu);
  }
  auto neox = TransformerWeights::random(ArchConfig::from_json(with(neox_json(), {{"hidden_act", "gelu_new"}})), 7);
  perturb_biases_and_norms(neox, 8);
  const auto tokens = random_tokens(3 * 40, 500, 6);
  check_forward(neox, tokens, 3, 40, "gpt_neox with gelu_new, no epilogue fusions", nullptr, &none);
  check_forward(neox, tokens, 3, 40, "gpt_neox with gelu_new, GELU epilogue for every precision", nullptr, &gelu);
}

// ==================================================================== 2. pipeline stages

namespace {

// The model in `dir` cut into stages at `cuts`, each a device holding only its blocks (loaded
// with TransformerLoadOptions, the embeddings on the first only) and run with run_blocks on a
// host hidden state handed from stage to stage: every layer's neurons must be bit for bit those
// of the whole model's forward, and the final hidden state (which forward() never computes: it
// skips the last down projection) must match the CPU's.
void check_stages(const fs::path& dir, const std::vector<int>& cuts, const std::string& what) {
  const auto full = TransformerWeights::load(dir);
  const int L = full.config.n_layer, C = full.config.hidden, B = 2, T = 24;
  const auto tokens = random_tokens(static_cast<std::size_t>(B) * T, static_cast<std::uint32_t>(full.config.vocab_size), 9);
  std::vector<float> cpu_hidden(static_cast<std::size_t>(B) * T * C);
  {
    TransformerCpu cpu(full, 0);
    CollectingSink ignore;
    cpu.embed(tokens.data(), B, T, cpu_hidden.data());
    cpu.run_blocks(cpu_hidden.data(), B, T, 0, L, 0, -1, ignore);
  }
  std::vector<int> all(static_cast<std::size_t>(L));
  for (int l = 0; l < L; ++l) all[static_cast<std::size_t>(l)] = l;
  std::vector<int> bounds{0};
  bounds.insert(bounds.end(), cuts.begin(), cuts.end());
  bounds.push_back(L);
  for (const auto prec : {cuda::Precision::fp32, cuda::Precision::bf16}) {
    cuda::TransformerDevice whole(full, 0, L - 1, prec);
    const auto expected = whole.forward_host(tokens.data(), B, T, all);
    std::map<int, std::vector<float>> staged;
    std::vector<float> hidden(static_cast<std::size_t>(B) * T * C, 0.0f);
    for (std::size_t s = 0; s + 1 < bounds.size(); ++s) {
      const int begin = bounds[s], end = bounds[s + 1];
      cuda::TransformerDevice dev(load_range(dir, begin, end), begin, end - 1, prec);
      EXPECT_EQ(dev.has_embeddings(), begin == 0);
      dev.run_blocks(begin == 0 ? tokens.data() : nullptr, hidden.data(), B, T, begin, end, begin, end - 1,
                     [&](int layer, const cuda::ActView& a) { staged[layer] = cuda::download_acts(a, dev.stream()); });
    }
    ASSERT_EQ(staged.size(), static_cast<std::size_t>(L)) << what;
    for (int l = 0; l < L; ++l)
      EXPECT_TRUE(staged.at(l) == expected.at(l)) << what << " " << cuda::precision_name(prec) << ": layer " << l
                                                  << " differs from the whole forward's";
    const Diff d = compare(hidden, cpu_hidden);
    std::printf("%s, %s: final hidden state max|gpu-cpu| %.3e, max|cpu| %.3e, ratio %.3e\n", what.c_str(),
                cuda::precision_name(prec), d.max_abs, d.max_ref, d.ratio());
    // The residual stream is fp32 in every precision, but bf16 rounds what feeds it.
    EXPECT_LE(d.max_abs, tolerance(prec) * d.max_ref) << what << " " << cuda::precision_name(prec);
  }
  std::fflush(stdout);
}

}  // namespace

TEST(CudaTransformer, StagesGiveTheNeuronsOfTheWholeForward) {
  NEXPLAIN_REQUIRE_GPU();
  NEXPLAIN_REQUIRE_SHARED(shared);
  for (const char* name : {"hf-gpt2-tiny", "hf-llama-tiny", "hf-neox-tiny", "hf-qwen2-tiny"})
    check_stages(shared / "fixtures" / name, {1}, name);
  test::TempDir dir;
  save_random(llama_json(6), 31, dir.path());
  check_stages(dir.path(), {2, 3}, "random llama, 6 layers in stages [0, 2) [2, 3) [3, 6)");
}

// CudaCollectBackend::stage(), the MPI pipeline's entry point: three stage backends (one that
// selects no layer) handing the hidden state on give exactly the histograms and states of one
// backend running all blocks.
TEST(CudaTransformer, PipelineStageBackendsEqualOneBackend) {
  NEXPLAIN_REQUIRE_GPU();
  test::TempDir dir;
  save_random(llama_json(6), 41, dir.path());
  const std::vector<int> layers{1, 3, 4};
  struct StageSpec {
    int begin, end;
    std::vector<int> layers;
  };
  const std::vector<StageSpec> specs{{0, 2, {1}}, {2, 3, {}}, {3, 5, {3, 4}}};
  const int T = 16, n_ex = 48, batch = 16, C = 64;
  const std::uint32_t N = 128;
  CaptureParams params;
  params.T = T;
  params.K = 8;
  params.R = 6;
  params.seed = 3;
  const auto tokens = random_tokens(static_cast<std::size_t>(n_ex) * T, 500, 12);
  std::vector<std::uint64_t> ids(n_ex);
  for (int e = 0; e < n_ex; ++e) ids[static_cast<std::size_t>(e)] = 10 + 2 * static_cast<std::uint64_t>(e);
  const auto tok = [&](int first) { return tokens.data() + static_cast<std::size_t>(first) * T; };

  CudaCollectBackend whole(load_range(dir.path(), 0, 5), layers, params, cuda::Precision::fp32);
  std::vector<std::unique_ptr<CudaCollectBackend>> stages;
  for (const auto& sp : specs)
    stages.push_back(std::make_unique<CudaCollectBackend>(load_range(dir.path(), sp.begin, sp.end), sp.layers, params,
                                                          cuda::Precision::fp32, sp.begin, sp.end));
  std::vector<float> hidden(static_cast<std::size_t>(batch) * T * C);
  const auto through_stages = [&](int first, const std::uint64_t* batch_ids) {
    for (std::size_t s = 0; s < stages.size(); ++s)
      stages[s]->stage(s == 0 ? tok(first) : nullptr, hidden.data(), batch_ids, batch);
  };

  for (int b = 0; b < n_ex; b += batch) {
    whole.prepass(tok(b), batch);
    through_stages(b, nullptr);
  }
  const auto hists = whole.histograms();
  std::vector<HistogramState> staged_hists;
  for (auto& st : stages)
    for (auto& h : st->histograms()) staged_hists.push_back(std::move(h));
  ASSERT_EQ(staged_hists.size(), layers.size());
  for (std::size_t i = 0; i < layers.size(); ++i)
    EXPECT_EQ(staged_hists[i].counts(), hists[i].counts()) << "pre-pass histograms of layer " << layers[i];

  const auto init = [&](const std::vector<int>& ls) {
    std::vector<CaptureState> out;
    for (int l : ls) {
      CaptureParams lp = params;
      lp.layer = static_cast<std::uint32_t>(l);
      const auto i = static_cast<std::size_t>(std::find(layers.begin(), layers.end(), l) - layers.begin());
      out.emplace_back(lp, N, hists[i].boundaries(params.quantile_fractions));
    }
    return out;
  };
  whole.start_main(init(layers));
  for (std::size_t s = 0; s < stages.size(); ++s) stages[s]->start_main(init(specs[s].layers));
  for (int b = 0; b < n_ex; b += batch) {
    whole.main(tok(b), ids.data() + b, batch);
    through_stages(b, ids.data() + b);
  }
  const auto expected = whole.states();
  std::size_t i = 0;
  for (auto& st : stages)
    for (const auto& got : st->states()) {
      ASSERT_LT(i, expected.size());
      EXPECT_TRUE(states_match(got.arrays(), expected[i].arrays(), 0.0,
                               ("layer " + std::to_string(layers[i])).c_str()));
      ++i;
    }
  EXPECT_EQ(i, layers.size());
}

// ==================================================================== 3. bad input

TEST(CudaTransformer, BadInputIsAnError) {
  NEXPLAIN_REQUIRE_GPU();
  NEXPLAIN_REQUIRE_SHARED(shared);
  const auto dir = shared / "fixtures" / "hf-llama-tiny";
  const auto stage_w = load_range(dir, 1, 2);
  cuda::TransformerDevice stage(stage_w, 1, 1, cuda::Precision::fp32);
  EXPECT_FALSE(stage.has_embeddings());
  std::vector<std::uint32_t> tokens(16, 1);
  std::vector<float> hidden(16 * 64);
  EXPECT_HAS(errmsg([&] { stage.forward_host(tokens.data(), 2, 8, {1}); }), "holds blocks 1..1 only");
  EXPECT_HAS(errmsg([&] { stage.run_blocks(tokens.data(), hidden.data(), 2, 8, 1, 2, 1, 1, nullptr); }),
             "token embeddings were not uploaded");
  EXPECT_HAS(errmsg([&] { stage.run_blocks(nullptr, hidden.data(), 2, 8, 0, 2, 0, 1, nullptr); }),
             "blocks [0, 2) requested, but only blocks 1..1 were uploaded");
  EXPECT_HAS(errmsg([&] { cuda::TransformerDevice d(stage_w, 0, 1, cuda::Precision::fp32); }),
             "block 0 was not loaded");
  EXPECT_HAS(errmsg([&] { cuda::TransformerDevice d(stage_w, 1, 2, cuda::Precision::fp32); }),
             "outside the model's 2 layers");

  const auto full = TransformerWeights::load(dir);
  cuda::TransformerDevice dev(full, 0, 1, cuda::Precision::fp32);
  tokens[11] = 1000;
  EXPECT_HAS(errmsg([&] { dev.forward_host(tokens.data(), 2, 8, {1}); }),
             "token id 1000 at batch row 1, position 3 is out of range");
  EXPECT_HAS(errmsg([&] { dev.forward_host(tokens.data(), 0, 8, {1}); }), "empty batch");
  // RoPE has no position table: T beyond max_position_embeddings runs, as in HF.
  const auto long_tokens = random_tokens(200, 1000, 1);
  EXPECT_NO_THROW(dev.forward_host(long_tokens.data(), 1, 200, {0}));
  // A stage backend runs stage(), not the whole-model passes.
  CaptureParams params;
  params.T = 8;
  CudaCollectBackend middle(stage_w, {}, params, cuda::Precision::fp32, 1, 2);
  EXPECT_HAS(errmsg([&] { middle.prepass(tokens.data(), 2); }), "no layers selected");
  EXPECT_HAS(errmsg([&] { CudaCollectBackend b(stage_w, {0}, params, cuda::Precision::fp32, 1, 2); }),
             "layer 0 is outside the blocks 1..1");
}

#else

TEST(CudaTransformer, Skipped) { GTEST_SKIP() << "built without the CUDA backend (nvcc was not found at configure time)"; }

#endif  // NEXPLAIN_HAVE_CUDA
